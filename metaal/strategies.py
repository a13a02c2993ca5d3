"""Query strategies: one interface for every strategy, learned or not.

A strategy first scores the pool (`score`: higher = more wanted, so scores can be inspected
and plotted), then selects k samples (`select`). Score-and-rank strategies only implement
`score`; batch-diverse ones (core-set, BADGE) override `select` too. Everything is batched
over episodes: a QueryContext holds B episodes with m pool samples each, and `available`
marks the pool samples not labeled yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from metaal.data.episodes import Episode
from metaal.errors import InputError
from metaal.features import SCHEMA, FeatureSchema, bald, entropy
from metaal.learners import Learner, Prediction


@dataclass
class Simulation:
    """What the simulator knows beyond the pool's features: the episodes (labels included),
    the learner and the current labeled set. Only oracles (which label candidates to measure
    their true gain) may look at it; in deployment there is none."""

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
    features: torch.Tensor          # (B, m, F) per `schema`
    labeled_embedding: torch.Tensor  # (B, n, H)
    available: torch.Tensor         # (B, m) bool: True for pool samples that may still be queried
    generator: torch.Generator      # CPU generator for any randomness (seeded by the caller)
    schema: FeatureSchema = SCHEMA
    simulation: Simulation | None = None  # set by the simulator, None in deployment
    # When the pool is scored in batches: features (B, R, F) of a reference subset of the whole
    # pool, so that pool-level context (a policy's pooled summary) does not depend on the batch.
    context_features: torch.Tensor | None = None

    def uniform(self) -> torch.Tensor:
        """(B, m) uniform noise from the context's generator, on the pool's device."""
        return torch.rand(self.available.shape, generator=self.generator).to(self.available.device)


def check_query(ctx: QueryContext, k: int) -> None:
    if ctx.available.ndim != 2 or ctx.available.shape[1] == 0:
        raise InputError("the pool is empty: there is nothing to query")
    if not isinstance(k, int) or k < 1:
        raise InputError(f"k must be a positive int, got {k!r}")
    remaining = int(ctx.available.sum(1).min())
    if k > remaining:
        raise InputError(f"asked for k={k} samples but only {remaining} unlabeled pool samples remain "
                         "(in the episode with the fewest); lower k or the number of rounds")


def gumbel_top_k(scores: torch.Tensor, k: int, noise: torch.Tensor) -> torch.Tensor:
    """(B, k) ordered sample without replacement from Plackett-Luce(softmax(scores)), given
    uniform noise of the same shape (the Gumbel-max trick; -inf scores are never drawn)."""
    gumbel = -torch.log(-torch.log(noise.clamp(1e-12, 1 - 1e-7)))
    return (scores + gumbel).topk(k, dim=1).indices


class Strategy:
    name: str = "base"

    def score(self, ctx: QueryContext) -> torch.Tensor:
        """(B, m) scores, higher = more wanted. Scores of unavailable samples are ignored."""
        raise NotImplementedError

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        """(B, k) distinct indices of available pool samples."""
        check_query(ctx, k)
        scores = self.score(ctx).masked_fill(~ctx.available, float("-inf"))
        return scores.topk(k, dim=1).indices


class Random(Strategy):
    name = "random"

    def score(self, ctx):
        return ctx.uniform()


class Entropy(Strategy):
    name = "entropy"

    def score(self, ctx):
        return entropy(ctx.pool.probs)


class Margin(Strategy):
    """Smallest gap between the two most probable classes first."""

    name = "margin"

    def score(self, ctx):
        top2 = ctx.pool.probs.topk(2, dim=-1).values
        return -(top2[..., 0] - top2[..., 1])


class LeastConfidence(Strategy):
    name = "least_confidence"

    def score(self, ctx):
        return 1 - ctx.pool.probs.max(-1).values


class BALD(Strategy):
    """Mutual information between the label and the model (Houlsby et al. 2011), from the
    learner's members (bootstrap replicas or MC-dropout passes)."""

    name = "bald"

    def score(self, ctx):
        if ctx.pool.member_probs is None:
            raise InputError("BALD needs a learner with members (n_members > 0 or mc_passes > 0)")
        return bald(ctx.pool.member_probs)


class CoreSet(Strategy):
    """k-center greedy in the learner's embedding (Sener & Savarese 2018): repeatedly take
    the sample farthest from the labeled set and the samples already taken."""

    name = "coreset"

    def score(self, ctx):
        return torch.cdist(ctx.pool.embedding, ctx.labeled_embedding).min(-1).values

    def select(self, ctx, k):
        check_query(ctx, k)
        emb = ctx.pool.embedding
        distance = self.score(ctx).masked_fill(~ctx.available, float("-inf"))
        chosen = []
        for _ in range(k):
            pick = distance.argmax(1)                                            # (B,)
            chosen.append(pick)
            center = emb[torch.arange(len(pick)), pick].unsqueeze(1)             # (B, 1, H)
            distance = torch.minimum(distance, torch.cdist(emb, center).squeeze(-1))
            distance[torch.arange(len(pick)), pick] = float("-inf")
        return torch.stack(chosen, 1)


class BADGE(Strategy):
    """k-means++ seeding on gradient embeddings (Ash et al. 2020).

    The gradient embedding of sample i is g_i = (p_i - onehot(argmax p_i)) (x) h_i. It is
    never materialised: |g_i - g_j|^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i.a_j)(h_i.h_j)
    with a = p - onehot, so memory stays O(m (C + H)).
    """

    name = "badge"

    def score(self, ctx):
        a, h = self._parts(ctx)
        return a.norm(dim=-1) * h.norm(dim=-1)  # the gradient embedding's norm

    @staticmethod
    def _parts(ctx):
        p = ctx.pool.probs
        return p - torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).float(), ctx.pool.embedding

    def select(self, ctx, k):
        check_query(ctx, k)
        a, h = self._parts(ctx)
        sq_norm = (a * a).sum(-1) * (h * h).sum(-1)                              # (B, m)
        rows = torch.arange(a.shape[0], device=a.device)
        available = ctx.available.clone()
        pick = sq_norm.masked_fill(~available, float("-inf")).argmax(1)          # first: largest gradient
        chosen, d2 = [pick], None
        for _ in range(k - 1):
            available[rows, pick] = False
            a_c, h_c = a[rows, pick].unsqueeze(1), h[rows, pick].unsqueeze(1)
            to_center = (sq_norm + sq_norm[rows, pick].unsqueeze(1)
                         - 2 * (a * a_c).sum(-1) * (h * h_c).sum(-1)).clamp_min(0)
            d2 = to_center if d2 is None else torch.minimum(d2, to_center)
            # Sample proportionally to d2 among available samples (uniformly when all d2 are 0),
            # via the Gumbel-max trick so the CPU generator serves any device.
            weight = torch.where(d2.sum(1, keepdim=True) > 0, d2, torch.ones_like(d2)).masked_fill(~available, 0)
            pick = gumbel_top_k(weight.log(), 1, ctx.uniform())[:, 0]
            chosen.append(pick)
        return torch.stack(chosen, 1)


STRATEGIES: dict[str, type[Strategy]] = {
    s.name: s for s in (Random, Entropy, Margin, LeastConfidence, BALD, CoreSet, BADGE)
}


def make_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise InputError(f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}")
    return STRATEGIES[name]()
