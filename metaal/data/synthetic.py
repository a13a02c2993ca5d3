"""Synthetic classification tasks: a meta-training source that shares no data with any target.

Each episode is a fresh random task (in the spirit of sklearn's make_classification and of
ImitAL's synthetic training tasks): every class is a mixture of 1-3 Gaussian clusters with
random centres and covariances in `d_informative` dimensions, padded with pure-noise
dimensions, each column in its own random unit, with a random share of label noise.
Separation, cluster count, noise and dimension vary from task to task, so a policy meta-
trained on them sees easy and hard, linear and multi-modal, clean and noisy tasks.

`shape="regions"` is a second family, one a linear head cannot fit: inputs of uniform density
in a cube, the cube cut into random Voronoi cells (2-4 per class), each cell one class. Its
classes are unions of regions with no dense core, the kind of task where uncertainty sampling
keeps querying one stretch of boundary and batch-diverse strategies win.

The sampler has EpisodeSampler's interface (`sample`, `sample_batch`): the same seed gives
the same task. Episodes of one batch share their dimension (drawn from the batch's first
seed), so they stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence, Sized
from dataclasses import fields

import numpy as np
import torch

from metaal.data.episodes import Episode, EpisodeSpec
from metaal.device import resolve_device
from metaal.errors import InputError

SHAPES = ("mixture", "regions")
# the source names that select this sampler in a meta-training config, and the shape each draws
SYNTHETIC_SOURCES = {"synthetic": "mixture", "synthetic_regions": "regions"}
SYNTHETIC = "synthetic"  # the Gaussian-mixture source, the first of them


class SyntheticTaskSampler:
    """Episodes of `spec` from random tasks of one `shape`: Gaussian mixtures or Voronoi regions."""

    def __init__(self, spec: EpisodeSpec, dims: Sequence[int] = (2, 4, 8, 16, 32),
                 separation: tuple[float, float] = (0.5, 3.0), label_noise: tuple[float, float] = (0.0, 0.2),
                 max_clusters_per_class: int = 3, shape: str = "mixture", device: str | torch.device = "cpu"):
        if shape not in SHAPES:
            raise InputError(f"unknown synthetic task shape {shape!r}; choose from {SHAPES}")
        if not dims or min(dims) < 1:
            raise InputError(f"dims must be positive dimensions; got {dims}")
        if not 0 <= label_noise[0] <= label_noise[1] < 1 or not 0 < separation[0] <= separation[1]:
            raise InputError(f"need 0 <= label_noise low <= high < 1 and 0 < separation low <= high; "
                             f"got label_noise={label_noise}, separation={separation}")
        self.spec, self.dims, self.separation, self.label_noise = spec, tuple(dims), separation, label_noise
        self.max_clusters, self.shape = max_clusters_per_class, shape
        self.device = resolve_device(device)

    def _task(self, seed: int, d: int) -> tuple[np.ndarray, ...]:
        rng = np.random.default_rng(seed)
        s, n = self.spec, self.spec.n_ways
        informative = int(rng.integers(min(d, 2), d + 1))
        draw_informative = (self._mixture if self.shape == "mixture" else self._regions)(rng, informative)
        units = np.exp(rng.normal(0, 1, size=d))  # every column in its own unit, as in real tables
        flip = rng.uniform(*self.label_noise)

        def draw(per_class: int) -> tuple[np.ndarray, np.ndarray]:
            x = np.concatenate([draw_informative(per_class), rng.normal(size=(n, per_class, d - informative))], -1)
            y = np.repeat(np.arange(n)[:, None], per_class, 1)
            noisy = rng.random(y.shape) < flip
            y[noisy] = rng.integers(0, n, size=int(noisy.sum()))
            return x * units, y

        train_x, train_y = draw(s.train_per_class)
        eval_x, eval_y = draw(s.eval_per_class)
        # The initial labels keep their true class, so every class starts with a labeled sample.
        labeled_x = train_x[:, :s.initial_per_class].reshape(-1, d)
        labeled_y = np.repeat(np.arange(n), s.initial_per_class)
        order = s.pool_slots().numpy()[rng.permutation(s.pool_size)]
        pool_x = train_x.reshape(-1, d)[order]
        pool_y = train_y.reshape(-1)[order]
        return labeled_x, labeled_y, pool_x, pool_y, eval_x.reshape(-1, d), eval_y.reshape(-1)

    def _mixture(self, rng: np.random.Generator, informative: int):
        """A draw of (n, per_class, informative) points: each class a mixture of Gaussian clusters."""
        n = self.spec.n_ways
        clusters = int(rng.integers(1, self.max_clusters + 1))
        centres = rng.normal(0, rng.uniform(*self.separation), size=(n, clusters, informative))
        mixing = rng.normal(0, 1, size=(n, clusters, informative, informative)) / np.sqrt(informative)
        mixing *= rng.uniform(0.5, 1.5, size=(n, clusters, 1, 1))

        def draw(per_class: int) -> np.ndarray:
            which = rng.integers(0, clusters, size=(n, per_class))
            z = rng.normal(size=(n, per_class, informative))
            cls = np.arange(n)[:, None]
            return centres[cls, which] + np.einsum("cpi,cpij->cpj", z, mixing[cls, which])
        return draw

    def _regions(self, rng: np.random.Generator, informative: int):
        """A draw of (n, per_class, informative) points: uniform in [-2, 2]^informative, the cube
        cut into Voronoi cells, each cell one class (every class at least one cell)."""
        n = self.spec.n_ways
        cells = int(rng.integers(2 * n, 4 * n + 1))
        centres = rng.uniform(-2, 2, size=(cells, informative))
        cell_class = np.concatenate([rng.permutation(n), rng.integers(0, n, size=cells - n)])

        def draw(per_class: int) -> np.ndarray:
            taken = [np.empty((0, informative))] * n
            while min(len(t) for t in taken) < per_class:  # rejection sampling: a small cell takes longer
                x = rng.uniform(-2, 2, size=(4 * n * per_class, informative))
                label = cell_class[((x[:, None] - centres) ** 2).sum(-1).argmin(1)]
                taken = [np.concatenate([t, x[label == c]])[:per_class] for c, t in enumerate(taken)]
            return np.stack(taken)
        return draw

    def check_batch(self, count: int) -> None:
        """Refuse `count` episodes at once whose inputs alone exceed the memory available."""
        self.spec.check_batch_memory(count, max(self.dims))

    def sample_batch(self, seeds: Iterable[int]) -> Episode:
        if isinstance(seeds, Sized):  # before a billion seeds are listed
            self.check_batch(len(seeds))
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise InputError("sample_batch needs at least one seed")
        d = self.dims[int(np.random.default_rng([seeds[0], 1]).integers(len(self.dims)))]
        parts = list(zip(*(self._task(s, d) for s in seeds)))

        def stack(i: int, dtype: torch.dtype) -> torch.Tensor:
            return torch.as_tensor(np.stack(parts[i]), dtype=dtype, device=self.device)

        B, n = len(seeds), self.spec.n_ways
        no_index = lambda size: torch.full((B, size), -1, dtype=torch.int64, device=self.device)  # noqa: E731
        return Episode(classes=torch.arange(n, device=self.device).expand(B, n).contiguous(),
                       labeled_x=stack(0, torch.float32), labeled_y=stack(1, torch.int64),
                       pool_x=stack(2, torch.float32), pool_y=stack(3, torch.int64),
                       eval_x=stack(4, torch.float32), eval_y=stack(5, torch.int64),
                       # there is no dataset behind a synthetic task to index into
                       labeled_index=no_index(n * self.spec.initial_per_class),
                       pool_index=no_index(self.spec.pool_size),
                       eval_index=no_index(n * self.spec.eval_per_class))

    def sample(self, seed: int) -> Episode:
        batch = self.sample_batch([seed])
        return Episode(**{f.name: getattr(batch, f.name)[0] for f in fields(Episode)})
