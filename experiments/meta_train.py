"""Meta-train a query policy on episodic class-subset tasks.

    python experiments/meta_train.py --config experiments/configs/default.yaml \
        [--data-root DIR] [--out DIR] [--device auto|cpu|cuda] [--resume] [--plugins MODULE[,MODULE]] \
        [--trainer.lr 3e-4 --learner.name cnn --learner.options.cnn.steps 50 ...]

Every key of the config can be overridden on the command line (--section.key value); run with
--help-config to list them. Writes to --out (default runs/meta_train/<config name>):
  policy.pt          the best policy by validation AULC (load with metaal.policy.load_policy)
  checkpoint.pt      the resumable training state, every checkpoint_every steps
  log.json           training and validation curves; summary.json at the end
  validation_summary.json  the best policy vs the baselines on the validation episodes
                     (AULC per strategy, paired differences with 95% intervals, W/T/L)
  validation_curves.png, wandb/  (offline unless a W&B key is configured)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from metaal.config import help_text, load_config
from metaal.errors import exits_cleanly
from metaal.learners import LEARNERS, learner_spec
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv
from metaal.trainers import TRAINERS, MetaTrainConfig, MetaTrainer


def full_help() -> str:
    """Every config key, then each registered learner's and trainer's own options."""
    learners = "\n".join(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in learner_spec(name).items() if k != "name")
                          for name in LEARNERS)
    trainers = "\n".join(f"  {name}:\n" + "\n".join("    " + line for line in
                                                     help_text(TRAINERS.get(name).Options).splitlines())
                          for name in TRAINERS)
    return (f"{help_text(MetaTrainConfig)}\n\nlearner.options.NAME, the options of each learner, and their defaults:\n"
            f"{learners}\n\ntrainer.options.NAME, the options of each trainer:\n{trainers}")


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    load_plugins_from_argv(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (experiments/configs/*.yaml); default: built-in defaults")
    parser.add_argument("--data-root", help="dataset folder (default: $METAAL_DATA_ROOT)")
    parser.add_argument("--out", help="output folder (default: runs/meta_train/<config name>)")
    parser.add_argument("--device", help="auto | cpu | cuda (overrides the config's device)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--help-config", action="store_true", help="list every config key and exit")
    parser.add_argument("--plugins", help=PLUGINS_HELP)
    args, overrides = parser.parse_known_args(argv)
    if args.help_config:
        print(full_help())
        return 0
    if args.device:
        overrides += [f"device={args.device}"]

    cfg = load_config(MetaTrainConfig, args.config, overrides)
    out = Path(args.out or Path("runs") / "meta_train" / (Path(args.config).stem if args.config else "defaults"))
    trainer = MetaTrainer(cfg, out, data_root=args.data_root)
    print(f"meta-training with {cfg.trainer.name} for {cfg.trainer.steps} steps on {trainer.device}; "
          f"output in {out}", file=sys.stderr)
    summary = trainer.run(resume=args.resume, progress=not args.no_progress)
    final = summary["final_validation"] or {}
    print(f"best validation AULC {summary['best_val_aulc']:.4f} on held-out classes; at the end: "
          + ", ".join(f"{k.removeprefix('val/aulc_')} {v:.4f}" for k, v in final.items()
                      if k.startswith("val/aulc_") and "_minus_" not in k))
    print(f"policy: {out / 'policy.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
