"""The one-step lookahead oracle: the true accuracy gain of labeling a pool sample.

For B episodes and M candidate pool samples each, the learner is retrained on the labeled
set plus each candidate (B*M fits in one batched call) and scored on a labeled set. The gain
is that accuracy minus the current one. It needs the labels, so it only exists in
simulation: it is the teacher of the `oracle` meta-trainer and the reference ("how much of
the gap to the oracle does the policy close?") of the benchmarks.

Where the gain is measured matters for the reference. Measured on the episode's evaluation
set (`on="eval"`), the very set the learning curves report, the oracle also picks the labels
that happen to flip its particular test samples: part of its lead is fitted to the test set
and no strategy could learn it. Measured on the pool's own true labels (`on="pool"`), it
never sees a test sample, so its lead over margin is one a strategy could in principle reach.
"""

from __future__ import annotations

import copy

import torch

from metaal.learners import map_tensors
from metaal.strategies import QueryContext, Simulation, Strategy, check_query


GAIN_SETS = ("eval", "pool")


def candidate_gains(sim: Simulation, candidates: torch.Tensor, on: str = "eval") -> torch.Tensor:
    """(B, M) accuracy gain of labeling pool sample candidates[b, j] alone in episode b,
    measured on the evaluation set (on="eval") or on the whole pool with its true labels,
    the candidate itself left out (on="pool")."""
    if on not in GAIN_SETS:
        raise ValueError(f"gains are measured on one of {GAIN_SETS}, got {on!r}")
    B, M = candidates.shape
    ep = sim.episode
    rows = torch.arange(B, device=candidates.device)[:, None]
    repeat = lambda t: t.repeat_interleave(M, 0)  # noqa: E731 - episode b -> rows b*M .. b*M+M-1
    x = torch.cat([repeat(sim.labeled_x), ep.pool_x[rows, candidates].flatten(0, 1).unsqueeze(1)], 1)
    y = torch.cat([repeat(sim.labeled_y), ep.pool_y[rows, candidates].flatten(0, 1).unsqueeze(1)], 1)
    learner = copy.copy(sim.learner)
    if hasattr(learner, "n_members"):
        learner.n_members = 0  # only the accuracy matters here, not the members' disagreement
    fitted = learner.fit(map_tensors(sim.prepared, repeat), x, y, sim.num_classes)
    if on == "eval":
        correct = fitted.predict_prepared("eval").probs.argmax(-1) == repeat(ep.eval_y)
        return correct.float().mean(1).view(B, M) - sim.accuracy[:, None]
    # on the pool: the current learner's correctness, refitted the same way, as the baseline
    now = learner.fit(sim.prepared, sim.labeled_x, sim.labeled_y, sim.num_classes)
    before = (now.predict_prepared("pool").probs.argmax(-1) == ep.pool_y).float()
    after = (fitted.predict_prepared("pool").probs.argmax(-1) == repeat(ep.pool_y)).float()
    change = (after - repeat(before)).scatter(1, candidates.reshape(-1, 1), 0.0)  # its own label is no gain
    return change.sum(1).view(B, M) / (ep.pool_y.shape[1] - 1)


def sample_candidates(ctx: QueryContext, m: int, prefer: torch.Tensor | None = None,
                      top_share: float = 0.0) -> torch.Tensor:
    """(B, m) distinct available pool samples (all of them if fewer remain): the
    round(top_share * m) highest by `prefer` (B, pool) scores, the rest drawn uniformly."""
    check_query(ctx, 1)
    m = min(m, int(ctx.available.sum(1).min()))
    noise = ctx.uniform().masked_fill(~ctx.available, -1.0)
    n_top = round(top_share * m) if prefer is not None else 0
    if n_top:
        top = prefer.masked_fill(~ctx.available, float("-inf")).topk(n_top, dim=1).indices
        noise = noise.scatter(1, top, 2.0)  # above every uniform draw, so they are always kept
    return noise.topk(m, dim=1).indices


class OneStepOracle(Strategy):
    """Labels the k candidates with the largest one-step accuracy gain (greedy, myopic).

    Scores M random available candidates per round (M=None: every available sample); ties
    in gain, frequent with small evaluation sets, are broken at random. `on` is where the
    gain is measured (see candidate_gains): "eval" (the test-set oracle, named "oracle") or
    "pool" (the pool oracle, named "pool_oracle", which never sees the evaluation set).
    """

    def __init__(self, n_candidates: int | None = 64, on: str = "eval"):
        if on not in GAIN_SETS:
            raise ValueError(f"gains are measured on one of {GAIN_SETS}, got {on!r}")
        self.n_candidates, self.on = n_candidates, on
        self.name = "oracle" if on == "eval" else f"{on}_oracle"

    def score(self, ctx: QueryContext) -> torch.Tensor:
        if ctx.simulation is None:
            raise ValueError("the one-step oracle needs the simulator's labels; it cannot run in deployment")
        m = ctx.available.shape[1] if self.n_candidates is None else self.n_candidates
        candidates = sample_candidates(ctx, m)
        gains = candidate_gains(ctx.simulation, candidates, self.on)
        scores = torch.full(ctx.available.shape, float("-inf"), device=gains.device)
        # The tie-break noise is far below one evaluation sample's worth of accuracy.
        return scores.scatter(1, candidates, gains + 1e-6 * ctx.uniform().gather(1, candidates))

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        check_query(ctx, k)
        scores = self.score(ctx).masked_fill(~ctx.available, float("-inf"))
        if (torch.isfinite(scores).sum(1) < k).any():
            raise ValueError(f"the oracle scores {self.n_candidates} candidates per round, fewer than k={k}")
        return scores.topk(k, dim=1).indices
