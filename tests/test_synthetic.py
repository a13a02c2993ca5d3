"""Synthetic meta-training tasks: reproducible, shaped like real episodes, learnable, and
usable as a meta-training source next to a real dataset."""

import pytest
import torch

from metaal.data import EpisodeSpec, SyntheticTaskSampler, TaskSpec
from metaal.learners import LogisticRegression
from metaal.loop import run_active_learning
from metaal.strategies import make_strategy

SPEC = EpisodeSpec(n_ways=3, initial_per_class=2, pool_per_class=40, eval_per_class=30)


def test_same_seed_same_task_other_seed_other_task():
    sampler = SyntheticTaskSampler(SPEC)
    a, b, c = sampler.sample(7), sampler.sample(7), sampler.sample(8)
    assert torch.equal(a.pool_x, b.pool_x) and torch.equal(a.eval_y, b.eval_y)
    assert a.pool_x.shape != c.pool_x.shape or not torch.equal(a.pool_x, c.pool_x)


@pytest.mark.parametrize("shape", ["mixture", "regions"])
def test_episodes_follow_the_spec(shape):
    batch = SyntheticTaskSampler(SPEC, shape=shape).sample_batch(range(5))
    d = batch.pool_x.shape[-1]
    assert batch.labeled_x.shape == (5, 6, d) and batch.pool_x.shape == (5, 120, d)
    assert batch.eval_x.shape == (5, 90, d) and batch.classes.shape == (5, 3)
    # every class starts labeled, labels stay in 0..n-1, every class is in the pool
    assert torch.equal(batch.labeled_y.sort(1).values, torch.tensor([0, 0, 1, 1, 2, 2]).expand(5, 6))
    assert batch.pool_y.min() >= 0 and batch.pool_y.max() <= 2
    assert all(len(row.unique()) == 3 for row in batch.pool_y)
    assert torch.isfinite(batch.pool_x).all()


def test_dimension_varies_between_batches():
    sampler = SyntheticTaskSampler(SPEC, dims=(2, 4, 8, 16, 32))
    dims = {sampler.sample_batch([first, first + 1]).pool_x.shape[-1] for first in range(0, 400, 20)}
    assert len(dims) >= 3


def test_tasks_are_learnable_and_active_learning_helps():
    """A fitted learner beats chance, and 10 rounds of margin sampling raise accuracy."""
    spec = EpisodeSpec(n_ways=2, initial_per_class=1, pool_per_class=100, eval_per_class=100)
    episodes = SyntheticTaskSampler(spec, label_noise=(0.0, 0.05)).sample_batch(range(100, 132))
    result = run_active_learning(episodes, LogisticRegression(n_members=0), make_strategy("margin"), 10, 2)
    assert result.accuracy[:, -1].mean() > 0.75
    assert result.accuracy[:, -1].mean() > result.accuracy[:, 0].mean() + 0.03


def test_regions_are_contiguous_cells_a_linear_head_cannot_fit():
    """Noise-free 2-D region tasks: the nearest pool sample's label is nearly always right (each
    class is a union of Voronoi cells), while a logistic head fitted on the whole pool falls short."""
    spec = EpisodeSpec(n_ways=3, initial_per_class=1, pool_per_class=100, eval_per_class=100)
    batch = SyntheticTaskSampler(spec, dims=(2,), label_noise=(0.0, 0.0), shape="regions").sample_batch(range(16))
    nearest = torch.cdist(batch.eval_x, batch.pool_x).argmin(-1)
    nearest_accuracy = (batch.pool_y.gather(1, nearest) == batch.eval_y).float().mean()
    learner, generator = LogisticRegression(n_members=0), torch.Generator().manual_seed(0)
    fitted = learner.fit(learner.prepare(batch.pool_x, generator, extra={"eval": batch.eval_x}),
                         batch.pool_x, batch.pool_y, 3, generator)
    linear_accuracy = (fitted.predict_prepared("eval").probs.argmax(-1) == batch.eval_y).float().mean()
    assert nearest_accuracy > 0.85 and linear_accuracy < nearest_accuracy - 0.1


@pytest.mark.parametrize("kwargs", [{"dims": ()}, {"label_noise": (0.3, 0.1)}, {"separation": (0.0, 1.0)},
                                    {"shape": "spirals"}])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        SyntheticTaskSampler(SPEC, **kwargs)


def test_imbalanced_synthetic_pool_has_a_long_tail():
    spec = EpisodeSpec(n_ways=3, initial_per_class=2, pool_per_class=40, eval_per_class=30, imbalance=10)
    batch = SyntheticTaskSampler(spec).sample_batch(range(8))
    assert batch.pool_x.shape[:2] == (8, 120) and spec.pool_counts[0] >= 8 * spec.pool_counts[-1]
    counts = torch.stack([torch.bincount(row, minlength=3) for row in batch.pool_y])   # label noise aside
    assert (counts[:, 0] > 2 * counts[:, 2]).all()
    assert torch.bincount(batch.eval_y.flatten(), minlength=3).min() > 8 * 30 * 0.6  # evaluation stays balanced


def test_a_task_spec_names_the_synthetic_shape():
    sampler, _ = TaskSpec("synthetic_regions", n_ways=2, imbalance=4).sampler()
    assert sampler.shape == "regions" and sampler.spec.imbalance == 4
    assert TaskSpec("synthetic").sampler()[0].shape == "mixture"
