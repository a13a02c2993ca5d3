"""Attempt (issue 14, stop 31): TypiClust for the first rounds, then the shipped policy.

On the report grid TypiClust, the cold-start baseline, is far ahead of the policy at balanced-k5
on KMNIST (+0.0436 over margin against +0.0257), MNIST 5-9 (+0.0234 against +0.0165) and yeast
(+0.0244 against +0.0029), and behind margin almost everywhere else, most of all on imbalanced
pools and at k=50, where uncertainty wins once the head has seen enough labels. So: query typical
samples while the budget is young, the policy's sequential picks after. The switch is a fixed
share of the rounds (`budget_used`, a feature every round carries), set before any run:

- `typiclust_then_policy25`: TypiClust in the first quarter of the rounds;
- `typiclust_then_policy50`: in the first half.

Rule, set before the grid ran: a variant goes to one confirmatory run on the unused report range
40000-40049 only if it is above the shipped policy over the development cells with a Wilcoxon p
below 0.10 after Holm over the two; the better one only.

    OMP_NUM_THREADS=1 python benchmarks/transfer_grid.py --data-root ../shared/data --jobs 2 --seed-offset 10000 \
      --seeds 20 --reference-candidates 0 --baselines margin,typiclust,typiclust_then_policy25,typiclust_then_policy50 \
      --plugins benchmarks/results/attempts/cold_start/plugin.py --out benchmarks/results/attempts/cold_start/dev_grid
"""

from pathlib import Path

from metaal.policy import load_policy
from metaal.strategies import Strategy, make_strategy, register_strategy

SHIPPED = Path(__file__).resolve().parents[2] / "meta_train_default" / "policy.pt"


@register_strategy("typiclust_then_policy25")
class TypiClustThenPolicy(Strategy):
    reads_features = True
    until = 0.25  # the share of the rounds TypiClust queries

    def __init__(self):
        self.policy = load_policy(SHIPPED, device="cpu")
        self.typiclust = make_strategy("typiclust")

    def score(self, ctx):
        return self.policy.score(ctx)

    def select(self, ctx, k):
        # the share of the rounds done, the same in every pool row and (one round) every episode
        budget_used = float(ctx.features[0, 0, ctx.schema.index("budget_used")])
        return (self.typiclust if budget_used < self.until else self.policy).select(ctx, k)


@register_strategy("typiclust_then_policy50")
class TypiClustFirstHalf(TypiClustThenPolicy):
    until = 0.5
