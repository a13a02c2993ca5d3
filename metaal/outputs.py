"""Output folders: a run never silently replaces the results of an earlier one."""

from __future__ import annotations

import os
from pathlib import Path

from metaal.errors import OutputExistsError


def check_output_dir(path: str | os.PathLike, overwrite: bool = False, flag: str = "--overwrite",
                     writes: tuple[str, ...] | None = None) -> Path:
    """Check, before any computation, that `path` may take a run's results: refuses a path
    that is a file, and a folder that already holds anything (or, given `writes`, any of those
    names) unless `overwrite` (the user's `flag`). Creates nothing: a run that fails later
    leaves no empty folder behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output folder {path} is a file; choose another --out")
    held = sorted(p.name for p in path.iterdir() if writes is None or p.name in writes) if path.is_dir() else []
    if held and not overwrite:
        shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
        raise OutputExistsError(f"output folder {path} already holds results ({shown}); pass {flag} to replace "
                                "them, or choose another --out")
    return path


def check_output_file(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """The same for a run that writes one file: refuses an existing one unless `overwrite`."""
    path = Path(path)
    return check_output_dir(path.parent, overwrite, writes=(path.name,)) / path.name
