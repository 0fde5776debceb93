"""Append-only JSONL store of run rows and their traces; ``load_results`` reads it as a DataFrame.

Each run is one line written with a single ``write`` and flushed to disk, so an interrupted
sweep (Ctrl-C, kill -9) keeps every finished run. At worst the last line is cut short; readers
skip such a line with a warning and the next append starts on a fresh line.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

# 2: run ids hash what is trained and evaluated (grid names and output options left out);
#    rows carry schema_version, grids and git_commit. Rows of schema 1 are read as they are and
#    get their schema-2 id from ``mibench.plan.upgrade_row`` when a sweep resumes.
SCHEMA_VERSION = 2
RUNS_FILE = "runs.jsonl"
TRACES_FILE = "traces.jsonl"
FINISHED = ("ok", "diverged")   # statuses a resumed sweep does not redo; "error" runs are retried


def default_out_dir(preset: str) -> Path:
    """Where a preset's runs go unless told otherwise: results/PRESET."""
    return Path("results") / preset


@dataclass(frozen=True)
class RunRow:
    """One run as recorded: its spec and labels, what it measured, and where it ran.

    MI values are nats. status: "ok", "diverged" (a NaN or infinite held-out estimate) or
    "error" (``error`` holds the message, ``traceback`` its last frames); the measurement
    fields are None for an error. pairs_per_s, steps_per_s: training throughput after the
    warm-up steps (summed over the models of a batched group); peak_mem_mb: GPU allocated peak,
    or the process's peak RSS on the CPU.
    """

    run_id: str
    task: str                      # the preset
    grid: str
    grids: list[str]
    family: str
    task_params: dict[str, Any]
    bound: str
    bound_kind: str
    critic: str
    encoder: str
    shared_encoder: bool
    n_negatives: int
    batch_size: int
    device: str
    seed: int
    steps: int
    epochs: float | None
    lr: float
    staircase: list[float]
    precision: str
    spec: dict[str, Any]
    status: str
    wall_s: float
    threads: int
    versions: dict[str, str]
    finished_at: str
    git_commit: str | None
    error: str | None = None
    traceback: str | None = None
    mi_true: float | None = None
    mi_true_train: float | None = None
    truth_method: str | None = None
    task_name: str | None = None
    mi_estimate: float | None = None
    mi_std: float | None = None
    pairs_per_s: float | None = None
    steps_per_s: float | None = None
    train_s: float | None = None
    batched_models: int | None = None
    peak_mem_mb: float | None = None
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the checkout mibench runs from ("-dirty" when it has uncommitted changes),
    or None for an installed package."""
    import subprocess

    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line, durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(_clean(record), sort_keys=True) + "\n"
    with open(path, "ab+") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() > 0:            # a run killed mid-write may have left a line unfinished
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        f.write(line.encode())
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file, skipping (with a warning) lines that do not parse."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: skipping a broken line (an interrupted write)", path, number)


def load_rows(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The latest row of each run_id in DIR/runs.jsonl, in the order first recorded."""
    latest: dict[str, dict[str, Any]] = {}
    path = Path(out_dir) / RUNS_FILE
    for row in read_jsonl(path):
        if not isinstance(row, dict) or not isinstance(row.get("run_id"), str):
            log.warning("%s: skipping a line that is not a run row", path)
            continue
        latest[row["run_id"]] = row
    return list(latest.values())


def load_results(out_dir: str | os.PathLike):
    """All runs recorded in ``DIR/runs.jsonl`` as a pandas DataFrame, one row per run."""
    return to_frame(load_rows(out_dir))


def to_frame(rows: list[dict[str, Any]]):
    """Run rows as a DataFrame, one row per run, with the measurement columns numeric."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    df = pd.json_normalize(rows, max_level=0)
    for col in ("mi_estimate", "mi_true", "mi_std", "pairs_per_s", "steps_per_s", "peak_mem_mb", "wall_s"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def load_traces(out_dir: str | os.PathLike):
    """Per-step training estimates: a long DataFrame (run_id, step, estimate, mi_true)."""
    import pandas as pd

    frames = []
    for rec in read_jsonl(Path(out_dir) / TRACES_FILE):
        frames.append(pd.DataFrame({"run_id": rec["run_id"], "step": rec["step"],
                                    "estimate": rec["estimate"], "mi_true": rec["mi_true"]}))
    if not frames:
        return pd.DataFrame(columns=["run_id", "step", "estimate", "mi_true"])
    return pd.concat(frames, ignore_index=True).drop_duplicates(["run_id", "step"], keep="last")
