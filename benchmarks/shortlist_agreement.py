"""How often the policy's shortlist (features only for the samples of smallest margin) changes its picks.

    python benchmarks/shortlist_agreement.py --data-root ../shared/data [--shortlists 1024,4096]

metaal.select computes a feature-reading strategy's features only for the `shortlist` pool
samples of smallest margin (default metaal.deploy.SHORTLIST). This measures what that costs in
picks, against shortlist=None (features for every sample), for the default meta-trained
policy with its default sequential selection, k=10:
  - pools: 60,000 MNIST + 40,000 Fashion-MNIST training images (the query_time pool), and the
    60,000 KMNIST training images;
  - the user's model: query_time's MLP or CNN, trained on the first 20, 100 or 500 images of
    the pool's first dataset;
  - budget_used 0, 0.5 and 0.9 (a policy input).
For each of the 36 settings: the picks each shortlist shares with the exact selection (of 10),
and the largest margin rank (0: smallest margin) among the exact picks; a shortlist larger than
that rank makes the same picks whenever the candidates it keeps are the same.
Writes --out (default benchmarks/results/shortlist_agreement.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch
from query_time import Net, write_report

import metaal
from metaal.data import load_dataset
from metaal.deploy import SHORTLIST
from metaal.errors import exits_cleanly
from metaal.outputs import check_output_file

HERE = Path(__file__).parent
LABELED = (20, 100, 500)
BUDGET_USED = (0.0, 0.5, 0.9)


def train(kind: str, x: torch.Tensor, y: torch.Tensor) -> Net:
    """query_time's user model: 100 full-batch Adam steps on the labeled images."""
    torch.manual_seed(0)
    model = Net(kind)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(100):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[0], y).backward()
        opt.step()
    return model.eval()


@torch.inference_mode()
def margin_ranks(model: Net, pool: torch.Tensor) -> torch.Tensor:
    """(N,) each sample's rank by margin between the top two probabilities, 0 the smallest."""
    probs = torch.cat([model(pool[i:i + 8192])[0].softmax(-1) for i in range(0, len(pool), 8192)])
    top2 = probs.topk(2, dim=-1).values
    rank = torch.empty(len(pool), dtype=torch.long)
    rank[(top2[:, 0] - top2[:, 1]).argsort()] = torch.arange(len(pool))
    return rank


def pools(data_root: str | None) -> dict:
    """name -> (pool images, the dataset the labeled images come from)."""
    mnist, fashion, kmnist = (load_dataset(name, data_root) for name in ("mnist", "fashion_mnist", "kmnist"))
    return {"mnist+fashion_mnist": (torch.cat([mnist.train.X, fashion.train.X[:40_000]]), mnist.train),
            "kmnist": (kmnist.train.X, kmnist.train)}


def measure(policy, pool: torch.Tensor, labeled, kind: str, shortlists: list[int]) -> list[dict]:
    rows = []
    for n_labeled in LABELED:
        x, y = labeled.X[:n_labeled], labeled.y[:n_labeled]
        model = train(kind, x, y)
        rank = margin_ranks(model, pool)
        for budget_used in BUDGET_USED:
            query = (policy, model, pool, 10, x, y, 10)
            exact = metaal.select(*query, budget_used=budget_used, shortlist=None, device="cpu")
            row = {"model": kind, "labeled": n_labeled, "budget_used": budget_used,
                   "max_margin_rank_of_exact_picks": int(rank[exact].max())}
            for shortlist in shortlists:
                picks = metaal.select(*query, budget_used=budget_used, shortlist=shortlist, device="cpu")
                row[f"shared_{shortlist}"] = len(set(exact.tolist()) & set(picks.tolist()))
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


@exits_cleanly
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--shortlists", default=f"1024,{SHORTLIST}", help="comma-separated shortlist sizes")
    parser.add_argument("--policy", default="linear")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "shortlist_agreement.json")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier JSON at --out")
    args = parser.parse_args()
    out = check_output_file(args.out, args.overwrite)
    shortlists = [int(s) for s in args.shortlists.split(",")]
    policy = metaal.load_policy(args.policy, "cpu")
    rows = {name: [row for kind in ("mlp", "cnn") for row in measure(policy, pool, labeled, kind, shortlists)]
            for name, (pool, labeled) in pools(args.data_root).items()}
    everything = [row for pool_rows in rows.values() for row in pool_rows]
    summary = {"settings": len(everything),
               "max_margin_rank_of_exact_picks": max(r["max_margin_rank_of_exact_picks"] for r in everything)}
    for shortlist in shortlists:
        shared = [r[f"shared_{shortlist}"] for r in everything]
        summary[f"shared_{shortlist}_mean"] = round(sum(shared) / len(shared), 2)
        summary[f"shared_{shortlist}_min"] = min(shared)
        summary[f"settings_identical_{shortlist}"] = sum(s == 10 for s in shared)
    report = {"benchmark": "shortlist_agreement",
              "command": f"python benchmarks/shortlist_agreement.py --data-root ../shared/data "
                         f"--shortlists {args.shortlists}",
              "setup": {"k": 10, "policy": Path(args.policy).name, "selection": "sequential (default)",
                        "default_shortlist": SHORTLIST},
              "machine": {"platform": platform.platform(), "torch": torch.__version__, "metaal": metaal.__version__},
              "summary": summary, "pools": rows}
    write_report(out, report, summary)


if __name__ == "__main__":
    sys.exit(main())
