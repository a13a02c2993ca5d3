"""The one description of an active-learning task: which data, which classes, the episode's
shape, the query budget and the learner. Meta-training sources, validation, the transfer
table's rows, transfer.py and the benchmarks all describe their tasks as a TaskSpec, and a
policy checkpoint records the specs it was trained and validated on.

    task = TaskSpec("fashion_mnist", n_ways=5, pool_per_class=100, eval_per_class=200, rounds=20, k=5)
    sampler, notes = task.sampler(data_root, device)   # notes: caps applied, budget warnings
    episodes = sampler.sample_batch(range(20))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

from metaal.data.datasets import Dataset, load_dataset
from metaal.data.episodes import EpisodeSampler, EpisodeSpec, split_classes
from metaal.data.synthetic import SYNTHETIC_SOURCES, SyntheticTaskSampler
from metaal.errors import InputError


def _default_learner() -> dict:
    return {"name": "logreg"}


@dataclass(frozen=True)
class TaskSpec:
    """A task: episodes of n_ways classes of `dataset` (drawn from `classes`, minus `exclude`),
    with per-class initial labels, pool and evaluation set, labeled k at a time for `rounds`
    rounds, by `learner` ({name, options}). Episodes are class-balanced."""

    dataset: str                       # a registered name, a .npz or image-folder path, or a SYNTHETIC_SOURCES name
    classes: tuple | None = None       # class ids or names (group names with by_group); None: all
    exclude: tuple = ()                # classes (or groups) never drawn: those held out of meta-training
    by_group: bool = False             # classes / exclude name class groups (Omniglot alphabets)
    n_ways: int | None = 5             # None: every class of `classes`
    initial_per_class: int = 1
    pool_per_class: int = 100
    eval_per_class: int = 100
    rounds: int = 20
    k: int = 5
    learner: dict = field(default_factory=_default_learner)
    imbalance: float = 1.0             # pool's commonest / rarest class (long tail; see EpisodeSpec); 1: balanced

    def __post_init__(self):
        for name in ("initial_per_class", "pool_per_class", "eval_per_class", "rounds", "k"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "initial_per_class"
                                                                                 else 1):
                raise InputError(f"TaskSpec.{name} must be a positive int, got {value!r}")
        if self.n_ways is not None and (not isinstance(self.n_ways, int) or self.n_ways < 2):
            raise InputError(f"TaskSpec.n_ways must be an int >= 2 (or None: all classes), got {self.n_ways!r}")
        if isinstance(self.imbalance, bool) or not isinstance(self.imbalance, (int, float)) or not self.imbalance >= 1:
            raise InputError(f"TaskSpec.imbalance is the pool's commonest / rarest class ratio, >= 1 (1: balanced); "
                             f"got {self.imbalance!r}")
        object.__setattr__(self, "imbalance", float(self.imbalance))
        object.__setattr__(self, "classes", None if self.classes is None else tuple(self.classes))
        object.__setattr__(self, "exclude", tuple(self.exclude))

    def replace(self, **changes) -> TaskSpec:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> TaskSpec:
        return cls(**data)

    def class_ids(self, dataset: Dataset) -> tuple[int, ...]:
        """The dataset class ids episodes are drawn from."""
        ids = tuple(range(dataset.num_classes))
        if self.classes is not None:
            ids = split_classes(dataset, list(self.classes), by_group=self.by_group).held_out
        if self.exclude:
            excluded = set(split_classes(dataset, list(self.exclude), by_group=self.by_group).held_out)
            ids = tuple(c for c in ids if c not in excluded)
        return ids

    def episode_spec(self, dataset: Dataset) -> tuple[EpisodeSpec, list[str]]:
        """The episode shape on `dataset`, pool and evaluation set capped by its smallest class;
        with one note per cap and one if the budget labels over half the pool."""
        classes = list(self.class_ids(dataset))
        n_ways = len(classes) if self.n_ways is None else self.n_ways
        if not 2 <= n_ways <= len(classes):
            raise InputError(f"n_ways must be in 2..{len(classes)} for the classes of {dataset.name} drawn from, "
                             f"got {n_ways}")
        smallest_train = int(torch.bincount(dataset.train.y, minlength=dataset.num_classes)[classes].min())
        smallest_test = int(torch.bincount(dataset.test.y, minlength=dataset.num_classes)[classes].min())
        pool = _largest_pool(n_ways, self.pool_per_class, self.imbalance, smallest_train - self.initial_per_class)
        evaluation = min(self.eval_per_class, smallest_test)
        if pool < 1:
            raise InputError(f"{dataset.name}'s smallest class has {smallest_train} training samples: too few for "
                             f"{self.initial_per_class} initial label(s) plus a pool")
        notes = []
        if pool < self.pool_per_class:
            notes.append(f"{dataset.name}: pool capped at {n_ways * pool} ({pool} per class) instead of "
                         f"{n_ways * self.pool_per_class}: its smallest class has {smallest_train} training samples")
        if evaluation < self.eval_per_class:
            notes.append(f"{dataset.name}: evaluation set capped at {n_ways * evaluation} ({evaluation} per class) "
                         f"instead of {n_ways * self.eval_per_class}: its smallest class has {smallest_test} test "
                         "samples")
        spec = EpisodeSpec(n_ways=n_ways, initial_per_class=self.initial_per_class, pool_per_class=pool,
                           eval_per_class=evaluation, imbalance=self.imbalance)
        return spec, notes + budget_notes(spec, self.rounds, self.k)

    def check_batch_memory(self, count: int, data_root=None) -> None:
        """Refuse, before anything is sampled, `count` episodes of this task whose inputs alone
        exceed the memory available (the same check sample_batch makes)."""
        if self.dataset in SYNTHETIC_SOURCES:
            return self.sampler(data_root)[0].check_batch(count)
        dataset = load_dataset(self.dataset, data_root)
        self.episode_spec(dataset)[0].check_batch_memory(count, dataset.train.X[0].numel())

    def sampler(self, data_root=None, device="cpu") -> tuple[EpisodeSampler | SyntheticTaskSampler, list[str]]:
        """The episode sampler of this task, and the notes on any cap (see episode_spec)."""
        if self.dataset in SYNTHETIC_SOURCES:
            spec = EpisodeSpec(n_ways=self.n_ways or 2, initial_per_class=self.initial_per_class,
                               pool_per_class=self.pool_per_class, eval_per_class=self.eval_per_class,
                               imbalance=self.imbalance)
            sampler = SyntheticTaskSampler(spec, shape=SYNTHETIC_SOURCES[self.dataset], device=device)
            return sampler, budget_notes(spec, self.rounds, self.k)
        dataset = load_dataset(self.dataset, data_root)
        spec, notes = self.episode_spec(dataset)
        return EpisodeSampler(dataset, spec, classes=self.class_ids(dataset), device=device), notes


def _largest_pool(n_ways: int, pool_per_class: int, imbalance: float, available: int) -> int:
    """The largest pool_per_class <= the one asked for whose commonest class fits in `available`
    train samples per class (0 if none does)."""
    for per_class in range(pool_per_class, 0, -1):
        spec = EpisodeSpec(n_ways=n_ways, pool_per_class=per_class, imbalance=imbalance)
        if max(spec.pool_counts) <= available:
            return per_class
    return 0


def budget_notes(spec: EpisodeSpec, rounds: int, k: int) -> list[str]:
    """A note when the query budget labels more than half the pool: by then every strategy has
    labeled much the same samples, so the end of the curves compares little."""
    pool = spec.pool_size
    if rounds * k > pool / 2:
        return [f"the budget ({rounds} rounds x k={k} = {rounds * k} labels) labels more than half of the pool of "
                f"{pool}: the end of the learning curves compares little; lower rounds or k, or raise the pool"]
    return []
