"""The gain-predictability diagnostic and the feature screen on small targets: tests of the
pipelines (and of the invariants any result must satisfy), not of the numbers."""

import importlib.util
import json
import sys

import pytest
import torch

from tests.conftest import REPO


def test_gain_predictability_pipeline(tmp_path, data_root):
    spec = importlib.util.spec_from_file_location("gain_predictability",
                                                  REPO / "benchmarks" / "gain_predictability.py")
    script = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = script
    spec.loader.exec_module(script)
    # omniglot: a pool of 70 runs short of 64 candidates in the last rounds
    script.main(["--data-root", str(data_root), "--datasets", "heart,omniglot_sanskrit_tagalog",
                 "--episodes", "4", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    assert set(result["targets"]) == {"heart", "omniglot_sanskrit_tagalog"}
    for r in result["targets"].values():
        # the oracle takes the best candidate: no scorer's first pick gains more
        assert all(r["oracle"] >= r[name] - 1e-9 for name in ("margin", "linear", "mlp", "random"))
        assert r["r2_linear"] <= 1 and r["r2_mlp"] <= 1 and r["states"] > 0


@pytest.fixture(scope="module")
def feature_screen():
    sys.path.insert(0, str(REPO / "benchmarks"))  # it imports gain_predictability as a sibling
    try:
        spec = importlib.util.spec_from_file_location("feature_screen", REPO / "benchmarks" / "feature_screen.py")
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    return script


def test_label_propagation_follows_the_clusters(feature_screen):
    """Two tight clusters far apart, one labeled sample in each: every pool sample gets its
    cluster's class; the learner's disagreement feature is 0 where it agrees with that and
    large where it does not."""
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 10.0]])
    pool = (centres.repeat_interleave(20, 0) + 0.3 * torch.randn(40, 2, generator=generator))[None]
    labeled = centres[None]
    lp = feature_screen.propagated_labels(labeled, torch.tensor([[0, 1]]), pool, 2)
    assert torch.equal(lp.argmax(-1)[0], torch.tensor([0] * 20 + [1] * 20))
    assert torch.allclose(lp.sum(-1), torch.ones(1, 40))


def test_feature_screen_pipeline(tmp_path, data_root, feature_screen):
    feature_screen.main(["--data-root", str(data_root), "--datasets", "heart", "--episodes", "4",
                         "--out", str(tmp_path)])
    result = json.loads((tmp_path / "results.json").read_text())
    assert set(result["targets"]["heart"]) == {"v1", "v2", "v1+lp", "v2+lp"}
    assert result["meta"]["feature_sets"] == {"v1": 11, "v2": 14, "v1+lp": 15, "v2+lp": 18}
    assert all(r["r2_mlp"] <= 1 for r in result["targets"]["heart"].values())
