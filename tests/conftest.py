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
