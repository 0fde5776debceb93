"""Writing a results folder safely with many writers (processes, machines on a shared filesystem).

* A finished run is written as a record of its own, ``pending/RUN_ID-RECORD_ID.json``: to a
  temporary name, flushed, then renamed, so a record is whole or absent, whoever is killed when.
* ``merge()`` appends pending records to ``runs.jsonl`` / ``traces.jsonl`` (each trace before
  its row) and deletes them, under a lock file that one merger holds at a time. A record whose
  ``record_id`` is already in ``runs.jsonl`` (a merge killed before deleting it) is only deleted.
  A file in ``pending/`` that is not a record (it does not parse, or holds no valid row) can
  never become one, as records are written whole: readers warn once and skip it, and a merge
  moves it to ``corrupt/``, kept for inspection. A record's trace that is not a trace is dropped.
* ``claim(run_id)`` creates ``claims/RUN_ID`` with O_EXCL, naming the worker; the holder's
  heartbeat keeps its mtime fresh. A claim whose process is gone (same host) or whose heartbeat
  is older than ``STALE_S`` is taken over (renamed away, then created anew), as is one that
  names no worker (empty, not JSON, wrong-typed) after ``WRITE_GRACE_S``. Live workers'
  claims are never taken, so concurrent drivers and workers do not train a run twice; the one
  window left is two processes taking over the same dead claim at the same instant, where the
  later rename can move the claim the earlier one has just created.
* Every write failure (no space, read-only, a file where a folder should be) becomes a
  ``StoreError``: one line naming the path and the cause (the CLI exits 2), nothing half-written.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

from .atomic import failing_as, write_durable
from .interface import ConfigError
from .layout import CLAIMS_DIR, CORRUPT_DIR, LOCK_FILE, PENDING_DIR, RUNS_FILE, TRACES_FILE
from .results import FINISHED, append_jsonl, json_ready, read_jsonl, row_problem, scan_pending, trace_problem

HEARTBEAT_S = 30.0          # a claim holder touches its claim this often
STALE_S = 300.0             # a claim (or merge lock) untouched this long is abandoned
WRITE_GRACE_S = 10.0        # ... and one that names no worker this long (not a claim) too
PROBE_BYTES = 256 * 1024    # written (and removed) in each subfolder before any training

log = logging.getLogger(__name__)


class StoreError(ConfigError):
    """The results folder cannot be written: one line naming the path and the cause."""


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(owner: str) -> bool:
    """Whether the process ``host:pid`` may still run (always True for another host)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _take_away(path: Path) -> None:
    """Remove an abandoned claim or lock: renamed to a unique name, then deleted, so that of
    two processes removing it at once only one rename succeeds."""
    gone = path.with_name(f".{path.name}.stale-{uuid.uuid4().hex[:8]}")
    with contextlib.suppress(OSError):
        os.replace(path, gone)
        gone.unlink()


class Claim:
    """A held claim on a run; ``heartbeat`` runs in a thread until ``release``."""

    def __init__(self, path: Path):
        self.path = path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.path.unlink()

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Store:
    """The results folder ``out_dir`` as many writers see it."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        self.pending = self.dir / PENDING_DIR
        self.claims = self.dir / CLAIMS_DIR

    # ---------------------------------------------------------------- before any training
    def check_writable(self) -> None:
        """Create the folder and write, flush and delete a probe file in each subfolder the
        store writes, and open the files it appends to (if they exist) for appending; a
        StoreError names the first that fails (a folder where a file should be included)."""
        if self.dir.exists() and not self.dir.is_dir():
            raise StoreError(f"cannot write results to {self.dir}: it is a file, not a folder")
        for name in (RUNS_FILE, TRACES_FILE, LOCK_FILE):
            path = self.dir / name
            if path.is_dir():
                raise StoreError(f"cannot write {path}: it is a folder, not a file")
            if name != LOCK_FILE and path.exists():
                with failing_as(path, StoreError), open(path, "ab"):
                    pass
        for folder in (self.dir, self.pending, self.claims):
            with failing_as(folder, StoreError):
                folder.mkdir(parents=True, exist_ok=True)
                probe = folder / f".probe-{uuid.uuid4().hex[:8]}"
                try:                                   # about what one run's record takes
                    with open(probe, "wb") as f:
                        f.write(b"\0" * PROBE_BYTES)
                        f.flush()
                        os.fsync(f.fileno())
                finally:
                    with contextlib.suppress(OSError):
                        probe.unlink()

    # ---------------------------------------------------------------- claims
    def claim(self, run_id: str) -> Claim | None:
        """Claim a run for this process, or None when a live worker holds it."""
        path = self.claims / run_id
        for _ in range(3):
            with failing_as(path, StoreError):
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    fd = None
            if fd is None:
                if not path.exists():            # released a moment ago: try again
                    continue
                if not self._stale(path):
                    return None
                _take_away(path)
                continue
            try:
                with failing_as(path, StoreError), os.fdopen(fd, "w") as f:
                    f.write(json.dumps({"worker": worker_name(), "since": time.time()}))
            except StoreError:
                with contextlib.suppress(OSError):
                    path.unlink()
                raise
            return Claim(path)
        return None

    @staticmethod
    def _owner(path: Path) -> tuple[float, str | None]:
        """The age (s) of a claim or lock file and the worker it names; None when the file holds
        no claim (empty, not JSON, not {"worker": "host:pid", ...}). Raises OSError when gone."""
        age = time.time() - path.stat().st_mtime
        try:
            content = json.loads(path.read_bytes().decode("utf-8"))
        except ValueError:
            return age, None
        owner = content.get("worker") if isinstance(content, dict) else None
        return age, owner if isinstance(owner, str) and owner else None

    def _stale(self, path: Path) -> bool:
        """Whether a claim (or the merge lock) is abandoned: its worker is gone (same host), its
        heartbeat is older than STALE_S, or it has held no claim for WRITE_GRACE_S (its writer
        died before writing it, or something else wrote the file)."""
        try:
            age, owner = self._owner(path)
        except OSError:
            return False                     # released a moment ago, or not a file: look again later
        if owner is None:                    # created, not written yet; or not a claim at all
            return age > WRITE_GRACE_S
        return age > STALE_S or not _alive(owner)

    def running(self) -> dict[str, str]:
        """{run_id: worker} of the claims held by live workers."""
        out = {}
        for path in self.claims.glob("*") if self.claims.is_dir() else []:
            if path.name.startswith("."):
                continue
            with contextlib.suppress(OSError):
                age, owner = self._owner(path)
                if owner is not None and age <= STALE_S and _alive(owner):
                    out[path.name] = owner
        return out

    # ---------------------------------------------------------------- records
    def put(self, row: dict[str, Any], trace: dict[str, Any]) -> Path:
        """Write one finished run as its own record, atomically."""
        with failing_as(self.pending, StoreError):
            self.pending.mkdir(parents=True, exist_ok=True)
        path = self.pending / f"{row['run_id']}-{row['record_id']}.json"
        write_durable(path, json.dumps(json_ready({"row": row, "trace": trace}), sort_keys=True), StoreError)
        return path

    @contextlib.contextmanager
    def _merge_lock(self) -> Iterator[bool]:
        """Hold the merge lock, or yield False when a live merger holds it. An abandoned lock
        (``_stale``) is taken away and the lock taken at once."""
        lock = self.dir / LOCK_FILE
        for attempt in range(2):
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                break
            except FileExistsError:
                if attempt or not self._stale(lock):
                    yield False
                    return
                _take_away(lock)
            except OSError as exc:
                raise StoreError(f"cannot write {lock}: {os.strerror(exc.errno or errno.EIO)}") from None
        try:
            with failing_as(lock, StoreError), os.fdopen(fd, "w") as f:
                f.write(json.dumps({"worker": worker_name(), "since": time.time()}))
            yield True
        finally:
            with contextlib.suppress(OSError):
                lock.unlink()

    def merge(self) -> int:
        """Move the pending records into runs.jsonl and traces.jsonl; returns how many were
        merged (0 when another process holds the merge, which will merge them instead). Files
        in pending/ that are not records are moved to ``corrupt/`` (kept, no longer read)."""
        records, bad = scan_pending(self.dir)
        if not records and not bad:
            return 0
        with self._merge_lock() as held:
            if not held:
                return 0
            records, bad = scan_pending(self.dir)          # what is there now that we hold it
            merged = {r.get("record_id") for r in read_jsonl(self.dir / RUNS_FILE)
                      if isinstance(r, dict) and isinstance(r.get("record_id"), str)}
            new = [rec for _, rec in records if rec["row"].get("record_id") not in merged]
            if new:                       # traces first: a row means "finished"
                self._append(self.dir / TRACES_FILE, [rec["trace"] for rec in new
                                                       if trace_problem(rec.get("trace")) is None])
                self._append(self.dir / RUNS_FILE, [rec["row"] for rec in new])
            for path, _ in records:
                with contextlib.suppress(OSError):
                    path.unlink()
            self._set_aside([path for path, _ in bad])
            return len(new)

    def _set_aside(self, paths: list[Path]) -> None:
        """Move files of pending/ that are not records to corrupt/, where no reader looks."""
        if not paths:
            return
        folder = self.dir / CORRUPT_DIR
        with failing_as(folder, StoreError):
            folder.mkdir(exist_ok=True)
        for path in paths:
            with contextlib.suppress(OSError):
                os.replace(path, folder / f"{path.name}.{uuid.uuid4().hex[:8]}")
                log.warning("moved %s, which is not a run record, to %s", path, folder)

    def _append(self, path: Path, records: list[dict[str, Any]]) -> None:
        with failing_as(path, StoreError):
            append_jsonl(path, records)


class FinishedIndex:
    """The run ids a folder holds a finished row for (runs.jsonl and pending records), kept up
    to date cheaply: runs.jsonl is read from where the last look stopped. With ``sweep_id``,
    only rows of that sweep count (``--force`` redoes runs finished before it)."""

    def __init__(self, out_dir: str | os.PathLike, sweep_id: str | None = None):
        self.dir, self.sweep_id = Path(out_dir), sweep_id
        self._ids: set[str] = set()
        self._offset = 0

    def _counts(self, row: Any) -> bool:
        return (row_problem(row) is None and row["status"] in FINISHED
                and (self.sweep_id is None or row.get("sweep_id") == self.sweep_id))

    def _read_runs(self) -> None:
        path = self.dir / RUNS_FILE
        try:
            with open(path, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1                 # complete lines only
        for line in chunk[:end].splitlines():
            with contextlib.suppress(ValueError):
                row = json.loads(line)
                if self._counts(row):
                    self._ids.add(row["run_id"])
        self._offset += end

    def finished(self, run_id: str) -> bool:
        """Whether run_id has a finished row now (pending records looked at first, then
        runs.jsonl, so a merge moving a record in between is seen)."""
        if run_id in self._ids:
            return True
        for path in self.dir.joinpath(PENDING_DIR).glob(f"{run_id}-*.json"):
            with contextlib.suppress(OSError, ValueError):
                record = json.loads(path.read_bytes().decode("utf-8"))
                if isinstance(record, dict) and self._counts(record.get("row")):
                    self._ids.add(run_id)
                    return True
        self._read_runs()
        return run_id in self._ids

    def count(self, run_ids: list[str]) -> int:
        return sum(self.finished(r) for r in run_ids)
