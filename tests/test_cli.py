"""`python -m metaal data` on the real shared data and on a broken copy."""

import shutil
import subprocess
import sys

from metaal.data import DATASETS


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "metaal", "data", *args], capture_output=True, text=True)


def test_lists_every_shared_dataset(data_root):
    result = run_cli("--data-root", str(data_root))
    assert result.returncode == 0, result.stdout + result.stderr
    for name in DATASETS:
        assert any(line.startswith(name + " ") and line.endswith("ok") for line in result.stdout.splitlines()), name
    assert "omniglot                    3630    1210      242  1x28x28" in result.stdout
    assert "checksums match SHA256SUMS" in result.stdout


def test_corrupt_and_missing_files_fail_with_names(tmp_path, data_root):
    shutil.copytree(data_root / "lal-checkerboard", tmp_path / "lal-checkerboard")
    (tmp_path / "lal-checkerboard" / "checkerboard4x4_test.npz").write_bytes(b"garbage")
    result = run_cli("checkerboard2x2", "checkerboard4x4", "mnist", "--data-root", str(tmp_path))
    assert result.returncode == 1
    lines = {line.split()[0]: line for line in result.stdout.splitlines()[2:] if line.strip()}
    assert lines["checkerboard2x2"].endswith("ok")
    assert "FAILED" in lines["checkerboard4x4"]
    assert "checkerboard4x4_test.npz is not a readable .npz" in lines["checkerboard4x4"]
    assert "FAILED: missing dataset file" in lines["mnist"] and "--download" in lines["mnist"]


def test_checksum_mismatch_is_reported(tmp_path, data_root):
    shutil.copytree(data_root / "libact", tmp_path / "libact")
    target = tmp_path / "libact" / "heart_scale"
    target.write_text(target.read_text().replace("0.708333", "0.708334", 1))  # still parses
    (tmp_path / "SHA256SUMS").write_text(
        "".join(line + "\n" for line in (data_root / "SHA256SUMS").read_text().splitlines() if "heart_scale" in line))
    result = run_cli("heart_scale", "--data-root", str(tmp_path))
    assert result.returncode == 1
    assert "heart_scale: sha256 does not match SHA256SUMS" in result.stdout


def test_missing_data_root_is_a_usage_error(tmp_path):
    result = run_cli("--data-root", str(tmp_path / "nowhere"))
    assert result.returncode == 2 and "is not a folder" in result.stderr


def test_metaal_lists_its_commands_and_refuses_unknown_ones():
    listing = subprocess.run([sys.executable, "-m", "metaal"], capture_output=True, text=True)
    assert listing.returncode == 0
    assert all(name in listing.stdout for name in ("meta-train", "transfer", "grid", "data"))
    unknown = subprocess.run([sys.executable, "-m", "metaal", "train"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown command 'train'" in unknown.stderr and "meta-train" in unknown.stderr


def test_meta_train_config_by_name_or_path(tmp_path):
    missing = subprocess.run([sys.executable, "-m", "metaal", "meta-train", "--config", "defualt", "--out",
                              str(tmp_path / "o")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert "config 'defualt': no such file, and no shipped config of that name (default, kernel, smoke)" \
        in missing.stderr
    resume = subprocess.run([sys.executable, "-m", "metaal", "meta-train", "--config", "smoke", "--resume"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert resume.returncode == 2 and "--resume needs --out" in resume.stderr
    assert not (tmp_path / "runs").exists()
