"""The deep transfer table (issues 15, 42): the CNN learner retrained each round, large batches.

    python benchmarks/deep_table.py --data-root ../shared/data --device cuda --jobs 1 \
        [--extra-policy policy_cnn=PATH]   # a policy meta-trained with --learner.name cnn
        [any `metaal grid` option]

`metaal grid` (metaal/commands/grid.py) with these defaults: the shipped policy `linear` (the
CNN has no matched policy: the pairing is warned about and recorded); the SmallCNN learner
(retrained each round from the previous round's weights: at most 150 Adam steps on minibatches
of 64, stopping at training loss 0.05; 8 MC-dropout passes, which BALD reads) for every
strategy; the targets Fashion-MNIST, KMNIST, MNIST digits 5-9 and all 59 characters of the
held-out Omniglot alphabets; the regimes balanced-k50 and imbalanced-k50 (a pool of 2000, 10
rounds of k=50; Omniglot holds 826 samples, so k=20, and no imbalanced pool of 400); margin,
entropy, BALD, BADGE, Cluster-Margin and random;
20 seeds from 70000, a range no run or choice has used; no lookahead references; output
benchmarks/results/deep_table/. Each cell is resumable as in the grid. On the 2-core CPU one
Fashion-MNIST margin episode costs about 6 s (benchmarks/deep_episode_cost.py); the table's
wall time is in RESULTS.md.
"""

import sys
from pathlib import Path

from metaal.commands import grid

HERE = Path(__file__).resolve().parent
DEFAULTS = {
    "--policy": "linear",
    "--out": str(HERE / "results" / "deep_table"),
    "--targets": "fashion_mnist,kmnist,mnist_digits_5-9,omniglot_sanskrit_tagalog_all",
    "--regimes": "balanced-k50,imbalanced-k50",
    "--learner": "cnn",
    "--baselines": "margin,entropy,bald,badge,cluster_margin,random",
    "--reference-candidates": "0",
    "--seeds": "20",
    "--seed-offset": "70000",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return grid.main(argv, command="python benchmarks/deep_table.py", defaults=grid.with_defaults(argv, DEFAULTS))


if __name__ == "__main__":
    sys.exit(main())
