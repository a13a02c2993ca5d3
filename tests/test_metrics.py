"""AULC, paired comparisons, summaries, CSV/JSON files and the learning-curve plot."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats

from metaal.metrics import (
    Curves,
    PairedComparison,
    aulc,
    paired_comparison,
    plot_learning_curves,
    read_curves_csv,
    summarize,
    write_curves_csv,
    write_summary_json,
)


def test_aulc_even_spacing_is_mean_of_trapezoids():
    assert aulc([0.5, 0.7, 0.9], [5, 10, 15]) == pytest.approx((0.6 + 0.8) / 2)


def test_aulc_uneven_spacing_weights_by_label_step():
    # (1 * (0.2+0.4)/2 + 2 * (0.4+1.0)/2) / (3 - 0); the plain mean of trapezoids would be 0.5
    assert aulc([0.2, 0.4, 1.0], [0, 1, 3]) == pytest.approx(1.7 / 3)


def test_aulc_is_batched_over_leading_dims_and_accepts_tensors():
    acc = np.array([[0.5, 0.7, 0.9], [0.2, 0.4, 0.6]])
    out = aulc(acc, [5, 10, 15])
    assert out.shape == (2,)
    np.testing.assert_allclose(out, [0.7, 0.4])
    np.testing.assert_allclose(aulc(torch.tensor(acc), torch.tensor([5, 10, 15])), [0.7, 0.4])
    assert aulc(np.ones((3, 4, 2)), [1, 2]).shape == (3, 4)


def test_aulc_single_point_is_that_accuracy():
    assert aulc([0.42], [10]) == pytest.approx(0.42)
    np.testing.assert_allclose(aulc([[0.1], [0.3]], [10]), [0.1, 0.3])


@pytest.mark.parametrize(
    "accuracy, n_labeled, message",
    [
        ([0.5, float("nan"), 0.9], [5, 10, 15], "NaN at index \\[1\\]"),
        ([0.5, 0.7], [5, 10, 15], "len\\(n_labeled\\) = 3"),
        ([0.5, 0.7, 0.9], [5, 10, 10], "strictly increasing"),
        ([0.5, 0.7, 0.9], [15, 10, 5], "strictly increasing"),
        ([0.5], [], "non-empty"),
    ],
)
def test_aulc_errors(accuracy, n_labeled, message):
    with pytest.raises(ValueError, match=message):
        aulc(accuracy, n_labeled)


def test_paired_comparison_hand_example():
    a = [0.80, 0.70, 0.60, 0.50]
    b = [0.70, 0.70, 0.65, 0.40]
    result = paired_comparison(a, b, "policy", "random")
    d = np.array([0.1, 0.0, -0.05, 0.1])
    half = stats.t.ppf(0.975, 3) * d.std(ddof=1) / math.sqrt(4)
    assert (result.strategy, result.baseline, result.n_seeds) == ("policy", "random", 4)
    assert result.mean_difference == pytest.approx(0.0375)
    assert result.ci_low == pytest.approx(0.0375 - half)
    assert result.ci_high == pytest.approx(0.0375 + half)
    assert result.ci_low < result.mean_difference < result.ci_high
    assert (result.wins, result.ties, result.losses) == (2, 1, 1)
    assert result.to_dict()["mean_difference"] == pytest.approx(0.0375)
    assert set(result.to_dict()) == {f.name for f in PairedComparison.__dataclass_fields__.values()}


def test_paired_comparison_tie_tolerance_boundary():
    # differences of exactly +-tolerance are ties (binary-exact values, so no rounding doubt)
    result = paired_comparison([0.75, 0.5, 1.0, 0.0], [0.5, 0.75, 0.5, 0.5], "s", "b", tie_tolerance=0.25)
    assert (result.wins, result.ties, result.losses) == (1, 2, 1)
    result = paired_comparison([0.5004, 0.5, 0.5], [0.5, 0.5004, 0.502], "s", "b")
    assert (result.wins, result.ties, result.losses) == (0, 2, 1)


def test_paired_comparison_single_seed_has_nan_interval():
    result = paired_comparison([0.8], [0.7], "s", "b")
    assert result.mean_difference == pytest.approx(0.1)
    assert math.isnan(result.ci_low) and math.isnan(result.ci_high)
    assert (result.wins, result.ties, result.losses) == (1, 0, 0)


@pytest.mark.parametrize("a, b", [([0.1, 0.2], [0.1]), ([], []), ([[0.1]], [[0.1]])])
def test_paired_comparison_shape_errors(a, b):
    with pytest.raises(ValueError, match="s vs b"):
        paired_comparison(a, b, "s", "b")


def make_curves() -> Curves:
    rng = np.random.default_rng(0)
    n_labeled = np.array([5, 10, 20, 40])
    base = {"random": 0.50, "margin": 0.55, "entropy": 0.53, "policy": 0.60}
    accuracy = {
        name: np.clip(level + 0.08 * np.arange(4) + 0.02 * rng.standard_normal((3, 4)), 0, 1)
        for name, level in base.items()
    }
    return Curves(accuracy=accuracy, n_labeled=n_labeled, seeds=np.array([0, 1, 7]))


def test_curves_validates_shapes():
    with pytest.raises(ValueError, match="'policy'"):
        Curves(accuracy={"random": np.zeros((2, 3)), "policy": np.zeros((2, 4))}, n_labeled=[1, 2, 3], seeds=[0, 1])
    with pytest.raises(ValueError, match="integers"):
        Curves(accuracy={"random": np.zeros((1, 2))}, n_labeled=[1, 2.5], seeds=[0])


def test_summarize_with_single_reference():
    curves = make_curves()
    summary = summarize(curves, reference="policy")
    assert summary["n_seeds"] == 3
    assert summary["n_labeled"] == [5, 10, 20, 40]
    assert list(summary["strategies"]) == ["random", "margin", "entropy", "policy"]
    policy = summary["strategies"]["policy"]
    per_seed = aulc(curves.accuracy["policy"], curves.n_labeled)
    np.testing.assert_allclose(policy["aulc_per_seed"], per_seed)
    assert policy["aulc_mean"] == pytest.approx(per_seed.mean())
    assert policy["aulc_std"] == pytest.approx(per_seed.std(ddof=1))
    assert policy["final_accuracy_mean"] == pytest.approx(curves.accuracy["policy"][:, -1].mean())
    comparisons = summary["comparisons"]
    assert [(c["strategy"], c["baseline"]) for c in comparisons] == [
        ("policy", "random"),
        ("policy", "margin"),
        ("policy", "entropy"),
    ]
    expected = per_seed - aulc(curves.accuracy["random"], curves.n_labeled)
    assert comparisons[0]["mean_difference"] == pytest.approx(expected.mean())
    json.dumps(summary)  # JSON-ready: plain Python types only


def test_summarize_default_compares_everything_against_classic_baselines():
    summary = summarize(make_curves())
    pairs = [(c["strategy"], c["baseline"]) for c in summary["comparisons"]]
    assert len(pairs) == 9
    for baseline in ("margin", "entropy", "random"):
        others = {s for s, b in pairs if b == baseline}
        assert others == {"random", "margin", "entropy", "policy"} - {baseline}
    # baselines that are absent are skipped
    curves = make_curves()
    del curves.accuracy["entropy"], curves.accuracy["margin"]
    assert [(c["strategy"], c["baseline"]) for c in summarize(curves)["comparisons"]] == [("policy", "random")]


def test_summarize_single_seed_and_unknown_reference():
    curves = Curves(accuracy={"random": [[0.5, 0.6]], "policy": [[0.6, 0.8]]}, n_labeled=[1, 2], seeds=[3])
    summary = summarize(curves, reference="policy")
    assert summary["strategies"]["policy"]["aulc_std"] == 0.0
    assert math.isnan(summary["comparisons"][0]["ci_low"])
    with pytest.raises(ValueError, match="'margin'"):
        summarize(curves, reference="margin")


def test_csv_round_trip(tmp_path):
    curves = make_curves()
    path = tmp_path / "curves.csv"
    write_curves_csv(curves, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "strategy,seed,round,n_labeled,accuracy"
    assert len(lines) == 1 + 4 * 3 * 4
    back = read_curves_csv(path)
    assert list(back.accuracy) == list(curves.accuracy)
    np.testing.assert_array_equal(back.seeds, curves.seeds)
    np.testing.assert_array_equal(back.n_labeled, curves.n_labeled)
    for name, acc in curves.accuracy.items():
        np.testing.assert_array_equal(back.accuracy[name], acc)  # exact, not approximate


@pytest.mark.parametrize(
    "text, message",
    [
        ("strategy,seed,round,accuracy\nrandom,0,0,0.5\n", "missing column"),
        ("", "missing column"),
        ("strategy,seed,round,n_labeled,accuracy\n", "not a full table"),
        # seed 1 lacks round 1
        (
            "strategy,seed,round,n_labeled,accuracy\n"
            "random,0,0,5,0.5\nrandom,0,1,10,0.6\nrandom,1,0,5,0.4\n",
            "not a full table",
        ),
        ("strategy,seed,round,n_labeled,accuracy\nrandom,0,0,5,0.5\nrandom,0,0,5,0.5\n", "duplicate"),
        ("strategy,seed,round,n_labeled,accuracy\nrandom,0,0,5\n", "line 2"),
        ("strategy,seed,round,n_labeled,accuracy\nrandom,0,0,5,high\n", "line 2"),
        ("strategy,seed,round,n_labeled,accuracy\nrandom,0,0,5,0.5\npolicy,0,0,6,0.5\n", "n_labeled differs"),
    ],
)
def test_malformed_csv_errors_name_the_file(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_curves_csv(path)
    assert "bad.csv" in str(info.value)


def test_summary_json_writes_nan_as_null(tmp_path):
    curves = Curves(accuracy={"random": [[0.5, 0.6]], "policy": [[0.6, 0.8]]}, n_labeled=[1, 2], seeds=[3])
    path = tmp_path / "summary.json"
    write_summary_json(summarize(curves, reference="policy"), path)
    text = path.read_text()
    assert "NaN" not in text
    loaded = json.loads(text)  # strict parsers reject NaN, so null is required
    assert loaded["comparisons"][0]["ci_low"] is None
    assert loaded["comparisons"][0]["mean_difference"] == pytest.approx(0.7 - 0.55)
    assert loaded["strategies"]["policy"]["aulc_per_seed"] == [pytest.approx(0.7)]


def test_plot_writes_png(tmp_path):
    path = tmp_path / "curves.png"
    plot_learning_curves(make_curves(), path, title="MNIST, 5-way")
    assert path.stat().st_size > 0
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (600, 400)


def test_summary_markdown_ranks_and_compares():
    from metaal.metrics import Curves, summarize, summary_markdown

    n = np.array([5, 10, 15])
    curves = Curves(accuracy={"random": np.array([[0.5, 0.6, 0.7], [0.5, 0.6, 0.7]]),
                              "margin": np.array([[0.5, 0.7, 0.9], [0.5, 0.7, 0.8]])},
                    n_labeled=n, seeds=np.array([0, 1]))
    table = summary_markdown(summarize(curves), baselines=("random",))
    lines = table.strip().splitlines()
    assert lines[0].startswith("| strategy | AULC | final acc. | Δ AULC vs random")
    # margin AULC per seed: (0.6 + 0.8) / 2 = 0.7 and (0.6 + 0.75) / 2 = 0.675; random 0.6 each
    assert lines[2].startswith("| margin | 0.6875 ± 0.0177 | 0.8500 | +0.0875 [")  # best first
    assert lines[2].endswith("| 2/0/0 |")
    assert lines[3].startswith("| random | 0.6000 ± 0.0000 | 0.7000 |  |  |")
