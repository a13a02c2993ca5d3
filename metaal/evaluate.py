"""The evaluation protocol (../shared/DESIGN.md): every strategy on the same seeded
episodes of a target dataset, learning curves in, paired comparisons out."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from metaal.data import Dataset, EpisodeSampler, EpisodeSpec, load_dataset, split_classes
from metaal.errors import InputError
from metaal.learners import make_learner
from metaal.loop import run_active_learning
from metaal.metrics import Curves, plot_learning_curves, write_curves_csv, write_summary_json
from metaal.strategies import Strategy


def episode_spec_for(dataset: Dataset, n_ways: int | None = None, pool_size: int = 500, eval_size: int = 1000,
                     initial_per_class: int = 1, classes=None) -> tuple[EpisodeSpec, list[str]]:
    """A balanced episode shape for `dataset` (or its `classes`): n_ways classes (default: all),
    about pool_size pool and eval_size evaluation samples, capped by its smallest class.

    Returns the spec and one note per cap (pool or evaluation set smaller than asked for), for
    the caller to show on stderr and record with the results."""
    classes = list(range(dataset.num_classes)) if classes is None else list(classes)
    n_ways = len(classes) if n_ways is None else n_ways
    if not 2 <= n_ways <= len(classes):
        raise InputError(f"n_ways must be in 2..{len(classes)} for {dataset.name}, got {n_ways}")
    if pool_size < n_ways or eval_size < n_ways:
        raise InputError(f"pool size {pool_size} and evaluation size {eval_size} must each hold at least one "
                         f"sample of each of the {n_ways} classes")
    smallest_train = int(torch.bincount(dataset.train.y, minlength=dataset.num_classes)[classes].min())
    smallest_test = int(torch.bincount(dataset.test.y, minlength=dataset.num_classes)[classes].min())
    pool_per_class = min(pool_size // n_ways, smallest_train - initial_per_class)
    eval_per_class = min(eval_size // n_ways, smallest_test)
    if pool_per_class < 1:
        raise InputError(f"{dataset.name}'s smallest class has {smallest_train} training samples: too few for "
                         f"{initial_per_class} initial label(s) plus a pool")
    notes = []
    if pool_per_class < pool_size // n_ways:
        notes.append(f"{dataset.name}: pool capped at {n_ways * pool_per_class} ({pool_per_class} per class) instead "
                     f"of {pool_size}: its smallest class has {smallest_train} training samples")
    if eval_per_class < eval_size // n_ways:
        notes.append(f"{dataset.name}: evaluation set capped at {n_ways * eval_per_class} ({eval_per_class} per "
                     f"class) instead of {eval_size}: its smallest class has {smallest_test} test samples")
    spec = EpisodeSpec(n_ways=n_ways, initial_per_class=initial_per_class, pool_per_class=pool_per_class,
                       eval_per_class=eval_per_class)
    return spec, notes


def budget_notes(spec: EpisodeSpec, rounds: int, k: int) -> list[str]:
    """A note when the query budget labels more than half the pool: by then every strategy has
    labeled much the same samples, so the end of the curves compares little."""
    pool = spec.n_ways * spec.pool_per_class
    if rounds * k > pool / 2:
        return [f"the budget ({rounds} rounds x k={k} = {rounds * k} labels) labels more than half of the pool of "
                f"{pool}: the end of the learning curves compares little; lower --rounds or --k, or raise the pool"]
    return []


def warn(notes: list[str]) -> list[str]:
    """Print each note on stderr as a warning; returns them, to be recorded with the results."""
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return notes


@dataclass(frozen=True)
class Target:
    """A named evaluation protocol: which dataset, classes and episode shape, how many rounds of
    k, and from which seed the paired episodes start. The transfer table runs every one of
    TARGETS; `experiments/transfer.py --preset NAME` runs one, on the same episodes."""

    name: str
    dataset: str
    n_ways: int | None             # None: all the classes
    pool_size: int
    rounds: int
    k: int
    classes: tuple | None = None   # class ids or names; None: all
    by_group: bool = False
    eval_size: int = 1000
    note: str = ""
    seed_offset: int = 10_000      # the transfer table's seeds, never used in meta-training or validation
    initial_per_class: int = 1


_IMAGE = dict(n_ways=5, pool_size=500, rounds=20, k=5)
_TABULAR = dict(n_ways=2, pool_size=200, rounds=15, k=2, eval_size=400)
TARGETS: dict[str, Target] = {t.name: t for t in [
    Target("fashion_mnist", "fashion_mnist", **_IMAGE),
    Target("kmnist", "kmnist", **_IMAGE),
    Target("mnist_digits_5-9", "mnist", classes=(5, 6, 7, 8, 9), note="validation classes of the default policy",
           **_IMAGE),
    Target("omniglot_sanskrit_tagalog", "omniglot", n_ways=5, pool_size=70, rounds=10, k=5,
           classes=("Sanskrit", "Tagalog"), by_group=True, eval_size=25),
    *[Target(name, name, **_TABULAR) for name in
      ("adult", "australian", "breast_cancer", "diabetis", "flare_solar", "german", "heart", "mushrooms",
       "waveform", "wdbc", "checkerboard2x2", "checkerboard4x4", "rotated_checkerboard2x2", "heart_scale")],
]}


def target_episodes(target: Target, data_root) -> tuple[Dataset, tuple | None, EpisodeSpec, list[str]]:
    """The target's dataset, its classes (None: all), its episode shape and the notes on any cap."""
    dataset = load_dataset(target.dataset, data_root)
    classes = None
    if target.classes is not None:
        classes = split_classes(dataset, list(target.classes), by_group=target.by_group).held_out
    spec, notes = episode_spec_for(dataset, target.n_ways, target.pool_size, target.eval_size,
                                   target.initial_per_class, classes=classes)
    return dataset, classes, spec, notes + budget_notes(spec, target.rounds, target.k)


def compare_strategies(dataset: Dataset, spec: EpisodeSpec, strategies: dict[str, Strategy], seeds: list[int],
                       rounds: int, k: int, learner: str = "logreg", classes=None, device="cpu",
                       progress: bool = True) -> tuple[Curves, dict[str, torch.Tensor], dict[str, float]]:
    """Run every strategy on the episodes of `seeds` (one batch, the same for all strategies).

    Returns the learning curves, each strategy's selections (seeds, rounds, k) and its seconds."""
    if rounds * k > spec.n_ways * spec.pool_per_class:
        raise InputError(f"{rounds} rounds x k={k} = {rounds * k} labels exceed the pool of "
                         f"{spec.n_ways * spec.pool_per_class}; lower --rounds or --k, or raise --pool-size")
    episodes = EpisodeSampler(dataset, spec, classes=classes, device=device).sample_batch(seeds)
    accuracy, selected, seconds = {}, {}, {}
    for name, strategy in strategies.items():
        start = time.perf_counter()
        result = run_active_learning(episodes, make_learner(learner), strategy, rounds=rounds, k=k, seed=0,
                                     progress=progress)
        seconds[name] = round(time.perf_counter() - start, 2)
        accuracy[name], selected[name] = result.accuracy.numpy(), result.selected
    return Curves(accuracy=accuracy, n_labeled=result.n_labeled.numpy(), seeds=seeds), selected, seconds


def write_comparison(out: Path, curves: Curves, summary: dict, title: str) -> None:
    """The protocol's files: curves.csv, summary.json and learning_curves.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_curves_csv(curves, out / "curves.csv")
    write_summary_json(summary, out / "summary.json")
    plot_learning_curves(curves, out / "learning_curves.png", title=title)
