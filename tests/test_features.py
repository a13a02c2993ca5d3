"""The feature schema and pipeline on a real fitted learner."""

import math

import pytest
import torch

from metaal import features as feat
from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.errors import NonFiniteError
from metaal.features import SCHEMA, compute_features, local_density
from metaal.learners import LogisticRegression, Prediction


@pytest.fixture(scope="module")
def fitted_round(data_root):
    ds = load_dataset("fashion_mnist", data_root)
    batch = EpisodeSampler(ds, EpisodeSpec(n_ways=5, pool_per_class=60, eval_per_class=10)).sample_batch(range(3))
    learner = LogisticRegression()
    fitted = learner.fit(learner.prepare(batch.pool_x), batch.labeled_x, batch.labeled_y, 5,
                         torch.Generator().manual_seed(0))
    return batch, fitted.predict(batch.pool_x), fitted.predict(batch.labeled_x)


def test_schema_is_v1_named_versioned_and_has_entropy():
    """One schema, v1: the 11 features the shipped policies read, in their order (v2 was tried
    and not kept, RESEARCH_LOG.md row schema_v2)."""
    assert SCHEMA.version == 1 and SCHEMA.names[0] == "entropy" and len(SCHEMA.names) == 11
    assert len(set(SCHEMA.names)) == len(SCHEMA.names)
    assert SCHEMA.to_dict() == {"version": 1, "names": list(SCHEMA.names)}
    assert not hasattr(feat, "SCHEMA_V1") and not hasattr(feat, "columns_for")


def test_features_shape_range_and_values(fitted_round):
    batch, pool, lab = fitted_round
    f = compute_features(pool, lab.embedding, batch.labeled_y, 5, budget_used=0.25)
    assert f.shape == (3, 300, len(SCHEMA.names))
    assert (f >= 0).all() and (f <= 1 + 1e-6).all()  # every feature is scale-free in [0, 1]
    p = pool.probs
    expected_entropy = -(p * p.log()).sum(-1) / math.log(5)
    assert torch.allclose(f[..., SCHEMA.index("entropy")], expected_entropy, atol=1e-5)
    top2 = p.topk(2, -1).values
    assert torch.allclose(f[..., SCHEMA.index("margin")], top2[..., 0] - top2[..., 1])
    # round-level state is the same for every pool sample
    for name, value in (("budget_used", 0.25), ("inv_num_classes", 0.2), ("label_entropy", 1.0),
                        ("labeled_fraction", 5 / 305)):
        assert torch.allclose(f[..., SCHEMA.index(name)], torch.tensor(value)), name
    # one labeled sample per class: every predicted class holds 1/5 of the labeled set
    assert torch.allclose(f[..., SCHEMA.index("predicted_class_share")], torch.tensor(0.2))


def test_distance_to_labeled_is_zero_for_a_labeled_copy(fitted_round):
    batch, pool, lab = fitted_round
    # pretend pool sample 7 is labeled: its distance to the labeled set is 0
    lab_emb = torch.cat([lab.embedding, pool.embedding[:, 7:8]], 1)
    lab_y = torch.cat([batch.labeled_y, batch.pool_y[:, 7:8]], 1)
    f = compute_features(pool, lab_emb, lab_y, 5, budget_used=0.0)
    d = f[..., SCHEMA.index("dist_to_labeled")]
    assert torch.allclose(d[:, 7], torch.zeros(3), atol=1e-3) and (d.mean(1) > 0.3).all()


def test_density_subset_estimate_tracks_the_exact_one(fitted_round, monkeypatch):
    _, pool, _ = fitted_round
    exact = local_density(pool.embedding)
    monkeypatch.setattr(feat, "DENSITY_REFERENCE", 150)  # half the pool as reference set
    assert exact.shape[1] <= 512  # the module default covers the whole pool: exact
    approx = local_density(pool.embedding, torch.Generator().manual_seed(0))
    assert approx.shape == exact.shape and torch.isfinite(approx).all()
    corr = torch.corrcoef(torch.stack([exact.flatten(), approx.flatten()]))[0, 1]
    assert corr > 0.8


def test_knn_distance_never_counts_a_sample_as_its_own_neighbour_in_any_order(fitted_round):
    # Pool samples 0..299, a reference subset that holds some of them; the batch's rows come in
    # a shuffled order (a candidate set ranked by score), and each keeps its own k-NN distance.
    _, pool, _ = fitted_round
    emb, reference_index = pool.embedding[:1], torch.arange(0, 300, 3)
    index = torch.arange(300)
    in_order = feat.knn_distance(emb, emb[:, reference_index], index, reference_index)
    shuffled = torch.randperm(300, generator=torch.Generator().manual_seed(0))
    reordered = feat.knn_distance(emb[:, shuffled], emb[:, reference_index], shuffled, reference_index)
    assert torch.allclose(reordered, in_order[:, shuffled], atol=1e-6)
    assert (in_order > 0).all()  # no zero self-distance among the neighbours


def test_features_without_members_have_zero_bald(fitted_round):
    batch, pool, lab = fitted_round
    no_members = Prediction(pool.probs, None, pool.embedding)
    f = compute_features(no_members, lab.embedding, batch.labeled_y, 5, budget_used=0.0)
    assert (f[..., SCHEMA.index("bald")] == 0).all()


def test_nan_probabilities_are_reported(fitted_round):
    batch, pool, lab = fitted_round
    broken = Prediction(torch.full_like(pool.probs, float("nan")), None, pool.embedding)
    with pytest.raises(NonFiniteError, match="NaN"):
        compute_features(broken, lab.embedding, batch.labeled_y, 5, budget_used=0.0)
