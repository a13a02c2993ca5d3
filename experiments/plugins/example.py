"""A worked plug-in: a dataset, a learner and a strategy added to metaal from outside it.

    python experiments/transfer.py --plugins experiments/plugins/example.py --dataset quadrants \
        --strategies density_margin,margin,random --learner nearest_centroid --out runs/plugin_demo

Each decorator registers a name; `--plugins` imports this file before a script reads its
flags or config, so the names work wherever a dataset, learner or strategy is named (a
meta-training config's `data.sources[].dataset` and `learner.name` too). tests/test_plugins.py
runs exactly this.
"""

from __future__ import annotations

import numpy as np
import torch

import metaal
from metaal.features import SCHEMA
from metaal.learners import Prediction


@metaal.register_dataset("quadrants")
def quadrants(data_root) -> metaal.data.Dataset:
    """Four overlapping 2-D Gaussian classes, one per quadrant, plus 3 noise columns; made
    here (data_root unused), 1200 train and 400 test samples."""
    rng = np.random.default_rng(0)

    def draw(n: int):
        y = rng.integers(0, 4, size=n)
        centres = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], dtype=np.float32)
        x = np.concatenate([centres[y] + rng.normal(0, 0.8, size=(n, 2)), rng.normal(0, 1, size=(n, 3))], 1)
        return x.astype(np.float32), y

    (x, y), (x_test, y_test) = draw(1200), draw(400)
    return metaal.make_dataset("quadrants", x, y, x_test, y_test, class_names=("NE", "NW", "SW", "SE"))


@metaal.register_learner("nearest_centroid")
class NearestCentroid:
    """A soft nearest-centroid classifier: p(c | x) = softmax(-|x - mean_c|^2 / temperature),
    batched over episodes like every metaal learner. No members, so no BALD feature."""

    name = "nearest_centroid"
    fixed_embedding = True  # the embedding is the input itself

    def __init__(self, temperature: float = 1.0):
        self.temperature = temperature

    def prepare(self, pool_x, generator=None, extra=None):
        return {"pool": pool_x.flatten(2), **{name: x.flatten(2) for name, x in (extra or {}).items()}}

    def fit(self, prepared, x, y, num_classes, generator=None):
        onehot = torch.nn.functional.one_hot(y, num_classes).float()                  # (B, n, C)
        centroids = onehot.transpose(1, 2) @ x.flatten(2) / onehot.sum(1).clamp_min(1).unsqueeze(-1)
        return _FittedCentroids(centroids, self.temperature, prepared)


class _FittedCentroids:
    def __init__(self, centroids, temperature, sets):
        self.centroids, self.temperature, self.sets = centroids, temperature, sets

    def predict(self, x):
        x = x.flatten(2)
        probs = (-torch.cdist(x, self.centroids).square() / self.temperature).softmax(-1)
        return Prediction(probs=probs, member_probs=None, embedding=x)

    def predict_prepared(self, name="pool"):
        return self.predict(self.sets[name])


@metaal.register_strategy("density_margin")
class DensityMargin(metaal.Strategy):
    """Margin sampling that prefers typical samples: score = -margin + weight * local density,
    read from the per-sample features every strategy sees."""

    def __init__(self, weight: float = 0.5):
        self.weight = weight

    def score(self, ctx):
        features = ctx.features
        return -features[..., SCHEMA.index("margin")] + self.weight * features[..., SCHEMA.index("local_density")]
