"""Statistics for a benchmark of many cells: paired p-values, Holm's correction over every
comparison of a table, average ranks, and critical-difference diagrams (Demsar 2006).

    p = [paired_p_value(policy_aulc, margin_aulc) for each cell]
    p_adjusted = holm(p)                                   # controls the family-wise error rate
    ranks = average_ranks(scores)                          # scores: (cells, strategies), higher is better
    plot_cd_diagram(names, ranks, critical_difference(len(names), len(scores)), "cd.png")
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats

from metaal.errors import InputError


def paired_p_value(a, b) -> float:
    """Two-sided Wilcoxon signed-rank p-value of per-seed values `a` against `b` (seed s with
    seed s): no normality assumed. 1.0 when every pair is equal.

    Exact for up to 50 pairs without ties or zero differences; otherwise the normal
    approximation with the tie and zero corrections (the exact null distribution does not hold
    with ties). Chosen here rather than by scipy's "auto", whose choice differs between
    versions (1.13 stays exact with ties, later versions do not)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0 or not np.isfinite(a - b).all():
        raise InputError(f"paired_p_value needs two equal-length, finite 1-D arrays; got shapes {a.shape}, {b.shape}")
    d = a - b
    if not d.any():
        return 1.0
    magnitudes = np.abs(d)
    exact = d.size <= 50 and magnitudes.all() and np.unique(magnitudes).size == d.size
    method = "exact" if exact else "approx"
    return float(stats.wilcoxon(d, zero_method="wilcox", alternative="two-sided", method=method).pvalue)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input order: reject where adjusted <= alpha,
    and the chance of any false rejection among all of them stays <= alpha."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    adjusted = np.maximum.accumulate((len(p) - np.arange(len(p))) * p[order]).clip(max=1.0)
    result = np.empty_like(p)
    result[order] = adjusted
    return result.tolist()


def average_ranks(scores) -> np.ndarray:
    """(strategies,) mean rank over blocks (rows) of `scores` (blocks, strategies); rank 1 is the
    highest score; ties share the mean of their ranks."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or not np.isfinite(scores).all():
        raise InputError(f"average_ranks needs a finite (blocks, strategies) array, got shape {scores.shape}")
    return stats.rankdata(-scores, axis=1).mean(0)


def critical_difference(n_strategies: int, n_blocks: int, alpha: float = 0.05) -> float:
    """The Nemenyi test's critical difference of average ranks: two strategies whose average
    ranks differ by less are not significantly different at level alpha."""
    q = stats.studentized_range.ppf(1 - alpha, n_strategies, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(n_strategies * (n_strategies + 1) / (6 * n_blocks)))


def friedman_p_value(scores) -> float:
    """Friedman's test that all strategies rank alike over the blocks (rows) of `scores`."""
    scores = np.asarray(scores, dtype=float)
    if scores.shape[0] < 2 or scores.shape[1] < 3:
        return math.nan
    return float(stats.friedmanchisquare(*scores.T).pvalue)


def plot_cd_diagram(names: Sequence[str], ranks, cd: float, path, title: str = "") -> None:
    """A critical-difference diagram: strategies on an axis of average rank (best at left), and a
    bar joining each group whose ranks lie within `cd` of each other."""
    from matplotlib.figure import Figure  # no pyplot: a user's notebook keeps its backend

    ranks = np.asarray(ranks, dtype=float)
    order = np.argsort(ranks, kind="stable")
    k = len(names)
    fig = Figure(figsize=(8, 1.2 + 0.28 * k))
    ax = fig.subplots()
    ax.set_xlim(1, max(k, 2))
    ax.set_ylim(0, k + 2.6)
    ax.set_yticks([])
    ax.set_xlabel("average rank (1 = best)")
    for row, i in enumerate(order):
        y = k - row
        ax.plot([ranks[i], ranks[i]], [y, k + 1], color="0.6", lw=0.8)
        ax.text(ranks[i], y, f" {names[i]} ({ranks[i]:.2f})", va="center", fontsize=8)
    for level, (lo, hi) in enumerate(_cliques(ranks[order], cd)):
        ax.plot([ranks[order][lo], ranks[order][hi]], [k + 1.3 + 0.15 * level] * 2, color="k", lw=2.5)
    shown = min(cd, max(k, 2) - 1)  # a CD wider than the axis is drawn to its end
    ax.plot([1, 1 + shown], [k + 1.9] * 2, color="tab:red", lw=2)
    ax.text(1 + shown / 2, k + 2.1, f"CD = {cd:.2f}", ha="center", fontsize=8, color="tab:red")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _cliques(sorted_ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs [lo, hi] of sorted ranks spanning less than cd (groups not told apart)."""
    runs = []
    for lo in range(len(sorted_ranks)):
        hi = int(np.searchsorted(sorted_ranks, sorted_ranks[lo] + cd, side="left")) - 1
        if hi > lo and not any(a <= lo and hi <= b for a, b in runs):
            runs.append((lo, hi))
    return runs
