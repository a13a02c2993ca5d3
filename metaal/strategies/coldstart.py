"""Cold-start strategies for small budgets: they query typical, representative samples rather
than uncertain ones (TypiClust, ProbCover). Both see one dataset per episode, in the learner's
embedding: the available pool samples, then the labeled set."""

from __future__ import annotations

import torch

from metaal.strategies.base import Strategy, register_strategy
from metaal.strategies.clustering import kmeans

INF = float("inf")


def _dataset(ctx):
    """(B, m + n, H) the pool's embedding then the labeled set's, and (B, m + n) the points that
    count: the available pool samples and every labeled one (a labeled pool sample is in the
    labeled set already)."""
    labeled = ctx.labeled_embedding
    every = torch.ones(labeled.shape[:2], dtype=torch.bool, device=labeled.device)
    return torch.cat([ctx.pool.embedding, labeled], 1), torch.cat([ctx.available, every], 1)


def typicality(x: torch.Tensor, neighbours: int) -> torch.Tensor:
    """(m,) the inverse mean Euclidean distance of each point of x (m, H) to its
    min(neighbours, m - 1) nearest other points (1 for a lone point)."""
    n_near = min(neighbours, len(x) - 1)
    if n_near < 1:
        return torch.ones(len(x), dtype=x.dtype, device=x.device)
    distance = torch.cdist(x, x).fill_diagonal_(INF)
    return 1 / distance.topk(n_near, dim=1, largest=False).values.mean(1).clamp_min(1e-12)


@register_strategy("typiclust")
class TypiClust(Strategy):
    """TypiClust (Hacohen, Dekel & Weinshall 2022): k-means the available pool and the labeled
    set into n_labeled + k clusters (at most `max_clusters`), then k times take the most typical
    available sample of the largest cluster holding no labeled or taken sample. Typicality is
    the inverse mean distance to the `neighbours` nearest samples of the same cluster. Once
    every cluster holds one, the largest of the least covered clusters serves."""

    reads_features = False

    def __init__(self, max_clusters: int = 500, neighbours: int = 20):
        self.max_clusters, self.neighbours = max_clusters, neighbours

    def score(self, ctx):
        """Typicality over the whole available pool (a kNN density)."""
        emb = ctx.pool.embedding
        scores = torch.zeros(ctx.available.shape, dtype=emb.dtype, device=emb.device)
        for b, available in enumerate(ctx.available):
            scores[b, available] = typicality(emb[b, available], self.neighbours)
        return scores

    def select(self, ctx, k):
        x, valid = _dataset(ctx)
        n_clusters = min(ctx.labeled_embedding.shape[1] + k, self.max_clusters)
        labels, _ = kmeans(x, n_clusters, ctx.generator, valid=valid)
        picks = []
        for b in range(x.shape[0]):
            pool_index = ctx.available[b].nonzero()[:, 0]
            picks.append(pool_index[self._pick(x[b, valid[b]], labels[b, valid[b]], len(pool_index), n_clusters, k)])
        return torch.stack(picks)

    def _pick(self, x, labels, n_available, n_clusters, k):
        """One episode: k indices among its first n_available points (the available pool
        samples; the labeled ones follow), one cluster at a time."""
        size = labels.bincount(minlength=n_clusters)
        covered = labels[n_available:].bincount(minlength=n_clusters)  # labeled or taken samples
        left = labels[:n_available].bincount(minlength=n_clusters)     # available samples not taken
        typical, picks = {}, []
        for _ in range(k):
            # fewest covered first (0: uncovered), then the largest, then the lowest id
            order = (covered * (len(labels) + 1) - size).masked_fill(left == 0, torch.iinfo(size.dtype).max)
            c = int(order.argmin())
            if c not in typical:
                members = (labels == c).nonzero()[:, 0]
                typical[c] = members, typicality(x[members], self.neighbours).masked_fill(members >= n_available, -INF)
            members, typ = typical[c]
            best = int(typ.argmax())
            typ[best] = -INF
            picks.append(members[best])
            covered[c] += 1
            left[c] -= 1
        return torch.stack(picks)


@register_strategy("probcover")
class ProbCover(Strategy):
    """ProbCover (Yehuda et al. 2022): greedy maximum coverage by balls of radius delta in the
    embedding. Points within delta of a labeled sample start covered; each pick is the available
    sample whose ball holds the most uncovered points (ties: the lowest index), and then covers
    them. Once nothing is left to cover, picks are uniform over the available samples.

    delta=None picks it per episode: the largest of 10 quantiles (1st to 50th percentile) of the
    pairwise distances at which at least `purity` of the points have a ball holding only their
    own k-means pseudo-label (one cluster per class)."""

    reads_features = False

    def __init__(self, delta: float | None = None, purity: float = 0.95):
        self.delta, self.purity = delta, purity

    def score(self, ctx):
        """The number of uncovered points each available sample's ball holds."""
        scores = torch.zeros(ctx.available.shape, device=ctx.available.device)
        for b, (adjacency, covered) in enumerate(self._graphs(ctx)):
            available = ctx.available[b]
            scores[b, available] = adjacency[:int(available.sum())].float() @ (~covered).float()
        return scores

    def select(self, ctx, k):
        noise = ctx.uniform()
        picks = []
        for b, (adjacency, covered) in enumerate(self._graphs(ctx)):
            pool_index = ctx.available[b].nonzero()[:, 0]
            picks.append(pool_index[_greedy_cover(adjacency, covered, noise[b, pool_index], k)])
        return torch.stack(picks)

    def _graphs(self, ctx):
        """Per episode: the (N, N) adjacency of the delta-balls over its dataset (the available
        pool samples, then the labeled set), and the (N,) points the labeled set covers."""
        x, valid = _dataset(ctx)
        labels = None
        if self.delta is None:
            n_classes = min(ctx.pool.probs.shape[-1], int(valid.sum(1).min()))
            labels = kmeans(x, n_classes, ctx.generator, valid=valid)[0]
        for b, n_available in enumerate(ctx.available.sum(1).tolist()):
            points = x[b, valid[b]]
            distance = torch.cdist(points, points)
            delta = self.delta if labels is None else self._choose_delta(distance, labels[b, valid[b]], ctx.generator)
            adjacency = distance < delta
            yield adjacency, adjacency[n_available:].any(0)

    def _choose_delta(self, distance, labels, generator):
        """The largest of 10 candidate radii (quantiles of the distances from up to 32 random
        points to all) at which at least `purity` of the balls hold one pseudo-label only."""
        n = len(distance)
        if n < 2:
            return INF
        rows = torch.randperm(n, generator=generator)[:32].to(distance.device)
        sample = distance[rows].masked_select(torch.arange(n, device=distance.device) != rows[:, None])
        candidates = sample.quantile(torch.linspace(0.01, 0.5, 10, device=distance.device))
        # a ball of radius delta is pure iff no point of another pseudo-label is nearer than delta
        nearest_other = distance.masked_fill(labels[:, None] == labels, INF).min(1).values
        pure = (nearest_other >= candidates[:, None]).float().mean(1) >= self.purity
        return float(candidates[pure].max()) if pure.any() else float(candidates[0])


def _greedy_cover(adjacency, covered, noise, k):
    """k greedy picks among the first len(noise) points of an (N, N) ball adjacency: the ball
    with the most uncovered points (ties: the lowest index), or the highest noise once no ball
    holds any."""
    n = len(noise)
    uncovered = ~covered
    gain = adjacency[:n].float() @ uncovered.float()
    taken = torch.zeros(n, dtype=torch.bool, device=noise.device)
    picks = []
    for _ in range(k):
        open_gain = gain.masked_fill(taken, -1)
        pick = open_gain.argmax() if open_gain.max() > 0 else noise.masked_fill(taken, -1).argmax()
        newly = adjacency[pick] & uncovered
        gain -= adjacency[newly, :n].sum(0)  # balls are symmetric: the candidates whose balls held them
        uncovered &= ~newly
        taken[pick] = True
        picks.append(pick)
    return torch.stack(picks)
