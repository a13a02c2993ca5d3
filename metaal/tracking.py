"""Experiment tracking behind one object: a thin wrapper around Weights & Biases.

Mode rules (``resolve_mode``), first match wins:

1. an explicit ``mode`` argument (normally from the experiment config);
2. the ``WANDB_MODE`` environment variable;
3. ``"online"`` if an API key is available, otherwise ``"offline"``.

An API key is available when ``WANDB_API_KEY`` is set or the netrc file (``$NETRC``,
else ``~/.netrc``) has an entry for ``api.wandb.ai`` (or the host of ``WANDB_BASE_URL``);
a malformed netrc counts as no key. ``"online"`` without a key falls back to
``"offline"`` with a one-line notice on stderr (sync later with ``wandb sync <run_dir>``);
we never prompt for a login. ``"dryrun"`` is accepted as a synonym of ``"offline"``.
``"disabled"`` creates no run at all (wandb is not even imported) and every method is a
no-op. Runs are written under ``<out_dir>/wandb/``; passing ``run_id`` resumes that run.
Online, the run's link is printed on stderr when it opens.

Artifacts are versioned per run (``policy-<run id>``, ``checkpoint-<run id>``) with aliases
(``latest``, ``best``), so unrelated runs never stack up as versions of one artifact. Each
version's files are copied into the run folder (``<run dir>/artifacts/<name>/<n>/``) and
referenced from there: a file rewritten later (policy.pt at each new best) cannot corrupt a
version that is not uploaded yet, and nothing is staged outside the run folder.
``use_artifact`` records an input (lineage: the transfer run uses the policy artifact).

Offline, wandb 0.31 writes everything (config, history, summary, artifact manifests) to the
``run-<id>.wandb`` transaction log in the run directory; media and tables go to
``files/media/``. ``read_offline_run`` decodes the log, e.g. for tests.
"""

from __future__ import annotations

import json
import netrc
import os
import shutil
import struct
import sys
import time
import zlib
from collections import deque
from pathlib import Path
from urllib.parse import urlparse

from metaal.errors import InputError

MODES = ("online", "offline", "disabled")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        auth = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError):  # missing or malformed: no key
        return False
    return bool(auth and auth[2])  # an entry without a password is no key either


def resolve_mode(mode: str | None) -> tuple[str, str | None]:
    """Return (effective mode, one-line reason/warning or None); see the module docstring."""
    requested = mode if mode is not None else os.environ.get("WANDB_MODE") or None
    if requested is None:
        if _has_api_key():
            return "online", None
        return "offline", "no W&B API key found (WANDB_API_KEY or netrc), logging offline"
    requested = {"dryrun": "offline"}.get(requested.strip().lower(), requested.strip().lower())
    if requested not in MODES:
        raise InputError(f"unknown W&B mode {mode!r}: expected one of {MODES} (or 'dryrun')")
    if requested == "online" and not _has_api_key():
        return "offline", "W&B mode 'online' requested but no API key found, logging offline"
    return requested, None


def add_wandb_flags(parser, mode: str | None = None) -> None:
    """The W&B flags of a command line (see wandb_options); `mode` is --wandb-mode's default."""
    group = parser.add_argument_group("Weights & Biases")
    group.add_argument("--wandb-mode", default=mode, help="online | offline | disabled (default: " + (
        mode or "$WANDB_MODE, else online with a key, offline without") + ")")
    group.add_argument("--wandb-project", default="metaal", help="W&B project (default: metaal)")
    group.add_argument("--wandb-entity", default=None, help="W&B team or user (default: yours)")
    group.add_argument("--wandb-name", default=None, help="run name (default: made from the task)")
    group.add_argument("--wandb-group", default=None, help="run group")
    group.add_argument("--wandb-tags", default="", help="comma-separated run tags")
    group.add_argument("--wandb-notes", default=None, help="run notes")


def wandb_options(args, default_name: str) -> dict:
    """Tracker keyword arguments from the flags of add_wandb_flags."""
    return dict(project=args.wandb_project, entity=args.wandb_entity, name=args.wandb_name or default_name,
                group=args.wandb_group, tags=[t.strip() for t in args.wandb_tags.split(",") if t.strip()],
                notes=args.wandb_notes)


class Tracker:
    """One W&B run for one experiment; all methods are no-ops when ``mode == "disabled"``."""

    def __init__(self, config: dict, out_dir: str | os.PathLike, mode: str | None = None,
                 project: str = "metaal", name: str | None = None, run_id: str | None = None,
                 job_type: str | None = None, entity: str | None = None, group: str | None = None,
                 tags: list[str] | tuple[str, ...] = (), notes: str | None = None):
        self.mode, reason = resolve_mode(mode)
        self.run_id: str | None = None
        self.run_dir: Path | None = None
        self.url: str | None = None
        self._run = None
        if self.mode == "disabled":
            return
        import wandb  # lazy: "disabled" must not pay for (or depend on) wandb

        self._wandb = wandb
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        self._run = wandb.init(
            project=project, entity=entity, name=name, group=group, tags=list(tags) or None, notes=notes,
            job_type=job_type, config=config, dir=str(Path(out_dir).resolve()), mode=self.mode,
            id=run_id, resume="allow" if run_id else None,
            reinit="create_new",  # trackers stay independent of wandb's global current run
            settings=wandb.Settings(silent=True, show_info=False),
        )
        self.run_id, self.run_dir = self._run.id, Path(self._run.settings.sync_dir)
        if reason:
            print(f"metaal.tracking: {reason}; upload later with: wandb sync {self.run_dir}",
                  file=sys.stderr)
        elif self.mode == "online":  # silent=True hides wandb's own banner, not the link
            self.url = self._run.url
            print(f"metaal.tracking: W&B run {self._run.name}: {self.url}", file=sys.stderr)

    def log(self, metrics: dict[str, float], step: int) -> None:
        if self._run is not None:
            self._run.log(dict(metrics), step=step)

    def _log_media(self, key: str, value, step: int | None) -> None:
        # Without a step, attach to the current row instead of advancing wandb's step
        # (which would make later explicit steps look "out of order" and get dropped).
        if self._run is not None:
            self._run.log({key: value}, step=step, commit=None if step is not None else False)

    def log_table(self, key: str, columns: list[str], rows: list[list],
                  step: int | None = None) -> None:
        if self._run is not None:
            table = self._wandb.Table(columns=list(columns), data=[list(r) for r in rows])
            self._log_media(key, table, step)

    def log_image(self, key: str, path, step: int | None = None) -> None:
        if self._run is not None:
            self._log_media(key, self._wandb.Image(str(path)), step)

    def update_config(self, values: dict) -> None:
        """Add keys known only after the run opened (e.g. the task's resolved shape)."""
        if self._run is not None:
            self._run.config.update(values, allow_val_change=True)

    def set_summary(self, values: dict) -> None:
        """Set run summary keys (wandb's default summary is each metric's last value)."""
        if self._run is not None:
            for key, value in values.items():
                self._run.summary[key] = value

    def _artifact(self, path, name: str, type: str, metadata: dict | None):
        """An artifact whose files are a copy, inside the run folder, of `path` as it is now."""
        versions = self.run_dir / "artifacts" / name
        copy = versions / str(len(list(versions.glob("*"))) if versions.is_dir() else 0) / Path(path).name
        copy.parent.mkdir(parents=True, exist_ok=True)
        artifact = self._wandb.Artifact(name, type=type, metadata=metadata)
        if Path(path).is_dir():
            shutil.copytree(path, copy)
            artifact.add_dir(str(copy), policy="immutable")
        else:
            shutil.copy2(path, copy)
            artifact.add_file(str(copy), policy="immutable")
        return artifact

    def log_artifact(self, path, name: str, type: str = "model", metadata: dict | None = None,
                     aliases: list[str] | tuple[str, ...] = ("latest",)) -> None:
        """Log `path` (a file or folder) as a new version of artifact `name`, with `aliases`."""
        if self._run is not None:
            self._run.log_artifact(self._artifact(path, name, type, metadata), aliases=list(aliases))

    def use_artifact(self, path, name: str, type: str = "model", metadata: dict | None = None) -> None:
        """Record `path` as an input of this run, as a version of artifact `name` (lineage: a
        file with the same content as a logged version is that version)."""
        if self._run is None:
            return
        artifact = self._artifact(path, name, type, metadata)
        if self.mode == "online":
            self._run.use_artifact(artifact)
        else:  # wandb refuses use_artifact offline; this is what it does online for a new artifact,
            # recorded in the log so that `wandb sync` links the input
            self._run._log_artifact(artifact, aliases=[], is_user_created=True, use_after_commit=True)

    def finish(self, exit_code: int | None = None) -> None:
        """Flush and close the run (idempotent); run_id/run_dir stay readable afterwards."""
        run, self._run = self._run, None
        if run is None:
            return
        log_file = Path(run.settings.sync_file)
        run.finish(exit_code=exit_code)
        # wandb 0.31 returns before wandb-core has flushed the .wandb log: wait for its
        # exit record so the run directory is complete (readable, syncable) on return.
        if not _wait_for_exit_record(log_file, timeout=60.0):
            print(f"metaal.tracking: {log_file} still incomplete after 60 s", file=sys.stderr)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.finish(exit_code=1 if exc_type is not None else None)  # mark crashed runs failed


def _payloads(data: bytes, check_crc: bool = True):
    """Yield the serialized records of a .wandb log (leveldb log format, 32 KiB blocks)."""
    if data[:4] != b":W&B":
        raise InputError("not a W&B transaction log")
    pos, block, chunks = 7, 32768, []  # 7-byte file header: ident, magic, version
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer too small for a header: zero padding
            pos += block - pos % block
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0 or len(chunk) < length:  # padding or a truncated tail (still writing)
            return
        if check_crc and zlib.crc32(chunk, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise InputError(f"checksum mismatch at byte {pos - length - 7}")
        chunks.append(chunk)
        if kind in (1, 4):  # FULL or LAST chunk completes a record
            yield b"".join(chunks)
            chunks = []


def _wait_for_exit_record(path: Path, timeout: float) -> bool:
    from wandb.proto.wandb_internal_pb2 import Record

    deadline, delay = time.monotonic() + timeout, 0.005
    while time.monotonic() < deadline:
        try:  # only the last few records are parsed: cheap even for long runs
            tail = deque(_payloads(path.read_bytes(), check_crc=False), maxlen=3)
        except (OSError, ValueError):  # not created / header not written yet
            tail = ()
        if any(Record.FromString(p).WhichOneof("record_type") == "exit" for p in tail):
            return True
        time.sleep(delay)
        delay = min(2 * delay, 0.25)
    return False


def _apply(items, target: dict) -> None:
    """Merge wandb (nested_)key/value_json items into a nested dict."""
    for item in items:
        keys = list(item.nested_key) or [item.key]
        node = target
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = json.loads(item.value_json)


def read_offline_run(run_dir: str | os.PathLike) -> dict:
    """Decode a run directory's .wandb log into {"run_id", "name", "group", "tags", "notes",
    "config", "history", "summary", "artifacts", "logged", "used"}; history is one dict per
    step; artifacts are the names given to log_artifact, logged the same with their type, digest
    and aliases, used the artifacts the run used as inputs (wandb's own "run_table" artifacts
    behind logged tables are left out)."""
    from wandb.proto.wandb_internal_pb2 import Record

    (log_file,) = Path(run_dir).glob("*.wandb")
    out = {"run_id": None, "name": None, "group": None, "tags": [], "notes": None, "config": {}, "history": [],
           "summary": {}, "artifacts": [], "logged": [], "used": []}
    for payload in _payloads(log_file.read_bytes()):
        record = Record.FromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(run_id=run.run_id, name=run.display_name, group=run.run_group or None, tags=list(run.tags),
                       notes=run.notes or None)
            _apply(run.config.update, out["config"])
        elif kind == "config":
            _apply(record.config.update, out["config"])
        elif kind == "history":
            out["history"].append({})
            _apply(record.history.item, out["history"][-1])
        elif kind == "summary":
            _apply(record.summary.update, out["summary"])
        elif kind == "artifact" and record.artifact.type != "run_table":
            art = record.artifact
            entry = {"name": art.name, "type": art.type, "digest": art.digest, "aliases": list(art.aliases)}
            if art.use_after_commit:
                out["used"].append(entry)
            else:
                out["artifacts"].append(art.name)
                out["logged"].append(entry)
        elif kind == "use_artifact":
            out["used"].append({"name": record.use_artifact.name, "type": record.use_artifact.type})
    out["config"].pop("_wandb", None)
    return out
