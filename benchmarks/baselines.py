"""Every baseline strategy through the one active-learning loop, on held-out episodes.

    python benchmarks/baselines.py --data-root ../shared/data

Default: Fashion-MNIST (never used for meta-training) 5-way episodes, initial set 1 per class,
pool 500 (100 per class), evaluation 1000 (200 per class), k=5 per round, 20 rounds, 20 seeds,
the fast logistic-regression head. Seed s fixes episode s, and every strategy sees the same
episodes (paired comparison). Writes OUT/{summary.json, curves.csv, learning_curves.png,
table.md}, OUT defaulting to benchmarks/results/baselines_<dataset>[_init<N>].
--policy PATH adds a frozen policy; --classes and --seed-offset pick episodes it never
saw (e.g. held-out digits on seeds other than those it was validated on). Also reports, per strategy,
the mean density percentile of its picks within their pools
(how typical the queried samples are; random sits near 50).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from metaal import __version__
from metaal.data import TaskSpec
from metaal.errors import exits_cleanly
from metaal.evaluate import compare_strategies, write_comparison
from metaal.features import local_density
from metaal.learners import LogisticRegression
from metaal.metrics import aulc, summarize, summary_markdown
from metaal.outputs import check_output_dir
from metaal.policy import load_policy
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv
from metaal.strategies import make_strategy, simulation_free


@exits_cleanly
def main():
    load_plugins_from_argv(None)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="shared data folder (default: $METAAL_DATA_ROOT)")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--strategies", default=",".join(simulation_free()),
                        help="comma-separated (default: every registered one that needs no simulator)")
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--k", type=int, default=5, help="samples labeled per round")
    parser.add_argument("--n-ways", type=int, default=5)
    parser.add_argument("--initial-per-class", type=int, default=1)
    parser.add_argument("--pool-per-class", type=int, default=100)
    parser.add_argument("--eval-per-class", type=int, default=200)
    parser.add_argument("--learner", default="logreg")
    parser.add_argument("--classes", default=None,
                        help="comma-separated class ids to draw episodes from (default: all)")
    parser.add_argument("--seed-offset", type=int, default=0, help="episodes use seeds offset .. offset+seeds-1")
    parser.add_argument("--policy", default=None, help="a policy checkpoint; adds the strategy 'policy'")
    parser.add_argument("--out", default=None)
    parser.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    parser.add_argument("--plugins", help=PLUGINS_HELP)
    args = parser.parse_args()

    initial = f"_init{args.initial_per_class}" if args.initial_per_class != 1 else ""
    default_out = f"baselines_{args.dataset}{initial}"
    out = check_output_dir(args.out or Path(__file__).parent / "results" / default_out, args.overwrite)
    classes = tuple(int(c) for c in args.classes.split(",")) if args.classes else None
    task = TaskSpec(args.dataset, classes=classes, n_ways=args.n_ways, initial_per_class=args.initial_per_class,
                    pool_per_class=args.pool_per_class, eval_per_class=args.eval_per_class, rounds=args.rounds,
                    k=args.k, learner={"name": args.learner})
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    strategies = {name: make_strategy(name) for name in args.strategies.split(",") if name != "policy"}
    if args.policy:
        strategies = {"policy": load_policy(args.policy, device="cpu"), **strategies}
    result = compare_strategies(task, strategies, seeds, args.data_root)
    curves, selected, seconds, spec = result.curves, result.selected, result.seconds, result.spec

    # Diagnostic: how typical is what a strategy picks? Percentile (0-100) of each pick's
    # local pool density within its episode, in the fast head's input space; random ~ 50.
    pool_x = task.sampler(args.data_root)[0].sample_batch(seeds).pool_x
    pool_embedding = LogisticRegression().prepare(pool_x, torch.Generator().manual_seed(0)).sets["pool"]
    density_rank = local_density(pool_embedding).argsort(1).argsort(1).float() / (pool_embedding.shape[1] - 1) * 100
    pick_density = {name: round(float(torch.gather(density_rank, 1, picks.flatten(1)).mean()), 1)
                    for name, picks in selected.items()}
    for name in strategies:
        print(f"{name:<18} AULC {aulc(curves.accuracy[name], curves.n_labeled).mean():.4f}  density percentile "
              f"of picks {pick_density[name]:5.1f}  ({seconds[name]} s)")
    summary = summarize(curves)
    summary["config"] = vars(args) | {"task": task.to_dict(), "spec": vars(spec), "metaal": __version__,
                                      "torch": torch.__version__}
    summary["seconds_per_strategy"] = seconds
    summary["pick_density_percentile"] = pick_density
    write_comparison(out, curves, summary, title=f"{args.dataset}: {args.n_ways}-way, pool "
                                                 f"{spec.n_ways * spec.pool_per_class}, k={args.k}, {args.seeds} seeds")
    table = summary_markdown(summary)
    table += "\n| strategy | density percentile of picks (random ~ 50) |\n|---|---|\n"
    table += "".join(f"| {name} | {value} |\n" for name, value in pick_density.items())
    (out / "table.md").write_text(table)
    print(table)
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
