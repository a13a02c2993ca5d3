"""Use a query strategy, a frozen policy or a baseline, inside your own active-learning loop.

    import metaal
    picked = metaal.select("linear", model, pool, k=10,        # device="auto": GPU when present
                           labeled_x=x_labeled, labeled_y=y_labeled, num_classes=10)
    # picked: (10,) indices into `pool`, best first

The strategy is a Strategy (metaal.load_policy(...), make_strategy(...)), a shipped policy's
name ("linear", "kernel"), a baseline's name ("margin"), a policy checkpoint's path, or None:
the shipped policy matched to a linear head (policy.default_policy), which is what a network whose
last layer is linear on its embedding is.

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
`features.DENSITY_REFERENCE` pool samples, an approximation exact for smaller pools; they
are computed only for a strategy that reads features (`Strategy.reads_features`: the policy).
On a pool larger than `shortlist` (default `SHORTLIST`), such a strategy first streams the pool
keeping the samples of smallest margin, then computes features and scores for them alone
(`shortlist=None`: features for every sample, exact).
`exclude` marks pool samples never to pick (those labeled already). Score-and-rank strategies
keep the running top k; batch-diverse ones (coreset, badge, cluster_margin, typiclust,
probcover) choose jointly among the best-scored `candidates` (default max(10 k, 1000)), kept
while the pool streams, so they work on pools of any size too.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from metaal.device import resolve_device
from metaal.errors import InputError, NonFiniteError
from metaal.features import DENSITY_NEIGHBOURS, PoolStatistics, compute_features, reference_subset
from metaal.learners import Prediction
from metaal.loop import picks_labeled
from metaal.policy import default_policy, load_policy
from metaal.strategies import STRATEGIES, QueryContext, Strategy, make_strategy
from metaal.zoo import is_policy_name


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


@dataclass
class _Candidates:
    """The running best `size` pool samples by score while the pool streams: their pool indices,
    scores, predictions and features (what a strategy's `select` needs of them at the end)."""

    size: int
    index: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    pred: Prediction | None = None
    features: torch.Tensor | None = None

    def add(self, index: torch.Tensor, scores: torch.Tensor, pred: Prediction, features: torch.Tensor | None) -> None:
        if self.index is not None:
            index, scores = torch.cat([self.index, index]), torch.cat([self.scores, scores])
            pred = Prediction(torch.cat([self.pred.probs, pred.probs], 1),
                              None if pred.member_probs is None else torch.cat([self.pred.member_probs,
                                                                                pred.member_probs], 2),
                              torch.cat([self.pred.embedding, pred.embedding], 1))
            features = None if features is None else torch.cat([self.features, features], 1)
        top = scores.topk(min(self.size, len(scores))).indices
        members = None if pred.member_probs is None else pred.member_probs[:, :, top]
        self.index, self.scores = index[top], scores[top]
        self.features = None if features is None else features[:, top]
        self.pred = Prediction(pred.probs[:, top], members, pred.embedding[:, top])


def resolve_strategy(strategy: Strategy | str | None, device: str | torch.device = "auto") -> Strategy:
    """A strategy as given, or by name: a shipped policy's, a baseline's, or a checkpoint's path;
    None is the shipped policy for a linear head (policy.default_policy)."""
    if isinstance(strategy, Strategy):
        return strategy
    if strategy is None or is_policy_name(strategy):
        return load_policy(strategy or default_policy(), device=device)
    if isinstance(strategy, str) and strategy in STRATEGIES:
        return make_strategy(strategy)
    if not isinstance(strategy, (str, os.PathLike)):
        raise InputError(f"strategy must be a Strategy, a name or a policy checkpoint's path; got "
                         f"{type(strategy).__name__}")
    return load_policy(strategy, device=device)


def _excluded(exclude, n: int) -> torch.Tensor:
    """`exclude` (None, a bool mask (n,) or pool indices) as a bool mask (n,) on the CPU."""
    if exclude is None:
        return torch.zeros(n, dtype=torch.bool)
    exclude = torch.as_tensor(exclude).cpu()
    if exclude.dtype == torch.bool:
        if exclude.shape != (n,):
            raise InputError(f"exclude is a mask of shape {tuple(exclude.shape)}; the pool has {n} samples")
        return exclude
    in_range = len(exclude) == 0 or 0 <= exclude.min() <= exclude.max() < n
    if exclude.ndim != 1 or exclude.is_floating_point() or not in_range:
        raise InputError(f"exclude must be a bool mask ({n},) or pool indices in 0..{n - 1}")
    return torch.zeros(n, dtype=torch.bool).index_fill_(0, exclude.long(), True)


def _check_inputs(strategy: Strategy, pool, k: int, labeled_x, labeled_y, num_classes: int, excluded,
                  reference_size: int | None, shortlist: int | None) -> None:
    if reference_size is not None and not (isinstance(reference_size, int) and reference_size > DENSITY_NEIGHBOURS):
        raise InputError(f"reference_size must be an int above {DENSITY_NEIGHBOURS} (the neighbours local density "
                         f"averages over), got {reference_size!r}")
    if shortlist is not None and not (isinstance(shortlist, int) and shortlist > 0):
        raise InputError(f"shortlist must be a positive int (or None: features for every sample), got {shortlist!r}")
    if strategy.needs_simulation:
        raise InputError(f"strategy {strategy.name!r} refits the simulator's learner (and may read labels): it runs "
                         "only in simulation (run_active_learning), not on your pool")
    n = len(excluded)
    if n == 0:
        raise InputError("the pool is empty: there is nothing to query")
    left = n - int(excluded.sum())
    if not 1 <= k <= left:
        raise InputError(f"asked for k={k} samples from a pool of {n}" + (f" of which {n - left} are excluded"
                                                                           if left < n else ""))
    if len(labeled_x) == 0 or len(labeled_x) != len(labeled_y):
        raise InputError("labeled_x and labeled_y must hold the same, non-zero number of samples")
    if labeled_y.min() < 0 or labeled_y.max() >= num_classes:
        raise InputError(f"labeled_y must hold class ids in 0..{num_classes - 1}")
    if tuple(labeled_x.shape[1:]) != _sample_shape(pool):
        raise InputError(f"labeled_x samples have shape {tuple(labeled_x.shape[1:])} but pool samples "
                         f"{_sample_shape(pool)}; give both in the shape the model takes")


# A feature-reading strategy (the policy) on a pool larger than this computes features only for
# this many samples of smallest margin, since features cost most of a query: the shipped
# policy's picks lie within the first 600 by margin (benchmarks/shortlist_agreement.py, which
# checks another policy with --policy; one that strays farther from margin needs shortlist=None).
SHORTLIST = 4096


def _margin_prescore(pred: Prediction) -> torch.Tensor:
    """(m,) minus the margin between the top two probabilities: the cheap score a shortlist keeps."""
    top2 = pred.probs[0].topk(2, dim=-1).values
    return top2[:, 1] - top2[:, 0]


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """The model in eval mode inside; outside, every module back in the mode it was found in (so
    the caller's next training round keeps its dropout and batch-norm updates)."""
    modes = [(module, module.training) for module in model.modules()]  # parents before children
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.train(training)


def _keeps_model_modes(fn):
    """`fn(strategy, model, ...)` leaves the caller's model in the modes it found it in."""
    @functools.wraps(fn)
    def run(strategy, model, *args, **kwargs):
        with eval_mode(model):
            return fn(strategy, model, *args, **kwargs)
    return run


@_keeps_model_modes
@torch.inference_mode()
def select(strategy: Strategy | str | None, model: nn.Module, pool, k: int, labeled_x: torch.Tensor,
           labeled_y: torch.Tensor, num_classes: int, *, exclude=None, budget_used: float = 0.0,
           batch_size: int = 4096, mc_passes: int = 0, candidates: int | None = None,
           reference_size: int | None = None, shortlist: int | None = SHORTLIST,
           device: str | torch.device = "auto", seed: int = 0, return_scores: bool = False):
    """The k pool indices to label next, best first (and their scores, with return_scores).

    `strategy`: a Strategy, a name, a checkpoint's path or None (resolve_strategy says which).
    `exclude`: pool samples never to pick (a bool mask or indices), e.g. those labeled already.
    A strategy that selects jointly (coreset, badge, cluster_margin, typiclust, probcover, the
    sequential policy) chooses among the `candidates` best-scored samples of the streamed pool
    (default max(10 k, 1000)); a score-and-rank one simply takes the top k.
    `reference_size`: the pool samples the pool-wide features are estimated on (default
    features.DENSITY_REFERENCE = 512); fewer make a policy's features cheaper and noisier.
    `shortlist`: a strategy that reads features (the policy) has them computed only for this
    many pool samples of smallest margin (default SHORTLIST = 4096; None: every sample, exact).
    RESULTS.md, "Query time", measures both. The model runs in eval mode, then is left as found."""
    strategy = resolve_strategy(strategy, device)
    excluded = _excluded(exclude, _pool_size(pool))
    _check_inputs(strategy, pool, k, labeled_x, labeled_y, num_classes, excluded, reference_size, shortlist)
    n, device = len(excluded), resolve_device(device)
    model = model.to(device)  # in eval mode already (_keeps_model_modes)
    generator = torch.Generator().manual_seed(seed)
    labeled_y = labeled_y.to(device)[None]
    labeled = torch.cat([_forward(model, labeled_x[i:i + batch_size], device, 0, None).embedding
                         for i in range(0, len(labeled_x), batch_size)], 1)
    stats = _pool_statistics(strategy, model, pool, n, labeled, labeled_y, num_classes, budget_used, device,
                             mc_passes, generator, reference_size)

    def features(pred: Prediction, index: torch.Tensor) -> torch.Tensor | None:
        """The samples' features; None for a strategy that never reads them (cheaper)."""
        return None if stats is None else compute_features(pred, labeled, labeled_y, num_classes, budget_used,
                                                           stats, index=index)

    def scored(pred: Prediction, index: torch.Tensor, available: torch.Tensor):
        feats = features(pred, index)
        ctx = QueryContext(pool=pred, features=feats, labeled_embedding=labeled, available=available[None],
                           generator=generator, context_features=None if stats is None else stats.context_features)
        return strategy.score(ctx)[0].masked_fill(~available, float("-inf")), feats

    left = n - int(excluded.sum())
    keep = min(left, (candidates or max(10 * k, 1000)) if strategy.selects_jointly else k)
    shortlist = None if stats is None or shortlist is None else max(shortlist, keep)
    prescore = _margin_prescore if shortlist is not None and left > shortlist else None
    best = _stream(model, pool, excluded.to(device), device, mc_passes, batch_size, scored, prescore,
                   shortlist if prescore else keep)
    if best.index is None or len(best.index) < k:
        raise InputError(f"the pool yielded only {0 if best.index is None else len(best.index)} samples, "
                         f"fewer than k={k}")
    if prescore is not None:  # the shortlist's features and scores, then its best `keep` as the candidates
        scores, feats = scored(best.pred, best.index, torch.ones_like(best.scores, dtype=torch.bool))
        best, shortlisted = _Candidates(keep), best
        best.add(shortlisted.index, scores, shortlisted.pred, feats)
    refeature = None if stats is None else picks_labeled(best.pred, labeled, labeled_y, num_classes, budget_used,
                                                         stats, index=best.index)
    ctx = QueryContext(pool=best.pred, features=best.features, labeled_embedding=labeled,
                       available=torch.isfinite(best.scores)[None], generator=generator,
                       context_features=None if stats is None else stats.context_features, refeature=refeature)
    picks = strategy.query(ctx, k).indices[0]
    return (best.index[picks].cpu(), best.scores[picks].cpu()) if return_scores else best.index[picks].cpu()


def _pool_statistics(strategy: Strategy, model: nn.Module, pool, n: int, labeled: torch.Tensor,
                     labeled_y: torch.Tensor, num_classes: int, budget_used: float, device: torch.device,
                     mc_passes: int, generator: torch.Generator, reference_size: int | None) -> PoolStatistics | None:
    """The pool-wide statistics from the seeded reference subset (the normalisers, density
    neighbours and a policy's context features); None for a strategy that reads no features."""
    ref_index = reference_subset(n, generator, reference_size)
    reference = _forward(model, _rows(pool, ref_index), device, mc_passes, ref_index)
    if reference.probs.shape[-1] != num_classes:
        raise InputError(f"the model predicts {reference.probs.shape[-1]} classes, num_classes is {num_classes}")
    if not strategy.reads_features:
        return None
    stats = PoolStatistics.from_reference(reference.embedding, ref_index, labeled, size=n)
    stats.context_features = compute_features(reference, labeled, labeled_y, num_classes, budget_used, stats,
                                              index=stats.reference_index)
    return stats


def _stream(model: nn.Module, pool, excluded: torch.Tensor, device: torch.device, mc_passes: int, batch_size: int,
            scored, prescore, size: int) -> _Candidates:
    """Stream the pool through the model, keeping the `size` best samples: by the strategy's
    score (`scored`), or by `prescore` alone (a shortlist, whose features come after)."""
    best = _Candidates(size)
    for start, x in _batches(pool, batch_size):
        index = torch.arange(start, start + len(x), device=device)
        pred = _forward(model, x, device, mc_passes, index)
        if prescore is None:
            scores, feats = scored(pred, index, ~excluded[index])
        else:
            scores, feats = prescore(pred).masked_fill(excluded[index], float("-inf")), None
        best.add(index, scores, pred, feats)
    return best
