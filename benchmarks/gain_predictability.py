"""How much of the one-step oracle's advantage can any policy on the schema's features recover?

    python benchmarks/gain_predictability.py --data-root ../shared/data [--episodes 32] [--datasets a,b]

A diagnostic for issue 6, not a strategy. On every transfer-table target (episode shapes
from benchmarks/transfer_table.py, but seeds 20000.., which the table never uses) margin
sampling runs the loop; at every round, 64 candidates (the 16 with the smallest margin plus
48 drawn uniformly) get their true one-step accuracy gain, as the oracle trainer sees them.
Then, per target, models of the gain are fitted on the states of half the episodes and tested
on the other half:
  - linear: least squares on the features (both centred per state),
  - mlp: a PolicyNet (no pool context) trained with the oracle trainer's regression loss.
Fitted on the target itself, they are an upper bound for a policy meta-trained elsewhere.

Reported per target (test half): R^2 of the per-state-centred gains, and the mean true gain
of the candidate each scorer ranks first (oracle = the best candidate, random = the mean
candidate, margin, linear, mlp), plus the share of the oracle's top-1 advantage over margin
that the fitted models recover. Writes benchmarks/results/gain_predictability/results.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from metaal.errors import exits_cleanly
from metaal.evaluate import TARGETS, warn
from metaal.features import SCHEMA
from metaal.learners import make_learner
from metaal.loop import run_active_learning
from metaal.outputs import check_output_dir
from metaal.policy import PolicyNet
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv
from metaal.strategies import QueryContext, Selection, Strategy, candidate_gains, make_strategy, sample_candidates
from metaal.trainers import regression_loss

HERE = Path(__file__).parent

SEED_OFFSET = 20_000
CANDIDATES, TOP = 64, 16


class RecordingMargin(Strategy):
    """Margin sampling that records, at every state, candidates' features and true gains."""

    name = "margin-recording"
    needs_simulation = True  # the true gains refit the learner with the candidates' labels

    def __init__(self, candidates: int, extra=None):
        self.margin, self.candidates, self.extra = make_strategy("margin"), candidates, extra

    def select(self, ctx: QueryContext, k: int) -> Selection:
        margin_score = self.margin.score(ctx)
        candidates = sample_candidates(ctx, self.candidates, prefer=margin_score, top_share=TOP / CANDIDATES)
        rows = torch.arange(candidates.shape[0])[:, None]
        features = ctx.features if self.extra is None else torch.cat([ctx.features, self.extra(ctx)], -1)
        record = {"features": features[rows, candidates], "gains": candidate_gains(ctx.simulation, candidates)}
        return Selection(self.margin.select(ctx, k), record)


def states(task, episodes: int, data_root, extra=None) -> tuple[torch.Tensor, torch.Tensor]:
    """features (E, S, M, F) and gains (E, S, M) of S states of E episodes; `extra(ctx)` (B, m, X):
    more features to record after the schema's."""
    sampler, notes = task.sampler(data_root)
    warn(notes)
    spec = sampler.spec
    batch = sampler.sample_batch(range(SEED_OFFSET, SEED_OFFSET + episodes))
    # as many candidates at every state, also in the last round of a small pool
    recorder = RecordingMargin(min(CANDIDATES, spec.n_ways * spec.pool_per_class - (task.rounds - 1) * task.k), extra)
    records = run_active_learning(batch, make_learner(task.learner), recorder, task.rounds, task.k, seed=0).records
    return torch.stack([r["features"] for r in records], 1), torch.stack([r["gains"] for r in records], 1)


def centred(t: torch.Tensor) -> torch.Tensor:
    return t - t.mean(-2 if t.ndim == 4 else -1, keepdim=True)


def fit_linear(features, gains):
    x, y = centred(features).reshape(-1, features.shape[-1]), centred(gains).reshape(-1, 1)
    weights = torch.linalg.lstsq(x.double(), y.double(), rcond=None).solution.float()
    return lambda f: (f @ weights).squeeze(-1)


def fit_mlp(features, gains, steps: int = 400):
    torch.manual_seed(0)
    net = PolicyNet(n_features=features.shape[-1], hidden=64, context=False)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    f, g = features.flatten(0, 1), gains.flatten(0, 1)
    available = torch.ones(g.shape, dtype=torch.bool)
    for _ in range(steps):
        loss = regression_loss(net(f, available), g)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    return lambda x: net(x.flatten(0, 1), torch.ones(x.shape[:-1], dtype=torch.bool).flatten(0, 1)).view(x.shape[:-1])


def margin_scorer(features: torch.Tensor) -> torch.Tensor:
    return -features[..., SCHEMA.index("margin")]


def evaluate(scorers: dict, features, gains) -> dict:
    g = centred(gains)
    out = {"oracle": float(gains.max(-1).values.mean()), "random": float(gains.mean())}
    for name, scorer in scorers.items():
        with torch.no_grad():
            score = scorer(features)
        out[name] = float(gains.gather(-1, score.argmax(-1, keepdim=True)).mean())
        if name != "margin":
            s = centred(score)
            scale = (s * g).sum() / (s * s).sum().clamp_min(1e-12)  # best scale: R^2 of the ranking signal
            out[f"r2_{name}"] = float(1 - ((g - scale * s) ** 2).sum() / (g ** 2).sum())
    return out


def target_arguments(doc: str, episodes: int, out: Path) -> argparse.ArgumentParser:
    """The arguments of the diagnostics on the transfer-table targets (this one, feature_screen.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--episodes", type=int, default=episodes, help="per target; half fit, half test")
    parser.add_argument("--datasets", default=",".join(TARGETS))
    parser.add_argument("--out", default=str(out))
    parser.add_argument("--overwrite", action="store_true", help="replace the results.json in --out")
    return parser


def wanted_targets(parser: argparse.ArgumentParser, args) -> list[str]:
    wanted = args.datasets.split(",")
    unknown = [d for d in wanted if d not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    return wanted


@exits_cleanly
def main(argv=None):
    load_plugins_from_argv(argv)
    parser = target_arguments(__doc__, episodes=32, out=HERE / "results" / "gain_predictability")
    parser.add_argument("--plugins", help=PLUGINS_HELP)
    args = parser.parse_args(argv)
    wanted = wanted_targets(parser, args)
    out = check_output_dir(args.out, args.overwrite, writes=("results.json",))
    results = {}
    for target in wanted:
        start = time.perf_counter()
        features, gains = states(TARGETS[target], args.episodes, args.data_root)
        half = args.episodes // 2
        train, test = (features[:half], gains[:half]), (features[half:], gains[half:])
        scorers = {"margin": margin_scorer, "linear": fit_linear(*train), "mlp": fit_mlp(*train)}
        r = evaluate(scorers, *test)
        advantage = r["oracle"] - r["margin"]
        for name in ("linear", "mlp"):
            r[f"recovered_{name}"] = (r[name] - r["margin"]) / advantage if advantage > 0 else None
        r["states"], r["seconds"] = int(gains[half:].shape[0] * gains.shape[1]), round(time.perf_counter() - start, 1)
        results[target] = r
        print(f"{target:28s} top-1 gain: oracle {r['oracle']:+.4f} margin {r['margin']:+.4f} "
              f"linear {r['linear']:+.4f} mlp {r['mlp']:+.4f} random {r['random']:+.4f} | "
              f"R2 linear {r['r2_linear']:.3f} mlp {r['r2_mlp']:.3f}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"command": "python benchmarks/gain_predictability.py " + " ".join(argv or sys.argv[1:]),
            "episodes": args.episodes, "candidates": CANDIDATES, "top_by_margin": TOP,
            "seed_offset": SEED_OFFSET}
    (out / "results.json").write_text(json.dumps({"meta": meta, "targets": results}, indent=2) + "\n")
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    sys.exit(main())
