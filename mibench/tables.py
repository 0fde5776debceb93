"""Summary frames -> tables: display strings, Markdown, LaTeX, CSV and the plain text printed
after ``mibench run``.

Every table shows the same way (``display_table``): MI quantities in nats to 3 decimals,
pairs/s as whole numbers, the bias CI as one "[low, high]" column, column names with units
(``DISPLAY``), and identity columns that are the same in every row taken out into a caption.

- ``to_markdown`` / ``to_latex`` / ``to_text``: that table as Markdown, a LaTeX ``table``, or
  plain text for a terminal.
- ``write_tables(summary, out_dir)``: OUT/STEM.{csv,md,tex}.
- ``level_table(cells)`` / ``write_level_table``: cells at several MI levels (a staircase, or
  the Gaussian at 2-10 nats) as a paper table: a row per estimator, a column per level holding
  "mean [95 % interval]" over seeds. The two writers are the only I/O here.
- ``task_table(cells, labels)`` / ``write_task_table``: cells of several tasks (BMI's) as a
  paper table: a row per task, a column per estimator holding "bias ± sd" over seeds.
- ``run_table(runs)``: what ``mibench run`` prints: the per-cell summary of the runs it did.
"""

from __future__ import annotations

import json

import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .atomic import make_folder, write_text, writing
from .stats import CELL_KEYS, summarize

log = logging.getLogger(__name__)

#: Display names, with units, for the columns ``write_tables`` writes (in this order).
DISPLAY = {
    "task": "task", "grid": "grid", "library": "library", "bound": "estimator", "options": "options", "critic": "critic", "encoder": "encoder",
    "n_negatives": "K", "batch_size": "B", "device": "device", "steps": "steps", "precision": "precision",
    "n_samples": "sample size", "protocol": "protocol",
    "level": "level",
    "n_runs": "runs", "n_failed": "failed", "n_dropped": "dropped by the fail filter", "seeds": "seeds",
    "mi_true": "true MI [nats]", "mi_true_stderr": "truth s.e. [nats]", "mean": "estimate [nats]", "mean_train": "on training data [nats]",
    "train_ci_low": "on training data 95% CI low [nats]", "train_ci_high": "on training data 95% CI high [nats]",
    "bias": "bias [nats]",
    "bias_ci_low": "bias 95% CI low [nats]", "bias_ci_high": "bias 95% CI high [nats]",
    "sd": "sd over seeds [nats]", "mse": "MSE [nats^2]", "within_sd": "within-run sd [nats]",
    "pairs_per_s": "pairs/s", "steps_per_s": "steps/s", "wall_s": "s per run",
}
CI_COLUMN = "bias 95% CI [nats]"
TRAIN_CI_COLUMN = "on training data 95% CI [nats]"
_IDENTITY = (*CELL_KEYS, "seeds")      # constant ones move to the caption
#: Decimals shown: MI quantities to the millinat, throughput to whole pairs and tenths of steps.
_DIGITS = {"mi_true": 3, "mi_true_stderr": 4, "mean": 3, "mean_train": 3, "train_ci_low": 3, "train_ci_high": 3, "bias": 3, "bias_ci_low": 3, "bias_ci_high": 3, "sd": 3, "mse": 3,
           "within_sd": 3, "pairs_per_s": 0, "steps_per_s": 1, "wall_s": "g3"}
MISSING = "–"


def _fmt(value: Any, digits: int | str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return MISSING
    if not math.isfinite(v):
        return MISSING
    if digits == "g3":                          # seconds: three significant digits
        return f"{v:.3g}"
    return f"{v:,.0f}" if digits == 0 else f"{v:.{digits}f}"


def _fmt_plain(value: Any) -> str:
    """An identity value as text: missing as "–", a whole number that pandas made a float (a
    column with gaps, e.g. K of sample estimators) as an integer."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def seeds_text(seeds: Any) -> str:
    """(0, 1, 2, 3, 7, 8) -> "0-3,7,8": the seeds of a cell, three or more consecutive ones
    as a range."""
    if not isinstance(seeds, (tuple, list)) or not seeds:
        return MISSING
    parts: list[str] = []
    start = prev = seeds[0]
    for cur in [*seeds[1:], None]:
        if cur is not None and cur == prev + 1:
            prev = cur
            continue
        parts += [f"{start}-{prev}"] if prev - start >= 2 else [str(v) for v in range(start, prev + 1)]
        start = prev = cur
    return ",".join(parts)


def varying_params(summary: pd.DataFrame) -> pd.Series | None:
    """The task parameters that differ between rows, as "key=value" text (None when none do)."""
    if "task_params" not in summary or len(summary) < 2:
        return None
    params = [json.loads(p) if isinstance(p, str) and p.startswith("{") else {} for p in summary["task_params"]]
    keys = sorted({k for p in params for k in p})
    vary = [k for k in keys if len({json.dumps(p.get(k), sort_keys=True) for p in params}) > 1]
    if not vary:
        return None
    text = [", ".join(f"{p[k]}" if k == "name" else f"{k}={p.get(k)}" for k in vary if k in p) for p in params]
    return pd.Series(text, index=summary.index)


def _take_constant(view: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``view`` without the identity columns that hold one value in every row, and those
    values by display name (for a caption); a missing value (e.g. no sample size: a stream) is
    dropped without a caption entry. A one-row view keeps its columns."""
    constant: dict[str, Any] = {}
    if len(view) > 1:
        for c in _IDENTITY:
            if c in view and view[c].nunique(dropna=False) == 1:
                value = view[c].iloc[0]
                if not _missing(value):
                    constant[DISPLAY[c]] = seeds_text(value) if c == "seeds" else value
                view = view.drop(columns=c)
    return view, constant


def display_table(summary: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table as printed, every cell a string.

    Identity columns that take one value in every row are taken out and returned as a dict
    (for a caption); MI quantities are shown in nats to 3 decimals, pairs/s as whole numbers;
    the bootstrap CI is one "[low, high]" column; columns are renamed with their units
    (``DISPLAY``); missing values (one run: no sd, no CI) show as "–"; a ``seeds`` column
    (``summarize(..., seeds=True)``) shows as ranges, "0-4".
    """
    units = summary.attrs.get("units", "nats")          # stats.in_units sets it
    cols = [c for c in DISPLAY if c in summary]
    view, constant = _take_constant(summary[cols].copy())
    if "mean_train" in view and pd.to_numeric(view["mean_train"], errors="coerce").isna().all():
        # results recorded before it existed, or sample estimators only
        view = view.drop(columns=[c for c in ("mean_train", "train_ci_low", "train_ci_high") if c in view])
    if "mi_true_stderr" in view and not (pd.to_numeric(view["mi_true_stderr"], errors="coerce") > 0).any():
        view = view.drop(columns="mi_true_stderr")      # every truth exact: nothing to say
    out = pd.DataFrame(index=view.index)
    varying = varying_params(summary)
    if varying is not None:                              # which task each row is (e.g. BMI's id)
        out["task parameters"] = varying
    for c in view.columns:
        if c in ("bias_ci_low", "bias_ci_high", "train_ci_low", "train_ci_high"):
            if c.endswith("_low"):
                stem = c[:-len("_low")]
                out[CI_COLUMN if stem == "bias_ci" else TRAIN_CI_COLUMN] = [
                    MISSING if MISSING in (lo, hi) else f"[{lo}, {hi}]"
                    for lo, hi in zip(view[f"{stem}_low"].map(lambda v: _fmt(v, 3)),
                                      view[f"{stem}_high"].map(lambda v: _fmt(v, 3)))]
            continue
        if c in _DIGITS:
            out[DISPLAY[c]] = view[c].map(lambda v, d=_DIGITS[c]: _fmt(v, d))
        elif c == "seeds":
            out[DISPLAY[c]] = view[c].map(seeds_text)
        else:
            out[DISPLAY[c]] = view[c].map(_fmt_plain)
    if units != "nats":
        out = out.rename(columns=lambda c: c.replace("[nats", f"[{units}"))
    return out.reset_index(drop=True), constant


def _numeric_columns(view: pd.DataFrame) -> list[bool]:
    """Right-align the columns that hold numbers (the identity columns K, B, steps too)."""
    words = {"task", "grid", "library", "estimator", "options", "critic", "encoder", "device", "task parameters"}
    return [c not in words for c in view.columns]


def _caption(constant: dict[str, Any]) -> str:
    return ", ".join(f"{k} = {v}" for k, v in constant.items())


def latex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("^2", r"$^2$"), ("–", "--")):
        text = text.replace(a, b)
    return text


def to_markdown(summary: pd.DataFrame) -> str:
    """The display table (``display_table``) as Markdown, with the constant columns in a line above."""
    return markdown_table(*display_table(summary))


def to_latex(summary: pd.DataFrame, caption: str = "") -> str:
    """The display table as a LaTeX ``table`` (booktabs rules), constant columns in the caption."""
    return latex_table(*display_table(summary), caption)


def markdown_table(view: pd.DataFrame, constant: dict[str, Any], note: str = "") -> str:
    align = ["right" if num else "left" for num in _numeric_columns(view)]
    text = view.to_markdown(index=False, disable_numparse=True, colalign=align)
    note = ", ".join(filter(None, [_caption(constant), note]))
    return (f"{note}\n\n" if note else "") + text + "\n"


def latex_table(view: pd.DataFrame, constant: dict[str, Any], caption: str = "") -> str:
    fmt = "".join("r" if num else "l" for num in _numeric_columns(view))
    view = view.rename(columns=lambda c: latex_escape(str(c))).apply(lambda col: col.map(latex_escape))
    text = ", ".join(filter(None, [caption, latex_escape(_caption(constant))]))
    styler = view.style.hide(axis="index")
    return styler.to_latex(hrules=True, caption=text or None, position="htbp", position_float="centering",
                           column_format=fmt, environment="table") + "\n"


def write_csv(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """``frame`` as the CSV file ``path`` (no index), whole or not at all (``atomic.writing``)."""
    with writing(path) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(path)


def write_tables(summary: pd.DataFrame, out_dir: str | os.PathLike, stem: str = "summary",
                 caption: str = "") -> list[Path]:
    """Write ``summary`` as OUT/STEM.csv (every column, full precision, units in the names),
    OUT/STEM.md and OUT/STEM.tex (``display_table``: rounded, constant columns in a caption).
    Returns the three paths."""
    out = make_folder(out_dir)
    units = summary.attrs.get("units", "nats")
    csv_view = summary.rename(columns={c: DISPLAY.get(c, c).replace("[nats", f"[{units}") for c in summary.columns})
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.tex"]
    write_csv(csv_view, paths[0])
    write_text(paths[1], to_markdown(summary))
    write_text(paths[2], to_latex(summary, caption))
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths


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
    view, constant = _take_constant(wide[ident].copy())
    out = pd.DataFrame({DISPLAY[c]: view[c].map(_fmt_plain) for c in view.columns}, index=wide.index)
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
    return _fmt(mi, 3) + (f" ± {se:.4f}" if math.isfinite(se) and se > 0 else "")


def task_display(wide: pd.DataFrame) -> pd.DataFrame:
    """``task_table`` as printed: a row per task (its truth, "± its standard error" where that is
    a Monte Carlo estimate; "bias ± sd" per estimator, the bias alone with
    one seed, "–" where it has no value), then a row with each estimator's seeds per task
    ("3–5" when they differ) and one with its median seconds per run over the tasks."""
    estimators = _estimator_columns(wide)
    truth = f"true MI [{wide.attrs.get('units', 'nats')}]"
    names = varying_params(wide) if len(wide) > 1 else None
    rows = pd.DataFrame({"task": names if names is not None else wide["task_params"].map(_fmt_plain),
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
        seconds[label] = _fmt(pd.to_numeric(wide[f"{label} s"], errors="coerce").median(), "g3")
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


#: The columns ``to_text`` shows by default: a terminal is narrower than a page, so the CI,
#: the MSE and steps/s are left to the written tables.
TEXT_COLUMNS = (*CELL_KEYS, "task_params", "level", "n_runs", "n_failed", "n_dropped", "seeds", "mi_true", "mean", "mean_train",
                "bias", "sd", "within_sd", "pairs_per_s")


def to_text(summary: pd.DataFrame, columns: Sequence[str] = TEXT_COLUMNS) -> str:
    """The display table (``display_table``) of ``columns`` as plain text for a terminal, with
    the constant columns in a caption line above it."""
    if len(summary) == 0:
        return "(no cells)\n"
    view, constant = display_table(summary[[c for c in summary.columns if c in columns]])
    align = ["right" if num else "left" for num in _numeric_columns(view)]
    text = view.to_markdown(index=False, tablefmt="simple", disable_numparse=True, colalign=align)
    note = _caption(constant)
    return (f"{note}\n\n" if note else "") + text + "\n"


def run_table(runs: pd.DataFrame) -> str:
    """What ``mibench run`` prints for the runs it did: their per-cell summary
    (``summarize(runs, seeds=True)``) as ``to_text``, then one line per run whose status is not
    "ok" (left out of the statistics) with its status and the first line of its error."""
    text = to_text(summarize(runs, seeds=True))
    bad = runs[runs["status"] != "ok"] if "status" in runs else runs.iloc[:0]
    if len(bad):
        text += f"\n{len(bad)} run(s) not ok, left out of the statistics:\n"
        for _, r in bad.iterrows():
            cell = ", ".join(f"{DISPLAY.get(k, k)} = {r[k]}" for k in ("bound", "critic", "n_negatives",
                                                                       "batch_size", "device", "seed")
                             if k in r and not _missing(r[k]))
            error = [] if _missing(r.get("error")) else str(r.get("error")).strip().splitlines()
            text += f"  {r.get('run_id', '?')} ({cell}): {r['status']}" + (f": {error[0]}" if error else "") + "\n"
    return text


def _missing(value: Any) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))
