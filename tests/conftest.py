import importlib.util
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The real shared datasets: $METAAL_DATA_ROOT, else ../shared/data beside the checkout."""
    root = Path(os.environ.get("METAAL_DATA_ROOT", REPO.parent / "shared" / "data"))
    if not (root / "MANIFEST.md").is_file():
        pytest.fail(f"real data not found at {root}: set METAAL_DATA_ROOT to the shared data folder")
    return root


def load_benchmark(name: str):
    """Import benchmarks/NAME.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the script runs
    spec.loader.exec_module(module)
    return module


# The end-to-end tier: whole commands in subprocesses, torchrun, the wheel, the notebook, real
# W&B run folders. CI runs every test on the current versions and only the fast tier (-m "not
# e2e") on the lowest ones. A test elsewhere that starts a subprocess carries @pytest.mark.e2e.
E2E_FILES = {"test_packaging.py", "test_distributed.py", "test_notebook.py", "test_cli.py", "test_transfer.py"}
E2E_FIXTURES = {"smoke_run", "offline_run"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name in E2E_FILES or E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.e2e)
