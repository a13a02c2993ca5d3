"""The `batch` trainer: policy gradient on whole batches, at the states the policy visits.

The rollout follows the policy's own sequential picks, as a loaded policy selects. At a share of
its rounds it also draws S batches of k from the policy (one pick at a time, each sampled from
softmax(scores / temperature) over the samples still available, the earlier picks counted as
labeled), measures each batch's true gain (the learner refitted on the labeled set plus the
batch, with its true labels), and pushes the policy towards the batches that gained more than
the others drawn at the same state (REINFORCE with the leave-one-out baseline). The S batches
share one state, so the advantage says which batch was better, not how lucky the episode was:
a set-level target that sees what a batch's make-up (its classes, its redundancy) does, which
the oracle trainer's one-sample gains cannot.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metaal.errors import InputError
from metaal.loop import run_active_learning
from metaal.metrics import aulc
from metaal.policy import PolicyNet, after_picks, sequential_picks
from metaal.strategies import QueryContext, Selection, Strategy, gumbel_top_k
from metaal.strategies.lookahead import with_picks_labeled
from metaal.trainers.base import Trainer, register_trainer


def score_spread(scores: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """(B, 1) standard deviation of each row's scores over its available samples."""
    weight = available.to(scores.dtype)
    count = weight.sum(1, keepdim=True).clamp_min(1)
    mean = (scores * weight).sum(1, keepdim=True) / count
    return (((scores - mean).square() * weight).sum(1, keepdim=True) / count).sqrt().clamp_min(1e-6)


def sample_batch(net: PolicyNet, ctx: QueryContext, k: int, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, k) picks drawn one at a time from softmax(scores / (temperature * spread)), each
    counted as labeled before the next is scored (as sequential_picks, but sampled), and (B,)
    their log-probability, differentiable in the net. The spread is the std of the round's
    first scores, so the temperature means the same at any scale of the scores."""
    B = ctx.available.shape[0]
    picks = torch.empty(B, 0, dtype=torch.int64, device=ctx.available.device)
    log_prob, scale = torch.zeros(B, device=ctx.features.device), None
    for _ in range(k):
        step = after_picks(ctx, picks)
        scores = net.score(step)
        if scale is None:
            scale = temperature * score_spread(scores.detach(), step.available)
        logits = (scores / scale).masked_fill(~step.available, float("-inf"))
        pick = gumbel_top_k(logits.detach(), 1, ctx.uniform())
        log_prob = log_prob + logits.log_softmax(1).gather(1, pick).squeeze(1)
        picks = torch.cat([picks, pick], 1)
    return picks, log_prob


class BatchSamplingRollout(Strategy):
    """Follows the policy's sequential picks; at a share of the rounds, also draws `samples`
    batches from the policy and records them (B, S, k), their log-probabilities (with grad) and
    the accuracy after labeling each with its true labels, and the same for the batch it picks
    (their gains up to the state's own accuracy, which every batch of the state shares)."""

    name = "policy-batch-sampling"
    needs_simulation = True  # it refits the learner and reads the labels

    def __init__(self, net: PolicyNet, samples: int, temperature: float, measure_share: float):
        self.net, self.samples, self.temperature, self.measure_share = net, samples, temperature, measure_share

    def select(self, ctx: QueryContext, k: int) -> Selection:
        picks = sequential_picks(self.net.score, ctx, k)
        if float(torch.rand(1, generator=ctx.generator)) >= self.measure_share:
            return Selection(picks, {})
        drawn = [sample_batch(self.net, ctx, k, self.temperature) for _ in range(self.samples)]
        with torch.no_grad():
            accuracy = torch.stack([with_picks_labeled(ctx.simulation, p).accuracy for p, _ in drawn], 1)
            chosen = with_picks_labeled(ctx.simulation, picks).accuracy
        return Selection(picks, {"batches": torch.stack([p for p, _ in drawn], 1),
                                 "log_prob": torch.stack([lp for _, lp in drawn], 1), "accuracy": accuracy.cpu(),
                                 "chosen_accuracy": chosen.cpu()})


def leave_one_out_advantage(gains: torch.Tensor) -> torch.Tensor:
    """(N, S) gains of S batches per state -> each minus the mean of the state's other S-1."""
    S = gains.shape[1]
    return gains - (gains.sum(1, keepdim=True) - gains) / (S - 1)


@register_trainer("batch")
class BatchTrainer(Trainer):
    @dataclass
    class Options:
        samples: int = 8             # batches drawn per measured state
        temperature: float = 0.25    # of the sampling softmax, in units of the state's score std
        measure_share: float = 0.25  # share of the rounds at which batches are drawn (memory: S*k passes each)

        def validate(self):
            if self.samples < 2 or self.temperature <= 0 or not 0 < self.measure_share <= 1:
                raise InputError("samples must be >= 2, temperature > 0 and measure_share in (0, 1]")

    def objective(self, episodes, task, seed):
        o = self.options
        rollout = BatchSamplingRollout(self.net, o.samples, o.temperature, o.measure_share)
        result = run_active_learning(episodes, self.learner, rollout, task.rounds, task.k, seed=seed)
        measured = [r for r in result.records if r]
        metrics = {"reward/aulc": float(aulc(result.accuracy, result.n_labeled).mean())}
        if not measured:  # no round drawn (rare with few rounds): a zero loss that still has a graph
            return sum(p.sum() * 0 for p in self.net.parameters()), metrics | {"batch/gain_spread": 0.0,
                                                                                 "batch/chosen_advantage": 0.0}
        log_prob = torch.cat([r["log_prob"] for r in measured])
        gains = torch.cat([r["accuracy"] for r in measured])  # the state's own accuracy cancels in every use
        advantage = leave_one_out_advantage(gains)
        advantage = advantage / advantage.std().clamp_min(1e-8)
        loss = -(advantage.to(log_prob.device) * log_prob).mean()
        chosen = torch.cat([r["chosen_accuracy"] for r in measured])
        return loss, metrics | {"batch/gain_spread": float(gains.std(1).mean()),
                                # > 0: the policy's own pick beats the batches it samples around it
                                "batch/chosen_advantage": float((chosen - gains.mean(1)).mean())}
