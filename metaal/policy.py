"""The query policy: a network from per-sample features to scores, its use as a strategy,
and its checkpoints.

The network scores each pool sample from its feature vector (features.SCHEMA, predictive
entropy included). With `context`, it also sees a pooled summary of the whole unlabeled
pool (the mean of the per-sample encodings), so it can weigh a sample against the others
(prefer typical samples early, uncertain ones later). A linear path from the features to
the score lets it express the classic heuristics (margin, entropy) from the start.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from metaal import __version__
from metaal.device import resolve_device
from metaal.errors import MetaalError
from metaal.features import SCHEMA, FeatureSchema
from metaal.strategies import QueryContext, Strategy

CHECKPOINT_FORMAT = "metaal-policy"
CHECKPOINT_VERSION = 1


class PolicyLoadError(MetaalError):
    """A file that is not a usable policy checkpoint for this metaal."""


class PolicyNet(nn.Module):
    def __init__(self, n_features: int = len(SCHEMA.names), hidden: int = 64, context: bool = True):
        super().__init__()
        self.hparams = {"n_features": n_features, "hidden": hidden, "context": context}
        self.encode = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(hidden * (2 if context else 1), hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.linear = nn.Linear(n_features, 1)

    def init_as_heuristic(self, feature: str = "margin", sign: float = -1.0, scale: float = 10.0) -> PolicyNet:
        """Start as a classic heuristic: score = sign * scale * feature, the MLP silent (its
        last layer zero, so it still learns). Meta-training then starts from, e.g., margin
        sampling instead of from arbitrary scores, whose rollouts visit useless states."""
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()
            self.linear.weight[0, SCHEMA.index(feature)] = sign * scale
            self.head[-1].weight.zero_()
            self.head[-1].bias.zero_()
        return self

    def forward(self, features: torch.Tensor, available: torch.Tensor,
                context_features: torch.Tensor | None = None) -> torch.Tensor:
        """features (B, m, F), available (B, m) bool -> scores (B, m), higher = label first.

        The pooled context is the mean encoding of the available samples, or of
        `context_features` (B, R, F) when given: a reference subset standing in for a pool
        that is scored in batches."""
        if features.shape[-1] != self.hparams["n_features"]:
            raise ValueError(f"the policy expects {self.hparams['n_features']} features per sample, "
                             f"got {features.shape[-1]}")
        h = self.encode(features)
        if self.hparams["context"]:
            if context_features is None:
                weight = available.unsqueeze(-1).to(h.dtype)
                pooled = (h * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1)
            else:
                pooled = self.encode(context_features).mean(1, keepdim=True)
            h = torch.cat([h, pooled.expand_as(h)], -1)
        return self.head(h).squeeze(-1) + self.linear(features).squeeze(-1)


class PolicyStrategy(Strategy):
    """A frozen policy as a query strategy: label the k highest-scored samples."""

    name = "policy"

    def __init__(self, net: PolicyNet, schema: FeatureSchema = SCHEMA, info: dict | None = None):
        self.net, self.schema, self.info = net.eval(), schema, info or {}

    def score(self, ctx: QueryContext) -> torch.Tensor:
        if ctx.schema != self.schema:
            raise ValueError(f"the policy reads feature schema v{self.schema.version}; "
                             f"the context holds v{ctx.schema.version}")
        device = next(self.net.parameters()).device
        context = None if ctx.context_features is None else ctx.context_features.to(device)
        with torch.inference_mode():
            return self.net(ctx.features.to(device), ctx.available.to(device), context).to(ctx.features.device)


# ---------------------------------------------------------------------------- checkpoints

def save_policy(net: PolicyNet, path: str | os.PathLike, config: dict | None = None,
                info: dict | None = None) -> None:
    """Write a policy checkpoint (atomically: a crash mid-write leaves the old file intact)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "metaal_version": __version__,
        "feature_schema": SCHEMA.to_dict(),
        "hparams": dict(net.hparams),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "config": config or {},
        "info": info or {},
    }
    atomic_save(payload, path)


def atomic_save(obj, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_policy(path: str | os.PathLike, device: str | torch.device = "auto") -> PolicyStrategy:
    """Load a frozen policy as a query strategy. Only `torch.load(weights_only=True)`: a
    checkpoint can hold tensors and plain data, never code."""
    path = Path(path)
    if not path.is_file():
        raise PolicyLoadError(f"no policy checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch.load fails on foreign bytes with anything from KeyError to EOFError
        raise PolicyLoadError(f"{path} is not a readable checkpoint (truncated or not a torch file?): "
                              f"{type(e).__name__}: {str(e)[:200]}") from e
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise PolicyLoadError(f"{path} is a torch file but not a metaal policy checkpoint "
                              "(write one with experiments/meta_train.py)")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise PolicyLoadError(f"{path} has checkpoint format v{payload.get('format_version')}; this metaal "
                              f"{__version__} reads v{CHECKPOINT_VERSION}")
    schema = FeatureSchema(version=payload["feature_schema"]["version"], names=tuple(payload["feature_schema"]["names"]))
    if schema != SCHEMA:
        raise PolicyLoadError(
            f"{path} was trained on feature schema v{schema.version} {list(schema.names)}, but this metaal "
            f"{__version__} computes v{SCHEMA.version} {list(SCHEMA.names)}. Retrain the policy with this version, "
            f"or install the metaal it was trained with ({payload.get('metaal_version')})."
        )
    net = PolicyNet(**payload["hparams"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as e:
        raise PolicyLoadError(f"{path}: the weights do not fit the policy network they describe ({e})") from e
    net.to(resolve_device(device))
    return PolicyStrategy(net, schema, info={"path": str(path), "config": payload["config"], **payload["info"]})
