"""Append-only JSONL store of run rows and their traces; ``load_results`` reads it as a DataFrame.

Each run is one line written with a single ``write`` and flushed to disk, so an interrupted
sweep (Ctrl-C, kill -9) keeps every finished run. At worst the last line is cut short; readers
skip such a line with a warning and the next append starts on a fresh line.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
RUNS_FILE = "runs.jsonl"
TRACES_FILE = "traces.jsonl"


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
    for row in read_jsonl(Path(out_dir) / RUNS_FILE):
        latest[row["run_id"]] = row
    return list(latest.values())


def load_results(out_dir: str | os.PathLike):
    """All runs recorded in ``DIR/runs.jsonl`` as a pandas DataFrame, one row per run."""
    import pandas as pd

    rows = load_rows(out_dir)
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
