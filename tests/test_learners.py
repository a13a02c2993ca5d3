"""The learners on real episodes: above chance, batched == looped, deterministic, clear errors."""

import math

import pytest
import torch

from metaal.data import EpisodeSampler, EpisodeSpec, load_dataset, make_dataset
from metaal.errors import InputError
from metaal.learners import (
    FourierLogisticRegression,
    LogisticRegression,
    SmallCNN,
    _ConvNet,
    _seeded_torch,
    make_learner,
    map_tensors,
)


@pytest.fixture(scope="module")
def mnist_batch(data_root):
    ds = load_dataset("mnist", data_root)
    return EpisodeSampler(ds, EpisodeSpec(n_ways=5, initial_per_class=1, pool_per_class=100,
                                          eval_per_class=40)).sample_batch(range(6))


def labeled(batch, n_extra):
    return (torch.cat([batch.labeled_x, batch.pool_x[:, :n_extra]], 1),
            torch.cat([batch.labeled_y, batch.pool_y[:, :n_extra]], 1))


def accuracy(fitted, batch):
    return (fitted.predict(batch.eval_x).probs.argmax(-1) == batch.eval_y).float().mean().item()


def test_logreg_fits_mnist_episodes_well_above_chance(mnist_batch):
    learner = LogisticRegression()
    x, y = labeled(mnist_batch, 50)
    fitted = learner.fit(learner.prepare(mnist_batch.pool_x), x, y, 5, torch.Generator().manual_seed(0))
    assert accuracy(fitted, mnist_batch) > 0.7  # chance is 0.2
    pred = fitted.predict(mnist_batch.pool_x)
    assert pred.probs.shape == (6, 500, 5) and pred.member_probs.shape == (6, 8, 500, 5)
    assert pred.embedding.shape == (6, 500, 64)  # the pool's top principal components
    assert torch.allclose(pred.probs.sum(-1), torch.ones(6, 500))
    # bootstrap members disagree with each other, the full-data fit sits among them
    assert (pred.member_probs.std(1) > 1e-3).any()


def test_logreg_fits_tabular_episodes(data_root):
    ds = load_dataset("wdbc", data_root)
    batch = EpisodeSampler(ds, EpisodeSpec(n_ways=2, initial_per_class=5, pool_per_class=100,
                                           eval_per_class=50)).sample_batch(range(4))
    learner = LogisticRegression(n_members=0)
    fitted = learner.fit(learner.prepare(batch.pool_x), batch.labeled_x, batch.labeled_y, 2)
    assert fitted.predict(batch.pool_x).member_probs is None
    assert accuracy(fitted, batch) > 0.85  # wdbc is close to linearly separable


def test_logreg_has_converged(mnist_batch):
    x, y = labeled(mnist_batch, 50)
    accs = []
    for steps in (100, 1000):
        learner = LogisticRegression(steps=steps, n_members=0)
        accs.append(accuracy(learner.fit(learner.prepare(mnist_batch.pool_x), x, y, 5), mnist_batch))
    assert abs(accs[0] - accs[1]) < 0.02


def test_logreg_batched_equals_one_at_a_time(mnist_batch):
    learner = LogisticRegression(n_members=0)
    x, y = labeled(mnist_batch, 20)
    prepared = learner.prepare(mnist_batch.pool_x, torch.Generator().manual_seed(0))
    batched = learner.fit(prepared, x, y, 5).predict(mnist_batch.eval_x).probs
    for i in range(len(x)):
        one_prepared = map_tensors(prepared, lambda t, i=i: t[i:i + 1])
        one = learner.fit(one_prepared, x[i:i + 1], y[i:i + 1], 5)
        assert torch.allclose(one.predict(mnist_batch.eval_x[i:i + 1]).probs[0], batched[i], atol=1e-4)


def test_logreg_pool_prediction_reuses_prepare(mnist_batch):
    learner = LogisticRegression()
    x, y = labeled(mnist_batch, 10)
    fitted = learner.fit(learner.prepare(mnist_batch.pool_x), x, y, 5, torch.Generator().manual_seed(0))
    direct, reused = fitted.predict(mnist_batch.pool_x), fitted.predict_prepared("pool")
    for a, b in ((direct.probs, reused.probs), (direct.member_probs, reused.member_probs),
                 (direct.embedding, reused.embedding)):
        assert torch.allclose(a, b, atol=1e-5)


def test_pca_keeps_full_pixel_accuracy(mnist_batch):
    x, y = labeled(mnist_batch, 50)
    accs = []
    for n_components in (64, None):
        learner = LogisticRegression(n_members=0, n_components=n_components)
        accs.append(accuracy(learner.fit(learner.prepare(mnist_batch.pool_x), x, y, 5), mnist_batch))
    assert accs[0] > accs[1] - 0.02


def test_logreg_is_deterministic_under_a_seed(mnist_batch):
    learner = LogisticRegression()
    x, y = labeled(mnist_batch, 10)
    prepared = learner.prepare(mnist_batch.pool_x, torch.Generator().manual_seed(0))
    again = learner.prepare(mnist_batch.pool_x, torch.Generator().manual_seed(0))
    assert torch.equal(prepared.basis, again.basis)
    runs = [learner.fit(prepared, x, y, 5, torch.Generator().manual_seed(s)).predict_prepared("pool")
            for s in (1, 1, 2)]
    assert torch.equal(runs[0].member_probs, runs[1].member_probs)
    assert not torch.equal(runs[0].member_probs, runs[2].member_probs)
    assert torch.equal(runs[0].probs, runs[2].probs)  # the full-data member uses no randomness


def test_cnn_fits_mnist_and_gives_mc_dropout_members(mnist_batch):
    learner = SmallCNN(steps=60, mc_passes=4)
    batch_x, batch_y = labeled(mnist_batch, 45)
    x, y = batch_x[:2], batch_y[:2]
    eval_batch = type(mnist_batch)(**{k: v[:2] for k, v in vars(mnist_batch).items()})
    fitted = learner.fit(learner.prepare(eval_batch.pool_x), x, y, 5, torch.Generator().manual_seed(0))
    assert accuracy(fitted, eval_batch) > 0.5
    pred = fitted.predict(eval_batch.pool_x)
    assert pred.embedding.shape == (2, 500, 64) and pred.member_probs.shape == (2, 4, 500, 5)
    assert (pred.member_probs.std(1) > 1e-4).any()
    again = learner.fit(learner.prepare(eval_batch.pool_x), x, y, 5, torch.Generator().manual_seed(0))
    again = again.predict_prepared("pool")
    assert torch.equal(again.probs, pred.probs) and torch.equal(again.member_probs, pred.member_probs)


def looped_cnn_probs(x, y, pool, num_classes, seeds, epochs):
    """The reference: one episode's network at a time (nn.Module, torch's Adam), full batch, no dropout."""
    probs = []
    for i, s in enumerate(seeds):
        with _seeded_torch(s, x.device):
            net = _ConvNet(x.shape[2], num_classes, x.shape[-1], 0.0).to(x.dtype)
        optimizer = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
        for _ in range(epochs):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[i])[0], y[i]).backward()
            optimizer.step()
        with torch.no_grad():
            probs.append(net(pool[i])[0].softmax(-1))
    return torch.stack(probs)


def test_the_batched_cnn_equals_one_network_per_episode(mnist_batch):
    """B episodes trained together (grouped convolutions, batched matmuls, one Adam) give each
    episode the network trained alone: equal to float64 rounding on a tiny episode."""
    x, y = (t[:3, :12] for t in labeled(mnist_batch, 12))
    x, pool = x.double(), mnist_batch.pool_x[:3, :40].double()
    full_batch = SmallCNN(steps=15, batch_size=None, stop_loss=None, dropout=0.0, mc_passes=0)
    fitted = full_batch.fit_seeded({"pool": pool}, x, y, 5, [7, 8, 9])
    got = fitted.predict_prepared("pool").probs
    assert got.dtype == torch.float64
    assert torch.allclose(got, looped_cnn_probs(x, y, pool, 5, [7, 8, 9], 15), atol=1e-10, rtol=0)


def test_a_cnn_episode_does_not_depend_on_its_batch_and_stops_early(mnist_batch):
    """Minibatches, dropout masks and the stopping rule come from each episode's own seed."""
    x, y = labeled(mnist_batch, 30)
    x, pool = x.double(), mnist_batch.pool_x.double()  # float64: equal up to rounding, not up to float32's
    learner = SmallCNN(steps=40, batch_size=8, stop_loss=0.3, mc_passes=3)
    together = learner.fit_seeded({"pool": pool[:3]}, x[:3], y[:3], 5, [1, 2, 3]).predict_prepared("pool")
    alone = learner.fit_seeded({"pool": pool[1:2]}, x[1:2], y[1:2], 5, [2]).predict_prepared("pool")
    assert torch.allclose(together.probs[1], alone.probs[0], atol=1e-10, rtol=0)
    assert torch.allclose(together.member_probs[1], alone.member_probs[0], atol=1e-10, rtol=0)
    stopped = SmallCNN(steps=40, batch_size=8, stop_loss=10.0, mc_passes=0)  # every epoch's loss is below 10
    never = SmallCNN(steps=5, batch_size=8, stop_loss=None, mc_passes=0)       # the same first epoch (35 / 8)
    a = stopped.fit_seeded({"pool": pool[:2]}, x[:2], y[:2], 5, [1, 2]).predict_prepared("pool").probs
    b = never.fit_seeded({"pool": pool[:2]}, x[:2], y[:2], 5, [1, 2]).predict_prepared("pool").probs
    assert torch.equal(a, b)


def test_cnn_refuses_tabular_input(data_root):
    x = torch.zeros(1, 4, 13)
    with pytest.raises(ValueError, match="square images.*logreg"):
        SmallCNN().fit(None, x, torch.tensor([[0, 1, 0, 1]]), 2)


@pytest.mark.parametrize("x, y, message", [
    (torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long), r"x \(B, n, \.\.\.\) and y \(B, n\)"),
    (torch.zeros(2, 3, 4), torch.full((2, 3), 7), r"labels must be in 0\.\.4"),
    (torch.full((2, 3, 4), float("nan")), torch.zeros(2, 3, dtype=torch.long), "NaN"),
    (torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.long), "at least one labeled"),
])
def test_bad_fit_inputs(x, y, message):
    learner = LogisticRegression()
    with pytest.raises(ValueError, match=message):
        learner.fit(learner.prepare(torch.ones(2, 5, 4)), x, y, 5)


def test_rff_logreg_fits_a_checkerboard_the_linear_head_cannot(data_root):
    ds = load_dataset("checkerboard2x2", data_root)
    batch = EpisodeSampler(ds, EpisodeSpec(n_ways=2, initial_per_class=1, pool_per_class=200,
                                           eval_per_class=100)).sample_batch(range(4))
    x, y = labeled(batch, 150)
    fits = {}
    for learner in (LogisticRegression(n_members=0), make_learner({"name": "rff_logreg", "n_members": 0})):
        g = torch.Generator().manual_seed(0)
        fits[learner.name] = accuracy(learner.fit(learner.prepare(batch.pool_x, g), x, y, 2, g), batch)
    assert fits["logreg"] < 0.7 < 0.85 < fits["rff_logreg"]  # XOR-like classes: chance is 0.5
    # the kernel's width and frequencies come from the pool alone, its embedding is the features
    rff = FourierLogisticRegression(n_fourier=32)
    prepared = rff.prepare(batch.pool_x, torch.Generator().manual_seed(1))
    again = rff.prepare(batch.pool_x, torch.Generator().manual_seed(1), extra={"eval": batch.eval_x})
    assert torch.equal(prepared.sets["pool"], again.sets["pool"]) and prepared.sets["pool"].shape == (4, 400, 32)
    assert torch.equal(prepared.sets["pool"], prepared.embed(batch.pool_x))  # the pool, mapped once, is the whole map
    fitted = rff.fit(again, x, y, 2)
    assert torch.allclose(fitted.predict_prepared("eval").probs, fitted.predict(batch.eval_x).probs, atol=1e-5)
    with pytest.raises(InputError, match="rff_logreg needs n_fourier >= 1 and bandwidth > 0"):
        FourierLogisticRegression(bandwidth=0)


def test_make_learner():
    assert isinstance(make_learner("logreg", steps=5), LogisticRegression)
    with pytest.raises(ValueError, match="unknown learner 'svm'; choose from logreg, cnn, rff_logreg"):
        make_learner("svm")


def digits_8x8(data_root):
    """MNIST downsampled to 8x8 and read as 64 tabular columns of 0..16, like scikit-learn's
    digits: border columns are 0 in most samples, so many are constant in a small pool."""
    mnist = load_dataset("mnist", data_root)

    def small(part):
        x = torch.nn.functional.avg_pool2d(part.X[:6000], 3, 3)[:, 0, :8, :8]
        return (x.flatten(1) * 16).round().numpy(), part.y[:6000].numpy()

    return make_dataset("digits8x8", *small(mnist.train), *small(mnist.test))


def test_logreg_standardisation_cannot_explode_on_pool_constant_columns(data_root):
    ds = digits_8x8(data_root)
    batch = EpisodeSampler(ds, EpisodeSpec(n_ways=10, initial_per_class=1, pool_per_class=50,
                                           eval_per_class=50)).sample_batch(range(300))
    pool, labeled = batch.pool_x.flatten(2), batch.labeled_x.flatten(2)
    constant = pool.amax(1) == pool.amin(1)
    # episodes in which an initial label is non-zero in a column that is constant in the pool
    hit = (constant & (labeled != pool[:, :1]).any(1)).any(1)
    assert 5 <= int(hit.sum()) < 300
    learner = LogisticRegression(n_members=0)
    prepared = learner.prepare(batch.pool_x, torch.Generator().manual_seed(0), extra={"eval": batch.eval_x})
    z = prepared.embed(torch.cat([batch.labeled_x, batch.eval_x], 1))
    assert z.abs().max() * math.sqrt(64) <= math.sqrt(500)  # Samuelson's bound, for every input
    fitted = learner.fit(prepared, batch.labeled_x, batch.labeled_y, 10)
    acc = (fitted.predict_prepared("eval").probs.argmax(-1) == batch.eval_y).float().mean(1)
    # pool-scaled, such a column was multiplied by 1e6 and the fit fell to 0.17 (chance is 0.1)
    assert acc[hit].mean() > acc[~hit].mean() - 0.05


def test_a_warm_started_cnn_round_starts_from_the_last_rounds_weights(mnist_batch):
    """fit_from continues from the previous fit's weights (zero steps' worth of change with lr 0),
    keeps each episode independent of its batch, and without warm_start is a fresh fit."""
    x, y = labeled(mnist_batch, 30)
    x, pool = x.double(), mnist_batch.pool_x.double()
    learner = SmallCNN(steps=20, batch_size=8, mc_passes=0)
    first = learner.fit_seeded({"pool": pool[:3]}, x[:3, :20], y[:3, :20], 5, [1, 2, 3])
    frozen = SmallCNN(steps=5, batch_size=8, lr=0.0, weight_decay=0.0, mc_passes=0)
    again = frozen.fit_from(first, {"pool": pool[:3]}, x[:3], y[:3], 5, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(again.weights, first.weights))
    warm = SmallCNN(steps=20, batch_size=8, mc_passes=0)
    together = warm.fit_seeded({"pool": pool[:3]}, x[:3], y[:3], 5, [4, 5, 6], first.weights)
    alone = warm.fit_seeded({"pool": pool[1:2]}, x[1:2], y[1:2], 5, [5], [w[1:2] for w in first.weights])
    assert torch.allclose(together.predict_prepared("pool").probs[1], alone.predict_prepared("pool").probs[0],
                          atol=1e-10, rtol=0)
    cold = SmallCNN(steps=20, batch_size=8, mc_passes=0, warm_start=False)
    from_scratch = cold.fit(None, x[:3], y[:3], 5, torch.Generator().manual_seed(0))
    not_warm = cold.fit_from(first, None, x[:3], y[:3], 5, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(from_scratch.weights, not_warm.weights))
    with pytest.raises(ValueError, match="warm start needs the previous fit of the same 2 episodes"):
        warm.fit_from(first, None, x[:2], y[:2], 5)
