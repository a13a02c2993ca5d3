"""metaal.tracking: mode resolution, a real offline W&B run read back from disk, disabled mode.

No network here: every test clears WANDB_API_KEY/WANDB_MODE and points HOME/NETRC (and
wandb's data/cache/config dirs) at a temporary folder, so wandb can neither find a real key
nor prompt for one; every run is offline or disabled.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from metaal.tracking import Tracker, read_offline_run, resolve_mode

REPO = Path(__file__).resolve().parents[1]
CONFIG = {"trainer": {"lr": 0.01}, "seed": 3}
LOSSES = {0: 1.5, 1: 0.75, 2: 0.25}


def _isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL", "WANDB_DIR"):
        mp.delenv(var, raising=False)
    mp.setenv("HOME", str(home))
    mp.setenv("NETRC", str(home / ".netrc"))  # absent unless a test writes it
    for var, sub in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"),
                     ("WANDB_CONFIG_DIR", "config")):
        mp.setenv(var, str(home / sub))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    _isolate(monkeypatch, home)
    return home


# --- resolve_mode ---------------------------------------------------------------------


def test_explicit_mode_wins_over_env_and_key(home, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_mode("disabled") == ("disabled", None)
    assert resolve_mode("offline") == ("offline", None)
    assert resolve_mode("dryrun") == ("offline", None)


def test_env_mode_wins_over_default(home, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode(None) == ("offline", None)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(None) == ("disabled", None)


def test_default_without_key_is_offline(home):
    mode, reason = resolve_mode(None)
    assert mode == "offline" and reason


def test_default_with_env_key_is_online(home, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode(None) == ("online", None)


def test_key_from_netrc(home):
    netrc_file = home / ".netrc"
    netrc_file.write_text("machine example.com login u password p\n")
    assert resolve_mode(None)[0] == "offline"  # an entry for another host is no key
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    netrc_file.chmod(0o600)
    assert resolve_mode(None) == ("online", None)
    netrc_file.write_text("machine api.wandb.ai login user\n")  # no password: no key
    assert resolve_mode(None)[0] == "offline"
    netrc_file.write_text("this is not a netrc file\n")  # malformed: no key, no crash
    assert resolve_mode(None)[0] == "offline"


def test_online_without_key_falls_back_to_offline_with_notice(home):
    mode, reason = resolve_mode("online")
    assert mode == "offline"
    assert "online" in reason and "\n" not in reason


def test_bad_mode_is_a_value_error(home):
    with pytest.raises(ValueError, match="online.*offline.*disabled"):
        resolve_mode("shared")


# --- a real offline run, shared by several tests (one wandb init) ------------------------


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tracking")
    (root / "home").mkdir()
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, root / "home")
        out = root / "out"
        png, ckpt = root / "curve.png", root / "model.pt"
        Image.new("RGB", (16, 16), (200, 30, 30)).save(png)
        torch.save({"w": torch.arange(4.0)}, ckpt)
        with Tracker(config=CONFIG, out_dir=out, mode="offline", job_type="test") as tracker:
            for step, loss in LOSSES.items():
                tracker.log({"train/loss": loss, "acc": step / 10}, step=step)
            tracker.log_table("curve", ["n_labelled", "acc"], [[10, 0.5], [20, 0.7]], step=3)
            tracker.log_image("plot", png, step=3)
            tracker.log_artifact(ckpt, name="meta-model", metadata={"seed": 3})
        tracker.finish()  # idempotent: a second finish is a no-op
        yield out, tracker, read_offline_run(tracker.run_dir)


def test_offline_run_directory(offline_run):
    out, tracker, _ = offline_run
    assert tracker.mode == "offline" and tracker.run_id
    assert tracker.run_dir.is_dir() and tracker.run_dir.parent == out / "wandb"
    assert tracker.run_dir.name.startswith("offline-run-") and tracker.run_id in tracker.run_dir.name
    assert (tracker.run_dir / f"run-{tracker.run_id}.wandb").is_file()


def test_offline_run_records_config_history_and_artifact(offline_run):
    _, tracker, run = offline_run
    assert run["run_id"] == tracker.run_id
    assert run["config"] == CONFIG
    losses = {row["_step"]: row["train/loss"] for row in run["history"] if "train/loss" in row}
    assert losses == LOSSES
    assert run["summary"]["train/loss"] == LOSSES[2]
    assert run["artifacts"] == ["meta-model"]


def test_offline_run_records_table_and_image(offline_run):
    _, tracker, run = offline_run
    (row,) = [r for r in run["history"] if "curve" in r]
    assert row["_step"] == 3 and row["plot"]["_type"] == "image-file"
    (table,) = (tracker.run_dir / "files").glob("media/table/curve_*.table.json")
    assert json.loads(table.read_text())["data"] == [[10, 0.5], [20, 0.7]]
    assert list((tracker.run_dir / "files").glob("media/images/plot_*.png"))


def test_resume_continues_the_same_run(offline_run, home):
    out, first, _ = offline_run
    with Tracker(config=CONFIG, out_dir=out, mode="offline", run_id=first.run_id) as second:
        assert second.run_id == first.run_id
        second.log({"train/loss": 0.1}, step=10)
    run = read_offline_run(second.run_dir)
    assert run["run_id"] == first.run_id
    assert [r["train/loss"] for r in run["history"] if r.get("_step") == 10] == [0.1]


def test_online_without_key_runs_offline_and_says_how_to_sync(home, tmp_path, capsys):
    with Tracker(config={}, out_dir=tmp_path / "out", mode="online") as tracker:
        assert tracker.mode == "offline"
    err = capsys.readouterr().err
    assert f"wandb sync {tracker.run_dir}" in err and len(err.strip().splitlines()) == 1


# --- disabled -----------------------------------------------------------------------------


def test_disabled_is_a_no_op(home, tmp_path):
    missing = tmp_path / "does-not-exist.png"  # no-ops must not even look at their inputs
    with Tracker(config=CONFIG, out_dir=tmp_path / "out", mode="disabled") as tracker:
        tracker.log({"loss": 1.0}, step=0)
        tracker.log_table("curve", ["a"], [[1]])
        tracker.log_image("plot", missing)
        tracker.log_artifact(missing, name="model")
    assert (tracker.mode, tracker.run_id, tracker.run_dir) == ("disabled", None, None)
    assert not (tmp_path / "out").exists()


def test_disabled_does_not_import_wandb(tmp_path):
    code = ("import sys; from metaal.tracking import Tracker; "
            f"Tracker({{}}, {str(tmp_path)!r}, mode='disabled').log({{'a': 1.0}}, step=0); "
            "sys.exit('wandb' in sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
