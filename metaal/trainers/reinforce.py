"""The `reinforce` trainer: policy gradient against margin sampling.

The policy samples k samples per round without replacement (Gumbel top-k = a Plackett-Luce
draw); the reward of round t is the test accuracy gain acc(t+1) - acc(t). The same episodes
rolled out with margin sampling give the baseline, so the advantage is how much more than
margin the policy gained.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metaal.errors import InputError
from metaal.loop import run_active_learning
from metaal.metrics import aulc
from metaal.policy import PolicyNet
from metaal.strategies import QueryContext, Selection, Strategy, gumbel_top_k, make_strategy
from metaal.trainers.base import Trainer, register_trainer


def plackett_luce_log_prob(scores: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """(B,) log-probability of drawing the ordered picks (B, k) without replacement."""
    log_prob = torch.zeros(scores.shape[0], device=scores.device)
    for j in range(picked.shape[1]):
        chosen = picked[:, j:j + 1]
        log_prob = log_prob + scores.gather(1, chosen).squeeze(1) - torch.logsumexp(scores, 1)
        scores = scores.scatter(1, chosen, float("-inf"))
    return log_prob


def discounted_returns(gains: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, T) per-round gains -> sum over t' >= t of gamma^(t'-t) gain(t')."""
    returns = torch.zeros_like(gains)
    running = torch.zeros_like(gains[:, 0])
    for t in reversed(range(gains.shape[1])):
        running = gains[:, t] + gamma * running
        returns[:, t] = running
    return returns


class SamplingRollout(Strategy):
    """Samples the picks from the policy's scores; records their log-probability (with grad)."""

    name = "policy-sampling"

    def __init__(self, net: PolicyNet, temperature: float):
        self.net, self.temperature = net, temperature

    def select(self, ctx: QueryContext, k: int) -> Selection:
        scores = (self.net.score(ctx) / self.temperature).masked_fill(~ctx.available, float("-inf"))
        picked = gumbel_top_k(scores.detach(), k, ctx.uniform())
        return Selection(picked, {"log_prob": plackett_luce_log_prob(scores, picked)})


@register_trainer("reinforce")
class ReinforceTrainer(Trainer):
    @dataclass
    class Options:
        temperature: float = 1.0  # sampling temperature of the scores
        gamma: float = 0.9        # discount of later gains (0 = immediate gain only)

        def validate(self):
            if self.temperature <= 0 or not 0 <= self.gamma <= 1:
                raise InputError("temperature must be > 0 and gamma in [0, 1]")

    def objective(self, episodes, task, seed):
        o = self.options
        result = run_active_learning(episodes, self.learner, SamplingRollout(self.net, o.temperature),
                                     task.rounds, task.k, seed=seed)
        with torch.no_grad():
            base = run_active_learning(episodes, self.learner, make_strategy("margin"), task.rounds, task.k, seed=seed)
        device = next(self.net.parameters()).device
        advantage = (discounted_returns(result.accuracy.diff(dim=1), o.gamma)
                     - discounted_returns(base.accuracy.diff(dim=1), o.gamma)).to(device)
        advantage = advantage / (advantage.std() + 1e-6)
        loss = -(advantage * torch.stack([r["log_prob"] for r in result.records], 1)).mean()
        policy_aulc, margin_aulc = aulc(result.accuracy, result.n_labeled), aulc(base.accuracy, base.n_labeled)
        return loss, {"reward/aulc": float(policy_aulc.mean()),
                      "reward/aulc_vs_margin": float(policy_aulc.mean() - margin_aulc.mean())}
