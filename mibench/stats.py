"""Run rows -> bias / variance / MSE statistics per cell (pure pandas, no I/O).

Every MI and every error is in nats. Only runs with ``status == "ok"`` enter the statistics;
the others are counted in ``n_failed``.

- ``summarize(runs)``: one row per cell (task, grid, bound, critic, encoder, K, B, device,
  steps, precision, MI level), with the mean held-out estimate over seeds, its bias,
  across-seed sd, MSE, a bootstrap CI of the bias, the within-run sd and the median throughput.
- ``staircase_levels(traces, runs)`` / ``staircase_summary(traces, runs)``: the staircase
  runs' training traces averaged over the last half of each MI level (as Lee & Rhee 2024
  report them), per run and then per cell and level.
- ``cells_of(summary, runs)``: which summary rows are cells that ``runs`` fall in.
- ``bmi_fails(runs)``: BMI's neural "fails", which ``summarize(runs, fail_filter="bmi")`` leaves
  out of the statistics and counts per cell.

Tables of these frames: ``mibench.tables``; figures: ``mibench.figures``.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .interface import level_of_step

log = logging.getLogger(__name__)

#: The columns that identify a cell (one summary row); the MI level is added through task_params.
CELL_KEYS = ("task", "grid", "library", "bound", "options", "critic", "encoder", "n_negatives", "batch_size", "device", "steps",
             "precision", "n_samples", "protocol")
#: Values of cell keys that rows written before the key existed held implicitly.
CELL_DEFAULTS = {"precision": "fp32", "n_samples": None, "options": "", "library": "mibench",     # None: trained on a stream
                 "protocol": ""}

N_BOOT = 2000
BOOT_SEED = 0
#: What a report may leave out of the statistics besides runs that did not finish ok: nothing,
#: or BMI's neural "fails" (``bmi_fails``).
FAIL_FILTERS = ("none", "bmi")
#: BMI's fail rule: a neural run below this fraction of the best estimate of its cell fails.
BMI_FAIL_FRACTION = 0.1


def with_library(name: str, library: Any) -> str:
    """An estimator's name as tables and figures show it: "infonce (torch-mist)" for another
    library's, the name alone for mibench's or when it already names its library ("KSG (BMI)")."""
    library = "mibench" if library is None or library != library else str(library)
    if library == "mibench" or library.lower() in str(name).lower():
        return str(name)
    return f"{name} ({library})"


ESTIMATOR_KEYS = ("options", "critic", "encoder", "n_negatives", "batch_size", "steps", "precision", "n_samples",
                   "protocol",
                   "device", "grid")


def estimator_labels(summary: pd.DataFrame) -> pd.Series:
    """A short label per summary row naming its estimator: the name, its library when not
    mibench ("infonce (LIBRARY)"), then as many of the columns that vary between rows as it
    takes for each (label, task) to be one cell."""
    lib = summary["library"] if "library" in summary else pd.Series(None, index=summary.index)
    labels = pd.Series([with_library(n, lb) for n, lb in zip(summary["bound"], lib)], index=summary.index)
    task = summary["task"].astype(str) + summary["task_params"].astype(str)
    for key in ESTIMATOR_KEYS:
        if not (pd.DataFrame({"l": labels, "t": task}).duplicated().any()):
            break
        if key in summary and summary[key].astype(str).nunique() > 1:
            labels = labels + ", " + key + "=" + summary[key].astype(str)
    return labels


def _params_key(value: Any) -> str:
    """task_params (a dict, or a JSON string) as a canonical string usable as a group key."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _with_keys(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy with every CELL_KEYS column present and a hashable ``_params`` column."""
    df = runs.copy()
    for key in CELL_KEYS:
        if key not in df:
            df[key] = CELL_DEFAULTS.get(key)
        elif CELL_DEFAULTS.get(key) is not None:
            df[key] = df[key].fillna(CELL_DEFAULTS[key])
    df["_params"] = df["task_params"].map(_params_key) if "task_params" in df else ""
    for col in ("status", "mi_true", "mi_estimate", "mi_std", "pairs_per_s", "steps_per_s", "wall_s"):
        if col not in df:
            df[col] = "ok" if col == "status" else np.nan
    return df


def bootstrap_ci(values: Sequence[float], *, n_boot: int = N_BOOT, level: float = 0.95,
                 seed: int = BOOT_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` (1-d, any unit).

    ``n_boot`` resamples with replacement from a fixed-seed RNG, so the same values always give
    the same interval. Returns (low, high); (nan, nan) with fewer than two finite values.
    """
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(high)


def _cell_stats(ok: pd.DataFrame, truth: float, *, n_boot: int, seed: int) -> dict[str, float]:
    """Statistics of one cell's ok runs: estimates (n,) against one truth, nats."""
    est = ok["mi_estimate"].to_numpy(dtype=float)
    est = est[np.isfinite(est)]
    err = est - truth
    n = est.size
    low, high = bootstrap_ci(err, n_boot=n_boot, seed=seed)
    train = pd.to_numeric(ok["mi_estimate_train"], errors="coerce").to_numpy(dtype=float) \
        if "mi_estimate_train" in ok else np.array([])
    train = train[np.isfinite(train)]
    train_low, train_high = bootstrap_ci(train, n_boot=n_boot, seed=seed)
    return {
        "mean": float(est.mean()) if n else math.nan,
        "mean_train": float(train.mean()) if train.size else math.nan,
        "train_ci_low": train_low,
        "train_ci_high": train_high,
        "bias": float(err.mean()) if n else math.nan,
        "sd": float(est.std(ddof=1)) if n > 1 else math.nan,
        "mse": float((err ** 2).mean()) if n else math.nan,
        "bias_ci_low": low,
        "bias_ci_high": high,
        "within_sd": float(ok["mi_std"].median()) if len(ok) else math.nan,
        "pairs_per_s": float(ok["pairs_per_s"].median()) if len(ok) else math.nan,
        "wall_s": float(pd.to_numeric(ok["wall_s"], errors="coerce").median()) if len(ok) else math.nan,
        "steps_per_s": float(ok["steps_per_s"].median()) if len(ok) else math.nan,
    }


def bmi_fails(runs: pd.DataFrame) -> pd.Series:
    """BMI's neural "fails" (Czyż et al., NeurIPS 2023: the heatmap of benchmark-mi's
    Beyond_Normal workflow drops them before averaging): a run of a neural estimator whose
    held-out estimate is below 0, or below ``BMI_FAIL_FRACTION`` (0.1) times the highest
    estimate among the runs of its cell (its seeds). Only runs that finished ok count, as only
    they are in BMI's results; a NaN estimate is not a fail (it is left out anyway). Sample
    estimators (``estimator_kind == "sample"``: KSG, CCA, external programs) never fail: BMI
    applies the rule to its neural estimators alone. Returns a boolean Series over ``runs``."""
    if runs is None or len(runs) == 0:
        return pd.Series([], index=getattr(runs, "index", None), dtype=bool)
    kind = runs["estimator_kind"].fillna("neural") if "estimator_kind" in runs else pd.Series("neural", index=runs.index)
    status = runs["status"] if "status" in runs else pd.Series("ok", index=runs.index)
    est = pd.to_numeric(runs["mi_estimate"], errors="coerce") if "mi_estimate" in runs else \
        pd.Series(math.nan, index=runs.index)
    counted = (kind != "sample") & (status == "ok")
    best = est.where(counted).groupby(cell_ids(runs).map("\x1f".join)).transform("max")
    return (counted & ((est < 0) | (est < BMI_FAIL_FRACTION * best))).astype(bool)


SUMMARY_COLUMNS = [*CELL_KEYS, "task_params", "family", "n_runs", "n_failed", "mi_true", "mi_true_stderr", "mean", "mean_train",
                   "train_ci_low", "train_ci_high", "bias", "sd",
                   "mse", "bias_ci_low", "bias_ci_high", "within_sd", "pairs_per_s", "steps_per_s", "wall_s"]


def summarize(runs: pd.DataFrame, *, n_boot: int = N_BOOT, seed: int = BOOT_SEED,
              seeds: bool = False, fail_filter: str = "none") -> pd.DataFrame:
    """One row per cell and MI level, statistics over the cell's seeds.

    runs: one row per run (``mibench.results.load_results``), with at least bound, status,
        mi_true and mi_estimate [nats]; mi_std [nats], pairs_per_s, steps_per_s and the other
        CELL_KEYS are used when present.

    Cells are (task, grid, bound, critic, encoder, n_negatives, batch_size, device, steps) and
    the task parameters (so each MI level of a sweep over ``task_params["mi"]`` is its own row).

    Returns columns: the cell keys; task_params (JSON); n_runs (all runs of the cell); n_failed
    (status != "ok"; excluded from everything below); mi_true; mi_true_stderr (the truth's
    standard error: > 0 for a Monte Carlo truth, 0 for an exact one, NaN when not recorded); mean (mean held-out estimate);
    bias = mean - mi_true; sd (across seeds, ddof = 1; NaN with one run); mse = mean of
    (estimate - mi_true)^2; bias_ci_low, bias_ci_high (95 % percentile bootstrap of the mean
    bias over seeds, ``n_boot`` resamples from a fixed RNG ``seed``; NaN with one run);
    mean_train (the mean estimate on the training data: the fixed training sample with
    n_samples, else fresh draws from the training split; NaN for rows written before it was
    recorded), with train_ci_low / train_ci_high its 95 % bootstrap interval over seeds; within_sd (median over runs of mi_std, the batch-to-batch spread of the held-out estimate
    at the end of training); pairs_per_s and steps_per_s (medians); wall_s (median seconds per
    run: training and evaluation, or a sample estimator's draw and estimate). All MI columns in nats.
    With ``seeds``, also a ``seeds`` column after n_failed: the sorted seeds (a tuple of ints)
    of the cell's runs, for printed tables. With ``fail_filter = "bmi"``, BMI's neural fails
    (``bmi_fails``) are left out of every statistic too, and an ``n_dropped`` column after
    n_failed counts them per cell (``attrs["fail_filter"]`` says which filter ran).
    """
    if fail_filter not in FAIL_FILTERS:
        raise ValueError(f"unknown fail filter {fail_filter!r}; allowed: {', '.join(FAIL_FILTERS)}")
    after = SUMMARY_COLUMNS.index("n_failed") + 1
    extra = (["seeds"] if seeds else []) + (["n_dropped"] if fail_filter != "none" else [])
    columns = [*SUMMARY_COLUMNS[:after], *extra, *SUMMARY_COLUMNS[after:]]
    if runs is None or len(runs) == 0:
        return pd.DataFrame(columns=columns)
    df = _with_keys(runs)
    df["_dropped"] = bmi_fails(runs).to_numpy() if fail_filter == "bmi" else False
    out = []
    keys = [*CELL_KEYS, "_params"]
    for values, cell in df.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, values))
        row["task_params"] = row.pop("_params")
        ok = cell[(cell["status"] == "ok") & ~cell["_dropped"]]
        truths = pd.to_numeric(cell.loc[cell["status"] == "ok", "mi_true"], errors="coerce").dropna()
        if truths.empty:                      # no ok run: any recorded truth will do
            truths = pd.to_numeric(cell["mi_true"], errors="coerce").dropna()
        truth = float(truths.iloc[0]) if len(truths) else math.nan
        if len(truths) and not np.allclose(truths, truth, rtol=0, atol=1e-9):
            log.warning("cell %s has runs with different truths %s; using the first", row, sorted(set(truths)))
        stderr = pd.to_numeric(cell["mi_true_stderr"], errors="coerce").dropna() if "mi_true_stderr" in cell \
            else pd.Series(dtype=float)
        row.update(n_runs=len(cell), n_failed=int((cell["status"] != "ok").sum()), mi_true=truth,
                   mi_true_stderr=float(stderr.iloc[0]) if len(stderr) else math.nan,
                   family=cell["family"].iloc[0] if "family" in cell else None)
        row.update(_cell_stats(ok, truth, n_boot=n_boot, seed=seed))
        if seeds:
            row["seeds"] = tuple(sorted({int(v) for v in cell.get("seed", pd.Series(dtype=float)).dropna()}))
        if fail_filter != "none":
            row["n_dropped"] = int(cell["_dropped"].sum())
        out.append(row)
    summary = pd.DataFrame(out, columns=columns)
    if fail_filter != "none":
        summary.attrs["fail_filter"] = fail_filter
    summary = summary.sort_values([c for c in ("task", "library", "grid", "bound", "critic", "n_negatives",
                                               "batch_size", "device", "mi_true")], kind="stable")
    return summary.reset_index(drop=True)


def key_text(value: Any) -> str:
    """A cell-key value as text that compares equal however the column was typed (63 == 63.0,
    None == NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return ""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
            and float(value).is_integer():
        return str(int(value))
    return str(value)


def _cell_id(values: Sequence[Any]) -> tuple[str, ...]:
    return tuple(key_text(v) for v in values)


def cell_ids(frame: pd.DataFrame) -> pd.Series:
    """The cell of each row of ``frame`` (run rows, or rows of ``summarize`` /
    ``staircase_summary``) as a tuple of text (CELL_KEYS, the task parameters, and the staircase
    level where the frame has one): rows of one cell share it, whatever the columns' types.
    Lets a figure that draws run rows aggregate them per cell, as the tables do."""
    if len(frame) == 0:
        return pd.Series([], index=frame.index, dtype=object)
    df = _with_keys(frame)
    cols = [*CELL_KEYS, "_params", *(["level"] if "level" in df else [])]
    return pd.Series([_cell_id(v) for v in df[cols].itertuples(index=False, name=None)], index=frame.index)


def cells_of(summary: pd.DataFrame, runs: pd.DataFrame) -> np.ndarray:
    """Boolean mask (len(summary),) over the rows of ``summarize(...)``: True where the row's
    cell (CELL_KEYS and task parameters) holds at least one of ``runs``. Lets one summary of
    every run be split afterwards (e.g. the cells of the staircase runs), without summarizing
    again."""
    if runs is None or len(runs) == 0 or len(summary) == 0:
        return np.zeros(len(summary), dtype=bool)
    have = {_cell_id(v) for v in _with_keys(runs)[[*CELL_KEYS, "_params"]].itertuples(index=False, name=None)}
    rows = summary[[*CELL_KEYS, "task_params"]].itertuples(index=False, name=None)
    return np.array([_cell_id(v) in have for v in rows], dtype=bool)


# --------------------------------------------------------------------------------------------
# Staircase


def staircase_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` whose ``staircase`` list (MI levels, nats) is non-empty."""
    if runs is None or len(runs) == 0 or "staircase" not in runs:
        return pd.DataFrame(columns=[] if runs is None else runs.columns)
    mask = runs["staircase"].map(lambda s: isinstance(s, (list, tuple)) and len(s) > 0)
    return runs[mask]


STAIR_RUN_COLUMNS = [*CELL_KEYS, "task_params", "run_id", "seed", "status", "level", "mi_true", "level_mean",
                     "level_sd", "n_points"]


def staircase_levels(traces: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Per staircase run and level: the traced training estimate over the last half of the level.

    traces: long frame (run_id, step, estimate [nats], mi_true [nats]) from
        ``mibench.results.load_traces``.
    runs: run rows; only those with a non-empty ``staircase`` are used (all statuses: the
        status is carried along so the aggregate can count failures).

    A level spans the steps [start, end) that ``mibench.interface.level_of_step`` gives it
    (ceil(steps / L) each, the last level the rest); its last half is the traced steps with
    step >= start + (end - start) / 2. Returns one row per (run, level) with level (0-based),
    mi_true (the level's truth, nats), level_mean, level_sd (ddof = 1 over the traced points,
    nats) and n_points.
    """
    stair = staircase_runs(runs)
    if stair.empty or traces is None or len(traces) == 0:
        return pd.DataFrame(columns=STAIR_RUN_COLUMNS)
    stair = _with_keys(stair)
    by_run = {rid: t for rid, t in traces.groupby("run_id", sort=False)}
    out = []
    for _, run in stair.iterrows():
        levels = [float(v) for v in run["staircase"]]
        steps = int(run["steps"])
        trace = by_run.get(run["run_id"], traces.iloc[:0])
        step = trace["step"].to_numpy()
        level = level_of_step(step, steps, len(levels))
        # level k spans the steps [edges[k], edges[k + 1]) of the schedule
        edges = np.searchsorted(level_of_step(np.arange(steps), steps, len(levels)), np.arange(len(levels) + 1))
        estimates = trace["estimate"].to_numpy(dtype=float)
        truths = trace["mi_true"].to_numpy(dtype=float)
        for k, target in enumerate(levels):
            start, end = edges[k], edges[k + 1]
            sel = (level == k) & (step >= start + (end - start) / 2)
            values, truth = estimates[sel], truths[sel]
            finite = values[np.isfinite(values)]
            out.append({
                **{key: run[key] for key in CELL_KEYS}, "task_params": run["_params"], "run_id": run["run_id"],
                "seed": run.get("seed"), "status": run["status"], "level": k,
                "mi_true": float(np.nanmean(truth)) if truth.size else target,
                "level_mean": float(finite.mean()) if finite.size else math.nan,
                "level_sd": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
                "n_points": int(finite.size),
            })
    return pd.DataFrame(out, columns=STAIR_RUN_COLUMNS)


STAIR_COLUMNS = [*CELL_KEYS, "task_params", "level", "n_runs", "n_failed", "mi_true", "mean", "bias", "sd", "mse",
                 "bias_ci_low", "bias_ci_high", "within_sd"]


def staircase_summary(traces: pd.DataFrame, runs: pd.DataFrame, *, n_boot: int = N_BOOT,
                      seed: int = BOOT_SEED) -> pd.DataFrame:
    """``staircase_levels`` aggregated over seeds, one row per cell (bound, critic, ..., and the
    task parameters, so that a variant such as a cubic y is its own cell) and level (and truth:
    runs of one cell with other staircase levels are never averaged together).

    Columns as in ``summarize``, with the per-run last-half level mean in place of the held-out
    estimate: mean, bias, sd (across seeds), mse, bias CI; within_sd is the median over runs of
    the sd of the traced estimate within the last half of the level (nats). The staircase has
    no held-out throughput of its own; see ``summarize`` for pairs/s.
    """
    per_run = staircase_levels(traces, runs)
    if per_run.empty:
        return pd.DataFrame(columns=STAIR_COLUMNS)
    # a task variant (e.g. cubic y) is its own cell, and so is a level of another schedule (its truth)
    keys = [*CELL_KEYS, "task_params", "level", "_truth"]
    per_run = per_run.assign(_truth=per_run["mi_true"].round(6))
    out = []
    for values, cell in per_run.groupby(keys, dropna=False, sort=False):
        row = dict(zip(keys, values))
        del row["_truth"]
        ok = cell[cell["status"] == "ok"]
        truth = float(cell["mi_true"].iloc[0])
        n_run_failed = int((cell["status"] != "ok").sum())
        est = ok["level_mean"].to_numpy(dtype=float)
        est = est[np.isfinite(est)]
        err = est - truth
        low, high = bootstrap_ci(err, n_boot=n_boot, seed=seed)
        row.update(n_runs=len(cell), n_failed=n_run_failed, mi_true=truth,
                   mean=float(est.mean()) if est.size else math.nan,
                   bias=float(err.mean()) if est.size else math.nan,
                   sd=float(est.std(ddof=1)) if est.size > 1 else math.nan,
                   mse=float((err ** 2).mean()) if est.size else math.nan,
                   bias_ci_low=low, bias_ci_high=high,
                   within_sd=float(ok["level_sd"].median()) if len(ok) else math.nan)
        out.append(row)
    result = pd.DataFrame(out, columns=STAIR_COLUMNS)
    return result.sort_values(["task", "grid", "bound", "critic", "level"], kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Units

UNITS = {"nats": 1.0, "bits": 1 / math.log(2)}
#: Columns in nats in run rows, traces and summaries; MSE is in nats squared.
#: (A staircase's ``level`` is the level's index, not an MI, so it is not among them.)
MI_COLUMNS = ("mi_true", "mi_true_train", "mi_estimate", "mi_std", "mi_estimate_train", "mi_std_train", "mean",
              "mean_train", "train_ci_low", "train_ci_high", "bias", "sd", "bias_ci_low", "bias_ci_high", "within_sd",
              "level_mean", "level_sd", "estimate")


def in_units(frame: pd.DataFrame, units: str) -> pd.DataFrame:
    """A copy of ``frame`` (rows, traces or a summary, all in nats) in ``units`` ("nats" or
    "bits"); its ``attrs["units"]`` says which, and the tables and figures label it so. Rows on
    disk stay in nats."""
    if units not in UNITS:
        raise ValueError(f"unknown units {units!r}; allowed: {', '.join(UNITS)}")
    out = frame.copy()
    factor = UNITS[units]
    for col in MI_COLUMNS:
        if col in out:
            out[col] = pd.to_numeric(out[col], errors="coerce") * factor
    if "mse" in out:
        out["mse"] = pd.to_numeric(out["mse"], errors="coerce") * factor**2
    out.attrs["units"] = units
    return out
