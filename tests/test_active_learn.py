"""metaal.active_learn end to end on real MNIST: the labeled set grows by k distinct unlabeled
samples a round, the round state reaches the strategy, each round is logged, bad input is refused."""

import pytest
import torch

import metaal
from metaal.data import load_dataset
from metaal.features import SCHEMA
from metaal.strategies import make_strategy


class BudgetSpy(metaal.Strategy):
    """Margin, recording the budget_used feature it is shown each round."""

    name = "budget_spy"

    def __init__(self):
        self.margin, self.seen = make_strategy("margin"), []

    def score(self, ctx):
        self.seen.append(float(ctx.features[..., SCHEMA.index("budget_used")].max()))
        return self.margin.score(ctx)


def train_fn(model, x, y):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(50):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    return model


@pytest.fixture(scope="module")
def mnist(data_root):
    return load_dataset("mnist", data_root)


def test_rounds_labels_and_round_state(mnist):
    pool, labels = mnist.train.X[:2000], mnist.train.y[:2000]
    asked, logged, spy = [], [], BudgetSpy()

    def label_fn(index):
        asked.append(index.clone())
        return labels[index]

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(pool), batch_size=300)
    history = metaal.active_learn(spy, None, train_fn, loader, label_fn, rounds=3, k=15, num_classes=10,
                                  initial=[0, 1, 2, 3, 4], test=(mnist.test.X[:500], mnist.test.y[:500]),
                                  log=logged.append, progress=False, device="cpu", batch_size=300)
    assert history.n_labeled == [5, 20, 35, 50] and len(history.accuracy) == 4
    assert history.labeled[:5].tolist() == [0, 1, 2, 3, 4] and history.labeled.unique().numel() == 50
    assert torch.equal(history.labels, labels[history.labeled])      # every label came from label_fn
    assert [len(a) for a in asked] == [5, 15, 15, 15]
    assert [entry["round"] for entry in logged] == [0, 1, 2, 3] and "accuracy" in logged[0]
    # budget_used: labels spent / (initial + rounds * k), as the policy saw it in meta-training
    per_round = sorted(set(round(b, 6) for b in spy.seen))
    assert per_round == pytest.approx([5 / 50, 20 / 50, 35 / 50], abs=1e-6)


@pytest.mark.parametrize("options, message", [
    (dict(rounds=3, k=500, initial=10), r"budget \(10 initial \+ 3 rounds x 500\) is larger than the pool of 1000"),
    (dict(rounds=2, k=5, initial=[3, 3]), "distinct pool indices"),
    (dict(rounds=0, k=5), "rounds and k must be >= 1"),
])
def test_bad_budgets_are_refused(mnist, options, message):
    with pytest.raises(metaal.errors.InputError, match=message):
        metaal.active_learn(make_strategy("margin"), None, train_fn, mnist.train.X[:1000],
                            lambda index: mnist.train.y[index], num_classes=10, progress=False, device="cpu",
                            **options)


def test_label_fn_of_the_wrong_shape_is_refused(mnist):
    with pytest.raises(metaal.errors.InputError, match="label_fn must return one class id"):
        metaal.active_learn(make_strategy("margin"), None, train_fn, mnist.train.X[:500], lambda index: [1, 2],
                            rounds=1, k=5, num_classes=10, initial=5, progress=False, device="cpu")
