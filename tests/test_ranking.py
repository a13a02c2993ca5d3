"""The benchmark statistics against values worked out by hand or published."""

import math

import numpy as np
import pytest

from metaal.ranking import average_ranks, critical_difference, friedman_p_value, holm, paired_p_value, plot_cd_diagram


def test_holm_adjusts_step_down_and_keeps_the_input_order():
    # sorted p: 0.01 (x4), 0.02 (x3 -> 0.06), 0.03 (x2), 0.04 (x1); monotone
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])   # 2 x 0.5 caps at 1; never below an earlier one
    assert holm([0.01, 0.5]) == pytest.approx([0.02, 0.5])


def test_average_ranks_share_ties():
    scores = [[0.9, 0.8, 0.8], [0.7, 0.9, 0.6]]
    assert average_ranks(scores).tolist() == pytest.approx([1.5, 1.75, 2.75])


def test_critical_difference_matches_demsar():
    # Demsar (2006), Table 5: q_0.05 = 2.569 for 4 classifiers; with 14 data sets CD = 1.25
    assert critical_difference(4, 14) == pytest.approx(2.569 * math.sqrt(4 * 5 / (6 * 14)), abs=1e-3)


def test_paired_p_value_is_small_for_a_consistent_difference_and_one_without():
    rng = np.random.default_rng(0)
    base = rng.normal(0.7, 0.05, size=50)
    assert paired_p_value(base + 0.01 + rng.normal(0, 0.002, 50), base) < 1e-6
    assert paired_p_value(base, base) == 1.0
    assert paired_p_value(base + rng.normal(0, 0.01, 50), base) > 0.01
    with pytest.raises(ValueError, match="equal-length"):
        paired_p_value(base, base[:10])


def test_paired_p_value_is_exact_without_ties_and_the_normal_approximation_with_them():
    # 10 positive, distinct differences: exactly 2 of the 2^10 sign patterns are this extreme.
    assert paired_p_value(np.arange(1.0, 11.0), np.zeros(10)) == pytest.approx(2 / 2**10)
    # One tie among 15 positive differences: T = 0, mean 60, variance 310 - (2^3 - 2) / 48.
    d = np.array([1.0, 2, 2, *range(3, 15)])
    z = (0 - 60) / math.sqrt(15 * 16 * 31 / 24 - 6 / 48)
    assert paired_p_value(d, np.zeros(15)) == pytest.approx(math.erfc(-z / math.sqrt(2)), rel=1e-9)


def test_friedman_and_cd_diagram(tmp_path):
    scores = np.array([[0.9, 0.8, 0.7], [0.85, 0.8, 0.6], [0.95, 0.7, 0.65], [0.9, 0.85, 0.8]])
    assert friedman_p_value(scores) < 0.05
    plot_cd_diagram(["a", "b", "c"], average_ranks(scores), critical_difference(3, 4), tmp_path / "cd.png")
    assert (tmp_path / "cd.png").stat().st_size > 1000
