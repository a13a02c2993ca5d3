"""The whole active-learning loop around your own model, in one call.

    history = metaal.active_learn(strategy, model, train_fn, pool, label_fn, rounds=10, k=20,
                                  num_classes=10, initial=20, test=(x_test, y_test))

Each round: `train_fn(model, x, y)` trains your model on the labeled set (in place, or
returning the trained model), the model is evaluated on `test` if given, and
`metaal.select` picks the k most wanted of the samples not labeled yet, which `label_fn`
(your oracle: a human, a lookup) labels. After the last round the model is trained and
evaluated once more. The round state the policy reads (`budget_used`: the share of the
labels spent, initial ones included) is set from `initial + rounds * k`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm.auto import tqdm

from metaal.deploy import _first, _pool_size, _rows, eval_mode, resolve_strategy, select
from metaal.errors import InputError
from metaal.strategies import Strategy


@dataclass
class History:
    """What an active_learn run did: one entry per round (the last one after the final training)."""

    rounds: list[dict] = field(default_factory=list)  # round, n_labeled, accuracy (with a test set), picked, seconds
    labeled: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))  # pool indices, in order
    labels: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.int64))   # their labels

    @property
    def accuracy(self) -> list[float]:
        return [r["accuracy"] for r in self.rounds if "accuracy" in r]

    @property
    def n_labeled(self) -> list[int]:
        return [r["n_labeled"] for r in self.rounds]


def _initial(initial, n: int, seed: int) -> torch.Tensor:
    """The first pool indices to label: given, or `initial` of them at random (seeded)."""
    if isinstance(initial, int):
        if not 1 <= initial <= n:
            raise InputError(f"initial={initial}: label between 1 and the pool's {n} samples first")
        return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:initial]
    index = torch.as_tensor(initial, dtype=torch.int64).flatten()
    if len(index) == 0 or index.unique().numel() != len(index) or index.min() < 0 or index.max() >= n:
        raise InputError(f"initial must be distinct pool indices in 0..{n - 1} (at least one)")
    return index


def _labels(label_fn: Callable, index: torch.Tensor, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(label_fn(index.clone())).to(torch.int64).cpu().flatten()
    if labels.shape != index.shape or labels.min() < 0 or labels.max() >= num_classes:
        raise InputError(f"label_fn must return one class id in 0..{num_classes - 1} per index "
                         f"({len(index)}); got shape {tuple(labels.shape)}")
    return labels


@torch.no_grad()
def _accuracy(model: nn.Module, test, batch_size: int) -> float:
    x, y = test
    device = next(model.parameters()).device
    correct = 0
    with eval_mode(model):
        for i in range(0, len(x), batch_size):
            logits = _first(model(x[i:i + batch_size].to(device)))  # logits, or (logits, embedding)
            correct += int((logits.argmax(1).cpu() == y[i:i + batch_size].cpu()).sum())
    return correct / len(x)


def active_learn(strategy: Strategy | str | None, model: nn.Module, train_fn: Callable, pool, label_fn: Callable,
                 rounds: int, k: int, num_classes: int, *, initial=10, test=None,
                 log: Callable[[dict], None] | None = None, progress: bool = True, seed: int = 0,
                 **select_options) -> History:
    """Run `rounds` rounds of active learning with `strategy` on your model; returns the History.

    `strategy` is what metaal.select takes: a Strategy, a shipped policy's or a baseline's name,
    a checkpoint's path, or None for the shipped policy of a linear head.
    `pool` is a tensor or an unshuffled DataLoader of unlabeled inputs; `label_fn(indices)`
    returns their labels; `initial` is the number of random first labels, or their pool
    indices; `test` an optional (x, y) to evaluate on after each training; `log` is called
    with each round's entry (e.g. `wandb.log`). Other keyword options go to metaal.select."""
    strategy = resolve_strategy(strategy, select_options.get("device", "auto"))
    n = _pool_size(pool)
    if rounds < 1 or k < 1:
        raise InputError(f"rounds and k must be >= 1; got rounds={rounds}, k={k}")
    history = History()
    history.labeled = _initial(initial, n, seed)
    if len(history.labeled) + rounds * k > n:
        raise InputError(f"the budget ({len(history.labeled)} initial + {rounds} rounds x {k}) is larger than the "
                         f"pool of {n}")
    history.labels = _labels(label_fn, history.labeled, num_classes)
    budget = len(history.labeled) + rounds * k
    for r in tqdm(range(rounds + 1), desc=f"active learning ({strategy.name})", disable=not progress):
        start = time.perf_counter()
        x = _rows(pool, history.labeled)
        model = train_fn(model, x, history.labels) or model
        entry = {"round": r, "n_labeled": len(history.labeled)}
        if test is not None:
            entry["accuracy"] = _accuracy(model, test, select_options.get("batch_size", 4096))
        if r < rounds:
            picked = select(strategy, model, pool, k, x, history.labels, num_classes, exclude=history.labeled,
                            budget_used=len(history.labeled) / budget, seed=seed + r, **select_options)
            history.labeled = torch.cat([history.labeled, picked])
            history.labels = torch.cat([history.labels, _labels(label_fn, picked, num_classes)])
            entry["picked"] = picked.tolist()
        entry["seconds"] = time.perf_counter() - start
        history.rounds.append(entry)
        if log is not None:
            log({key: value for key, value in entry.items() if key != "picked"})
    return history
