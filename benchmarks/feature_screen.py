"""Which candidate inputs would tell a policy more about the one-step gain? A screen, before training.

    python benchmarks/feature_screen.py --data-root ../shared/data [--episodes 48] [--datasets a,b]

The states of benchmarks/gain_predictability.py (margin runs the loop; at every round 64
candidates get their true one-step gain; seeds 20000..), with features recorded beyond the
schema's: the three that schema v2 added (computed here as metaal computed them for a pool held
in memory; v2 was tried and not kept and left metaal, RESEARCH_LOG.md row schema_v2), and label
propagation over a k-NN graph of the labeled set and the pool (Zhou et al. 2004), which the
schema has nothing like. Models of the gain (least squares, and a PolicyNet with the oracle
trainer's regression loss) are fitted on half the episodes of each target and tested on the
other half, once per feature set:
  - v1: the 11 features of schema v1 (metaal's one schema),
  - v2: schema v2 (v1 + embedding_norm, expected_gradient_length, pool_predicted_share),
  - v1+lp: v1 and the four label-propagation features,
  - v2+lp: all of them.
Reported per target and set: R^2 of the per-state-centred gains, and the share of the oracle's
top-1 advantage over margin that the fitted model's first pick recovers. Fitted on the target
itself, these are upper bounds for a policy meta-trained elsewhere.
Writes benchmarks/results/feature_screen/results.json.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import gain_predictability as gp
import torch

from metaal.errors import exits_cleanly
from metaal.evaluate import TARGETS
from metaal.features import SCHEMA, squared_distances
from metaal.outputs import check_output_dir

HERE = Path(__file__).parent
V2_FEATURES = ("embedding_norm", "expected_gradient_length", "pool_predicted_share")
LP_FEATURES = ("lp_disagreement", "lp_margin", "lp_class_probability", "nearest_labeled_agrees")
NEIGHBOURS, ALPHA, ITERATIONS = 10, 0.9, 30


def v2_features(ctx) -> torch.Tensor:
    """(B, m, 3) the V2_FEATURES of every pool sample: r / (1 + r), r = |embedding| over its median
    over the pool; g / (1 + g), g = sqrt(1 - sum p^2) r (the expected gradient length); the share
    of the pool predicted in the sample's predicted class."""
    p, embedding = ctx.pool.probs, ctx.pool.embedding
    norm = embedding.norm(dim=-1) / embedding.norm(dim=-1).median(-1, keepdim=True).values.clamp_min(1e-12)
    gradient = (1 - (p * p).sum(-1)).clamp_min(0).sqrt() * norm
    predicted = p.argmax(-1)
    shares = torch.nn.functional.one_hot(predicted, p.shape[-1]).to(p.dtype).mean(1)
    return torch.stack([norm / (1 + norm), gradient / (1 + gradient), torch.gather(shares, 1, predicted)], -1)


def propagated_labels(labeled_embedding, labeled_y, embedding, num_classes: int) -> torch.Tensor:
    """(B, m, C) class distribution of every pool sample by label propagation: labels spread
    over the symmetric, normalised k-NN graph of labeled set and pool, F <- a S F + (1 - a) Y."""
    nodes = torch.cat([labeled_embedding, embedding], 1)
    n = labeled_embedding.shape[1]
    d2 = squared_distances(nodes, nodes)
    d2.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    knn = d2.topk(NEIGHBOURS, -1, largest=False)
    width = knn.values[..., -1].median(-1).values[:, None, None].clamp_min(1e-12)
    weights = torch.zeros_like(d2).scatter_(-1, knn.indices, torch.exp(-knn.values / width))
    weights = (weights + weights.transpose(1, 2)) / 2
    inv_sqrt = weights.sum(-1).clamp_min(1e-12).rsqrt()
    graph = inv_sqrt[:, :, None] * weights * inv_sqrt[:, None, :]
    seeds = torch.nn.functional.pad(torch.nn.functional.one_hot(labeled_y, num_classes).float(),
                                    (0, 0, 0, embedding.shape[1]))
    spread = seeds
    for _ in range(ITERATIONS):
        spread = ALPHA * graph @ spread + (1 - ALPHA) * seeds
    pool = spread[:, n:]
    total = pool.sum(-1, keepdim=True)
    return torch.where(total > 0, pool / total.clamp_min(1e-12), torch.full_like(pool, 1 / num_classes))


def lp_features(ctx) -> torch.Tensor:
    """(B, m, 4) the LP_FEATURES of every pool sample (the simulation's labels: no label of the pool)."""
    p, labeled_y = ctx.pool.probs, ctx.simulation.labeled_y
    lp = propagated_labels(ctx.labeled_embedding, labeled_y, ctx.pool.embedding, p.shape[-1])
    top2 = lp.topk(2, -1).values
    nearest = squared_distances(ctx.pool.embedding, ctx.labeled_embedding).argmin(-1)
    return torch.stack([0.5 * (lp - p).abs().sum(-1), top2[..., 0] - top2[..., 1],
                        p.gather(-1, lp.argmax(-1, keepdim=True)).squeeze(-1),
                        (labeled_y.gather(1, nearest) == p.argmax(-1)).float()], -1)


def extra_features(ctx) -> torch.Tensor:
    """(B, m, 7) the V2_FEATURES, then the LP_FEATURES."""
    return torch.cat([v2_features(ctx), lp_features(ctx)], -1)


V2 = len(SCHEMA.names) + len(V2_FEATURES)
FEATURE_SETS = {  # columns of [SCHEMA | V2_FEATURES | LP_FEATURES]
    "v1": list(range(len(SCHEMA.names))),
    "v2": list(range(V2)),
    "v1+lp": list(range(len(SCHEMA.names))) + [V2 + i for i in range(len(LP_FEATURES))],
    "v2+lp": list(range(V2 + len(LP_FEATURES))),
}


def screen(features, gains) -> dict:
    half = features.shape[0] // 2
    out = {}
    for name, columns in FEATURE_SETS.items():
        train, test = (features[:half][..., columns], gains[:half]), (features[half:][..., columns], gains[half:])
        r = gp.evaluate({"margin": gp.margin_scorer, "linear": gp.fit_linear(*train), "mlp": gp.fit_mlp(*train)},
                        *test)
        advantage = r["oracle"] - r["margin"]
        out[name] = {"r2_linear": r["r2_linear"], "r2_mlp": r["r2_mlp"],
                     **{f"recovered_{m}": (r[m] - r["margin"]) / advantage if advantage > 0 else None
                        for m in ("linear", "mlp")}}
    return out


def summary(results: dict) -> dict:
    """Per feature set: the median R^2 and the mean recovered share over targets."""
    rows = {}
    for name in FEATURE_SETS:
        sets = [r[name] for r in results.values()]
        rows[name] = {f"median_{k}": statistics.median(s[k] for s in sets) for k in ("r2_linear", "r2_mlp")}
        for k in ("recovered_linear", "recovered_mlp"):
            rows[name][f"mean_{k}"] = statistics.mean(s[k] for s in sets if s[k] is not None)
    return rows


@exits_cleanly
def main(argv=None):
    parser = gp.target_arguments(__doc__, episodes=48, out=HERE / "results" / "feature_screen")
    args = parser.parse_args(argv)
    wanted = gp.wanted_targets(parser, args)
    out = check_output_dir(args.out, args.overwrite, writes=("results.json",))
    results = {}
    for target in wanted:
        start = time.perf_counter()
        results[target] = screen(*gp.states(TARGETS[target], args.episodes, args.data_root, extra=extra_features))
        cells = " | ".join(f"{k} R2 {v['r2_mlp']:.3f}" for k, v in results[target].items())
        print(f"{target:28s} {cells} ({time.perf_counter() - start:.0f} s)", flush=True)
    meta = {"command": "python benchmarks/feature_screen.py " + " ".join(argv or sys.argv[1:]),
            "episodes": args.episodes, "seed_offset": gp.SEED_OFFSET, "lp_features": list(LP_FEATURES),
            "feature_sets": {k: len(v) for k, v in FEATURE_SETS.items()}}
    overall = summary(results)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"meta": meta, "summary": overall, "targets": results},
                                                 indent=2) + "\n")
    for name, row in overall.items():
        print(name, {k: round(v, 3) for k, v in row.items()})
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    sys.exit(main())
