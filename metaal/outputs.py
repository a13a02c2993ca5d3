"""Output folders: a run never silently replaces the results of an earlier one, and two runs
never write into one folder at once.

A run claims its folder with a lock file (RUN_LOCK: the owner's pid, host, start time and
command) held with flock for the run's life and removed when it ends. The kernel releases a
flock when its process dies, so a lock file that nobody holds is the mark of a run that did not
finish: its folder holds no results to protect, and the next run says so."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from metaal.errors import OutputExistsError

RUN_LOCK = ".metaal-run.lock"


class OutputBusyError(OutputExistsError):
    """Another run, still alive, has claimed the output folder."""


def _owner(lock: Path) -> str:
    """Who wrote a lock file, in words."""
    try:
        info = json.loads(lock.read_text() or "{}")
    except (OSError, ValueError):
        return "an unknown run"
    return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started')}"
            + (f" ({info['command']})" if info.get("command") else ""))


def _busy(path: Path, lock: Path) -> OutputBusyError:
    return OutputBusyError(f"output folder {path} is in use by another run ({_owner(lock)}); wait for it to end, "
                           "or choose another --out")


def _held(lock: Path) -> bool:
    """True if a live process holds the lock file's flock (a run is writing in the folder now)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken just now


@contextlib.contextmanager
def claim_output_dir(path: str | os.PathLike, command: str = ""):
    """Hold `path` for one run: refuses (OutputBusyError, naming the owner) a folder another live
    run holds; takes over, with a note on stderr, the lock of a run that did not finish. The lock
    is removed when the run ends well; a run that fails leaves it (the mark of a run that did not
    finish), unless it wrote nothing, when the folder it created goes too."""
    path = Path(path)
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    lock = path / RUN_LOCK
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise _busy(path, lock) from None
    if os.fstat(fd).st_size:
        print(f"note: {path} held a run that did not finish ({_owner(lock)}); this run takes it over",
              file=sys.stderr)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": command,
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
    try:
        yield path
    except BaseException:
        if not any(p.name != RUN_LOCK for p in path.iterdir()):  # nothing written: leave nothing
            lock.unlink(missing_ok=True)
            if created:
                path.rmdir()
        raise
    else:
        lock.unlink(missing_ok=True)
    finally:
        os.close(fd)


def check_output_dir(path: str | os.PathLike, overwrite: bool = False, flag: str = "--overwrite",
                     writes: tuple[str, ...] | None = None, unfinished: str | None = None) -> Path:
    """Check, before any computation, that `path` may take a run's results: refuses a path
    that is a file, a folder a live run holds (even with `overwrite`), and a folder that already
    holds anything (or, given `writes`, any of those names) unless `overwrite` (the user's
    `flag`). A folder left by a run that did not finish is named as such, with `unfinished`
    (default: pass `flag` to replace it) as the advice. Creates nothing: a run that fails later
    leaves no empty folder behind."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"output folder {path} is a file; choose another --out")
    lock = path / RUN_LOCK
    if _held(lock):
        raise _busy(path, lock)
    if lock.exists() and not overwrite:
        raise OutputExistsError(f"output folder {path} holds a run that did not finish ({_owner(lock)}, no longer "
                                f"running), so no results to protect: {unfinished or f'pass {flag} to replace it'}, "
                                "or choose another --out")
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
