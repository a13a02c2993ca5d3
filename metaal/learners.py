"""Learners: the classifiers whose accuracy a query strategy tries to raise.

Every learner works on batches of episodes: inputs carry a leading (B,) episode dim.
`prepare(pool_x)` runs once per episode batch on the unlabeled pool; `fit` then trains B
independent models on the labeled set each round (from scratch, deterministic for a given
generator state). A fitted learner's `predict(x)` (or `predict_prepared(name)`) gives
  - probs         (B, m, C)    the model trained on the whole labeled set,
  - member_probs  (B, E, m, C) E extra models (bootstrap members / MC-dropout passes) whose
                               disagreement measures epistemic uncertainty (BALD),
  - embedding     (B, m, H)    the representation distances are measured in.

`LogisticRegression` (the fast head, for meta-training at scale) solves L2-regularised
multinomial logistic regression on the pool's top principal components. It runs gradient
descent in the dual, on the (n x n) Gram matrix of the labeled set: with W = Z^T alpha, the
primal step W -= lr * (Z^T (P - Y) / n + 2 l2 W) is exactly
alpha -= lr * ((P - Y) / n + 2 l2 alpha), so each step costs O(n^2 C) instead of O(n d C) and
batches of episodes and members become a few batched matmuls; the lookahead's refits (one
per candidate) share the labeled set's Gram matrix, so they cost little more than one fit
each of the candidates' border. `FourierLogisticRegression` (`rff_logreg`) is the same head on
random Fourier features, a kernel head for classes a linear one cannot separate. `SmallCNN` is a
conventional convnet for image data (deployment and evaluation), one network per episode, the
episodes of a batch trained together, with MC dropout for its members.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import inspect
import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from metaal.errors import InputError
from metaal.limits import load_yaml
from metaal.registry import Registry


@dataclass
class Prediction:
    probs: torch.Tensor                # (B, m, C)
    member_probs: torch.Tensor | None  # (B, E, m, C), or None when the learner has no members
    embedding: torch.Tensor            # (B, m, H)


class FittedLearner(Protocol):
    def predict(self, x: torch.Tensor) -> Prediction:
        """Predictions for any inputs x (B, m', ...)."""
        ...

    def predict_prepared(self, name: str = "pool") -> Prediction:
        """Predictions for an input set given to `prepare` ("pool", or a name in `extra`):
        the same as predict(that_x), but reuses what `prepare` computed."""
        ...


class Learner(Protocol):
    """Register one by name with `metaal.register_learner`; configs then build it as
    {name: ..., **its constructor's keyword options}.

    No trainer differentiates through a learner: the loop and the lookahead call `fit` and
    `predict` under torch.no_grad(), so the policy's gradient never reaches a fit. A learner
    that trains by gradient descent turns grad on for its own optimisation (SmallCNN does)."""

    name: str
    # True when predict's embedding depends on the pool alone (not on the labeled set), so
    # pool-wide quantities computed from it can be reused across rounds.
    fixed_embedding: bool

    def prepare(self, pool_x: torch.Tensor, generator: torch.Generator | None = None,
                extra: dict[str, torch.Tensor] | None = None) -> Any:
        """Once per episode batch: whatever the learner derives from the unlabeled pool
        (B, m, ...) alone, e.g. input statistics, plus `extra` named input sets (e.g. the
        evaluation set) kept ready for `predict_prepared`. Passed back to every `fit`."""
        ...

    def fit(self, prepared: Any, x: torch.Tensor, y: torch.Tensor, num_classes: int,
            generator: torch.Generator | None = None) -> FittedLearner:
        """Fit B models on the labeled set x (B, n, ...), y (B, n)."""
        ...

    # Optional: `refits(prepared, x, y, num_classes, added, added_y, on)`, the one-step lookahead
    # in one call (see LogisticRegression.refits). Without it the lookahead calls `fit` on the
    # labeled set repeated once per candidate.
    # Optional: `fit_from(previous, prepared, x, y, num_classes, generator)`, the next round's fit
    # given the previous round's fitted model (a warm start, see SmallCNN). The loop calls it from
    # the second round on; without it every round calls `fit`.


def map_tensors(state: Any, fn) -> Any:
    """Apply fn to every tensor of a prepared state (a tensor, or dicts/dataclasses of them),
    e.g. to select or repeat episodes along the batch dim."""
    if torch.is_tensor(state):
        return fn(state)
    if isinstance(state, dict):
        return {k: map_tensors(v, fn) for k, v in state.items()}
    if dataclasses.is_dataclass(state):
        return dataclasses.replace(state, **{f.name: map_tensors(getattr(state, f.name), fn)
                                             for f in dataclasses.fields(state)})
    return state


@contextlib.contextmanager
def _seeded_torch(seed: int, device: torch.device):
    """Seed torch's global generator for code that takes no generator argument (module init,
    dropout, pca_lowrank), leaving the caller's random state as it was."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _check_fit_inputs(x: torch.Tensor, y: torch.Tensor, num_classes: int):
    if x.ndim < 3 or y.ndim != 2 or x.shape[:2] != y.shape:
        raise InputError(f"fit expects x (B, n, ...) and y (B, n); got x {tuple(x.shape)} and y {tuple(y.shape)}")
    if y.shape[1] == 0:
        raise InputError("fit needs at least one labeled sample per episode")
    if y.min() < 0 or y.max() >= num_classes:
        raise InputError(f"labels must be in 0..{num_classes - 1}; got {int(y.min())}..{int(y.max())}")
    if not torch.isfinite(x).all():
        raise InputError("labeled inputs contain NaN or inf")


# ---------------------------------------------------------------------------- fast head

def _softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over a short last dim; ~5x faster than Tensor.softmax for C < 10 on CPU."""
    e = logits.sub(logits.amax(-1, keepdim=True)).exp_()
    return e.div_(e.sum(-1, keepdim=True))


def _top_eigenvalue(matvec, v: torch.Tensor) -> torch.Tensor:
    """(B, 1, M) top eigenvalue of a batch of PSD operators on vectors v (B, N, M), by 20 steps
    of power iteration from v."""
    for _ in range(20):
        v = matvec(v)
        top = v.norm(dim=1, keepdim=True)
        v = v / top
    return top


@dataclass
class _ExtendedGram:
    """The Gram matrices of M one-sample extensions of a labeled set, [[G, g_j], [g_j^T, s_j]],
    applied without forming any of them: G (B, n, n) is shared, only the border is per extension.
    Operands are (B, n + 1, ..., M), extension j in the last dim, row n its added sample."""

    gram: torch.Tensor   # (B, n, n)  labeled x labeled
    cross: torch.Tensor  # (B, n, M)  labeled x added sample j
    norm: torch.Tensor   # (B, M)     added sample j x itself

    def __matmul__(self, t: torch.Tensor) -> torch.Tensor:
        n, inner = self.gram.shape[1], (1,) * (t.ndim - 3)
        labeled, added = t[:, :n], t[:, n]
        cross = self.cross.view(*self.cross.shape[:2], *inner, -1)
        top = torch.addcmul((self.gram @ labeled.flatten(2)).view_as(labeled), cross, added.unsqueeze(1))
        bottom = torch.addcmul((cross * labeled).sum(1), self.norm.view(-1, *inner, self.norm.shape[1]), added)
        return torch.cat([top, bottom.unsqueeze(1)], 1)


@dataclass
class _LogRegInputs:
    """The pool-derived input map x -> z: standardise, then project on the pool's top
    principal components, so every later step works in n_components dims instead of d."""

    scale: torch.Tensor         # (B, 1, d)  z = x * scale + shift standardises and divides by
    shift: torch.Tensor         # (B, 1, d)  sqrt(d), so rows have unit scale
    basis: torch.Tensor | None  # (B, d, r)  orthonormal, or None to keep all d inputs
    sets: dict[str, torch.Tensor]  # "pool" and any extra input sets, already mapped: (B, m', r)
    # Tabular inputs only: the pool's per-column range, which every input is clipped to first.
    low: torch.Tensor | None = None   # (B, 1, d)
    high: torch.Tensor | None = None  # (B, 1, d)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(2)
        if self.low is not None:
            x = torch.clamp(x, self.low, self.high)
        z = torch.addcmul(self.shift, x, self.scale)
        return z if self.basis is None else z @ self.basis


@dataclass
class _FittedLogReg:
    inputs: _LogRegInputs
    weights: torch.Tensor  # (B, 1 + E, r + 1, C), member 0 = fit on the whole labeled set

    def predict(self, x: torch.Tensor) -> Prediction:
        return self._predict(self.inputs.embed(x))

    def predict_prepared(self, name: str = "pool") -> Prediction:
        return self._predict(self.inputs.sets[name])

    def _predict(self, z: torch.Tensor) -> Prediction:
        B, M, d1, C = self.weights.shape
        # All members in one bmm: (B, m, r) @ (B, r, M*C), plus the bias row.
        w = self.weights[:, :, :-1].permute(0, 2, 1, 3).reshape(B, d1 - 1, M * C)
        logits = (z @ w).view(B, -1, M, C) + self.weights[:, :, -1].unsqueeze(1)
        probs = _softmax(logits).transpose(1, 2)                                # (B, M, m, C)
        members = probs[:, 1:] if M > 1 else None
        return Prediction(probs=probs[:, 0], member_probs=members, embedding=z)


class LogisticRegression:
    """L2-regularised multinomial logistic regression, batched over episodes and members.

    `prepare` maps inputs once per episode, from the unlabeled pool alone (known at query
    time, so no label leaks; fixed across rounds, so embeddings are too): flatten,
    standardise, and project on the pool's top `n_components` principal components
    (randomised PCA, seeded by the generator). On 5-way MNIST and Fashion-MNIST episodes the
    64-component head is as accurate as the full-pixel one, and 12x lighter per round.
    `n_members` bootstrap replicas of the labeled set give the members whose disagreement
    BALD and the features use. `steps` of Nesterov-accelerated gradient descent with step
    size 1/L (L from a power iteration on the Gram matrix) start from zero.
    """

    name = "logreg"
    fixed_embedding = True  # the pool's own projection

    def __init__(self, l2: float = 1e-3, steps: int = 100, n_members: int = 8, n_components: int | None = 64):
        if l2 <= 0 or steps < 1 or n_members < 0 or (n_components is not None and n_components < 1):
            raise InputError("LogisticRegression needs l2 > 0, steps >= 1, n_members >= 0, n_components >= 1")
        self.l2, self.steps, self.n_members, self.n_components = l2, steps, n_members, n_components

    def prepare(self, pool_x: torch.Tensor, generator: torch.Generator | None = None,
                extra: dict[str, torch.Tensor] | None = None) -> _LogRegInputs:
        """Tabular columns have unrelated units, so each is standardised; pixels share one unit,
        so images are centred per pixel but scaled by one global std (per-pixel scaling blows
        up near-constant border pixels: 5-way MNIST with 55 labels drops from 0.83 to 0.74).

        A tabular column is standardised by its pool std, so a column that is (nearly)
        constant in the pool but not elsewhere (sparse, one-hot) would be blown up for the
        labeled and evaluation samples. Every input is therefore first clipped to the pool's
        range of each column: a standardised value then never exceeds sqrt(m) (Samuelson's
        inequality), and a column constant in the pool maps to 0 for every input."""
        if pool_x.ndim < 3 or pool_x.shape[1] < 2:
            raise InputError(f"prepare expects a pool (B, m, ...) of at least 2 samples; got {tuple(pool_x.shape)}")
        flat = pool_x.flatten(2)
        std, mean = torch.std_mean(flat, 1, keepdim=True, correction=0)
        images = pool_x.ndim > 3  # (B, m, channels, height, width)
        if images:
            std = std.square().mean(-1, keepdim=True).sqrt()
        scale = (1 / (std.clamp_min(1e-6) * math.sqrt(flat.shape[-1]))).expand_as(mean)
        low = high = None
        if not images:
            low, high = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
            scale = scale.masked_fill(high == low, 0.0)  # constant in the pool: no information
        inputs = _LogRegInputs(scale, -mean * scale, None, {}, low, high)
        z = inputs.embed(pool_x)
        if self.n_components is not None and z.shape[-1] > self.n_components:
            seed = int(torch.randint(2**62, (1,), generator=generator))
            with _seeded_torch(seed, z.device):
                inputs.basis = torch.pca_lowrank(z, q=min(self.n_components, z.shape[1]), center=False, niter=2)[2]
            z = z @ inputs.basis
        inputs.sets = {"pool": z, **{name: inputs.embed(x) for name, x in (extra or {}).items()}}
        return inputs

    def fit(self, prepared: _LogRegInputs, x, y, num_classes, generator=None) -> _FittedLogReg:
        _check_fit_inputs(x, y, num_classes)
        B, n = y.shape
        z = _with_bias(prepared.embed(x))                                      # (B, n, r + 1)
        gram = z @ z.transpose(1, 2)                                           # (B, n, n)
        M = 1 + self.n_members

        # Sample weights per member: member 0 sees every sample once, the others a bootstrap.
        # The Gram matrix is shared, so one bmm serves every member.
        counts = torch.ones(B, n, M, device=x.device)
        if self.n_members:
            draws = torch.randint(n, (B, n, self.n_members), generator=generator).to(x.device)
            counts[:, :, 1:] = torch.zeros(B, n, self.n_members, device=x.device).scatter_add_(
                1, draws, torch.ones(B, n, self.n_members, device=x.device))
        targets = F.one_hot(y, num_classes).float().unsqueeze(-1)              # (B, n, C, 1)
        top = _top_eigenvalue(lambda v: gram @ (counts * v), torch.ones_like(counts))
        alpha = self._descend(lambda a: (gram @ a.flatten(2)).view_as(a), targets.new_zeros(B, n, num_classes, M),
                              targets, counts.unsqueeze(2) / n, self._step_size(top, n))
        weights = (z.transpose(1, 2) @ alpha.flatten(2)).view(B, -1, num_classes, M)  # W = Z^T alpha
        return _FittedLogReg(prepared, weights.permute(0, 3, 1, 2))

    def _step_size(self, top: torch.Tensor, n: int) -> torch.Tensor:
        """(B, 1, 1, M) step 1/L: L bounds the gradient's Lipschitz constant, the softmax
        curvature (<= 1/2) times the top eigenvalue `top` (B, 1, M) of Gram @ diag(weights) / n,
        plus the L2 term."""
        return (1.0 / (top / (2 * n) * 1.05 + 2 * self.l2)).unsqueeze(2)

    def _descend(self, gram_times, alpha, targets, w, lr) -> torch.Tensor:
        """`steps` of Nesterov-accelerated gradient descent from zero on the dual coefficients
        alpha (B, N, C, M) of M models; gram_times(a) is Gram @ a, w the sample weights / n.
        Classes come before models: the softmax then runs over a strided dim with the models
        contiguous, 3-7x faster on CPU than over a short last dim."""
        alpha_prev = alpha
        for step in range(self.steps):
            # lookahead = alpha + beta (alpha - alpha_prev); the gradient step from there.
            # In-place and fused ops: this loop is memory-bound on the (B, N, C, M) tensors.
            lookahead = torch.add(alpha, alpha - alpha_prev, alpha=step / (step + 3))
            grad = gram_times(lookahead).softmax(2)
            grad.sub_(targets).mul_(w).add_(lookahead, alpha=2 * self.l2)
            alpha_prev, alpha = alpha, torch.addcmul(lookahead, lr, grad, value=-1)
        return alpha

    def refits(self, prepared: _LogRegInputs, x, y, num_classes: int, added: torch.Tensor,
               added_y: torch.Tensor, on: str = "pool") -> torch.Tensor:
        """(B, M, m', C) probabilities on the prepared set `on` of M models per episode, model j
        fitted on the labeled set x (B, n, ...), y (B, n) plus the pool sample added[b, j] labeled
        added_y[b, j]: the one-step lookahead, without bootstrap members.

        The same models as M calls of `fit` on the extended sets (the same steps from zero, equal
        to float rounding), without repeating the labeled set M times: the extensions share its
        Gram matrix, and only their border differs."""
        _check_fit_inputs(x, y, num_classes)
        B, n = y.shape
        M = added.shape[1]
        z = _with_bias(prepared.embed(x))                                                  # (B, n, r + 1)
        z_added = _with_bias(prepared.sets["pool"][torch.arange(B, device=z.device)[:, None], added])  # (B, M, r + 1)
        gram = _ExtendedGram(z @ z.transpose(1, 2), z @ z_added.transpose(1, 2), z_added.square().sum(-1))
        targets = torch.cat([F.one_hot(y, num_classes).float().unsqueeze(-1).expand(-1, -1, -1, M),
                             F.one_hot(added_y, num_classes).float().transpose(1, 2).unsqueeze(1)], 1)
        top = _top_eigenvalue(lambda v: gram @ v, torch.ones(B, n + 1, M, device=z.device))
        alpha = self._descend(lambda a: gram @ a, torch.zeros_like(targets), targets, 1.0 / (n + 1),
                              self._step_size(top, n + 1))                                # (B, n + 1, C, M)
        weights = (z.transpose(1, 2) @ alpha[:, :n].flatten(2)).view(B, -1, num_classes, M) \
            + z_added.transpose(1, 2).unsqueeze(2) * alpha[:, n].unsqueeze(1)             # (B, r + 1, C, M)
        logits = (prepared.sets[on] @ weights[:, :-1].flatten(2)).view(B, -1, num_classes, M) \
            + weights[:, -1].unsqueeze(1)                                                  # (B, m', C, M)
        return logits.softmax(2).permute(0, 3, 1, 2).contiguous()  # contiguous: class reductions 6x faster


@dataclass
class _FourierInputs(_LogRegInputs):
    """The logistic head's input map, then random Fourier features: z -> sqrt(2/D) cos(z W + b)."""

    omega: torch.Tensor | None = None  # (B, r, D) random frequencies
    phase: torch.Tensor | None = None  # (B, 1, D) random phases

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.fourier(super().embed(x))

    def fourier(self, z: torch.Tensor) -> torch.Tensor:
        """The random Fourier features of mapped inputs z."""
        return math.sqrt(2 / self.omega.shape[-1]) * torch.cos(z @ self.omega + self.phase)


class FourierLogisticRegression(LogisticRegression):
    """The same logistic regression on `n_fourier` random Fourier features of its inputs: an RBF
    kernel head (Rahimi and Recht 2007), for tasks a linear head cannot fit (class regions,
    checkerboards). The kernel's width is `bandwidth` times the median pairwise distance of the
    pool's mapped inputs (of its first 512 samples), from the pool alone, so no label leaks. Its
    embedding, the space distances are measured in, is the Fourier features: the diversity
    features see the kernel's geometry."""

    name = "rff_logreg"

    def __init__(self, n_fourier: int = 256, bandwidth: float = 1.0, **options):
        if n_fourier < 1 or bandwidth <= 0:
            raise InputError(f"rff_logreg needs n_fourier >= 1 and bandwidth > 0; got {n_fourier}, {bandwidth}")
        super().__init__(**options)
        self.n_fourier, self.bandwidth = n_fourier, bandwidth

    def prepare(self, pool_x: torch.Tensor, generator: torch.Generator | None = None,
                extra: dict[str, torch.Tensor] | None = None) -> _FourierInputs:
        linear = super().prepare(pool_x, generator)
        z = linear.sets["pool"]                                                  # (B, m, r)
        sample = z[:, :512]
        distance = torch.cdist(sample, sample).flatten(1)
        sigma = distance.masked_fill(distance == 0, float("nan")).nanmedian(1).values.clamp_min(1e-6)
        B, r = z.shape[0], z.shape[-1]
        omega = torch.randn(B, r, self.n_fourier, generator=generator).to(z) / (self.bandwidth * sigma.view(B, 1, 1))
        phase = (2 * math.pi * torch.rand(B, 1, self.n_fourier, generator=generator)).to(z)
        inputs = _FourierInputs(linear.scale, linear.shift, linear.basis, {}, linear.low, linear.high, omega, phase)
        # the pool is mapped already (z); the extra sets go through the whole map
        inputs.sets = {"pool": inputs.fourier(z), **{name: inputs.embed(x) for name, x in (extra or {}).items()}}
        return inputs


def _with_bias(z: torch.Tensor) -> torch.Tensor:
    """z (..., r) with a constant 1 appended: the bias as one more input."""
    return torch.cat([z, torch.ones_like(z[..., :1])], -1)


# ---------------------------------------------------------------------------- CNN

class _ConvNet(nn.Module):
    """One episode's SmallCNN; the batched learner stacks the weights of one per episode."""

    def __init__(self, in_channels: int, num_classes: int, side: int, dropout: float):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * (side // 4) ** 2, 64), nn.ReLU(),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(64, num_classes)

    def forward(self, x):
        h = self.body(x)
        return self.head(self.dropout(h)), h


_WEIGHTS = ("body.0.weight", "body.0.bias", "body.3.weight", "body.3.bias", "body.7.weight", "body.7.bias",
            "head.weight", "head.bias")


def _cnn_embed(w: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(B, n, 64) embeddings of x (B, n, C, s, s) by B networks at once: each conv layer is one
    convolution with B groups, each linear layer one batched matmul (weights as in _WEIGHTS)."""
    B, n = x.shape[:2]
    # channels-last halves a grouped convolution's time on CPU; pooling before the ReLU gives the
    # same values and gradients (the two commute) on a quarter of the elements
    z = x.transpose(0, 1).flatten(1, 2).contiguous(memory_format=torch.channels_last)  # (n, B*C, s, s)
    for weight, bias in ((w[0], w[1]), (w[2], w[3])):
        z = F.conv2d(z, weight.flatten(0, 1), bias.flatten(), padding=1, groups=B)
        z = F.relu(F.max_pool2d(z, 2))
    z = z.contiguous().view(n, B, -1).transpose(0, 1)                     # (B, n, 32 * (s/4)^2)
    return F.relu(torch.baddbmm(w[5].unsqueeze(1), z, w[4].transpose(1, 2)))


def _cnn_logits(w: list[torch.Tensor], h: torch.Tensor, keep: torch.Tensor | None, dropout: float) -> torch.Tensor:
    """(B, n, C) logits from embeddings h, through dropout's `keep` mask (None: no dropout)."""
    if keep is not None:
        h = h * keep / (1 - dropout)
    return torch.baddbmm(w[7].unsqueeze(1), h, w[6].transpose(1, 2))


def _keep_masks(generators: list[torch.Generator], shape: tuple[int, ...], dropout: float, device) -> torch.Tensor:
    """(B, *shape) dropout keep-masks, each episode's from its own generator: an episode's fit
    does not depend on the others in its batch."""
    return torch.stack([torch.rand(shape, generator=g) >= dropout for g in generators]).to(device)


def _episode_seeds(generator: torch.Generator | None, episodes: int) -> list[int]:
    """One seed per episode from one draw of `generator` (fit and fit_from draw alike)."""
    seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
    return [seed + i for i in range(episodes)]


@dataclass
class _FittedCNN:
    weights: list[torch.Tensor]  # stacked over episodes, in _WEIGHTS order
    dropout: float
    mc_passes: int
    seeds: list[int]             # per episode: the MC-dropout masks' generators
    sets: dict[str, torch.Tensor]
    chunk: int = 256             # samples per forward pass (bounds the activations' memory)

    def predict_prepared(self, name: str = "pool") -> Prediction:
        return self.predict(self.sets[name])

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> Prediction:
        """The body runs once; only the MC-dropout passes' head sees different masks (the body
        has no dropout, so recomputing it per pass, as the first SmallCNN did, gave the same)."""
        h = torch.cat([_cnn_embed(self.weights, x[:, i:i + self.chunk]) for i in range(0, x.shape[1], self.chunk)], 1)
        probs = _cnn_logits(self.weights, h, None, self.dropout).softmax(-1)
        members = None
        if self.mc_passes:
            generators = [torch.Generator().manual_seed(s) for s in self.seeds]
            keep = _keep_masks(generators, (self.mc_passes, *h.shape[1:]), self.dropout, h.device)   # (B, E, m, 64)
            members = torch.stack([_cnn_logits(self.weights, h, keep[:, e], self.dropout).softmax(-1)
                                   for e in range(self.mc_passes)], 1)
        return Prediction(probs, members, h)


class SmallCNN:
    """Two conv layers and a 64-unit embedding, one network per episode, the B episodes of a
    batch trained together (grouped convolutions, batched matmuls). A fit takes at most `steps`
    Adam steps on minibatches of `batch_size` labeled samples (each epoch a new shuffle; None: the
    whole set, one step per epoch). With `stop_loss`, an episode stops once its mean training loss
    over an epoch is below it, and stopped episodes leave the batch. The first round's fit starts
    from fresh weights; with `warm_start`, each later round's starts from the previous round's
    (else from fresh ones again). Dropout before the head; `mc_passes` MC-dropout passes give the
    members. Every episode draws its weights, minibatches and masks from its own seed, so its fit
    does not depend on the batch it is in."""

    name = "cnn"
    fixed_embedding = False

    # The default recipe (issue 42, benchmarks/cnn_recipe.py, development seeds): 150 steps on
    # minibatches of 64 with a stop at loss 0.05, warm-started, is 20x cheaper than retraining
    # with 150 full-batch steps each round (the first SmallCNN's), and margin's and random's AULC
    # are within 0.002 of it.
    def __init__(self, steps: int = 150, batch_size: int | None = 64, stop_loss: float | None = 0.05,
                 warm_start: bool = True, lr: float = 3e-3, weight_decay: float = 1e-4, dropout: float = 0.25,
                 mc_passes: int = 8):
        if steps < 1 or (batch_size is not None and batch_size < 1) or not 0 <= dropout < 1 or mc_passes < 0:
            raise InputError("SmallCNN needs steps >= 1, batch_size >= 1 (or None), 0 <= dropout < 1, "
                             "mc_passes >= 0")
        self.steps, self.batch_size, self.stop_loss, self.warm_start = steps, batch_size, stop_loss, warm_start
        self.lr, self.weight_decay, self.dropout, self.mc_passes = lr, weight_decay, dropout, mc_passes

    def prepare(self, pool_x: torch.Tensor, generator: torch.Generator | None = None,
                extra: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        return {"pool": pool_x, **(extra or {})}

    def fit(self, prepared, x, y, num_classes, generator=None) -> _FittedCNN:
        _check_fit_inputs(x, y, num_classes)
        if x.ndim != 5 or x.shape[-1] != x.shape[-2]:
            raise InputError(f"SmallCNN needs square images (B, n, channels, side, side); got {tuple(x.shape)}. "
                             "Use the 'logreg' learner for tabular data.")
        return self.fit_seeded(prepared, x, y, num_classes, _episode_seeds(generator, len(x)))

    def fit_from(self, previous: _FittedCNN, prepared, x, y, num_classes, generator=None) -> _FittedCNN:
        """The next round's fit: from `previous`'s weights with `warm_start`, else as `fit`."""
        if not self.warm_start:
            return self.fit(prepared, x, y, num_classes, generator)
        _check_fit_inputs(x, y, num_classes)
        if previous.weights[-1].shape != (len(x), num_classes):
            raise InputError(f"a warm start needs the previous fit of the same {len(x)} episodes and {num_classes} "
                             f"classes; got one with (episodes, classes) {tuple(previous.weights[-1].shape)}")
        return self.fit_seeded(prepared, x, y, num_classes, _episode_seeds(generator, len(x)), previous.weights)

    def fit_seeded(self, prepared, x, y, num_classes, seeds: list[int],
                   init: list[torch.Tensor] | None = None) -> _FittedCNN:
        """The fit of episode i from seeds[i] alone (its minibatches and masks, and its weights
        unless `init` gives them, stacked over episodes in _WEIGHTS order)."""
        if init is None:
            nets = []
            for s in seeds:
                with _seeded_torch(s, x.device):
                    nets.append(_ConvNet(x.shape[2], num_classes, x.shape[-1], self.dropout).to(x.device, x.dtype))
            init = [torch.stack([net.state_dict()[name] for net in nets]) for name in _WEIGHTS]
        weights = [w.detach().clone().requires_grad_() for w in init]
        with torch.enable_grad():  # callers fit under no_grad
            self._train(weights, x, y, [torch.Generator().manual_seed(s) for s in seeds])
        return _FittedCNN([w.detach() for w in weights], self.dropout, self.mc_passes, seeds, prepared)

    def _train(self, weights: list[torch.Tensor], x, y, generators: list[torch.Generator]) -> None:
        n = y.shape[1]
        size = n if self.batch_size is None else min(self.batch_size, n)
        per_epoch = -(-n // size)
        optimizer = torch.optim.Adam(weights, lr=self.lr, weight_decay=self.weight_decay)
        active = torch.arange(len(y), device=x.device)  # the episodes still training
        epoch_loss = torch.zeros(len(y), device=x.device)
        for step in range(self.steps):
            if step % per_epoch == 0:
                order = torch.stack([torch.randperm(n, generator=generators[i]) for i in active.tolist()])
            batch = order[:, (step % per_epoch) * size:][:, :size].to(x.device)
            every = len(active) == len(y)  # indexing all episodes would cost a scatter in backward
            loss = self._loss(weights if every else [w[active] for w in weights],
                              x[active[:, None], batch], y[active[:, None], batch],
                              [generators[i] for i in active.tolist()])
            optimizer.zero_grad()
            loss.mean(1).sum().backward()  # the episodes are independent: the sum's gradient is each one's
            self._step(optimizer, weights, active)
            epoch_loss[active] += loss.detach().sum(1)
            if self.stop_loss is not None and (step + 1) % per_epoch == 0:
                going = epoch_loss[active] / n >= self.stop_loss
                active = active[going]  # the next step starts an epoch: a new order for those left
                epoch_loss.zero_()
                if len(active) == 0:
                    break

    def _loss(self, weights, x, y, generators) -> torch.Tensor:
        """(B, b) per-sample training losses of the networks `weights` on a minibatch."""
        keep = _keep_masks(generators, (x.shape[1], 64), self.dropout, x.device) if self.dropout else None
        logits = _cnn_logits(weights, _cnn_embed(weights, x), keep, self.dropout)
        return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)

    @staticmethod
    def _step(optimizer, weights: list[torch.Tensor], active: torch.Tensor) -> None:
        """Adam's step; an episode that stopped keeps its weights (Adam's momentum would move them)."""
        if len(active) == len(weights[0]):
            optimizer.step()
            return
        before = [w.detach().clone() for w in weights]
        optimizer.step()
        with torch.no_grad():
            for w, old in zip(weights, before):
                w.copy_(old.index_copy(0, active, w[active]))


LEARNERS: Registry[type] = Registry("learner")
LEARNERS.register("logreg", LogisticRegression)
LEARNERS.register("cnn", SmallCNN)
LEARNERS.register("rff_logreg", FourierLogisticRegression)


def register_learner(name: str, learner: type | None = None, *, replace: bool = False):
    """Register a learner class (see Learner) under `name`, as a call or as a decorator."""
    return LEARNERS.register(name, learner, replace=replace)


def constructor_options(cls: type) -> dict[str, inspect.Parameter]:
    """A learner class's named constructor options. A subclass whose __init__ passes **options on
    to its parent's (a plug-in extending a learner) accepts the parent's options too."""
    options = {}
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]  # without self
        for p in parameters:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                options.setdefault(p.name, p)
        if not any(p.kind == p.VAR_KEYWORD for p in parameters):
            break
    return options


def learner_spec(spec: str | dict) -> dict:
    """The full description of a learner: {"name": ..., every constructor option}, the options
    not given at their defaults. Refuses an unknown name or option, saying which."""
    spec = {"name": spec} if isinstance(spec, str) else dict(spec)
    if "name" not in spec:
        raise InputError(f"a learner is given as {{name: ..., options}}; got {spec} without a name")
    parameters = constructor_options(LEARNERS.get(spec["name"]))
    unknown = sorted(set(spec) - {"name"} - set(parameters))
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(parameters), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"learner {spec['name']!r} has no option {unknown[0]!r}; its options are "
                         f"{', '.join(parameters) or 'none'}{hint}")
    defaults = {k: p.default for k, p in parameters.items() if p.default is not inspect.Parameter.empty}
    return {"name": spec["name"], **defaults, **{k: v for k, v in spec.items() if k != "name"}}


def parse_learner(text: str) -> dict:
    """A learner given on the command line, a name or a YAML mapping {name: NAME, option: value},
    as its full spec."""
    given = load_yaml(text, f"learner {text[:200]!r}")
    if not isinstance(given, (str, dict)):
        raise InputError(f"learner {text[:200]!r} is neither a name nor a YAML mapping {{name: NAME, option: value}}")
    return learner_spec(given)


def make_learner(spec: str | dict = "logreg", **options) -> Learner:
    """Build a learner from its name or its spec ({name, options}); `options` override the spec's."""
    spec = learner_spec({**({"name": spec} if isinstance(spec, str) else spec), **options})
    return LEARNERS.get(spec["name"])(**{k: v for k, v in spec.items() if k != "name"})
