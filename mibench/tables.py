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


def fmt_number(value: Any, digits: int | str) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return MISSING
    if not math.isfinite(v):
        return MISSING
    if digits == "g3":                          # seconds: three significant digits
        return f"{v:.3g}"
    return f"{v:,.0f}" if digits == 0 else f"{v:.{digits}f}"


def fmt_plain(value: Any) -> str:
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


def take_constant(view: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
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
    view, constant = take_constant(summary[cols].copy())
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
                    for lo, hi in zip(view[f"{stem}_low"].map(lambda v: fmt_number(v, 3)),
                                      view[f"{stem}_high"].map(lambda v: fmt_number(v, 3)))]
            continue
        if c in _DIGITS:
            out[DISPLAY[c]] = view[c].map(lambda v, d=_DIGITS[c]: fmt_number(v, d))
        elif c == "seeds":
            out[DISPLAY[c]] = view[c].map(seeds_text)
        else:
            out[DISPLAY[c]] = view[c].map(fmt_plain)
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
