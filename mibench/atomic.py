"""Output files written whole or not at all, and a failed write as one line.

The report's tables and figures are written to a temporary name beside their path and renamed
over it once complete (``writing``, ``write_text``; ``write_durable`` also syncs to disk first,
for the results folder's records), so a full disk or a killed process leaves
the old file or none, never a truncated one. Every write failure (no space left, a read-only
folder, a file where a folder should be) is a ``ConfigError`` naming the path and the cause,
which the CLI prints as one line (exit 2).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import Iterator

from .interface import ConfigError


def cause(exc: OSError) -> str:
    """An OSError's cause in words ("No space left on device"), without the errno and path."""
    return os.strerror(exc.errno) if exc.errno else str(exc)


def file_in_the_way(path: str | os.PathLike) -> Path | None:
    """``path`` or the nearest of its parents that exists and is not a folder, or None."""
    path = Path(path)
    return next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)


def check_folder(path: str | os.PathLike) -> None:
    """A ConfigError when folder ``path`` cannot be made because a file is where it, or one of
    its parents, should be: checked before anything is written."""
    blocker = file_in_the_way(path)
    if blocker is not None:
        raise ConfigError(f"cannot write to {path}: {blocker} is a file, not a folder")


def make_folder(path: str | os.PathLike) -> Path:
    """Create folder ``path`` and its parents where missing; returns it. A file where one of them
    should be, or a folder that cannot be created, is a ConfigError naming it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        check_folder(path)
        raise ConfigError(f"cannot create folder {path}: {cause(exc)}") from None
    return path


@contextlib.contextmanager
def writing(path: str | os.PathLike) -> Iterator[Path]:
    """Write ``path`` whole or not at all: yields a temporary path beside it (hidden, with the
    same suffix) for the caller to write, renamed over ``path`` when the block ends and removed
    when it fails. An OSError while writing or renaming becomes a ConfigError
    "cannot write PATH: CAUSE"."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {cause(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``text`` as the UTF-8 file ``path``, whole or not at all (``writing``); returns the path."""
    with writing(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


@contextlib.contextmanager
def failing_as(path: str | os.PathLike, error: type[ConfigError] = ConfigError) -> Iterator[None]:
    """Turn an OSError in the block into ``error`` "cannot write PATH: CAUSE" (one line)."""
    try:
        yield
    except OSError as exc:
        raise error(f"cannot write {path}: {cause(exc)}") from None


def write_durable(path: str | os.PathLike, text: str, error: type[ConfigError] = ConfigError) -> None:
    """``text`` as the UTF-8 file ``path``, whole or not at all and on disk (fsync) before it is
    renamed into place: for the records a killed worker must not lose (results, claims, the plan).
    An OSError becomes ``error`` naming the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with failing_as(path, error):
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
