"""Every kind of bad input or fault a new user met (issue 11): a clear one-line error, exit 2
on the command line, a MetaalError in the API, and nothing lost."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import metaal
from metaal.commands.data import verify_checksums
from metaal.data import load_dataset, make_dataset
from metaal.errors import CorruptDataError, InputError, MetaalError, NonFiniteError
from metaal.policy import PolicyLoadError, PolicyNet, load_policy, save_policy
from metaal.strategies import make_strategy
from tests.conftest import REPO

TRANSFER = REPO / "experiments" / "transfer.py"
META_TRAIN = REPO / "experiments" / "meta_train.py"
SMOKE = REPO / "metaal" / "configs" / "smoke.yaml"
POLICY = REPO / "benchmarks" / "results" / "meta_train_default" / "policy.pt"


def run(script, *args, cwd=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")} | {"WANDB_MODE": "disabled"}
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def one_line_error(result) -> str:
    """The script's stderr, checked to be an exit-2 error and no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    return result.stderr


# ------------------------------------------------------------------ data files

def write_pngs(folder, data_root, per_class=4):
    mnist = load_dataset("mnist", data_root)
    for c in (0, 1):
        (folder / f"digit{c}").mkdir(parents=True)
        for i in torch.nonzero(mnist.train.y == c).flatten()[:per_class].tolist():
            pixels = (mnist.train.X[i, 0].numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"digit{c}" / f"{i}.png")


def test_corrupt_first_image_of_an_image_folder(tmp_path, data_root):
    write_pngs(tmp_path / "imgs", data_root)
    (tmp_path / "imgs" / "digit0" / "000_first.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(CorruptDataError, match="000_first.png is not a readable image"):
        load_dataset(tmp_path / "imgs")


def test_decompression_bomb_is_refused_before_decoding(tmp_path, data_root, monkeypatch):
    write_pngs(tmp_path / "imgs", data_root)
    Image.new("L", (2000, 2000)).save(tmp_path / "imgs" / "digit1" / "bomb.png")  # 4 Mpx in a few KB
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)  # bombs are > 2x this
    with pytest.raises(CorruptDataError, match="bomb.png is not a readable image.*DecompressionBomb"):
        load_dataset(tmp_path / "imgs")


def test_malformed_sha256sums_line_is_a_problem_not_a_traceback(tmp_path, data_root):
    shutil.copytree(data_root / "libact", tmp_path / "libact")
    digest = next(line for line in (data_root / "SHA256SUMS").read_text().splitlines() if "heart_scale" in line)
    (tmp_path / "SHA256SUMS").write_text(f"{digest}\nthis line is no checksum\n")
    problems = verify_checksums(tmp_path)
    assert problems == [f"{tmp_path / 'SHA256SUMS'} line 2: not '<64 hex digits>  <path>': 'this line is no checksum'"]
    result = subprocess.run([sys.executable, "-m", "metaal", "data", "heart_scale", "--data-root", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 1 and "line 2: not '<64 hex digits>" in result.stdout


@pytest.mark.parametrize("arrays, message", [
    (dict(X=np.zeros((0, 3)), y=np.zeros(0)), r"X has shape \(0, 3\): it needs at least one sample"),
    (dict(X=np.ones((20, 3)), y=np.full(20, 7)), "y holds a single class .7.; active learning needs samples of at "
                                                  "least 2 classes"),
])
def test_empty_or_single_class_data(tmp_path, arrays, message):
    np.savez(tmp_path / "mine.npz", **arrays)
    with pytest.raises(CorruptDataError, match=message):
        load_dataset(tmp_path / "mine.npz")
    with pytest.raises(MetaalError, match=message):
        make_dataset("mine", arrays["X"], arrays["y"])


@pytest.mark.parametrize("index", ["0", "-3"])
def test_libsvm_feature_index_below_one(tmp_path, index):
    (tmp_path / "libact").mkdir()
    (tmp_path / "libact" / "heart_scale").write_text(f"+1 1:0.5 2:0.1\n-1 {index}:0.3 2:0.2\n")
    with pytest.raises(CorruptDataError, match=f"line 2: feature index {index}; LIBSVM feature indices start at 1"):
        load_dataset("heart_scale", tmp_path)


def test_small_dataset_caps_are_said_and_recorded(tmp_path, data_root):
    ds = load_dataset("heart_scale", data_root)  # its first 60 rows: a pool of 36, 12 to evaluate
    np.savez(tmp_path / "small.npz", X=ds.train.X.numpy()[:60], y=ds.train.y.numpy()[:60])
    out = tmp_path / "out"
    result = run(TRANSFER, "--dataset", tmp_path / "small.npz", "--strategies", "margin,random", "--out", out,
                 "--seeds", "2", "--rounds", "10", "--k", "2", "--no-progress", "--device", "cpu")
    assert result.returncode == 0, result.stderr
    warnings = json.loads((out / "summary.json").read_text())["warnings"]
    assert len(warnings) == 3
    assert "pool capped at" in warnings[0] and "instead of 200" in warnings[0]
    assert "evaluation set capped at" in warnings[1] and "instead of 400" in warnings[1]
    assert "labels more than half of the pool" in warnings[2]
    assert all(f"warning: {w}" in result.stderr for w in warnings)


# ------------------------------------------------------------------ checkpoints

def broken_policies(tmp_path):
    save_policy(PolicyNet(hidden=8), tmp_path / "good.pt")
    payload = torch.load(tmp_path / "good.pt", weights_only=True)
    missing = {k: v for k, v in payload.items() if k != "state_dict"}
    unknown = payload | {"hparams": payload["hparams"] | {"depth": 3}}
    nan = payload | {"state_dict": {k: torch.full_like(v, float("nan")) for k, v in payload["state_dict"].items()}}
    return {"missing": missing, "unknown": unknown, "nan": nan}


@pytest.mark.parametrize("kind, message", [
    ("missing", r"incomplete policy checkpoint: it lacks \['state_dict'\]"),
    ("unknown", r"a policy network with \['depth'\], which this metaal"),
    ("nan", "contain NaN or inf"),
])
def test_policy_checkpoint_with_missing_unknown_or_nan_fields(tmp_path, kind, message):
    torch.save(broken_policies(tmp_path)[kind], tmp_path / f"{kind}.pt")
    with pytest.raises(PolicyLoadError, match=message):
        load_policy(tmp_path / f"{kind}.pt", device="cpu")


class _WritesAFile:
    """A pickled object whose unpickling would create a file: proof that no code ran."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_resume_from_a_truncated_or_code_carrying_checkpoint(tmp_path, data_root):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"step": 3, "net": {}}, out / "checkpoint.pt")
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])
    err = one_line_error(run(META_TRAIN, "--config", SMOKE, "--data-root", data_root, "--out", out, "--resume",
                                         "--no-progress"))
    assert "checkpoint.pt is not a readable training state" in err
    sentinel = tmp_path / "code_ran"
    torch.save({"step": _WritesAFile(str(sentinel))}, out / "checkpoint.pt")
    err = one_line_error(run(META_TRAIN, "--config", SMOKE, "--data-root", data_root, "--out", out, "--resume",
                                         "--no-progress"))
    assert "asks to load the Python object" in err and "refused without running anything" in err
    assert not sentinel.exists()


# ------------------------------------------------------------------ settings and output folders

@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu(tmp_path):
    err = one_line_error(run(META_TRAIN, "--config", SMOKE, "--out", tmp_path / "o", "--device", "cuda"))
    assert "torch sees no GPU" in err


@pytest.mark.parametrize("override, message", [
    ("--checkpoint_every=0", "checkpoint_every must be >= 1 (steps between checkpoints); got 0"),
    ("--validation.every=0", "'validation': every must be >= 1 (steps between validations); got 0")])
def test_zero_intervals_are_refused_before_training(tmp_path, override, message):
    err = one_line_error(run(META_TRAIN, "--config", SMOKE, "--out", tmp_path / "o", override))
    assert message in err and not (tmp_path / "o").exists()


def test_out_that_is_a_file_is_refused_before_any_computation(tmp_path, data_root):
    (tmp_path / "taken").write_text("mine")
    for script, args in ((TRANSFER, ["--dataset", "heart", "--strategies", "margin"]),
                         (META_TRAIN, ["--config", SMOKE])):
        err = one_line_error(run(script, *args, "--data-root", data_root, "--out", tmp_path / "taken"))
        assert "taken is a file" in err
    assert (tmp_path / "taken").read_text() == "mine"


def test_earlier_results_are_never_replaced_silently(tmp_path, data_root):
    earlier = tmp_path / "meta_run"  # a meta-training run's folder
    earlier.mkdir()
    (earlier / "summary.json").write_text('{"best_val_aulc": 0.81}\n')
    shutil.copy(POLICY, earlier / "policy.pt")
    small = ["--dataset", "heart", "--data-root", data_root, "--strategies", "margin", "--seeds", "2", "--rounds", "2",
             "--no-progress", "--device", "cpu"]
    err = one_line_error(run(TRANSFER, *small, "--out", earlier))
    assert "already holds results (policy.pt, summary.json); pass --overwrite" in err
    assert (earlier / "summary.json").read_text() == '{"best_val_aulc": 0.81}\n'
    err = one_line_error(run(META_TRAIN, "--config", SMOKE, "--data-root", data_root, "--out", earlier))
    assert "already holds results" in err and "--resume" in err
    assert run(TRANSFER, *small, "--out", earlier, "--overwrite").returncode == 0  # explicit: replaced
    assert "strategies" in json.loads((earlier / "summary.json").read_text())


# ------------------------------------------------------------------ the deployment API

@pytest.fixture(scope="module")
def mnist_model(data_root):
    mnist = load_dataset("mnist", data_root)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    return model.eval(), mnist.train.X[:30], mnist.train.y[:30], mnist.train.X[1000:1600].clone()


def test_select_with_labeled_samples_of_another_shape(mnist_model):
    model, x, y, pool = mnist_model
    with pytest.raises(InputError, match=r"labeled_x samples have shape \(784,\) but pool samples \(1, 28, 28\)"):
        metaal.select(make_strategy("margin"), model, pool, 5, x.flatten(1), y, 10)


def test_nan_in_the_pool_is_a_metaal_error_naming_the_rows(mnist_model):
    model, x, y, pool = mnist_model
    pool[550] = float("nan")
    with pytest.raises(MetaalError, match=r"pool rows \[550\] contain NaN or inf") as caught:
        metaal.select(make_strategy("margin"), model, pool, 5, x, y, 10, batch_size=512)
    assert isinstance(caught.value, NonFiniteError)


def test_meta_training_says_when_a_budget_labels_most_of_the_pool(tmp_path, data_root, capsys):
    from metaal.config import load_config
    from metaal.trainers import MetaTrainConfig, MetaTrainer

    cfg = load_config(MetaTrainConfig, SMOKE, ["--loop.rounds", "20", "--wandb.mode", "disabled"])  # 60 of 100
    trainer = MetaTrainer(cfg, tmp_path / "run", data_root=data_root)
    assert [w.split(":")[0] for w in trainer.warnings] == ["data.sources[0] (mnist)", "validation"]
    assert "labels more than half of the pool of 100" in capsys.readouterr().err


def test_benchmark_scripts_exit_cleanly_too(tmp_path, data_root):
    result = run(REPO / "benchmarks" / "baselines.py", "--data-root", data_root, "--policy", tmp_path / "none.pt",
                 "--out", tmp_path / "o")
    assert "no policy checkpoint at" in one_line_error(result)
