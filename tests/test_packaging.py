"""The built wheel, installed into a fresh venv, runs the `metaal` subcommands outside the
source tree: the configs and the shipped policies are package data, the version comes from
metaal/version.py."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

from metaal import __version__
from metaal.zoo import SHIPPED

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    source, dist = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in ("pyproject.toml", "README.md", "LICENSE"):  # a copy: the build writes build/ beside the source
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "metaal", source / "metaal", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                    str(dist), str(source)], check=True, timeout=300, cwd=dist)
    (built,) = dist.glob("metaal-*.whl")
    return built


def test_wheel_holds_the_package_its_configs_policies_and_license(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith(f"metaal-{__version__}-")
    assert {"metaal/configs/smoke.yaml", "metaal/configs/default.yaml", "metaal/commands/meta_train.py"} <= set(names)
    assert {f"metaal/policies/{name}.pt" for name in SHIPPED} | {f"metaal/configs/{p.config}.yaml"
                                                                  for p in SHIPPED.values()} <= set(names)
    assert wheel.stat().st_size < 5_000_000
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "experiments/")) for n in names)


def test_installed_wheel_runs_outside_the_source_tree(wheel, tmp_path, data_root):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    # The setup's dependency steps, taken from this environment (a second torch install would
    # take minutes): its site-packages on the new venv's path, after the venv's own, where the
    # wheel goes. A path in a .pth file is not scanned for .pth files, so this environment's own
    # (editable) metaal stays out.
    python = venv / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    (purelib / "metaal-test-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    str(wheel)], check=True, timeout=300)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WANDB_API_KEY")}
    env |= {"WANDB_MODE": "offline", "WANDB_DATA_DIR": str(tmp_path / "wd"), "WANDB_CONFIG_DIR": str(tmp_path / "wc"),
            "OMP_NUM_THREADS": "1"}

    def metaal(*args):
        result = subprocess.run([str(venv / "bin" / "metaal"), *map(str, args)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    where = subprocess.run([str(python), "-c", "import metaal; print(metaal.__file__)"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv)), where  # the wheel's copy, not the source tree
    assert "meta-train" in metaal("--help").stdout
    assert metaal("--version").stdout.strip() == f"metaal {__version__}"
    metaal("data", "checkerboard2x2", "--data-root", data_root)
    trained = metaal("meta-train", "--config", "smoke", "--data-root", data_root, "--out", "run", "--no-progress")
    assert "best validation AULC" in trained.stdout and (tmp_path / "run" / "policy.pt").is_file()
    moved = metaal("transfer", "--policy", "run/policy.pt", "--dataset", "kmnist", "--data-root", data_root,
                   "--out", "t", "--strategies", "policy,margin", "--seeds", "2", "--rounds", "2", "--k", "3",
                   "--pool-per-class", "10", "--eval-per-class", "10", "--no-progress")
    assert "| policy |" in moved.stdout and (tmp_path / "t" / "summary.json").is_file()

    listed = metaal("policies").stdout
    assert all(f"{name}: " in listed and entry.sha256 in listed for name, entry in SHIPPED.items())
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "some.npz", X=rng.normal(size=(120, 6)), y=np.arange(120) % 3)
    for name in SHIPPED:  # each by name, its learner from its checkpoint, on a file outside any data root
        run = metaal("transfer", "--policy", name, "--dataset", "some.npz", "--out", f"t_{name}", "--seeds", "2",
                     "--rounds", "2", "--k", "2", "--pool-per-class", "20", "--eval-per-class", "10", "--no-progress")
        assert "| policy |" in run.stdout and "warning: the policy" not in run.stderr
