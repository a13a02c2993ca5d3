"""The active-learning loop: one function for every strategy, learned or not.

Rounds 0..T on a batch of B episodes in lockstep. Each round fits the learner on the
labeled set (the episode's initial labels plus every pool sample queried so far), records
test accuracy on the evaluation set, then (before the last round) computes the pool
features, lets the strategy pick k pool samples, and labels them. The pool never changes
shape; `available` marks what is still unlabeled, as in baal's per-item labeled map.
Learner fits run under no_grad: a meta-trainer's gradient flows through the policy's
scores (kept in the strategy's Selection records), never through a fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from metaal.data.episodes import Episode
from metaal.errors import InputError
from metaal.features import PoolStatistics, compute_features
from metaal.learners import Learner, Prediction
from metaal.strategies import QueryContext, Simulation, Strategy


@dataclass
class ALResult:
    accuracy: torch.Tensor   # (B, T+1) test accuracy after rounds 0..T
    n_labeled: torch.Tensor  # (T+1,) labeled-set size at each round
    selected: torch.Tensor   # (B, T, k) pool indices queried in each round
    # per round, what the strategy recorded with its choice (Selection.record), for meta-trainers
    records: list[dict[str, torch.Tensor]] = field(default_factory=list)


def _batched(episode: Episode) -> Episode:
    if episode.pool_y.ndim == 1:  # a single episode: add the batch dim
        return Episode(**{k: v.unsqueeze(0) for k, v in vars(episode).items()})
    return episode


def _check_budget(episode: Episode, rounds: int, k: int) -> None:
    m = episode.pool_y.shape[1]
    if m == 0:
        raise InputError("the episode's pool is empty: there is nothing to query")
    if rounds < 0 or k < 1:
        raise InputError(f"need rounds >= 0 and k >= 1; got rounds={rounds}, k={k}")
    if rounds * k > m:
        raise InputError(f"a budget of {rounds} rounds x k={k} = {rounds * k} labels exceeds the pool of {m}; "
                         "lower rounds or k, or sample a larger pool")


def picks_labeled(pool: Prediction, labeled_embedding: torch.Tensor, labeled_y: torch.Tensor, num_classes: int,
                  budget_used: float, stats: PoolStatistics, index: torch.Tensor | None = None):
    """A QueryContext.refeature: the pool's features with the picks (B, j) of this round counted
    as labeled, each with its predicted class (the round's budget_used unchanged)."""
    stats = stats.of_samples(pool.embedding, index)

    def refeature(picks: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(picks), device=picks.device)[:, None]
        embedding = torch.cat([labeled_embedding, pool.embedding[rows, picks]], 1)
        y = torch.cat([labeled_y, pool.probs[rows, picks].argmax(-1)], 1)
        with torch.no_grad():
            return compute_features(pool, embedding, y, num_classes, budget_used, stats, index=index)
    return refeature


def run_active_learning(episode: Episode, learner: Learner, strategy: Strategy, rounds: int, k: int,
                        seed: int = 0, progress: bool = False) -> ALResult:
    """Run `rounds` rounds of querying `k` pool samples on an episode or a batch of episodes."""
    episode = _batched(episode)
    _check_budget(episode, rounds, k)
    B, m = episode.pool_y.shape
    num_classes = int(episode.classes.shape[-1])
    device = episode.pool_x.device
    generator = torch.Generator().manual_seed(seed)
    available = torch.ones(B, m, dtype=torch.bool, device=device)
    queried = torch.empty(B, 0, dtype=torch.int64, device=device)
    accuracy = torch.empty(B, rounds + 1, device=device)
    rows = torch.arange(B, device=device)[:, None]
    records = []

    with torch.no_grad():
        prepared = learner.prepare(episode.pool_x, generator, extra={"eval": episode.eval_x})
    stats = None  # pool statistics: computed once when the learner's embedding ignores the labels
    fitted = None
    for r in tqdm(range(rounds + 1), desc=f"{strategy.name}", disable=not progress, leave=False):
        labeled_x = torch.cat([episode.labeled_x, episode.pool_x[rows, queried]], 1)
        labeled_y = torch.cat([episode.labeled_y, episode.pool_y[rows, queried]], 1)
        with torch.no_grad():
            if fitted is not None and hasattr(learner, "fit_from"):  # a warm start from the last round
                fitted = learner.fit_from(fitted, prepared, labeled_x, labeled_y, num_classes, generator)
            else:
                fitted = learner.fit(prepared, labeled_x, labeled_y, num_classes, generator)
            accuracy[:, r] = (fitted.predict_prepared("eval").probs.argmax(-1) == episode.eval_y).float().mean(1)
            if r == rounds:
                break
            pool, labeled = fitted.predict_prepared("pool"), fitted.predict(labeled_x)
            if stats is None or not learner.fixed_embedding:
                stats = PoolStatistics.in_memory(pool.embedding, generator)
            features = compute_features(pool, labeled.embedding, labeled_y, num_classes, r / rounds, stats)
        simulation = Simulation(episode, learner, prepared, labeled_x, labeled_y, accuracy[:, r], num_classes) \
            if strategy.needs_simulation else None
        ctx = QueryContext(pool=pool, features=features, labeled_embedding=labeled.embedding,
                           available=available, generator=generator, simulation=simulation,
                           refeature=picks_labeled(pool, labeled.embedding, labeled_y, num_classes, r / rounds, stats))
        selection = strategy.query(ctx, k)
        records.append(selection.record)
        available[rows, selection.indices] = False
        queried = torch.cat([queried, selection.indices], 1)

    n0 = episode.labeled_y.shape[1]
    return ALResult(accuracy=accuracy.cpu(), n_labeled=torch.arange(rounds + 1) * k + n0,
                    selected=queried.view(B, rounds, k).cpu(), records=records)
