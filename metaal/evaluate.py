"""The evaluation protocol (../shared/DESIGN.md): every strategy on the same seeded
episodes of a target dataset, learning curves in, paired comparisons out."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from metaal.data import Dataset, EpisodeSampler, EpisodeSpec
from metaal.learners import make_learner
from metaal.loop import run_active_learning
from metaal.metrics import Curves, plot_learning_curves, write_curves_csv, write_summary_json
from metaal.strategies import Strategy


def episode_spec_for(dataset: Dataset, n_ways: int | None = None, pool_size: int = 500, eval_size: int = 1000,
                     initial_per_class: int = 1, classes=None) -> EpisodeSpec:
    """A balanced episode shape for `dataset` (or its `classes`): n_ways classes (default: all),
    about pool_size pool and eval_size evaluation samples, capped by its smallest class."""
    classes = list(range(dataset.num_classes)) if classes is None else list(classes)
    n_ways = len(classes) if n_ways is None else n_ways
    if not 2 <= n_ways <= len(classes):
        raise ValueError(f"n_ways must be in 2..{len(classes)} for {dataset.name}, got {n_ways}")
    smallest_train = int(torch.bincount(dataset.train.y, minlength=dataset.num_classes)[classes].min())
    smallest_test = int(torch.bincount(dataset.test.y, minlength=dataset.num_classes)[classes].min())
    pool_per_class = min(pool_size // n_ways, smallest_train - initial_per_class)
    if pool_per_class < 1:
        raise ValueError(f"{dataset.name}'s smallest class has {smallest_train} training samples: too few for "
                         f"{initial_per_class} initial label(s) plus a pool")
    return EpisodeSpec(n_ways=n_ways, initial_per_class=initial_per_class, pool_per_class=pool_per_class,
                       eval_per_class=max(1, min(eval_size // n_ways, smallest_test)))


def compare_strategies(dataset: Dataset, spec: EpisodeSpec, strategies: dict[str, Strategy], seeds: list[int],
                       rounds: int, k: int, learner: str = "logreg", classes=None, device="cpu",
                       progress: bool = True) -> tuple[Curves, dict[str, torch.Tensor], dict[str, float]]:
    """Run every strategy on the episodes of `seeds` (one batch, the same for all strategies).

    Returns the learning curves, each strategy's selections (seeds, rounds, k) and its seconds."""
    if rounds * k > spec.n_ways * spec.pool_per_class:
        raise ValueError(f"{rounds} rounds x k={k} = {rounds * k} labels exceed the pool of "
                         f"{spec.n_ways * spec.pool_per_class}; lower --rounds or --batch-size, or raise --pool-size")
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
