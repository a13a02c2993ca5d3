"""Datasets: tensors with a train/test split and class names, by name or by path.

    ds = load_dataset("mnist", data_root="../shared/data")
    ds.train.X  # (60000, 1, 28, 28) float32 in [0, 1]
    ds.train.y  # (60000,) int64 in 0..9
    ds.class_names, ds.input_shape, ds.num_classes

Names are the datasets shipped in the shared data folder (`DATASETS`); a path is a user
`.npz` (X, y, optional X_test, y_test) or an image folder (one sub-folder per class,
optionally under train/ and test/). Loaded datasets are cached in memory, so treat their
tensors as read-only.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from metaal.data import readers
from metaal.errors import CorruptDataError, DataError, InputError, MissingDataError
from metaal.registry import Registry

DATA_ROOT_ENV = "METAAL_DATA_ROOT"
# Datasets without an official test split are split once, stratified, with this seed.
TEST_FRACTION = 0.25
SPLIT_SEED = 0
IMAGE_SIZE = 28


@dataclass(frozen=True)
class Part:
    """One part (train or test) of a dataset."""

    X: torch.Tensor  # (N, ...) float32
    y: torch.Tensor  # (N,) int64, class ids 0..C-1

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Part
    test: Part
    class_names: tuple[str, ...]
    # Optional coarser grouping of classes (Omniglot: the alphabet of each character), so
    # that whole groups can be held out of meta-training.
    class_groups: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train.X.shape[1:])

    def __post_init__(self):
        for part_name, part in (("train", self.train), ("test", self.test)):
            if part.X.shape[0] != part.y.shape[0]:
                raise CorruptDataError(
                    f"{self.name}: {part_name} has {part.X.shape[0]} inputs but {part.y.shape[0]} labels"
                )
            if len(part) == 0:
                raise CorruptDataError(f"{self.name}: the {part_name} part is empty")
            if not torch.isfinite(part.X).all():
                raise CorruptDataError(f"{self.name}: {part_name} inputs contain NaN or inf")
        if self.train.X.shape[1:] != self.test.X.shape[1:]:
            raise CorruptDataError(
                f"{self.name}: train inputs have shape {tuple(self.train.X.shape[1:])} but test "
                f"inputs {tuple(self.test.X.shape[1:])}"
            )
        if self.class_groups is not None and len(self.class_groups) != self.num_classes:
            raise InputError("class_groups needs one entry per class")


# ---------------------------------------------------------------------------- helpers

def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """`data_root` if given, else $METAAL_DATA_ROOT; it must be an existing folder."""
    root = data_root if data_root is not None else os.environ.get(DATA_ROOT_ENV)
    if root is None:
        raise MissingDataError(
            f"no data root: pass --data-root DIR or set {DATA_ROOT_ENV} "
            "(the project's real datasets live in ../shared/data)"
        )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise MissingDataError(f"data root {path} is not a folder; pass --data-root DIR or set {DATA_ROOT_ENV}")
    return path


def stratified_split(y: np.ndarray, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED):
    """Seeded split keeping every class in both parts: returns (train_idx, test_idx)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) < 2:
            raise CorruptDataError(f"class {c} has a single sample; it cannot be in both train and test")
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_fraction)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def encode_labels(*label_arrays: np.ndarray, name: str = "the dataset") -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Map raw labels (any integers or strings, shared across arrays) to ids 0..C-1 and names.
    Refuses non-integer numbers (0.5 would silently become a class of its own)."""
    flat = [np.asarray(a).reshape(-1) for a in label_arrays]
    for a in flat:
        whole = np.isfinite(a) & (a == np.round(a.real)) if a.dtype.kind in "fc" else None
        if whole is not None and not whole.all():
            raise CorruptDataError(f"{name}: the labels y hold {a[~whole][0].item()!r}, which is not an integer: "
                                   "labels are class ids or names; round them if they are ids, or store them as "
                                   "strings if they are names")
    classes = np.unique(np.concatenate(flat))
    ids = [np.searchsorted(classes, a) for a in flat]

    def name(v) -> str:
        return str(int(v)) if isinstance(v, (float, np.floating)) and float(v).is_integer() else str(v)

    return ids, tuple(name(v) for v in classes)


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_inputs_fit_float32(name: str, X: np.ndarray) -> None:
    """metaal computes in float32: refuse what that would change, naming it."""
    if np.iscomplexobj(X):
        raise CorruptDataError(f"{name}: X holds complex numbers ({X.dtype}); metaal reads real inputs: pass X.real, "
                               "or the real and imaginary parts as separate columns")
    if X.dtype.kind == "f" and X.dtype.itemsize > 4:
        finite = np.abs(X[np.isfinite(X)])
        largest = float(finite.max()) if finite.size else 0.0
        if largest > FLOAT32_MAX:
            raise CorruptDataError(f"{name}: X holds values up to {largest:.3g}, beyond float32's range "
                                   f"(+-{FLOAT32_MAX:.3g}), in which metaal computes; rescale them (divide by a "
                                   "constant, or take a log)")


def _part(name: str, X: np.ndarray, y: np.ndarray) -> Part:
    _check_inputs_fit_float32(name, np.asarray(X))
    try:
        X = np.asarray(X, dtype=np.float32)
    except (ValueError, TypeError) as e:
        raise CorruptDataError(f"{name}: X must hold numbers ({e})") from e
    return Part(torch.as_tensor(X), torch.as_tensor(y, dtype=torch.int64))


def _check_classes(name: str, names: tuple[str, ...]) -> None:
    if len(names) < 2:
        raise CorruptDataError(f"{name}: y holds a single class ({names[0] if names else 'none'}); active learning "
                               "needs samples of at least 2 classes")


def make_dataset(name, X, y, X_test=None, y_test=None, class_names=None, class_groups=None) -> Dataset:
    """Build a Dataset from arrays; without a test part, split off a stratified one."""
    X = np.asarray(X)
    if X.ndim < 2:
        raise CorruptDataError(f"{name}: X must be (N, ...) with one row per sample, got shape {X.shape}")
    if len(X) == 0 or X[0].size == 0:
        raise CorruptDataError(f"{name}: X has shape {X.shape}: it needs at least one sample and one feature")
    if (X_test is None) != (y_test is None):
        raise CorruptDataError(f"{name}: give both X_test and y_test, or neither")
    if len(X) != np.asarray(y).reshape(-1).shape[0]:
        raise CorruptDataError(f"{name}: X has {len(X)} rows but y has {np.asarray(y).size} labels")
    if X_test is None:
        (y_ids,), names = encode_labels(y, name=name)
        _check_classes(name, names)
        train_idx, test_idx = stratified_split(y_ids)
        X, X_test, y_ids, y_test_ids = X[train_idx], X[test_idx], y_ids[train_idx], y_ids[test_idx]
    else:
        (y_ids, y_test_ids), names = encode_labels(y, y_test, name=name)
        _check_classes(name, names)
    if class_names is not None and len(class_names) != len(names):
        raise CorruptDataError(f"{name}: {len(class_names)} class names for {len(names)} classes in the labels")
    return Dataset(
        name=name,
        train=_part(name, X, y_ids),
        test=_part(name, X_test, y_test_ids),
        class_names=tuple(class_names) if class_names is not None else names,
        class_groups=class_groups,
    )


# ---------------------------------------------------------------------------- loaders

_FROM_SHARED = "Copy it from the project's shared data folder (its MANIFEST.md names each file's source)."


def _torchvision_download_hint(name: str) -> str:
    return (f"Fetch it with `metaal data --download --data-root DIR` (needs a network; "
            f"torchvision downloads {name}), or copy it from the project's shared data folder.")


def _load_mnist_family(root: Path, name: str, folder: str, tv_class: str, download: bool = False) -> Dataset:
    """MNIST / Fashion-MNIST: the four idx .gz files in root/folder, or torchvision's copy."""
    files = [root / folder / f for f in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")]
    if all(f.is_file() for f in files):
        Xtr, ytr, Xte, yte = (readers.read_idx_gz(f) for f in files)
        return _images_dataset(name, Xtr, ytr, Xte, yte)
    return _load_with_torchvision(root, name, tv_class, download, missing=next(f for f in files if not f.is_file()))


def _load_kmnist(root: Path, download: bool = False) -> Dataset:
    """KMNIST: the shared folder holds only the 10k test images, which we split ourselves."""
    imgs, labels = root / "kmnist" / "kmnist-test-imgs.npz", root / "kmnist" / "kmnist-test-labels.npz"
    tv_raw = root / "KMNIST" / "raw"
    if imgs.is_file() and labels.is_file() and not (download or tv_raw.is_dir()):
        X = readers.read_npz(imgs, required=("arr_0",))["arr_0"]
        y = readers.read_npz(labels, required=("arr_0",))["arr_0"]
        if X.shape != (len(y), 28, 28):
            raise CorruptDataError(f"{imgs} should hold ({len(y)}, 28, 28) images, found {X.shape}")
        names = _kmnist_class_names(root / "kmnist" / "kmnist_classmap.csv")
        return make_dataset("kmnist", X[:, None] / np.float32(255), y, class_names=names)
    return _load_with_torchvision(root, "kmnist", "KMNIST", download, missing=imgs if not imgs.is_file() else labels)


def _kmnist_class_names(classmap: Path) -> tuple[str, ...] | None:
    if not classmap.is_file():
        return None
    rows = [line.split(",") for line in classmap.read_text(encoding="utf-8").splitlines()[1:] if line]
    return tuple(f"{r[0]}:{r[2]}" for r in rows)


def _load_with_torchvision(root: Path, name: str, tv_class: str, download: bool, missing: Path) -> Dataset:
    import torchvision.datasets

    cls = getattr(torchvision.datasets, tv_class)
    if not download and not (root / tv_class / "raw").is_dir():
        raise MissingDataError(f"missing dataset file {missing}. {_torchvision_download_hint(name)}")
    try:
        train = cls(root=str(root), train=True, download=download)
        test = cls(root=str(root), train=False, download=download)
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise CorruptDataError(f"{root / tv_class / 'raw'}: {e}. {_torchvision_download_hint(name)}") from e
    return _images_dataset(name, train.data.numpy(), train.targets.numpy(), test.data.numpy(),
                           test.targets.numpy(), class_names=tuple(train.classes))


def _images_dataset(name, Xtr, ytr, Xte, yte, class_names=None) -> Dataset:
    """uint8 (N, 28, 28) images -> float (N, 1, 28, 28) in [0, 1]."""
    scale = np.float32(1 / 255)
    return make_dataset(name, Xtr[:, None] * scale, ytr, Xte[:, None] * scale, yte, class_names=class_names)


def _load_omniglot(root: Path) -> Dataset:
    """Omniglot's two small background sets, merged: 8 alphabets, 242 characters x 20 drawings.

    The two zips share their Greek and Latin alphabets file for file, so we merge them by
    path; keeping them as two datasets would leak those characters across a held-out split.
    Characters are the classes; alphabets are their groups.
    """
    images: dict[str, np.ndarray] = {}
    for zip_name in ("images_background_small1.zip", "images_background_small2.zip"):
        path = readers.require_file(root / "omniglot" / zip_name, _FROM_SHARED)
        images.update(readers.read_omniglot_zip(path, IMAGE_SIZE))
    keys = sorted(images)
    characters = [k.rsplit("/", 1)[0] for k in keys]
    (y,), names = encode_labels(np.array(characters))
    X = np.stack([images[k] for k in keys])
    return make_dataset("omniglot", X, y, class_names=names,
                        class_groups=tuple(n.split("/")[0] for n in names))


def _load_uci(root: Path, name: str) -> Dataset:
    X, y = readers.read_xy_pickle(readers.require_file(root / "lal-rl-uci" / f"{name}.p", _FROM_SHARED))
    return make_dataset(name, X, y)


def _load_checkerboard(root: Path, name: str) -> Dataset:
    parts = []
    for split in ("train", "test"):
        path = readers.require_file(root / "lal-checkerboard" / f"{name}_{split}.npz", _FROM_SHARED)
        parts += readers.read_npz(path, required=("x", "y")).values()
    return make_dataset(name, *parts)


def _load_libsvm(root: Path, name: str, file: str) -> Dataset:
    return make_dataset(name, *readers.read_libsvm(readers.require_file(root / "libact" / file, _FROM_SHARED)))


def _load_casp_rmsd5(root: Path) -> Dataset:
    """CASP protein structures (9 physicochemical features) as a 5-class task: the RMSD, a
    regression target, cut at its quintiles into 5 ordered classes of equal size."""
    path = readers.require_file(root / "casp-protein" / "CASP.csv", _FROM_SHARED)
    values = readers.read_csv_columns(path, ("RMSD", *(f"F{i}" for i in range(1, 10))))
    edges = np.quantile(values[:, 0], [0.2, 0.4, 0.6, 0.8])
    y = np.searchsorted(edges, values[:, 0], side="right")
    return make_dataset("casp_rmsd5", values[:, 1:], y, class_names=("q1", "q2", "q3", "q4", "q5"))


def _load_yeast_labelsets6(root: Path) -> Dataset:
    """The yeast gene-function set (103 features, 14 function labels per gene) as a 6-class
    task: each gene's label set is its class (the label powerset), keeping the genes of the 6
    commonest sets (617 of 1500; 145 down to 65 genes, so the classes are imbalanced)."""
    path = readers.require_file(root / "libact" / "yeast_train.svm", _FROM_SHARED)
    X, label_sets = readers.read_libsvm(path, multilabel=True)
    names, counts = np.unique(label_sets, return_counts=True)
    kept = names[np.argsort(-counts, kind="stable")[:6]]
    keep = np.isin(label_sets, kept)
    return make_dataset("yeast_labelsets6", X[keep], label_sets[keep])


_UCI = ("adult", "australian", "breast_cancer", "diabetis", "flare_solar", "german", "heart",
        "mushrooms", "waveform", "wdbc")
_CHECKERBOARDS = ("checkerboard2x2", "checkerboard4x4", "rotated_checkerboard2x2")

# name -> loader(data_root) -> Dataset. Every dataset in the shared data folder, CASP (a
# regression) and yeast (multi-label) as the multi-class tasks their loaders describe.
DATASETS: Registry[Callable[..., Dataset]] = Registry("dataset")
for _name, _loader in {
    "mnist": functools.partial(_load_mnist_family, name="mnist", folder="mnist", tv_class="MNIST"),
    "fashion_mnist": functools.partial(
        _load_mnist_family, name="fashion_mnist", folder="fashion-mnist", tv_class="FashionMNIST"),
    "kmnist": _load_kmnist,
    "omniglot": _load_omniglot,
    **{n: functools.partial(_load_uci, name=n) for n in _UCI},
    **{n: functools.partial(_load_checkerboard, name=n) for n in _CHECKERBOARDS},
    "heart_scale": functools.partial(_load_libsvm, name="heart_scale", file="heart_scale"),
    "casp_rmsd5": _load_casp_rmsd5,
    "yeast_labelsets6": _load_yeast_labelsets6,
}.items():
    DATASETS.register(_name, _loader)
SHARED = tuple(DATASETS)  # the datasets of the shared data folder (the rest come from plug-ins)
# These loaders also take download=True (torchvision fetches them).
DOWNLOADABLE = ("mnist", "fashion_mnist", "kmnist")


# ---------------------------------------------------------------------------- user paths

def load_npz_dataset(path: Path) -> Dataset:
    """A user .npz with X and y (and optionally X_test, y_test)."""
    readers.require_file(path, "Check the path.")
    arrays = readers.read_npz(path, required=("X", "y"), optional=("X_test", "y_test"))
    return make_dataset(path.stem, arrays["X"], arrays["y"], arrays.get("X_test"), arrays.get("y_test"))


def load_image_folder(path: Path, image_size: int = IMAGE_SIZE) -> Dataset:
    """An image folder: class sub-folders, optionally under train/ and test/.

    Images are resized to image_size x image_size; grayscale if the first image is.
    """
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes
    from torchvision.datasets.folder import make_dataset as tv_samples

    has_parts = (path / "train").is_dir() and (path / "test").is_dir()
    folders = [path / "train", path / "test"] if has_parts else [path]
    try:
        classes, class_to_idx = find_classes(str(folders[0]))
        samples = [tv_samples(str(f), class_to_idx, extensions=IMG_EXTENSIONS) for f in folders]
    except (FileNotFoundError, OSError) as e:
        raise CorruptDataError(f"{path} is not an image folder with one sub-folder per class ({e})") from e
    if not samples[0]:
        raise CorruptDataError(f"{folders[0]} holds no images ({', '.join(IMG_EXTENSIONS)}) in its class sub-folders")
    grayscale = readers.image_mode(samples[0][0][0]) in ("1", "L", "I", "I;16", "F")

    def load(part_samples):
        X = np.stack([readers.decode_image(Path(p).read_bytes(), p, image_size, grayscale) for p, _ in part_samples])
        return X, np.array([c for _, c in part_samples])

    arrays = [a for s in samples for a in load(s)]
    return make_dataset(path.name, *arrays, class_names=tuple(classes))


# ---------------------------------------------------------------------------- entry point

def load_dataset(name_or_path: str | os.PathLike, data_root: str | os.PathLike | None = None,
                 download: bool = False) -> Dataset:
    """Load a dataset by name (see DATASETS) or by path (.npz file or image folder). Cached."""
    key = str(name_or_path)
    if key in DATASETS:
        given = data_root is not None or os.environ.get(DATA_ROOT_ENV) is not None
        # the shared datasets need the data root; a plug-in's loader may make its data without one
        root = resolve_data_root(data_root).resolve() if given or key in SHARED else None
        return _load_cached(key, root, download)
    path = Path(key).expanduser()
    if path.suffix == ".npz" or path.is_dir():
        return _load_cached(None, path.resolve(), False)
    raise DataError(
        f"unknown dataset {key!r}: give one of {', '.join(DATASETS)}, a .npz file, or an image folder"
    )


@functools.lru_cache(maxsize=16)
def _load_cached(name: str | None, path: Path | None, download: bool) -> Dataset:
    if name is None:
        return load_npz_dataset(path) if path.suffix == ".npz" else load_image_folder(path)
    if download and name not in DOWNLOADABLE:
        raise DataError(f"{name} cannot be downloaded; only {', '.join(DOWNLOADABLE)} can. {_FROM_SHARED}")
    loader = DATASETS.get(name)
    dataset = loader(path, download=True) if download else loader(path)
    if not isinstance(dataset, Dataset):
        raise DataError(f"the loader registered for dataset {name!r} returned a {type(dataset).__name__}, not a "
                        "metaal Dataset; build one with metaal.data.make_dataset(name, X, y, X_test, y_test)")
    return dataset


def register_dataset(name: str, loader: Callable[[Path], Dataset] | None = None, *, replace: bool = False):
    """Register `loader(data_root) -> Dataset` under `name`, as a call or as a decorator; the name
    then works wherever a dataset is named (configs, --dataset, `metaal data`).
    Build the Dataset with make_dataset(name, X, y, X_test=None, y_test=None)."""
    if loader is None:
        return lambda decorated: register_dataset(name, decorated, replace=replace)
    _load_cached.cache_clear()  # a replaced loader must not be served from the cache
    return DATASETS.register(name, loader, replace=replace)
