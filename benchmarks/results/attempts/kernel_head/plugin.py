"""Regime probe (issue 14, stop 32): the benchmark's tabular targets with a non-linear head.

Where margin fails on the tabular targets, it fails together with the linear head: on the
checkerboards a logistic head cannot fit the labels, so the least-certain samples sit along a
boundary that does not exist, and Cluster-Margin's spread wins (+0.025 to +0.031 at
imbalanced-k50 on the report grid). Is that a property of the tasks or of the head? This
plug-in registers `rff_logreg`: the same logistic regression on random Fourier features of its
inputs (an RBF kernel head; bandwidth the median pairwise distance of the pool's inputs, from the
pool alone, so nothing leaks). The grid runs with it in every cell (`--learner rff_logreg`); the
policy, meta-trained with the linear head, is frozen and transferred as it is.

Questions, set before the grid ran (development seeds; a probe, not a candidate): on the three
checkerboards, is margin's AULC higher with this head than with the linear one, and is
Cluster-Margin's lead over margin smaller? Over the tabular targets, is the policy still above
margin on average with a head it was not trained with?

    OMP_NUM_THREADS=1 python benchmarks/transfer_grid.py --data-root ../shared/data --jobs 2 --seed-offset 10000 \
      --seeds 20 --reference-candidates 0 --learner rff_logreg --baselines margin,cluster_margin,badge,typiclust \
      --targets "$(cat benchmarks/results/attempts/kernel_head/targets)" \
      --plugins benchmarks/results/attempts/kernel_head/plugin.py --out benchmarks/results/attempts/kernel_head/dev_grid

(`targets`: the 16 tabular targets of metaal.evaluate.TARGETS, comma-separated.)
"""

import math
from dataclasses import dataclass

import torch

from metaal.learners import LogisticRegression, _LogRegInputs, register_learner


@dataclass
class _FourierInputs(_LogRegInputs):
    omega: torch.Tensor | None = None  # (B, r, D) random frequencies
    phase: torch.Tensor | None = None  # (B, 1, D) random phases

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        z = super().embed(x)
        return math.sqrt(2 / self.omega.shape[-1]) * torch.cos(z @ self.omega + self.phase)


@register_learner("rff_logreg")
class FourierLogisticRegression(LogisticRegression):
    name = "rff_logreg"

    def __init__(self, n_fourier: int = 256, bandwidth: float = 1.0, **options):
        super().__init__(**options)
        self.n_fourier, self.bandwidth = n_fourier, bandwidth

    def prepare(self, pool_x, generator=None, extra=None) -> _FourierInputs:
        linear = super().prepare(pool_x, generator)
        z = linear.sets["pool"]                                                  # (B, m, r)
        sample = z[:, :512]
        distance = torch.cdist(sample, sample).flatten(1)
        sigma = distance.masked_fill(distance == 0, float("nan")).nanmedian(1).values.clamp_min(1e-6)
        B, r = z.shape[0], z.shape[-1]
        omega = torch.randn(B, r, self.n_fourier, generator=generator).to(z) / (self.bandwidth * sigma.view(B, 1, 1))
        phase = (2 * math.pi * torch.rand(B, 1, self.n_fourier, generator=generator)).to(z)
        inputs = _FourierInputs(linear.scale, linear.shift, linear.basis, {}, linear.low, linear.high, omega, phase)
        inputs.sets = {name: inputs.embed(x) for name, x in {"pool": pool_x, **(extra or {})}.items()}
        return inputs
