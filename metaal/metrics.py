"""Evaluation metrics for active-learning learning curves.

A learning curve is the test accuracy after rounds 0..T, measured at `n_labeled` labels
(length T+1). Strategies are scored by the normalised area under that curve (AULC) and
compared seed by seed (paired), since every strategy runs on the same seeds.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from metaal.errors import InputError

CSV_COLUMNS = ("strategy", "seed", "round", "n_labeled", "accuracy")
DEFAULT_BASELINES = ("margin", "entropy", "random")


def _array(x, dtype=float) -> np.ndarray:
    # Torch tensors may live on a GPU or require grad; np.asarray would refuse those.
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _std(x: np.ndarray, axis=0) -> np.ndarray:
    # Sample std across seeds; a single seed has no spread to estimate, so report 0.
    return np.std(x, axis=axis, ddof=1) if x.shape[axis] > 1 else np.zeros_like(x.sum(axis=axis))


def aulc(accuracy, n_labeled) -> np.ndarray | float:
    """Normalised area under the learning curve, in [0, 1] for accuracies in [0, 1].

    Trapezoid rule over the label axis divided by its width (n_T - n_0), so uneven label
    steps are weighted by their size. `accuracy` has shape (..., T+1) and the result shape
    (...); a single-point curve (T=0) scores its only accuracy.
    """
    acc, n = _array(accuracy), _array(n_labeled)
    if n.ndim != 1 or n.size == 0:
        raise InputError(f"n_labeled must be a non-empty 1-D sequence, got shape {n.shape}")
    if acc.ndim == 0 or acc.shape[-1] != n.size:
        raise InputError(f"accuracy shape {acc.shape} does not end in len(n_labeled) = {n.size}")
    if np.any(np.diff(n) <= 0):
        raise InputError(f"n_labeled must be strictly increasing, got {n.tolist()}")
    if np.isnan(acc).any():
        where = np.argwhere(np.isnan(acc)).tolist()
        raise InputError(f"accuracy contains NaN at index {where[0]} ({len(where)} NaN in all)")
    # The trapezoid rule written out (np.trapezoid, in this order of operations, is numpy >= 2 only).
    area = acc[..., 0] if n.size == 1 else (np.diff(n) * (acc[..., 1:] + acc[..., :-1]) / 2.0).sum(-1) / (n[-1] - n[0])
    return float(area) if np.ndim(area) == 0 else area


@dataclass(frozen=True)
class PairedComparison:
    """Strategy minus baseline AULC over shared seeds, with a 95% t interval."""

    strategy: str
    baseline: str
    n_seeds: int
    mean_difference: float
    ci_low: float
    ci_high: float
    wins: int
    ties: int
    losses: int

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def paired_comparison(a, b, strategy: str, baseline: str, tie_tolerance: float = 0.001) -> PairedComparison:
    """Compare per-seed AULCs `a` (strategy) against `b` (baseline), seed s with seed s.

    The 95% confidence interval of the mean difference uses Student's t with n-1 degrees
    of freedom; with one seed it is (nan, nan). A difference of at most `tie_tolerance`
    (default 0.001, i.e. 0.1 accuracy points of AULC) counts as a tie.
    """
    a, b = _array(a), _array(b)
    if a.ndim != 1 or b.ndim != 1 or a.size != b.size or a.size == 0:
        raise InputError(f"{strategy} vs {baseline}: need two non-empty 1-D per-seed arrays of "
                         f"equal length, got shapes {a.shape} and {b.shape}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise InputError(f"{strategy} vs {baseline}: per-seed AULC contains NaN")
    d = a - b
    n, mean = d.size, float(d.mean())
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1) * d.std(ddof=1) / math.sqrt(n))
        low, high = mean - half, mean + half
    else:
        low = high = math.nan
    wins, ties = int(np.sum(d > tie_tolerance)), int(np.sum(np.abs(d) <= tie_tolerance))
    return PairedComparison(strategy, baseline, n, mean, low, high, wins, ties, n - wins - ties)


@dataclass(eq=False)  # numpy fields make the generated __eq__ ambiguous
class Curves:
    """Learning curves: strategy name -> accuracy (n_seeds, T+1), shared seeds and label counts."""

    accuracy: dict[str, np.ndarray]
    n_labeled: np.ndarray
    seeds: np.ndarray

    def __post_init__(self):
        # Label counts and seeds are integers; refuse 5.5 rather than silently truncating it.
        for field in ("n_labeled", "seeds"):
            value = _array(getattr(self, field))
            if not np.array_equal(value, np.round(value)):
                raise InputError(f"{field} must hold integers, got {value.tolist()}")
            setattr(self, field, value.astype(np.int64))
        self.accuracy = {name: _array(acc) for name, acc in self.accuracy.items()}
        if self.n_labeled.ndim != 1 or self.seeds.ndim != 1:
            raise InputError("n_labeled and seeds must be 1-D")
        expected = (self.seeds.size, self.n_labeled.size)
        for name, acc in self.accuracy.items():
            if acc.shape != expected:
                raise InputError(f"strategy {name!r}: accuracy shape {acc.shape}, "
                                 f"expected (seeds, rounds) = {expected}")


def summarize(curves: Curves, reference: str | Sequence[str] | None = None, tie_tolerance: float = 0.001) -> dict:
    """Per-strategy AULC statistics and paired comparisons, as a JSON-ready dict.

    `reference` chooses the comparisons:
    - a single name R (e.g. "policy"): R (as `strategy`) against every other strategy (as `baseline`);
    - a sequence of names: every strategy S against each named baseline B, for S != B;
    - None: as a sequence of "margin", "entropy", "random", keeping those present.
    """
    scores = {name: np.atleast_1d(aulc(acc, curves.n_labeled)) for name, acc in curves.accuracy.items()}
    if isinstance(reference, str):
        if reference not in scores:
            raise InputError(f"reference strategy {reference!r} not among {list(scores)}")
        pairs = [(reference, other) for other in scores if other != reference]
    else:
        if reference is None:
            baselines = [b for b in DEFAULT_BASELINES if b in scores]
        else:
            baselines = list(reference)
            missing = [b for b in baselines if b not in scores]
            if missing:
                raise InputError(f"reference strategies {missing} not among {list(scores)}")
        pairs = [(s, b) for b in baselines for s in scores if s != b]
    return {
        "n_seeds": int(curves.seeds.size),
        "n_labeled": curves.n_labeled.tolist(),
        "strategies": {
            name: {
                "aulc_mean": float(score.mean()),
                "aulc_std": float(_std(score)),
                "aulc_per_seed": score.tolist(),
                "final_accuracy_mean": float(curves.accuracy[name][:, -1].mean()),
            }
            for name, score in scores.items()
        },
        "comparisons": [paired_comparison(scores[s], scores[b], s, b, tie_tolerance).to_dict() for s, b in pairs],
    }


def summary_markdown(summary: dict, baselines: Sequence[str] = ("random", "margin")) -> str:
    """A markdown table of a `summarize` result, best AULC first: mean +- std, final accuracy,
    and for each baseline the mean paired AULC difference [95% CI] and wins/ties/losses."""
    found = {(c["strategy"], c["baseline"]): c for c in summary["comparisons"]}
    head = ["strategy", "AULC", "final acc."]
    for b in baselines:
        head += [f"Δ AULC vs {b} [95% CI]", f"W/T/L vs {b}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    ranked = sorted(summary["strategies"].items(), key=lambda kv: -kv[1]["aulc_mean"])
    for name, st in ranked:
        row = [name, f"{st['aulc_mean']:.4f} ± {st['aulc_std']:.4f}", f"{st['final_accuracy_mean']:.4f}"]
        for b in baselines:
            c = found.get((name, b))
            if c is None:
                row += ["", ""]
            else:
                row += [f"{c['mean_difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]",
                        f"{c['wins']}/{c['ties']}/{c['losses']}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_curves_csv(curves: Curves, path) -> None:
    """One row per (strategy, seed, round), columns `strategy,seed,round,n_labeled,accuracy`."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for name, acc in curves.accuracy.items():
            for i, seed in enumerate(curves.seeds.tolist()):
                for t, n in enumerate(curves.n_labeled.tolist()):
                    writer.writerow([name, seed, t, n, repr(float(acc[i, t]))])  # repr round-trips exactly


def read_curves_csv(path) -> Curves:
    """Read what write_curves_csv wrote; strategies and seeds keep their file order."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}; expected {','.join(CSV_COLUMNS)}")
        cells = {}  # (strategy, seed, round) -> (n_labeled, accuracy)
        for line, row in enumerate(reader, start=2):
            try:
                key = (row["strategy"], int(row["seed"]), int(row["round"]))
                value = (int(row["n_labeled"]), float(row["accuracy"]))
            except (TypeError, ValueError) as e:
                raise InputError(f"{path}: line {line}: bad row {row}: {e}") from None
            if key in cells:
                raise InputError(f"{path}: line {line}: duplicate row for {key}")
            cells[key] = value
    strategies = list(dict.fromkeys(k[0] for k in cells))
    seeds = list(dict.fromkeys(k[1] for k in cells))
    rounds = sorted({k[2] for k in cells})
    # No duplicates, so the row count matches the full grid only if every cell is present.
    if not cells or rounds != list(range(len(rounds))) or len(cells) != len(strategies) * len(seeds) * len(rounds):
        raise InputError(f"{path}: not a full table of {len(strategies)} strategies x {len(seeds)} seeds "
                         f"x rounds 0..T (found {len(cells)} rows, rounds {rounds})")
    n_labeled = [cells[(strategies[0], seeds[0], t)][0] for t in rounds]
    if any(cells[k][0] != n_labeled[k[2]] for k in cells):
        raise InputError(f"{path}: n_labeled differs between rows of the same round")
    accuracy = {name: np.array([[cells[(name, s, t)][1] for t in rounds] for s in seeds]) for name in strategies}
    return Curves(accuracy=accuracy, n_labeled=np.array(n_labeled), seeds=np.array(seeds))


def _nan_to_none(x):
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    if isinstance(x, float) and math.isnan(x):
        return None
    return x


def write_summary_json(summary: dict, path) -> None:
    """Write `summary` as indented JSON; NaN becomes null because NaN is not valid JSON."""
    with open(path, "w") as f:
        json.dump(_nan_to_none(summary), f, indent=2, allow_nan=False)
        f.write("\n")


def plot_learning_curves(curves: Curves, path, title: str | None = None) -> None:
    """Mean accuracy over seeds vs labels per strategy, with a ±1 std band; saved as PNG."""
    # A bare Figure with the Agg canvas: no pyplot global state, works without a display.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    n = curves.n_labeled
    for name, acc in curves.accuracy.items():
        mean, std = acc.mean(axis=0), _std(acc)
        score = np.mean(aulc(acc, n))
        (line,) = ax.plot(n, mean, marker="o", markersize=3, label=f"{name} (AULC {score:.3f})")
        ax.fill_between(n, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("labeled samples")
    ax.set_ylabel("test accuracy")
    if title:
        ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    fig.clear()  # free the artists now; the Figure is not registered with pyplot
