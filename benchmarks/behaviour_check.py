"""Per-seed AULCs of the default policy, margin and the lookahead references (oracle, pool
oracle, expected gain) on three transfer-table rows (one image, one Omniglot, one tabular),
to show that a restructuring changed no result.

    OMP_NUM_THREADS=2 python benchmarks/behaviour_check.py --data-root ../shared/data \
        --out benchmarks/results/behaviour_check/before
    OMP_NUM_THREADS=2 python benchmarks/behaviour_check.py --data-root ../shared/data \
        --out benchmarks/results/behaviour_check/after --compare benchmarks/results/behaviour_check/before

It runs `benchmarks/transfer_table.py` on those rows, as the table itself does. Writes OUT/aulc.json
({target: {strategy: [AULC per seed]}}, with the command and thread count); --compare BEFORE
prints every AULC that differs from BEFORE/aulc.json and exits 1 if any does. AULCs depend at
the 4th decimal on the torch version and thread count: pin OMP_NUM_THREADS when comparing.
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
TARGETS = ("fashion_mnist", "omniglot_sanskrit_tagalog", "heart")


def run_targets(args, out: Path) -> dict[str, dict[str, list[float]]]:
    """The transfer table on TARGETS; per target, the per-seed AULCs by strategy."""
    command = [sys.executable, str(ROOT / "benchmarks" / "transfer_table.py"), "--datasets", ",".join(TARGETS),
               "--policy", args.policy, "--baselines", "margin", "--seeds", str(args.seeds),
               "--out", str(out / "table"), "--history", str(out / "table" / "history.json"), "--no-progress"]
    if args.data_root:
        command += ["--data-root", args.data_root]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    table = json.loads((out / "table" / "table.json").read_text())
    return {target: {name: s["aulc_per_seed"] for name, s in result["strategies"].items()}
            for target, result in table["targets"].items()}


def differences(before: dict, after: dict) -> list[str]:
    lines = []
    for target, strategies in before["aulc"].items():
        for name, values in strategies.items():
            new = after["aulc"].get(target, {}).get(name)
            if new != values:
                lines.append(f"{target} {name}: before {values} after {new}")
    return lines


@exits_cleanly
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--policy", default="linear")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--out", required=True)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--compare", default=None, help="a folder holding an earlier run's aulc.json")
    args = parser.parse_args()
    out = check_output_dir(args.out, args.overwrite)
    out.mkdir(parents=True, exist_ok=True)
    result = {"command": " ".join(sys.argv), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "aulc": run_targets(args, out)}
    (out / "aulc.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out / 'aulc.json'}")
    if args.compare:
        diff = differences(json.loads((Path(args.compare) / "aulc.json").read_text()), result)
        print("\n".join(diff) if diff else f"identical to {args.compare}: every per-seed AULC")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
