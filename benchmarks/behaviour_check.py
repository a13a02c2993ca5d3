"""Did a restructuring change a result? The shipped policy's and margin's per-seed AULCs on a set
of benchmark-grid cells, from one checkout of the code against another, bit for bit.

    git worktree add ../before research-archive          # the code before the restructuring
    python benchmarks/behaviour_check.py --data-root ../shared/data --code ../before \
        --out benchmarks/results/behaviour_check/before
    python benchmarks/behaviour_check.py --data-root ../shared/data \
        --out benchmarks/results/behaviour_check/after --compare benchmarks/results/behaviour_check/before

Each run is `python -m metaal grid` on CELLS (an image target, an Omniglot one and a tabular one,
balanced and long-tailed, k=5 and k=50), run from `--code` (default: this checkout) in one
process with 2 torch threads. Writes OUT/aulc.json ({cell: {strategy: [AULC per seed]}}, with the
command and the commit); --compare BEFORE prints every AULC that differs from BEFORE/aulc.json and
exits 1 if any does. AULCs depend at the 4th decimal on the torch version and thread count: run
both sides on one machine and one environment.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from metaal.errors import exits_cleanly
from metaal.outputs import check_output_dir

ROOT = Path(__file__).resolve().parents[1]
TARGETS = "fashion_mnist,omniglot_sanskrit_tagalog,heart"
REGIMES = "balanced-k5,imbalanced-k50"


def run_grid(code: Path, args, out: Path) -> dict[str, dict[str, list[float]]]:
    """The grid's cells from the code in `code`; per cell, the per-seed AULCs by strategy."""
    command = [sys.executable, "-m", "metaal", "grid", "--policy", args.policy, "--targets", TARGETS,
               "--regimes", REGIMES, "--baselines", "margin", "--reference-candidates", "0",
               "--seeds", str(args.seeds), "--jobs", "1", "--out", str(out / "grid")]
    if args.data_root:
        command += ["--data-root", str(Path(args.data_root).resolve())]
    env = os.environ | {"PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=code, env=env)
    cells = sorted((out / "grid" / "cells").glob("*.json"))
    return {path.stem: json.loads(path.read_text()).get("aulc", {}) for path in cells}


def differences(before: dict, after: dict) -> list[str]:
    lines = []
    for cell, strategies in before["aulc"].items():
        for name, values in strategies.items():
            new = after["aulc"].get(cell, {}).get(name)
            if new != values:
                lines.append(f"{cell} {name}: before {values} after {new}")
    return lines


@exits_cleanly
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--code", default=str(ROOT), help="the checkout whose code runs (default: this one)")
    parser.add_argument("--policy", default="linear")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--out", required=True)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--compare", default=None, help="a folder holding an earlier run's aulc.json")
    args = parser.parse_args()
    out = check_output_dir(args.out, args.overwrite).resolve()  # the grid runs in --code's folder
    out.mkdir(parents=True, exist_ok=True)
    code = Path(args.code).resolve()
    commit = subprocess.run(["git", "-C", str(code), "rev-parse", "HEAD"], capture_output=True, text=True)
    commit = commit.stdout.strip()
    result = {"command": " ".join(["python", "benchmarks/behaviour_check.py", *sys.argv[1:]]), "commit": commit,
              "aulc": run_grid(code, args, out)}
    (out / "aulc.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'aulc.json'} ({sum(map(len, result['aulc'].values()))} strategy rows)")
    if args.compare:
        diff = differences(json.loads((Path(args.compare) / "aulc.json").read_text()), result)
        print("\n".join(diff) if diff else f"identical to {args.compare}: every per-seed AULC")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
