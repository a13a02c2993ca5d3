"""The query policy: a network from per-sample features to scores, its use as a strategy,
and its checkpoints.

The network scores each pool sample from its feature vector (features.SCHEMA, predictive
entropy included). With `context`, it also sees a pooled summary of the whole unlabeled
pool (the mean of the per-sample encodings), so it can weigh a sample against the others
(prefer typical samples early, uncertain ones later). A linear path from the features to the
score lets it express the classic heuristics (margin, entropy) from the start.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import pickle
import re
import sys
from pathlib import Path

import torch
from torch import nn

from metaal.device import resolve_device
from metaal.errors import CheckpointError, InputError
from metaal.features import SCHEMA, FeatureSchema
from metaal.learners import LEARNERS, learner_spec
from metaal.strategies import QueryContext, Strategy
from metaal.version import __version__
from metaal.zoo import DEFAULT_POLICY, SHIPPED, is_policy_name, policy_file

CHECKPOINT_FORMAT = "metaal-policy"
CHECKPOINT_VERSION = 1
# Network options metaal had and removed, tried and not kept (RESEARCH_LOG.md): a checkpoint
# that sets one is refused by name, not loaded as a different network.
REMOVED_HPARAMS = {"attention": "pool_attention"}
# Feature schemas, by version, metaal had and removed, tried and not kept (RESEARCH_LOG.md): a
# checkpoint trained on one is refused by name. Their version numbers are not reused.
REMOVED_SCHEMAS = {2: "schema_v2"}


class PolicyLoadError(CheckpointError):
    """A file that is not a usable policy checkpoint for this metaal."""


class PolicyNet(nn.Module):
    def __init__(self, n_features: int = len(SCHEMA.names), hidden: int = 64, context: bool = True):
        super().__init__()
        self.hparams = {"n_features": n_features, "hidden": hidden, "context": context}
        self.encode = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(hidden * (2 if context else 1), hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.linear = nn.Linear(n_features, 1)

    @property
    def schema(self) -> FeatureSchema:
        """The feature schema the network reads: features.SCHEMA, if it has as many inputs."""
        if self.hparams["n_features"] != len(SCHEMA.names):
            raise InputError(f"a network of {self.hparams['n_features']} features reads no feature schema of this "
                             f"metaal (v{SCHEMA.version} has {len(SCHEMA.names)})")
        return SCHEMA

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

        The pooled context is the mean encoding of the pool: of its available samples when the
        whole pool is here, else of `context_features` (B, R, F), the features of a reference
        subset standing in for a pool that is scored in batches."""
        if features.shape[-1] != self.hparams["n_features"]:
            raise InputError(f"the policy expects {self.hparams['n_features']} features per sample, "
                             f"got {features.shape[-1]}")
        h = self.encode(features)
        if self.hparams["context"]:
            if context_features is None:
                pool, keep = h, available
            else:
                pool = self.encode(context_features)
                keep = torch.ones(pool.shape[:2], dtype=torch.bool, device=pool.device)
            weight = keep.unsqueeze(-1).to(h.dtype)  # (B, R, 1)
            pooled = (pool * weight).sum(1, keepdim=True) / weight.sum(1, keepdim=True).clamp_min(1)
            h = torch.cat([h, pooled.expand_as(h)], -1)
        return self.head(h).squeeze(-1) + self.linear(features).squeeze(-1)

    def score(self, ctx: QueryContext) -> torch.Tensor:
        """(B, m) scores of a query context: the one path from a context to the network, for
        training rollouts, evaluation and deployment alike. Checks the context's feature
        schema, and runs on the network's device."""
        if ctx.schema != SCHEMA:
            raise InputError(f"the context holds feature schema v{ctx.schema.version}; this metaal computes "
                             f"v{SCHEMA.version}")
        device = next(self.parameters()).device
        context = None if ctx.context_features is None else ctx.context_features.to(device)
        return self(ctx.features.to(device), ctx.available.to(device), context).to(ctx.features.device)


class PolicyStrategy(Strategy):
    """A frozen policy as a query strategy. `sequential` (the default): pick a round's k one at
    a time, each pick counted as labeled (with its predicted class) in the features the next
    one is scored on (ctx.refeature), so a round cannot pile into one class or cluster;
    `sequential=False`: label the k highest-scored samples at once (top-k, what meta-training's
    rollouts and validation use). `info` holds what the checkpoint records: its path, config,
    and the tasks and learner it was trained with."""

    name = "policy"

    def __init__(self, net: PolicyNet, info: dict | None = None, sequential: bool = True):
        self.net, self.info, self.sequential = net.eval(), info or {}, sequential

    @property
    def schema(self) -> FeatureSchema:
        return self.net.schema

    @property
    def selects_jointly(self) -> bool:
        return self.sequential

    def score(self, ctx: QueryContext) -> torch.Tensor:
        with torch.inference_mode():
            return self.net.score(ctx)

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        if not self.sequential or ctx.refeature is None:
            return super().select(ctx, k)
        return sequential_picks(self.score, ctx, k)


def after_picks(ctx: QueryContext, picks: torch.Tensor) -> QueryContext:
    """The context with the pool samples `picks` (B, j) counted as labeled, each with its
    predicted class: their features refeatured, and they are no longer available."""
    if picks.shape[1] == 0:
        return ctx
    rows = torch.arange(picks.shape[0], device=picks.device)[:, None]
    available = ctx.available.clone()
    available[rows, picks] = False
    return dataclasses.replace(ctx, features=ctx.refeature(picks), available=available)


def sequential_picks(score, ctx: QueryContext, k: int) -> torch.Tensor:
    """(B, k) a round's picks one at a time: each the best `score(context)` of the samples still
    available, then counted as labeled (after_picks) before the next is scored."""
    picks = torch.empty(ctx.available.shape[0], 0, dtype=torch.int64, device=ctx.available.device)
    for _ in range(k):
        step = after_picks(ctx, picks)
        with torch.no_grad():
            pick = score(step).masked_fill(~step.available, float("-inf")).argmax(1, keepdim=True)
        picks = torch.cat([picks, pick], 1)
    return picks


# ---------------------------------------------------------------------------- checkpoints

def save_policy(net: PolicyNet, path: str | os.PathLike, config: dict | None = None,
                info: dict | None = None, tasks: dict | None = None, learner: dict | None = None) -> None:
    """Write a policy checkpoint (atomically: a crash mid-write leaves the old file intact).
    `tasks` ({"sources": [TaskSpec dicts], "validation": TaskSpec dict}) and `learner` (its
    full spec) record what the policy was trained on, for evaluation to read back."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "metaal_version": __version__,
        "feature_schema": net.schema.to_dict(),
        "hparams": dict(net.hparams),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "config": config or {},
        "info": info or {},
        "tasks": tasks or {},
        "learner": learner or {},
    }
    atomic_save(payload, path)


def atomic_save(obj, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str | os.PathLike, what: str, map_location="cpu", error=CheckpointError) -> dict:
    """A checkpoint's dict, through `torch.load(weights_only=True)`: tensors and plain data
    only, never code. Any file that is not such a dict raises `error`, naming the path."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL ([\w.]+)", str(e))  # weights_only refused a global: the file asks to run code
        if refused:
            raise error(f"{path} asks to load the Python object {refused.group(1)}, beyond tensors and plain data; "
                        f"refused without running anything. It is not a {what} this metaal wrote") from e
        raise error(f"{path} is not a readable {what} (truncated or not a torch file?)") from e
    except Exception as e:  # torch.load fails on foreign bytes with anything from KeyError to EOFError
        raise error(f"{path} is not a readable {what} (truncated or not a torch file?): "
                    f"{type(e).__name__}: {str(e)[:200]}") from e
    if not isinstance(payload, dict):
        raise error(f"{path} holds a {type(payload).__name__}, not a {what}")
    return payload


# How a policy picks a round's k: "sequential" (the default, one at a time, each pick counted as
# labeled before the next is scored) or "top-k" (the k highest scores at once).
SELECTIONS = ("sequential", "top-k")

_POLICY_KEYS = ("format", "format_version", "metaal_version", "feature_schema", "hparams", "state_dict")


def load_policy(name_or_path: str | os.PathLike, device: str | torch.device = "auto",
                sequential: bool = True) -> PolicyStrategy:
    """Load a frozen policy as a query strategy: a shipped policy by name (`metaal policies`
    lists them: "linear", "kernel") or a checkpoint file by path. `sequential`: pick a round's k
    one at a time, the default; False: top-k (see PolicyStrategy). Refuses, with a
    PolicyLoadError that says why, any file that is not a complete, finite policy checkpoint of
    this metaal."""
    path = policy_file(name_or_path, error=PolicyLoadError)
    payload = read_checkpoint(path, "policy checkpoint", error=PolicyLoadError)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise PolicyLoadError(f"{path} is a torch file but not a metaal policy checkpoint "
                              "(write one with experiments/meta_train.py)")
    if payload.get("format_version") != CHECKPOINT_VERSION:
        raise PolicyLoadError(f"{path} has checkpoint format v{payload.get('format_version')}; this metaal "
                              f"{__version__} reads v{CHECKPOINT_VERSION}")
    missing = [k for k in _POLICY_KEYS if k not in payload]
    if missing:
        raise PolicyLoadError(f"{path} is an incomplete policy checkpoint: it lacks {missing}. Write it again "
                              "with experiments/meta_train.py")
    schema = _checkpoint_schema(path, payload)
    net = _checkpoint_net(path, payload)
    if net.hparams["n_features"] != len(schema.names):
        raise PolicyLoadError(f"{path}: its network reads {net.hparams['n_features']} features, its feature schema "
                              f"v{schema.version} has {len(schema.names)}; the checkpoint is inconsistent, retrain it")
    net.to(resolve_device(device))
    config = payload.get("config", {})
    info = {"path": str(path), "config": config, **payload.get("info", {}), "tasks": payload.get("tasks") or {},
            "learner": payload.get("learner") or _learner_of_old(config)}
    if is_policy_name(name_or_path):  # what trains it, and what it was measured to do
        entry = SHIPPED[name_or_path]
        info["shipped"] = {"name": entry.name, "config": entry.config, "command": entry.command,
                           "benchmark": entry.benchmark, "sha256": entry.sha256}
    return PolicyStrategy(net, info=info, sequential=sequential)


# ---------------------------------------------------------------------------- policy and learner

@functools.cache
def shipped_learner(name: str) -> str | None:
    """The learner a shipped policy was meta-trained with, as its checkpoint records it."""
    payload = read_checkpoint(policy_file(name, error=PolicyLoadError), "policy checkpoint", error=PolicyLoadError)
    return (payload.get("learner") or _learner_of_old(payload.get("config", {}))).get("name")


def matched_policy(learner: str | dict) -> str:
    """The name of the shipped policy meta-trained with this learner (a name or a spec)."""
    name = learner if isinstance(learner, str) else learner["name"]
    for policy in SHIPPED:
        if shipped_learner(policy) == name:
            return policy
    pairs = ", ".join(f"{p} for {shipped_learner(p)}" for p in SHIPPED)
    raise InputError(f"no shipped policy is meta-trained for the learner {name!r} (shipped: {pairs}). Name one "
                     f"anyway with --policy NAME_OR_PATH (policy= in the API), or meta-train one: metaal "
                     f"meta-train --config default --learner.name {name}")


def default_policy(learner: str | dict | None = None) -> str:
    """The policy a run uses when it names none: the shipped one matched to its learner, and for
    no learner given (the default logreg, or a caller's own network with a linear head) `linear`."""
    return DEFAULT_POLICY if learner is None else matched_policy(learner)


def policy_learner(policy: PolicyStrategy) -> dict:
    """The full spec of the learner a policy was meta-trained with; refuses one this metaal
    does not have (a plug-in's learner whose module is not loaded), saying what to do."""
    recorded = policy.info.get("learner") or {"name": "logreg"}
    if recorded.get("name") not in LEARNERS:
        raise InputError(f"the policy {policy.info.get('path')} was meta-trained with the learner "
                         f"{recorded.get('name')!r}, which this metaal does not have (it has {', '.join(LEARNERS)}): "
                         "load the plug-in that registers it (--plugins MODULE), or choose the learner to run it "
                         "with (--learner NAME)")
    return learner_spec(recorded)


def policy_pairing(label: str, policy: PolicyStrategy, learner: dict) -> dict:
    """How a policy and the learner it runs with go together, for a run's summary. A policy
    meta-trained for another learner is warned about on stderr, naming the matched one."""
    own, used = (policy.info.get("learner") or {}).get("name"), learner["name"]
    try:
        matched = matched_policy(used)
    except InputError:
        matched = None
    if own != used:
        hint = (f"the shipped policy for {used} is {matched!r} (name no policy to use it)" if matched
                else f"no shipped policy is meta-trained for {used}")
        print(f"warning: the policy {label!r} was meta-trained with the learner {own}, and runs here with {used}; "
              f"{hint}", file=sys.stderr)
    return {"policy": label, "policy_learner": own, "learner": used, "matched": own == used,
            "matched_policy": matched}


def _learner_of_old(config: dict) -> dict:
    """The learner of a checkpoint written before checkpoints recorded it: the logistic head,
    with the options its config's learner section held."""
    section = config.get("learner") if isinstance(config, dict) else None
    return {"name": "logreg", **section} if isinstance(section, dict) and "name" not in section else {}


def _checkpoint_schema(path: Path, payload: dict) -> FeatureSchema:
    try:
        schema = FeatureSchema(version=payload["feature_schema"]["version"],
                               names=tuple(payload["feature_schema"]["names"]))
    except (KeyError, TypeError) as e:
        raise PolicyLoadError(f"{path}: its feature_schema is malformed ({type(e).__name__}: {e})") from e
    if schema.version in REMOVED_SCHEMAS:
        raise PolicyLoadError(
            f"{path} was trained on feature schema v{schema.version} ({len(schema.names)} features), which this "
            f"metaal {__version__} removed: it was tried and not kept (RESEARCH_LOG.md, row "
            f"{REMOVED_SCHEMAS[schema.version]}). Load it with the metaal of the git tag research-archive, which "
            f"still reads it, or meta-train a policy on v{SCHEMA.version}, the {len(SCHEMA.names)} features this "
            f"metaal computes")
    if schema != SCHEMA:
        raise PolicyLoadError(
            f"{path} was trained on feature schema v{schema.version} {list(schema.names)}, but this metaal "
            f"{__version__} computes v{SCHEMA.version} {list(SCHEMA.names)}. Retrain the policy with this version, "
            f"or install the metaal it was trained with ({payload.get('metaal_version')})."
        )
    return schema


def _checkpoint_net(path: Path, payload: dict) -> PolicyNet:
    hparams = _without_removed(path, payload)
    known = set(inspect.signature(PolicyNet).parameters)
    if not isinstance(hparams, dict) or not set(hparams) <= known:
        unknown = sorted(set(hparams) - known) if isinstance(hparams, dict) else hparams
        raise PolicyLoadError(f"{path} describes a policy network with {unknown}, which this metaal "
                              f"{__version__} does not have (it takes {sorted(known)})")
    try:
        net = PolicyNet(**hparams)
        net.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, ValueError, AttributeError) as e:
        raise PolicyLoadError(f"{path}: the weights do not fit the policy network they describe ({e})") from e
    bad = [name for name, t in net.state_dict().items() if not torch.isfinite(t).all()]
    if bad:
        raise PolicyLoadError(f"{path}: the weights {bad} contain NaN or inf (a diverged training run?); "
                              "use an earlier checkpoint or retrain")
    return net


def _without_removed(path: Path, payload: dict):
    """The checkpoint's hparams without the removed options it leaves off (False: the network is
    the one this metaal builds); refuses one that turns a removed option on."""
    hparams = payload["hparams"]
    if not isinstance(hparams, dict):
        return hparams  # _checkpoint_net names the malformed value
    for name, attempt in REMOVED_HPARAMS.items():
        if hparams.get(name):
            raise PolicyLoadError(
                f"{path} is a policy network with {name}=True, an option this metaal {__version__} removed: it was "
                f"tried and not kept (RESEARCH_LOG.md, row {attempt}). Load it with the metaal of the git tag "
                f"research-archive, which still has it, or meta-train a policy without it")
    return {key: value for key, value in hparams.items() if key not in REMOVED_HPARAMS}
