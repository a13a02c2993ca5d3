"""One template every query strategy must pass (every registered one, the frozen policy and
the lookahead references included), plus what each strategy specifically does."""

import pytest
import torch

from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.errors import InputError, StrategyError
from metaal.features import PoolStatistics, compute_features
from metaal.learners import LogisticRegression, Prediction
from metaal.loop import picks_labeled
from metaal.policy import PolicyNet, PolicyStrategy
from metaal.strategies import STRATEGIES, QueryContext, Simulation, Strategy, make_strategy

B, K = 3, 5


def make_context(batch, seed=0, n_labeled_from_pool=10):
    """A real context: logreg fit on the initial labels plus the first pool samples, with the
    simulator's state (which only strategies that need it receive in the loop)."""
    rows = torch.arange(batch.pool_y.shape[0])[:, None]
    queried = torch.arange(n_labeled_from_pool).expand(batch.pool_y.shape[0], -1)
    x = torch.cat([batch.labeled_x, batch.pool_x[rows, queried]], 1)
    y = torch.cat([batch.labeled_y, batch.pool_y[rows, queried]], 1)
    learner = LogisticRegression(n_members=4)
    generator = torch.Generator().manual_seed(seed)
    prepared = learner.prepare(batch.pool_x, generator, extra={"eval": batch.eval_x})
    fitted = learner.fit(prepared, x, y, 5, generator)
    pool, lab = fitted.predict_prepared("pool"), fitted.predict(x)
    accuracy = (fitted.predict_prepared("eval").probs.argmax(-1) == batch.eval_y).float().mean(1)
    available = torch.ones(batch.pool_y.shape, dtype=torch.bool)
    available[rows, queried] = False
    stats = PoolStatistics.in_memory(pool.embedding, generator)
    return QueryContext(pool=pool, features=compute_features(pool, lab.embedding, y, 5, 0.3, stats),
                        labeled_embedding=lab.embedding, available=available, generator=generator,
                        simulation=Simulation(batch, learner, prepared, x, y, accuracy, 5),
                        refeature=picks_labeled(pool, lab.embedding, y, 5, 0.3, stats))


def build(name: str) -> Strategy:
    """The strategy under test: a registered one (lookahead references scoring every available
    sample), or a frozen policy network: "policy" (sequential, the default) or "policy_topk"."""
    if name in ("policy", "policy_topk"):
        torch.manual_seed(0)
        return PolicyStrategy(PolicyNet(hidden=16), sequential=name == "policy")
    return make_strategy(name, n_candidates=None) if STRATEGIES.get(name).needs_simulation else make_strategy(name)


@pytest.fixture(scope="module")
def batch(data_root):
    ds = load_dataset("mnist", data_root)
    return EpisodeSampler(ds, EpisodeSpec(n_ways=5, pool_per_class=40, eval_per_class=5)).sample_batch(range(B))


@pytest.fixture(scope="module")
def one_class_batch(batch):
    """Pools made of a single class (the first 30 pool samples of label 0 in each episode)."""
    idx = torch.stack([torch.nonzero(batch.pool_y[i] == 0).flatten()[:30] for i in range(B)])
    rows = torch.arange(B)[:, None]
    return type(batch)(**{**vars(batch), "pool_x": batch.pool_x[rows, idx], "pool_y": batch.pool_y[rows, idx],
                          "pool_index": batch.pool_index[rows, idx]})


@pytest.mark.parametrize("name", [*STRATEGIES, "policy", "policy_topk"])
class TestEveryStrategy:
    def test_selects_k_distinct_available_indices(self, name, batch):
        ctx = make_context(batch)
        picked = build(name).query(ctx, K).indices
        assert picked.shape == (B, K) and picked.dtype == torch.int64
        for row, available in zip(picked, ctx.available, strict=True):
            assert row.unique().numel() == K
            assert available[row].all()  # never an already labeled sample

    def test_scores_are_finite_per_pool_sample(self, name, batch):
        ctx = make_context(batch)
        scores = build(name).score(ctx)
        assert scores.shape == ctx.available.shape and torch.isfinite(scores[ctx.available]).all()

    def test_deterministic_under_a_seed(self, name, batch):
        a = build(name).query(make_context(batch, seed=3), K).indices
        b = build(name).query(make_context(batch, seed=3), K).indices
        assert torch.equal(a, b)

    def test_k_larger_than_the_unlabeled_pool_is_a_clear_error(self, name, batch):
        ctx = make_context(batch)
        remaining = int(ctx.available.sum(1).min())
        with pytest.raises(ValueError, match=f"asked for k={remaining + 1} samples but only {remaining}"):
            build(name).query(ctx, remaining + 1)
        with pytest.raises(ValueError, match="k must be a positive int"):
            build(name).query(ctx, 0)

    def test_can_take_every_remaining_sample(self, name, batch):
        ctx = make_context(batch)
        remaining = int(ctx.available.sum(1).min())
        picked = build(name).query(ctx, remaining).indices
        assert all(row.unique().numel() == remaining for row in picked)

    def test_pool_of_one_class(self, name, one_class_batch):
        ctx = make_context(one_class_batch, n_labeled_from_pool=3)
        picked = build(name).query(ctx, K).indices
        for row, available in zip(picked, ctx.available, strict=True):
            assert row.unique().numel() == K and available[row].all()

    def test_empty_pool_is_a_clear_error(self, name, batch):
        ctx = make_context(batch)
        empty = QueryContext(pool=Prediction(ctx.pool.probs[:, :0], None, ctx.pool.embedding[:, :0]),
                             features=ctx.features[:, :0], labeled_embedding=ctx.labeled_embedding,
                             available=ctx.available[:, :0], generator=ctx.generator)
        with pytest.raises(ValueError, match="pool is empty"):
            build(name).query(empty, 1)

    def test_only_strategies_that_declare_it_need_the_simulator(self, name, batch):
        ctx = make_context(batch)
        ctx.simulation = None  # as in deployment
        if build(name).needs_simulation:
            with pytest.raises(InputError, match="runs only in simulation"):
                build(name).query(ctx, K)
        else:
            assert build(name).query(ctx, K).indices.shape == (B, K)


def test_a_broken_selection_is_caught_once_for_every_strategy(batch):
    class Repeats(Strategy):
        name = "repeats"

        def select(self, ctx, k):
            return torch.zeros(ctx.available.shape[0], k, dtype=torch.int64)

    ctx = make_context(batch)
    with pytest.raises(StrategyError, match="selected a labeled or repeated pool sample"):
        Repeats().query(ctx, 2)


# ------------------------------------------------------------------ what each one does

def test_uncertainty_strategies_take_their_top_scores(batch):
    ctx = make_context(batch)
    top2 = ctx.pool.probs.topk(2, -1).values
    expectations = {
        "entropy": -(ctx.pool.probs * ctx.pool.probs.log()).sum(-1),
        "margin": -(top2[..., 0] - top2[..., 1]),
        "least_confidence": 1 - ctx.pool.probs.max(-1).values,
    }
    for name, score in expectations.items():
        expected = score.masked_fill(~ctx.available, float("-inf")).topk(K, 1).indices
        assert torch.equal(make_strategy(name).query(ctx, K).indices.sort(1).values, expected.sort(1).values), name


def test_coreset_first_pick_is_farthest_from_labeled(batch):
    ctx = make_context(batch)
    distance = torch.cdist(ctx.pool.embedding, ctx.labeled_embedding).min(-1).values
    first = make_strategy("coreset").query(ctx, K).indices[:, 0]
    assert torch.equal(first, distance.masked_fill(~ctx.available, -1).argmax(1))


def test_badge_first_pick_has_the_largest_gradient_embedding(batch):
    ctx = make_context(batch)
    norms = make_strategy("badge").score(ctx)
    first = make_strategy("badge").query(ctx, K).indices[:, 0]
    assert torch.equal(first, norms.masked_fill(~ctx.available, -1).argmax(1))


def test_bald_needs_members(batch):
    ctx = make_context(batch)
    ctx.pool = Prediction(ctx.pool.probs, None, ctx.pool.embedding)
    with pytest.raises(ValueError, match="BALD needs a learner with members"):
        make_strategy("bald").query(ctx, K)


def test_random_is_uniform_over_available(batch):
    ctx = make_context(batch)
    counts = torch.zeros(ctx.available.shape)
    strategy = make_strategy("random")
    draws = 1000
    for _ in range(draws):
        picked = strategy.query(ctx, K).indices
        counts.scatter_add_(1, picked, torch.ones_like(picked, dtype=torch.float))
    assert counts[~ctx.available].sum() == 0
    expected = draws * K / ctx.available.sum(1, keepdim=True).expand_as(counts)[ctx.available]
    ratio = counts[ctx.available] / expected  # ~26 expected picks each: Poisson spread stays within 0.3..2
    assert ratio.min() > 0.3 and ratio.max() < 2.0


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown strategy 'no_such_strategy'"):
        make_strategy("no_such_strategy")


# ------------------------------------------------------------------ the clustering baselines, on hand-built pools

def hand_context(embedding, labeled, probs=None, available=None, seed=0):
    """A context built by hand: pool embedding (B, m, H), labeled embedding (B, n, H)."""
    B, m, _ = embedding.shape
    probs = torch.full((B, m, 2), 0.5) if probs is None else probs
    available = torch.ones(B, m, dtype=torch.bool) if available is None else available
    return QueryContext(pool=Prediction(probs, None, embedding), features=torch.zeros(B, m, 1),
                        labeled_embedding=labeled, available=available, generator=torch.Generator().manual_seed(seed))


def blobs(sizes, centres, spread, seed=0):
    """Points uniform in a cube of side `spread` at each centre, and each point's blob."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.as_tensor(centres, dtype=torch.float)
    points = [torch.rand(n, centres.shape[1], generator=g) * spread + c for n, c in zip(sizes, centres, strict=True)]
    return torch.cat(points), torch.cat([torch.full((n,), i) for i, n in enumerate(sizes)])


def test_kmeans_finds_separated_blobs_and_skips_masked_points():
    from metaal.strategies.clustering import kmeans
    x, blob = blobs((7, 5, 9), ((0, 0), (10, 0), (0, 10)), 0.5)
    valid = torch.ones(2, len(x), dtype=torch.bool)
    valid[1, :3] = False
    labels, centres = kmeans(torch.stack([x, x]), 3, torch.Generator().manual_seed(0), valid=valid)
    assert centres.shape == (2, 3, 2) and (labels[1, :3] == -1).all()
    for row, keep in zip(labels, valid, strict=True):
        same_blob, same_cluster = blob[keep, None] == blob[keep], row[keep, None] == row[keep]
        assert torch.equal(same_blob, same_cluster)


def test_typiclust_takes_the_centre_of_the_largest_unlabeled_cluster():
    # blob A: 12 points around the origin, where the labeled sample is; blob B: a ring of 8 around
    # its centre (10, 10), which is pool sample 17. A is larger but covered, so the pick is in B.
    angle = torch.arange(8) * torch.pi / 4
    ring = torch.stack([angle.cos(), angle.sin()], 1)
    blob_a = torch.randn(12, 2, generator=torch.Generator().manual_seed(0)) * 0.5
    pool = torch.cat([blob_a, ring[:5] + 10, torch.full((1, 2), 10.0), ring[5:] + 10])
    shuffle = torch.randperm(len(pool), generator=torch.Generator().manual_seed(1))
    embedding = torch.stack([pool, pool[shuffle]])  # episode 1: the same pool shuffled, one of A labeled
    available = torch.ones(2, len(pool), dtype=torch.bool)
    a_in_1 = int((shuffle < 12).nonzero()[0])
    available[1, a_in_1] = False
    labeled = torch.stack([torch.zeros(1, 2), embedding[1, a_in_1][None]])
    picked = make_strategy("typiclust").query(hand_context(embedding, labeled, available=available), 1).indices
    assert picked.tolist() == [[17], [int((shuffle == 17).nonzero()[0])]]


def test_probcover_covers_the_largest_blobs_first():
    pool, blob = blobs((3, 10, 6), ((0, 0), (10, 0), (0, 10)), 0.3)  # balls of radius 1 hold whole blobs
    none = torch.zeros(1, 0, 2)
    strategy = make_strategy("probcover", delta=1.0)
    assert blob[strategy.query(hand_context(pool[None], none), 2).indices[0]].tolist() == [1, 2]
    assert torch.equal(strategy.score(hand_context(pool[None], none))[0], torch.tensor([3.0, 10.0, 6.0])[blob])
    # a labeled sample in the largest blob covers it: the next largest come first
    labeled = torch.tensor([[[10.1, 0.1]]])
    assert blob[strategy.query(hand_context(pool[None], labeled), 2).indices[0]].tolist() == [2, 0]


def test_probcover_chooses_a_pure_radius():
    # three tight blobs on a line (0, 10, 30), one per class: a ball is pure only while it stays in its blob
    pool, blob = blobs((10, 10, 10), ((0, 0), (10, 0), (30, 0)), 0.01)
    ctx = hand_context(pool[None], torch.zeros(1, 0, 2), probs=torch.full((1, 30, 3), 1 / 3))
    scores = make_strategy("probcover").score(ctx)[0]
    assert scores.min() >= 1 and scores.max() <= 10  # no ball reaches another blob


def test_cluster_margin_spreads_the_lowest_margins_over_clusters():
    # 10 blobs (cluster_margin makes m / 10 = 10 clusters): the 40 lowest margins are blob 0 (30 samples,
    # margins 0..0.03) and blob 1 (10 samples, 0.1..0.19); the rest have margins near 0.9
    sizes = (30, 10, 8, 8, 8, 8, 7, 7, 7, 7)
    pool, blob = blobs(sizes, [(10 * (i % 5), 10 * (i // 5)) for i in range(10)], 0.1)
    margin = torch.cat([torch.linspace(0, 0.03, 30), torch.linspace(0.1, 0.19, 10), torch.linspace(0.8, 0.9, 60)])
    probs = torch.stack([0.5 + margin / 2, 0.5 - margin / 2], -1)[None]
    ctx = hand_context(pool[None], torch.zeros(1, 0, 2), probs=probs)
    assert blob[make_strategy("margin").query(ctx, 4).indices[0]].tolist() == [0, 0, 0, 0]
    picked = make_strategy("cluster_margin").query(ctx, 4).indices[0]
    # the cluster with fewer candidates first, then round-robin, lowest margin first in each
    assert picked.tolist() == [30, 0, 31, 1]
