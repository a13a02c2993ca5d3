"""Do the meta-training sources hold tasks where Cluster-Margin beats the shipped policy?

A per-task choice between them could only be learned from sources where each wins somewhere.
This runs the shipped policy, margin and Cluster-Margin on synthetic tasks (random Gaussian
mixtures, `metaal.data.synthetic`) in batches of 8 episodes that share one input dimension,
and writes each batch's mean AULC differences, by regime and dimension. `--variant sources` is
the synthetic sources as meta-training draws them; the `2d-*` variants are low-dimensional,
label-noise-free mixtures, to find which kind of source task Cluster-Margin wins; the `regions*`
variants are the second synthetic family (Voronoi regions of uniform density, stop 30).

    python benchmarks/results/attempts/policy_cluster/source_probe.py --batches 20
    python benchmarks/results/attempts/policy_cluster/source_probe.py --batches 20 --variant 2d-clean \\
        --regimes binary-imbalanced-k2,5way-imbalanced-k5,binary-imbalanced-k20 --out .../source_probe_2d-clean.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metaal.data import TaskSpec
from metaal.data.synthetic import SyntheticTaskSampler
from metaal.errors import InputError, exits_cleanly
from metaal.learners import make_learner
from metaal.loop import run_active_learning
from metaal.metrics import aulc
from metaal.outputs import check_output_dir
from metaal.policy import load_policy
from metaal.strategies import make_strategy

HERE = Path(__file__).resolve().parent
REGIMES = {
    "binary-balanced-k2": dict(n_ways=2, eval_per_class=200, rounds=15, k=2),
    "binary-imbalanced-k2": dict(n_ways=2, eval_per_class=200, rounds=15, k=2, imbalance=10.0),
    "binary-imbalanced-k20": dict(n_ways=2, pool_per_class=1000, eval_per_class=200, rounds=10, k=20, imbalance=10.0),
    "5way-balanced-k5": dict(n_ways=5, rounds=20, k=5),
    "5way-imbalanced-k5": dict(n_ways=5, rounds=10, k=5, imbalance=10.0),
    "5way-balanced-k20": dict(n_ways=5, pool_per_class=400, rounds=10, k=20),
    "5way-imbalanced-k20": dict(n_ways=5, pool_per_class=400, rounds=10, k=20, imbalance=10.0),
}
VARIANTS = {  # SyntheticTaskSampler options
    "sources": {},
    "2d-clean": dict(dims=(2,), label_noise=(0.0, 0.0)),
    "2d-clean-6clusters": dict(dims=(2,), label_noise=(0.0, 0.0), max_clusters_per_class=6),
    "2d-clean-6clusters-separated": dict(dims=(2,), label_noise=(0.0, 0.0), max_clusters_per_class=6,
                                         separation=(2.0, 4.0)),
    # the second family (issue 14, stop 30): Voronoi regions of uniform density, which a linear head cannot fit
    "regions": dict(shape="regions"),
    "regions-2d-clean": dict(shape="regions", dims=(2,), label_noise=(0.0, 0.0)),
}


def run_batch(task: TaskSpec, sampler: SyntheticTaskSampler, strategies: dict, seeds: list[int]) -> dict:
    """One batch of episodes: each strategy's mean AULC over them, and their shared dimension."""
    episodes = sampler.sample_batch(seeds)
    aulcs = {}
    for name, strategy in strategies.items():
        result = run_active_learning(episodes, make_learner(task.learner), strategy, task.rounds, task.k, seed=0)
        aulcs[name] = aulc(result.accuracy.numpy(), result.n_labeled.numpy())
    return {"seeds": seeds, "dim": int(episodes.pool_x.shape[-1]),
            "cluster_margin_minus_policy": float((aulcs["cluster_margin"] - aulcs["policy"]).mean()),
            "policy_minus_margin": float((aulcs["policy"] - aulcs["margin"]).mean())}


def summarise(batches: list[dict]) -> dict:
    """One regime's batches: the mean difference, the batches above, and the mean by dimension."""
    diffs = np.array([b["cluster_margin_minus_policy"] for b in batches])
    dims = sorted({b["dim"] for b in batches})
    by_dim = {d: float(np.mean([b["cluster_margin_minus_policy"] for b in batches if b["dim"] == d])) for d in dims}
    return {"cluster_margin_minus_policy": float(diffs.mean()), "batches_above": int((diffs > 0).sum()),
            "batches": len(diffs), "by_dim": by_dim}


@exits_cleanly
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=20, help="batches of 8 episodes per regime")
    parser.add_argument("--variant", choices=VARIANTS, default="sources")
    parser.add_argument("--regimes", default=",".join(REGIMES), help=f"comma-separated, of {list(REGIMES)}")
    parser.add_argument("--out", type=Path, default=HERE / "source_probe.json")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args()
    if args.batches < 1:
        raise InputError(f"--batches must be at least 1, got {args.batches}")
    regimes = args.regimes.split(",")
    if unknown := [r for r in regimes if r not in REGIMES]:
        raise InputError(f"--regimes: unknown {unknown}; choose from {list(REGIMES)}")
    check_output_dir(args.out.parent, args.overwrite, writes=(args.out.name,))
    torch.set_num_threads(2)
    strategies = {"policy": load_policy(HERE.parents[1] / "meta_train_default" / "policy.pt", device="cpu"),
                  "margin": make_strategy("margin"), "cluster_margin": make_strategy("cluster_margin")}
    batches, start = [], time.perf_counter()
    for regime in regimes:
        task = TaskSpec("synthetic", **REGIMES[regime])
        sampler = SyntheticTaskSampler(task.sampler()[0].spec, **VARIANTS[args.variant])
        for _ in range(args.batches):
            seeds = list(range(900000 + 100 * len(batches), 900000 + 100 * len(batches) + 8))  # unused elsewhere
            batches.append({"regime": regime, **run_batch(task, sampler, strategies, seeds)})
    summary = {regime: summarise([b for b in batches if b["regime"] == regime]) for regime in regimes}
    for regime, row in summary.items():
        print(f"{regime:<22} Cluster-Margin - policy {row['cluster_margin_minus_policy']:+.4f} "
              f"(above in {row['batches_above']}/{row['batches']})")
    command = " ".join(["python", *sys.argv])
    args.out.write_text(json.dumps({"command": command, "variant": args.variant, "seconds":
                                    round(time.perf_counter() - start), "summary": summary, "batches": batches},
                                   indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
