"""Episode properties on real MNIST and Omniglot: class subsets, disjointness, remapped
labels, split disjointness, determinism, and the clear errors."""

import random

import pytest
import torch

from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset, split_classes

SPEC = EpisodeSpec(n_ways=5, initial_per_class=1, pool_per_class=100, eval_per_class=20)


@pytest.fixture(scope="module")
def mnist(data_root):
    return load_dataset("mnist", data_root)


@pytest.fixture(scope="module")
def omniglot(data_root):
    return load_dataset("omniglot", data_root)


def test_episode_shapes_and_remapped_labels(mnist):
    episode = EpisodeSampler(mnist, SPEC).sample(seed=0)
    assert episode.labeled_x.shape == (5, 1, 28, 28)
    assert episode.pool_x.shape == (500, 1, 28, 28)
    assert episode.eval_x.shape == (100, 1, 28, 28)
    for y, per_class in ((episode.labeled_y, 1), (episode.pool_y, 100), (episode.eval_y, 20)):
        assert torch.equal(torch.bincount(y, minlength=5), torch.full((5,), per_class))
    # remapped label i is dataset class classes[i], and inputs are the indexed samples
    assert torch.equal(mnist.train.y[episode.pool_index], episode.classes[episode.pool_y])
    assert torch.equal(mnist.train.y[episode.labeled_index], episode.classes[episode.labeled_y])
    assert torch.equal(mnist.test.y[episode.eval_index], episode.classes[episode.eval_y])
    assert torch.equal(mnist.train.X[episode.pool_index], episode.pool_x)
    assert torch.equal(mnist.test.X[episode.eval_index], episode.eval_x)


def test_pool_labeled_and_eval_are_disjoint(mnist):
    sampler = EpisodeSampler(mnist, SPEC)
    for seed in range(20):
        e = sampler.sample(seed)
        train_used = torch.cat([e.labeled_index, e.pool_index])
        assert train_used.unique().numel() == train_used.numel()
        assert e.eval_index.unique().numel() == e.eval_index.numel()  # eval comes from the test part


def test_pool_is_shuffled_not_grouped_by_class(mnist):
    e = EpisodeSampler(mnist, SPEC).sample(seed=1)
    assert (e.pool_y[1:] != e.pool_y[:-1]).sum() > 100


def test_classes_come_from_the_split_only(mnist):
    split = split_classes(mnist, held_out=[0, "1", 2, 3], seed=0)
    assert split.held_out == (0, 1, 2, 3) and split.meta_train == (4, 5, 6, 7, 8, 9)
    train_sampler = EpisodeSampler(mnist, SPEC, classes=split.meta_train)
    held_sampler = EpisodeSampler(mnist, EpisodeSpec(n_ways=3), classes=split.held_out)
    seen_train, seen_held = set(), set()
    for seed in range(200):
        seen_train |= set(train_sampler.sample(seed).classes.tolist())
        seen_held |= set(held_sampler.sample(seed).classes.tolist())
    assert seen_train == set(split.meta_train)
    assert seen_held == set(split.held_out)


def test_omniglot_alphabet_split_is_disjoint(omniglot):
    split = split_classes(omniglot, held_out=0.25, seed=0, by_group=True)
    alphabets = lambda classes: {omniglot.class_groups[c] for c in classes}  # noqa: E731
    assert alphabets(split.meta_train).isdisjoint(alphabets(split.held_out))
    assert len(alphabets(split.held_out)) == 2
    spec = EpisodeSpec(n_ways=5, initial_per_class=1, pool_per_class=14, eval_per_class=5)
    train_sampler = EpisodeSampler(omniglot, spec, classes=split.meta_train)
    held_sampler = EpisodeSampler(omniglot, spec, classes=split.held_out)
    train_seen = {c for s in range(100) for c in train_sampler.sample(s).classes.tolist()}
    held_seen = {c for s in range(100) for c in held_sampler.sample(s).classes.tolist()}
    assert train_seen <= set(split.meta_train) and held_seen <= set(split.held_out)
    assert alphabets(train_seen).isdisjoint(alphabets(held_seen))


def test_fraction_split_is_seeded(mnist):
    assert split_classes(mnist, 0.3, seed=4) == split_classes(mnist, 0.3, seed=4)
    assert len(split_classes(mnist, 0.3, seed=4).held_out) == 3
    assert len({split_classes(mnist, 0.5, seed=s).held_out for s in range(5)}) > 1


def test_same_seed_same_episode_and_global_random_untouched(mnist):
    a, b = EpisodeSampler(mnist, SPEC), EpisodeSampler(mnist, SPEC)
    random.seed(123)
    before = random.getstate()
    e1, e2, e3 = a.sample(7), b.sample(7), a.sample(8)
    assert random.getstate() == before
    for name in ("classes", "labeled_index", "pool_index", "eval_index"):
        assert torch.equal(getattr(e1, name), getattr(e2, name))
    assert not torch.equal(e1.pool_index, e3.pool_index)


def test_batch_equals_individual_episodes(mnist):
    sampler = EpisodeSampler(mnist, SPEC)
    batch = sampler.sample_batch([3, 4, 5])
    assert batch.pool_x.shape == (3, 500, 1, 28, 28) and batch.eval_y.shape == (3, 100)
    for i, seed in enumerate([3, 4, 5]):
        single = sampler.sample(seed)
        for name in ("classes", "labeled_y", "pool_index", "pool_y", "eval_index", "eval_y"):
            assert torch.equal(getattr(batch, name)[i], getattr(single, name))
        assert torch.equal(batch.pool_x[i], single.pool_x)


def test_tabular_binary_episode(data_root):
    ds = load_dataset("german", data_root)
    e = EpisodeSampler(ds, EpisodeSpec(n_ways=2, initial_per_class=2, pool_per_class=200, eval_per_class=50)).sample(0)
    assert e.pool_x.shape == (400, 20) and set(e.labeled_y.tolist()) == {0, 1}


# ------------------------------------------------------------------ clear errors

def test_more_ways_than_classes(data_root):
    ds = load_dataset("heart", data_root)
    with pytest.raises(ValueError, match="5-way episodes need at least 5 classes.*heart has 2"):
        EpisodeSampler(ds, EpisodeSpec(n_ways=5))


def test_more_ways_than_split_classes(mnist):
    split = split_classes(mnist, held_out=[0, 1, 2])
    with pytest.raises(ValueError, match="need at least 5 classes"):
        EpisodeSampler(mnist, SPEC, classes=split.held_out)


def test_pool_larger_than_a_class(omniglot):
    with pytest.raises(ValueError, match="too small.*101 train samples.*has 15 train"):
        EpisodeSampler(omniglot, SPEC)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_ways=1), "n_ways must be at least 2"),
    (dict(pool_per_class=0), "pool_per_class >= 1"),
    (dict(initial_per_class=-1), "initial_per_class must be a non-negative int"),
    (dict(eval_per_class=2.5), "eval_per_class must be a non-negative int"),
    (dict(imbalance=0.5), "imbalance is the ratio"),
    (dict(imbalance=float("nan")), "imbalance is the ratio"),
])
def test_bad_spec(kwargs, message):
    with pytest.raises(ValueError, match=message):
        EpisodeSpec(**kwargs)


def test_bad_splits(mnist, omniglot):
    with pytest.raises(ValueError, match="no class named 'ten'"):
        split_classes(mnist, held_out=["ten"])
    with pytest.raises(ValueError, match="has no class groups"):
        split_classes(mnist, by_group=True)
    with pytest.raises(ValueError, match="no group 'Klingon'"):
        split_classes(omniglot, held_out=["Klingon"], by_group=True)
    with pytest.raises(ValueError, match="left one side empty"):
        split_classes(mnist, held_out=list(range(10)))
    with pytest.raises(ValueError, match="distinct ids"):
        EpisodeSampler(mnist, SPEC, classes=[1, 1, 2, 3, 4, 5])


def test_imbalanced_pool_is_a_long_tail_with_a_balanced_eval_set(mnist):
    spec = EpisodeSpec(n_ways=5, initial_per_class=1, pool_per_class=100, eval_per_class=20, imbalance=10)
    counts = spec.pool_counts
    assert sum(counts) == spec.pool_size == 500
    assert list(counts) == sorted(counts, reverse=True) and 9 <= counts[0] / counts[-1] <= 11
    for per_class in (1, 2, 3, 7):  # tiny pools keep their size and every class
        tiny = EpisodeSpec(n_ways=5, pool_per_class=per_class, imbalance=10).pool_counts
        assert sum(tiny) == 5 * per_class and min(tiny) >= 1
    batch = EpisodeSampler(mnist, spec).sample_batch(range(3))
    for b in range(3):
        assert torch.bincount(batch.pool_y[b], minlength=5).tolist() == list(counts)  # label i: i-th drawn class
        assert torch.bincount(batch.eval_y[b], minlength=5).tolist() == [20] * 5
        assert torch.bincount(batch.labeled_y[b], minlength=5).tolist() == [1] * 5
        assert torch.equal(mnist.train.y[batch.pool_index[b]], batch.classes[b][batch.pool_y[b]])
        taken = torch.cat([batch.labeled_index[b], batch.pool_index[b]])
        assert taken.unique().numel() == taken.numel()
    # which dataset class is the rare one changes with the seed
    assert len({int(c) for c in batch.classes[:, -1]}) > 1


def test_a_balanced_spec_draws_the_same_episode_as_before_imbalance_existed(mnist):
    spec = EpisodeSpec(n_ways=5, initial_per_class=2, pool_per_class=30, eval_per_class=10)
    assert spec.pool_counts == (30,) * 5 and spec.train_per_class == 32
    grid = torch.arange(5 * 32).view(5, 32)
    assert torch.equal(spec.pool_slots(), grid[:, 2:].flatten())


def test_an_imbalanced_task_is_capped_by_its_commonest_class(data_root):
    from metaal.data import TaskSpec
    task = TaskSpec("heart", n_ways=2, pool_per_class=100, eval_per_class=20, imbalance=10)
    spec, notes = task.episode_spec(load_dataset("heart", data_root))
    assert max(spec.pool_counts) <= 90 - 1 < max(EpisodeSpec(n_ways=2, pool_per_class=100, imbalance=10).pool_counts)
    assert any("pool capped" in note for note in notes)
    assert TaskSpec.from_dict(task.to_dict()) == task
