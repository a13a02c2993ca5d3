"""What could any per-cell choice among a grid's strategies reach against margin?

    python benchmarks/grid_ceiling.py GRID_DIR [--strategy policy]

GRID_DIR is a finished `metaal grid` / benchmarks/transfer_grid.py output folder (its table.json).
For each regime: the cells where the strategy is significantly above margin (Holm-adjusted
p < 0.05, as in the table), and the cells where at least one label-free strategy is: what a
choice of strategy per cell, made in hindsight on these very seeds, could make significant at
best. Also the mean over cells of the strategy's difference from margin and of the per-cell
best one's, and, where the pool oracle ran, the share of the margin-to-pool-oracle gap each
closes (summed over cells, as the grid's verdict does). In hindsight the per-cell best is
optimistic (the largest of several noisy means): a ceiling, not a result. Writes
GRID_DIR/ceiling_<strategy>.json and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from metaal.errors import InputError, exits_cleanly

REFERENCES = {"oracle", "pool_oracle", "expected_gain"}  # they read labels: not choices a deployment has


def read_cells(grid: Path) -> dict[tuple[str, str], dict[str, dict]]:
    """(target, regime) -> strategy -> that strategy's row of the grid's table.json."""
    path = grid / "table.json"
    if not path.exists():
        raise InputError(f"{path} does not exist: give the output folder of a finished grid")
    cells = defaultdict(dict)
    for row in json.loads(path.read_text())["cells"]:
        cells[(row["target"], row["regime"])][row["strategy"]] = row
    return cells


def significant(row: dict) -> bool:
    return row["p_holm"] is not None and row["p_holm"] < 0.05 and row["delta_vs_margin"] > 0


def ceiling(cells: dict, strategy: str) -> dict[str, dict]:
    by_regime = defaultdict(list)
    for (target, regime), rows in sorted(cells.items()):
        if strategy not in rows:
            raise InputError(f"the {target} {regime} cell has no row for {strategy}; it ran {sorted(rows)}")
        choices = {name: row for name, row in rows.items() if name not in REFERENCES | {"margin"}}
        best = max(choices, key=lambda name: choices[name]["delta_vs_margin"])
        by_regime[regime].append({
            "target": target, "strategy": rows[strategy]["delta_vs_margin"], "best": best,
            "best_delta": choices[best]["delta_vs_margin"], "strategy_significant": significant(rows[strategy]),
            "any_significant": sorted(name for name, row in choices.items() if significant(row)),
            "pool_oracle": rows["pool_oracle"]["delta_vs_margin"] if "pool_oracle" in rows else None})
    regimes = {regime: summary(rows) | {"per_cell": rows} for regime, rows in by_regime.items()}
    # no gap over all regimes: where the pool oracle is below margin it would shrink the denominator
    return regimes | {"all": summary([row for rows in by_regime.values() for row in rows], gap=False)}


def summary(rows: list[dict], gap: bool = True) -> dict:
    n = len(rows)
    out = {"cells": n, "strategy_significant": sum(r["strategy_significant"] for r in rows),
           "any_significant": sum(bool(r["any_significant"]) for r in rows),
           "strategy_mean": sum(r["strategy"] for r in rows) / n, "best_mean": sum(r["best_delta"] for r in rows) / n}
    with_oracle = [r for r in rows if r["pool_oracle"] is not None] if gap else []
    oracle_gain = sum(r["pool_oracle"] for r in with_oracle)
    if with_oracle and oracle_gain > 0:  # where the pool oracle is not above margin there is no gap to close
        out["strategy_gap_closed"] = sum(r["strategy"] for r in with_oracle) / oracle_gain
        out["best_gap_closed"] = sum(r["best_delta"] for r in with_oracle) / oracle_gain
    return out


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
