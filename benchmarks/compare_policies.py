"""Two strategies of one benchmark grid, paired cell by cell: is an attempt better than the shipped policy?

    python benchmarks/compare_policies.py GRID_DIR --strategy policy_NEW [--against policy] [--replicate OTHER_GRID] \
        [--exclude-targets A,B]

GRID_DIR is a `metaal grid` / benchmarks/transfer_grid.py output folder whose cells ran both
strategies on the same seeds (e.g. with --extra-policy policy_NEW=PATH). For each regime, and
over all cells: the mean over cells of each cell's mean paired AULC difference (strategy minus
against), its 95% t interval over cells, the cells above / tied / below (a tie: within 0.001),
and the Wilcoxon signed-rank p over cells, Holm-adjusted over the regimes. With --replicate, whether
the per-cell differences hold on another grid of the same cells and other seeds. With
--exclude-targets, all of it over the other targets' cells. Writes
GRID_DIR/compare_<strategy>_vs_<against>[_without_A+B].json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from metaal.errors import InputError, exits_cleanly
from metaal.metrics import paired_comparison
from metaal.ranking import holm, paired_p_value


def per_cell_differences(grid: Path, strategy: str, against: str,
                         exclude: Sequence[str] = ()) -> dict[tuple[str, str], float]:
    """(target, regime) -> that cell's mean paired AULC difference, strategy minus against; the
    targets in `exclude` left out (each must be one of the grid's)."""
    cells = sorted((grid / "cells").glob("*.json"))
    if not cells:
        raise InputError(f"{grid} holds no cells/*.json: give the output folder of a finished grid")
    loaded = [json.loads(path.read_text()) | {"file": path.name} for path in cells]
    unknown = sorted(set(exclude) - {cell["target"] for cell in loaded})
    if unknown:
        raise InputError(f"--exclude-targets names {unknown}, which {grid} has no cells of; its targets are "
                         f"{sorted({cell['target'] for cell in loaded})}")
    differences = {}  # the cells a target could not hold are left out
    for cell in loaded:
        if "skipped" in cell or cell["target"] in exclude:  # skipped: the target cannot hold the regime
            continue
        missing = [name for name in (strategy, against) if name not in cell["aulc"]]
        if missing:
            raise InputError(f"{cell['file']} has no AULCs for {missing}; it ran {sorted(cell['aulc'])}")
        a, b = np.asarray(cell["aulc"][strategy]), np.asarray(cell["aulc"][against])
        differences[cell["target"], cell["regime"]] = float((a - b).mean())
    return differences


def cell_differences(grid: Path, strategy: str, against: str, exclude: Sequence[str] = ()) -> dict[str, list[float]]:
    """regime -> each cell's mean paired AULC difference, strategy minus against."""
    by_regime: dict[str, list[float]] = {}
    for (_, regime), difference in per_cell_differences(grid, strategy, against, exclude).items():
        by_regime.setdefault(regime, []).append(difference)
    return by_regime


def replication(grid: Path, other: Path, strategy: str, against: str, exclude: Sequence[str] = ()) -> dict:
    """Whether the per-cell differences are a property of the cell or of its seeds: the same two
    strategies in `other` (the same cells on another seed range), over the cells both ran. Gives
    the correlation of the cells' differences, the cells whose sign agrees (ties, within 0.001,
    agree with nothing), and the mean difference in `other` over the cells where `grid` has the
    strategy ahead (what choosing it there, by these seeds, gives on the others)."""
    here = per_cell_differences(grid, strategy, against, exclude)
    there = per_cell_differences(other, strategy, against, exclude)
    cells = sorted(set(here) & set(there))
    if len(cells) < 3:
        raise InputError(f"{grid} and {other} share {len(cells)} cells; a replication needs at least 3")
    x, y = np.array([here[c] for c in cells]), np.array([there[c] for c in cells])
    ahead = x > 0
    return {"other": str(other), "cells": len(cells), "pearson_r": float(np.corrcoef(x, y)[0, 1]),
            "same_sign": int(((x > 0.001) & (y > 0.001) | (x < -0.001) & (y < -0.001)).sum()),
            "ahead_here": int(ahead.sum()),
            "mean_there_where_ahead_here": float(y[ahead].mean()) if ahead.any() else None,
            # over all shared cells, counting 0 where the strategy is not ahead here
            "mean_there_if_chosen_where_ahead_here": float(np.where(ahead, y, 0.0).mean())}


def compare(by_regime: dict[str, list[float]], strategy: str, against: str) -> dict:
    groups = dict(by_regime, all=[d for diffs in by_regime.values() for d in diffs])
    rows = {}
    for name, diffs in groups.items():
        c = paired_comparison(diffs, np.zeros(len(diffs)), strategy, against)
        rows[name] = {"cells": c.n_seeds, "mean_difference": c.mean_difference, "ci95": [c.ci_low, c.ci_high],
                      "above": c.wins, "ties": c.ties, "below": c.losses,
                      "p": paired_p_value(diffs, np.zeros(len(diffs)))}
    regimes = list(by_regime)
    for name, p in zip(regimes, holm([rows[r]["p"] for r in regimes]), strict=True):
        rows[name]["p_holm"] = p
    return rows


def markdown(rows: dict, strategy: str, against: str) -> str:
    lines = [f"| regime | cells | {strategy} - {against}, mean over cells [95% CI] | above/tied/below | p (Holm) |",
             "|---|---|---|---|---|"]
    for name, r in rows.items():
        p = f"{r['p']:.3g}" + (f" ({r['p_holm']:.3g})" if "p_holm" in r else "")
        lines.append(f"| {name} | {r['cells']} | {r['mean_difference']:+.4f} [{r['ci95'][0]:+.4f}, "
                     f"{r['ci95'][1]:+.4f}] | {r['above']}/{r['ties']}/{r['below']} | {p} |")
    return "\n".join(lines)


@exits_cleanly
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", type=Path, help="a finished grid's output folder")
    parser.add_argument("--strategy", required=True, help="the attempt, e.g. policy_NEW")
    parser.add_argument("--against", default="policy", help="what it is compared with (default: policy)")
    parser.add_argument("--replicate", type=Path, metavar="OTHER_GRID",
                        help="a grid of the same cells on other seeds: do the per-cell differences replicate?")
    parser.add_argument("--exclude-targets", default="", metavar="A,B",
                        help="comma-separated targets to leave out (the file name then says which)")
    args = parser.parse_args()
    exclude = sorted(filter(None, args.exclude_targets.split(",")))
    rows = compare(cell_differences(args.grid, args.strategy, args.against, exclude), args.strategy, args.against)
    result = {"command": " ".join(["python", "benchmarks/compare_policies.py", *sys.argv[1:]]), "comparison": rows}
    print(markdown(rows, args.strategy, args.against))
    if args.replicate:
        result["replication"] = r = replication(args.grid, args.replicate, args.strategy, args.against, exclude)
        there = r["mean_there_where_ahead_here"]
        print(f"replication on {args.replicate} ({r['cells']} cells): per-cell differences correlate at r = "
              f"{r['pearson_r']:.2f}, same sign in {r['same_sign']}; where {args.strategy} is ahead here "
              f"({r['ahead_here']} cells), its mean difference there is {'-' if there is None else f'{there:+.4f}'}; "
              f"choosing it in those cells alone: {r['mean_there_if_chosen_where_ahead_here']:+.4f} over all")
    without = "_without_" + "+".join(exclude) if exclude else ""
    out = args.grid / f"compare_{args.strategy}_vs_{args.against}{without}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
