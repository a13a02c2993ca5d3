"""The strategy interface: what a strategy sees (QueryContext), what it returns (Selection),
and the checks every query passes through (Strategy.query, a template method).

A strategy first scores the pool (`score`: higher = more wanted, so scores can be inspected
and plotted), then selects k samples (`select`). Score-and-rank strategies only implement
`score`; batch-diverse ones (core-set, BADGE) override `select` too. Everything is batched
over episodes: a QueryContext holds B episodes with m pool samples each, and `available`
marks the pool samples not labeled yet. Callers use `query`, which validates the context
and the selection once for every strategy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from metaal.data.episodes import Episode
from metaal.errors import InputError, StrategyError
from metaal.features import SCHEMA, FeatureSchema
from metaal.learners import Learner, Prediction
from metaal.registry import Registry


@dataclass
class Simulation:
    """What the simulator knows beyond the pool's features: the episodes (labels included),
    the learner and the current labeled set. Handed only to strategies that declare
    `needs_simulation` (the lookahead references and the oracle trainer's rollout); in
    deployment there is none."""

    episode: Episode
    learner: Learner
    prepared: Any                 # learner.prepare(pool, extra={"eval": ...}) of this episode batch
    labeled_x: torch.Tensor       # (B, n, ...)
    labeled_y: torch.Tensor       # (B, n)
    accuracy: torch.Tensor        # (B,) test accuracy of the current round
    num_classes: int


@dataclass
class QueryContext:
    pool: Prediction                # the fitted learner on the pool: probs (B, m, C), embedding (B, m, H)
    features: torch.Tensor | None   # (B, m, F) per `schema`; None in metaal.select if not reads_features
    labeled_embedding: torch.Tensor  # (B, n, H)
    available: torch.Tensor         # (B, m) bool: True for pool samples that may still be queried
    generator: torch.Generator      # CPU generator for any randomness (seeded by the caller)
    schema: FeatureSchema = SCHEMA
    simulation: Simulation | None = None  # only for strategies with needs_simulation
    # When the pool is scored in batches: features (B, R, F) of a reference subset of the whole
    # pool, so that pool-level context (a policy's pooled summary) does not depend on the batch.
    context_features: torch.Tensor | None = None
    # features (B, m, F) as they would be with the pool samples `picks` (B, j) labeled too, each
    # with its predicted class: for strategies that choose a round's k samples one at a time
    refeature: Callable[[torch.Tensor], torch.Tensor] | None = None

    def uniform(self) -> torch.Tensor:
        """(B, m) uniform noise from the context's generator, on the pool's device."""
        return torch.rand(self.available.shape, generator=self.generator).to(self.available.device)


@dataclass
class Selection:
    """A strategy's answer: the picks, and what a meta-trainer needs from the choice (e.g. the
    picks' log-probability, or the candidates' scores and true gains), by name, per round."""

    indices: torch.Tensor                               # (B, k) distinct available pool indices
    record: dict[str, torch.Tensor] = field(default_factory=dict)


def check_query(ctx: QueryContext, k: int) -> None:
    if ctx.available.ndim != 2 or ctx.available.shape[1] == 0:
        raise InputError("the pool is empty: there is nothing to query")
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive int, got {k!r}")
    remaining = int(ctx.available.sum(1).min())
    if k > remaining:
        raise InputError(f"asked for k={k} samples but only {remaining} unlabeled pool samples remain "
                         "(in the episode with the fewest); lower k or the number of rounds")


def check_selection(ctx: QueryContext, picked: torch.Tensor, k: int, name: str) -> None:
    """A selection must be k distinct available pool samples per episode."""
    B, m = ctx.available.shape
    if picked.shape != (B, k) or picked.dtype != torch.int64:
        raise StrategyError(f"strategy {name!r} returned {tuple(picked.shape)} {picked.dtype} indices; "
                            f"expected ({B}, {k}) int64")
    if picked.min() < 0 or picked.max() >= m:
        raise StrategyError(f"strategy {name!r} selected indices outside the pool of {m}")
    sorted_picks = picked.sort(1).values
    rows = torch.arange(B, device=picked.device)[:, None]
    if (sorted_picks.diff(dim=1) == 0).any() or not ctx.available[rows, picked].all():
        raise StrategyError(f"strategy {name!r} selected a labeled or repeated pool sample")


def gumbel_top_k(scores: torch.Tensor, k: int, noise: torch.Tensor) -> torch.Tensor:
    """(B, k) ordered sample without replacement from Plackett-Luce(softmax(scores)), given
    uniform noise of the same shape (the Gumbel-max trick; -inf scores are never drawn)."""
    gumbel = -torch.log(-torch.log(noise.clamp(1e-12, 1 - 1e-7)))
    return (scores + gumbel).topk(k, dim=1).indices


class Strategy:
    """Subclass and implement `score` (or `select`); register it by name with
    `metaal.register_strategy`. A strategy that must refit the learner or read labels sets
    `needs_simulation = True` and gets `ctx.simulation`; it then runs only in simulation."""

    name: str = "base"
    needs_simulation: bool = False
    # False for a strategy that never reads ctx.features (it gets None from metaal.select, which
    # then skips the pool-wide features, the costliest part of scoring a streamed pool).
    reads_features: bool = True

    @property
    def selects_jointly(self) -> bool:
        """Whether `select` is more than the top k scores (then metaal.select hands it a
        candidate set of the best-scored samples of a streamed pool)."""
        return type(self).select is not Strategy.select

    def score(self, ctx: QueryContext) -> torch.Tensor:
        """(B, m) scores, higher = more wanted. Scores of unavailable samples are ignored."""
        raise NotImplementedError

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor | Selection:
        """(B, k) distinct indices of available pool samples (or a Selection with a record)."""
        scores = self.score(ctx).masked_fill(~ctx.available, float("-inf"))
        return scores.topk(k, dim=1).indices

    def query(self, ctx: QueryContext, k: int) -> Selection:
        """`select`, with the context and the selection checked: what every caller uses."""
        check_query(ctx, k)
        if self.needs_simulation and ctx.simulation is None:
            raise InputError(f"{self.name} refits the simulator's learner (and may read its labels); "
                             "it runs only in simulation, not in deployment")
        selection = self.select(ctx, k)
        selection = selection if isinstance(selection, Selection) else Selection(selection)
        check_selection(ctx, selection.indices, k, self.name)
        return selection


STRATEGIES: Registry[type[Strategy]] = Registry("strategy")


def register_strategy(name: str, strategy: type[Strategy] | None = None, *, replace: bool = False):
    """Register a Strategy class (or any callable that builds one from keyword options) under
    `name`, as a call or as a decorator; configs and --strategies can then name it."""
    def register(cls):
        if isinstance(cls, type) and issubclass(cls, Strategy) and cls.name in ("base", None):
            cls.name = name
        return STRATEGIES.register(name, cls, replace=replace)
    return register if strategy is None else register(strategy)


def make_strategy(name: str, **options) -> Strategy:
    """The strategy registered as `name`, built with `options`."""
    strategy = STRATEGIES.get(name)(**options)
    strategy.name = name
    return strategy


def simulation_free() -> list[str]:
    """The registered strategies that need no simulator: the baselines that run anywhere."""
    return [name for name in STRATEGIES if not getattr(STRATEGIES.get(name), "needs_simulation", False)]
