"""Score-and-rank baselines: random, and the classic uncertainty heuristics."""

from __future__ import annotations

from metaal.errors import InputError
from metaal.features import bald, entropy
from metaal.strategies.base import Strategy, register_strategy


@register_strategy("random")
class Random(Strategy):
    reads_features = False

    def score(self, ctx):
        return ctx.uniform()


@register_strategy("entropy")
class Entropy(Strategy):
    reads_features = False

    def score(self, ctx):
        return entropy(ctx.pool.probs)


@register_strategy("margin")
class Margin(Strategy):
    """Smallest gap between the two most probable classes first."""

    reads_features = False

    def score(self, ctx):
        top2 = ctx.pool.probs.topk(2, dim=-1).values
        return -(top2[..., 0] - top2[..., 1])


@register_strategy("least_confidence")
class LeastConfidence(Strategy):
    reads_features = False

    def score(self, ctx):
        return 1 - ctx.pool.probs.max(-1).values


@register_strategy("bald")
class BALD(Strategy):
    """Mutual information between the label and the model (Houlsby et al. 2011), from the
    learner's members (bootstrap replicas or MC-dropout passes)."""

    reads_features = False

    def score(self, ctx):
        if ctx.pool.member_probs is None:
            raise InputError("BALD needs a learner with members (n_members > 0 or mc_passes > 0)")
        return bald(ctx.pool.member_probs)
