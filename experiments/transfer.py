"""Transfer a frozen policy to a dataset it never saw, against the baselines.

    python experiments/transfer.py --policy runs/meta_train/default/policy.pt --dataset fashion_mnist \
        --out runs/transfer/fashion_mnist [--strategies policy,margin,entropy,random] [--seeds 20] \
        [--rounds 20] [--batch-size 5] [--pool-size 500] [--eval-size 1000] [--n-ways N] \
        [--learner logreg|cnn] [--data-root DIR] [--device auto|cpu|cuda] [--wandb-mode MODE]

The dataset is a name (python -m metaal data lists them) or a path: an .npz with X, y
(optionally X_test, y_test), any number of classes and features, or an image folder.
Episodes use all its classes (or n-way subsets), balanced; seed s fixes episode s for every
strategy (paired comparison). Writes to --out:
  curves.csv           strategy, seed, round, n_labeled, accuracy
  summary.json         AULC mean and std per strategy; policy vs each baseline: mean paired
                       difference, 95% interval, wins/ties/losses
  learning_curves.png  mean accuracy +- std per strategy
and logs them to W&B (offline without a key).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from metaal import __version__
from metaal.data import load_dataset
from metaal.device import resolve_device
from metaal.errors import MetaalError
from metaal.evaluate import compare_strategies, episode_spec_for, write_comparison
from metaal.metrics import summarize, summary_markdown
from metaal.policy import load_policy
from metaal.strategies import STRATEGIES, make_strategy
from metaal.tracking import Tracker


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", help="policy checkpoint (needed when the strategies include 'policy')")
    p.add_argument("--dataset", required=True, help="dataset name, .npz file or image folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--strategies", default="policy,margin,entropy,random",
                   help=f"comma-separated, from policy, {', '.join(STRATEGIES)}")
    p.add_argument("--seeds", type=int, default=20, help="paired episodes (seeds 0..N-1)")
    p.add_argument("--rounds", type=int, default=20, help="query rounds")
    p.add_argument("--batch-size", type=int, default=5, help="samples labeled per round (k)")
    p.add_argument("--pool-size", type=int, default=500, help="unlabeled pool per episode (balanced)")
    p.add_argument("--eval-size", type=int, default=1000, help="evaluation samples per episode (test part)")
    p.add_argument("--initial-per-class", type=int, default=1, help="initial labels per class")
    p.add_argument("--n-ways", type=int, default=None, help="classes per episode (default: all)")
    p.add_argument("--learner", default="logreg", choices=["logreg", "cnn"])
    p.add_argument("--data-root", default=None, help="dataset folder for names (default: $METAAL_DATA_ROOT)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--wandb-mode", default=None, help="online | offline | disabled (default: $WANDB_MODE, "
                                                      "else online with a key, offline without)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    try:
        device = resolve_device(args.device)
        strategies = {}
        for name in names:
            if name == "policy":
                if not args.policy:
                    raise ValueError("the strategies include 'policy': pass --policy PATH")
                strategies["policy"] = load_policy(args.policy, device)
            else:
                strategies[name] = make_strategy(name)
        dataset = load_dataset(args.dataset, args.data_root)
        spec = episode_spec_for(dataset, args.n_ways, args.pool_size, args.eval_size, args.initial_per_class)
        curves, _, seconds = compare_strategies(dataset, spec, strategies, list(range(args.seeds)), args.rounds,
                                                args.batch_size, args.learner, device=device,
                                                progress=not args.no_progress)
    except (MetaalError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    out = Path(args.out)
    summary = summarize(curves, reference="policy" if "policy" in strategies else None)
    summary["config"] = vars(args) | {"spec": vars(spec), "dataset_name": dataset.name, "metaal": __version__,
                                      "torch": torch.__version__, "device": str(device)}
    summary["seconds_per_strategy"] = seconds
    write_comparison(out, curves, summary, title=f"{dataset.name}: {spec.n_ways}-way, pool "
                                                 f"{spec.n_ways * spec.pool_per_class}, k={args.batch_size}, {args.seeds} seeds")
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
