"""One template every query strategy must pass (every registered one, the frozen policy and
the lookahead references included), plus what each strategy specifically does."""

import pytest
import torch

from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.errors import InputError, StrategyError
from metaal.features import compute_features
from metaal.learners import LogisticRegression, Prediction
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
    return QueryContext(pool=pool, features=compute_features(pool, lab.embedding, y, 5, 0.3, generator=generator),
                        labeled_embedding=lab.embedding, available=available, generator=generator,
                        simulation=Simulation(batch, learner, prepared, x, y, accuracy, 5))


def build(name: str) -> Strategy:
    """The strategy under test: a registered one (lookahead references scoring every available
    sample), or "policy", a frozen policy network."""
    if name == "policy":
        torch.manual_seed(0)
        return PolicyStrategy(PolicyNet(hidden=16))
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


@pytest.mark.parametrize("name", [*STRATEGIES, "policy"])
class TestEveryStrategy:
    def test_selects_k_distinct_available_indices(self, name, batch):
        ctx = make_context(batch)
        picked = build(name).query(ctx, K).indices
        assert picked.shape == (B, K) and picked.dtype == torch.int64
        for row, available in zip(picked, ctx.available):
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
        for row, available in zip(picked, ctx.available):
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
    with pytest.raises(ValueError, match="unknown strategy 'typiclust'"):
        make_strategy("typiclust")
