"""The kernel-head probe's two grids side by side: the same tabular cells and development seeds
with the linear head (dev_grid_linear) and the random-Fourier-feature head (dev_grid).

    python benchmarks/results/attempts/kernel_head/heads.py   # writes heads.json beside this file

Per cell and head: margin's mean AULC, and the mean paired differences from margin of the policy,
Cluster-Margin, BADGE and TypiClust. Then, per head, over the checkerboards and over all cells:
the means of those, with the Wilcoxon p over cells of each strategy against margin.
"""

import json
from pathlib import Path

import numpy as np

from metaal.ranking import paired_p_value

HERE = Path(__file__).resolve().parent
HEADS = {"linear": HERE / "dev_grid_linear", "fourier": HERE / "dev_grid"}
OTHERS = ("policy", "cluster_margin", "badge", "typiclust")
CHECKERBOARDS = ("checkerboard2x2", "checkerboard4x4", "rotated_checkerboard2x2")


def cells(grid: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((grid / "cells").glob("*.json")):
        cell = json.loads(path.read_text())
        if "skipped" not in cell:
            aulc = {name: np.asarray(v) for name, v in cell["aulc"].items()}
            out[path.stem] = {"target": cell["target"], "margin": float(aulc["margin"].mean()),
                              **{name: float((aulc[name] - aulc["margin"]).mean()) for name in OTHERS}}
    return out


def over(rows: list[dict]) -> dict:
    return {"cells": len(rows), "margin": float(np.mean([r["margin"] for r in rows])),
            **{name: {"mean_vs_margin": float(np.mean([r[name] for r in rows])),
                      "p": paired_p_value(np.array([r[name] for r in rows]), np.zeros(len(rows)))}
               for name in OTHERS}}


def main():
    by_head = {head: cells(grid) for head, grid in HEADS.items()}
    result = {"command": "python benchmarks/results/attempts/kernel_head/heads.py", "cells": by_head}
    for head, rows in by_head.items():
        result[head] = {"checkerboards": over([r for r in rows.values() if r["target"] in CHECKERBOARDS]),
                        "all": over(list(rows.values()))}
        for part in ("checkerboards", "all"):
            s = result[head][part]
            print(f"{head:8s} {part:13s} {s['cells']:2d} cells  margin {s['margin']:.4f}  " + "  ".join(
                f"{name} {s[name]['mean_vs_margin']:+.4f} (p {s[name]['p']:.2g})" for name in OTHERS))
    (HERE / "heads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
