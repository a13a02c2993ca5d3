"""Use a query strategy, a frozen policy or a baseline, inside your own active-learning loop.

    import metaal
    policy = metaal.load_policy("policy.pt")                  # device="auto": GPU when present
    picked = metaal.select(policy, model, pool, k=10,
                           labeled_x=x_labeled, labeled_y=y_labeled, num_classes=10)
    # picked: (10,) indices into `pool`, best first

`model` is your trained classifier: `model(x)` returns logits (N, C), or a tuple
(logits, embedding) if it has an embedding (distances are measured in it; without one, in
logit space). With `mc_passes > 0` its dropout layers stay active for that many extra passes
(MC dropout), which feeds the disagreement (BALD) feature.

`pool` is a tensor (N, ...) or a DataLoader over a map-style dataset, in order (no
shuffling; batches may be `x` or `(x, ...)` tuples). It is streamed in batches under
`torch.inference_mode` on the chosen device, with pinned memory and non-blocking copies on
CUDA, and only the running top-k is kept, so the pool can be far larger than memory allows
at once. Pool-wide quantities (the medians the features are normalised by, local density,
a policy's pooled context) come from a seeded random reference subset of at most
`features.DENSITY_REFERENCE` pool samples, an approximation exact for smaller pools. Only
score-and-rank strategies can stream; batch-diverse ones (coreset, badge) need the whole
pool's embeddings at once and are refused.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from metaal.device import resolve_device
from metaal.errors import InputError, NonFiniteError
from metaal.features import PoolStatistics, compute_features, reference_subset
from metaal.learners import Prediction
from metaal.strategies import QueryContext, Strategy


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device, mc_passes: int,
             index: torch.Tensor | None) -> Prediction:
    """One batch through the user's model -> a Prediction with a leading episode dim of 1.
    `index`: the pool indices of x's rows, named if the model gives NaN (None: the labeled set)."""
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory()
    x = x.to(device, non_blocking=True)
    out = model(x)
    logits, embedding = (out[0], out[1]) if isinstance(out, (tuple, list)) else (out, out)
    if logits.ndim != 2:
        raise InputError(f"the model should return logits of shape (batch, classes); got {tuple(logits.shape)}")
    finite = torch.isfinite(logits).all(1) & torch.isfinite(embedding.flatten(1)).all(1)
    if not finite.all():
        bad = torch.nonzero(~finite).flatten().cpu()
        rows = (f"labeled samples {bad.tolist()[:10]}" if index is None
                else f"pool rows {index.cpu()[bad].tolist()[:10]}")
        raise NonFiniteError(f"the model's outputs for {rows} contain NaN or inf; check those inputs for NaN "
                             "(and the model's weights)")
    members = None
    if mc_passes:
        dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
        if not dropouts:
            raise InputError("mc_passes > 0 needs dropout layers in the model (MC dropout)")
        for m in dropouts:
            m.train()
        try:
            members = torch.stack([_first(model(x)).softmax(-1) for _ in range(mc_passes)])[None]
        finally:
            for m in dropouts:
                m.eval()
    return Prediction(logits.float().softmax(-1)[None], members, embedding.flatten(1).float()[None])


def _first(value):
    """x from a batch that may be (x, y, ...); logits from a model output that may be (logits, embedding)."""
    return value[0] if isinstance(value, (tuple, list)) else value


def _batches(pool, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    if torch.is_tensor(pool):
        for start in range(0, len(pool), batch_size):
            yield start, pool[start:start + batch_size]
        return
    start = 0
    for batch in pool:
        x = _first(batch)
        yield start, x
        start += len(x)


def _rows(pool, index: torch.Tensor) -> torch.Tensor:
    """Inputs of the given pool rows (the reference subset)."""
    if torch.is_tensor(pool):
        return pool[index]
    items = [pool.dataset[int(i)] for i in index]
    return _first(pool.collate_fn(items))


def _sample_shape(pool) -> tuple[int, ...]:
    """The shape of one pool sample."""
    return tuple(pool.shape[1:]) if torch.is_tensor(pool) else tuple(_first(pool.dataset[0]).shape)


def _pool_size(pool) -> int:
    if torch.is_tensor(pool):
        return len(pool)
    if not isinstance(pool, torch.utils.data.DataLoader):
        raise InputError(f"pool must be a tensor or a DataLoader, got {type(pool).__name__}")
    if not isinstance(pool.sampler, torch.utils.data.SequentialSampler):
        raise InputError("the pool DataLoader must not shuffle (shuffle=False): indices refer to dataset order")
    return len(pool.dataset)


@torch.inference_mode()
def select(strategy: Strategy, model: nn.Module, pool, k: int, labeled_x: torch.Tensor, labeled_y: torch.Tensor,
           num_classes: int, *, budget_used: float = 0.0, batch_size: int = 4096, mc_passes: int = 0,
           device: str | torch.device = "auto", seed: int = 0, return_scores: bool = False):
    """The k pool indices to label next, best first (and their scores, with return_scores)."""
    if strategy.needs_simulation:
        raise InputError(f"strategy {strategy.name!r} refits the simulator's learner (and may read labels): it runs "
                         "only in simulation (run_active_learning), not on your pool")
    if type(strategy).select is not Strategy.select:
        raise InputError(f"strategy {strategy.name!r} selects jointly over the whole pool; select() streams the "
                         "pool in batches and supports score-and-rank strategies (policy, margin, entropy, ...)")
    n = _pool_size(pool)
    if n == 0:
        raise InputError("the pool is empty: there is nothing to query")
    if not 1 <= k <= n:
        raise InputError(f"asked for k={k} samples from a pool of {n}")
    if len(labeled_x) == 0 or len(labeled_x) != len(labeled_y):
        raise InputError("labeled_x and labeled_y must hold the same, non-zero number of samples")
    if labeled_y.min() < 0 or labeled_y.max() >= num_classes:
        raise InputError(f"labeled_y must hold class ids in 0..{num_classes - 1}")
    if tuple(labeled_x.shape[1:]) != _sample_shape(pool):
        raise InputError(f"labeled_x samples have shape {tuple(labeled_x.shape[1:])} but pool samples "
                         f"{_sample_shape(pool)}; give both in the shape the model takes")
    device = resolve_device(device)
    model = model.to(device).eval()
    generator = torch.Generator().manual_seed(seed)
    labeled_y = labeled_y.to(device)[None]

    labeled = torch.cat([_forward(model, labeled_x[i:i + batch_size], device, 0, None).embedding
                         for i in range(0, len(labeled_x), batch_size)], 1)
    # The reference subset: pool-wide normalisers, density neighbours and the policy's context.
    ref_index = reference_subset(n, generator)
    reference = _forward(model, _rows(pool, ref_index), device, mc_passes, ref_index)
    if reference.probs.shape[-1] != num_classes:
        raise InputError(f"the model predicts {reference.probs.shape[-1]} classes, num_classes is {num_classes}")
    stats = PoolStatistics.from_reference(reference.embedding, ref_index, labeled, size=n)

    def features(pred: Prediction, index: torch.Tensor) -> torch.Tensor:
        return compute_features(pred, labeled, labeled_y, num_classes, budget_used, stats, index=index)

    stats.context_features = features(reference, stats.reference_index)
    best_scores = torch.empty(0, device=device)
    best_index = torch.empty(0, dtype=torch.int64, device=device)
    for start, x in _batches(pool, batch_size):
        index = torch.arange(start, start + len(x), device=device)
        pred = _forward(model, x, device, mc_passes, index)
        ctx = QueryContext(pool=pred, features=features(pred, index), labeled_embedding=labeled,
                           available=torch.ones(1, len(x), dtype=torch.bool, device=device),
                           generator=generator, context_features=stats.context_features)
        scores = torch.cat([best_scores, strategy.score(ctx)[0]])
        top = scores.topk(min(k, len(scores)))
        best_scores, best_index = top.values, torch.cat([best_index, index])[top.indices]
    if len(best_index) < k:
        raise InputError(f"the pool yielded only {len(best_index)} samples, fewer than k={k}")
    return (best_index.cpu(), best_scores.cpu()) if return_scores else best_index.cpu()
