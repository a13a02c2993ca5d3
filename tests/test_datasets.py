"""Every loader on the real shared files, plus the user .npz and image-folder paths."""

import gzip
import pickle
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from metaal.data import DATASETS, load_dataset
from metaal.errors import CorruptDataError, DataError, MissingDataError, UnsafePickleError

# (total samples, classes, input shape): MNIST-family sizes are the official ones, the
# UCI/LIBSVM totals are the published dataset sizes, Omniglot is 242 characters x 20.
EXPECTED = {
    "mnist": (70000, 10, (1, 28, 28)),
    "fashion_mnist": (70000, 10, (1, 28, 28)),
    "kmnist": (10000, 10, (1, 28, 28)),
    "omniglot": (242 * 20, 242, (1, 28, 28)),
    "adult": (1605, 2, (119,)),
    "australian": (690, 2, (14,)),
    "breast_cancer": (263, 2, (9,)),
    "diabetis": (768, 2, (8,)),
    "flare_solar": (144, 2, (9,)),
    "german": (1000, 2, (20,)),
    "heart": (270, 2, (13,)),
    "mushrooms": (8124, 2, (22,)),
    "waveform": (5000, 2, (21,)),
    "wdbc": (569, 2, (30,)),
    "checkerboard2x2": (2000, 2, (2,)),
    "checkerboard4x4": (2000, 2, (2,)),
    "rotated_checkerboard2x2": (2000, 2, (2,)),
    "heart_scale": (270, 2, (13,)),
    "casp_rmsd5": (45730, 5, (9,)),
    "yeast_labelsets6": (617, 6, (103,)),
}


def test_every_registered_dataset_is_covered():
    assert set(EXPECTED) == set(DATASETS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_shared_dataset_loads(name, data_root):
    total, n_classes, shape = EXPECTED[name]
    ds = load_dataset(name, data_root)
    assert len(ds.train) + len(ds.test) == total
    assert ds.num_classes == len(ds.class_names) == n_classes
    assert ds.input_shape == shape
    for part in (ds.train, ds.test):
        assert part.X.dtype == torch.float32 and part.y.dtype == torch.int64
        assert torch.isfinite(part.X).all()
        # every class appears in both parts
        assert torch.bincount(part.y, minlength=n_classes).min() > 0
    assert load_dataset(name, data_root) is ds  # cached


def test_mnist_matches_official_files(data_root):
    ds = load_dataset("mnist", data_root)
    with gzip.open(data_root / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    assert torch.equal(ds.test.y, torch.from_numpy(labels.astype(np.int64)))
    assert 0 <= ds.train.X.min() and ds.train.X.max() == 1.0
    assert ds.class_names == tuple(str(i) for i in range(10))


def test_kmnist_split_is_stratified_and_seeded(data_root):
    ds = load_dataset("kmnist", data_root)
    counts_train = torch.bincount(ds.train.y, minlength=10)
    counts_test = torch.bincount(ds.test.y, minlength=10)
    assert (counts_train == 750).all() and (counts_test == 250).all()  # 1000 per class, 25% test
    assert ds.class_names[0] == "0:お"


def test_omniglot_merges_subsets_and_groups_by_alphabet(data_root):
    ds = load_dataset("omniglot", data_root)
    assert sorted(set(ds.class_groups)) == [
        "Balinese", "Early_Aramaic", "Greek", "Japanese_(katakana)", "Korean", "Latin", "Sanskrit", "Tagalog"]
    per_class = torch.bincount(ds.train.y) + torch.bincount(ds.test.y)
    assert (per_class == 20).all()
    assert len(set(ds.class_names)) == 242  # Greek and Latin, shared by both zips, appear once
    # ink is 1 (inverted like MNIST): most pixels are background 0
    assert ds.train.X.mean() < 0.3


def test_uci_labels_are_binary_ids(data_root):
    ds = load_dataset("heart", data_root)
    assert set(ds.train.y.tolist()) == {0, 1} and ds.class_names == ("0", "1")
    ds = load_dataset("heart_scale", data_root)
    assert ds.class_names == ("-1", "1")


def test_casp_is_rmsd_quintiles(data_root):
    ds = load_dataset("casp_rmsd5", data_root)
    values = np.loadtxt(data_root / "casp-protein" / "CASP.csv", delimiter=",", skiprows=1)
    counts = torch.bincount(torch.cat([ds.train.y, ds.test.y]))
    assert (abs(counts - len(values) / 5) < 0.01 * len(values) / 5).all()  # equal but for tied RMSDs
    # the features are the file's F1..F9 columns, in order (the first test row is some file row)
    assert np.isclose(values[:, 1:], ds.test.X[0].numpy(), rtol=1e-6).all(1).any()
    assert ds.class_names == ("q1", "q2", "q3", "q4", "q5")


def test_yeast_keeps_its_six_commonest_label_sets(data_root):
    ds = load_dataset("yeast_labelsets6", data_root)
    counts = (torch.bincount(ds.train.y) + torch.bincount(ds.test.y)).tolist()
    by_name = dict(zip(ds.class_names, counts))
    assert by_name["2,3,11,12"] == by_name["3,4,11,12"] == 145 and by_name["4,5,11,12"] == 65
    assert sum(counts) == 617


def test_casp_with_another_header_is_refused(tmp_path, data_root):
    (tmp_path / "casp-protein").mkdir()
    lines = (data_root / "casp-protein" / "CASP.csv").read_text().splitlines()[:50]
    (tmp_path / "casp-protein" / "CASP.csv").write_text("\n".join(['"F1",' + lines[0].split(",", 1)[1], *lines[1:]]))
    with pytest.raises(CorruptDataError, match="expected the header RMSD,F1"):
        load_dataset("casp_rmsd5", tmp_path)
    (tmp_path / "casp-protein" / "CASP.csv").write_text("\n".join([lines[0], "1.0,abc" + ",1" * 8]))
    with pytest.raises(CorruptDataError, match="numeric columns"):
        load_dataset("casp_rmsd5", tmp_path)


# ------------------------------------------------------------------ errors on the real formats

def test_missing_file_names_it_and_says_how_to_get_it(tmp_path):
    with pytest.raises(MissingDataError, match=r"train-images-idx3-ubyte\.gz.*--download"):
        load_dataset("mnist", tmp_path)
    with pytest.raises(MissingDataError, match=r"wdbc\.p.*shared data folder"):
        load_dataset("wdbc", tmp_path)


def test_no_data_root_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("METAAL_DATA_ROOT", raising=False)
    with pytest.raises(MissingDataError, match="--data-root"):
        load_dataset("mnist")


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'.*mnist"):
        load_dataset("cifar10")


def test_truncated_gzip_is_reported_as_corrupt(tmp_path, data_root):
    shutil.copytree(data_root / "fashion-mnist", tmp_path / "fashion-mnist")
    target = tmp_path / "fashion-mnist" / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:100_000])
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte.gz"):
        load_dataset("fashion_mnist", tmp_path)


def test_idx_with_wrong_size_is_reported(tmp_path, data_root):
    shutil.copytree(data_root / "mnist", tmp_path / "mnist")
    target = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(data_root / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        data = f.read()
    with gzip.open(target, "wb") as f:
        f.write(data[:-10])
    with pytest.raises(CorruptDataError, match="t10k-labels.*header promises 10000 bytes"):
        load_dataset("mnist", tmp_path)


def test_pickle_that_would_run_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    (tmp_path / "lal-rl-uci").mkdir()
    (tmp_path / "lal-rl-uci" / "german.p").write_bytes(pickle.dumps({"X": Exploit(), "y": np.zeros(3)}))
    with pytest.raises(UnsafePickleError, match=r"german\.p.*refused to load posix\.system"):
        load_dataset("german", tmp_path)
    assert not marker.exists()


def test_corrupt_pickle_is_reported(tmp_path, data_root):
    (tmp_path / "lal-rl-uci").mkdir()
    data = (data_root / "lal-rl-uci" / "heart.p").read_bytes()
    (tmp_path / "lal-rl-uci" / "heart.p").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDataError, match=r"heart\.p is not a readable pickle"):
        load_dataset("heart", tmp_path)


def test_corrupt_libsvm_names_the_line(tmp_path, data_root):
    (tmp_path / "libact").mkdir()
    lines = (data_root / "libact" / "heart_scale").read_text().splitlines()
    lines[3] = "+1 1:0.5 2:oops"
    (tmp_path / "libact" / "heart_scale").write_text("\n".join(lines))
    with pytest.raises(CorruptDataError, match="heart_scale line 4"):
        load_dataset("heart_scale", tmp_path)


# ------------------------------------------------------------------ user .npz files

def _real_tabular(data_root):
    ds = load_dataset("wdbc", data_root)
    return ds.train.X.numpy(), ds.train.y.numpy(), ds.test.X.numpy(), ds.test.y.numpy()


def test_npz_without_test_part_is_split(tmp_path, data_root):
    X, y, _, _ = _real_tabular(data_root)
    np.savez(tmp_path / "mine.npz", X=X, y=np.where(y == 1, "malignant", "benign"))
    ds = load_dataset(tmp_path / "mine.npz")
    assert ds.name == "mine" and ds.class_names == ("benign", "malignant")
    assert len(ds.train) + len(ds.test) == len(X) and ds.input_shape == (30,)


def test_npz_with_test_part_keeps_it(tmp_path, data_root):
    X, y, Xt, yt = _real_tabular(data_root)
    np.savez(tmp_path / "mine2.npz", X=X, y=y, X_test=Xt, y_test=yt)
    ds = load_dataset(str(tmp_path / "mine2.npz"))
    assert torch.equal(ds.test.X, torch.from_numpy(Xt)) and torch.equal(ds.train.y, torch.from_numpy(y))


@pytest.mark.parametrize("arrays, message", [
    (dict(features=np.zeros((4, 2)), labels=np.zeros(4)),
     r"must hold arrays \['X', 'y'\].*holds \['features', 'labels'\]"),
    (dict(X=np.zeros((4, 2)), y=np.zeros(5)), "X has 4 rows but y has 5 labels"),
    (dict(X=np.array([[0.0, np.nan]] * 4), y=np.array([0, 1, 0, 1])), "NaN"),
    (dict(X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), X_test=np.zeros((2, 2))), "both X_test and y_test"),
    (dict(X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]), X_test=np.zeros((2, 3)), y_test=np.array([0, 1])),
     r"train inputs have shape \(2,\) but test inputs \(3,\)"),
])
def test_bad_npz_is_refused_with_reason(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(CorruptDataError, match=message):
        load_dataset(path)


def test_npz_that_is_not_a_zip(tmp_path):
    path = tmp_path / "broken.npz"
    path.write_bytes(b"not a zip at all")
    with pytest.raises(CorruptDataError, match="broken.npz"):
        load_dataset(path)


# ------------------------------------------------------------------ image folders

def _write_mnist_pngs(folder, ds, per_class=6, classes=(0, 1, 2)):
    for c in classes:
        (folder / f"digit{c}").mkdir(parents=True)
        idx = torch.nonzero(ds.train.y == c).flatten()[:per_class]
        for i in idx.tolist():
            pixels = (ds.train.X[i, 0].numpy() * 255).round().astype(np.uint8)
            Image.fromarray(pixels, mode="L").save(folder / f"digit{c}" / f"{i}.png")


def test_image_folder_roundtrips_real_images(tmp_path, data_root):
    mnist = load_dataset("mnist", data_root)
    _write_mnist_pngs(tmp_path / "digits", mnist)
    ds = load_dataset(tmp_path / "digits")
    assert ds.class_names == ("digit0", "digit1", "digit2")
    assert ds.input_shape == (1, 28, 28) and len(ds.train) + len(ds.test) == 18
    # PNG is lossless: every loaded image is one of the original MNIST images
    originals = mnist.train.X[torch.isin(mnist.train.y, torch.tensor([0, 1, 2]))]
    dist = torch.cdist(ds.train.X.flatten(1), originals.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
    assert dist.min(dim=1).values.max() < 1e-5


def test_image_folder_with_train_and_test(tmp_path, data_root):
    mnist = load_dataset("mnist", data_root)
    _write_mnist_pngs(tmp_path / "set" / "train", mnist, per_class=4)
    _write_mnist_pngs(tmp_path / "set" / "test", mnist, per_class=2)
    ds = load_dataset(tmp_path / "set")
    assert len(ds.train) == 12 and len(ds.test) == 6


def test_image_folder_with_unreadable_image(tmp_path, data_root):
    mnist = load_dataset("mnist", data_root)
    _write_mnist_pngs(tmp_path / "digits", mnist)
    (tmp_path / "digits" / "digit1" / "zz_broken.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(CorruptDataError, match="zz_broken.png is not a readable image"):
        load_dataset(tmp_path / "digits")
