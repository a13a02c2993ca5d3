"""Query time of a frozen policy against entropy sampling on one 100k-sample pool.

    python benchmarks/query_time.py --data-root ../shared/data [--device auto] [--pool 100000]

The pool: 60,000 MNIST and 40,000 Fashion-MNIST training images. The user's model (--model):
an MLP 784-64-10 or a small CNN, returning logits and a 64-d embedding, trained on 500
labeled MNIST images.
Timed, best of --repeats interleaved rounds, to pick k=10:
  - entropy_plain: the model over the pool in batches, entropy, top-k (what entropy sampling
    costs anywhere);
  - entropy_select: metaal.select with entropy (streaming, the reference pass, exclusion);
  - policy_select: metaal.select with the default meta-trained policy (features + network),
    with its default sequential selection (kept candidates, then k picks one at a time) and
    its default shortlist (features only for the 4096 samples of smallest margin);
  - policy_exact_select: the same with shortlist=None (features for every pool sample), and
    how many of its k picks the default makes too;
  - policy_topk_select: the same policy labeling its k highest scores at once;
  - policy_ref128_select: the same with reference_size=128 (pool-wide features estimated on
    128 reference samples instead of 512), and how many of its k picks the default makes too.
The ratio policy_select / entropy_plain is the cost of the policy, features included.
Writes benchmarks/results/query_time_<model>_<device>.json.
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
from metaal.deploy import SHORTLIST
from metaal.device import resolve_device
from metaal.errors import exits_cleanly
from metaal.features import entropy
from metaal.outputs import check_output_file
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv
from metaal.strategies import make_strategy

HERE = Path(__file__).parent


class Net(torch.nn.Module):
    """The user's classifier, returning (logits, 64-d embedding): an MLP (nearly free to run,
    the worst case for the policy's relative cost) or a small CNN (a typical image model)."""

    def __init__(self, kind: str):
        super().__init__()
        nn = torch.nn
        if kind == "mlp":
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Flatten(), nn.Linear(32 * 7 * 7, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        h = self.body(x)
        return self.head(h), h


@torch.inference_mode()
def entropy_plain(model, pool, k, batch_size, device):
    scores = []
    for start in range(0, len(pool), batch_size):
        x = pool[start:start + batch_size]
        if device.type == "cuda":
            x = x.pin_memory()
        scores.append(entropy(model(x.to(device, non_blocking=True))[0].softmax(-1)))
    return torch.cat(scores).topk(k).indices.cpu()


def best_of(fns: dict, repeats: int) -> dict:
    """Best time of each function over `repeats` rounds, the functions interleaved in each
    round so that a slow spell of the machine (shared cores) hits them alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


@exits_cleanly
def main(argv: list[str] | None = None):
    load_plugins_from_argv(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--pool", type=int, default=100_000, help="pool size (repeats the images past 100k)")
    parser.add_argument("--batch-size", type=int, default=8192)
    parser.add_argument("--model", default="mlp", choices=["mlp", "cnn"], help="the user's classifier")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--policy", default="linear")
    parser.add_argument("--out", type=Path, help="the JSON to write (default: results/query_time_MODEL_DEVICE.json)")
    parser.add_argument("--overwrite", action="store_true", help="replace this benchmark's earlier JSON")
    parser.add_argument("--plugins", help=PLUGINS_HELP)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    suffix = "" if args.pool == 100_000 else f"_{args.pool}"
    out = check_output_file(args.out or HERE / "results" / f"query_time_{args.model}_{device.type}{suffix}.json",
                            args.overwrite)

    mnist, fashion = load_dataset("mnist", args.data_root), load_dataset("fashion_mnist", args.data_root)
    images = torch.cat([mnist.train.X, fashion.train.X[:40_000]])
    pool = images.repeat((args.pool + len(images) - 1) // len(images), 1, 1, 1)[:args.pool]
    torch.manual_seed(0)
    model = Net(args.model)
    x, y = mnist.train.X[:500], mnist.train.y[:500]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[0], y).backward()
        opt.step()
    model = model.to(device).eval()
    policy = metaal.load_policy(args.policy, device)
    policy_topk = metaal.load_policy(args.policy, device, sequential=False)

    def select(strategy, reference_size=None, shortlist=SHORTLIST):
        return metaal.select(strategy, model, pool, 10, x, y, 10, batch_size=args.batch_size, device=device,
                             reference_size=reference_size, shortlist=shortlist)

    timings = best_of({
        "entropy_plain_s": lambda: entropy_plain(model, pool, 10, args.batch_size, device),
        "entropy_select_s": lambda: select(make_strategy("entropy")),
        "policy_select_s": lambda: select(policy),
        "policy_exact_select_s": lambda: select(policy, shortlist=None),
        "policy_topk_select_s": lambda: select(policy_topk),
        "policy_ref128_select_s": lambda: select(policy, 128),
    }, args.repeats)
    same = torch.equal(entropy_plain(model, pool, 10, args.batch_size, device), select(make_strategy("entropy")))
    results = ratios(timings)
    results["entropy_select_matches_plain"] = bool(same)
    results["policy_picks_in_exact"] = len(set(select(policy).tolist()) & set(select(policy, shortlist=None).tolist()))
    results["policy_ref128_picks_in_default"] = len(set(select(policy).tolist()) & set(select(policy, 128).tolist()))
    report = {
        "benchmark": "query_time",
        "command": f"python benchmarks/query_time.py --data-root ../shared/data --device {args.device} "
                   f"--pool {args.pool} --model {args.model}",
        "setup": {"pool": args.pool, "k": 10, "batch_size": args.batch_size, "model": args.model,
                  "device": str(device), "statistic": f"best of {args.repeats} interleaved rounds"},
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None,
                    "metaal": metaal.__version__},
        "results": results,
    }
    write_report(out, report, results)


def ratios(timings: dict) -> dict:
    """The timings in seconds, and each policy timing over plain (or select's) entropy."""
    results = {k: round(v, 4) for k, v in timings.items()}
    results["policy_vs_entropy_plain"] = round(timings["policy_select_s"] / timings["entropy_plain_s"], 2)
    results["policy_exact_vs_entropy_plain"] = round(timings["policy_exact_select_s"] / timings["entropy_plain_s"], 2)
    results["policy_topk_vs_entropy_plain"] = round(timings["policy_topk_select_s"] / timings["entropy_plain_s"], 2)
    results["policy_vs_entropy_select"] = round(timings["policy_select_s"] / timings["entropy_select_s"], 2)
    results["policy_ref128_vs_entropy_plain"] = round(timings["policy_ref128_select_s"] / timings["entropy_plain_s"], 2)
    return results


def write_report(out: Path, report: dict, figures: dict) -> None:
    """Write the benchmark's JSON and print its figures, one a line."""
    out.write_text(json.dumps(report, indent=2) + "\n")
    for key, value in figures.items():
        print(f"{key:<36}{value}")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
