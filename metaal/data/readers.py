"""Readers for the raw file formats in the data root.

Each reader returns numpy arrays and turns every way a file can be missing or malformed
into a MissingDataError / CorruptDataError that names the file. None of them executes
anything from the file: pickles go through a restricted unpickler.
"""

from __future__ import annotations

import csv
import gzip
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

from metaal.errors import CorruptDataError, MissingDataError, UnsafePickleError


def require_file(path: Path, how_to_get: str) -> Path:
    if not path.is_file():
        raise MissingDataError(f"missing dataset file {path}. {how_to_get}")
    return path


# ---------------------------------------------------------------------------- idx (MNIST)

def read_idx_gz(path: Path) -> np.ndarray:
    """Read a gzipped IDX file (the MNIST family's format) into a uint8 array."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zipfile.BadZipFile) as e:  # BadGzipFile is an OSError
        raise CorruptDataError(f"{path} is not a readable gzip file ({e})") from e
    if len(data) < 4 or data[:2] != b"\x00\x00" or data[2] != 0x08:
        raise CorruptDataError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims))
    if len(data) - header != expected:
        raise CorruptDataError(
            f"{path} is truncated or padded: header promises {expected} bytes of shape {dims}, "
            f"found {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


# ---------------------------------------------------------------------------- npz

def read_npz(path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The required (and any present optional) arrays of an .npz file; no pickled objects."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if not set(required) <= set(z.files):
                extra = f" (optionally {list(optional)})" if optional else ""
                raise CorruptDataError(
                    f"{path} must hold arrays {list(required)}{extra}; it holds {sorted(z.files)}"
                )
            return {k: z[k] for k in (*required, *optional) if k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise CorruptDataError(f"{path} is not a readable .npz file ({e})") from e


# ---------------------------------------------------------------------------- pickles

try:  # numpy >= 2 moved the pickling helpers to numpy._core
    from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray

_SAFE_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.matrixlib.defmatrix", "matrix"): np.matrix,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
}
for _module in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_GLOBALS[(_module, "_reconstruct")] = _multiarray._reconstruct
    _SAFE_GLOBALS[(_module, "scalar")] = _multiarray.scalar


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Admits numpy arrays, dtypes, scalars and plain containers; refuses any other global.

    A pickle names the callables it wants run (GLOBAL / STACK_GLOBAL); refusing every name
    outside a short allow-list means a shared data file can never execute code.
    """

    def find_class(self, module: str, name: str):
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: data pickles may hold only numpy arrays "
                "and plain containers"
            ) from None


def read_safe_pickle(path: Path):
    try:
        with open(path, "rb") as f:
            return _NumpyOnlyUnpickler(f).load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as e:
        raise CorruptDataError(f"{path} is not a readable pickle ({type(e).__name__}: {e})") from e


def read_xy_pickle(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The LAL-RL UCI format: a pickled dict {'X': (N, D), 'y': (N,) or (N, 1)}."""
    obj = read_safe_pickle(path)
    if not isinstance(obj, dict) or not {"X", "y"} <= set(obj):
        raise CorruptDataError(f"{path} should hold a dict with keys 'X' and 'y'")
    return np.asarray(obj["X"]), np.asarray(obj["y"])


# ---------------------------------------------------------------------------- LIBSVM

def read_libsvm(path: Path, multilabel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Sparse LIBSVM text ('label idx:value ...', 1-based indices) into dense arrays. With
    `multilabel`, each label is a comma-separated set ('2,3'), returned as that string."""
    labels, rows, line_no = [], [], 0
    try:
        text = path.read_text()
        for line_no, line in enumerate(text.splitlines(), 1):  # noqa: B007 (used in the error)
            parts = line.split()
            if not parts:
                continue
            labels.append(",".join(str(int(c)) for c in parts[0].split(",")) if multilabel else float(parts[0]))
            rows.append({int(i): float(v) for i, v in (p.split(":") for p in parts[1:])})
            if rows[-1] and min(rows[-1]) < 1:
                raise CorruptDataError(f"{path} line {line_no}: feature index {min(rows[-1])}; LIBSVM feature "
                                       "indices start at 1")
    except (UnicodeDecodeError, ValueError) as e:
        raise CorruptDataError(f"{path} line {line_no}: not LIBSVM format ({e})") from e
    if not rows:
        raise CorruptDataError(f"{path} holds no samples")
    n_features = max((max(r) for r in rows if r), default=0)
    X = np.zeros((len(rows), n_features), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, v in row.items():
            X[i, j - 1] = v
    return X, np.asarray(labels)


def read_csv_columns(path: Path, columns: tuple[str, ...]) -> np.ndarray:
    """(N, len(columns)) floats of a CSV file with a header row that holds exactly `columns`."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows or tuple(rows[0]) != columns:
            raise CorruptDataError(f"{path}: expected the header {','.join(columns)}, got "
                                   f"{','.join(rows[0]) if rows else 'an empty file'}")
        values = np.asarray(rows[1:], dtype=np.float64)
    except (UnicodeDecodeError, ValueError, csv.Error) as e:
        raise CorruptDataError(f"{path}: not a CSV of {len(columns)} numeric columns ({e})") from e
    if values.ndim != 2 or len(values) == 0 or not np.isfinite(values).all():
        raise CorruptDataError(f"{path}: needs at least one row of {len(columns)} finite numbers")
    return values


# ---------------------------------------------------------------------------- images

def _image_errors():
    """What PIL raises for bytes that are not an image it will decode; a decompression bomb (an
    image of more than twice PIL's MAX_IMAGE_PIXELS) is refused before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    return UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError, SyntaxError


def image_mode(path: str | Path) -> str:
    """The PIL mode of the image file at `path` (e.g. "L", "RGB"), read from its header."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.mode
    except _image_errors() as e:
        raise CorruptDataError(f"{path} is not a readable image ({type(e).__name__}: {e})") from e


def decode_image(data: bytes, source: str, size: int, grayscale: bool) -> np.ndarray:
    """PNG/JPEG bytes -> float32 (C, size, size) in [0, 1]."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img = img.convert("L" if grayscale else "RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(img, dtype=np.float32) / 255.0
    except _image_errors() as e:
        raise CorruptDataError(f"{source} is not a readable image ({type(e).__name__}: {e})") from e
    return arr[None] if grayscale else arr.transpose(2, 0, 1)


def read_omniglot_zip(path: Path, size: int) -> dict[str, np.ndarray]:
    """An Omniglot background zip -> {'alphabet/characterNN/file.png': (1, size, size) image}.

    Omniglot draws black strokes on white; we invert so ink is 1, as in MNIST.
    """
    try:
        with zipfile.ZipFile(path) as z:
            out = {}
            for name in sorted(z.namelist()):
                if name.endswith(".png"):
                    _, alphabet, character, file = name.split("/")
                    img = decode_image(z.read(name), f"{path}:{name}", size, grayscale=True)
                    out[f"{alphabet}/{character}/{file}"] = 1.0 - img
            return out
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise CorruptDataError(f"{path} is not a readable Omniglot zip ({e})") from e
