"""The per-sample features every strategy sees, and the policy's input: one code path for
meta-training, evaluation and deployment.

Every feature is scale-free, so that a policy trained on one dataset reads another:
probabilities are normalised by the number of classes, distances by their median over the
pool, and round-level state by the budget. Features are computed for a whole batch of
episodes at once: (B, m, F) for B episodes with m pool samples.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from metaal.errors import InputError, NonFiniteError
from metaal.learners import Prediction


@dataclass(frozen=True)
class FeatureSchema:
    """The named, ordered, versioned list of per-sample features. A policy checkpoint stores
    it and refuses to load against a different one."""

    version: int
    names: tuple[str, ...]

    def index(self, name: str) -> int:
        return self.names.index(name)

    def to_dict(self) -> dict:
        return {"version": self.version, "names": list(self.names)}


# The one schema, v1: what the shipped policies read. Schema v2 (these 11, then the embedding's
# norm, the expected gradient length and the pool's share of the predicted class) was tried and
# not kept (RESEARCH_LOG.md, row schema_v2); its version number is not reused, and a checkpoint
# trained on it is refused by name (policy.REMOVED_SCHEMAS).
SCHEMA = FeatureSchema(
    version=1,
    names=(
        "entropy",               # predictive entropy / log C                         (sample)
        "confidence",            # (max p - 1/C) / (1 - 1/C)                           (sample)
        "margin",                # p_top1 - p_top2                                     (sample)
        "bald",                  # mutual information between label and model / log C (sample)
        "dist_to_labeled",       # r / (1 + r), r = distance to nearest labeled / pool median
        "local_density",         # 1 / (1 + r), r = mean distance to k nearest pool samples / median
        "predicted_class_share", # share of the labeled set in the sample's predicted class
        "budget_used",           # queries so far / budget                             (round)
        "labeled_fraction",      # labeled / (labeled + pool)                          (round)
        "label_entropy",         # entropy of the labeled class counts / log C         (round)
        "inv_num_classes",       # 1 / C                                               (round)
    ),
)

DENSITY_NEIGHBOURS = 10
# Pool-wide features (density, the medians) use at most this many pool samples as the
# reference set: exact for smaller pools, a seeded random-subset estimate for larger ones.
# 512 matches the ~500-sample pools of meta-training, so density reads alike in deployment.
DENSITY_REFERENCE = 512


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(-1)


def bald(member_probs: torch.Tensor) -> torch.Tensor:
    """Mutual information H[mean_e p_e] - mean_e H[p_e]; member_probs (B, E, m, C) -> (B, m)."""
    return (entropy(member_probs.mean(1)) - entropy(member_probs).mean(1)).clamp_min(0)


def reference_subset(m: int, generator: torch.Generator | None = None, size: int | None = None) -> torch.Tensor:
    """Pool indices of the reference set for pool-wide features: all of a pool of at most
    `size` (default DENSITY_REFERENCE) samples, else a seeded random subset of that size."""
    size = DENSITY_REFERENCE if size is None else size
    return torch.randperm(m, generator=generator)[:size].sort().values if m > size else torch.arange(m)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, m, R) squared Euclidean distances between rows of a (B, m, H) and b (B, R, H), in
    one batched matmul (cdist's extra copies cost more than the matmul on CPU)."""
    d2 = torch.baddbmm((a * a).sum(-1, keepdim=True), a, b.transpose(1, 2), alpha=-2)
    return d2.add_((b * b).sum(-1).unsqueeze(1)).clamp_min_(0)


def nearest_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, m) distance from each row of a to its nearest row of b."""
    return squared_distances(a, b).min(-1).values.sqrt()


def knn_distance(embedding: torch.Tensor, reference: torch.Tensor, index: torch.Tensor,
                 reference_index: torch.Tensor) -> torch.Tensor:
    """(B, m) mean distance of each sample to its k nearest reference samples. `index` (m,)
    and `reference_index` (R,) are pool indices (distinct, in any order), so a sample is never
    its own neighbour."""
    d2 = squared_distances(embedding, reference)
    index, reference_index = index.to(d2.device), reference_index.to(d2.device)
    order = index.argsort()
    position = torch.searchsorted(index[order], reference_index).clamp_max(len(index) - 1)
    row = order[position]
    is_self = index[row] == reference_index                       # reference j is sample row[j]
    d2[:, row[is_self], torch.nonzero(is_self).flatten()] = float("inf")
    k = max(1, min(DENSITY_NEIGHBOURS, reference.shape[1] - 1))
    knn = d2.topk(k, dim=-1, largest=False).values
    return knn.masked_fill(torch.isinf(knn), 0).sqrt().mean(-1)


def density_from_knn(knn: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """1 / (1 + r) in (0, 1], r = k-NN distance over the pool's median k-NN distance `scale`."""
    return 1 / (1 + knn / scale.clamp_min(1e-12))


def local_density(embedding: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, m) density of every sample of a pool held in memory, against its reference subset."""
    m = embedding.shape[1]
    ref = reference_subset(m, generator).to(embedding.device)
    knn = knn_distance(embedding, embedding[:, ref], torch.arange(m, device=embedding.device), ref)
    return density_from_knn(knn, knn[:, ref].median(-1, keepdim=True).values)


@dataclass
class PoolStatistics:
    """The pool-wide quantities the features are normalised by, one object for every caller:
    exact for a pool held in memory (`in_memory`: the simulator, meta-training and
    evaluation), estimated on a seeded reference subset for a pool streamed in batches
    (`from_reference`: deployment), where they must not depend on the batch."""

    size: int                                     # samples in the whole pool
    pool_density: torch.Tensor | None = None      # in memory: (B, m) local density of every sample
    reference: torch.Tensor | None = None         # streamed: (B, R, H) embeddings of the reference subset
    reference_index: torch.Tensor | None = None   # streamed: (R,) their pool indices
    knn_scale: torch.Tensor | None = None         # streamed: (B, 1) median k-NN distance in the reference
    labeled_distance_scale: torch.Tensor | None = None  # streamed: (B, 1) median distance to the labeled set
    context_features: torch.Tensor | None = None  # streamed: (B, R, F) the reference's features (policy context)

    @classmethod
    def in_memory(cls, embedding: torch.Tensor, generator: torch.Generator | None = None) -> PoolStatistics:
        return cls(size=embedding.shape[1], pool_density=local_density(embedding, generator))

    @classmethod
    def from_reference(cls, reference: torch.Tensor, reference_index: torch.Tensor, labeled_embedding: torch.Tensor,
                       size: int) -> PoolStatistics:
        """From the embeddings (B, R, H) of the reference subset `reference_index` of a pool of `size`."""
        reference_index = reference_index.to(reference.device)
        knn = knn_distance(reference, reference, reference_index, reference_index)
        return cls(size=size, reference=reference, reference_index=reference_index,
                   knn_scale=knn.median(-1, keepdim=True).values,
                   labeled_distance_scale=nearest_distance(reference, labeled_embedding)
                   .median(-1, keepdim=True).values)

    def density(self, embedding: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """(B, m) local density of the samples `index` (None: the whole pool in memory)."""
        if self.reference is None:
            return self.pool_density
        return density_from_knn(knn_distance(embedding, self.reference, index, self.reference_index), self.knn_scale)

    def of_samples(self, embedding: torch.Tensor, index: torch.Tensor | None) -> PoolStatistics:
        """These statistics for scoring the same samples `index` (embeddings (B, m, H)) again and
        again, as a round's sequential picks do: their density, which the labeled set does not
        change, computed once here instead of at every pick."""
        if self.reference is None:
            return self
        return dataclasses.replace(self, pool_density=self.density(embedding, index), reference=None,
                                   reference_index=None, knn_scale=None)

    def labeled_scale(self, d_labeled: torch.Tensor) -> torch.Tensor:
        """(B, 1) the pool's median distance to the labeled set (`d_labeled`: the whole pool's, in memory)."""
        return d_labeled.median(-1, keepdim=True).values if self.labeled_distance_scale is None \
            else self.labeled_distance_scale


def compute_features(pool: Prediction, labeled_embedding: torch.Tensor, labeled_y: torch.Tensor,
                     num_classes: int, budget_used: float, stats: PoolStatistics | None = None,
                     generator: torch.Generator | None = None, index: torch.Tensor | None = None,
                     schema: FeatureSchema = SCHEMA) -> torch.Tensor:
    """Features (B, m, F) of m pool samples of B episodes.

    pool: the fitted learner's prediction on the pool; labeled_embedding (B, n, H) and
    labeled_y (B, n): the current labeled set; budget_used: fraction of the query budget spent.
    stats: the pool-wide statistics (None: `PoolStatistics.in_memory` of this pool, with
    `generator`); for one batch of a streamed pool, `index` holds the batch's pool indices.
    """
    if schema != SCHEMA:
        raise InputError(f"this metaal computes feature schema v{SCHEMA.version}; got v{schema.version}")
    p, emb = pool.probs, pool.embedding
    B, m, C = p.shape
    log_c = math.log(C)
    top2 = p.topk(2, dim=-1).values
    stats = PoolStatistics.in_memory(emb, generator) if stats is None else stats

    member_info = bald(pool.member_probs) / log_c if pool.member_probs is not None else torch.zeros_like(p[..., 0])
    d_labeled = nearest_distance(emb, labeled_embedding)
    r_labeled = d_labeled / stats.labeled_scale(d_labeled).clamp_min(1e-12)

    counts = torch.nn.functional.one_hot(labeled_y, C).sum(1).float()            # (B, C)
    share = counts / counts.sum(-1, keepdim=True)
    predicted_share = torch.gather(share, 1, p.argmax(-1))                       # (B, m)
    n_labeled = labeled_y.shape[1]

    def per_round(value) -> torch.Tensor:  # a number, or one per episode (B,), broadcast to (B, m)
        return torch.as_tensor(value, dtype=p.dtype, device=p.device).expand(B)[:, None].expand(B, m)

    columns = {
        "entropy": entropy(p) / log_c,
        "confidence": (top2[..., 0] - 1 / C) / (1 - 1 / C),
        "margin": top2[..., 0] - top2[..., 1],
        "bald": member_info,
        "dist_to_labeled": r_labeled / (1 + r_labeled),
        "local_density": stats.density(emb, index),
        "predicted_class_share": predicted_share,
        "budget_used": per_round(budget_used),
        "labeled_fraction": per_round(n_labeled / (n_labeled + stats.size)),
        "label_entropy": per_round(entropy(share) / log_c),
        "inv_num_classes": per_round(1 / C),
    }
    features = torch.stack([columns[name] for name in schema.names], -1)
    if not torch.isfinite(features).all():
        raise NonFiniteError("features contain NaN or inf; check the learner's outputs for NaN")
    return features
