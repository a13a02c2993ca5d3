"""Every kind of bad input or fault a new user met (issue 11): a clear one-line error, exit 2
on the command line, a MetaalError in the API, and nothing lost."""

import json
import os
import re
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
POLICY = REPO / "metaal" / "policies" / "linear.pt"


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


@pytest.mark.e2e
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


@pytest.mark.e2e
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


@pytest.mark.e2e
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

@pytest.mark.e2e
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu(tmp_path):
    err = one_line_error(run(META_TRAIN, "--config", SMOKE, "--out", tmp_path / "o", "--device", "cuda"))
    assert "torch sees no GPU" in err


@pytest.mark.parametrize("override, message", [
    ("--checkpoint_every=0", "checkpoint_every must be >= 1 (steps between checkpoints); got 0"),
    ("--validation.every=0", "'validation': every must be >= 1 (steps between validations); got 0")])
@pytest.mark.e2e
def test_zero_intervals_are_refused_before_training(tmp_path, override, message):
    err = one_line_error(run(META_TRAIN, "--config", SMOKE, "--out", tmp_path / "o", override))
    assert message in err and not (tmp_path / "o").exists()


@pytest.mark.e2e
def test_out_that_is_a_file_is_refused_before_any_computation(tmp_path, data_root):
    (tmp_path / "taken").write_text("mine")
    for script, args in ((TRANSFER, ["--dataset", "heart", "--strategies", "margin"]),
                         (META_TRAIN, ["--config", SMOKE])):
        err = one_line_error(run(script, *args, "--data-root", data_root, "--out", tmp_path / "taken"))
        assert "taken is a file" in err
    assert (tmp_path / "taken").read_text() == "mine"


@pytest.mark.e2e
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


@pytest.mark.e2e
def test_benchmark_scripts_exit_cleanly_too(tmp_path, data_root):
    result = run(REPO / "benchmarks" / "baselines.py", "--data-root", data_root, "--policy", tmp_path / "none.pt",
                 "--out", tmp_path / "o")
    assert "no policy checkpoint at" in one_line_error(result)


# ------------------------------------------------------------------ issue 41: memory, races, modes, conversions

def metaal_cli(*args) -> int:
    from metaal.__main__ import main
    return main([str(a) for a in args])


def test_a_config_of_nested_yaml_aliases_is_refused_before_it_expands(tmp_path, capsys):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}, "
              f"*a{i - 1}, *a{i - 1}]" for i in range(1, 9)]  # 10^9 values in 400 bytes
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nseed: 0\n")
    assert metaal_cli("meta-train", "--config", bomb, "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    expanded = re.search(r"expands to ([\d,]+) values through YAML aliases", err)
    assert expanded and int(expanded.group(1).replace(",", "")) > 10**9 and "the 100,000 a config" in err
    assert not (tmp_path / "run").exists()
    flow = "{" + ", ".join(lines) + ", name: logreg}"  # the same as a --learner mapping on the command line
    assert metaal_cli("transfer", "--dataset", "wdbc", "--learner", flow, "--out", tmp_path / "t") == 2
    assert "values through YAML aliases" in capsys.readouterr().err


def test_an_absurd_seed_count_is_refused_naming_it_and_the_memory(tmp_path, data_root, capsys):
    assert metaal_cli("transfer", "--dataset", "wdbc", "--data-root", data_root, "--seeds", 1_000_000_000,
                      "--out", tmp_path / "t", "--wandb-mode", "disabled") == 2
    err = capsys.readouterr().err
    assert "1,000,000,000 seeds, episodes run as one batch" in err and "of memory available" in err
    assert not (tmp_path / "t").exists()  # refused before the run opened its folder
    assert metaal_cli("grid", "--data-root", data_root, "--seeds", 1_000_000_000, "--targets", "wdbc",
                      "--out", tmp_path / "g") == 2
    assert "--seeds 1000000000" in capsys.readouterr().err
    assert metaal_cli("meta-train", "--config", SMOKE, "--data-root", data_root, "--out", tmp_path / "m",
                      "--validation.seeds", 1_000_000_000, "--wandb.mode", "disabled") == 2
    assert "1,000,000,000 seeds, episodes run as one batch" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()  # refused before the run opened its folder


def test_a_second_run_on_a_claimed_folder_is_refused_naming_the_first(tmp_path, data_root, capsys):
    from metaal.outputs import claim_output_dir
    out = tmp_path / "run"
    with claim_output_dir(out, "the first run"):
        assert metaal_cli("meta-train", "--config", SMOKE, "--data-root", data_root, "--out", out,
                          "--wandb.mode", "disabled", "--no-progress") == 2
        err = capsys.readouterr().err
        assert f"is in use by another run (pid {os.getpid()}" in err and "the first run" in err
        (out / "policy.pt").write_bytes(b"the first run's")
    assert (out / "policy.pt").read_bytes() == b"the first run's" and not (out / ".metaal-run.lock").exists()


KILLED_MID_RUN = """
import os, sys
from metaal.outputs import claim_output_dir
claim = claim_output_dir(sys.argv[1], "metaal transfer")
claim.__enter__()
open(os.path.join(sys.argv[1], "wandb-debug.log"), "w").write("half a run")
os.kill(os.getpid(), 9)
"""


@pytest.mark.e2e
def test_a_run_killed_mid_way_is_named_unfinished_and_replaced_or_resumed(tmp_path, data_root, capsys):
    out = tmp_path / "t"
    subprocess.run([sys.executable, "-c", KILLED_MID_RUN, str(out)], timeout=120)
    small = ["--dataset", "wdbc", "--data-root", data_root, "--seeds", "2", "--rounds", "2", "--k", "2",
             "--strategies", "margin,random", "--wandb-mode", "disabled", "--no-progress", "--out", out]
    assert metaal_cli("transfer", *small) == 2
    err = capsys.readouterr().err
    assert "holds a run that did not finish (pid" in err and "no results to protect: pass --overwrite" in err
    assert metaal_cli("transfer", *small, "--overwrite") == 0
    assert "this run takes it over" in capsys.readouterr().err and (out / "summary.json").is_file()
    assert not (out / ".metaal-run.lock").exists()
    trained = tmp_path / "mt"
    subprocess.run([sys.executable, "-c", KILLED_MID_RUN, str(trained)], timeout=120)
    assert metaal_cli("meta-train", "--config", SMOKE, "--data-root", data_root, "--out", trained) == 2
    assert f"pass --resume (with --out {trained}) to continue it" in capsys.readouterr().err


def test_select_and_active_learn_leave_the_model_in_the_modes_they_found(data_root):
    mnist = load_dataset("mnist", data_root)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 32), torch.nn.Dropout(0.5),
                                torch.nn.BatchNorm1d(32), torch.nn.Linear(32, 10))
    model.train()
    model[3].eval()  # a frozen batch norm inside a training model: a mix of modes
    before = [m.training for m in model.modules()]
    metaal.select("linear", model, mnist.train.X[100:400], k=5, labeled_x=mnist.train.X[:20],
                  labeled_y=mnist.train.y[:20], num_classes=10, device="cpu")
    assert [m.training for m in model.modules()] == before
    seen = []

    def train_fn(net, x, y):
        seen.append(net.training)
        return net

    model.train()
    metaal.active_learn("margin", model, train_fn, mnist.train.X[:300], lambda i: mnist.train.y[i], rounds=2, k=5,
                        num_classes=10, initial=10, test=(mnist.test.X[:50], mnist.test.y[:50]), progress=False,
                        device="cpu")
    assert seen == [True, True, True] and model.training  # each round trains the model as it left it


@pytest.mark.parametrize("X, y, message", [
    (np.ones((40, 3)) * (1 + 2j), np.arange(40) % 2, "X holds complex numbers (complex128)"),
    (np.full((40, 3), 1e300), np.arange(40) % 2, "X holds values up to 1e+300, beyond float32's range"),
    (np.random.default_rng(0).normal(size=(40, 3)), np.r_[np.arange(39) % 2, 0.5], "the labels y hold 0.5"),
])
def test_an_input_conversion_that_would_lose_information_is_refused(tmp_path, X, y, message, capsys):
    np.savez(tmp_path / "mine.npz", X=X, y=y)
    assert metaal_cli("transfer", "--dataset", tmp_path / "mine.npz", "--out", tmp_path / "t", "--strategies",
                      "margin", "--wandb-mode", "disabled") == 2
    assert message in capsys.readouterr().err
    assert "contains NaN or inf" not in message


def test_a_policy_name_that_is_not_shipped_lists_the_shipped_ones(tmp_path, data_root, capsys):
    assert metaal_cli("transfer", "--dataset", "wdbc", "--data-root", data_root, "--policy", "kernal",
                      "--out", tmp_path / "t") == 2
    assert "no shipped policy is named 'kernal'; shipped: linear, kernel" in capsys.readouterr().err


def test_a_policy_whose_learner_this_metaal_lacks_is_refused_with_what_to_do(tmp_path, data_root, capsys):
    foreign = tmp_path / "foreign.pt"
    save_policy(PolicyNet(), foreign, learner={"name": "my_plugin_head"})
    assert metaal_cli("transfer", "--dataset", "wdbc", "--data-root", data_root, "--policy", foreign,
                      "--out", tmp_path / "t") == 2
    err = capsys.readouterr().err
    assert "meta-trained with the learner 'my_plugin_head', which this metaal does not have" in err
    assert "--plugins MODULE" in err and "--learner NAME" in err


def test_a_deep_table_cell_written_under_other_settings_is_refused(tmp_path, data_root, capsys):
    from tests.conftest import load_benchmark
    cells = tmp_path / "cells"
    cells.mkdir()
    settings = {"learner": {"name": "logreg"}, "seeds": [0, 1]}  # not the deep table's CNN, nor its seeds
    (cells / "kmnist__balanced-k50.json").write_text(json.dumps({"settings": settings}))
    deep_table = load_benchmark("deep_table")
    assert deep_table.main(["--data-root", str(data_root), "--out", str(tmp_path), "--targets", "kmnist",
                            "--regimes", "balanced-k50", "--table-only"]) == 2
    err = capsys.readouterr().err
    assert "kmnist__balanced-k50.json was written with other settings (" in err and "learner" in err
    assert json.loads((cells / "kmnist__balanced-k50.json").read_text())["settings"] == settings  # kept
