"""Does a cheaper CNN training recipe measure the same thing? Margin's and random's AULC with
each recipe, on the same development-seed episodes (issue 42's rule: the default CNN learner
changes only if both are within 0.01 of the old recipe's, or above).

    python benchmarks/cnn_recipe.py --data-root ../shared/data [--seeds 10] [--recipes old,minibatch]

Task: Fashion-MNIST in the balanced-k50 regime (5-way, pool 2000, 10 rounds of k=50, the CNN
retrained from scratch each round), seeds 10000 on (development). Each recipe's episodes run as
one batch; its JSON is written to benchmarks/results/cnn_recipe/RECIPE.json as soon as it is
measured, and a rerun skips the recipes already there (resumable). Then summary.json: per
recipe, each strategy's mean AULC, the paired difference from the old recipe with its 95%
interval, and seconds per episode.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from metaal.data import load_dataset
from metaal.device import keep_freed_memory
from metaal.errors import exits_cleanly
from metaal.evaluate import DEVELOPMENT_SEED_OFFSET, TARGETS, compare_strategies, regime_task
from metaal.learners import learner_spec
from metaal.metrics import aulc, paired_comparison
from metaal.strategies import make_strategy

OUT = Path(__file__).parent / "results" / "cnn_recipe"
RECIPES = {
    # the SmallCNN before issue 42: 150 full-batch steps, retrained from fresh weights each round
    "old": {"name": "cnn", "steps": 150, "batch_size": None, "stop_loss": None, "warm_start": False},
    "minibatch": {"name": "cnn", "steps": 150, "batch_size": 64, "stop_loss": 0.05, "warm_start": False},
    "minibatch_100": {"name": "cnn", "steps": 100, "batch_size": 64, "stop_loss": 0.05, "warm_start": False},
    "warm": {"name": "cnn", "steps": 150, "batch_size": 64, "stop_loss": 0.05, "warm_start": True},
}
STRATEGIES = ("margin", "random")


def measure(recipe: dict, seeds: list[int], data_root) -> dict:
    base = TARGETS["fashion_mnist"].replace(learner=learner_spec(recipe))
    task, _ = regime_task(base, "balanced-k50", load_dataset(base.dataset, data_root))
    start = time.perf_counter()
    result = compare_strategies(task, {s: make_strategy(s) for s in STRATEGIES}, seeds, data_root, "cpu",
                                progress=False)
    seconds = time.perf_counter() - start
    per_episode = seconds / len(seeds) / len(STRATEGIES)
    return {"learner": learner_spec(recipe), "seeds": seeds, "episode_s": round(per_episode, 2),
            "aulc": {name: aulc(acc, result.curves.n_labeled).tolist() for name, acc in result.curves.accuracy.items()}}


def summary(measured: dict[str, dict]) -> dict:
    old = measured.get("old")
    rows = {}
    for name, m in measured.items():
        row = {"episode_s": m["episode_s"], "learner": m["learner"]}
        for s in STRATEGIES:
            a = np.asarray(m["aulc"][s])
            row[f"aulc_{s}"] = round(float(a.mean()), 4)
            if old is not None and name != "old":
                c = paired_comparison(a, np.asarray(old["aulc"][s]), name, "old")
                row[f"{s}_minus_old"] = [round(c.mean_difference, 4), round(c.ci_low, 4), round(c.ci_high, 4)]
        rows[name] = row
    return rows


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated, from {', '.join(RECIPES)}")
    args = parser.parse_args(argv)
    keep_freed_memory()
    OUT.mkdir(parents=True, exist_ok=True)
    seeds = list(range(DEVELOPMENT_SEED_OFFSET, DEVELOPMENT_SEED_OFFSET + args.seeds))
    for name in args.recipes.split(","):
        path = OUT / f"{name}.json"
        if path.exists() and json.loads(path.read_text())["seeds"] == seeds:
            print(f"{name}: already measured ({path})")
            continue
        path.write_text(json.dumps(measure(RECIPES[name], seeds, args.data_root), indent=1) + "\n")
        print(f"{name}: wrote {path}", flush=True)
    measured = {p.stem: json.loads(p.read_text()) for p in sorted(OUT.glob("*.json")) if p.stem in RECIPES}
    table = summary(measured)
    (OUT / "summary.json").write_text(json.dumps({"command": "python benchmarks/cnn_recipe.py " + " ".join(
        argv if argv is not None else sys.argv[1:]), "recipes": table}, indent=1) + "\n")
    for name, row in table.items():
        print(name, json.dumps({k: v for k, v in row.items() if k != "learner"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
