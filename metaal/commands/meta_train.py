"""Meta-train a query policy on episodic class-subset tasks.

    metaal meta-train --config default [--data-root DIR] [--out DIR] [--device auto|cpu|cuda] [--resume] \
        [--plugins MODULE[,MODULE]] [--trainer.lr 3e-4 --learner.name cnn --learner.options.cnn.steps 50 ...]
    torchrun --standalone --nproc_per_node N experiments/meta_train.py --config default --out DIR ...
                                           # data-parallel: the ranks share each step's episodes

Every key of the config can be overridden on the command line (--section.key value); run with
--help-config to list them. --config is a YAML file or the name of a shipped config (default,
kernel, smoke: metaal/configs/). Writes to --out (default: a new folder
runs/meta_train/<config name>-<date>-<time>-<4 hex>, so that no two runs share one):
  policy.pt          the best policy by validation AULC (load with metaal.policy.load_policy)
  checkpoint.pt      the resumable training state, every checkpoint_every steps
  log.json           training and validation curves; summary.json at the end
  validation_summary.json  the best policy vs the baselines on the validation episodes
                     (AULC per strategy, paired differences with 95% intervals, W/T/L)
  validation_curves.png, wandb/  (offline unless a W&B key is configured)
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from metaal.config import ConfigError, help_text, load_config
from metaal.device import keep_freed_memory
from metaal.errors import exits_cleanly
from metaal.learners import LEARNERS, learner_spec
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv
from metaal.trainers import TRAINERS, MetaTrainConfig, MetaTrainer

CONFIGS = Path(__file__).resolve().parent.parent / "configs"  # shipped as package data


def full_help() -> str:
    """Every config key, then each registered learner's and trainer's own options."""
    learners = "\n".join(f"  {name}: " + ", ".join(f"{k}={v}" for k, v in learner_spec(name).items() if k != "name")
                          for name in LEARNERS)
    trainers = "\n".join(f"  {name}:\n" + "\n".join("    " + line for line in
                                                     help_text(TRAINERS.get(name).Options).splitlines())
                          for name in TRAINERS)
    return (f"{help_text(MetaTrainConfig)}\n\nlearner.options.NAME, the options of each learner, and their defaults:\n"
            f"{learners}\n\ntrainer.options.NAME, the options of each trainer:\n{trainers}")


def shipped_configs() -> list[str]:
    return sorted(path.stem for path in CONFIGS.glob("*.yaml"))


def config_path(name_or_path: str) -> Path:
    """A config file: the path given, or the shipped config of that name (metaal/configs/NAME.yaml)."""
    path, shipped = Path(name_or_path), CONFIGS / f"{name_or_path}.yaml"
    if path.is_file():
        return path
    if path.suffix == "" and path.name == name_or_path and shipped.is_file():
        return shipped
    raise ConfigError(f"config {name_or_path!r}: no such file, and no shipped config of that name "
                      f"({', '.join(shipped_configs())})")


def new_run_folder(config_name: str) -> Path:
    """runs/meta_train/NAME-DATE-TIME-HEX: unique, so runs of a sweep never collide."""
    return Path("runs") / "meta_train" / f"{config_name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    load_plugins_from_argv(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help=f"a YAML file, or a shipped config's name ({', '.join(shipped_configs())}); "
                                         "default: the built-in defaults")
    parser.add_argument("--data-root", help="dataset folder (default: $METAAL_DATA_ROOT)")
    parser.add_argument("--out", help="output folder (default: a new runs/meta_train/<config>-<date>-<time>-<hex>)")
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

    if args.resume and not args.out:
        raise ConfigError("--resume needs --out: the folder of the interrupted run to continue")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not args.out:
        raise ConfigError("under torchrun, give --out: every process must use the same output folder")
    config = config_path(args.config) if args.config else None
    cfg = load_config(MetaTrainConfig, config, overrides)
    keep_freed_memory()
    out = Path(args.out) if args.out else new_run_folder(config.stem if config else "defaults")
    trainer = MetaTrainer(cfg, out, data_root=args.data_root)
    main_rank, processes = trainer.group.is_main, trainer.group.world_size
    if main_rank:
        print(f"meta-training with {cfg.trainer.name} for {cfg.trainer.steps} steps on {trainer.device}"
              + (f" in {processes} processes" if processes > 1 else "") + f"; output in {out}", file=sys.stderr)
    summary = trainer.run(resume=args.resume, progress=not args.no_progress)
    if not main_rank:
        return 0
    final = summary["final_validation"] or {}
    print(f"best validation AULC {summary['best_val_aulc']:.4f} on held-out classes; at the end: "
          + ", ".join(f"{k.removeprefix('val/aulc_')} {v:.4f}" for k, v in final.items()
                      if k.startswith("val/aulc_") and "_minus_" not in k))
    print(f"policy: {out / 'policy.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
