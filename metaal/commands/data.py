"""`metaal data [NAMES] [--data-root DIR] [--download]`: list the datasets and check that each loads."""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from metaal.data.datasets import DATA_ROOT_ENV, DATASETS, DOWNLOADABLE, load_dataset, resolve_data_root
from metaal.errors import DataError, exits_cleanly


def verify_checksums(root: Path) -> list[str]:
    """Problems found against root/SHA256SUMS ('<sha256>  <relative path>' lines), if present."""
    sums = root / "SHA256SUMS"
    if not sums.is_file():
        return []
    problems = []
    for line_no, line in enumerate(sums.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or len(parts[0]) != 64 or any(c not in "0123456789abcdefABCDEF" for c in parts[0]):
            problems.append(f"{sums} line {line_no}: not '<64 hex digits>  <path>': {line[:80]!r}")
            continue
        expected, rel = parts[0].lower(), parts[1]
        path = root / rel.lstrip("*")
        if not path.is_file():
            problems.append(f"{path}: listed in SHA256SUMS but missing")
            continue
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            problems.append(f"{path}: sha256 does not match SHA256SUMS (corrupt or replaced); "
                            "copy it again from the shared data folder")
    return problems


def cmd_data(args) -> int:
    try:
        root = resolve_data_root(args.data_root)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = args.names or list(DATASETS)
    print(f"data root: {root}")
    print(f"{'dataset':<24}{'train':>8}{'test':>8}{'classes':>9}  {'input shape':<14}status")
    failures = 0
    for name in names:
        try:
            ds = load_dataset(name, root, download=args.download and name in DOWNLOADABLE)
        except (DataError, ValueError) as e:
            failures += 1
            print(f"{name:<24}{'-':>8}{'-':>8}{'-':>9}  {'-':<14}FAILED: {e}")
            continue
        shape = "x".join(map(str, ds.input_shape))
        print(f"{name:<24}{len(ds.train):>8}{len(ds.test):>8}{ds.num_classes:>9}  {shape:<14}ok")
    problems = verify_checksums(root)
    for p in problems:
        print(f"checksum: {p}")
    if failures or problems:
        print(f"{failures} dataset(s) failed to load, {len(problems)} checksum problem(s)", file=sys.stderr)
        return 1
    checked = ", checksums match SHA256SUMS" if (root / "SHA256SUMS").is_file() else ""
    print(f"all {len(names)} datasets load{checked}")
    return 0


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metaal data", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"datasets to check (default: all of {', '.join(DATASETS)})")
    parser.add_argument("--data-root", help=f"folder holding the dataset files (default: ${DATA_ROOT_ENV})")
    parser.add_argument("--download", action="store_true",
                        help=f"let torchvision fetch {', '.join(DOWNLOADABLE)} into the data root (needs a network)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; known: {', '.join(DATASETS)}")
    return cmd_data(args)
