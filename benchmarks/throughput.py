"""Throughput: meta-training and the lookahead references, this checkout against an older commit.

    python benchmarks/throughput.py --data-root ../shared/data --baseline 37085bf

Two figures, each measured for both codes in the same run, alternating, best of --repeats:
  - meta_train_episodes_per_s: episodes per second of the default config's meta-training steps
    (the oracle trainer: 8 episodes of 20 rounds, 32 candidate refits per state, the backward
    pass included; the steps cycle through the config's sources as meta-training does);
  - refits_per_s: one-step lookahead refits per second (`candidate_gains` on the evaluation set:
    8 Fashion-MNIST 5-way episodes, 32 candidates each, at labeled-set sizes 5, 30 and 55),
    the work of the oracle, pool-oracle and expected-gain references and of the oracle trainer.
The older code runs from a git worktree of --baseline (made in a temporary folder and removed),
each measurement in its own process with the same thread count. Writes
benchmarks/results/throughput.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def measure_meta_train(data_root: str | None, steps: int) -> float:
    """Episodes per second of `steps` default-config training steps (after one warm-up step)."""
    from metaal.commands.meta_train import config_path
    from metaal.config import load_config
    from metaal.trainers import MetaTrainConfig, MetaTrainer

    cfg = load_config(MetaTrainConfig, config_path("default"), ["wandb.mode=disabled"])
    with tempfile.TemporaryDirectory() as out:
        trainer = MetaTrainer(cfg, out, data_root=data_root)
        trainer.train_step()
        start = time.perf_counter()
        for step in range(1, steps + 1):
            trainer.step = step
            trainer.train_step()
        return steps * cfg.trainer.episodes_per_step / (time.perf_counter() - start)


def measure_refits(data_root: str | None, repeats: int = 5) -> float:
    """Candidate refits per second of candidate_gains at three labeled-set sizes."""
    import torch

    from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
    from metaal.learners import LogisticRegression
    from metaal.strategies import Simulation, candidate_gains

    spec = EpisodeSpec(n_ways=5, initial_per_class=1, pool_per_class=100, eval_per_class=100)
    episodes = EpisodeSampler(load_dataset("fashion_mnist", data_root), spec).sample_batch(range(8))
    learner, generator = LogisticRegression(), torch.Generator().manual_seed(0)
    prepared = learner.prepare(episodes.pool_x, generator, extra={"eval": episodes.eval_x})
    rows, refits, seconds = torch.arange(8)[:, None], 0, 0.0
    for queried in (0, 25, 50):
        order = torch.stack([torch.randperm(500, generator=generator) for _ in range(8)])
        labeled, candidates = order[:, :queried], order[:, queried:queried + 32]
        sim = Simulation(episodes, learner, prepared,
                         torch.cat([episodes.labeled_x, episodes.pool_x[rows, labeled]], 1),
                         torch.cat([episodes.labeled_y, episodes.pool_y[rows, labeled]], 1),
                         torch.zeros(8), 5)
        with torch.no_grad():
            candidate_gains(sim, candidates)  # warm-up
            start = time.perf_counter()
            for _ in range(repeats):
                candidate_gains(sim, candidates)
            seconds += time.perf_counter() - start
        refits += repeats * candidates.numel()
    return refits / seconds


def run_measurement(code: Path, what: str, data_root: str | None, steps: int) -> float:
    """One figure, measured by the code at `code` in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(code), "WANDB_MODE": "disabled"}
    command = [sys.executable, str(Path(__file__).resolve()), "--measure", what, "--steps", str(steps)]
    if data_root:
        command += ["--data-root", str(Path(data_root).resolve())]  # the child runs in `code`
    done = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"measuring {what} with the code at {code} failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--baseline", default="37085bf", help="the older commit to compare against")
    parser.add_argument("--steps", type=int, default=8, help="timed meta-training steps per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="best of this many measurements, alternating")
    parser.add_argument("--out", default=str(HERE / "results" / "throughput.json"))
    parser.add_argument("--overwrite", action="store_true", help="replace the earlier --out")
    parser.add_argument("--measure", choices=("meta_train", "refits"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # a child process: print one figure
        figure = measure_meta_train(args.data_root, args.steps) if args.measure == "meta_train" \
            else measure_refits(args.data_root)
        print(figure)
        return 0

    from metaal.outputs import check_output_file
    out = check_output_file(args.out, args.overwrite)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if subprocess.run(["git", "status", "--porcelain", "metaal"], cwd=REPO, capture_output=True, text=True).stdout:
        commit += " with uncommitted changes"
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), args.baseline], cwd=REPO, check=True)
        try:
            figures = {what: {"old": 0.0, "new": 0.0} for what in ("meta_train", "refits")}
            for _ in range(args.repeats):
                for what, best in figures.items():
                    for label, code in (("old", old), ("new", REPO)):
                        best[label] = max(best[label], run_measurement(code, what, args.data_root, args.steps))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=REPO, check=False)
    result = {
        "command": "python benchmarks/throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "baseline_commit": args.baseline, "commit": commit, "machine": platform.processor() or platform.machine(),
        "threads": os.environ.get("OMP_NUM_THREADS", "torch default"),
        "meta_train_episodes_per_s": figures["meta_train"], "refits_per_s": figures["refits"],
        "speedup": {what: best["new"] / best["old"] for what, best in figures.items()},
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    for what, best in figures.items():
        print(f"{what}: old {best['old']:.1f}/s, new {best['new']:.1f}/s, {best['new'] / best['old']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
