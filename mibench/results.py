"""Run rows: their schema (``RunRow``) and how a results folder is read.

A results folder (``mibench.layout``) holds ``runs.jsonl`` and ``traces.jsonl`` (a line per run)
and ``pending/``, a file per finished run that has not been merged into them yet
(``mibench.store`` writes both).
Readers see both. A line that does not parse, or is not a run row with its required fields (of
their types), is reported once (file and line) and skipped; a row without its required fields is
not finished. So are a pending file that is not a record (a merge moves it to ``corrupt/``) and a
trace that is not a trace.
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

from .layout import PENDING_DIR, RUNS_FILE, TRACES_FILE

log = logging.getLogger(__name__)

# 2: run ids hash what is trained and evaluated (grid names and output options left out);
#    rows carry schema_version, grids and git_commit. Rows of schema 1 are read as they are and
#    get their schema-2 id from ``mibench.runspec.upgrade_row`` when a sweep resumes.
SCHEMA_VERSION = 2
FINISHED = ("ok", "diverged")   # statuses a resumed sweep does not redo; "error" runs are retried
REQUIRED = ("run_id", "status")                  # a row without these is skipped
REQUIRED_FINISHED = ("mi_true", "mi_estimate")   # ... and a finished one also needs these


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
    mi_true_stderr: float | None = None      # > 0 only when the truth is a Monte Carlo estimate
    task_name: str | None = None
    mi_estimate: float | None = None
    mi_std: float | None = None
    mi_estimate_train: float | None = None   # the same estimate on the training data (its fixed
    mi_std_train: float | None = None        # sample with n_samples, else fresh training draws)
    n_samples: int | None = None             # the fixed training sample's size, or None (a stream)
    pairs_per_s: float | None = None
    steps_per_s: float | None = None
    train_s: float | None = None
    batched_models: int | None = None
    peak_mem_mb: float | None = None
    bound_options: dict[str, Any] | None = None   # the bound's options (SMILE's tau, ...), defaults filled
    estimator_kind: str = "neural"  # "neural" (a trained critic) or "sample" (one estimate on a sample)
    library: str = "mibench"        # whose implementation: mibench, torch-mist, an external program's
    estimate_s: float | None = None # sample estimators: seconds of the one estimate call
    record_id: str | None = None   # one training attempt: merges skip a record already merged
    worker: str | None = None      # host:pid that trained it
    sweep_id: str | None = None    # the sweep (one planning) it was trained in
    schema_version: int = SCHEMA_VERSION
    # The training protocol (``mibench.protocol``): mi_estimate is the estimate the run reports,
    # the held-out estimate after the last step (mi_estimate_final) or, with report = "best", the
    # highest of those taken every eval_every steps (mi_estimate_best, after best_step steps).
    mi_estimate_final: float | None = None
    mi_estimate_best: float | None = None    # None without eval_every
    best_step: int | None = None
    steps_trained: int | None = None         # the steps actually run (fewer with early stopping)

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


#: Fields whose infinities are settings (SMILE's tau = inf), kept as the string "inf".
_SETTINGS = ("spec", "bound_options")


def json_ready(value: Any, setting: bool = False) -> Any:
    """JSON has no NaN/inf: measurements store them as null; settings (``_SETTINGS``) store an
    infinity as "inf" / "-inf", which the option checks read back as the number."""
    if isinstance(value, float) and not math.isfinite(value):
        return ("inf" if value > 0 else "-inf") if setting and not math.isnan(value) else None
    if isinstance(value, dict):
        return {k: json_ready(v, setting or k in _SETTINGS) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v, setting) for v in value]
    return value


def append_jsonl(path: Path, records: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Append a record (or several) as lines with one write, durably, starting on a fresh line.
    A write that fails (no space left) is undone: the file is cut back to its old length."""
    path.parent.mkdir(parents=True, exist_ok=True)
    records = [records] if isinstance(records, dict) else records
    line = "".join(json.dumps(json_ready(r), sort_keys=True) + "\n" for r in records)
    with open(path, "ab+") as f:
        start = f.seek(0, os.SEEK_END)
        if start > 0:               # a run killed mid-write may have left a line unfinished
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                line = "\n" + line
        try:
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        except OSError:
            try:
                f.truncate(start)
            except OSError:
                pass
            raise


_warned: set[tuple[str, int]] = set()


def _warn_once(path: Path, number: int, what: str) -> None:
    if (str(path), number) not in _warned:
        _warned.add((str(path), number))
        log.warning("%s:%d: skipping %s", path, number, what)


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file, skipping (with a warning, once) lines that do not parse."""
    for _, record in _numbered(path):
        yield record


def _numbered(path: Path) -> Iterator[tuple[int, Any]]:
    if not path.is_file():
        return
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError:
                _warn_once(path, number, "a broken line (an interrupted write)")


def scan_pending(out_dir: str | os.PathLike) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """The pending records of DIR, oldest first, split into usable ones (path, {"row": ...,
    "trace": ...}) and the others (path, why). Records are written whole (to a temporary name,
    then renamed), so a file that does not parse, or is not a record with a valid row, will
    never become one: it is reported once and skipped (a merge moves it to ``corrupt/``)."""
    folder = Path(out_dir) / PENDING_DIR
    if not folder.is_dir():
        return [], []
    found, bad = [], []
    for path in folder.glob("*.json"):
        try:                              # another process's merge may delete it at any moment
            stamp, text = path.stat().st_mtime_ns, path.read_bytes()
        except OSError:
            continue
        try:
            record = json.loads(text.decode("utf-8"))
        except ValueError:                # not UTF-8, or not JSON
            record, problem = None, "a record that does not parse"
        else:
            problem = record_problem(record)
        if problem:
            _warn_once(path, 1, problem)
            bad.append((path, problem))
        else:
            found.append((stamp, path.name, path, record))
    return [(path, record) for _, _, path, record in sorted(found, key=lambda f: f[:2])], bad


def pending_records(out_dir: str | os.PathLike) -> list[tuple[Path, dict[str, Any]]]:
    """Finished runs written as records of their own and not yet merged into runs.jsonl
    (``mibench.store``), oldest first: (path, {"row": ..., "trace": ...}). Files that are not
    such records are reported once and skipped (``scan_pending``)."""
    return scan_pending(out_dir)[0]


def record_problem(record: Any) -> str | None:
    """Why a pending record is not usable, or None. A record whose row is good but whose trace
    is not is usable: its row is kept, its trace skipped."""
    if not isinstance(record, dict) or not isinstance(record.get("row"), dict):
        return 'a record that is not {"row": {...}, "trace": {...}}'
    problem = row_problem(record["row"])
    return problem and f"a record holding {problem}"


def _number_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def row_problem(row: Any) -> str | None:
    """Why ``row`` is not a usable run row, or None."""
    if not isinstance(row, dict):
        return "a line that is not a run row (not an object)"
    missing = [k for k in REQUIRED if k not in row]
    if row.get("status") in FINISHED:
        missing += [k for k in REQUIRED_FINISHED if k not in row]
    if missing or not isinstance(row.get("run_id"), str):
        return f"a run row without {', '.join(missing) or 'a string run_id'}"
    wrong = [k for k in (*REQUIRED_FINISHED, "mi_std") if k in row and not _number_or_none(row[k])]
    if row["status"] == "ok" and row.get("mi_estimate") is None:
        wrong.append("mi_estimate")                # an "ok" row holds its estimate
    wrong += [k for k in ("record_id", "sweep_id") if row.get(k) is not None and not isinstance(row[k], str)]
    version = row.get("schema_version", 1)
    if not isinstance(row["status"], str):
        wrong.append("status")
    if not isinstance(version, int) or isinstance(version, bool):
        wrong.append("schema_version")
    return f"a run row with a wrong-typed {', '.join(wrong)}" if wrong else None


def trace_problem(trace: Any) -> str | None:
    """Why ``trace`` is not a usable training trace (run_id; step, estimate and mi_true lists of
    one length, of numbers), or None."""
    if not isinstance(trace, dict):
        return "a line that is not a trace (not an object)"
    if not isinstance(trace.get("run_id"), str):
        return "a trace without a string run_id"
    columns = [trace.get(k) for k in ("step", "estimate", "mi_true")]
    if not all(isinstance(c, list) for c in columns) or len({len(c) for c in columns}) != 1:
        return "a trace whose step, estimate and mi_true are not lists of one length"
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in columns[0]) \
            or not all(_number_or_none(v) for c in columns[1:] for v in c):
        return "a trace with values that are not numbers"
    return None


def iter_rows(out_dir: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Every valid row of DIR: runs.jsonl in order, then the pending records. Rows that are not
    valid are reported once (file and line) and skipped."""
    path = Path(out_dir) / RUNS_FILE
    for number, row in _numbered(path):
        problem = row_problem(row)
        if problem:
            _warn_once(path, number, problem)
            continue
        yield row
    for _, record in pending_records(out_dir):
        yield record["row"]


def load_rows(out_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """One row per run_id of DIR, in the order first recorded: the latest, except that an error
    row never hides an earlier finished ("ok" or "diverged") row of the same run."""
    latest: dict[str, dict[str, Any]] = {}
    for row in iter_rows(out_dir):
        prev = latest.get(row["run_id"])
        if prev is not None and prev["status"] in FINISHED and row["status"] not in FINISHED:
            continue
        latest[row["run_id"]] = row
    return list(latest.values())


def load_results(out_dir: str | os.PathLike):
    """All runs recorded in ``DIR/runs.jsonl`` as a pandas DataFrame, one row per run."""
    return to_frame(load_rows(out_dir))


#: The fields of an estimator spec (``EstimatorSpec``) other than the bound's options; a test
#: keeps the two in step. Rows recorded before ``bound_options`` hold the options in the spec.
SPEC_FIELDS = frozenset({"bound", "library", "critic", "hidden", "critic_dim", "temperature", "encoder", "encoder_hidden",
                         "embed_dim", "shared", "negatives"})


def bound_options_of(row: dict[str, Any]) -> dict[str, Any]:
    """The bound options a run was trained with (empty for rows of schema 1, whose spec held the
    options of every bound)."""
    if isinstance(row.get("bound_options"), dict):
        return row["bound_options"]
    spec = row.get("spec")
    if not isinstance(spec, dict) or row.get("schema_version", 1) < 2:
        return {}
    est = spec.get("estimator") or {}
    return {k: v for k, v in est.items() if k not in SPEC_FIELDS}


def options_text(options: dict[str, Any]) -> str:
    """{"tau": 1.0} -> "tau=1": the cell label of a bound's options."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(options.items()))


#: The training protocol's settings (``mibench.protocol``) at their defaults: the whole budget,
#: the final estimate, batches in epochs of a fixed sample as drawn. A run's spec holds them.
PROTOCOL_DEFAULTS = {"eval_every": None, "patience": None, "report": "final", "standardize": False,
                     "batches": "epochs"}


def protocol_text(row: dict[str, Any]) -> str:
    """The training protocol a run followed, as its cell label: the settings that differ from
    ``PROTOCOL_DEFAULTS`` ("eval_every=250, patience=2, report=best"), "" for the default. Runs
    under different protocols are different cells, as runs of different budgets are."""
    spec = row.get("spec") if isinstance(row.get("spec"), dict) else {}
    parts = []
    for key, default in PROTOCOL_DEFAULTS.items():
        value = spec.get(key, default)
        if value != default:
            parts.append(f"{key}={str(value).lower() if isinstance(value, bool) else value}")
    return ", ".join(parts)


#: How a truth is known when it is exact: its standard error is 0 (``GroundTruth.method``).
EXACT_TRUTH = ("analytic", "by_construction")


def truth_stderr(row: dict[str, Any]) -> float:
    """The standard error of a row's truth [nats]: recorded since rows carry it; for older rows
    0 when the truth is exact, else NaN (``scripts/upgrade_results.py --truth-stderr`` fills
    it in from the task)."""
    value = row.get("mi_true_stderr")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return 0.0 if row.get("truth_method") in EXACT_TRUTH else math.nan


def to_frame(rows: list[dict[str, Any]]):
    """Run rows as a DataFrame, one row per run, with the measurement columns numeric, an
    ``options`` column (the bound's options as text, "tau=5") and a ``protocol`` column (the
    training protocol as text, ``protocol_text``)."""
    import pandas as pd

    if not rows:
        return pd.DataFrame()
    df = pd.json_normalize(rows, max_level=0)
    df["options"] = [options_text(bound_options_of(r)) for r in rows]
    df["protocol"] = [protocol_text(r) for r in rows]
    if "mi_true" in df:
        df["mi_true_stderr"] = [truth_stderr(r) for r in rows]
    for col in ("mi_estimate", "mi_true", "mi_std", "mi_estimate_train", "mi_std_train", "pairs_per_s",
                "steps_per_s", "peak_mem_mb", "wall_s", "mi_estimate_final", "mi_estimate_best", "best_step",
                "steps_trained"):
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


def load_traces(out_dir: str | os.PathLike):
    """Per-step training estimates: a long DataFrame (run_id, step, estimate, mi_true). Traces
    that are not traces are reported once (file and line) and skipped."""
    import pandas as pd

    path = Path(out_dir) / TRACES_FILE
    records = []
    for number, rec in _numbered(path):
        problem = trace_problem(rec)
        if problem:
            _warn_once(path, number, problem)
        else:
            records.append(rec)
    for record_path, record in pending_records(out_dir):
        if "trace" in record:
            problem = trace_problem(record["trace"])
            if problem:
                _warn_once(record_path, 1, problem)
            else:
                records.append(record["trace"])
    frames = [pd.DataFrame({"run_id": rec["run_id"], "step": rec["step"], "estimate": rec["estimate"],
                            "mi_true": rec["mi_true"]}) for rec in records if rec["step"]]
    if not frames:
        return pd.DataFrame(columns=["run_id", "step", "estimate", "mi_true"])
    return pd.concat(frames, ignore_index=True).drop_duplicates(["run_id", "step"], keep="last")
