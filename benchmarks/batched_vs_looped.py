"""Batched vs looped: 64 episodes through the fast head, in one call or one at a time.

    python benchmarks/batched_vs_looped.py --data-root ../shared/data

64 MNIST 5-way episodes (pool 500). Two workloads, each timed batched (B=64 in one call) and
looped (64 calls with B=1), same learner and same arithmetic:
  - fit_predict: fit the logistic-regression head (8 bootstrap members, 100 steps) on 55
    labeled samples and predict the 500-sample pool (the pool is prepared beforehand, as it
    is once per episode in the loop);
  - al_run: a whole active-learning run with margin sampling, 20 rounds of k=5, features
    included.
Writes benchmarks/results/batched_vs_looped.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from metaal import __version__
from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.errors import exits_cleanly
from metaal.learners import LogisticRegression
from metaal.loop import run_active_learning
from metaal.outputs import check_output_file
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv
from metaal.strategies import make_strategy


def best_of(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@exits_cleanly
def main():
    load_plugins_from_argv(None)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "batched_vs_looped.json"))
    parser.add_argument("--overwrite", action="store_true", help="replace the earlier --out")
    parser.add_argument("--plugins", help=PLUGINS_HELP)
    args = parser.parse_args()
    out = check_output_file(args.out, args.overwrite)

    dataset = load_dataset("mnist", args.data_root)
    sampler = EpisodeSampler(dataset, EpisodeSpec(n_ways=5, initial_per_class=1, pool_per_class=100, eval_per_class=20))
    batch = sampler.sample_batch(range(args.episodes))
    singles = [sampler.sample(s) for s in range(args.episodes)]
    learner = LogisticRegression()

    def fit_inputs(episode):  # the labeled set (initial + 50 pool samples) and the prepared pool
        ep = episode if episode.pool_y.ndim == 2 else type(episode)(**{k: v[None] for k, v in vars(episode).items()})
        x = torch.cat([ep.labeled_x, ep.pool_x[:, :50]], 1)
        y = torch.cat([ep.labeled_y, ep.pool_y[:, :50]], 1)
        return learner.prepare(ep.pool_x, torch.Generator().manual_seed(0)), x, y

    def fit_predict(inputs):
        prepared, x, y = inputs
        learner.fit(prepared, x, y, 5, torch.Generator().manual_seed(0)).predict_prepared("pool")

    def al_run(episode):
        run_active_learning(episode, learner, make_strategy("margin"), rounds=20, k=5)

    results = {}
    workloads = (("fit_predict", fit_predict, fit_inputs(batch), [fit_inputs(e) for e in singles]),
                 ("al_run", al_run, batch, singles))
    for name, work, batched_input, looped_inputs in workloads:
        batched = best_of(lambda work=work, inp=batched_input: work(inp), args.repeats)
        looped = best_of(lambda work=work, inps=looped_inputs: [work(i) for i in inps], args.repeats)
        results[name] = {"batched_s": round(batched, 4), "looped_s": round(looped, 4),
                         "speedup": round(looped / batched, 2)}
        print(f"{name:<12} batched {batched:8.3f} s   looped {looped:8.3f} s   speedup {looped / batched:5.2f}x")

    report = {
        "benchmark": "batched_vs_looped",
        "command": "python benchmarks/batched_vs_looped.py --data-root ../shared/data",
        "setup": {"episodes": args.episodes, "dataset": "mnist", "n_ways": 5, "pool": 500,
                  "learner": {"name": "logreg", "n_members": learner.n_members, "steps": learner.steps},
                  "statistic": f"best of {args.repeats}"},
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                    "torch": torch.__version__, "metaal": __version__},
        "results": results,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
