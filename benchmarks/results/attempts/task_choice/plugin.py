"""Attempt (issue 14, stop 30): a per-round choice between the shipped policy and
Cluster-Margin, meta-learned on synthetic sources only, as a plug-in strategy for a development
grid (`--plugins` this file, `--baselines policy_or_cm`).

Each round, `round_stats` summarises what the run can see (the pool's uncertainty, its spread
from the labeled set, the predicted and the labeled class balance, the budget, k against the
pool); a linear gate fitted by `fit_gate.py` on source episodes (Gaussian mixtures and Voronoi
regions, never a target) predicts from them how far Cluster-Margin's whole-episode AULC is
above the policy's, and the round takes Cluster-Margin's picks where that prediction is
positive, the policy's sequential picks elsewhere, episode by episode.
"""

import json
from pathlib import Path

import torch

from metaal.errors import InputError
from metaal.features import entropy
from metaal.policy import load_policy
from metaal.strategies import Strategy, make_strategy, register_strategy

HERE = Path(__file__).resolve().parent
SHIPPED = HERE.parents[1] / "meta_train_default" / "policy.pt"
STATS = ("entropy", "margin", "dist_to_labeled", "local_density", "predicted_balance", "label_entropy",
         "budget_used", "labeled_fraction", "inv_num_classes", "k_over_pool", "confident_share")


def round_stats(ctx, k: int) -> torch.Tensor:
    """(B, len(STATS)) round-level summaries of a query context, over the available pool."""
    mask = ctx.available.float()
    count = mask.sum(1)

    def pool_mean(name):
        return (ctx.features[..., ctx.schema.index(name)] * mask).sum(1) / count

    def round_value(name):
        return ctx.features[:, 0, ctx.schema.index(name)]

    probs = ctx.pool.probs
    C = probs.shape[-1]
    predicted = torch.nn.functional.one_hot(probs.argmax(-1), C).float() * mask[..., None]
    share = predicted.sum(1) / count[:, None]
    predicted_balance = entropy(share) / torch.log(torch.tensor(float(C)))
    confident = ((probs.max(-1).values > 0.9).float() * mask).sum(1) / count
    columns = {"predicted_balance": predicted_balance, "k_over_pool": k / count, "confident_share": confident}
    for name in ("entropy", "margin", "dist_to_labeled", "local_density"):
        columns[name] = pool_mean(name)
    for name in ("label_entropy", "budget_used", "labeled_fraction", "inv_num_classes"):
        columns[name] = round_value(name)
    return torch.stack([columns[name] for name in STATS], 1)


@register_strategy("policy_or_cm")
class PolicyOrClusterMargin(Strategy):
    reads_features = True
    stats = STATS  # the gate's inputs, as `round_stats` computes them

    def __init__(self, gate: Path | dict = HERE / "gate.json"):
        """`gate`: a fitted gate's JSON file, or its dict (stats, weights, bias, mean, std)."""
        self.policy = load_policy(SHIPPED, device="cpu")
        self.cluster_margin = make_strategy("cluster_margin")
        fitted = gate if isinstance(gate, dict) else json.loads(Path(gate).read_text())
        if fitted["stats"] != list(self.stats):
            raise InputError(f"the gate was fitted on stats {fitted['stats']}, "
                             f"this plug-in computes {list(self.stats)}")
        self.weights, self.mean, self.std = (torch.tensor(fitted[key]) for key in ("weights", "mean", "std"))
        self.bias = float(fitted["bias"])

    def score(self, ctx):
        return self.policy.score(ctx)

    def predicted_advantage(self, ctx, k):
        """(B,) the gate's predicted AULC of Cluster-Margin minus the policy's."""
        return ((self.round_stats(ctx, k) - self.mean) / self.std) @ self.weights + self.bias

    def round_stats(self, ctx, k):
        return round_stats(ctx, k)

    def select(self, ctx, k):
        use_cm = self.predicted_advantage(ctx, k) > 0
        picks = self.policy.select(ctx, k)
        if use_cm.any():
            picks = torch.where(use_cm[:, None], self.cluster_margin.select(ctx, k), picks)
        return picks
