"""The W&B sweep files: every parameter is one the program takes, passed the way a sweep agent
passes it (wandb's own command builder); one grid cell run as an agent would run it, offline."""

import json
from pathlib import Path

import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from metaal.commands.meta_train import config_path
from metaal.config import load_config
from metaal.evaluate import REGIMES, TARGETS
from metaal.tracking import read_offline_run
from metaal.trainers import MetaTrainConfig
from tests.conftest import load_benchmark

REPO = Path(__file__).resolve().parents[1]


def agent_args(sweep: dict, chosen: dict) -> list[str]:
    """The flags an agent passes for one run: fixed values, and `chosen` for the swept ones."""
    values = {name: {"value": chosen.get(name, spec.get("value"))} for name, spec in sweep["parameters"].items()}
    macro = sweep["command"][-1].strip("${}")
    return create_sweep_command_args({"args": values})[macro]


def first_value(spec: dict):
    return spec["values"][0] if "values" in spec else spec.get("min", spec.get("value"))


def test_meta_train_sweep_sets_real_config_keys():
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "meta_train.yaml").read_text())
    assert (REPO / sweep["program"]).is_file() and sweep["metric"]["name"] == "best/val/aulc_policy"
    chosen = {name: first_value(spec) for name, spec in sweep["parameters"].items()}
    args = agent_args(sweep, chosen)
    assert "--no-progress" in args and "--config=default" in args
    overrides = [a for a in args if a not in ("--no-progress", "--config=default")]
    cfg = load_config(MetaTrainConfig, config_path("default"), overrides)  # an unknown key would raise
    assert cfg.trainer.lr == chosen["trainer.lr"] and cfg.policy.hidden == chosen["policy.hidden"]
    assert cfg.trainer.options["oracle"]["candidates"] == chosen["trainer.options.oracle.candidates"]
    assert cfg.wandb.group == "sweep-meta-train"


def test_grid_sweep_covers_the_grid_one_cell_per_run(tmp_path, data_root, monkeypatch):
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "transfer_grid.yaml").read_text())
    assert sweep["method"] == "grid" and (REPO / sweep["program"]).is_file()
    params = sweep["parameters"]
    assert params["targets"]["values"] == list(TARGETS) and params["regimes"]["values"] == list(REGIMES)
    for var in ("WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    args = agent_args(sweep, {"targets": "heart", "regimes": "balanced-k5", "wandb-mode": "offline"})
    grid = load_benchmark("transfer_grid")
    out = tmp_path / "grid"
    assert grid.main([*args, "--data-root", str(data_root), "--seeds", "3", "--reference-candidates", "0",
                      "--out", str(out)]) == 0
    cell = json.loads((out / "cells" / "heart__balanced-k5.json").read_text())
    (run_dir,) = (out / "wandb").glob("offline-run-*")
    run = read_offline_run(run_dir)
    assert (run["name"], run["group"]) == ("grid-heart-balanced-k5", "sweep-transfer-grid")
    assert run["config"]["target"] == "heart" and run["config"]["seeds"] == cell["settings"]["seeds"]
    policy = sum(cell["aulc"]["policy"]) / 3
    assert abs(run["summary"]["aulc/policy"] - policy) < 1e-9
    assert [a["name"] for a in run["logged"]] == ["grid-cell-heart__balanced-k5"]
