"""Attempt (issue 14, stop 32): is the policy's edge over margin a class-balancing rule?

The shipped policy gains over margin only with sequential selection, where each pick counts as
labeled, with its predicted class, before the next is scored; its learned correction to the
margin start reads the labeled share of the sample's predicted class, so within a round it
spreads the picks over predicted classes (RESULTS, "What the attempts of issue 14 say
together"). If that is all it learned, a rule of one line does the same. Two plug-in
strategies, both picking a round's k one at a time with the same refeaturing as the policy:

- `margin_balanced`, the control: each pick is the smallest-margin sample among those whose
  predicted class has the smallest share of the labeled set (the picks so far included);
- `policy_balanced`, a candidate: the same hard balance, the shipped policy's best within it.

Rules, set before the grid ran: `margin_balanced` not significantly below the policy over the
development cells (Wilcoxon p >= 0.05) means the policy's edge is the balance itself, which the
note must say; a variant goes to one confirmatory run on the unused report range 40000-40049
only if it is above the shipped policy with a Wilcoxon p below 0.10 after Holm over the two;
the better one only.

    OMP_NUM_THREADS=1 python benchmarks/transfer_grid.py --data-root ../shared/data --jobs 2 --seed-offset 10000 \
      --seeds 20 --reference-candidates 0 --baselines margin,margin_balanced,policy_balanced \
      --plugins benchmarks/results/attempts/class_balance/plugin.py \
      --out benchmarks/results/attempts/class_balance/dev_grid
"""

from pathlib import Path

import torch

from metaal.policy import load_policy, sequential_picks
from metaal.strategies import Strategy, make_strategy, register_strategy

SHIPPED = Path(__file__).resolve().parents[2] / "meta_train_default" / "policy.pt"


def least_labeled_classes(ctx) -> torch.Tensor:
    """(B, m) bool: the available samples whose predicted class has the smallest labeled share."""
    share = ctx.features[..., ctx.schema.index("predicted_class_share")].masked_fill(~ctx.available, float("inf"))
    return ctx.available & (share <= share.min(1, keepdim=True).values + 1e-9)


@register_strategy("margin_balanced")
class MarginBalanced(Strategy):
    def __init__(self):
        self.base = make_strategy("margin")

    def score(self, ctx):
        return self.base.score(ctx)

    def select(self, ctx, k):
        def balanced(step):
            return self.score(step).masked_fill(~least_labeled_classes(step), float("-inf"))
        return sequential_picks(balanced, ctx, k)


@register_strategy("policy_balanced")
class PolicyBalanced(MarginBalanced):
    def __init__(self):
        self.base = load_policy(SHIPPED, device="cpu")
