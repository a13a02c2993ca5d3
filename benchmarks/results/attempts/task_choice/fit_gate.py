"""Fit the gate of `plugin.py` on synthetic source episodes, never on a target.

For each regime of the source probe and each synthetic shape (Gaussian mixtures, Voronoi
regions), batches of 8 episodes run the shipped policy, recording `round_stats` each round,
and Cluster-Margin. Every round of an episode is one row; its target is the episode's AULC of
Cluster-Margin minus the policy's. A ridge regression on the standardised stats is the gate,
its penalty the one of `--l2` that five-fold cross-validation over source batches prefers. The
cross-validation says what the choice is worth on source episodes it was not fitted on (each
episode credited with Cluster-Margin's lead in the share of its rounds the gate gives
Cluster-Margin: an estimate, since the switch changes later rounds).

    python benchmarks/results/attempts/task_choice/fit_gate.py --batches 6
    python benchmarks/results/attempts/task_choice/fit_gate.py --batches 20 --l2 0.01,0.1,1 --out .../gate_v2.json
    python benchmarks/results/attempts/task_choice/fit_gate.py --batches 6 --with-label-agreement \
        --out .../gate_screen_label_agreement.json
"""

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metaal.data import TaskSpec
from metaal.data.synthetic import SHAPES, SyntheticTaskSampler
from metaal.errors import InputError, exits_cleanly
from metaal.learners import make_learner
from metaal.loop import run_active_learning
from metaal.metrics import aulc
from metaal.outputs import check_output_dir
from metaal.policy import load_policy
from metaal.strategies import Strategy, make_strategy

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from plugin import SHIPPED, STATS, round_stats  # noqa: E402


def _probe_regimes() -> dict:
    """The source probe's regimes (the sibling attempt's script), so both read the same tasks."""
    spec = importlib.util.spec_from_file_location("source_probe", HERE.parent / "policy_cluster" / "source_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.REGIMES


def label_agreement(ctx) -> torch.Tensor:
    """(B,) share of the available pool whose predicted class is the label of its nearest labeled
    sample in the embedding: low where the head's regions cross the labels' local structure. It
    reads the labeled set's labels, which QueryContext does not carry, so only the simulator's
    context gives it here (a screen for a later gate)."""
    nearest = torch.cdist(ctx.pool.embedding, ctx.labeled_embedding).argmin(-1)
    agree = (ctx.simulation.labeled_y.gather(1, nearest) == ctx.pool.probs.argmax(-1)).float()
    mask = ctx.available.float()
    return (agree * mask).sum(1) / mask.sum(1)


LABEL_STATS = ("label_agreement", "head_fit", "labeled_nn_agreement")


def label_stats(ctx) -> torch.Tensor:
    """(B, 3) how the head fits the labels bought so far: `label_agreement`; `head_fit`, the
    head's accuracy on the labeled set it was fitted on (below 1 where a linear head cannot
    separate even those); `labeled_nn_agreement`, the share of labeled samples whose nearest
    other labeled sample has their label (the labels' local consistency in the embedding).
    The head is refitted from the simulation (the same fit as the loop's, so the same head)."""
    sim = ctx.simulation
    fitted = sim.learner.fit(sim.prepared, sim.labeled_x, sim.labeled_y, sim.num_classes)
    head_fit = (fitted.predict(sim.labeled_x).probs.argmax(-1) == sim.labeled_y).float().mean(1)
    distances = torch.cdist(ctx.labeled_embedding, ctx.labeled_embedding)
    distances.diagonal(dim1=1, dim2=2).fill_(float("inf"))
    nearest = distances.argmin(-1)
    consistency = (sim.labeled_y.gather(1, nearest) == sim.labeled_y).float().mean(1)
    return torch.stack([label_agreement(ctx), head_fit, consistency], 1)


class RecordingPolicy(Strategy):
    """The shipped policy, keeping each round's stats (and the label agreement, or all three
    label stats, if asked)."""

    def __init__(self, with_agreement: bool = False, with_label_stats: bool = False):
        self.policy, self.rounds = load_policy(SHIPPED, device="cpu"), []
        self.with_label_stats = with_label_stats
        self.needs_simulation = with_agreement or with_label_stats

    def score(self, ctx):
        return self.policy.score(ctx)

    def select(self, ctx, k):
        stats = round_stats(ctx, k)
        if self.with_label_stats:
            stats = torch.cat([stats, label_stats(ctx)], 1)
        elif self.needs_simulation:
            stats = torch.cat([stats, label_agreement(ctx)[:, None]], 1)
        self.rounds.append(stats)
        return self.policy.select(ctx, k)


def run_batch(task: TaskSpec, sampler: SyntheticTaskSampler, seeds: list[int],
              with_agreement: bool) -> tuple[np.ndarray, np.ndarray]:
    """(rounds, B, S) stats along the policy's run, and (B,) Cluster-Margin minus policy AULC."""
    episodes = sampler.sample_batch(seeds)
    learner, recorder = make_learner(task.learner), RecordingPolicy(with_agreement)
    curves = {}
    for name, strategy in (("policy", recorder), ("cluster_margin", make_strategy("cluster_margin"))):
        result = run_active_learning(episodes, learner, strategy, task.rounds, task.k, seed=0)
        curves[name] = aulc(result.accuracy.numpy(), result.n_labeled.numpy())
    return torch.stack(recorder.rounds).numpy(), curves["cluster_margin"] - curves["policy"]


def fit_ridge(x: np.ndarray, y: np.ndarray, l2: float) -> dict:
    mean, std = x.mean(0), x.std(0) + 1e-8
    z = (x - mean) / std
    weights = np.linalg.solve(z.T @ z + l2 * len(z) * np.eye(z.shape[1]), z.T @ (y - y.mean()))
    return {"weights": weights, "bias": float(y.mean()), "mean": mean, "std": std}


def predict(gate: dict, x: np.ndarray) -> np.ndarray:
    return ((x - gate["mean"]) / gate["std"]) @ gate["weights"] + gate["bias"]


def cross_validate(batches: list[dict], l2: float, folds: int = 5) -> dict:
    """Held-out batches' mean value over always-the-policy: each episode gets its Cluster-Margin
    lead times the share of its rounds the gate (fitted without its batch) gives Cluster-Margin."""
    fold_of = np.arange(len(batches)) % folds
    values, shares = [], []
    for fold in range(folds):
        train = [b for b, f in zip(batches, fold_of) if f != fold]
        gate = fit_ridge(*rows_of(train), l2)
        for b in (b for b, f in zip(batches, fold_of) if f == fold):
            share = (predict(gate, b["stats"]) > 0).mean(0)      # (B,) share of rounds to Cluster-Margin
            values.extend(share * b["lead"])
            shares.extend(share)
    return {"value_over_policy": float(np.mean(values)), "share_of_rounds_to_cluster_margin": float(np.mean(shares))}


def rows_of(batches: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """The gate's training rows: every round of every episode of `batches` (each a dict with its
    stats (rounds, B, S) and lead (B,)), with its episode's lead as the target."""
    x = np.concatenate([b["stats"].reshape(-1, b["stats"].shape[-1]) for b in batches])
    y = np.concatenate([np.broadcast_to(b["lead"], b["stats"].shape[:2]).reshape(-1) for b in batches])
    return x, y


def collect(batches_per_cell: int, with_agreement: bool) -> list[dict]:
    batches = []
    for regime, options in _probe_regimes().items():
        task = TaskSpec("synthetic", **options)
        for shape in SHAPES:
            sampler = SyntheticTaskSampler(task.sampler()[0].spec, shape=shape)
            for _ in range(batches_per_cell):
                first = 800000 + 100 * len(batches)  # a seed range no other script uses
                stats, lead = run_batch(task, sampler, list(range(first, first + 8)), with_agreement)
                batches.append({"regime": regime, "shape": shape, "stats": stats, "lead": lead})
            mean = np.mean([b["lead"].mean() for b in batches[-batches_per_cell:]])
            print(f"{regime:<22} {shape:<8} Cluster-Margin - policy {mean:+.4f}", flush=True)
    return batches


@exits_cleanly
def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=6, help="batches of 8 episodes per regime and shape")
    parser.add_argument("--l2", default="0.1", help="ridge penalties on the standardised stats, comma-separated: "
                        "the one cross-validation prefers is kept")
    parser.add_argument("--with-label-agreement", action="store_true",
                        help="add label_agreement to the stats: a screen (plugin.py cannot compute it)")
    parser.add_argument("--out", type=Path, default=HERE / "gate.json")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args()
    if args.batches < 2:
        raise InputError(f"--batches must be at least 2 (cross-validation needs held-out batches), got {args.batches}")
    penalties = [float(value) for value in args.l2.split(",")]
    if min(penalties) <= 0:
        raise InputError(f"--l2 penalties must be positive, got {args.l2}")
    check_output_dir(args.out.parent, args.overwrite, writes=(args.out.name,))
    torch.set_num_threads(2)
    start = time.perf_counter()
    batches = collect(args.batches, args.with_label_agreement)
    validated = {l2: cross_validate(batches, l2) for l2 in penalties}
    l2 = max(penalties, key=lambda value: validated[value]["value_over_policy"])
    gate = fit_ridge(*rows_of(batches), l2)
    leads = np.concatenate([b["lead"] for b in batches])
    summary = {"always_cluster_margin_over_policy": float(leads.mean()),
               "oracle_choice_over_policy": float(np.maximum(leads, 0).mean()), "l2": l2,
               "cross_validated": validated[l2], "cross_validated_by_l2": {str(k): v for k, v in validated.items()}}
    print(json.dumps(summary, indent=1))
    names = list(STATS) + (["label_agreement"] if args.with_label_agreement else [])
    args.out.write_text(json.dumps({
        "command": " ".join(["python", *sys.argv]), "seconds": round(time.perf_counter() - start),
        "stats": names, **{key: np.asarray(value).tolist() for key, value in gate.items()},
        "summary": summary,
        "batches": [{"regime": b["regime"], "shape": b["shape"], "lead": b["lead"].tolist()} for b in batches]},
        indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
