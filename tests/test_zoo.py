"""The policies shipped inside metaal: loaded by name, described by `metaal policies`, each
retrained by its shipped config, and matched to the learner in use."""

import json
import shutil

import numpy as np
import pytest
import torch

import metaal
from metaal import zoo
from metaal.__main__ import main as metaal_main
from metaal.config import load_config
from metaal.errors import CheckpointError, InputError
from metaal.policy import PolicyLoadError, load_policy, matched_policy, policy_pairing, shipped_learner
from metaal.trainers import MetaTrainConfig, MetaTrainer

# A shipped config at smoke size: two steps visit its first two sources, small episodes.
SMOKE_SIZE = ["--trainer.steps", "2", "--trainer.episodes_per_step", "2", "--trainer.options.oracle.candidates", "4",
              "--validation.every", "2", "--validation.seeds", "2", "--episode.pool_per_class", "20",
              "--episode.eval_per_class", "20", "--loop.rounds", "3", "--wandb.mode", "disabled", "--device", "cpu",
              "--checkpoint_every", "2"]


def test_each_shipped_policy_loads_by_name_with_its_learner_and_config():
    assert set(zoo.SHIPPED) == {"linear", "kernel"}
    for name, entry in zoo.SHIPPED.items():
        policy = load_policy(name, device="cpu")
        assert policy.info["shipped"]["config"] == entry.config
        assert (zoo.POLICY_DIR.parent / "configs" / f"{entry.config}.yaml").is_file()
        assert policy.info["path"] == str(entry.path)
    assert shipped_learner("linear") == "logreg" and shipped_learner("kernel") == "rff_logreg"
    assert matched_policy("logreg") == "linear" and matched_policy({"name": "rff_logreg"}) == "kernel"


def test_a_name_and_its_file_give_the_same_network():
    by_name, by_path = load_policy("kernel", device="cpu"), load_policy(zoo.SHIPPED["kernel"].path, device="cpu")
    a, b = by_name.net.state_dict(), by_path.net.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert "shipped" not in by_path.info  # a path is a file, whatever it holds


@pytest.mark.parametrize("name", list(zoo.SHIPPED))
def test_the_shipped_config_retrains_bit_identically_with_the_same_seed(name, tmp_path, data_root):
    config = zoo.POLICY_DIR.parent / "configs" / f"{zoo.SHIPPED[name].config}.yaml"
    weights = []
    for run in ("a", "b"):
        MetaTrainer(load_config(MetaTrainConfig, config, SMOKE_SIZE), tmp_path / run, data_root=data_root).run(
            progress=False)
        trained = load_policy(tmp_path / run / "policy.pt", device="cpu")
        assert trained.info["learner"]["name"] == shipped_learner(name)  # it trains a policy for that learner
        weights.append(trained.net.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    other_seed = load_config(MetaTrainConfig, config, [*SMOKE_SIZE, "--seed", "1"])
    MetaTrainer(other_seed, tmp_path / "c", data_root=data_root).run(progress=False)
    third = load_policy(tmp_path / "c" / "policy.pt", device="cpu").net.state_dict()
    assert any(not torch.equal(weights[0][k], third[k]) for k in third)  # the seed matters: the test can fail


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(PolicyLoadError, match="no shipped policy is named 'lineer'; shipped: linear, kernel"):
        load_policy("lineer")


def test_a_damaged_or_missing_shipped_file_says_reinstall(tmp_path, monkeypatch):
    for name in zoo.SHIPPED:
        shutil.copy(zoo.SHIPPED[name].path, tmp_path / f"{name}.pt")
    monkeypatch.setattr(zoo, "POLICY_DIR", tmp_path)
    (tmp_path / "kernel.pt").unlink()
    with pytest.raises(CheckpointError, match="'kernel' is missing from this metaal install.*reinstall metaal"):
        load_policy("kernel")
    with open(tmp_path / "linear.pt", "ab") as f:
        f.write(b"\0")
    with pytest.raises(CheckpointError, match="'linear' .* is damaged or was replaced"):
        load_policy("linear")


def test_a_learner_without_a_shipped_policy_says_so():
    with pytest.raises(InputError, match="no shipped policy is meta-trained for the learner 'cnn'.*--policy"):
        matched_policy("cnn")


def test_a_mismatched_pairing_warns_naming_the_matched_policy(capsys):
    linear = load_policy("linear", device="cpu")
    record = policy_pairing("linear", linear, {"name": "rff_logreg"})
    assert record == {"policy": "linear", "policy_learner": "logreg", "learner": "rff_logreg", "matched": False,
                      "matched_policy": "kernel"}
    assert "the shipped policy for rff_logreg is 'kernel'" in capsys.readouterr().err
    assert policy_pairing("linear", linear, {"name": "logreg"})["matched"]
    assert capsys.readouterr().err == ""


def test_metaal_policies_lists_each_with_its_learner_config_and_benchmark(capsys):
    assert metaal_main(["policies", "--json"]) == 0
    listed = {d["name"]: d for d in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(zoo.SHIPPED)
    assert listed["kernel"]["learner"]["name"] == "rff_logreg" and listed["kernel"]["config"].endswith("kernel.yaml")
    assert listed["linear"]["feature_schema"]["names"][0] == "entropy"
    assert listed["linear"]["size_bytes"] == zoo.SHIPPED["linear"].path.stat().st_size
    assert "30000-30049" in listed["linear"]["benchmark"]
    assert metaal_main(["policies"]) == 0
    assert "trained by metaal meta-train --config kernel" in capsys.readouterr().out
    assert metaal_main(["policies", "nope"]) == 2
    assert "shipped: linear, kernel" in capsys.readouterr().err


def test_transfer_without_a_policy_uses_the_one_matched_to_the_learner(tmp_path, data_root, capsys):
    small = ["--dataset", "checkerboard2x2", "--data-root", str(data_root), "--seeds", "2", "--rounds", "2", "--k", "2",
             "--pool-per-class", "10", "--eval-per-class", "10", "--strategies", "policy,margin", "--no-progress",
             "--wandb-mode", "disabled"]
    assert metaal_main(["transfer", *small, "--learner", "rff_logreg", "--out", str(tmp_path / "a")]) == 0
    pairing = json.loads((tmp_path / "a" / "summary.json").read_text())["policy_pairing"]
    assert pairing == {"policy": "kernel", "policy_learner": "rff_logreg", "learner": "rff_logreg", "matched": True,
                       "matched_policy": "kernel"}
    capsys.readouterr()
    assert metaal_main(["transfer", *small, "--policy", "linear", "--learner", "rff_logreg",
                        "--out", str(tmp_path / "b")]) == 0
    assert "warning: the policy 'linear' was meta-trained with the learner logreg" in capsys.readouterr().err
    assert not json.loads((tmp_path / "b" / "summary.json").read_text())["policy_pairing"]["matched"]
    assert metaal_main(["transfer", *small, "--learner", "cnn", "--out", str(tmp_path / "c")]) == 2
    assert "no shipped policy is meta-trained for the learner 'cnn'" in capsys.readouterr().err


EMBEDDING_WIDTH = 48


def test_embeddings_from_a_backbone_run_as_a_dataset_with_the_linear_policy(tmp_path, data_root):
    """Frozen embeddings as an .npz: the linear head standardises them and keeps their top 64
    principal components (all 48 here), and the linear policy transfers to them."""
    mnist = metaal.data.load_dataset("mnist", data_root)
    backbone = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 5, stride=3), torch.nn.ReLU(), torch.nn.Flatten(),
                                   torch.nn.LazyLinear(EMBEDDING_WIDTH))
    torch.manual_seed(0)
    with torch.no_grad():
        embed = lambda x: backbone(x).numpy()  # noqa: E731
        np.savez(tmp_path / "embedded.npz", X=embed(mnist.train.X[:600]), y=mnist.train.y[:600].numpy(),
                 X_test=embed(mnist.test.X[:300]), y_test=mnist.test.y[:300].numpy())
    out = tmp_path / "t"
    assert metaal_main(["transfer", "--policy", "linear", "--dataset", str(tmp_path / "embedded.npz"), "--out",
                        str(out), "--seeds", "2", "--rounds", "2", "--k", "3", "--pool-per-class", "20",
                        "--eval-per-class", "10", "--no-progress", "--wandb-mode", "disabled"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["policy_pairing"]["matched"] and summary["config"]["task"]["learner"]["name"] == "logreg"
