"""Using a strategy in your own loop: metaal.select on real MNIST pools and a user model."""

import json
import re

import pytest
import torch

import metaal
from metaal.data import load_dataset
from metaal.features import DENSITY_REFERENCE, SCHEMA, entropy
from metaal.policy import PolicyNet, PolicyStrategy
from metaal.strategies import make_strategy
from tests.conftest import REPO, load_benchmark


class UserNet(torch.nn.Module):
    """A user's classifier: (logits, embedding), with dropout for MC passes."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(),
                                        torch.nn.Dropout(0.3))
        self.head = torch.nn.Linear(32, 10)

    def forward(self, x):
        h = self.body(x)
        return self.head(h), h


@pytest.fixture(scope="module")
def setup(data_root):
    mnist = load_dataset("mnist", data_root)
    torch.manual_seed(0)
    model = UserNet()
    x, y = mnist.train.X[:60], mnist.train.y[:60]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x)[0], y).backward()
        opt.step()
    return model.eval(), x, y, mnist.train.X[1000:1000 + 2 * DENSITY_REFERENCE + 300]


def test_margin_streams_to_the_exact_top_k(setup):
    model, x, y, pool = setup
    picked, scores = metaal.select(make_strategy("margin"), model, pool, 15, x, y, 10, batch_size=333,
                                   device="cpu", return_scores=True)
    with torch.no_grad():
        p = model(pool)[0].softmax(-1).topk(2, -1).values
    expected = (-(p[:, 0] - p[:, 1])).topk(15).indices
    assert torch.equal(picked, expected)
    assert (scores[:-1] >= scores[1:]).all()


def test_a_smaller_reference_subset_estimates_the_same_policy_ranking(setup):
    model, x, y, pool = setup  # 1324 samples: the default reference is 512 of them
    policy = metaal.load_policy(REPO / "metaal" / "policies" / "linear.pt", device="cpu")
    picks = {size: metaal.select(policy, model, pool, 100, x, y, 10, reference_size=size, device="cpu",
                                 return_scores=True) for size in (1324, 512, 128)}  # 1324: exact
    assert not torch.allclose(picks[512][1], picks[128][1])  # a different estimate ...
    for size in (512, 128):  # ... of much the same top 100 (99-100 of them on four seeds)
        assert len(set(picks[1324][0].tolist()) & set(picks[size][0].tolist())) >= 95, size


def test_policy_result_does_not_depend_on_the_batch_size(setup):
    model, x, y, pool = setup  # larger than the reference subset: features use the estimates
    policy = PolicyStrategy(PolicyNet(hidden=16))
    a = metaal.select(policy, model, pool, 20, x, y, 10, batch_size=257, device="cpu")
    b = metaal.select(policy, model, pool, 20, x, y, 10, batch_size=len(pool), device="cpu")
    assert torch.equal(a, b) and a.unique().numel() == 20 and a.max() < len(pool)


def test_dataloader_pool_matches_tensor_pool(setup):
    model, x, y, pool = setup
    policy = PolicyStrategy(PolicyNet(hidden=16))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(pool, torch.zeros(len(pool))), batch_size=500)
    assert torch.equal(metaal.select(policy, model, loader, 12, x, y, 10, device="cpu"),
                       metaal.select(policy, model, pool, 12, x, y, 10, device="cpu"))


def test_mc_dropout_feeds_disagreement(setup):
    model, x, y, pool = setup
    picked = metaal.select(make_strategy("bald"), model, pool[:500], 5, x, y, 10, mc_passes=6, device="cpu")
    assert picked.unique().numel() == 5
    assert not model.training  # dropout switched back off


@pytest.mark.parametrize("call, message", [
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p[:6], 5, x, y, 10, exclude=[0, 1]),
     "k=5 samples from a pool of 6 of which 2 are excluded"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p, 5, x, y, 10, exclude=torch.zeros(3).bool()),
     r"exclude is a mask of shape \(3,\)"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p, 5, x, y, 10, exclude=[len(p)]),
     "exclude must be a bool mask"),
    (lambda m, x, y, p: metaal.select(make_strategy("oracle"), m, p, 5, x, y, 10), "only in simulation"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p[:0], 5, x, y, 10), "pool is empty"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p[:4], 5, x, y, 10), "k=5 samples from a pool of 4"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p, 5, x, y, 3), r"class ids in 0\.\.2"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p, 5, x[:0], y[:0], 10), "non-zero number"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m,
                                      torch.utils.data.DataLoader(p, batch_size=10, shuffle=True), 5, x, y, 10),
     "must not shuffle"),
    (lambda m, x, y, p: metaal.select(make_strategy("bald"), torch.nn.Sequential(torch.nn.Flatten(),
                                      torch.nn.Linear(784, 10)), p, 5, x, y, 10, mc_passes=2), "needs dropout"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p, 5, x, y, 10, reference_size=5),
     "reference_size must be an int above 10"),
    (lambda m, x, y, p: metaal.select(make_strategy("margin"), m, p, 5, x, y, 10, shortlist=0),
     "shortlist must be a positive int"),
])
def test_bad_input_is_a_clear_error(setup, call, message):
    model, x, y, pool = setup
    with pytest.raises(ValueError, match=message):
        call(model, x, y, pool)


def test_readme_example_runs(monkeypatch, data_root, capsys):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- example: own-loop -->\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("METAAL_DATA_ROOT", str(data_root))
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    picked = namespace["picked"]
    assert picked.shape == (10,) and picked.unique().numel() == 10 and picked.max() < 20000


def test_excluded_samples_are_never_picked(setup):
    model, x, y, pool = setup
    first = metaal.select(make_strategy("margin"), model, pool, 30, x, y, 10, batch_size=100, device="cpu")
    mask = torch.zeros(len(pool), dtype=torch.bool)
    mask[first[:10]] = True
    by_mask = metaal.select(make_strategy("margin"), model, pool, 20, x, y, 10, batch_size=100, device="cpu",
                            exclude=mask)
    by_index = metaal.select(make_strategy("margin"), model, pool, 20, x, y, 10, batch_size=100, device="cpu",
                             exclude=first[:10])
    assert torch.equal(by_mask, by_index) and torch.equal(by_mask, first[10:30])  # the next 20 of the ranking


@pytest.mark.parametrize("name", ["coreset", "badge", "cluster_margin", "typiclust", "probcover"])
def test_batch_diverse_strategies_select_from_a_streamed_pool(setup, name):
    model, x, y, pool = setup
    labeled = torch.arange(0, len(pool), 7)  # every 7th pool sample is labeled already
    picked = metaal.select(make_strategy(name), model, pool, 20, x, y, 10, batch_size=128, candidates=400,
                           exclude=labeled, device="cpu")
    assert picked.shape == (20,) and picked.unique().numel() == 20
    assert not set(picked.tolist()) & set(labeled.tolist())


def test_batch_diverse_selection_does_not_pile_onto_near_duplicates(setup):
    """The failure of top-k margin at large k: 40 near-copies of the most uncertain image in the
    pool take half of margin's 20 picks; the batch-diverse strategies take at most 2 of them and
    spread the rest over more predicted classes."""
    model, x, y, pool = setup
    top = metaal.select(make_strategy("margin"), model, pool, 1, x, y, 10, device="cpu")
    noise = 0.01 * torch.randn((40, *pool.shape[1:]), generator=torch.Generator().manual_seed(1))
    pool = torch.cat([pool, pool[top].repeat(40, 1, 1, 1) + noise])

    def picks(name):
        picked = metaal.select(make_strategy(name), model, pool, 20, x, y, 10, batch_size=128, device="cpu")
        return int((picked >= len(pool) - 40).sum()), model(pool[picked])[0].argmax(1).unique().numel()

    margin_copies, margin_classes = picks("margin")
    assert margin_copies >= 8
    for name in ("cluster_margin", "badge", "coreset", "typiclust", "probcover"):
        copies, classes = picks(name)
        assert copies <= 2 and classes > margin_classes, name


def test_sequential_policy_selects_from_a_streamed_pool(setup):
    model, x, y, pool = setup
    policy = metaal.load_policy(REPO / "metaal" / "policies" / "linear.pt", device="cpu",
                                sequential=True)
    labeled = torch.arange(0, len(pool), 7)
    picked = metaal.select(policy, model, pool, 20, x, y, 10, batch_size=128, candidates=200, exclude=labeled,
                           device="cpu")
    assert picked.unique().numel() == 20 and not set(picked.tolist()) & set(labeled.tolist())


def test_the_shortlist_scores_the_samples_of_smallest_margin_exactly(setup):
    model, x, y, pool = setup  # 1324 samples; a shortlist of 300 leaves out three quarters of them
    policy = metaal.load_policy(REPO / "metaal" / "policies" / "linear.pt", device="cpu")
    labeled = torch.arange(0, len(pool), 9)

    def select(shortlist):
        return metaal.select(policy, model, pool, 20, x, y, 10, batch_size=128, candidates=100, exclude=labeled,
                             shortlist=shortlist, device="cpu", return_scores=True)

    (exact, exact_scores), (short, short_scores) = select(None), select(300)
    with torch.no_grad():
        top2 = model(pool)[0].softmax(-1).topk(2, -1).values
    margin = (top2[:, 0] - top2[:, 1]).index_fill(0, labeled, float("inf"))
    assert set(short.tolist()) <= set(margin.argsort()[:300].tolist())
    assert not set(short.tolist()) & set(labeled.tolist())
    shared = [i for i, p in enumerate(short.tolist()) if p in exact.tolist()]
    assert len(shared) >= 10  # the sample's features, and so its score, do not depend on the shortlist
    exact_score = dict(zip(exact.tolist(), exact_scores.tolist()))
    assert short_scores[shared].tolist() == pytest.approx([exact_score[p] for p in short[shared].tolist()], abs=1e-5)
    assert torch.equal(select(len(pool))[0], exact)  # a shortlist as large as the pool is the exact path


class _FeatureProbe(metaal.Strategy):
    """Entropy sampling that records the features each batch handed it."""

    def __init__(self, reads_features: bool):
        self.reads_features, self.seen = reads_features, []

    def score(self, ctx):
        self.seen.append(ctx.features)
        return entropy(ctx.pool.probs)


def test_features_are_computed_only_for_a_strategy_that_reads_them(setup):
    model, x, y, pool = setup
    reader, skipper = _FeatureProbe(True), _FeatureProbe(False)
    picks = [metaal.select(s, model, pool, 12, x, y, 10, batch_size=400, device="cpu") for s in (reader, skipper)]
    assert torch.equal(*picks)
    assert len(reader.seen) == len(skipper.seen) == 5  # 4 batches of the 1324 samples, then the top k
    assert all(f.shape[-1] == len(SCHEMA.names) for f in reader.seen) and all(f is None for f in skipper.seen)


def test_query_time_benchmark_times_every_selection_on_a_small_pool(tmp_path, data_root, capsys):
    query_time = load_benchmark("query_time")  # 6000 samples: more than the 4096 a shortlist keeps
    out = tmp_path / "query_time.json"
    query_time.main(["--data-root", str(data_root), "--pool", "6000", "--repeats", "1", "--out", str(out)])
    results = json.loads(out.read_text())["results"]
    assert all(results[f"{name}_s"] > 0 for name in ("entropy_plain", "entropy_select", "policy_select",
                                                     "policy_exact_select", "policy_topk_select"))
    assert results["entropy_select_matches_plain"] and 0 <= results["policy_picks_in_exact"] <= 10
    again = query_time.main(["--data-root", str(data_root), "--pool", "6000", "--repeats", "1", "--out", str(out)])
    assert again == 2 and "pass --overwrite" in capsys.readouterr().err  # never replaced silently


class OwnCNN(torch.nn.Module):
    """A researcher's own CNN, written outside metaal: logits and a 64-d embedding."""

    def __init__(self):
        super().__init__()
        conv = torch.nn.Conv2d
        self.body = torch.nn.Sequential(conv(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                        conv(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                                        torch.nn.Flatten(), torch.nn.Linear(32 * 7 * 7, 64), torch.nn.ReLU())
        self.head = torch.nn.Linear(64, 10)

    def forward(self, x):
        h = self.body(x.view(-1, 1, 28, 28))
        return self.head(h), h


@pytest.mark.e2e  # nine CNN fits and 20,000-image queries: about a minute
def test_the_shipped_policy_in_an_own_cnn_loop_spreads_its_picks_over_classes(data_root):
    """The README's select example with a CNN retrained each round on a 20,000-image pool, k=20,
    three rounds, three seeds: no predicted class takes more than 7 of a round's 20 picks
    (sequential selection counts each pick, with its predicted class, before the next)."""
    mnist = load_dataset("mnist", data_root)
    pool_x, pool_y = mnist.train.X[1000:21000], mnist.train.y[1000:21000]
    policy = metaal.load_policy("linear")
    for seed in range(3):
        torch.manual_seed(seed)
        start = torch.randperm(1000)[:20]
        labeled_x, labeled_y, picked_so_far = mnist.train.X[start], mnist.train.y[start], []
        for _ in range(3):
            model = OwnCNN()
            optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
            for _ in range(100):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(labeled_x)[0], labeled_y).backward()
                optimizer.step()
            picked = metaal.select(policy, model, pool_x, k=20, labeled_x=labeled_x, labeled_y=labeled_y,
                                   num_classes=10, batch_size=4096,
                                   exclude=torch.tensor(picked_so_far, dtype=torch.long))
            with torch.no_grad():
                predicted = model(pool_x[picked])[0].argmax(-1)
            assert len(set(picked.tolist())) == 20 and not set(picked.tolist()) & set(picked_so_far)
            assert torch.bincount(predicted, minlength=10).max() <= 7, (seed, predicted.tolist())
            picked_so_far += picked.tolist()
            labeled_x, labeled_y = torch.cat([labeled_x, pool_x[picked]]), torch.cat([labeled_y, pool_y[picked]])
