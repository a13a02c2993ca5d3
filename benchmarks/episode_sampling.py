"""Episode sampling cost: a 5-way MNIST episode with a 500-sample pool.

    python benchmarks/episode_sampling.py --data-root ../shared/data

Writes benchmarks/results/episode_sampling.json. Reports the per-episode time of
  - learn2learn's task description alone (class subset + per-class samples),
  - all index sampling (adds the evaluation set and the pool shuffle, in torch),
  - a whole episode (indices + gathering the tensors on the device),
  - whole episodes drawn 64 at a time (sample_batch),
next to a reference round of classifier training: multinomial logistic regression on
flattened pixels, 100 full-batch Adam steps on 55 labeled samples, then predicting the
500-sample pool and 100-sample evaluation set. That is a stand-in for the learners of
the simulator (issue 3); it only sets the scale that sampling must stay small against.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from metaal import __version__
from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.device import resolve_device
from metaal.errors import exits_cleanly
from metaal.outputs import check_output_file
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv


def per_call_ms(fn, repeats: int, per_call_items: int = 1) -> float:
    """Median wall time of fn() over `repeats` calls, in ms per item."""
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3 / per_call_items


def reference_round(episode, steps: int = 100) -> None:
    x = torch.cat([episode.labeled_x, episode.pool_x[:50]]).flatten(1)
    y = torch.cat([episode.labeled_y, episode.pool_y[:50]])
    mean, std = x.mean(0), x.std(0) + 1e-3
    w = torch.zeros(x.shape[1], 5, requires_grad=True)
    b = torch.zeros(5, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(((x - mean) / std) @ w + b, y).backward()
        opt.step()
    with torch.no_grad():
        for part in (episode.pool_x, episode.eval_x):
            ((part.flatten(1) - mean) / std @ w + b).softmax(-1)


@exits_cleanly
def main():
    load_plugins_from_argv(None)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None, help="shared data folder (default: $METAAL_DATA_ROOT)")
    parser.add_argument("--device", default="cpu", help="auto | cpu | cuda")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "episode_sampling.json"))
    parser.add_argument("--overwrite", action="store_true", help="replace the earlier --out")
    parser.add_argument("--plugins", help=PLUGINS_HELP)
    args = parser.parse_args()
    out = check_output_file(args.out, args.overwrite)
    torch.manual_seed(0)

    device = resolve_device(args.device)
    dataset = load_dataset("mnist", args.data_root)
    spec = EpisodeSpec(n_ways=5, initial_per_class=1, pool_per_class=100, eval_per_class=20)
    sampler = EpisodeSampler(dataset, spec, device=device)
    sampler.sample_batch(range(8))  # warm-up

    results = {
        # The first two reach into the sampler to time its stages separately.
        "l2l_description_ms": per_call_ms(lambda i: sampler._taskset.sample_task_description(), args.repeats),
        "index_sampling_ms": per_call_ms(lambda i: sampler._sample_indices(i), args.repeats),
        "episode_ms": per_call_ms(lambda i: sampler.sample(i), args.repeats),
        "episode_in_batch_of_64_ms": per_call_ms(
            lambda i: sampler.sample_batch(range(i * 64, i * 64 + 64)), max(5, args.repeats // 30), 64),
    }
    episode = sampler.sample(0)
    results["reference_round_ms"] = per_call_ms(lambda i: reference_round(episode), max(5, args.repeats // 10))
    results["episode_vs_reference_round"] = results["episode_ms"] / results["reference_round_ms"]
    report = {
        "benchmark": "episode_sampling",
        "command": "python benchmarks/episode_sampling.py --data-root ../shared/data",
        "setup": {"dataset": "mnist", "spec": vars(spec) | {"pool_size": 500}, "device": str(device),
                  "repeats": args.repeats, "statistic": "median"},
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "metaal": __version__},
        "results": {k: round(v, 4) for k, v in results.items()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for k, v in report["results"].items():
        print(f"{k:<28}{v:>10.4f}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
