"""notebooks/analysis.ipynb executes on a small real transfer output."""

import subprocess
import sys

import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO

POLICY = REPO / "metaal" / "policies" / "linear.pt"


def test_analysis_notebook_runs_on_a_transfer_output(tmp_path, data_root, monkeypatch):
    out = tmp_path / "transfer"
    # the policy path relative to the checkout, as the README writes it; the kernel runs in notebooks/
    result = subprocess.run(
        [sys.executable, "experiments/transfer.py", "--policy", str(POLICY.relative_to(REPO)), "--dataset",
         "fashion_mnist", "--data-root", str(data_root), "--out", str(out), "--seeds", "3", "--rounds", "3",
         "--k", "5", "--pool-per-class", "20", "--eval-per-class", "40", "--n-ways", "5",
         "--strategies", "policy,margin,random", "--wandb-mode", "disabled", "--no-progress"],
        capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    monkeypatch.setenv("METAAL_TRANSFER_DIR", str(out))
    monkeypatch.setenv("METAAL_DATA_ROOT", str(data_root))
    notebook = nbformat.read(REPO / "notebooks" / "analysis.ipynb", as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    text = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for o in cell.get("outputs", []))
    assert "fashion_mnist: 3 seeds" in text
    assert "policy vs margin:" in text and "Spearman correlation" in text and "entropy" in text
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3
