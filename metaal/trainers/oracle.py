"""The `oracle` trainer: lookahead imitation (as LAL, ImitAL, ALIL).

At every state the policy visits (DAgger: the rollout follows the current policy), M
candidate samples get their true one-step accuracy gain (M retrained learners per episode,
one batched call), and the policy learns to rank them: listwise (cross-entropy to
softmax(gain / tau)) or by regression on the standardised gains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from metaal.errors import InputError
from metaal.loop import run_active_learning
from metaal.metrics import aulc
from metaal.policy import PolicyNet, after_picks, sequential_picks
from metaal.strategies import QueryContext, Selection, Strategy, candidate_gains, sample_candidates
from metaal.strategies.lookahead import with_picks_labeled
from metaal.trainers.base import Trainer, register_trainer


def imitation_loss(candidate_scores: torch.Tensor, gains: torch.Tensor, tau: float) -> torch.Tensor:
    """Listwise ranking loss: cross-entropy from softmax(gains / tau) to softmax(scores)."""
    target = (gains / tau).softmax(-1)
    return -(target * candidate_scores.log_softmax(-1)).sum(-1).mean()


def regression_loss(candidate_scores: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Squared error between scores and gains, both centred per state (only the ranking
    within a state matters), the gains in units of their std over the batch."""
    gains = gains - gains.mean(-1, keepdim=True)
    gains = gains / gains.std().clamp_min(1e-8)
    return (candidate_scores - candidate_scores.mean(-1, keepdim=True) - gains).square().mean()


class ImitatingRollout(Strategy):
    """Measures M candidates' true gains at the visited state and follows the current
    policy's own choice; records the candidates' scores (with grad) and gains.

    `sequential`: the rollout picks a round's k one at a time, as a loaded policy does, and the
    state measured is one random step j of the round: the j picks so far count as labeled (with
    their predicted classes in the features, their true labels in the refits), so the gain
    taught is a sample's marginal gain given the round's earlier picks. Otherwise (top-k) the
    state is the round's start and the k highest scores are labeled at once."""

    name = "policy-imitating"
    needs_simulation = True  # it refits the learner and reads the labels

    def __init__(self, net: PolicyNet, n_candidates: int, top_share: float = 0.0, sequential: bool = False):
        self.net, self.n_candidates, self.top_share, self.sequential = net, n_candidates, top_share, sequential

    def select(self, ctx: QueryContext, k: int) -> Selection:
        if self.sequential:
            picks = sequential_picks(self.net.score, ctx, k)
            j = int(torch.randint(k, (1,), generator=ctx.generator))
            state, sim = after_picks(ctx, picks[:, :j]), with_picks_labeled(ctx.simulation, picks[:, :j])
        else:
            picks, state, sim = None, ctx, ctx.simulation
        scores = self.net.score(state)
        candidates = sample_candidates(state, self.n_candidates, prefer=scores.detach(), top_share=self.top_share)
        with torch.no_grad():
            gains = candidate_gains(sim, candidates)
        candidate_scores = scores.gather(1, candidates)
        # how often the policy's favourite candidate is among the oracle's best
        favourite = gains.gather(1, candidate_scores.argmax(1, keepdim=True)).squeeze(1)
        agreement = (favourite >= gains.max(1).values - 1e-9).float().mean()
        if picks is None:
            picks = scores.detach().masked_fill(~ctx.available, float("-inf")).topk(k, dim=1).indices
        return Selection(picks, {"candidate_scores": candidate_scores, "gains": gains, "agreement": agreement,
                                 "candidates": candidates})


@register_trainer("oracle")
class OracleTrainer(Trainer):
    @dataclass
    class Options:
        candidates: int = 32                 # candidates whose true gain is measured per state
        target_temperature: float = 0.01     # tau of the listwise softmax(gain / tau) target
        # listwise (cross-entropy to softmax(gain / tau)) or regression (the scores, centred per
        # state, fit the centred gains in units of their batch std: the greedy policy needs E[gain | features])
        loss: Literal["listwise", "regression"] = "listwise"
        top_candidates: float = 0.0          # share of the candidates from the policy's own top scores
        # how the rollout picks a round's k: "top-k" (at once; gains measured at the round's start)
        # or "sequential" (one at a time, as a loaded policy does; marginal gains within the round)
        selection: Literal["top-k", "sequential"] = "top-k"

        def validate(self):
            if self.candidates < 2 or not 0 <= self.top_candidates <= 1 or self.target_temperature <= 0:
                raise InputError("candidates must be >= 2, top_candidates in [0, 1] and target_temperature > 0")

    def objective(self, episodes, task, seed):
        o = self.options
        rollout = ImitatingRollout(self.net, o.candidates, o.top_candidates, o.selection == "sequential")
        result = run_active_learning(episodes, self.learner, rollout, task.rounds, task.k, seed=seed)
        scores = torch.cat([r["candidate_scores"] for r in result.records])
        gains = torch.cat([r["gains"] for r in result.records])
        loss = imitation_loss(scores, gains, o.target_temperature) if o.loss == "listwise" \
            else regression_loss(scores, gains)
        return loss, {"reward/aulc": float(aulc(result.accuracy, result.n_labeled).mean()),
                      "oracle/agreement": float(torch.stack([r["agreement"] for r in result.records]).mean())}
