"""Attempt (issue 14, stop 32): average the scores of every policy trained so far.

Eleven checkpoints were retrained after the fixes of issue 11 (other validation, the regime mix,
sequential imitation, batch policy gradient, feature schema v2, other sources). Each was paired
with the shipped policy on the development grid: none was above it by more than 0.0015, and one
(the region sources, -0.0032, p 0.017) below it. If what separates them is each one's own
noise (a different fit of the same weak signal, which is what "margin sampling with noise" on
the held-back data suggests), the average of their scores keeps the shared signal and cancels
part of the noise. Two plug-in strategies, both with the shipped policy's sequential selection
(each pick counted as labeled, with its predicted class, before the next is scored):

- `policy_ensemble`: the mean of the twelve policies' scores (the shipped one and the eleven,
  every one that has a development grid, whatever its result), each standardised over the
  episode's available samples so that no checkpoint's scale dominates;
- `policy_margin_mean`: the shipped policy's standardised score averaged with margin's: the
  policy shrunk halfway to margin, for the case where its departures from margin are noise.

Rule, set before the grid ran: a variant goes to one confirmatory run on the unused report range
40000-40049 only if it is above the shipped policy over the development cells with a Wilcoxon p
below 0.10 after Holm over the two; the better one only.

    OMP_NUM_THREADS=1 python benchmarks/transfer_grid.py --data-root ../shared/data --jobs 2 --seed-offset 10000 \
      --seeds 20 --reference-candidates 0 --baselines margin,policy_ensemble,policy_margin_mean \
      --plugins benchmarks/results/attempts/ensemble/plugin.py --out benchmarks/results/attempts/ensemble/dev_grid
"""

from pathlib import Path

import torch

from metaal.policy import load_policy, sequential_picks
from metaal.strategies import Strategy, make_strategy, register_strategy

RESULTS = Path(__file__).resolve().parents[2]
SHIPPED = RESULTS / "meta_train_default" / "policy.pt"
RETRAINED = ("seqval100", "regime_mix", "seqimit", "seqimit_regimes", "seqimit600", "batchpg", "batchpg_regimes",
             "schema_v2", "schema_v2_regimes", "batchpg_v2_regimes", "regions_sources")


def standardised(scores: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """(B, m) scores centred and scaled over each episode's available samples."""
    weight = available.to(scores.dtype)
    count = weight.sum(1, keepdim=True).clamp_min(1)
    mean = (scores * weight).sum(1, keepdim=True) / count
    spread = (((scores - mean) ** 2 * weight).sum(1, keepdim=True) / count).sqrt()
    return (scores - mean) / spread.clamp_min(1e-12)


@register_strategy("policy_ensemble")
class PolicyEnsemble(Strategy):
    def __init__(self):
        paths = [SHIPPED] + [RESULTS / "attempts" / name / "policy.pt" for name in RETRAINED]
        self.members = [load_policy(path, device="cpu") for path in paths]

    def score(self, ctx):
        return sum(standardised(member.score(ctx), ctx.available) for member in self.members) / len(self.members)

    def select(self, ctx, k):
        return sequential_picks(self.score, ctx, k)


@register_strategy("policy_margin_mean")
class PolicyMarginMean(PolicyEnsemble):
    def __init__(self):
        self.members = [load_policy(SHIPPED, device="cpu"), make_strategy("margin")]
