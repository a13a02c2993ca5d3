"""The policies that ship inside metaal (metaal/policies/NAME.pt), loaded by name.

A policy is meta-trained for one learner: the features it reads (margin, BALD, distances in the
embedding) mean different things under a linear head and a kernel head. Each shipped policy
records its learner in its checkpoint; `metaal.policy.matched_policy` picks the one matched to
the learner in use, and `metaal policies` lists them. Each entry names the shipped config
(metaal/configs/) that trains it and one line of its benchmark result.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from metaal.errors import CheckpointError, InputError

POLICY_DIR = Path(__file__).resolve().parent / "policies"


@dataclass(frozen=True)
class ShippedPolicy:
    name: str
    purpose: str    # what it is for, in one line
    config: str     # the shipped config that trains it: metaal/configs/<config>.yaml
    sha256: str     # of the file as shipped: a damaged or swapped file is refused
    benchmark: str  # one line of its benchmark result, with the seeds it was measured on

    @property
    def path(self) -> Path:
        return POLICY_DIR / f"{self.name}.pt"

    @property
    def command(self) -> str:
        return f"metaal meta-train --config {self.config} --data-root ../shared/data"


SHIPPED: dict[str, ShippedPolicy] = {p.name: p for p in (
    ShippedPolicy(
        name="linear",
        purpose="for a linear head: metaal's logreg, or your own network's last linear layer on its embedding",
        config="default",
        sha256="cfe0f2ebbe87bdc3acedfd2997388596bf96c61577eb72d1ac3d756ed72a63f2",
        benchmark="benchmark grid, logistic head, report seeds 30000-30049, 61 cells: above margin in every regime "
                  "(+0.0029 to +0.0080 AULC), significantly above in 8 cells, below in none (Holm)"),
    ShippedPolicy(
        name="kernel",
        purpose="for a kernel head (rff_logreg: logistic regression on random Fourier features), classes a "
                "linear head cannot separate, large rounds",
        config="kernel",
        sha256="eb3b435d80db1361da975e1ec83f961e78e71d7c6b989b41e4667e3761fd010c",
        benchmark="48 tabular cells, kernel head, seeds 50000-50049: +0.0236 AULC over margin (17 cells "
                  "significantly above, none below, Holm), +0.0069 over BADGE; +0.0239 on seeds 60000-60049"),
)}

# The policy a run uses when it names none and its learner is the default one (logreg).
DEFAULT_POLICY = "linear"


def is_policy_name(text) -> bool:
    return isinstance(text, str) and text in SHIPPED


def policy_file(name_or_path: str | os.PathLike, error: type[Exception] = CheckpointError) -> Path:
    """The checkpoint file of a shipped policy's name, or the path given. A shipped file that is
    missing or not the one shipped is refused (a broken install), and so is a path that does
    not exist, with the shipped names listed; `error` is the exception raised."""
    if is_policy_name(name_or_path):
        return _shipped_file(SHIPPED[name_or_path], error)
    path = Path(name_or_path)
    if not path.is_file():
        raise error(f"no policy checkpoint at {path}, and no shipped policy is named {str(name_or_path)!r}; "
                              f"shipped: {', '.join(SHIPPED)} (`metaal policies` describes them)")
    return path


def _shipped_file(policy: ShippedPolicy, error: type[Exception]) -> Path:
    if not policy.path.is_file():
        raise error(f"the shipped policy {policy.name!r} is missing from this metaal install "
                              f"({policy.path}); reinstall metaal (pip install --force-reinstall metaal), or pass "
                              "the path of a policy.pt instead of its name")
    digest = hashlib.sha256(policy.path.read_bytes()).hexdigest()
    if digest != policy.sha256:
        raise error(f"the shipped policy {policy.name!r} at {policy.path} is damaged or was replaced "
                              f"(sha256 {digest[:12]}..., shipped {policy.sha256[:12]}...); reinstall metaal")
    return policy.path


def shipped(name: str) -> ShippedPolicy:
    if not is_policy_name(name):
        raise InputError(f"no shipped policy is named {name!r}; shipped: {', '.join(SHIPPED)}")
    return SHIPPED[name]
