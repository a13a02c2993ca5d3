"""The policy network, its use as a strategy, and its checkpoints."""

import pytest
import torch

from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.features import SCHEMA
from metaal.policy import PolicyLoadError, PolicyNet, PolicyStrategy, load_policy, save_policy
from metaal.strategies import make_strategy
from tests.test_strategies import make_context  # a real context: logreg fitted on MNIST episodes


@pytest.fixture(scope="module")
def ctx(data_root):
    ds = load_dataset("mnist", data_root)
    batch = EpisodeSampler(ds, EpisodeSpec(n_ways=5, pool_per_class=40, eval_per_class=5)).sample_batch(range(3))
    return make_context(batch)


def test_scores_every_pool_sample(ctx):
    net = PolicyNet()
    scores = PolicyStrategy(net).score(ctx)
    assert scores.shape == ctx.available.shape and torch.isfinite(scores).all()


def test_context_makes_scores_depend_on_the_rest_of_the_pool(ctx):
    torch.manual_seed(0)
    net = PolicyNet(context=True)
    full = net(ctx.features, ctx.available)
    fewer = ctx.available.clone()
    fewer[:, 100:] = False
    assert not torch.allclose(full[:, :100], net(ctx.features, fewer)[:, :100])
    without = PolicyNet(context=False)
    assert torch.allclose(without(ctx.features, ctx.available)[:, :100], without(ctx.features, fewer)[:, :100])


def test_a_checkpoint_with_the_removed_attention_is_refused_by_name(tmp_path, ctx):
    """policy.attention was tried and not kept (RESEARCH_LOG.md, pool_attention): a checkpoint
    that turns it on is refused, saying so; one that records it off is the network it always was."""
    net = PolicyNet(hidden=16)
    save_policy(net, tmp_path / "p.pt")
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    payload["hparams"]["attention"] = True
    payload["state_dict"] |= {"query.weight": torch.zeros(16, 16), "key.weight": torch.zeros(16, 16)}
    torch.save(payload, tmp_path / "attention.pt")
    with pytest.raises(PolicyLoadError, match=r"attention=True, an option this metaal .* removed.*"
                                              r"RESEARCH_LOG.md, row pool_attention"):
        load_policy(tmp_path / "attention.pt")
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    payload["hparams"]["attention"] = False
    torch.save(payload, tmp_path / "off.pt")
    loaded = load_policy(tmp_path / "off.pt", device="cpu")
    assert "attention" not in loaded.net.hparams and torch.equal(loaded.score(ctx), PolicyStrategy(net).score(ctx))


def test_margin_initialisation_selects_like_margin(ctx):
    policy = PolicyStrategy(PolicyNet().init_as_heuristic("margin", sign=-1.0))
    picked = policy.query(ctx, 5).indices.sort(1).values
    assert torch.equal(picked, make_strategy("margin").query(ctx, 5).indices.sort(1).values)


def test_selection_respects_the_strategy_contract(ctx):
    policy = PolicyStrategy(PolicyNet())
    picked = policy.query(ctx, 7).indices
    for row, available in zip(picked, ctx.available):
        assert row.unique().numel() == 7 and available[row].all()
    remaining = int(ctx.available.sum(1).min())
    with pytest.raises(ValueError, match=f"only {remaining} unlabeled"):
        policy.query(ctx, remaining + 1)


def test_wrong_feature_count_is_a_clear_error(ctx):
    with pytest.raises(ValueError, match="expects 11 features per sample, got 3"):
        PolicyNet()(ctx.features[..., :3], ctx.available)


def test_checkpoint_roundtrip_with_weights_only(tmp_path, ctx):
    net = PolicyNet(hidden=32)
    save_policy(net, tmp_path / "p.pt", config={"trainer": {"lr": 0.001}}, info={"step": 7})
    payload = torch.load(tmp_path / "p.pt", weights_only=True)  # plain data and tensors only
    assert payload["feature_schema"] == SCHEMA.to_dict() and payload["metaal_version"]
    policy = load_policy(tmp_path / "p.pt", device="cpu")
    assert policy.info["step"] == 7 and policy.info["config"]["trainer"]["lr"] == 0.001
    assert torch.equal(policy.score(ctx), PolicyStrategy(net).score(ctx))


def test_missing_truncated_and_foreign_files_are_refused(tmp_path):
    with pytest.raises(PolicyLoadError, match="no policy checkpoint at"):
        load_policy(tmp_path / "nothing.pt")
    save_policy(PolicyNet(), tmp_path / "p.pt")
    data = (tmp_path / "p.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(PolicyLoadError, match="cut.pt is not a readable policy checkpoint"):
        load_policy(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(PolicyLoadError, match="not a metaal policy checkpoint"):
        load_policy(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    with pytest.raises(PolicyLoadError, match="text.pt is not a readable policy checkpoint"):
        load_policy(tmp_path / "text.pt")


def test_incompatible_schema_is_refused_with_the_reason(tmp_path):
    save_policy(PolicyNet(), tmp_path / "p.pt")
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    payload["feature_schema"] = {"version": 0, "names": ["entropy", "margin"]}
    torch.save(payload, tmp_path / "old.pt")
    refusal = r"feature schema v0 \['entropy', 'margin'\].*computes v1 \['entropy', .*'inv_num_classes'\]. Retrain"
    with pytest.raises(PolicyLoadError, match=refusal):
        load_policy(tmp_path / "old.pt")
    payload = torch.load(tmp_path / "p.pt", weights_only=True)
    payload["hparams"]["hidden"] = 8
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(PolicyLoadError, match="do not fit the policy network"):
        load_policy(tmp_path / "mismatch.pt")


def test_a_checkpoint_of_the_removed_schema_v2_is_refused_by_name(tmp_path):
    """Feature schema v2 (v1's 11 features and three more) was tried and not kept (RESEARCH_LOG.md,
    schema_v2): a policy trained on it is refused, saying so; one whose network reads another
    number of features than its schema v1 is inconsistent. The shipped policies read v1."""
    v2_names = list(SCHEMA.names) + ["embedding_norm", "expected_gradient_length", "pool_predicted_share"]
    save_policy(PolicyNet(hidden=16), tmp_path / "v1.pt")
    payload = torch.load(tmp_path / "v1.pt", weights_only=True)
    wide = PolicyNet(n_features=14, hidden=16)
    payload |= {"feature_schema": {"version": 2, "names": v2_names}, "hparams": dict(wide.hparams),
                "state_dict": wide.state_dict()}
    torch.save(payload, tmp_path / "v2.pt")
    with pytest.raises(PolicyLoadError, match=r"v2.pt was trained on feature schema v2 \(14 features\), which this "
                                              r"metaal .* removed: it was tried and not kept \(RESEARCH_LOG.md, row "
                                              r"schema_v2\). Load it with the metaal of the git tag research-archive"):
        load_policy(tmp_path / "v2.pt")
    payload["feature_schema"] = SCHEMA.to_dict()  # 14 inputs claiming v1's 11 features
    torch.save(payload, tmp_path / "inconsistent.pt")
    with pytest.raises(PolicyLoadError, match="reads 14 features, its feature schema v1 has 11; the checkpoint is "
                                              "inconsistent"):
        load_policy(tmp_path / "inconsistent.pt")
    with pytest.raises(ValueError, match=r"a network of 14 features reads no feature schema of this metaal "
                                         r"\(v1 has 11\)"):
        save_policy(wide, tmp_path / "wide.pt")
    for name in ("linear", "kernel"):
        policy = load_policy(name, device="cpu")
        assert policy.schema == SCHEMA and policy.net.hparams["n_features"] == 11


def test_sequential_policy_counts_its_picks_as_labeled(ctx):
    """A policy that wants the classes least represented in the labeled set: scored once, its
    20 picks all fall in the (tied) least-labeled predicted classes; picked one at a time, each
    pick counts (with its predicted class) and the picks spread over all 5 classes."""
    net = PolicyNet(hidden=8).init_as_heuristic("predicted_class_share", sign=-1.0, scale=10.0)

    def classes_picked(sequential: bool) -> list[int]:
        picks = PolicyStrategy(net, sequential=sequential).query(ctx, 20).indices
        predicted = ctx.pool.probs.argmax(-1).gather(1, picks)
        return [row.unique().numel() for row in predicted]

    assert max(classes_picked(False)) <= 2
    assert classes_picked(True) == [5, 5, 5]
