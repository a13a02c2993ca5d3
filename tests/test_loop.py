"""The active-learning loop on real episodes."""

import pytest
import torch

from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.learners import LogisticRegression
from metaal.loop import run_active_learning
from metaal.strategies import STRATEGIES, make_strategy


@pytest.fixture(scope="module")
def sampler(data_root):
    ds = load_dataset("mnist", data_root)
    return EpisodeSampler(ds, EpisodeSpec(n_ways=5, initial_per_class=1, pool_per_class=30, eval_per_class=30))


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_curve_budget_and_no_repeats(name, sampler):
    batch = sampler.sample_batch(range(4))
    result = run_active_learning(batch, LogisticRegression(n_members=4), make_strategy(name), rounds=6, k=4)
    assert result.accuracy.shape == (4, 7)
    assert result.n_labeled.tolist() == [5, 9, 13, 17, 21, 25, 29]
    assert result.selected.shape == (4, 6, 4)
    for episode in result.selected.flatten(1):
        assert episode.unique().numel() == 24  # no pool sample labeled twice
    assert ((result.accuracy >= 0) & (result.accuracy <= 1)).all()


def test_labels_raise_accuracy(sampler):
    batch = sampler.sample_batch(range(8))
    result = run_active_learning(batch, LogisticRegression(), make_strategy("random"), rounds=10, k=5)
    assert result.accuracy[:, -1].mean() > result.accuracy[:, 0].mean() + 0.1


def test_single_episode_and_same_seed_same_result(sampler):
    episode = sampler.sample(0)
    a = run_active_learning(episode, LogisticRegression(), make_strategy("badge"), rounds=3, k=2, seed=5)
    b = run_active_learning(episode, LogisticRegression(), make_strategy("badge"), rounds=3, k=2, seed=5)
    assert a.accuracy.shape == (1, 4)
    assert torch.equal(a.selected, b.selected) and torch.equal(a.accuracy, b.accuracy)


def test_whole_pool_can_be_labeled(sampler):
    episode = sampler.sample(1)
    result = run_active_learning(episode, LogisticRegression(n_members=0), make_strategy("margin"), rounds=10, k=15)
    assert result.selected.flatten().sort().values.tolist() == list(range(150))


def test_budget_larger_than_pool_is_a_clear_error(sampler):
    with pytest.raises(ValueError, match="budget of 11 rounds x k=15 = 165 labels exceeds the pool of 150"):
        run_active_learning(sampler.sample(0), LogisticRegression(), make_strategy("random"), rounds=11, k=15)


def test_bad_rounds_or_k(sampler):
    with pytest.raises(ValueError, match="rounds >= 0 and k >= 1"):
        run_active_learning(sampler.sample(0), LogisticRegression(), make_strategy("random"), rounds=2, k=0)
