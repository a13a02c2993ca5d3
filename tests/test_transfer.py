"""experiments/transfer.py end to end: a real held-out dataset, user .npz files, bad input."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from metaal.data import load_dataset
from metaal.tracking import read_offline_run
from tests.conftest import REPO

SCRIPT = REPO / "experiments" / "transfer.py"
POLICY = REPO / "metaal" / "policies" / "linear.pt"
SMALL = ["--seeds", "3", "--rounds", "4", "--k", "3", "--pool-per-class", "12", "--eval-per-class", "20",
         "--no-progress", "--device", "cpu"]


def transfer(tmp_path, *args, wandb_mode="disabled"):
    env = {**os.environ, "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), "WANDB_CACHE_DIR": str(tmp_path / "wc"),
           "WANDB_CONFIG_DIR": str(tmp_path / "wcfg")}
    env.pop("WANDB_API_KEY", None)
    return subprocess.run([sys.executable, str(SCRIPT), "--wandb-mode", wandb_mode, *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_transfer_to_a_held_out_dataset(tmp_path, data_root):
    out = tmp_path / "kmnist"
    result = transfer(tmp_path, "--policy", str(POLICY), "--dataset", "kmnist", "--data-root", str(data_root),
                      "--out", str(out), "--strategies", "policy,margin,random", *SMALL, wandb_mode="offline")
    assert result.returncode == 0, result.stderr
    assert "| policy |" in result.stdout
    with open(out / "curves.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["strategy", "seed", "round", "n_labeled", "accuracy"]
    assert len(rows) == 3 * 3 * 5  # strategies x seeds x (rounds + 1)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"policy", "margin", "random"}
    assert {"aulc_mean", "aulc_std"} <= set(summary["strategies"]["policy"])
    pairs = {(c["strategy"], c["baseline"]) for c in summary["comparisons"]}
    assert pairs == {("policy", "margin"), ("policy", "random")}
    assert {"mean_difference", "ci_low", "ci_high", "wins", "ties", "losses"} <= set(summary["comparisons"][0])
    assert summary["config"]["spec"]["n_ways"] == 10  # all classes of KMNIST
    assert (out / "learning_curves.png").stat().st_size > 0
    run = read_offline_run(next((out / "wandb").glob("offline-run-*")))
    assert run["config"]["dataset_name"] == "kmnist" and any("aulc/policy" in h for h in run["history"])


@pytest.mark.parametrize("labels", ["binary", "strings"])
def test_transfer_to_a_user_npz(tmp_path, data_root, labels):
    ds = load_dataset("wdbc" if labels == "binary" else "waveform", data_root)
    X, y = ds.train.X.numpy(), ds.train.y.numpy()
    if labels == "strings":  # 3 features dropped, string class names: any shape of tabular data works
        X, y = X[:, 3:], np.array(["low", "high"])[y]
    np.savez(tmp_path / "mine.npz", X=X, y=y)
    out = tmp_path / "out"
    result = transfer(tmp_path, "--policy", str(POLICY), "--dataset", str(tmp_path / "mine.npz"), "--out", str(out),
                      *SMALL)
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["spec"]["n_ways"] == 2 and summary["config"]["dataset_name"] == "mine"
    assert 0.5 < summary["strategies"]["policy"]["aulc_mean"] <= 1


def test_transfer_to_an_imbalanced_pool(tmp_path, data_root):
    out = tmp_path / "out"
    result = transfer(tmp_path, "--dataset", "waveform", "--data-root", str(data_root), "--out", str(out),
                      "--strategies", "margin,random", "--imbalance", "10", *SMALL)
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["task"]["imbalance"] == 10 and config["spec"]["imbalance"] == 10


def test_unreadable_dataset_is_a_clear_error(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"nope")
    result = transfer(tmp_path, "--policy", str(POLICY), "--dataset", str(tmp_path / "broken.npz"),
                      "--out", str(tmp_path / "o"), *SMALL)
    assert result.returncode == 2 and "broken.npz is not a readable .npz file" in result.stderr
    assert not (tmp_path / "o").exists()


def test_unloadable_policy_is_a_clear_error(tmp_path, data_root):
    (tmp_path / "p.pt").write_text("not a checkpoint")
    result = transfer(tmp_path, "--policy", str(tmp_path / "p.pt"), "--dataset", "heart", "--data-root",
                      str(data_root), "--out", str(tmp_path / "o"), *SMALL)
    assert result.returncode == 2 and "p.pt is not a readable policy checkpoint" in result.stderr
    result = transfer(tmp_path, "--dataset", "heart", "--data-root", str(data_root), "--out", str(tmp_path / "o"),
                      "--learner", "cnn")  # no --policy: the shipped one for the learner, and cnn has none
    assert result.returncode == 2 and "no shipped policy is meta-trained for the learner 'cnn'" in result.stderr


def test_budget_larger_than_the_pool(tmp_path, data_root):
    result = transfer(tmp_path, "--dataset", "heart", "--data-root", str(data_root), "--out", str(tmp_path / "o"),
                      "--strategies", "margin", "--pool-per-class", "20", "--rounds", "10", "--k", "5")
    assert result.returncode == 2 and "exceed the pool of 40" in result.stderr


def test_preset_reproduces_the_transfer_table_row(tmp_path, data_root):
    """`--preset NAME` runs a transfer-table row on the same episodes: the same per-seed AULCs."""
    spec = importlib.util.spec_from_file_location("transfer_table", REPO / "benchmarks" / "transfer_table.py")
    table = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = table
    spec.loader.exec_module(table)
    table.main(["--data-root", str(data_root), "--datasets", "omniglot_sanskrit_tagalog", "--seeds", "3",
                "--rounds", "3", "--oracle-candidates", "0", "--baselines", "margin", "--out", str(tmp_path / "table"),
                "--history", str(tmp_path / "history.json"), "--no-progress"])
    row = json.loads((tmp_path / "table" / "table.json").read_text())["targets"]["omniglot_sanskrit_tagalog"]
    out = tmp_path / "preset"
    result = transfer(tmp_path, "--preset", "omniglot_sanskrit_tagalog", "--policy", str(POLICY), "--data-root",
                      str(data_root), "--out", str(out), "--seeds", "3", "--rounds", "3",
                      "--strategies", "policy,margin", "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["seed_offset"] == 10_000 and summary["config"]["spec"] == row["target"]["spec"]
    for name in ("policy", "margin"):
        assert summary["strategies"][name]["aulc_per_seed"] == row["strategies"][name]["aulc_per_seed"]


def test_topk_selection_reproduces_the_committed_dev_table_and_sequential_differs(tmp_path, data_root):
    """The dev-seed table ran the policy top-k: --policy-selection top-k gives its per-seed AULCs
    exactly; the default, sequential selection, picks differently on the same episodes."""
    committed = json.loads((REPO / "benchmarks" / "results" / "transfer_table_dev" / "table.json").read_text())
    row = committed["targets"]["omniglot_sanskrit_tagalog"]["strategies"]["policy"]["aulc_per_seed"]
    per_seed = {}
    for selection in ("top-k", "sequential"):
        out = tmp_path / selection
        result = transfer(tmp_path, "--preset", "omniglot_sanskrit_tagalog", "--policy", str(POLICY), "--data-root",
                          str(data_root), "--out", str(out), "--strategies", "policy", "--policy-selection", selection,
                          "--no-progress", "--device", "cpu")
        assert result.returncode == 0, result.stderr
        summary = json.loads((out / "summary.json").read_text())
        assert summary["config"]["policy_selection"] == selection
        per_seed[selection] = summary["strategies"]["policy"]["aulc_per_seed"]
    assert per_seed["top-k"] == row
    assert per_seed["sequential"] != row
