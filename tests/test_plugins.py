"""Extending metaal without touching its files: a plug-in module registers a dataset, a
learner and a strategy, and the scripts use them by name (experiments/plugins/example.py)."""

import json
import os
import subprocess
import sys

import pytest
import torch

import metaal
from metaal.data import DATASETS, TaskSpec, load_dataset
from metaal.errors import InputError
from metaal.learners import LEARNERS, LogisticRegression, learner_spec, make_learner, register_learner
from metaal.policy import load_policy
from metaal.registry import Registry, load_plugins
from metaal.strategies import STRATEGIES, make_strategy
from metaal.trainers import TRAINERS
from tests.conftest import REPO

PLUGIN = REPO / "experiments" / "plugins" / "example.py"


@pytest.fixture(autouse=True)
def restore_registries():
    """What a test registers in this process stays in that test: later tests (the grid's default
    baselines, spawned workers) see only metaal's own strategies, learners, datasets, trainers."""
    saved = [(registry, dict(registry._items)) for registry in (STRATEGIES, LEARNERS, DATASETS, TRAINERS)]
    yield
    for registry, items in saved:
        registry._items = items
    sys.modules.pop(PLUGIN.stem, None)  # so that the next test's load_plugins imports it afresh


def run(script, *args, cwd=REPO):
    env = {**os.environ, "WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, str(REPO / script), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.mark.e2e
def test_transfer_runs_the_plugins_dataset_learner_and_strategy(tmp_path):
    out = tmp_path / "out"
    result = run("experiments/transfer.py", "--plugins", PLUGIN, "--dataset", "quadrants", "--strategies",
                 "density_margin,margin,random", "--learner", "{name: nearest_centroid, temperature: 0.5}",
                 "--seeds", "3", "--rounds", "5", "--k", "2", "--pool-per-class", "30", "--eval-per-class", "50",
                 "--out", out, "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["strategies"]) == {"density_margin", "margin", "random"}
    assert summary["config"]["task"]["learner"] == {"name": "nearest_centroid", "temperature": 0.5}
    assert summary["config"]["spec"]["n_ways"] == 4 and summary["config"]["dataset_name"] == "quadrants"
    assert all(0.25 < s["aulc_mean"] <= 1 for s in summary["strategies"].values())


@pytest.mark.e2e
def test_meta_training_on_the_plugins_dataset_with_its_learner(tmp_path):
    config = tmp_path / "plugin.yaml"
    config.write_text("""
device: cpu
checkpoint_every: 1
data:
  sources: [{dataset: quadrants, held_out: [SW, SE]}]
  validation: {dataset: quadrants, classes: [SW, SE]}
episode: {n_ways: 2, pool_per_class: 20, eval_per_class: 30}
loop: {rounds: 3, k: 2}
learner: {name: nearest_centroid, options: {nearest_centroid: {temperature: 0.5}}}
policy: {hidden: 8}
trainer: {name: oracle, steps: 2, episodes_per_step: 2, options: {oracle: {candidates: 4}}}
validation: {every: 2, seeds: 2, baselines: [density_margin, margin]}
wandb: {mode: disabled}
""")
    out = tmp_path / "run"
    result = run("experiments/meta_train.py", "--plugins", PLUGIN, "--config", config, "--out", out, "--no-progress")
    assert result.returncode == 0, result.stderr
    policy = load_policy(out / "policy.pt", device="cpu")
    assert policy.info["learner"] == {"name": "nearest_centroid", "temperature": 0.5}
    assert policy.info["tasks"]["sources"][0]["dataset"] == "quadrants"
    assert policy.info["tasks"]["validation"]["classes"] == ["SW", "SE"]
    assert "val/aulc_density_margin" in json.loads((out / "log.json").read_text())["validation"][0]


@pytest.mark.e2e
def test_a_plugin_name_is_unknown_without_the_plugin(tmp_path):
    result = run("experiments/transfer.py", "--dataset", "quadrants", "--strategies", "margin", "--out", tmp_path / "o")
    assert result.returncode == 2 and "unknown dataset 'quadrants'" in result.stderr


def test_plugins_load_in_process_and_register_by_name():
    load_plugins(str(PLUGIN))
    assert {"quadrants" in DATASETS, "nearest_centroid" in LEARNERS, "density_margin" in STRATEGIES} == {True}
    dataset = load_dataset("quadrants")
    assert dataset.num_classes == 4 and dataset.class_names[2] == "SW"
    task = TaskSpec("quadrants", n_ways=2, pool_per_class=10, eval_per_class=10, rounds=2, k=2,
                    learner={"name": "nearest_centroid"})
    sampler, notes = task.sampler()
    episodes = sampler.sample_batch(range(2))
    from metaal.loop import run_active_learning
    result = run_active_learning(episodes, make_learner(task.learner), make_strategy("density_margin"), 2, 2)
    assert result.selected.shape == (2, 2, 2) and notes == []


def test_a_plugin_file_loaded_twice_registers_its_names_once():
    # a script imports --plugins before parsing, and a grid cell run in the same process again
    load_plugins(str(PLUGIN))
    load_plugins(str(PLUGIN))
    assert "density_margin" in STRATEGIES


def test_plugin_modules_that_do_not_import_are_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="cannot import 'no_such_module'"):
        load_plugins("no_such_module")
    with pytest.raises(InputError, match="no file"):
        load_plugins(str(tmp_path / "missing.py"))


def test_registry_refuses_a_taken_name_and_suggests_a_close_one():
    registry = Registry("widget")
    registry.register("margin", int)
    with pytest.raises(InputError, match="a widget named 'margin' is already registered"):
        registry.register("margin", float)
    registry.register("margin", float, replace=True)
    with pytest.raises(InputError, match="unknown widget 'margn'.*did you mean 'margin'"):
        registry.get("margn")
    with pytest.raises(InputError, match="must be a word"):
        registry.register("two words", int)


def test_decorators_register_under_the_given_name():
    @metaal.register_strategy("test_first_sample")
    class FirstSample(metaal.Strategy):
        def score(self, ctx):
            return -torch.arange(ctx.available.shape[1], dtype=torch.float).expand(ctx.available.shape)

    assert make_strategy("test_first_sample").name == "test_first_sample"
    with pytest.raises(InputError, match="unknown strategy 'test_frist_sample'.*did you mean 'test_first_sample'"):
        make_strategy("test_frist_sample")


def test_learner_specs_fill_defaults_and_refuse_unknown_options():
    assert learner_spec("logreg") == {"name": "logreg", "l2": 1e-3, "steps": 100, "n_members": 8,
                                      "n_components": 64}
    assert learner_spec({"name": "cnn", "steps": 3})["steps"] == 3
    with pytest.raises(InputError, match="learner 'logreg' has no option 'step'.*did you mean 'steps'"):
        learner_spec({"name": "logreg", "step": 3})
    with pytest.raises(InputError, match="without a name"):
        learner_spec({"steps": 3})


def test_a_learner_extending_another_accepts_its_parents_options():
    class WiderLogReg(LogisticRegression):  # a plug-in's pattern: its own options, the rest passed on
        def __init__(self, width: int = 2, **options):
            super().__init__(**options)
            self.width = width

    register_learner("test_wider_logreg", WiderLogReg, replace=True)
    spec = learner_spec({"name": "test_wider_logreg", "width": 3, "steps": 7})
    assert spec == {"name": "test_wider_logreg", "width": 3, "l2": 1e-3, "steps": 7, "n_members": 8,
                    "n_components": 64}
    learner = make_learner(spec)
    assert (learner.width, learner.steps) == (3, 7)
    with pytest.raises(InputError, match="has no option 'stepz'.*did you mean 'steps'"):
        learner_spec({"name": "test_wider_logreg", "stepz": 3})
