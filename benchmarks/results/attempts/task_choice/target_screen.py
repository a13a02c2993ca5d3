"""A screen, not a strategy: could the gate's round stats tell, on the targets themselves, where
Cluster-Margin beats the shipped policy?

The synthetic-source gate of `plugin.py` failed in transfer. This asks whether the stats carry the
answer at all on real tasks: it reruns the shipped policy on the development grid's episodes
(each cell's task and seeds, from `dev_grid/cells`), recording `round_stats` each round, takes each
seed's Cluster-Margin-minus-policy AULC from the grid, and fits the same ridge gate leaving one
target family out at a time (all its regimes; the three checkerboards are one family, heart and
heart_scale, the same data, another): each held-out cell is credited, seed by seed, with
Cluster-Margin's lead in the share of rounds the gate gives it. It reads the development seeds
only, and it ships nothing: a gate fitted on the benchmark's targets would no longer be tested by them.

    python benchmarks/results/attempts/task_choice/target_screen.py --data-root ../shared/data --run-gates
    python benchmarks/results/attempts/task_choice/target_screen.py --data-root ../shared/data --run-gates \
        --label-stats --out benchmarks/results/attempts/task_choice/target_screen_label_stats.json

`--label-stats` adds three stats that read the labels bought so far (`fit_gate.label_stats`: the
head's fit on the labeled set, its agreement with the nearest labeled label over the pool, the
labels' nearest-neighbour consistency). QueryContext does not carry the labeled set's labels, so
here they come from the simulation: a screen of whether such inputs are worth carrying.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metaal.data import TaskSpec
from metaal.errors import exits_cleanly
from metaal.evaluate import compare_strategies
from metaal.metrics import aulc
from metaal.outputs import check_output_dir

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fit_gate import LABEL_STATS, RecordingPolicy, fit_ridge, label_stats, predict, rows_of  # noqa: E402
from plugin import STATS, PolicyOrClusterMargin, round_stats  # noqa: E402

# targets that share their data or their generator, left out together
FAMILIES = {"checkerboard2x2": "checkerboards", "checkerboard4x4": "checkerboards",
            "rotated_checkerboard2x2": "checkerboards", "heart_scale": "heart"}


def family(target: str) -> str:
    return FAMILIES.get(target, target)


class LabelAwarePolicyOrClusterMargin(PolicyOrClusterMargin):
    """`policy_or_cm` whose gate also reads the label stats (from the simulation: a screen only)."""
    needs_simulation = True
    stats = STATS + LABEL_STATS

    def round_stats(self, ctx, k):
        return torch.cat([round_stats(ctx, k), label_stats(ctx)], 1)


def record_cells(grid: Path, data_root, with_label_stats: bool) -> list[dict]:
    """Each run cell of `grid`: the policy's round stats (rounds, seeds, S) and each seed's lead."""
    cells = []
    for path in sorted((grid / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        if "skipped" in cell:
            continue
        recorder = RecordingPolicy(with_label_stats=with_label_stats)
        compare_strategies(TaskSpec.from_dict(cell["task"]), {"policy": recorder}, cell["settings"]["seeds"],
                           data_root, "cpu", progress=False)
        lead = np.asarray(cell["aulc"]["cluster_margin"]) - np.asarray(cell["aulc"]["policy"])
        cells.append({"target": cell["target"], "regime": cell["regime"], "task": cell["task"],
                      "seeds": cell["settings"]["seeds"], "policy_aulc": np.asarray(cell["aulc"]["policy"]),
                      "stats": torch.stack(recorder.rounds).numpy(), "lead": lead})
        print(f"{cell['target']:<28} {cell['regime']:<16} Cluster-Margin - policy {lead.mean():+.4f}", flush=True)
    return cells


def leave_one_family_out(cells: list[dict], l2: float, data_root=None) -> list[dict]:
    """Each cell's value over the policy under a gate fitted on the other target families' cells:
    estimated from the policy's run, and, given `data_root`, measured by running the gate."""
    rows = []
    for held_out in sorted({family(c["target"]) for c in cells}):
        gate = fit_ridge(*rows_of([c for c in cells if family(c["target"]) != held_out]), l2)
        for c in (c for c in cells if family(c["target"]) == held_out):
            share = (predict(gate, c["stats"]) > 0).mean(0)
            rows.append({"target": c["target"], "regime": c["regime"], "lead": float(c["lead"].mean()),
                         "share_to_cluster_margin": float(share.mean()), "value": float((share * c["lead"]).mean()),
                         "run": run_gate(c, gate, data_root) if data_root else None})
    return rows


def run_gate(cell: dict, gate: dict, data_root) -> float:
    """The gate's real value on a cell: `policy_or_cm` with this gate run on the cell's episodes,
    its mean AULC minus the policy's in the grid (seed by seed)."""
    kind = LabelAwarePolicyOrClusterMargin if len(gate["weights"]) > len(STATS) else PolicyOrClusterMargin
    strategy = kind({"stats": list(kind.stats), **{key: np.asarray(v).tolist() for key, v in gate.items()}})
    curves = compare_strategies(TaskSpec.from_dict(cell["task"]), {"policy_or_cm": strategy}, cell["seeds"],
                                data_root, "cpu", progress=False).curves
    return float((aulc(curves.accuracy["policy_or_cm"], curves.n_labeled) - cell["policy_aulc"]).mean())


@exits_cleanly
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--grid", type=Path, default=HERE / "dev_grid")
    parser.add_argument("--l2", type=float, default=0.1, help="ridge penalty, as the source gate's")
    parser.add_argument("--run-gates", action="store_true",
                        help="also run each left-out family's gate on its cells (the measured value, not the estimate)")
    parser.add_argument("--label-stats", action="store_true",
                        help="add the three stats that read the labels bought so far (fit_gate.LABEL_STATS)")
    parser.add_argument("--out", type=Path, default=HERE / "target_screen.json")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args()
    check_output_dir(args.out.parent, args.overwrite, writes=(args.out.name,))
    torch.set_num_threads(2)
    start = time.perf_counter()
    cells = record_cells(args.grid, args.data_root, args.label_stats)
    rows = leave_one_family_out(cells, args.l2, args.data_root if args.run_gates else None)
    leads = np.array([r["lead"] for r in rows])
    summary = {"cells": len(rows), "gate_left_one_family_out": float(np.mean([r["value"] for r in rows])),
               "cluster_margin_where_ahead_in_cell": float(np.maximum(leads, 0).mean()),
               "always_cluster_margin": float(leads.mean()),
               "correlation_with_lead": float(np.corrcoef(leads, [r["value"] for r in rows])[0, 1])}
    if args.run_gates:
        summary["gate_left_one_family_out_run"] = float(np.mean([r["run"] for r in rows]))
    print(json.dumps(summary, indent=1))
    stats = list(STATS) + (list(LABEL_STATS) if args.label_stats else [])
    args.out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "stats": stats,
                                    "seconds": round(time.perf_counter() - start), "summary": summary,
                                    "cells": rows}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
