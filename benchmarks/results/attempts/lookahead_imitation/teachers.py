"""Is the multi-step target a better teacher than the one-step gain? Each as a strategy with
the true labels, in the meta-training task's own loop: margin; the one-step oracle (label the k
of 32 candidates with the largest one-step gain); and the rollout oracle with horizon 2 and 3
(the k of the same 32 with the largest rollout gain, strategies.rollout_gains). If the rollout
oracle is no better than the one-step oracle, imitating it has nothing more to teach.

    python benchmarks/results/attempts/lookahead_imitation/teachers.py   # writes teachers.json beside this file

Task: 5-way MNIST digits 5-9 (the validation classes), 100 pool and 100 evaluation samples per
class, 1 initial label per class, 20 rounds of k=5, the logistic head; development seeds
10000-10039.
"""

import json
from pathlib import Path

import numpy as np

from metaal.data import TaskSpec
from metaal.evaluate import compare_strategies
from metaal.metrics import aulc
from metaal.ranking import paired_p_value
from metaal.strategies import OneStepOracle, make_strategy, rollout_gains

HERE = Path(__file__).resolve().parent
CANDIDATES = 32


class RolloutOracle(OneStepOracle):
    """The one-step oracle's candidates, ranked by their rollout gain instead."""

    def __init__(self, horizon: int, k: int):
        super().__init__(CANDIDATES)
        self.horizon, self.k, self.name = horizon, k, f"rollout_oracle_h{horizon}"

    def score(self, ctx):
        self._available = ctx.available  # gains() sees only the simulation; the rollout needs this too
        return super().score(ctx)

    def gains(self, sim, candidates):
        return rollout_gains(sim, self._available, candidates, self.horizon, self.k)


def main():
    task = TaskSpec(dataset="mnist", classes=(5, 6, 7, 8, 9))
    strategies = {"margin": make_strategy("margin"), "oracle": OneStepOracle(CANDIDATES),
                  "rollout_oracle_h2": RolloutOracle(2, task.k), "rollout_oracle_h3": RolloutOracle(3, task.k)}
    result = compare_strategies(task, strategies, list(range(10000, 10040)), data_root="../shared/data",
                                progress=False)
    curves = result.curves
    scores = {name: aulc(acc, curves.n_labeled) for name, acc in curves.accuracy.items()}
    out = {"task": "mnist 5-9, 5-way, pool 100/class, 20 rounds k=5, logreg", "seeds": "10000-10039",
           "candidates": CANDIDATES, "seconds": result.seconds,
           "aulc": {name: float(s.mean()) for name, s in scores.items()}, "differences": {}}
    for a, b in [("oracle", "margin"), ("rollout_oracle_h2", "margin"), ("rollout_oracle_h3", "margin"),
                 ("rollout_oracle_h2", "oracle"), ("rollout_oracle_h3", "oracle")]:
        d = scores[a] - scores[b]
        half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
        out["differences"][f"{a} - {b}"] = {"mean": float(d.mean()), "ci95": [float(d.mean() - half),
                                                                             float(d.mean() + half)],
                                            "wins": int((d > 0).sum()), "losses": int((d < 0).sum()),
                                            "p": paired_p_value(scores[a], scores[b])}
    (HERE / "teachers.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
