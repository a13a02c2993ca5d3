"""Batch-diverse strategies: they choose the k samples of a round jointly, not one by one."""

from __future__ import annotations

import torch

from metaal.strategies.base import Strategy, gumbel_top_k, register_strategy
from metaal.strategies.clustering import kmeans


@register_strategy("coreset")
class CoreSet(Strategy):
    """k-center greedy in the learner's embedding (Sener & Savarese 2018): repeatedly take
    the sample farthest from the labeled set and the samples already taken."""

    reads_features = False

    def score(self, ctx):
        return torch.cdist(ctx.pool.embedding, ctx.labeled_embedding).min(-1).values

    def select(self, ctx, k):
        emb = ctx.pool.embedding
        distance = self.score(ctx).masked_fill(~ctx.available, float("-inf"))
        chosen = []
        for _ in range(k):
            pick = distance.argmax(1)                                            # (B,)
            chosen.append(pick)
            center = emb[torch.arange(len(pick)), pick].unsqueeze(1)             # (B, 1, H)
            distance = torch.minimum(distance, torch.cdist(emb, center).squeeze(-1))
            distance[torch.arange(len(pick)), pick] = float("-inf")
        return torch.stack(chosen, 1)


@register_strategy("badge")
class BADGE(Strategy):
    """k-means++ seeding on gradient embeddings (Ash et al. 2020).

    The gradient embedding of sample i is g_i = (p_i - onehot(argmax p_i)) (x) h_i. It is
    never materialised: |g_i - g_j|^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i.a_j)(h_i.h_j)
    with a = p - onehot, so memory stays O(m (C + H)).
    """

    reads_features = False

    def score(self, ctx):
        a, h = self._parts(ctx)
        return a.norm(dim=-1) * h.norm(dim=-1)  # the gradient embedding's norm

    @staticmethod
    def _parts(ctx):
        p = ctx.pool.probs
        return p - torch.nn.functional.one_hot(p.argmax(-1), p.shape[-1]).float(), ctx.pool.embedding

    def select(self, ctx, k):
        a, h = self._parts(ctx)
        sq_norm = (a * a).sum(-1) * (h * h).sum(-1)                              # (B, m)
        rows = torch.arange(a.shape[0], device=a.device)
        available = ctx.available.clone()
        pick = sq_norm.masked_fill(~available, float("-inf")).argmax(1)          # first: largest gradient
        chosen, d2 = [pick], None
        for _ in range(k - 1):
            available[rows, pick] = False
            a_c, h_c = a[rows, pick].unsqueeze(1), h[rows, pick].unsqueeze(1)
            to_center = (sq_norm + sq_norm[rows, pick].unsqueeze(1)
                         - 2 * (a * a_c).sum(-1) * (h * h_c).sum(-1)).clamp_min(0)
            d2 = to_center if d2 is None else torch.minimum(d2, to_center)
            # Sample proportionally to d2 among available samples (uniformly when all d2 are 0),
            # via the Gumbel-max trick so the CPU generator serves any device.
            weight = torch.where(d2.sum(1, keepdim=True) > 0, d2, torch.ones_like(d2)).masked_fill(~available, 0)
            pick = gumbel_top_k(weight.log(), 1, ctx.uniform())[:, 0]
            chosen.append(pick)
        return torch.stack(chosen, 1)


@register_strategy("cluster_margin")
class ClusterMargin(Strategy):
    """Cluster-Margin (Citovsky et al. 2021): the margin_factor * k lowest-margin samples, taken
    round-robin over clusters of the embedding, the clusters holding the fewest of them first
    (within a cluster, the lowest margin first). The paper clusters the pool once per run with
    average-linkage HAC; here k-means clusters the available pool each round, on the current
    embedding, into max(k, m / 10) clusters."""

    reads_features = False

    def __init__(self, margin_factor: int = 10):
        self.margin_factor = margin_factor

    def score(self, ctx):
        top2 = ctx.pool.probs.topk(2, dim=-1).values
        return -(top2[..., 0] - top2[..., 1])

    def select(self, ctx, k):
        cluster, n_clusters = pool_clusters(ctx, k)
        scores = self.score(ctx).masked_fill(~ctx.available, float("-inf"))
        n_candidates = min(self.margin_factor * k, int(ctx.available.sum(1).min()))
        candidates = scores.topk(n_candidates, dim=1).indices  # lowest margin first
        return candidates.gather(1, _round_robin(cluster.gather(1, candidates), n_clusters, k))


def pool_clusters(ctx, k: int) -> tuple[torch.Tensor, int]:
    """Cluster-Margin's clusters of a round: k-means of the available pool's embedding into
    max(k, m / 10) clusters (at most the samples available). Returns the labels (B, m), -1
    where not available, and the number of clusters."""
    n_clusters = min(int(ctx.available.sum(1).min()), max(k, round(ctx.available.shape[1] / 10)))
    cluster, _ = kmeans(ctx.pool.embedding, n_clusters, ctx.generator, valid=ctx.available)
    return cluster, n_clusters


def _round_robin(label, n_clusters, k):
    """(B, k) positions in the candidate order: one candidate per cluster per round (each
    cluster's in candidate order), the clusters holding the fewest candidates first (ties: the
    lowest cluster id), given each candidate's cluster `label` (B, c)."""
    B, c = label.shape
    count = label.new_zeros(B, n_clusters).scatter_add_(1, label, torch.ones_like(label))
    by_cluster, position = label.sort(dim=1, stable=True)
    start = (count.cumsum(1) - count).gather(1, by_cluster)             # where each cluster's run begins
    turn = torch.empty_like(label).scatter_(1, position, torch.arange(c, device=label.device) - start)
    order = (turn * (c + 1) + count.gather(1, label)) * n_clusters + label  # round, then cluster size, then id
    return order.topk(k, dim=1, largest=False).indices
