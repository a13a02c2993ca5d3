"""True gains by retraining: the one-step oracle, the greedy oracle strategy and the oracle
trainer's rollout."""

import pytest
import torch

from metaal.data import Episode, EpisodeSampler, EpisodeSpec, load_dataset
from metaal.features import PoolStatistics, compute_features
from metaal.learners import LogisticRegression
from metaal.loop import picks_labeled, run_active_learning
from metaal.metrics import aulc
from metaal.policy import PolicyNet, PolicyStrategy, after_picks
from metaal.strategies import (
    OneStepOracle,
    QueryContext,
    Simulation,
    candidate_gains,
    expected_gains,
    make_strategy,
)
from metaal.strategies.lookahead import with_picks_labeled
from metaal.trainers.oracle import ImitatingRollout


@pytest.fixture(scope="module")
def batch(data_root):
    ds = load_dataset("mnist", data_root)
    return EpisodeSampler(ds, EpisodeSpec(n_ways=5, pool_per_class=30, eval_per_class=40)).sample_batch(range(4))


def simulation(batch, learner):
    prepared = learner.prepare(batch.pool_x, torch.Generator().manual_seed(0), extra={"eval": batch.eval_x})
    fitted = learner.fit(prepared, batch.labeled_x, batch.labeled_y, 5)
    accuracy = (fitted.predict_prepared("eval").probs.argmax(-1) == batch.eval_y).float().mean(1)
    return Simulation(batch, learner, prepared, batch.labeled_x, batch.labeled_y, accuracy, 5)


@pytest.mark.parametrize("queried", [0, 12])
def test_batched_refits_are_the_fits_of_each_extended_set(batch, queried):
    """LogisticRegression.refits (the lookahead's shared-Gram path) gives the probabilities that
    one fit per extended labeled set gives, on the pool and on the evaluation set."""
    learner = LogisticRegression(n_members=3)
    prepared = learner.prepare(batch.pool_x, torch.Generator().manual_seed(0), extra={"eval": batch.eval_x})
    x = torch.cat([batch.labeled_x, batch.pool_x[:, 100:100 + queried]], 1)
    y = torch.cat([batch.labeled_y, batch.pool_y[:, 100:100 + queried]], 1)
    added = torch.tensor([[0, 7, 30], [1, 2, 3], [149, 50, 9], [4, 5, 6]])
    added_y = torch.tensor([[0, 1, 2], [3, 4, 0], [1, 1, 1], [2, 3, 4]])  # any labels, true or not
    rows = torch.arange(4)[:, None]
    single = LogisticRegression(n_members=0)
    for on in ("pool", "eval"):
        fast = learner.refits(prepared, x, y, 5, added, added_y, on)
        assert fast.shape == (4, 3, batch.pool_y.shape[1] if on == "pool" else batch.eval_y.shape[1], 5)
        for j in range(3):
            one = single.fit(prepared, torch.cat([x, batch.pool_x[rows, added[:, j:j + 1]]], 1),
                             torch.cat([y, added_y[:, j:j + 1]], 1), 5)
            assert torch.allclose(fast[:, j], one.predict_prepared(on).probs, atol=2e-5)


def test_gains_equal_retraining_by_hand(batch):
    learner = LogisticRegression(n_members=0)
    sim = simulation(batch, learner)
    candidates = torch.tensor([[0, 7, 30], [1, 2, 3], [149, 50, 9], [4, 5, 6]])
    gains = candidate_gains(sim, candidates)
    for b in range(4):
        for j in range(3):
            i = candidates[b, j]
            x = torch.cat([batch.labeled_x[b:b + 1], batch.pool_x[b:b + 1, i:i + 1]], 1)
            y = torch.cat([batch.labeled_y[b:b + 1], batch.pool_y[b:b + 1, i:i + 1]], 1)
            prepared = learner.prepare(batch.pool_x, torch.Generator().manual_seed(0), extra={"eval": batch.eval_x})
            one = learner.fit(prepared, x.expand(4, -1, -1, -1, -1), y.expand(4, -1), 5)
            acc = (one.predict_prepared("eval").probs.argmax(-1)[b] == batch.eval_y[b]).float().mean()
            assert gains[b, j] == pytest.approx(float(acc - sim.accuracy[b]), abs=1e-6)


def test_pool_gains_equal_retraining_by_hand(batch):
    learner = LogisticRegression(n_members=0)
    sim = simulation(batch, learner)
    candidates = torch.tensor([[0, 7, 30], [1, 2, 3], [149, 50, 9], [4, 5, 6]])
    gains = candidate_gains(sim, candidates, on="pool")
    before = learner.fit(sim.prepared, batch.labeled_x, batch.labeled_y, 5).predict_prepared("pool")
    correct_before = before.probs.argmax(-1) == batch.pool_y
    for b in range(4):
        for j in range(3):
            i = int(candidates[b, j])
            x = torch.cat([batch.labeled_x, batch.pool_x[:, i:i + 1]], 1)
            y = torch.cat([batch.labeled_y, batch.pool_y[:, i:i + 1]], 1)
            correct = learner.fit(sim.prepared, x, y, 5).predict_prepared("pool").probs.argmax(-1)[b] == batch.pool_y[b]
            others = torch.arange(150) != i  # the candidate's own label is no gain
            expected = (correct[others].float() - correct_before[b, others].float()).mean()
            assert gains[b, j] == pytest.approx(float(expected), abs=1e-6)


def test_pool_oracle_never_reads_the_evaluation_labels(batch):
    from dataclasses import replace
    learner = LogisticRegression(n_members=2)
    scrambled = replace(batch, eval_y=batch.eval_y.roll(1, dims=1))
    picks = [run_active_learning(b, learner, OneStepOracle(16, on="pool"), rounds=3, k=2).selected
             for b in (batch, scrambled)]
    assert torch.equal(*picks)
    test_set = [run_active_learning(b, learner, OneStepOracle(16), rounds=3, k=2).selected for b in (batch, scrambled)]
    assert not torch.equal(*test_set)  # the test-set oracle does: the check above can fail
    with pytest.raises(ValueError, match="measured on one of"):
        OneStepOracle(on="test")


def test_expected_gain_by_hand_and_without_labels(batch):
    from dataclasses import replace
    learner = LogisticRegression(n_members=0)
    sim = simulation(batch, learner)
    candidates = torch.tensor([[0, 7], [1, 2], [149, 50], [4, 5]])
    gains = expected_gains(sim, candidates)
    now = learner.fit(sim.prepared, batch.labeled_x, batch.labeled_y, 5).predict_prepared("pool").probs
    b, i = 2, 149
    expected = 0.0
    for c in range(5):  # the candidate labeled as each class, weighted by the model's belief
        x = torch.cat([batch.labeled_x, batch.pool_x[:, i:i + 1]], 1)
        y = torch.cat([batch.labeled_y, torch.full((4, 1), c)], 1)
        after = learner.fit(sim.prepared, x, y, 5).predict_prepared("pool").probs[b]
        expected += float(now[b, i, c]) * float(after.max(-1).values.mean())
    assert gains[b, 0] == pytest.approx(expected - float(now[b].max(-1).values.mean()), abs=1e-5)
    # label-free: hiding every pool and evaluation label changes nothing
    blind = replace(sim, episode=replace(batch, pool_y=torch.zeros_like(batch.pool_y),
                                         eval_y=torch.zeros_like(batch.eval_y)))
    assert torch.equal(expected_gains(blind, candidates), gains)


def test_lookahead_refits_in_bounded_chunks(batch, monkeypatch):
    import metaal.strategies.lookahead as oracle
    sim = simulation(batch, LogisticRegression(n_members=0))
    candidates = torch.arange(10).expand(4, -1)
    whole = candidate_gains(sim, candidates, on="pool")
    monkeypatch.setattr(oracle, "REFIT_ROWS", 12)  # 3 candidates of 4 episodes per call
    assert torch.allclose(candidate_gains(sim, candidates, on="pool"), whole)


def test_oracle_picks_its_largest_gains(batch):
    learner = LogisticRegression(n_members=0)
    sim = simulation(batch, learner)
    available = torch.ones(4, 150, dtype=torch.bool)
    pool = learner.fit(sim.prepared, batch.labeled_x, batch.labeled_y, 5).predict_prepared("pool")
    ctx = QueryContext(pool=pool, features=torch.zeros(4, 150, 11), labeled_embedding=pool.embedding[:, :5],
                       available=available, generator=torch.Generator().manual_seed(0), simulation=sim)
    picked = OneStepOracle(n_candidates=None).query(ctx, 3).indices
    all_gains = candidate_gains(sim, torch.arange(150).expand(4, -1))
    best = all_gains.topk(3, 1).values
    assert torch.allclose(all_gains.gather(1, picked).sort(1, descending=True).values, best)


def test_oracle_beats_random_in_the_loop(batch):
    learner = LogisticRegression(n_members=2)
    oracle = run_active_learning(batch, learner, OneStepOracle(n_candidates=16), rounds=5, k=3)
    rand = run_active_learning(batch, learner, make_strategy("random"), rounds=5, k=3)
    assert aulc(oracle.accuracy, oracle.n_labeled).mean() > aulc(rand.accuracy, rand.n_labeled).mean()


def test_oracle_needs_the_simulator(batch):
    learner = LogisticRegression(n_members=0)
    sim = simulation(batch, learner)
    pool = learner.fit(sim.prepared, batch.labeled_x, batch.labeled_y, 5).predict_prepared("pool")
    ctx = QueryContext(pool=pool, features=torch.zeros(4, 150, 11), labeled_embedding=pool.embedding[:, :5],
                       available=torch.ones(4, 150, dtype=torch.bool), generator=torch.Generator())
    with pytest.raises(ValueError, match="runs only in simulation, not in deployment"):
        OneStepOracle().query(ctx, 2)


def test_candidates_mix_the_preferred_top_with_uniform_draws():
    from metaal.strategies import sample_candidates
    B, m = 4, 50
    available = torch.ones(B, m, dtype=torch.bool)
    available[:, :5] = False  # already labeled: never a candidate, however preferred
    prefer = torch.arange(m, dtype=torch.float).flip(0).expand(B, m)  # sample 0 preferred most
    ctx = QueryContext(pool=None, features=torch.zeros(B, m, 1), labeled_embedding=torch.zeros(B, 1, 1),
                       available=available, generator=torch.Generator().manual_seed(0))
    picked = sample_candidates(ctx, 10, prefer=prefer, top_share=0.5)
    for row in picked:
        assert len(row.unique()) == 10 and available[0, row].all()
        assert set(range(5, 10)) <= set(row.tolist())  # the 5 most preferred available samples
    uniform = sample_candidates(ctx, 10)
    assert not all(set(range(5, 10)) <= set(row.tolist()) for row in uniform)


def test_labeling_a_rounds_earlier_picks_is_a_simulation_of_the_extended_set(batch):
    """with_picks_labeled: the state from which a marginal gain within a round is measured is the
    simulation of the labeled set plus the picks, with their true labels."""
    learner = LogisticRegression(n_members=0)
    sim = simulation(batch, learner)
    picks = torch.tensor([[3, 40], [0, 1], [77, 149], [10, 20]])
    rows = torch.arange(4)[:, None]
    extended = Episode(**{**vars(batch), "labeled_x": torch.cat([batch.labeled_x, batch.pool_x[rows, picks]], 1),
                          "labeled_y": torch.cat([batch.labeled_y, batch.pool_y[rows, picks]], 1)})
    by_hand = simulation(extended, learner)
    after = with_picks_labeled(sim, picks)
    assert torch.equal(after.labeled_y, by_hand.labeled_y)
    assert torch.allclose(after.accuracy, by_hand.accuracy)
    candidates = torch.tensor([[0, 7, 30], [2, 3, 4], [50, 9, 8], [4, 5, 6]])
    assert torch.allclose(candidate_gains(after, candidates), candidate_gains(by_hand, candidates), atol=1e-6)
    assert with_picks_labeled(sim, picks[:, :0]) is sim


def round_start(batch):
    """A policy whose scores depend on a round's picks, the simulation at the episodes' start,
    and context(seed): the round's query context, as the loop builds it, drawing from `seed`."""
    learner = LogisticRegression(n_members=2)
    net = PolicyNet(hidden=8).init_as_heuristic("margin", scale=1.0)
    torch.nn.init.normal_(net.head[-1].weight, std=0.5)  # not plain margin: scores depend on the picks
    prepared = learner.prepare(batch.pool_x, torch.Generator().manual_seed(0), extra={"eval": batch.eval_x})
    fitted = learner.fit(prepared, batch.labeled_x, batch.labeled_y, 5)
    accuracy = (fitted.predict_prepared("eval").probs.argmax(-1) == batch.eval_y).float().mean(1)
    sim = Simulation(batch, learner, prepared, batch.labeled_x, batch.labeled_y, accuracy, 5)
    pool, labeled = fitted.predict_prepared("pool"), fitted.predict(batch.labeled_x)
    stats = PoolStatistics.in_memory(pool.embedding, torch.Generator().manual_seed(0))
    features = compute_features(pool, labeled.embedding, batch.labeled_y, 5, 0.0, stats)

    def context(seed):
        return QueryContext(pool=pool, features=features,
                            labeled_embedding=labeled.embedding, available=torch.ones(4, 150, dtype=torch.bool),
                            generator=torch.Generator().manual_seed(seed), simulation=sim,
                            refeature=picks_labeled(pool, labeled.embedding, batch.labeled_y, 5, 0.0, stats))
    return net, sim, context


def test_sequential_rollout_teaches_the_marginal_gain_after_the_rounds_earlier_picks(batch):
    """The oracle trainer's sequential rollout picks as a loaded policy does, and at a random step
    j of the round records the policy's scores on the features with the j earlier picks counted
    as labeled, against the true gains of labeling a candidate on top of those picks."""
    net, sim, context = round_start(batch)
    k, steps = 6, set()
    for seed in range(4):
        selection = ImitatingRollout(net, n_candidates=10, sequential=True).query(context(seed), k)
        picks, record = selection.indices, selection.record
        assert torch.equal(picks, PolicyStrategy(net, sequential=True).query(context(seed), k).indices)
        j = int(torch.randint(k, (1,), generator=torch.Generator().manual_seed(seed)))  # the rollout's draw
        steps.add(j)
        state = after_picks(context(seed), picks[:, :j])
        candidates = record["candidates"]
        assert state.available.gather(1, candidates).all()  # never one of the earlier picks
        with torch.no_grad():
            assert torch.allclose(record["candidate_scores"], net.score(state).gather(1, candidates))
        assert torch.allclose(record["gains"], candidate_gains(with_picks_labeled(sim, picks[:, :j]), candidates))
    assert len(steps) > 1 and max(steps) > 0
