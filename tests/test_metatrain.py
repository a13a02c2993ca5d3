"""Meta-training: the trainers' objectives on problems with a known answer, a real smoke
run (checkpoint, logs, W&B offline run), resume after a killed run, and bad configs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from metaal.config import ConfigError, load_config
from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.errors import MetaalError
from metaal.features import SCHEMA
from metaal.learners import LogisticRegression
from metaal.loop import run_active_learning
from metaal.policy import PolicyNet, load_policy
from metaal.strategies import gumbel_top_k
from metaal.tracking import read_offline_run
from metaal.trainers import (
    MetaTrainConfig,
    MetaTrainer,
    discounted_returns,
    imitation_loss,
    plackett_luce_log_prob,
    regression_loss,
)
from metaal.trainers.config import SourceConfig

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "metaal" / "configs" / "smoke.yaml"
SCRIPT = REPO / "experiments" / "meta_train.py"
# A smoke run a little longer than the config's, so a kill lands mid-run.
RESUME_OVERRIDES = ["--trainer.steps", "8", "--checkpoint_every", "2", "--validation.every", "4"]


@pytest.fixture(autouse=True)
def isolated_wandb(tmp_path, monkeypatch):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_DIR"):
        monkeypatch.delenv(var, raising=False)
    for var in ("WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))


# ------------------------------------------------------------------ objectives on known problems

def toy_features(generator, batch=32, pool=20):
    """Pools whose per-sample value (the true gain) is revealed in the 'margin' column."""
    features = torch.rand(batch, pool, len(SCHEMA.names), generator=generator)
    return features, features[..., SCHEMA.index("margin")]


def test_plackett_luce_probabilities_sum_to_one():
    scores = torch.tensor([[0.3, -1.0, 2.0]])
    orders = [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    total = sum(plackett_luce_log_prob(scores, torch.tensor([o])).exp() for o in orders)
    assert torch.allclose(total, torch.ones(1))
    first = plackett_luce_log_prob(scores, torch.tensor([[2, 0]])).exp()
    p = scores.softmax(1)[0]
    assert torch.allclose(first, p[2] * p[0] / (1 - p[2]))


def test_discounted_returns_by_hand():
    gains = torch.tensor([[0.1, 0.2, 0.4]])
    assert torch.allclose(discounted_returns(gains, 0.5), torch.tensor([[0.1 + 0.1 + 0.1, 0.2 + 0.2, 0.4]]))
    assert torch.allclose(discounted_returns(gains, 0.0), gains)


def test_reinforce_learns_to_pick_what_pays():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    net = PolicyNet(hidden=16, context=False)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    available = torch.ones(32, 20, dtype=torch.bool)

    def expected_reward():
        features, value = toy_features(torch.Generator().manual_seed(99))
        picked = net(features, available).topk(3, 1).indices
        return value.gather(1, picked).mean().item()

    before = expected_reward()
    for _ in range(150):
        features, value = toy_features(g)
        scores = net(features, available)
        picked = gumbel_top_k(scores.detach(), 3, torch.rand(scores.shape, generator=g))
        reward = value.gather(1, picked).sum(1)
        advantage = reward - reward.mean()
        loss = -(advantage * plackett_luce_log_prob(scores, picked)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = expected_reward()
    # the best 3 of 20 uniform values average ~0.9; a random pick averages 0.5
    assert before < 0.7 and after > 0.8


@pytest.mark.parametrize("loss", ["listwise", "regression"])
def test_imitation_learns_the_oracle_ranking(loss):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    net = PolicyNet(hidden=16, context=False)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    available = torch.ones(32, 20, dtype=torch.bool)

    def top1_agreement():
        features, gains = toy_features(torch.Generator().manual_seed(98))
        return (net(features, available).argmax(1) == gains.argmax(1)).float().mean().item()

    before = top1_agreement()
    losses = []
    for _ in range(150):
        features, gains = toy_features(g)
        scores = net(features, available)
        loss = imitation_loss(scores, gains, tau=0.05) if loss == "listwise" else regression_loss(scores, gains)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before < 0.3 and top1_agreement() > 0.8
    assert sum(losses[-10:]) < sum(losses[:10])


def test_regression_loss_ignores_each_states_offset_and_the_gains_unit():
    gains = torch.tensor([[0.0, 0.1, 0.3], [0.2, 0.2, 0.5]])
    centred = gains - gains.mean(1, keepdim=True)
    perfect = centred / centred.std() + torch.tensor([[5.0], [-2.0]])  # any per-state offset
    assert regression_loss(perfect, gains).item() < 1e-10
    assert regression_loss(perfect, gains * 7).item() < 1e-10
    assert regression_loss(-perfect, gains).item() > 1


# ------------------------------------------------------------------ a real smoke run

@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("smoke")
    env = {**os.environ, "WANDB_DATA_DIR": str(out / "wandb-data"), "WANDB_CACHE_DIR": str(out / "wandb-cache"),
           "WANDB_CONFIG_DIR": str(out / "wandb-config")}
    env.pop("WANDB_API_KEY", None)
    env.pop("WANDB_MODE", None)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(SCRIPT), "--config", str(SMOKE), "--data-root", str(data_root),
                             "--out", str(out / "run"), "--no-progress", *RESUME_OVERRIDES,
                             "--wandb.group", "smoke-tests", "--wandb.tags", "[ci, smoke]"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    return out / "run", result, time.perf_counter() - start


def test_smoke_run_writes_a_loadable_policy_that_scores_a_pool(smoke_run, data_root):
    out, result, seconds = smoke_run
    assert seconds < 120
    assert "best validation AULC" in result.stdout and str(out / "policy.pt") in result.stdout
    policy = load_policy(out / "policy.pt", device="cpu")  # weights_only=True inside
    assert policy.info["config"]["trainer"]["name"] == "oracle"
    ds = load_dataset("mnist", data_root)
    episodes = EpisodeSampler(ds, EpisodeSpec(n_ways=5, pool_per_class=20, eval_per_class=20),
                              classes=[5, 6, 7, 8, 9]).sample_batch(range(3))
    result = run_active_learning(episodes, LogisticRegression(n_members=2), policy, rounds=3, k=4)
    assert result.selected.shape == (3, 3, 4)


def test_smoke_run_logs_curves(smoke_run):
    out, _, _ = smoke_run
    log = json.loads((out / "log.json").read_text())
    assert [s["step"] for s in log["steps"]] == list(range(8))
    assert all({"loss", "reward/aulc", "oracle/agreement"} <= set(s) for s in log["steps"])
    assert [v["step"] for v in log["validation"]] == [3, 7]
    assert {"val/aulc_policy", "val/aulc_margin", "val/aulc_random"} <= set(log["validation"][0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_val_aulc"] == max(v["val/aulc_policy"] for v in log["validation"])
    assert (out / "validation_curves.png").stat().st_size > 0


def test_smoke_run_wandb_offline_directory(smoke_run):
    out, _, _ = smoke_run
    run_dirs = list((out / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 1
    run = read_offline_run(run_dirs[0])
    assert run["config"]["trainer"]["name"] == "oracle" and run["config"]["loop"]["rounds"] == 4
    losses = [h["loss"] for h in run["history"] if "loss" in h]
    assert len(losses) == 8
    assert any("val/aulc_policy" in h for h in run["history"])
    # named from the config and seed, grouped and tagged as configured
    assert (run["name"], run["group"], run["tags"]) == ("oracle-logreg-mnist-s0", "smoke-tests", ["ci", "smoke"])
    # the summary holds the best validation values, not the last
    summary = json.loads((out / "summary.json").read_text())
    best = max(json.loads((out / "log.json").read_text())["validation"], key=lambda v: v["val/aulc_policy"])
    assert run["summary"]["best/val/aulc_policy"] == summary["best_val_aulc"] == best["val/aulc_policy"]
    assert run["summary"]["best/step"] == best["step"]
    # per-run artifacts: the policy at each new best, the checkpoint each time it is written
    policy, checkpoint = f"policy-{run['run_id']}", f"checkpoint-{run['run_id']}"
    versions = {name: [a for a in run["logged"] if a["name"] == name] for name in (policy, checkpoint)}
    assert 1 <= len(versions[policy]) <= 2 and all(set(a["aliases"]) == {"best", "latest"} for a in versions[policy])
    assert [set(a["aliases"]) for a in versions[checkpoint]] == [{"latest", f"step-{s}"} for s in (2, 4, 6, 8)]
    assert load_policy(out / "policy.pt", device="cpu").info["wandb_artifact"] == policy
    # every version's bytes inside the run folder, nothing staged outside it
    copies = sorted(p.relative_to(run_dirs[0]) for p in run_dirs[0].glob("artifacts/*/*/*"))
    assert len(copies) == len(versions[policy]) + 4 and Path(f"artifacts/{checkpoint}/3/checkpoint.pt") in copies
    assert not list((out.parent / "wandb-data").rglob("*.pt"))


def test_transfer_run_uses_the_policy_artifact(smoke_run, tmp_path, data_root):
    """Lineage: the transfer run's input is the meta-training run's policy artifact (same
    name, same digest); its summary holds the paired comparisons."""
    out, _, _ = smoke_run
    env = {**os.environ, "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), "WANDB_CONFIG_DIR": str(tmp_path / "wc")}
    result = subprocess.run([sys.executable, "-m", "metaal", "transfer", "--policy", str(out / "policy.pt"),
                             "--dataset", "kmnist", "--data-root", str(data_root), "--out", str(tmp_path / "t"),
                             "--strategies", "policy,margin", "--seeds", "3", "--rounds", "2", "--k", "3",
                             "--pool-per-class", "10", "--eval-per-class", "10", "--wandb-mode", "offline",
                             "--wandb-group", "smoke-tests", "--no-progress"], capture_output=True, text=True,
                            env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    train = read_offline_run(next((out / "wandb").glob("offline-run-*")))
    transfer = read_offline_run(next((tmp_path / "t" / "wandb").glob("offline-run-*")))
    best = [a for a in train["logged"] if a["name"] == f"policy-{train['run_id']}"][-1]
    assert [(a["name"], a["digest"]) for a in transfer["used"]] == [(best["name"], best["digest"])]
    assert transfer["name"] == "transfer-kmnist-k3-s0" and transfer["group"] == "smoke-tests"
    comparison = json.loads((tmp_path / "t" / "summary.json").read_text())["comparisons"][0]
    for field in ("mean_difference", "ci_low", "ci_high", "wins", "ties", "losses"):
        assert transfer["summary"][f"paired/policy_vs_margin/{field}"] == pytest.approx(comparison[field])
    assert transfer["config"]["dataset_name"] == "kmnist"


def test_policy_gradient_smoke_runs(tmp_path, data_root):
    cfg = load_config(MetaTrainConfig, SMOKE, ["--trainer.name", "reinforce", "--trainer.steps", "3",
                                               "--validation.every", "3", "--wandb.mode", "disabled"])
    summary = MetaTrainer(cfg, tmp_path / "run", data_root=data_root).run(progress=False)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert len(log["steps"]) == 3 and all("reward/aulc_vs_margin" in s and s["grad_norm"] > 0 for s in log["steps"])
    assert summary["best_val_aulc"] > 0
    assert not (tmp_path / "run" / "wandb").exists()


@pytest.mark.parametrize("trainer", ["oracle", "reinforce"])
def test_small_cnn_by_name_runs_both_trainers(tmp_path, data_root, trainer):
    """Any registered learner works with both trainers: neither differentiates through a fit."""
    cfg = load_config(MetaTrainConfig, SMOKE, [
        "--learner.name", "cnn", "--learner.options.cnn", "{steps: 2, mc_passes: 2}", "--trainer.name", trainer,
        "--trainer.steps", "2", "--trainer.episodes_per_step", "2", "--trainer.options.oracle.candidates", "3",
        "--validation.every", "2", "--validation.seeds", "2", "--wandb.mode", "disabled"])
    trainer_run = MetaTrainer(cfg, tmp_path / "run", data_root=data_root)
    assert type(trainer_run.learner).__name__ == "SmallCNN"
    summary = trainer_run.run(progress=False)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert len(log["steps"]) == 2 and all(s["grad_norm"] > 0 for s in log["steps"])
    assert summary["best_val_aulc"] > 0
    policy = load_policy(tmp_path / "run" / "policy.pt", device="cpu")
    assert policy.info["learner"] == {"name": "cnn", "steps": 2, "batch_size": 64, "stop_loss": 0.05,
                                      "warm_start": True, "lr": 3e-3, "weight_decay": 1e-4, "dropout": 0.25,
                                      "mc_passes": 2}


def test_validation_picks_as_validation_policy_selection_says(tmp_path, data_root, monkeypatch):
    """Validation (which chooses the kept policy) scores it top-k by default, sequentially when
    asked: the selection a loaded policy uses."""
    from metaal.trainers import runner
    seen = []

    class Recording(runner.PolicyStrategy):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            seen.append(self.sequential)

    monkeypatch.setattr(runner, "PolicyStrategy", Recording)
    for overrides in ([], ["--validation.policy_selection", "sequential"]):
        cfg = load_config(MetaTrainConfig, SMOKE, [*overrides, "--validation.seeds", "2", "--wandb.mode", "disabled"])
        metrics, _ = MetaTrainer(cfg, tmp_path / str(len(overrides)), data_root=data_root).validate()
        assert metrics["val/aulc_policy"] > 0
    assert seen == [False, True]


@pytest.mark.parametrize("selection", ["top-k", "sequential"])
def test_synthetic_source_with_its_own_episode_shape(tmp_path, data_root, selection):
    """A mix of a real source and binary synthetic tasks with their own rounds and k, with
    either rollout selection of the oracle trainer."""
    cfg = load_config(MetaTrainConfig, SMOKE, [
        "--trainer.steps", "4", "--validation.every", "4", "--wandb.mode", "disabled",
        "--trainer.options.oracle.loss", "regression", "--trainer.options.oracle.top_candidates", "0.5",
        "--trainer.options.oracle.selection", selection])
    cfg.data.sources.append(SourceConfig(dataset="synthetic", n_ways=2, rounds=6, k=2))
    trainer = MetaTrainer(cfg, tmp_path / "run", data_root=data_root)
    trainer.run(progress=False)
    log = json.loads((tmp_path / "run" / "log.json").read_text())
    assert len(log["steps"]) == 4 and all(torch.isfinite(torch.tensor(s["loss"])) for s in log["steps"])
    binary = trainer.sources[1].sample_batch([0])
    assert binary.classes.shape == (1, 2) and binary.pool_x.shape[1] == 2 * cfg.episode.pool_per_class


def test_fine_tuning_starts_from_the_given_policy(tmp_path, data_root, smoke_run):
    start = smoke_run[0] / "policy.pt"  # hidden 16, context, per smoke.yaml
    cfg = load_config(MetaTrainConfig, SMOKE, ["--trainer.name", "reinforce", "--trainer.steps", "1",
                                               "--validation.every", "1", "--wandb.mode", "disabled",
                                               "--policy.init_from", str(start)])
    trainer = MetaTrainer(cfg, tmp_path / "run", data_root=data_root)
    before = load_policy(start, device="cpu").net.state_dict()
    assert all(torch.equal(v.cpu(), before[k]) for k, v in trainer.net.state_dict().items())
    trainer.run(progress=False)
    assert any(not torch.equal(v.cpu(), before[k]) for k, v in trainer.net.state_dict().items())

    wider = load_config(MetaTrainConfig, SMOKE, ["--policy.hidden", "32", "--policy.init_from", str(start)])
    with pytest.raises(ConfigError, match="set policy.hidden and policy.context to match it"):
        MetaTrainer(wider, tmp_path / "wider", data_root=data_root)
    missing = load_config(MetaTrainConfig, SMOKE, ["--policy.init_from", str(tmp_path / "nope.pt")])
    with pytest.raises(MetaalError, match="no policy checkpoint at"):
        MetaTrainer(missing, tmp_path / "missing", data_root=data_root)


def test_fine_tuning_the_shipped_policy_keeps_schema_v1(tmp_path, data_root):
    """The shipped policy reads feature schema v1, the one schema; fine-tuned, it still does, and
    its checkpoint says so. A new policy reads it too: `policy.features` (v2) is gone."""
    shipped = REPO / "metaal" / "policies" / "linear.pt"
    cfg = load_config(MetaTrainConfig, SMOKE, ["--trainer.steps", "1", "--validation.every", "1",
                                               "--wandb.mode", "disabled", "--policy.hidden", "64",
                                               "--policy.init_from", str(shipped)])
    MetaTrainer(cfg, tmp_path / "run", data_root=data_root).run(progress=False)
    tuned = load_policy(tmp_path / "run" / "policy.pt", device="cpu")
    assert tuned.schema == SCHEMA and tuned.net.hparams["n_features"] == len(SCHEMA.names) == 11
    plain = load_config(MetaTrainConfig, SMOKE, ["--wandb.mode", "disabled"])
    assert MetaTrainer(plain, tmp_path / "new", data_root=data_root).net.schema == SCHEMA
    with pytest.raises(ConfigError, match="unknown key 'policy.features'"):
        load_config(MetaTrainConfig, SMOKE, ["--policy.features", "1"])


# ------------------------------------------------------------------ resume

def test_killed_run_resumes_from_its_checkpoint(tmp_path, data_root, smoke_run):
    out = tmp_path / "run"
    cmd = [sys.executable, str(SCRIPT), "--config", str(SMOKE), "--data-root", str(data_root), "--out", str(out),
           "--no-progress", *RESUME_OVERRIDES]
    env = {**os.environ}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for a checkpoint past the first one, then kill hard
        ckpt = out / "checkpoint.pt"
        if ckpt.exists() and torch.load(ckpt, weights_only=True)["step"] >= 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["step"]
    assert 4 <= killed_at < 8, "the run should have been killed mid-way"

    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert again.returncode == 2 and "pass --resume" in again.stderr  # no silent overwrite

    resumed = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    log = json.loads((out / "log.json").read_text())
    assert [s["step"] for s in log["steps"]] == list(range(8))  # nothing lost, nothing twice
    # every step is seeded by (seed, step): the resumed run ends exactly where an uninterrupted one does
    reference = json.loads((smoke_run[0] / "log.json").read_text())
    assert [s["loss"] for s in log["steps"]] == pytest.approx([s["loss"] for s in reference["steps"]], rel=1e-5)
    a = torch.load(out / "checkpoint.pt", weights_only=True)["net"]
    b = torch.load(smoke_run[0] / "checkpoint.pt", weights_only=True)["net"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_with_another_config_is_refused(tmp_path, data_root):
    cfg = load_config(MetaTrainConfig, SMOKE, ["--trainer.steps", "2", "--wandb.mode", "disabled"])
    MetaTrainer(cfg, tmp_path / "run", data_root=data_root).run(progress=False)
    changed = load_config(MetaTrainConfig, SMOKE, ["--trainer.steps", "4", "--trainer.lr", "0.01",
                                                   "--wandb.mode", "disabled"])
    with pytest.raises(ConfigError, match=r"config differs .* in \['trainer'\]"):
        MetaTrainer(changed, tmp_path / "run", data_root=data_root).run(resume=True, progress=False)


# ------------------------------------------------------------------ bad configs

def run_script(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True)


@pytest.mark.e2e
def test_unknown_key_names_it(tmp_path):
    result = run_script("--config", str(SMOKE), "--trainer.lrr", "0.1", "--out", str(tmp_path))
    assert result.returncode == 2
    assert "unknown key 'trainer.lrr'" in result.stderr and "did you mean 'lr'" in result.stderr


@pytest.mark.e2e
def test_bad_value_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(SMOKE.read_text().replace("name: oracle", "name: ppo"))
    result = run_script("--config", str(bad), "--out", str(tmp_path / "o"))
    assert result.returncode == 2
    assert "'trainer': unknown trainer 'ppo'; choose from oracle, reinforce" in result.stderr


def test_validation_classes_must_be_held_out(tmp_path, data_root):
    cfg = load_config(MetaTrainConfig, SMOKE, ["data.sources=[{dataset: mnist, held_out: [5, 6, 7, 8]}]"])
    with pytest.raises(ConfigError, match=r"validation classes \['9'\] of mnist are also meta-training classes"):
        MetaTrainer(cfg, tmp_path, data_root=data_root)


def test_help_config_lists_keys():
    result = run_script("--help-config")
    assert result.returncode == 0 and "candidates" in result.stdout and "oracle" in result.stdout
