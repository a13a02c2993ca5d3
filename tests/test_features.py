"""The feature schema and pipeline on a real fitted learner."""

import math

import pytest
import torch

from metaal import features as feat
from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset
from metaal.errors import NonFiniteError
from metaal.features import SCHEMA, SCHEMA_V1, columns_for, compute_features, local_density
from metaal.learners import LogisticRegression, Prediction


@pytest.fixture(scope="module")
def fitted_round(data_root):
    ds = load_dataset("fashion_mnist", data_root)
    batch = EpisodeSampler(ds, EpisodeSpec(n_ways=5, pool_per_class=60, eval_per_class=10)).sample_batch(range(3))
    learner = LogisticRegression()
    fitted = learner.fit(learner.prepare(batch.pool_x), batch.labeled_x, batch.labeled_y, 5,
                         torch.Generator().manual_seed(0))
    return batch, fitted.predict(batch.pool_x), fitted.predict(batch.labeled_x)


def test_schema_is_named_versioned_and_has_entropy():
    assert SCHEMA.version == 2 and SCHEMA.names[0] == "entropy"
    assert len(set(SCHEMA.names)) == len(SCHEMA.names)
    assert SCHEMA.to_dict() == {"version": 2, "names": list(SCHEMA.names)}
    assert SCHEMA.names[:len(SCHEMA_V1.names)] == SCHEMA_V1.names  # v1 readers see their columns first


def test_an_older_schema_reads_the_first_columns_and_a_foreign_one_is_refused():
    f = torch.rand(2, 4, len(SCHEMA.names))
    assert torch.equal(columns_for(SCHEMA_V1, f), f[..., :11])
    assert torch.equal(columns_for(SCHEMA, f), f)
    foreign = feat.FeatureSchema(version=1, names=("margin", "entropy"))
    with pytest.raises(ValueError, match=r"feature schema v1 is not one this metaal computes \(it reads \[1, 2\]\)"):
        columns_for(foreign, f)


def test_the_features_of_schema_v2(fitted_round):
    """embedding_norm is |h| over the pool's median |h|, squashed to r / (1 + r); the expected
    gradient length multiplies r by E_y|p - e_y| = sqrt(1 - sum p^2) before squashing;
    pool_predicted_share counts the pool's samples predicted in the sample's class."""
    batch, pool, lab = fitted_round
    f = compute_features(pool, lab.embedding, batch.labeled_y, 5, budget_used=0.0)
    norm = pool.embedding.norm(dim=-1)
    r = norm / norm.median(-1, keepdim=True).values
    assert torch.allclose(f[..., SCHEMA.index("embedding_norm")], r / (1 + r), atol=1e-6)
    g = (1 - pool.probs.square().sum(-1)).sqrt() * r
    assert torch.allclose(f[..., SCHEMA.index("expected_gradient_length")], g / (1 + g), atol=1e-6)
    # the median sample reads 1/2 on embedding_norm; a sample twice as far out reads 2/3
    assert (f[..., SCHEMA.index("embedding_norm")] - 0.5).abs().min(-1).values.max() < 0.01
    predicted = pool.probs.argmax(-1)
    for episode, sample in ((0, 0), (1, 17), (2, 299)):
        same = (predicted[episode] == predicted[episode, sample]).float().mean()
        assert torch.isclose(f[episode, sample, SCHEMA.index("pool_predicted_share")], same)


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
