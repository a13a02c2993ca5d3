"""One-step lookahead: the accuracy gain of labeling a pool sample, true or expected.

For B episodes and M candidate pool samples each, the learner is refitted on the labeled set
plus each candidate (B*M fits in batched calls) and scored on a set of samples. The gain is
that accuracy minus the current one. The true gain needs labels, so it only exists in
simulation: it is the teacher of the `oracle` meta-trainer and the reference ("how much of
the gap to the oracle does the policy close?") of the benchmarks.

What the lookahead may know decides how much of its lead over margin a strategy could reach:
- `oracle` (gains on the evaluation set, the set the learning curves report) knows each
  candidate's label, and also picks the labels that happen to flip its particular test
  samples: part of its lead is fitted to the test set.
- `pool_oracle` (gains on the pool's own true labels) never sees a test sample, but still
  knows each candidate's label before choosing it.
- `expected_gain` (expected error reduction) knows neither: it averages the lookahead over
  the model's belief about the candidate's label, as any label-free strategy must.
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from metaal.errors import InputError
from metaal.learners import map_tensors
from metaal.strategies.base import QueryContext, Simulation, Strategy, check_query, register_strategy

GAIN_SETS = ("eval", "pool")
REFIT_ROWS = 2048  # learners refitted per batched call: bounds the memory of the repeated inputs


def _predicting(learner):
    """The learner without bootstrap members: only its predictions matter here."""
    learner = copy.copy(learner)
    if hasattr(learner, "n_members"):
        learner.n_members = 0
    return learner


def _refit(sim: Simulation, candidates: torch.Tensor, labels: torch.Tensor, on: str) -> torch.Tensor:
    """(B, M, n_on, C) class probabilities on the set `on` ("eval" or "pool") of the learner
    refitted once per (b, j) on episode b's labeled set plus pool sample candidates[b, j]
    labeled labels[b, j]; B*M refits in batched calls of at most REFIT_ROWS."""
    B, M = candidates.shape
    learner = _predicting(sim.learner)
    chunk = max(1, REFIT_ROWS // B)
    if hasattr(learner, "refits"):  # the learner's own batched lookahead (LogisticRegression's)
        return torch.cat([learner.refits(sim.prepared, sim.labeled_x, sim.labeled_y, sim.num_classes,
                                         candidates[:, j:j + chunk], labels[:, j:j + chunk], on)
                          for j in range(0, M, chunk)], 1)
    rows = torch.arange(B, device=candidates.device)[:, None]
    probs = []
    for first in range(0, M, chunk):
        cand, lab = candidates[:, first:first + chunk], labels[:, first:first + chunk]
        width = cand.shape[1]

        def repeat(t: torch.Tensor, width: int = width) -> torch.Tensor:  # episode b -> rows b*width ..
            return t.repeat_interleave(width, 0)

        x = torch.cat([repeat(sim.labeled_x), sim.episode.pool_x[rows, cand].flatten(0, 1).unsqueeze(1)], 1)
        y = torch.cat([repeat(sim.labeled_y), lab.flatten(0, 1).unsqueeze(1)], 1)
        fitted = learner.fit(map_tensors(sim.prepared, repeat), x, y, sim.num_classes)
        probs.append(fitted.predict_prepared(on).probs.unflatten(0, (B, width)))
    return torch.cat(probs, 1)


def _current(sim: Simulation) -> torch.Tensor:
    """(B, m, C) pool probabilities of the learner on the current labeled set, refitted as _refit does."""
    fitted = _predicting(sim.learner).fit(sim.prepared, sim.labeled_x, sim.labeled_y, sim.num_classes)
    return fitted.predict_prepared("pool").probs


def with_picks_labeled(sim: Simulation, picks: torch.Tensor) -> Simulation:
    """The simulation with the pool samples `picks` (B, j) labeled with their true labels, and
    the accuracy of the learner refitted on that set (as _refit fits): the state from which the
    marginal gain of one more sample in the same round is measured."""
    if picks.shape[1] == 0:
        return sim
    rows = torch.arange(picks.shape[0], device=picks.device)[:, None]
    x = torch.cat([sim.labeled_x, sim.episode.pool_x[rows, picks]], 1)
    y = torch.cat([sim.labeled_y, sim.episode.pool_y[rows, picks]], 1)
    fitted = _predicting(sim.learner).fit(sim.prepared, x, y, sim.num_classes)
    accuracy = (fitted.predict_prepared("eval").probs.argmax(-1) == sim.episode.eval_y).float().mean(1)
    return dataclasses.replace(sim, labeled_x=x, labeled_y=y, accuracy=accuracy)


def candidate_gains(sim: Simulation, candidates: torch.Tensor, on: str = "eval") -> torch.Tensor:
    """(B, M) accuracy gain of labeling pool sample candidates[b, j] alone in episode b,
    measured on the evaluation set (on="eval") or on the whole pool with its true labels,
    the candidate itself left out (on="pool")."""
    if on not in GAIN_SETS:
        raise InputError(f"gains are measured on one of {GAIN_SETS}, got {on!r}")
    ep = sim.episode
    rows = torch.arange(candidates.shape[0], device=candidates.device)[:, None]
    after = _refit(sim, candidates, ep.pool_y[rows, candidates], on).argmax(-1)             # (B, M, n_on)
    if on == "eval":
        return (after == ep.eval_y[:, None]).float().mean(-1) - sim.accuracy[:, None]
    # on the pool: the current learner's correctness, refitted the same way, as the baseline
    before = (_current(sim).argmax(-1) == ep.pool_y).float()
    change = (after == ep.pool_y[:, None]).float() - before[:, None]
    change = change.scatter(2, candidates.unsqueeze(-1), 0.0)  # the candidate's own label is no gain
    return change.sum(-1) / (ep.pool_y.shape[1] - 1)


def expected_gains(sim: Simulation, candidates: torch.Tensor) -> torch.Tensor:
    """(B, M) expected one-step gain of labeling candidates[b, j], without any label: the
    learner is refitted with the candidate labeled as each class c in turn, and the gain is
    the rise of the pool's expected accuracy under the model's own beliefs (mean max-prob,
    the expected 0/1 error reduction of Roy & McCallum 2001), weighted by p(c | candidate)."""
    B, M = candidates.shape
    C = sim.num_classes
    each_class = torch.arange(C, device=candidates.device).repeat(B, M)                    # (B, M*C)
    after = _refit(sim, candidates.repeat_interleave(C, 1), each_class, "pool")              # (B, M*C, m, C)
    expected_accuracy = after.max(-1).values.mean(-1).view(B, M, C)
    now = _current(sim)
    p_label = now[torch.arange(B, device=candidates.device)[:, None], candidates]          # (B, M, C)
    return (p_label * expected_accuracy).sum(-1) - now.max(-1).values.mean(-1, keepdim=True)


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


class _LookaheadStrategy(Strategy):
    """Scores M random available candidates per round (M=None: every available sample) by a
    one-step lookahead `gains(simulation, candidates)` and labels the k best. It refits the
    simulator's learner, so it only runs in simulation. Ties in gain, frequent with small
    evaluation sets, are broken at random."""

    needs_simulation = True
    reads_features = False

    def __init__(self, n_candidates: int | None = 64):
        if n_candidates is not None and n_candidates < 1:
            raise InputError(f"n_candidates must be >= 1 (or None: every available sample), got {n_candidates}")
        self.n_candidates = n_candidates

    def gains(self, sim: Simulation, candidates: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def score(self, ctx: QueryContext) -> torch.Tensor:
        m = ctx.available.shape[1] if self.n_candidates is None else self.n_candidates
        candidates = sample_candidates(ctx, m)
        gains = self.gains(ctx.simulation, candidates)
        scores = torch.full(ctx.available.shape, float("-inf"), device=gains.device)
        # The tie-break noise is far below one evaluation sample's worth of accuracy.
        return scores.scatter(1, candidates, gains + 1e-6 * ctx.uniform().gather(1, candidates))

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        scores = self.score(ctx).masked_fill(~ctx.available, float("-inf"))
        if (torch.isfinite(scores).sum(1) < k).any():
            raise InputError(f"{self.name} scores {self.n_candidates} candidates per round, fewer than k={k}")
        return scores.topk(k, dim=1).indices


@register_strategy("oracle")
class OneStepOracle(_LookaheadStrategy):
    """Labels the k candidates with the largest true one-step accuracy gain (greedy, myopic).
    `on` is where the gain is measured (see candidate_gains): "eval" (the test-set oracle,
    named "oracle") or "pool" (the pool oracle, named "pool_oracle", which never sees the
    evaluation set)."""

    def __init__(self, n_candidates: int | None = 64, on: str = "eval"):
        if on not in GAIN_SETS:
            raise InputError(f"gains are measured on one of {GAIN_SETS}, got {on!r}")
        super().__init__(n_candidates)
        self.on = on
        self.name = "oracle" if on == "eval" else f"{on}_oracle"

    def gains(self, sim, candidates):
        return candidate_gains(sim, candidates, self.on)


@register_strategy("pool_oracle")
class PoolOracle(OneStepOracle):
    """The one-step oracle with gains measured on the pool's own labels (see OneStepOracle)."""

    def __init__(self, n_candidates: int | None = 64):
        super().__init__(n_candidates, on="pool")


@register_strategy("expected_gain")
class ExpectedGain(_LookaheadStrategy):
    """Expected error reduction (Roy & McCallum 2001): the one-step lookahead without labels
    (see expected_gains). The same candidates as the pool oracle, the same refits, but the
    candidate's label is the model's belief instead of the truth: how much of the oracles'
    lead is reachable by lookahead without knowing the label."""

    def gains(self, sim, candidates):
        return expected_gains(sim, candidates)
