"""What one deep active-learning episode costs on this machine: the SmallCNN before issue 42
(one episode at a time) against the batched one, old recipe and new, in one run.

    python benchmarks/deep_episode_cost.py --data-root ../shared/data [--device auto] [--batch 10] [--overwrite]

The task is the deep table's smallest setting: Fashion-MNIST in the balanced-k50 regime (5-way,
pool 2000, 10 rounds of k=50, the CNN retrained from scratch each round), margin sampling,
report seeds. Rows:
  cnn_looped        the SmallCNN as it was (`LoopedSmallCNN` below, its code kept verbatim): one
                    episode's network at a time, 150 full-batch Adam steps, every MC-dropout pass
                    through the whole network; timed on one episode
  cnn_old_recipe    metaal's batched SmallCNN with the old recipe (150 full-batch Adam steps, no
                    early stop): the same learner, `--batch` episodes trained together
  cnn_default       metaal's batched SmallCNN with its default recipe (minibatches and a stopping
                    rule on the training loss), `--batch` episodes together
Seconds per episode are the batch's wall time divided by its episodes. Writes
benchmarks/results/deep_episode_cost_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

import metaal
from metaal.data import load_dataset
from metaal.device import keep_freed_memory, resolve_device
from metaal.errors import exits_cleanly
from metaal.evaluate import REPORT_SEED_OFFSET, TARGETS, compare_strategies, regime_task
from metaal.learners import (
    LEARNERS,
    Prediction,
    _check_fit_inputs,
    _ConvNet,
    _seeded_torch,
    learner_spec,
    register_learner,
)
from metaal.outputs import check_output_file
from metaal.strategies import make_strategy

HERE = Path(__file__).parent
ROWS = {"cnn_looped": ({"name": "cnn_looped"}, 1),
        "cnn_old_recipe": ({"name": "cnn", "steps": 150, "batch_size": None, "stop_loss": None, "warm_start": False},
                           None),
        "cnn_default": ({"name": "cnn"}, None)}  # (learner, episodes per batch; None: --batch)


# ---------------------------------------------------------------- the SmallCNN before issue 42, verbatim

@dataclass
class _FittedLoopedCNN:
    nets: list[_ConvNet]
    mc_passes: int
    generator_seed: int
    sets: dict[str, torch.Tensor]

    def predict_prepared(self, name: str = "pool") -> Prediction:
        return self.predict(self.sets[name])

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> Prediction:
        probs, members, embeddings = [], [], []
        for net, xb in zip(self.nets, x):
            net.eval()
            logits, h = net(xb)
            probs.append(logits.softmax(-1))
            embeddings.append(h)
            if self.mc_passes:
                net.dropout.train()  # MC dropout: dropout on, the rest in eval mode
                with _seeded_torch(self.generator_seed, xb.device):
                    members.append(torch.stack([net(xb)[0].softmax(-1) for _ in range(self.mc_passes)]))
                net.dropout.eval()
        return Prediction(torch.stack(probs), torch.stack(members) if members else None, torch.stack(embeddings))


class LoopedSmallCNN:
    """Two conv layers and a 64-unit embedding, trained full-batch with Adam for each episode."""

    name = "cnn_looped"
    fixed_embedding = False

    def __init__(self, steps: int = 150, lr: float = 3e-3, weight_decay: float = 1e-4,
                 dropout: float = 0.25, mc_passes: int = 8):
        self.steps, self.lr, self.weight_decay = steps, lr, weight_decay
        self.dropout, self.mc_passes = dropout, mc_passes

    def prepare(self, pool_x, generator=None, extra=None):
        return {"pool": pool_x, **(extra or {})}

    def fit(self, prepared, x, y, num_classes, generator=None) -> _FittedLoopedCNN:
        _check_fit_inputs(x, y, num_classes)
        seed = int(torch.randint(2**31 - 1, (1,), generator=generator))
        nets = []
        for i, (xb, yb) in enumerate(zip(x, y)):
            with _seeded_torch(seed + i, xb.device), torch.enable_grad():  # callers fit under no_grad
                net = _ConvNet(x.shape[2], num_classes, x.shape[-1], self.dropout).to(x.device)
                opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
                net.train()
                for _ in range(self.steps):
                    opt.zero_grad()
                    F.cross_entropy(net(xb)[0], yb).backward()
                    opt.step()
            nets.append(net)
        return _FittedLoopedCNN(nets, self.mc_passes, seed, prepared)


if "cnn_looped" not in LEARNERS:
    register_learner("cnn_looped", LoopedSmallCNN)


# ---------------------------------------------------------------- the benchmark

def episode_seconds(learner: dict, episodes: int, data_root, device) -> float:
    """Wall seconds per episode of `episodes` margin episodes of fashion_mnist, balanced-k50, run as one batch."""
    base = TARGETS["fashion_mnist"].replace(learner=learner_spec(learner))
    task, _ = regime_task(base, "balanced-k50", load_dataset(base.dataset, data_root))
    seeds = list(range(REPORT_SEED_OFFSET, REPORT_SEED_OFFSET + episodes))
    start = time.perf_counter()
    compare_strategies(task, {"margin": make_strategy("margin")}, seeds, data_root, device, progress=False)
    return (time.perf_counter() - start) / episodes


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=10, help="episodes trained together in the batched rows")
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from {', '.join(ROWS)}")
    parser.add_argument("--overwrite", action="store_true", help="replace this benchmark's earlier JSON")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    keep_freed_memory()
    out = check_output_file(HERE / "results" / f"deep_episode_cost_{device.type}.json", args.overwrite)
    results = {}
    for name in args.rows.split(","):
        learner, episodes = ROWS[name]
        episodes = episodes or args.batch
        seconds = episode_seconds(learner, episodes, args.data_root, device)
        results[name] = {"learner": learner_spec(learner), "episodes_in_batch": episodes,
                         "episode_s": round(seconds, 2)}
        print(f"{name:<15} {seconds:7.2f} s per episode ({episodes} episode(s) in one batch)", flush=True)
    if "cnn_looped" in results and "cnn_default" in results:
        results["speedup_default_over_looped"] = round(results["cnn_looped"]["episode_s"]
                                                       / results["cnn_default"]["episode_s"], 1)
    report = {
        "benchmark": "deep_episode_cost",
        "command": f"python benchmarks/deep_episode_cost.py --data-root ../shared/data --device {args.device} "
                   f"--batch {args.batch}",
        "setup": {"target": "fashion_mnist", "regime": "balanced-k50", "strategy": "margin",
                  "seeds_from": REPORT_SEED_OFFSET},
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                    "metaal": metaal.__version__},
        "results": results,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
