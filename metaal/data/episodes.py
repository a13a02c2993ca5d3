"""Episodic active-learning tasks sampled from class subsets of a dataset.

An episode is an n-way task: n classes drawn from one class split of one dataset, with
  - an initial labeled set  (initial_per_class samples of each class, from the train part),
  - an unlabeled pool        (pool_per_class samples of each class, from the train part),
  - an evaluation set        (eval_per_class samples of each class, from the test part),
labels remapped to 0..n-1 in the (random) order the classes were drawn.

learn2learn draws the class subset and the per-class samples (a MetaDataset holding only
the split's own samples, with FusedNWaysKShots); the tensors are then gathered by index on
the device in one call. Meta-train and held-out splits get separate MetaDatasets, so an
episode cannot mix them.

    split = split_classes(ds, held_out=0.5, seed=0)
    sampler = EpisodeSampler(ds, EpisodeSpec(n_ways=5, pool_per_class=100), classes=split.meta_train)
    episode = sampler.sample(seed=3)                 # one episode
    batch = sampler.sample_batch(range(64))          # every tensor gets a leading (64,) dim
"""

from __future__ import annotations

import contextlib
import io
import random
from collections.abc import Iterable, Sequence, Sized
from dataclasses import dataclass, fields

import numpy as np
import torch

from metaal.data.datasets import Dataset
from metaal.device import resolve_device
from metaal.errors import InputError
from metaal.limits import check_memory


def _learn2learn():
    """learn2learn, imported when a sampler first needs it: it takes seconds to import, and
    `import metaal` or `metaal.select` do not need it."""
    with contextlib.redirect_stderr(io.StringIO()):
        # learn2learn imports gym, which prints a numpy-2 notice we do not need (we use no gym code).
        import learn2learn

    return learn2learn


@dataclass(frozen=True)
class ClassSplit:
    """Class ids of one dataset: those for meta-training and those held out."""

    meta_train: tuple[int, ...]
    held_out: tuple[int, ...]


def split_classes(dataset: Dataset, held_out: float | Sequence[int | str] = 0.5, seed: int = 0,
                  by_group: bool = False) -> ClassSplit:
    """Split a dataset's classes (or, with by_group, its class groups such as Omniglot
    alphabets) into meta-train and held-out.

    held_out is a fraction of classes/groups drawn with `seed`, or an explicit list of class
    ids, class names, or (by_group) group names.
    """
    if by_group:
        if dataset.class_groups is None:
            raise InputError(f"{dataset.name} has no class groups; split by class instead (by_group=False)")
        units = sorted(set(dataset.class_groups))
        unit_of_class = list(dataset.class_groups)
    else:
        units = list(range(dataset.num_classes))
        unit_of_class = units
    kind = "groups" if by_group else "classes"

    if isinstance(held_out, float):
        if not 0 < held_out < 1:
            raise InputError(f"held_out fraction must be in (0, 1), got {held_out}")
        n = max(1, min(len(units) - 1, round(len(units) * held_out)))
        chosen = set(random.Random(seed).sample(units, n))
    else:
        names = list(dataset.class_names)
        chosen = set()
        for item in held_out:
            if not by_group and isinstance(item, str):
                if item not in names:
                    raise InputError(f"{dataset.name} has no class named {item!r}")
                item = names.index(item)
            if item not in units:
                raise InputError(f"{dataset.name} has no {kind[:-1] if kind == 'groups' else 'class'} {item!r}; "
                                 f"it has {units if by_group else f'ids 0..{len(units) - 1}'}")
            chosen.add(item)
    held = tuple(c for c in range(dataset.num_classes) if unit_of_class[c] in chosen)
    train = tuple(c for c in range(dataset.num_classes) if unit_of_class[c] not in chosen)
    if not held or not train:
        raise InputError(f"splitting {dataset.name}'s {kind} left one side empty")
    return ClassSplit(meta_train=train, held_out=held)


@dataclass(frozen=True)
class EpisodeSpec:
    """An episode's shape. The pool holds n_ways * pool_per_class samples: as many of each class,
    or with imbalance r > 1 a long tail, from the first-drawn class down to one r times rarer
    (geometric in between; the rarest class always keeps at least one)."""

    n_ways: int = 5
    initial_per_class: int = 1
    pool_per_class: int = 100
    eval_per_class: int = 20
    imbalance: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "imbalance" and (not isinstance(value, int) or value < 0):
                raise InputError(f"EpisodeSpec.{f.name} must be a non-negative int, got {value!r}")
        if self.n_ways < 2:
            raise InputError(f"EpisodeSpec.n_ways must be at least 2, got {self.n_ways}")
        if self.pool_per_class < 1 or self.eval_per_class < 1:
            raise InputError("EpisodeSpec needs pool_per_class >= 1 and eval_per_class >= 1")
        if not isinstance(self.imbalance, (int, float)) or not 1 <= self.imbalance < float("inf"):
            raise InputError(f"EpisodeSpec.imbalance is the ratio of the commonest to the rarest class in the "
                             f"pool, a number >= 1 (1: balanced); got {self.imbalance!r}")

    @property
    def pool_counts(self) -> tuple[int, ...]:
        """Pool samples of each class, in draw order (the first-drawn class is the commonest)."""
        n, total = self.n_ways, self.n_ways * self.pool_per_class
        if self.imbalance == 1:
            return (self.pool_per_class,) * n
        weights = np.float64(self.imbalance) ** (-np.arange(n) / (n - 1))
        exact = total * weights / weights.sum()
        counts = np.maximum(np.floor(exact).astype(int), 1)
        for i in np.argsort(-(exact - np.floor(exact)), kind="stable")[:max(0, total - counts.sum())]:
            counts[i] += 1  # largest remainders first, so the counts sum to the total
        while counts.sum() > total:  # tiny pools: the rarest classes' minimum of 1 came from the commonest
            counts[counts.argmax()] -= 1
        return tuple(int(c) for c in counts)

    @property
    def pool_size(self) -> int:
        return self.n_ways * self.pool_per_class

    def check_batch_memory(self, count: int, sample_numel: int) -> None:
        """Refuse a batch of `count` episodes whose float32 inputs alone exceed the memory available."""
        samples = self.n_ways * (self.initial_per_class + self.eval_per_class) + self.pool_size
        check_memory(count, samples * sample_numel * 4, f"{count:,} seeds, episodes run as one batch",
                     "run fewer at once (several runs with --seed-offset), or smaller pools")

    @property
    def train_per_class(self) -> int:
        """Train samples drawn per class: the initial labels plus the largest class's pool share."""
        return self.initial_per_class + max(self.pool_counts)

    def pool_slots(self) -> torch.Tensor:
        """(pool_size,) positions of the pool in the flattened (n_ways, train_per_class) grid of
        drawn train samples: class i contributes its first pool_counts[i] after the initial ones."""
        width = self.train_per_class
        return torch.cat([i * width + self.initial_per_class + torch.arange(count)
                          for i, count in enumerate(self.pool_counts)])


@dataclass
class Episode:
    """One episode, or a batch of B episodes with a leading (B,) dim on every tensor."""

    classes: torch.Tensor        # (n_ways,) dataset class id of remapped label i
    labeled_x: torch.Tensor      # (n_ways * initial_per_class, ...)
    labeled_y: torch.Tensor
    pool_x: torch.Tensor         # (n_ways * pool_per_class, ...), shuffled
    pool_y: torch.Tensor
    eval_x: torch.Tensor         # (n_ways * eval_per_class, ...), from the test part
    eval_y: torch.Tensor
    labeled_index: torch.Tensor  # indices into dataset.train
    pool_index: torch.Tensor     # indices into dataset.train
    eval_index: torch.Tensor     # indices into dataset.test


class _SplitView(torch.utils.data.Dataset):
    """Index-only stand-in for one split's samples; learn2learn needs __len__/__getitem__."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


@contextlib.contextmanager
def _seeded_python_random(seed: int):
    """learn2learn samples with the global `random` module; seed it without leaking."""
    state = random.getstate()
    random.seed(seed)
    try:
        yield
    finally:
        random.setstate(state)


class EpisodeSampler:
    """Samples episodes of `spec` from the given classes of `dataset` (default: all)."""

    def __init__(self, dataset: Dataset, spec: EpisodeSpec, classes: Iterable[int] | None = None,
                 device: str | torch.device = "cpu"):
        self.dataset, self.spec = dataset, spec
        self.classes = tuple(range(dataset.num_classes)) if classes is None else tuple(int(c) for c in classes)
        self.device = resolve_device(device)
        self._check_classes()

        # learn2learn sees only this split's train samples, under local ids 0..M-1.
        train_y = dataset.train.y.numpy()
        self._train_global = np.flatnonzero(np.isin(train_y, self.classes))
        local_y = train_y[self._train_global]
        labels_to_indices = {c: np.flatnonzero(local_y == c).tolist() for c in self.classes}
        l2l = _learn2learn()
        meta = l2l.data.MetaDataset(_SplitView(len(self._train_global)), labels_to_indices=labels_to_indices)
        self._taskset = l2l.data.Taskset(
            meta, task_transforms=[l2l.data.transforms.FusedNWaysKShots(meta, n=spec.n_ways, k=spec.train_per_class)],
            num_tasks=-1,
        )
        test_y = dataset.test.y
        self._test_by_class = {c: torch.nonzero(test_y == c).flatten() for c in self.classes}

        # Inputs live on the device once; episodes gather from them by index.
        self._train_x = dataset.train.X.to(self.device)
        self._test_x = dataset.test.X.to(self.device)

    def _check_classes(self):
        ds, spec = self.dataset, self.spec
        bad = [c for c in self.classes if not 0 <= c < ds.num_classes]
        if bad or len(set(self.classes)) != len(self.classes):
            raise InputError(f"classes must be distinct ids in 0..{ds.num_classes - 1} of {ds.name}; "
                             f"got {self.classes}")
        if spec.n_ways > len(self.classes):
            raise InputError(
                f"{spec.n_ways}-way episodes need at least {spec.n_ways} classes, but this split of "
                f"{ds.name} has {len(self.classes)}; lower n_ways or give the split more classes"
            )
        train_counts = torch.bincount(ds.train.y, minlength=ds.num_classes)
        test_counts = torch.bincount(ds.test.y, minlength=ds.num_classes)
        short = [(ds.class_names[c], int(train_counts[c]), int(test_counts[c])) for c in self.classes
                 if train_counts[c] < spec.train_per_class or test_counts[c] < spec.eval_per_class]
        if short:
            raise InputError(
                f"{len(short)} class(es) of {ds.name} are too small for this episode spec, which needs "
                f"{spec.train_per_class} train samples (initial_per_class + the largest class's pool) and "
                f"{spec.eval_per_class} test samples per class; e.g. {short[0][0]!r} has "
                f"{short[0][1]} train and {short[0][2]} test. Lower pool_per_class / eval_per_class."
            )

    def _sample_indices(self, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Dataset indices for one episode: classes, (n, train_per_class) train, pool order, (n, eval) test."""
        spec = self.spec
        with _seeded_python_random(seed):
            description = self._taskset.sample_task_description()
        local = np.fromiter((d.index for d in description), dtype=np.int64, count=len(description))
        train_idx = torch.from_numpy(self._train_global[local]).view(spec.n_ways, spec.train_per_class)
        classes = self.dataset.train.y[train_idx[:, 0]]

        generator = torch.Generator().manual_seed(seed)
        eval_idx = torch.stack([
            self._test_by_class[int(c)][torch.randperm(len(self._test_by_class[int(c)]), generator=generator)
                                        [:spec.eval_per_class]]
            for c in classes
        ])
        pool_order = torch.randperm(spec.pool_size, generator=generator)
        return classes, train_idx, pool_order, eval_idx

    def check_batch(self, count: int) -> None:
        """Refuse `count` episodes at once whose inputs alone exceed the memory available."""
        self.spec.check_batch_memory(count, self._train_x[0].numel())

    def sample(self, seed: int) -> Episode:
        """The episode for `seed`: the same seed gives the same episode."""
        batch = self.sample_batch([seed])
        return Episode(**{f.name: getattr(batch, f.name)[0] for f in fields(Episode)})

    def sample_batch(self, seeds: Iterable[int]) -> Episode:
        """Episodes for several seeds at once, stacked along a leading batch dim."""
        spec = self.spec
        if isinstance(seeds, Sized):  # before a billion seeds are listed
            self.check_batch(len(seeds))
        parts = [self._sample_indices(int(s)) for s in seeds]
        if not parts:
            raise InputError("sample_batch needs at least one seed")
        classes = torch.stack([p[0] for p in parts])                                  # (B, n)
        train_idx = torch.stack([p[1] for p in parts])                                # (B, n, k)
        pool_order = torch.stack([p[2] for p in parts])                               # (B, n*pool)
        eval_idx = torch.stack([p[3] for p in parts]).flatten(1)                      # (B, n*eval)
        labeled_idx = train_idx[:, :, :spec.initial_per_class].flatten(1)
        pool_idx = torch.gather(train_idx.flatten(1)[:, spec.pool_slots()], 1, pool_order)

        # Remap dataset class ids to 0..n-1 by their draw order, with one lookup table per episode.
        lookup = torch.full((len(parts), self.dataset.num_classes), -1, dtype=torch.int64)
        lookup.scatter_(1, classes, torch.arange(spec.n_ways).expand(len(parts), -1))

        def remap(y_idx: torch.Tensor, y_all: torch.Tensor) -> torch.Tensor:
            return torch.gather(lookup, 1, y_all[y_idx]).to(self.device)

        dev = self.device
        return Episode(
            classes=classes.to(dev),
            labeled_x=self._train_x[labeled_idx.to(dev)],
            labeled_y=remap(labeled_idx, self.dataset.train.y),
            pool_x=self._train_x[pool_idx.to(dev)],
            pool_y=remap(pool_idx, self.dataset.train.y),
            eval_x=self._test_x[eval_idx.to(dev)],
            eval_y=remap(eval_idx, self.dataset.test.y),
            labeled_index=labeled_idx.to(dev),
            pool_index=pool_idx.to(dev),
            eval_index=eval_idx.to(dev),
        )
