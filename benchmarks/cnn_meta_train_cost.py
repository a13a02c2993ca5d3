"""What meta-training a policy with the CNN learner would cost (issue 42: a CNN-matched policy,
if a default-sized run fits in 60 minutes on this machine).

    python benchmarks/cnn_meta_train_cost.py --data-root ../shared/data [--device cpu]

The oracle trainer's cost is its teacher: at every state of every rollout it refits the learner
once per candidate (default config: 8 episodes a step, 32 candidates, 20 rounds of k=5 on
5-way MNIST episodes with 100 pool and 100 evaluation samples per class, 300 steps). This times
one state's candidate gains with the SmallCNN at labeled-set sizes 5, 55 and 100 (rounds 0, 10
and 19; the refits start from fresh weights), interpolates the 20 rounds of a step linearly
between them, and multiplies by the steps. The rollout's own fits, the features and validation
come on top: the figure is a lower bound. Writes benchmarks/results/cnn_meta_train_cost_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metaal.data import TaskSpec
from metaal.device import keep_freed_memory, resolve_device
from metaal.errors import exits_cleanly
from metaal.learners import make_learner
from metaal.outputs import check_output_file
from metaal.strategies.base import Simulation
from metaal.strategies.lookahead import candidate_gains

HERE = Path(__file__).parent
EPISODES, CANDIDATES, ROUNDS, K, STEPS = 8, 32, 20, 5, 300  # metaal/configs/default.yaml
TIMED_ROUNDS = (0, 10, 19)


def state_seconds(episodes, learner, labeled: int, generator: torch.Generator) -> float:
    """Wall seconds of one state's candidate gains with `labeled` samples labeled (the initial
    ones plus random pool samples), CANDIDATES random candidates per episode."""
    B, m = episodes.pool_y.shape
    order = torch.stack([torch.randperm(m, generator=generator) for _ in range(B)])
    picked, candidates = order[:, :labeled - episodes.labeled_y.shape[1]], order[:, -CANDIDATES:]
    rows = torch.arange(B)[:, None]
    x = torch.cat([episodes.labeled_x, episodes.pool_x[rows, picked]], 1)
    y = torch.cat([episodes.labeled_y, episodes.pool_y[rows, picked]], 1)
    prepared = learner.prepare(episodes.pool_x, generator, extra={"eval": episodes.eval_x})
    with torch.no_grad():
        fitted = learner.fit(prepared, x, y, 5, generator)
        accuracy = (fitted.predict_prepared("eval").probs.argmax(-1) == episodes.eval_y).float().mean(1)
        sim = Simulation(episodes, learner, prepared, x, y, accuracy, 5)
        start = time.perf_counter()
        candidate_gains(sim, candidates)
    return time.perf_counter() - start


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    keep_freed_memory()
    out = check_output_file(HERE / "results" / f"cnn_meta_train_cost_{device.type}.json", args.overwrite)
    task = TaskSpec("mnist", classes=(0, 1, 2, 3, 4), n_ways=5, pool_per_class=100, eval_per_class=100,
                    rounds=ROUNDS, k=K, learner={"name": "cnn"})
    sampler, _ = task.sampler(args.data_root, device=device)
    episodes, learner = sampler.sample_batch(range(EPISODES)), make_learner(task.learner)
    generator = torch.Generator().manual_seed(0)
    timed = {}
    for r in TIMED_ROUNDS:
        labeled = 5 + r * K
        timed[labeled] = round(state_seconds(episodes, learner, labeled, generator), 2)
        print(f"round {r:>2} ({labeled:>3} labeled): {timed[labeled]:7.2f} s for {EPISODES} x {CANDIDATES} refits",
              flush=True)
    sizes = [5 + r * K for r in range(ROUNDS)]
    step = float(np.interp(sizes, list(timed), list(timed.values())).sum())
    hours = step * STEPS / 3600
    print(f"one meta-training step: at least {step:.0f} s; {STEPS} steps: at least {hours:.1f} h")
    report = {"benchmark": "cnn_meta_train_cost",
              "command": f"python benchmarks/cnn_meta_train_cost.py --data-root ../shared/data --device {args.device}",
              "setup": {"episodes_per_step": EPISODES, "candidates": CANDIDATES, "rounds": ROUNDS, "k": K,
                        "steps": STEPS, "task": task.to_dict()},
              "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                          "torch": torch.__version__,
                          "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None},
              "state_seconds_by_labeled": timed, "step_seconds_lower_bound": round(step, 1),
              "run_hours_lower_bound": round(hours, 1)}
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
