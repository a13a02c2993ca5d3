"""Regime probe (issue 14, stop 32): the benchmark's tabular targets with a non-linear head.

Where margin fails on the tabular targets, it fails together with the linear head: on the
checkerboards a logistic head cannot fit the labels, so the least-certain samples sit along a
boundary that does not exist, and Cluster-Margin's spread wins (+0.025 to +0.031 at
imbalanced-k50 on the report grid). Is that a property of the tasks or of the head? This
plug-in registers `rff_logreg`: the same logistic regression on random Fourier features of its
inputs (an RBF kernel head; bandwidth the median pairwise distance of the pool's inputs, from the
pool alone, so nothing leaks). The grid runs with it in every cell (`--learner rff_logreg`); the
policy, meta-trained with the linear head, is frozen and transferred as it is.

Questions, set before the grid ran (development seeds; a probe, not a candidate): on the three
checkerboards, is margin's AULC higher with this head than with the linear one, and is
Cluster-Margin's lead over margin smaller? Over the tabular targets, is the policy still above
margin on average with a head it was not trained with?

    OMP_NUM_THREADS=1 python benchmarks/transfer_grid.py --data-root ../shared/data --jobs 2 --seed-offset 10000 \
      --seeds 20 --reference-candidates 0 --learner rff_logreg --baselines margin,cluster_margin,badge,typiclust \
      --targets "$(cat benchmarks/results/attempts/kernel_head/targets)" \
      --plugins benchmarks/results/attempts/kernel_head/plugin.py --out benchmarks/results/attempts/kernel_head/dev_grid

(`targets`: the 16 tabular targets of metaal.evaluate.TARGETS, comma-separated.)
"""

# The learner this probe registered, rff_logreg, is now metaal's own
# (metaal.learners.FourierLogisticRegression, the same code; stop 33): importing this file
# registers nothing, so the commands above still run as they are.
import metaal.learners  # noqa: F401
