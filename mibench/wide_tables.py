"""Paper tables made wide, CSV / Markdown / LaTeX: a row per estimator and a column per MI
level (a staircase, or tasks of several truths), or a row per task and a column per estimator
(a multi-task folder such as BMI's suites). The cells come from ``mibench.stats``; the number
formats and writers are ``mibench.tables``'."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from .atomic import make_folder, write_text
from .stats import CELL_KEYS
from .tables import (DISPLAY, MISSING, fmt_number, fmt_plain, latex_escape, latex_table, markdown_table,
                     take_constant, varying_params, write_csv)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# Paper tables: a row per estimator, a column per MI level

STAIRCASE_NOTE = ("each level: the mean over seeds of the traced training estimate averaged over the last half "
                  "of the level [95% bootstrap interval of that mean]")
MI_NOTE = "each true MI: the mean over seeds of the held-out estimate [95% bootstrap interval of that mean]"


def level_table(cells: pd.DataFrame) -> pd.DataFrame:
    """A long frame of cells at several MI levels made wide: a row per estimator cell (the cell
    keys), its number of seeds that finished (``n_seeds``), and for each level's truth t the
    columns "I = t" (the mean over seeds), "I = t low" and "I = t high" (the 95 % bootstrap
    interval of that mean: the bias interval shifted by the truth; NaN with one seed).

    ``cells``: ``stats.staircase_summary`` (a row per cell and staircase level) or the part of
    ``stats.summarize`` where each estimator has one row per true MI (``has_mi_levels``).
    Cells keep the frame's order; units are the frame's (``attrs["units"]``, kept)."""
    staircase = "level" in cells
    # a staircase's task parameters tell its variants apart; elsewhere they hold the MI level
    keys = [c for c in CELL_KEYS if c in cells] + (["task_params"] if staircase and "task_params" in cells else [])
    order = "level" if staircase else "mi_true"
    rows = []
    for values, cell in cells.groupby(keys, dropna=False, sort=False):
        row: dict[str, Any] = dict(zip(keys, values))
        used = cell["n_runs"] - cell["n_failed"] - (cell["n_dropped"] if "n_dropped" in cell else 0)
        row["n_seeds"] = int(used.max())
        for _, level in cell.sort_values(order).iterrows():
            name = f"I = {level['mi_true']:.3g}"
            row[name] = level["mean"]
            row[f"{name} low"] = level["bias_ci_low"] + level["mi_true"]
            row[f"{name} high"] = level["bias_ci_high"] + level["mi_true"]
        rows.append(row)
    wide = pd.DataFrame(rows)
    wide.attrs["units"] = cells.attrs.get("units", "nats")
    return wide


def has_mi_levels(summary: pd.DataFrame) -> bool:
    """Whether ``summary`` reads as a level table: two or more true MIs, and no estimator cell
    with two rows at one of them (two tasks of equal MI would share a column)."""
    if len(summary) == 0 or summary["mi_true"].nunique() < 2:
        return False
    keys = [c for c in CELL_KEYS if c in summary]
    return not summary[[*keys, "mi_true"]].astype(str).duplicated().any()


def _fmt_level(value: Any) -> str:
    """An estimate at a level: 2 decimals, or 3 significant digits from 1000 on (a bound that
    blew up)."""
    v = float(value)
    if not math.isfinite(v):
        return MISSING
    return f"{v:.3g}" if abs(v) >= 1000 else f"{v:.2f}"


def level_display(wide: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``level_table`` as printed: identity columns that vary, "seeds", and one
    "mean [low, high]" string per level ("mean" alone with one seed); the constant identity
    columns are returned for a caption, as in ``display_table``."""
    ident = [c for c in CELL_KEYS if c in wide]
    levels = [c for c in wide.columns if c.startswith("I = ") and not c.endswith((" low", " high"))]
    view, constant = take_constant(wide[ident].copy())
    out = pd.DataFrame({DISPLAY[c]: view[c].map(fmt_plain) for c in view.columns}, index=wide.index)
    varying = varying_params(wide) if "task_params" in wide else None
    if varying is not None:                              # which variant each row is (e.g. a cubic y)
        out.insert(0, "task parameters", varying)
    out["seeds"] = wide["n_seeds"].astype(str)
    for name in levels:
        mean, low, high = (wide[name].map(_fmt_level), wide[f"{name} low"].map(_fmt_level),
                           wide[f"{name} high"].map(_fmt_level))
        out[name] = [m if MISSING in (lo, hi) else f"{m} [{lo}, {hi}]" for m, lo, hi in zip(mean, low, high)]
    return out.reset_index(drop=True), constant


def write_level_table(cells: pd.DataFrame, out_dir: str | os.PathLike, stem: str, note: str) -> list[Path]:
    """OUT/STEM.csv (``level_table``: every number, units in the level columns' names),
    OUT/STEM.md and OUT/STEM.tex (``level_display``, ``note`` after the caption's constant
    columns). Returns the three paths."""
    out = make_folder(out_dir)
    wide = level_table(cells)
    units = wide.attrs["units"]
    view, constant = level_display(wide)
    note = f"estimates in {units}; {note}"
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.tex"]
    write_csv(wide.rename(columns=lambda c: f"{c} [{units}]" if c.startswith("I = ") else
                          ("seeds" if c == "n_seeds" else DISPLAY.get(c, c))), paths[0])
    write_text(paths[1], markdown_table(view, constant, note))
    write_text(paths[2], latex_table(view, constant, latex_escape(note)))
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


# --------------------------------------------------------------------------------------------
# Paper tables: a row per task, a column per estimator (a multi-task folder, e.g. BMI's tasks)

TASK_NOTE = "each cell: the mean bias over seeds ± its sd over seeds"


def task_table(cells: pd.DataFrame, labels: pd.Series) -> pd.DataFrame:
    """Cells of several tasks made wide: a row per task (its parameters as ``task_params``,
    its truth ``mi_true`` and, where the cells have it, ``mi_true_stderr``; tasks in order of
    truth), and per estimator label (``labels``, one per
    row of ``cells`` and unique within a task; columns in case-blind alphabetical order, so that
    "ksg" and "KSG (BMI)" sit side by side) the columns "LABEL" (mean bias), "LABEL sd" (sd over
    seeds), "LABEL seeds" (runs that finished, less those a fail filter dropped) and "LABEL s"
    (median seconds per run). Units are the frame's (``attrs["units"]``, kept)."""
    frame = cells.assign(_label=labels.values, _seeds=cells["n_runs"] - cells["n_failed"]
                         - (cells["n_dropped"] if "n_dropped" in cells else 0))
    tasks = frame.drop_duplicates("task_params")[[c for c in _TASK_COLUMNS if c in frame]]
    tasks = tasks.sort_values("mi_true", kind="stable").reset_index(drop=True)
    wide = tasks.copy()
    for label in sorted(frame["_label"].unique(), key=lambda s: (s.lower(), s)):
        mine = frame[frame["_label"] == label].set_index("task_params")
        for suffix, column in (("", "bias"), (" sd", "sd"), (" seeds", "_seeds"), (" s", "wall_s")):
            values = mine[column] if column in mine else pd.Series(dtype=float)
            wide[label + suffix] = tasks["task_params"].map(values).values
    wide.attrs["units"] = cells.attrs.get("units", "nats")
    return wide


_TASK_COLUMNS = ("task_params", "mi_true", "mi_true_stderr")


def _estimator_columns(wide: pd.DataFrame) -> list[str]:
    return [c for c in wide.columns if c not in _TASK_COLUMNS and not c.endswith((" sd", " seeds", " s"))]


def _truth_text(mi: Any, stderr: Any) -> str:
    """A truth to the millinat, with its standard error when it is a Monte Carlo estimate."""
    se = pd.to_numeric(stderr, errors="coerce")
    return fmt_number(mi, 3) + (f" ± {se:.4f}" if math.isfinite(se) and se > 0 else "")


def task_display(wide: pd.DataFrame) -> pd.DataFrame:
    """``task_table`` as printed: a row per task (its truth, "± its standard error" where that is
    a Monte Carlo estimate; "bias ± sd" per estimator, the bias alone with
    one seed, "–" where it has no value), then a row with each estimator's seeds per task
    ("3–5" when they differ) and one with its median seconds per run over the tasks."""
    estimators = _estimator_columns(wide)
    truth = f"true MI [{wide.attrs.get('units', 'nats')}]"
    names = varying_params(wide) if len(wide) > 1 else None
    rows = pd.DataFrame({"task": names if names is not None else wide["task_params"].map(fmt_plain),
                         truth: [_truth_text(mi, se) for mi, se in
                                 zip(wide["mi_true"], wide.get("mi_true_stderr", [math.nan] * len(wide)))]})
    for label in estimators:
        rows[label] = [MISSING if not math.isfinite(float(b)) else
                       f"{b:+.3f}" if not math.isfinite(float(s)) else f"{b:+.3f} ± {s:.3f}"
                       for b, s in zip(wide[label], wide[f"{label} sd"])]
    seeds, seconds = {"task": "seeds per task", truth: MISSING}, {"task": "median s per run", truth: MISSING}
    for label in estimators:
        n = pd.to_numeric(wide[f"{label} seeds"], errors="coerce").dropna().astype(int)
        seeds[label] = MISSING if n.empty else str(n.min()) if n.min() == n.max() else f"{n.min()}–{n.max()}"
        seconds[label] = fmt_number(pd.to_numeric(wide[f"{label} s"], errors="coerce").median(), "g3")
    return pd.concat([rows, pd.DataFrame([seeds, seconds])], ignore_index=True)


def write_task_table(cells: pd.DataFrame, labels: pd.Series, out_dir: str | os.PathLike, stem: str = "task_table",
                     note: str = TASK_NOTE) -> list[Path]:
    """OUT/STEM.csv (``task_table``: every number, units in the bias columns' names), OUT/STEM.md
    and OUT/STEM.tex (``task_display``; the caption names the units and ``note``). Returns the
    three paths."""
    out = make_folder(out_dir)
    wide = task_table(cells, labels)
    units = wide.attrs["units"]
    estimators = set(_estimator_columns(wide))
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.tex"]
    write_csv(wide.rename(columns=lambda c: (f"{c} bias [{units}]" if c in estimators else f"{c} [{units}]"
                                             if c.endswith(" sd") else "task parameters" if c == "task_params"
                                             else DISPLAY.get(c, c).replace("[nats", f"[{units}"))), paths[0])
    view = task_display(wide)
    note = f"bias in {units}; {note}"
    write_text(paths[1], markdown_table(view, {}, note))
    write_text(paths[2], latex_table(view, {}, latex_escape(note)))
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths
