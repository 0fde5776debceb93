"""BMI's conventions for a folder whose cells span tasks (BMI's suites): the table of its v2
benchmark (Czyż et al., TMLR 2025; benchmark-mi's Mixtures workflow) and the numbers behind the
heatmap of its NeurIPS 2023 paper (the Beyond_Normal workflow), from summary rows.

- ``bmi_sd(sd)``: an sd as BMI's v2 table prints it: rounded up to 2 decimals, at least 0.01.
- ``bmi_text(mean, sd)``: one cell as that table prints it, "0.52 ± 0.03".
- ``spans_tasks(cells)``: whether the cells are tasks that differ in more than their MI.
- ``log_ratios(runs, summary, fail_filter)``: per summary row, the mean over its runs of
  log(estimate / truth), the heatmap's colour.
- ``task_order(cells)``: the tasks in the order their preset lists them.
- ``bmi_table(cells, labels, ratios)``: a row per task, per estimator its mean, sd, runs used,
  runs dropped by the fail filter and mean log ratio; ``bmi_display`` as printed;
  ``write_bmi_table``: OUT/bmi_table.{csv,md,tex}. ``figures.fig_heatmap`` draws the same frame.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import make_folder, write_text
from .interface import ConfigError
from .stats import bmi_fails, cell_ids
from .tables import MISSING, latex_table, latex_escape, markdown_table, varying_params, write_csv

log = logging.getLogger(__name__)

#: The columns ``bmi_table`` holds per estimator LABEL, as "LABEL <suffix>".
SUFFIXES = ("mean", "sd", "runs", "dropped", "log ratio")
BMI_NOTE = ("each cell: the mean estimate over seeds ± its sd over seeds (ddof 1), as BMI's v2 table prints "
            "it: the mean to 2 decimals, the sd rounded up to 2 decimals and at least 0.01; "
            f"{MISSING}: no usable run")


def bmi_sd(sd: float) -> float:
    """An sd as BMI's v2 table prints it: rounded up to 2 decimals, and at least 0.01 (NaN stays
    NaN). Computed as BMI computes it, ceil(100 · sd) / 100 in floating point, so that every
    value prints as in BMI's table: 0.001 -> 0.01, 0.011 -> 0.02, 0.02 -> 0.02, and 0.07 ->
    0.08 (100 × 0.07 is 7.000000000000001 in binary floating point)."""
    sd = float(sd)
    if not math.isfinite(sd):
        return math.nan
    return max(math.ceil(100 * sd) / 100, 0.01)


def bmi_text(mean: float, sd: float) -> str:
    """A cell as BMI's v2 table prints it: "0.52 ± 0.03" (``bmi_sd``); the mean alone without
    an sd (one seed), "–" without a mean."""
    if not math.isfinite(float(mean)):
        return MISSING
    if not math.isfinite(float(sd)):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {bmi_sd(sd):.2f}"


def task_params_dict(value: Any) -> dict:
    """A row's task parameters as a dict (rows hold a dict, summaries JSON text; {} otherwise)."""
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if isinstance(value, str) and value[:1] == "{" else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def spans_tasks(cells: pd.DataFrame) -> bool:
    """Whether ``cells`` (summary rows) are two or more tasks that differ in more than their
    MI (BMI's task ids, not one Gaussian at several MI levels)."""
    if len(cells) < 2 or "task_params" not in cells:
        return False
    params = [task_params_dict(p) for p in cells["task_params"]]
    keys = {k for p in params for k in p} - {"mi"}
    return any(len({json.dumps(p.get(k), sort_keys=True, default=str) for p in params}) > 1 for k in keys)


def log_ratios(runs: pd.DataFrame, summary: pd.DataFrame, fail_filter: str = "none") -> pd.Series:
    """Per row of ``summary`` (``stats.summarize(runs, fail_filter=...)``), the mean of
    log(estimate / truth) over the runs its statistics use (ok, not dropped by the fail
    filter, a finite estimate): the colour of BMI's heatmap, which averages the log ratios of
    the seeds, not the log of their mean. A run whose estimate is 0 or below counts as −inf (so
    its cell is drawn at the bottom of the scale; BMI's own estimators never give one after its
    fail filter); a truth of 0 or below gives NaN. Aligned with ``summary``'s index."""
    if len(summary) == 0 or len(runs) == 0:
        return pd.Series(np.nan, index=summary.index, dtype=float)
    est = pd.to_numeric(runs["mi_estimate"], errors="coerce").to_numpy(dtype=float)
    truth = pd.to_numeric(runs["mi_true"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(all="ignore"):
        ratio = np.where(est > 0, np.log(est / truth), -np.inf)
    ratio[~(truth > 0)] = np.nan
    used = (runs["status"] == "ok").to_numpy() & np.isfinite(est)
    if fail_filter == "bmi":
        used &= ~bmi_fails(runs).to_numpy()
    ids = cell_ids(runs)[used]
    means = pd.Series(ratio[used], index=ids.index).groupby(ids.map("\x1f".join)).mean()
    return cell_ids(summary).map("\x1f".join).map(means).astype(float)


def task_name(cells: pd.DataFrame) -> pd.Series:
    """A task id per row: BMI's name (task_params["name"]) where there is one, else the task
    parameters that vary between rows."""
    names = cells["task_params"].map(lambda p: task_params_dict(p).get("name"))
    if names.notna().all():
        return names.astype(str)
    varying = varying_params(cells)
    return varying if varying is not None else cells["task_params"].astype(str)


def task_order(cells: pd.DataFrame) -> list[str]:
    """The task_params of ``cells`` in the order of their preset (the task names as its grids
    list them, first grid first; a preset of this installation's tasks/, by the name the rows
    record); tasks the preset does not name, or whose preset is not one of those, come after
    them in order of truth."""
    from .presets import known_presets, load_preset

    known = known_presets()
    listed: list[str] = []
    for preset in dict.fromkeys(cells["task"]) if "task" in cells else ():
        if not isinstance(preset, str) or preset not in known:
            continue
        try:
            grids = load_preset(str(known[preset])).grids
        except ConfigError:
            continue
        for grid in grids:
            task = grid.get("task")
            names = task.get("name", []) if isinstance(task, dict) else []
            listed += [str(n) for n in ([names] if isinstance(names, str) else names)]
    position = {name: i for i, name in enumerate(dict.fromkeys(listed))}
    tasks = pd.DataFrame({"task_params": cells["task_params"].to_numpy(), "name": task_name(cells).to_numpy(),
                          "mi_true": pd.to_numeric(cells["mi_true"], errors="coerce").to_numpy()})
    tasks = tasks.drop_duplicates("task_params")
    tasks["_at"] = tasks["name"].map(lambda n: position.get(n, len(position)))
    return list(tasks.sort_values(["_at", "mi_true"], kind="stable")["task_params"])


def bmi_table(cells: pd.DataFrame, labels: pd.Series, ratios: pd.Series) -> pd.DataFrame:
    """Cells of several tasks made wide, BMI's way: a row per task (``task`` its id,
    ``task_params``, ``mi_true``; in the order of the preset, ``task_order``), and per estimator
    label (``labels``: one per row of ``cells``, unique within a task; in case-blind
    alphabetical order, as ``wide_tables.task_table``) the columns "LABEL mean" (mean estimate over
    the runs used), "LABEL sd" (their sd, ddof 1), "LABEL runs" (runs used: ok, less those the
    fail filter dropped), "LABEL dropped" (those; 0 without a filter) and "LABEL log ratio"
    (``ratios``, the mean log(estimate / truth): the heatmap's colour). A label with no cell on
    a task has NaN there, "runs" included. ``attrs``: units (the frame's), fail_filter, and
    estimators (the labels in column order)."""
    dropped = cells["n_dropped"] if "n_dropped" in cells else pd.Series(0, index=cells.index)
    frame = cells.assign(_label=labels.values, _runs=cells["n_runs"] - cells["n_failed"] - dropped,
                         _dropped=dropped, _ratio=ratios.reindex(cells.index).values)
    order = task_order(cells)
    first = frame.drop_duplicates("task_params").set_index("task_params").loc[order]
    wide = pd.DataFrame({"task": task_name(first.reset_index()).to_numpy(), "task_params": order,
                         "mi_true": first["mi_true"].to_numpy()})
    estimators = sorted(frame["_label"].unique(), key=lambda s: (s.lower(), s))
    for label in estimators:
        mine = frame[frame["_label"] == label].set_index("task_params")
        for suffix, column in zip(SUFFIXES, ("mean", "sd", "_runs", "_dropped", "_ratio")):
            wide[f"{label} {suffix}"] = wide["task_params"].map(mine[column]).to_numpy(dtype=float)
    wide.attrs.update(units=cells.attrs.get("units", "nats"), fail_filter=cells.attrs.get("fail_filter", "none"),
                      estimators=estimators)
    return wide


def bmi_display(wide: pd.DataFrame) -> pd.DataFrame:
    """``bmi_table`` as printed: a row per task (its id and its truth to 2 decimals), per
    estimator "mean ± sd" (``bmi_text``), with "(k dropped)" after it where the fail filter
    dropped runs of the cell; "–" where the cell has no usable run, empty where the estimator
    has no cell on that task."""
    truth = f"true MI [{wide.attrs.get('units', 'nats')}]"
    out = pd.DataFrame({"task": wide["task"], truth: wide["mi_true"].map(lambda v: f"{v:.2f}")})
    for label in wide.attrs["estimators"]:
        texts = []
        for mean, sd, runs, dropped in wide[[f"{label} {s}" for s in SUFFIXES[:4]]].itertuples(index=False):
            if not math.isfinite(runs):
                texts.append("")
                continue
            text = bmi_text(mean, sd) if runs > 0 else MISSING
            texts.append(text + (f" ({int(dropped)} dropped)" if dropped > 0 else ""))
        out[label] = texts
    return out


def write_bmi_table(wide: pd.DataFrame, out_dir: str | os.PathLike, stem: str = "bmi_table") -> list[Path]:
    """OUT/STEM.csv (``bmi_table``: every number at full precision, units in the names),
    OUT/STEM.md and OUT/STEM.tex (``bmi_display``; the caption names the units, BMI's rounding
    and the fail filter). Returns the three paths."""
    out = make_folder(out_dir)
    units = wide.attrs["units"]
    in_units = {"mean", "sd"}
    names = {"task_params": "task parameters", "mi_true": f"true MI [{units}]"}
    for label in wide.attrs["estimators"]:
        for suffix in SUFFIXES:
            name = f"{label} {suffix}"
            names[name] = (f"{name} [{units}]" if suffix in in_units else
                           f"{label} log(estimate / truth)" if suffix == "log ratio" else name)
    paths = [out / f"{stem}.csv", out / f"{stem}.md", out / f"{stem}.tex"]
    counts = [f"{label} {suffix}" for label in wide.attrs["estimators"] for suffix in ("runs", "dropped")]
    write_csv(wide.astype({c: "Int64" for c in counts}).rename(columns=names), paths[0])
    note = f"estimates in {units}; {BMI_NOTE}"
    if wide.attrs.get("fail_filter") == "bmi":
        note += ("; BMI's fail filter: runs of neural estimators below 0 or below 0.1 × the best run of "
                 "their cell left out, \"(k dropped)\"")
    view = bmi_display(wide)
    write_text(paths[1], markdown_table(view, {}, note))
    write_text(paths[2], latex_table(view, {}, latex_escape(note)))
    log.info("wrote %s", ", ".join(str(p) for p in paths))
    return paths
