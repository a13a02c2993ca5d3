"""The image cells with the two heads, development seeds 10000-10019: this probe's grid (the kernel
head `rff_logreg`) beside `../seqimit600/dev_grid` (the linear head, the same targets, regimes and
seeds; the only committed linear grid of the image cells on those seeds).

    python benchmarks/results/attempts/kernel_images/heads.py   # writes heads.json beside this file

Per cell: margin's and the shipped policy's mean AULC with each head, the kernel head's difference
(mean over seeds), and the policy's paired difference from margin under each head. Over the
cells: the mean of each difference, with the Wilcoxon p over cells.
"""

import json
from pathlib import Path

import numpy as np

from metaal.ranking import paired_p_value

HERE = Path(__file__).resolve().parent
HEADS = {"linear": HERE.parent / "seqimit600" / "dev_grid", "kernel": HERE / "dev_grid"}
STRATEGIES = ("margin", "policy")


def aulcs(grid: Path, cell: str) -> dict[str, np.ndarray]:
    data = json.loads((grid / "cells" / f"{cell}.json").read_text())
    return {name: np.asarray(data["aulc"][name]) for name in STRATEGIES}


def main():
    names = sorted(p.stem for p in (HEADS["kernel"] / "cells").glob("*.json")
                   if "skipped" not in json.loads(p.read_text()))
    rows = {}
    for cell in names:
        linear, kernel = aulcs(HEADS["linear"], cell), aulcs(HEADS["kernel"], cell)
        rows[cell] = {name: {"linear": float(linear[name].mean()), "kernel": float(kernel[name].mean()),
                             "kernel_minus_linear": float((kernel[name] - linear[name]).mean())}
                      for name in STRATEGIES}
        rows[cell]["policy_minus_margin"] = {head: float((a["policy"] - a["margin"]).mean())
                                             for head, a in (("linear", linear), ("kernel", kernel))}
    summary = {}
    for name in STRATEGIES:
        diffs = np.array([rows[c][name]["kernel_minus_linear"] for c in names])
        summary[name] = {"cells": len(names), "mean_kernel_minus_linear": float(diffs.mean()),
                         "kernel_lower_in": int((diffs < 0).sum()),
                         "p": paired_p_value(diffs, np.zeros(len(diffs)))}
        print(f"{name:7s} kernel - linear head over {len(names)} cells: {diffs.mean():+.4f} "
              f"(lower in {(diffs < 0).sum()}; Wilcoxon p {summary[name]['p']:.2g})")
    for head in HEADS:
        diffs = np.array([rows[c]["policy_minus_margin"][head] for c in names])
        summary[f"policy_minus_margin_{head}"] = {"mean": float(diffs.mean()), "above_in": int((diffs > 0).sum()),
                                                  "p": paired_p_value(diffs, np.zeros(len(diffs)))}
        print(f"policy - margin, {head} head: {diffs.mean():+.4f} (above in {(diffs > 0).sum()} of {len(diffs)}; "
              f"Wilcoxon p {summary[f'policy_minus_margin_{head}']['p']:.2g})")
    result = {"command": "python benchmarks/results/attempts/kernel_images/heads.py",
              "grids": {head: str(grid.relative_to(HERE.parent)) for head, grid in HEADS.items()},
              "cells": rows, "summary": summary}
    (HERE / "heads.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
