"""What one deep active-learning episode costs on this machine, and so the deep transfer table.

    python benchmarks/deep_episode_cost.py --data-root ../shared/data [--device auto] [--overwrite]

The deep table (issue 15) runs the CNN learner retrained each round on pools of 2000-5000,
k of 20-50, at least 10 rounds, for 4 targets x 8 strategies x at least 10 paired seeds. This
times real episodes of its smallest setting (Fashion-MNIST, the balanced-k50 regime: 5-way,
pool 2000, 10 rounds of k=50), margin sampling, one seed, for the default SmallCNN and for a
cheaper one (fewer Adam steps, fewer MC-dropout passes), and extrapolates the table's cost from
the measured seconds per episode. Writes
benchmarks/results/deep_episode_cost_<device>.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

import metaal
from metaal.data import load_dataset
from metaal.device import resolve_device
from metaal.errors import exits_cleanly
from metaal.evaluate import REPORT_SEED_OFFSET, TARGETS, compare_strategies, regime_task
from metaal.learners import learner_spec
from metaal.outputs import check_output_file
from metaal.strategies import make_strategy

HERE = Path(__file__).parent
LEARNERS = {"cnn_default": {"name": "cnn"}, "cnn_cheap": {"name": "cnn", "steps": 50, "mc_passes": 4}}
TABLE = {"targets": 4, "strategies": 8, "seeds": 10}  # the smallest table issue 15 allows


def episode_seconds(learner: dict, data_root, device) -> float:
    """Wall seconds of one margin episode of fashion_mnist in the balanced-k50 regime."""
    base = TARGETS["fashion_mnist"].replace(learner=learner_spec(learner))
    task, _ = regime_task(base, "balanced-k50", load_dataset(base.dataset, data_root))
    start = time.perf_counter()
    compare_strategies(task, {"margin": make_strategy("margin")}, [REPORT_SEED_OFFSET], data_root, device,
                       progress=False)
    return time.perf_counter() - start


@exits_cleanly
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--overwrite", action="store_true", help="replace this benchmark's earlier JSON")
    args = parser.parse_args()
    device = resolve_device(args.device)
    out = check_output_file(HERE / "results" / f"deep_episode_cost_{device.type}.json", args.overwrite)
    episodes = TABLE["targets"] * TABLE["strategies"] * TABLE["seeds"]
    results = {}
    for name, learner in LEARNERS.items():
        seconds = episode_seconds(learner, args.data_root, device)
        results[name] = {"learner": learner_spec(learner), "episode_s": round(seconds, 1),
                         "table_hours_estimate": round(seconds * episodes / 3600, 2)}
        print(f"{name:<12} one episode {seconds:7.1f} s; the smallest deep table ({episodes} episodes) "
              f"about {seconds * episodes / 3600:.1f} h", flush=True)
    report = {
        "benchmark": "deep_episode_cost",
        "command": f"python benchmarks/deep_episode_cost.py --data-root ../shared/data --device {args.device}",
        "setup": {"target": "fashion_mnist", "regime": "balanced-k50", "strategy": "margin", "seeds": 1,
                  "table": TABLE, "estimate": "episode_s x targets x strategies x seeds, one episode at a time "
                                              "with every thread (cells at once share the same cores)"},
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                    "metaal": metaal.__version__},
        "results": results,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
