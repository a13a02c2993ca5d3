"""What could any per-cell choice among a grid's strategies reach against margin?

    python benchmarks/grid_ceiling.py GRID_DIR [--strategy policy]

GRID_DIR is a finished `metaal grid` / benchmarks/transfer_grid.py output folder (its table.json).
For each regime: the cells where the strategy is significantly above margin (Holm-adjusted
p < 0.05, as in the table), and the cells where at least one label-free strategy is: what a
choice of strategy per cell, made in hindsight on these very seeds, could make significant at
best. Also the mean over cells of the strategy's difference from margin and of the per-cell
best one's, and, where the pool oracle ran, the share of the margin-to-pool-oracle gap each
closes: all by the grid's own verdict (`metaal.commands.grid.versus_margin`). In hindsight the
per-cell best is optimistic (the largest of several noisy means): a ceiling, not a result.
Writes GRID_DIR/ceiling_<strategy>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from metaal.commands.grid import versus_margin
from metaal.errors import InputError, exits_cleanly

ALPHA = 0.05  # versus_margin's default: a cell counts where its Holm-adjusted p is below it
# margin is what the others are measured against; the references read labels: not choices a deployment has
NOT_CHOICES = {"margin", "oracle", "pool_oracle", "expected_gain"}
HINDSIGHT = "per_cell_best"


def read_cells(grid: Path) -> dict[tuple[str, str], dict[str, dict]]:
    """(target, regime) -> strategy -> that strategy's row of the grid's table.json."""
    path = grid / "table.json"
    if not path.exists():
        raise InputError(f"{path} does not exist: give the output folder of a finished grid")
    cells = defaultdict(dict)
    for row in json.loads(path.read_text())["cells"]:
        cells[(row["target"], row["regime"])][row["strategy"]] = row
    return cells


def ceiling(cells: dict, strategy: str) -> dict[str, dict]:
    """Per regime, the strategy against margin and the per-cell choice in hindsight against margin,
    both by the grid's own verdict (`versus_margin`: Holm-significant cells, mean difference,
    pool-oracle gap closed); then both over all regimes, without the gap."""
    rows, per_cell = [row for by in cells.values() for row in by.values()], defaultdict(list)
    for (target, regime), by in sorted(cells.items()):
        if strategy not in by:
            raise InputError(f"the {target} {regime} cell has no row for {strategy}; it ran {sorted(by)}")
        rows.append(hindsight_row(target, regime, by))
        per_cell[regime].append({"target": target, "best": rows[-1]["best"], "any_significant": sorted(
            name for name, row in by.items() if name not in NOT_CHOICES and significant(row))})
    out = {}
    for regime, choices in per_cell.items():
        mine, best = versus_margin(rows, regime, strategy), versus_margin(rows, regime, HINDSIGHT)
        out[regime] = {"cells": mine["targets"], "strategy_significant": mine["above"],
                       "any_significant": best["above"], "strategy_mean": mine["mean_delta"],
                       "best_mean": best["mean_delta"], "per_cell": choices}
        if best["pool_oracle_gap_closed"] is not None:  # where the pool oracle ran and is above margin
            out[regime] |= {"strategy_gap_closed": mine["pool_oracle_gap_closed"],
                            "best_gap_closed": best["pool_oracle_gap_closed"]}
    # no gap over all regimes: where the pool oracle is below margin it would shrink the denominator
    regimes, n = list(out.values()), sum(r["cells"] for r in out.values())
    out["all"] = {"cells": n}
    for key in ("strategy_significant", "any_significant"):
        out["all"][key] = sum(r[key] for r in regimes)
    for key in ("strategy_mean", "best_mean"):  # the mean over every cell
        out["all"][key] = sum(r[key] * r["cells"] for r in regimes) / n
    return out


def significant(row: dict) -> bool:
    return row["p_holm"] is not None and row["p_holm"] < ALPHA and row["delta_vs_margin"] > 0


def hindsight_row(target: str, regime: str, by: dict[str, dict]) -> dict:
    """A table row for the cell's choice in hindsight: the mean difference of its best label-free
    strategy, and the smallest Holm p of those above margin, so that `versus_margin` counts the
    cell significant where any of them is."""
    choices = {name: row for name, row in by.items() if name not in NOT_CHOICES}
    best = max(choices, key=lambda name: choices[name]["delta_vs_margin"])
    above = [row["p_holm"] for row in choices.values() if row["delta_vs_margin"] > 0 and row["p_holm"] is not None]
    return {"target": target, "regime": regime, "strategy": HINDSIGHT, "best": best,
            "delta_vs_margin": choices[best]["delta_vs_margin"], "p_holm": min(above, default=1.0)}


def markdown(rows: dict, strategy: str) -> str:
    lines = [f"| regime | cells | {strategy}: significant above margin "
             "| any label-free strategy: significant above margin "
             f"| mean Δ, {strategy} | mean Δ, per-cell best | pool-oracle gap closed, {strategy} / best |",
             "|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        gap = f"{r['strategy_gap_closed']:.0%} / {r['best_gap_closed']:.0%}" if "best_gap_closed" in r else "-"
        lines.append(f"| {name} | {r['cells']} | {r['strategy_significant']} | {r['any_significant']} | "
                     f"{r['strategy_mean']:+.4f} | {r['best_mean']:+.4f} | {gap} |")
    return "\n".join(lines)


@exits_cleanly
def main(argv: list[str] | None = None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", type=Path, help="a finished grid's output folder")
    parser.add_argument("--strategy", default="policy", help="the strategy to set beside the ceiling")
    args = parser.parse_args(argv)
    rows = ceiling(read_cells(args.grid), args.strategy)
    print(markdown(rows, args.strategy))
    out = args.grid / f"ceiling_{args.strategy}.json"
    command = " ".join(["python", "benchmarks/grid_ceiling.py", *(sys.argv[1:] if argv is None else argv)])
    out.write_text(json.dumps({"command": command, "regimes": rows}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
