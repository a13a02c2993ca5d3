"""The evaluation protocol (../shared/DESIGN.md): every strategy on the same seeded
episodes of a task, learning curves in, paired comparisons out; and the transfer table's
tasks (TARGETS), which `experiments/transfer.py --preset NAME` runs one at a time."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from metaal.data import Dataset, EpisodeSpec, TaskSpec
from metaal.errors import InputError
from metaal.learners import make_learner
from metaal.loop import run_active_learning
from metaal.metrics import Curves, plot_learning_curves, write_curves_csv, write_summary_json
from metaal.strategies import Strategy

# The transfer table's episodes start at this seed: never used in meta-training or validation.
TABLE_SEED_OFFSET = 10_000

_IMAGE = dict(n_ways=5, pool_per_class=100, eval_per_class=200, rounds=20, k=5)
_TABULAR = dict(n_ways=2, pool_per_class=100, eval_per_class=200, rounds=15, k=2)
_MULTICLASS_TABULAR = dict(n_ways=None, pool_per_class=100, eval_per_class=200, rounds=20, k=5)  # every class
TARGETS: dict[str, TaskSpec] = {
    "fashion_mnist": TaskSpec("fashion_mnist", **_IMAGE),
    "kmnist": TaskSpec("kmnist", **_IMAGE),
    "mnist_digits_5-9": TaskSpec("mnist", classes=(5, 6, 7, 8, 9), **_IMAGE),  # the default policy's validation classes
    "omniglot_sanskrit_tagalog": TaskSpec("omniglot", classes=("Sanskrit", "Tagalog"), by_group=True, n_ways=5,
                                          pool_per_class=14, eval_per_class=5, rounds=10, k=5),
    **{name: TaskSpec(name, **_TABULAR) for name in
       ("adult", "australian", "breast_cancer", "diabetis", "flare_solar", "german", "heart", "mushrooms",
        "waveform", "wdbc", "checkerboard2x2", "checkerboard4x4", "rotated_checkerboard2x2", "heart_scale")},
    **{name: TaskSpec(name, **_MULTICLASS_TABULAR) for name in ("casp_rmsd5", "yeast_labelsets6")},
}


# Targets of the deep table (issue 15, benchmarks/deep_table.py): the image targets, and the
# held-out Omniglot alphabets with all their characters (59 classes of 15 pool images), a pool
# large enough for 10 rounds of k=20, which the 5-way transfer-table target is not.
DEEP_TARGETS: dict[str, TaskSpec] = {
    **{name: TARGETS[name] for name in ("fashion_mnist", "kmnist", "mnist_digits_5-9")},
    "omniglot_sanskrit_tagalog_all": TARGETS["omniglot_sanskrit_tagalog"].replace(n_ways=None, pool_per_class=15),
}

# Seed ranges. Development: the transfer table's seeds, looked at while choosing between
# attempts. Report: never used for training, validation or any choice; only for the final table.
# A report range that a choice has looked at is spent: 20000 was, when sequential selection
# became the default (issue 14), so the report range is now 30000.
DEVELOPMENT_SEED_OFFSET = TABLE_SEED_OFFSET
REPORT_SEED_OFFSET = 30_000

# The benchmark's regimes, each a change to a target's task. The large-batch ones aim at a pool
# of 2000 labeled 50 at a time for 10 rounds; a target whose classes cannot hold that pool runs
# k=20 on the largest pool it holds (at least 400, so the budget stays within half the pool).
IMBALANCE = 10.0
LARGE_POOL, LARGE_K, SMALLER_K, LARGE_ROUNDS = 2000, 50, 20, 10
REGIMES = {
    "balanced-k5": {},
    "imbalanced-k5": {"imbalance": IMBALANCE},
    "balanced-k50": {"large_batch": True},
    "imbalanced-k50": {"large_batch": True, "imbalance": IMBALANCE},
}


def regime_task(task: TaskSpec, regime: str, dataset: Dataset) -> tuple[TaskSpec | None, str]:
    """The task of `regime` on a target (its task and its loaded dataset), or None and the reason
    the target cannot hold it. The k5 regimes keep the target's k (k=2 on binary tabular sets)."""
    if regime not in REGIMES:
        raise InputError(f"unknown regime {regime!r}; choose from {', '.join(REGIMES)}")
    change = dict(REGIMES[regime])
    task = task.replace(imbalance=change.get("imbalance", 1.0))
    if not change.get("large_batch"):
        pool = task.episode_spec(dataset)[0].pool_size
        if task.rounds * task.k > pool:
            return None, f"{dataset.name}'s classes hold a pool of {pool}, fewer than its {task.rounds * task.k} labels"
        return task, ""
    n_ways = task.n_ways or len(task.class_ids(dataset))
    wanted = task.replace(pool_per_class=LARGE_POOL // n_ways, rounds=LARGE_ROUNDS, k=LARGE_K)
    spec, _ = wanted.episode_spec(dataset)
    if spec.pool_size >= LARGE_POOL:
        return wanted, ""
    if spec.pool_size >= 2 * LARGE_ROUNDS * SMALLER_K:
        return wanted.replace(pool_per_class=spec.pool_per_class, k=SMALLER_K), ""
    return None, (f"{dataset.name}'s classes hold a pool of {spec.pool_size}, fewer than the "
                  f"{2 * LARGE_ROUNDS * SMALLER_K} that {LARGE_ROUNDS} rounds of k={SMALLER_K} need")


def warn(notes: list[str]) -> list[str]:
    """Print each note on stderr as a warning; returns them, to be recorded with the results."""
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return notes


@dataclass
class Comparison:
    """What `compare_strategies` measured."""

    curves: Curves
    selected: dict[str, torch.Tensor]  # per strategy: (seeds, rounds, k) pool indices
    seconds: dict[str, float]          # per strategy
    spec: EpisodeSpec                  # the episode shape used (after any cap)
    notes: list[str]                   # caps and budget warnings, already shown on stderr
    dataset_name: str


def compare_strategies(task: TaskSpec, strategies: dict[str, Strategy], seeds: list[int], data_root=None,
                       device="cpu", progress: bool = True) -> Comparison:
    """Run every strategy on the episodes of `seeds` of `task` (one batch, the same for all
    strategies), each with a fresh learner of the task's."""
    sampler, notes = task.sampler(data_root, device)
    spec = sampler.spec
    if task.rounds * task.k > spec.pool_size:
        raise InputError(f"{task.rounds} rounds x k={task.k} = {task.rounds * task.k} labels exceed the pool of "
                         f"{spec.pool_size}; lower --rounds or --k, or raise --pool-per-class")
    warn(notes)
    episodes = sampler.sample_batch(seeds)
    accuracy, selected, seconds = {}, {}, {}
    for name, strategy in strategies.items():
        start = time.perf_counter()
        result = run_active_learning(episodes, make_learner(task.learner), strategy, rounds=task.rounds, k=task.k,
                                     seed=0, progress=progress)
        seconds[name] = round(time.perf_counter() - start, 2)
        accuracy[name], selected[name] = result.accuracy.numpy(), result.selected
    curves = Curves(accuracy=accuracy, n_labeled=result.n_labeled.numpy(), seeds=list(seeds))
    name = getattr(getattr(sampler, "dataset", None), "name", task.dataset)
    return Comparison(curves, selected, seconds, spec, notes, name)


def write_comparison(out: Path, curves: Curves, summary: dict, title: str) -> None:
    """The protocol's files: curves.csv, summary.json and learning_curves.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    write_curves_csv(curves, out / "curves.csv")
    write_summary_json(summary, out / "summary.json")
    plot_learning_curves(curves, out / "learning_curves.png", title=title)
