"""Do the meta-training sources hold tasks where Cluster-Margin beats the shipped policy?

A per-task choice between them could only be learned from sources where each wins somewhere.
This runs the shipped policy, margin and Cluster-Margin on the synthetic source tasks (random
Gaussian mixtures, `metaal.data.synthetic`) in six regimes (binary k=2 and 5-way k=5 / k=20,
balanced and imbalanced pools), in batches of 8 episodes that share one input dimension, and
writes each batch's mean AULC differences, by regime and dimension.

    python benchmarks/results/attempts/policy_cluster/source_probe.py --batches 20
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
from metaal.policy import load_policy
from metaal.strategies import make_strategy

HERE = Path(__file__).resolve().parent
REGIMES = {
    "binary-balanced-k2": dict(n_ways=2, eval_per_class=200, rounds=15, k=2),
    "binary-imbalanced-k2": dict(n_ways=2, eval_per_class=200, rounds=15, k=2, imbalance=10.0),
    "5way-balanced-k5": dict(n_ways=5, rounds=20, k=5),
    "5way-imbalanced-k5": dict(n_ways=5, rounds=10, k=5, imbalance=10.0),
    "5way-balanced-k20": dict(n_ways=5, pool_per_class=400, rounds=10, k=20),
    "5way-imbalanced-k20": dict(n_ways=5, pool_per_class=400, rounds=10, k=20, imbalance=10.0),
}
DIMS = (2, 4, 8, 16, 32)  # SyntheticTaskSampler's default; a batch's comes from its first seed


def summarise(batches: list[dict]) -> dict:
    """One regime's batches: the mean difference, the batches above, and the mean by dimension."""
    diffs = np.array([b["cluster_margin_minus_policy"] for b in batches])
    by_dim = {d: float(np.mean([b["cluster_margin_minus_policy"] for b in batches if b["dim"] == d]))
              for d in DIMS if any(b["dim"] == d for b in batches)}
    return {"cluster_margin_minus_policy": float(diffs.mean()), "batches_above": int((diffs > 0).sum()),
            "batches": len(diffs), "by_dim": by_dim}


@exits_cleanly
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="batches of 8 episodes per regime")
    parser.add_argument("--out", type=Path, default=HERE / "source_probe.json")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args()
    check_output_dir(args.out.parent, args.overwrite, writes=(args.out.name,))
    torch.set_num_threads(2)
    strategies = {"policy": load_policy(HERE.parents[1] / "meta_train_default" / "policy.pt", device="cpu"),
                  "margin": make_strategy("margin"), "cluster_margin": make_strategy("cluster_margin")}
    batches, start = [], time.perf_counter()
    for regime, options in REGIMES.items():
        task = TaskSpec("synthetic", **options)
        for _ in range(args.batches):
            seeds = list(range(900000 + 100 * len(batches), 900000 + 100 * len(batches) + 8))  # unused elsewhere
            result = compare_strategies(task, strategies, seeds, progress=False)
            a = {name: aulc(acc, result.curves.n_labeled) for name, acc in result.curves.accuracy.items()}
            dim = DIMS[int(np.random.default_rng([seeds[0], 1]).integers(len(DIMS)))]
            batches.append({"regime": regime, "seeds": seeds, "dim": dim,
                            "cluster_margin_minus_policy": float((a["cluster_margin"] - a["policy"]).mean()),
                            "policy_minus_margin": float((a["policy"] - a["margin"]).mean())})
    summary = {regime: summarise([b for b in batches if b["regime"] == regime]) for regime in REGIMES}
    for regime, row in summary.items():
        print(f"{regime:<22} Cluster-Margin - policy {row['cluster_margin_minus_policy']:+.4f} "
              f"(above in {row['batches_above']}/{row['batches']})")
    command = " ".join(["python", *sys.argv])
    args.out.write_text(json.dumps({"command": command, "seconds": round(time.perf_counter() - start),
                                    "summary": summary, "batches": batches}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
