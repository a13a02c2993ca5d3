"""Transfer a frozen policy to a dataset it never saw, against the baselines.

    metaal transfer --dataset fashion_mnist [--policy linear | --policy runs/.../policy.pt] \
        --out runs/transfer/fashion_mnist [--strategies policy,margin,entropy,random] [--seeds 20] \
        [--seed-offset 0] [--rounds 20] [--k 5] [--pool-per-class 100] [--eval-per-class 200] [--n-ways N] \
        [--imbalance R] [--policy-selection sequential|top-k] \
        [--learner NAME | '{name: NAME, option: value}'] [--plugins MODULE[,MODULE]] \
        [--data-root DIR] [--device auto|cpu|cuda] [--wandb-mode MODE] [--overwrite]
    metaal transfer --preset fashion_mnist --policy ... --out ...   # a transfer-table row

The dataset is a name (metaal data lists them; plug-ins add more) or a path: an
.npz with X, y (optionally X_test, y_test), any number of classes and features, or an image
folder. Episodes use all its classes (or n-way subsets), balanced; seed s fixes episode s for
every strategy (paired comparison). The policy is a shipped one by name (`metaal policies`)
or a checkpoint; without --policy, the shipped policy matched to --learner (linear for the
default logreg, kernel for rff_logreg). The learner defaults to the one the policy was
meta-trained with (recorded in its checkpoint). A policy run with a learner other than its
own is warned about on stderr, and summary.json records the pairing ("policy_pairing").
`--preset NAME` takes the task of that row of the transfer table (benchmarks/transfer_table.py:
dataset, classes, episode shape, rounds, k) and its seeds, so it reproduces the row's numbers
(that table's attempts ran the policy top-k: add --policy-selection top-k); any flag given as
well overrides the preset's value. When the dataset is too small for the pool or
evaluation set asked for, or the budget labels more than half the pool, it says so on
stderr and in summary.json ("warnings").
Writes to --out (refused if it already holds anything, unless --overwrite):
  curves.csv           strategy, seed, round, n_labeled, accuracy
  summary.json         AULC mean and std per strategy; policy vs each baseline: mean paired
                       difference, 95% interval, wins/ties/losses; the task as a TaskSpec;
                       the policy's pairing with the learner
  learning_curves.png  mean accuracy +- std per strategy
and logs them to W&B (offline without a key).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import torch

from metaal import __version__
from metaal.data import DATASETS, TaskSpec
from metaal.device import keep_freed_memory, resolve_device
from metaal.errors import exits_cleanly
from metaal.evaluate import TABLE_SEED_OFFSET, TARGETS, compare_strategies, write_comparison
from metaal.learners import learner_spec, parse_learner
from metaal.metrics import summarize, summary_markdown
from metaal.outputs import check_output_dir, claim_output_dir
from metaal.policy import SELECTIONS, default_policy, load_policy, policy_learner, policy_pairing
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv
from metaal.strategies import STRATEGIES, make_strategy
from metaal.tracking import Tracker, add_wandb_flags, wandb_options
from metaal.zoo import is_policy_name

# What a run without --preset uses for every task flag left unset.
DEFAULTS = dict(n_ways=None, pool_per_class=100, eval_per_class=200, rounds=20, k=5, initial_per_class=1, imbalance=1.0)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", help="a shipped policy's name (metaal policies) or a policy checkpoint (default: the "
                                    "shipped policy matched to --learner, else linear)")
    p.add_argument("--policy-selection", choices=SELECTIONS, default="sequential",
                   help="how the policy picks a round's k: one at a time, each pick counted as labeled "
                        "(sequential, the default), or its k highest scores at once (top-k)")
    p.add_argument("--dataset", help="dataset name, .npz file or image folder (or give --preset)")
    p.add_argument("--preset", choices=list(TARGETS), help="a transfer-table row: its task and its seeds")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument("--strategies", default="policy,margin,entropy,random",
                   help=f"comma-separated, from policy, {', '.join(STRATEGIES)}")
    p.add_argument("--seeds", type=int, default=20, help="paired episodes")
    p.add_argument("--seed-offset", type=int, help=f"episodes use seeds offset .. offset+seeds-1 (default 0; the "
                                                   f"presets use {TABLE_SEED_OFFSET})")
    p.add_argument("--rounds", type=int, help=f"query rounds (default {DEFAULTS['rounds']})")
    p.add_argument("--k", type=int, help=f"samples labeled per round (default {DEFAULTS['k']})")
    p.add_argument("--pool-per-class", type=int, help=f"unlabeled pool samples per class "
                                                      f"(default {DEFAULTS['pool_per_class']})")
    p.add_argument("--eval-per-class", type=int, help=f"evaluation samples per class, from the test part "
                                                      f"(default {DEFAULTS['eval_per_class']})")
    p.add_argument("--n-ways", type=int, help="classes per episode (default: all)")
    p.add_argument("--initial-per-class", type=int, help="initial labels per class (default 1)")
    p.add_argument("--imbalance", type=float, help="the pool's commonest / rarest class ratio, a long tail "
                                                   "(default 1: balanced; the evaluation set stays balanced)")
    p.add_argument("--learner", help="a learner name, or a YAML mapping {name: NAME, option: value} (default: the "
                                     "policy's own, else logreg)")
    p.add_argument("--plugins", help=PLUGINS_HELP)
    p.add_argument("--data-root", default=None, help="dataset folder for names (default: $METAAL_DATA_ROOT)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    add_wandb_flags(p)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if (args.dataset is None) == (args.preset is None):
        p.error("give either --dataset or --preset")
    return args


def _policy_ref(policy: str | None) -> str | None:
    """A shipped policy's name as it is, a checkpoint's path as an absolute one."""
    return policy if is_policy_name(policy) else _absolute(policy)


def _absolute(path: str | None) -> str | None:
    """A path as an absolute one (so summary.json is readable from any folder); names stay names."""
    return str(Path(path).resolve()) if path is not None and Path(path).exists() else path


def _learner(args, policy) -> dict:
    """--learner as a full spec; else the policy's recorded learner; else the logistic head."""
    if args.learner is None:
        return policy_learner(policy) if policy is not None else learner_spec("logreg")
    return parse_learner(args.learner)


def _task(args, policy) -> TaskSpec:
    """The task this run follows: the preset's (if any) with every flag given applied."""
    preset = TARGETS[args.preset] if args.preset else TaskSpec(args.dataset, **DEFAULTS)
    given = {key: getattr(args, key) for key in DEFAULTS if getattr(args, key) is not None}
    return preset.replace(learner=_learner(args, policy), **given)


def _strategies(args, device) -> dict:
    strategies = {}
    for name in (s.strip() for s in args.strategies.split(",") if s.strip()):
        if name == "policy":
            args.policy = args.policy or default_policy(parse_learner(args.learner) if args.learner else None)
            strategies["policy"] = load_policy(args.policy, device, sequential=args.policy_selection == "sequential")
        else:
            strategies[name] = make_strategy(name)
    return strategies


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    load_plugins_from_argv(argv)
    keep_freed_memory()
    args = parse_args(argv)
    out = check_output_dir(args.out, args.overwrite)
    device = resolve_device(args.device)
    strategies = _strategies(args, device)
    task = _task(args, strategies.get("policy"))
    task.check_batch_memory(args.seeds, args.data_root)  # before the run opens: --seeds 1000000000
    pairing = policy_pairing(args.policy, strategies["policy"], task.learner) if "policy" in strategies else None
    offset = args.seed_offset if args.seed_offset is not None else TABLE_SEED_OFFSET if args.preset else 0
    dataset_arg = task.dataset if task.dataset in DATASETS else _absolute(task.dataset)
    config = vars(args) | {"seed_offset": offset, "policy": _policy_ref(args.policy), "dataset": dataset_arg,
                           "data_root": _absolute(args.data_root), "task": task.replace(dataset=dataset_arg).to_dict(),
                           "metaal": __version__, "torch": torch.__version__, "device": str(device)}
    # Opened before the computation, so that the run's runtime is real and a crash is logged.
    name = f"transfer-{Path(str(task.dataset)).stem}-k{task.k}-s{offset}"
    with claim_output_dir(out, "metaal transfer"), \
            Tracker(config, out, mode=args.wandb_mode, job_type="transfer", **wandb_options(args, name)) as tracker:
        if "policy" in strategies:
            _use_policy_artifact(tracker, strategies["policy"])
        summary, curves = _compare(args, task, strategies, offset, device, config, out, pairing)
        tracker.update_config({key: summary["config"][key] for key in ("spec", "dataset_name")})
        _log_comparison(tracker, summary, curves, out)
    print(summary_markdown(summary, baselines=[b for b in ("margin", "random") if b in strategies]))
    print(f"wrote {out / 'curves.csv'}, {out / 'summary.json'}, {out / 'learning_curves.png'}")
    return 0


def _compare(args, task: TaskSpec, strategies: dict, offset: int, device, config: dict, out: Path,
             pairing: dict | None):
    """Run every strategy on the paired seeds and write curves.csv, summary.json and the plot."""
    seeds = range(offset, offset + args.seeds)
    result = compare_strategies(task, strategies, seeds, args.data_root, device, progress=not args.no_progress)
    curves, spec = result.curves, result.spec
    summary = summarize(curves, reference="policy" if "policy" in strategies else None)
    summary["config"] = config | {"spec": vars(spec), "dataset_name": result.dataset_name}
    summary["policy_pairing"] = pairing  # the policy's own learner and the one it ran with
    summary["warnings"] = result.notes
    summary["seconds_per_strategy"] = result.seconds
    write_comparison(out, curves, summary, title=f"{result.dataset_name}: {spec.n_ways}-way, pool "
                                                 f"{spec.n_ways * spec.pool_per_class}, k={task.k}, {args.seeds} seeds")
    return summary, curves


def _use_policy_artifact(tracker: Tracker, policy) -> None:
    """The policy file as this run's input: the meta-training run's artifact when it recorded one
    (same content, so the same version: lineage), else an artifact named after its content."""
    path = policy.info["path"]  # a shipped policy's name resolved to its file
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    name = policy.info.get("wandb_artifact") or f"policy-{digest[:12]}"
    tracker.use_artifact(path, name=name, type="model", metadata={"sha256": digest})


def _log_comparison(tracker: Tracker, summary: dict, curves, out: Path) -> None:
    """AULCs and the paired comparisons (difference, 95% interval, W/T/L) to the summary and tables."""
    tracker.log({f"aulc/{name}": s["aulc_mean"] for name, s in summary["strategies"].items()}, step=0)
    paired = {}
    for c in summary["comparisons"]:
        key = f"paired/{c['strategy']}_vs_{c['baseline']}"
        paired |= {f"{key}/{field}": c[field] for field in ("mean_difference", "ci_low", "ci_high", "wins", "ties",
                                                            "losses")}
    tracker.set_summary(paired)
    columns = ["strategy", "baseline", "n_seeds", "mean_difference", "ci_low", "ci_high", "wins", "ties", "losses"]
    tracker.log_table("paired", columns, [[c[k] for k in columns] for c in summary["comparisons"]])
    rows = [[name, int(seed), r, int(n), float(acc)] for name, accs in curves.accuracy.items()
            for seed, row in zip(curves.seeds, accs) for r, (n, acc) in enumerate(zip(curves.n_labeled, row))]
    tracker.log_table("curves", ["strategy", "seed", "round", "n_labeled", "accuracy"], rows)
    tracker.log_image("learning_curves", out / "learning_curves.png")


if __name__ == "__main__":
    sys.exit(main())
