"""Attempt (issue 14): the shipped policy's scores with Cluster-Margin's batch diversity, as
plug-in strategies for a development grid (`--plugins` this file, `--baselines` their names).

- policy_cm: Cluster-Margin with the policy's score in place of margin: the 10k best-scored
  samples, taken round-robin over k-means clusters of the pool, the clusters holding the
  fewest of them first;
- policy_cm3: the same from the 3k best-scored;
- policy_seqcluster: the policy's sequential selection, each pick closing its k-means cluster
  for the rest of the round (diverse without reordering the policy's choices).
"""

from pathlib import Path

import torch

from metaal.policy import after_picks, load_policy
from metaal.strategies import Strategy, register_strategy
from metaal.strategies.diversity import ClusterMargin, pool_clusters

SHIPPED = Path(__file__).resolve().parents[2] / "meta_train_default" / "policy.pt"


class PolicyClusterMargin(ClusterMargin):
    reads_features = True  # unlike Cluster-Margin's margin, the policy's score reads the features

    def __init__(self, margin_factor: int = 10):
        super().__init__(margin_factor)
        self.policy = load_policy(SHIPPED, device="cpu")

    def score(self, ctx):
        return self.policy.score(ctx)


@register_strategy("policy_cm")
class PolicyCM10(PolicyClusterMargin):
    pass


@register_strategy("policy_cm3")
class PolicyCM3(PolicyClusterMargin):
    def __init__(self):
        super().__init__(margin_factor=3)


@register_strategy("policy_seqcluster")
class PolicySeqCluster(Strategy):
    def __init__(self):
        self.policy = load_policy(SHIPPED, device="cpu")

    def score(self, ctx):
        return self.policy.score(ctx)

    def select(self, ctx, k):
        cluster, n_clusters = pool_clusters(ctx, k)
        cluster = cluster.clamp_min(0)
        B = cluster.shape[0]
        rows = torch.arange(B)
        closed = torch.zeros(B, n_clusters, dtype=torch.bool)
        picks = torch.empty(B, 0, dtype=torch.int64)
        for _ in range(k):
            step = after_picks(ctx, picks)
            allowed = step.available & ~closed.gather(1, cluster)
            allowed = torch.where(allowed.any(1, keepdim=True), allowed, step.available)
            with torch.no_grad():
                pick = self.score(step).masked_fill(~allowed, float("-inf")).argmax(1)
            closed[rows, cluster[rows, pick]] = True
            picks = torch.cat([picks, pick[:, None]], 1)
        return picks
