"""Transfer a frozen policy to a dataset it never saw, against the baselines.

    python experiments/transfer.py --policy runs/meta_train/default/policy.pt --dataset fashion_mnist \
        --out runs/transfer/fashion_mnist [--strategies policy,margin,entropy,random] [--seeds 20] \
        [--seed-offset 0] [--rounds 20] [--k 5] [--pool-size 500] [--eval-size 1000] [--n-ways N] \
        [--learner logreg|cnn] [--data-root DIR] [--device auto|cpu|cuda] [--wandb-mode MODE] [--overwrite]
    python experiments/transfer.py --preset fashion_mnist --policy ... --out ...   # a transfer-table row

The dataset is a name (python -m metaal data lists them) or a path: an .npz with X, y
(optionally X_test, y_test), any number of classes and features, or an image folder.
Episodes use all its classes (or n-way subsets), balanced; seed s fixes episode s for every
strategy (paired comparison). `--preset NAME` takes the dataset, classes, episode shape,
rounds, k and seeds of that row of the transfer table (benchmarks/transfer_table.py), so
it reproduces the row's numbers; any flag given as well overrides the preset's value.
When the dataset is too small for the pool or evaluation set asked for, or the budget labels
more than half the pool, it says so on stderr and in summary.json ("warnings").
Writes to --out (refused if it already holds anything, unless --overwrite):
  curves.csv           strategy, seed, round, n_labeled, accuracy
  summary.json         AULC mean and std per strategy; policy vs each baseline: mean paired
                       difference, 95% interval, wins/ties/losses
  learning_curves.png  mean accuracy +- std per strategy
and logs them to W&B (offline without a key).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from metaal import __version__
from metaal.data import DATASETS
from metaal.device import resolve_device
from metaal.errors import InputError, exits_cleanly
from metaal.evaluate import TARGETS, Target, compare_strategies, target_episodes, warn, write_comparison
from metaal.metrics import summarize, summary_markdown
from metaal.outputs import check_output_dir
from metaal.policy import load_policy
from metaal.strategies import STRATEGIES, make_strategy
from metaal.tracking import Tracker

# What a run without --preset uses for every flag left unset.
DEFAULTS = dict(seed_offset=0, rounds=20, k=5, pool_size=500, eval_size=1000, n_ways=None)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", help="policy checkpoint (needed when the strategies include 'policy')")
    p.add_argument("--dataset", help="dataset name, .npz file or image folder (or give --preset)")
    p.add_argument("--preset", choices=list(TARGETS), help="a transfer-table row: its dataset, classes, episode "
                                                           "shape, rounds, k and seeds")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument("--strategies", default="policy,margin,entropy,random",
                   help=f"comma-separated, from policy, {', '.join(STRATEGIES)}")
    p.add_argument("--seeds", type=int, default=20, help="paired episodes")
    p.add_argument("--seed-offset", type=int, help="episodes use seeds offset .. offset+seeds-1 (default 0; the "
                                                   "transfer table's presets use 10000)")
    p.add_argument("--rounds", type=int, help=f"query rounds (default {DEFAULTS['rounds']})")
    p.add_argument("--k", "--batch-size", dest="k", type=int, help=f"samples labeled per round (default {DEFAULTS['k']})")
    p.add_argument("--pool-size", type=int, help=f"unlabeled pool per episode, balanced (default {DEFAULTS['pool_size']})")
    p.add_argument("--eval-size", type=int, help=f"evaluation samples per episode, from the test part "
                                                 f"(default {DEFAULTS['eval_size']})")
    p.add_argument("--n-ways", type=int, help="classes per episode (default: all)")
    p.add_argument("--initial-per-class", type=int, default=1, help="initial labels per class")
    p.add_argument("--learner", default="logreg", choices=["logreg", "cnn"])
    p.add_argument("--data-root", default=None, help="dataset folder for names (default: $METAAL_DATA_ROOT)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--wandb-mode", default=None, help="online | offline | disabled (default: $WANDB_MODE, "
                                                      "else online with a key, offline without)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if (args.dataset is None) == (args.preset is None):
        p.error("give either --dataset or --preset")
    return args


def _absolute(path: str | None) -> str | None:
    """A path as an absolute one (so summary.json is readable from any folder); names stay names."""
    return str(Path(path).resolve()) if path is not None and Path(path).exists() else path


def _target(args) -> Target:
    """The protocol this run follows: the preset's (if any) with every flag given applied."""
    preset = TARGETS[args.preset] if args.preset else Target(args.dataset, args.dataset, **DEFAULTS)
    given = {key: getattr(args, key) for key in DEFAULTS if getattr(args, key) is not None}
    return dataclasses.replace(preset, initial_per_class=args.initial_per_class, **given)


def _strategies(args, device) -> dict:
    strategies = {}
    for name in (s.strip() for s in args.strategies.split(",") if s.strip()):
        if name == "policy":
            if not args.policy:
                raise InputError("the strategies include 'policy': pass --policy PATH")
            strategies["policy"] = load_policy(args.policy, device)
        else:
            strategies[name] = make_strategy(name)
    return strategies


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = check_output_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    strategies = _strategies(args, device)
    target = _target(args)
    dataset, classes, spec, notes = target_episodes(target, args.data_root)
    warn(notes)
    seeds = list(range(target.seed_offset, target.seed_offset + args.seeds))
    curves, _, seconds = compare_strategies(dataset, spec, strategies, seeds, target.rounds, target.k,
                                            args.learner, classes=classes, device=device,
                                            progress=not args.no_progress)

    summary = summarize(curves, reference="policy" if "policy" in strategies else None)
    dataset_arg = target.dataset if target.dataset in DATASETS else _absolute(target.dataset)
    config = vars(args) | vars(target) | {"policy": _absolute(args.policy), "dataset": dataset_arg,
                                          "data_root": _absolute(args.data_root)}
    summary["config"] = config | {"spec": vars(spec), "classes": classes, "dataset_name": dataset.name,
                                  "metaal": __version__, "torch": torch.__version__, "device": str(device)}
    summary["warnings"] = notes
    summary["seconds_per_strategy"] = seconds
    write_comparison(out, curves, summary, title=f"{dataset.name}: {spec.n_ways}-way, pool "
                                                 f"{spec.n_ways * spec.pool_per_class}, k={target.k}, {args.seeds} seeds")
    with Tracker(summary["config"], out, mode=args.wandb_mode, job_type="transfer",
                 name=f"transfer-{dataset.name}") as tracker:
        tracker.log({f"aulc/{name}": s["aulc_mean"] for name, s in summary["strategies"].items()}, step=0)
        rows = [[name, int(seed), r, int(n), float(acc)] for name, accs in curves.accuracy.items()
                for seed, row in zip(curves.seeds, accs) for r, (n, acc) in enumerate(zip(curves.n_labeled, row))]
        tracker.log_table("curves", ["strategy", "seed", "round", "n_labeled", "accuracy"], rows)
        tracker.log_image("learning_curves", out / "learning_curves.png")
    print(summary_markdown(summary, baselines=[b for b in ("margin", "random") if b in strategies]))
    print(f"wrote {out / 'curves.csv'}, {out / 'summary.json'}, {out / 'learning_curves.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
