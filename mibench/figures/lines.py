"""Which line of a figure each row is on, so that no figure merges cells the tables keep apart.

A summary row is a cell (``stats.CELL_KEYS`` and the task parameters), and the tables show every
cell as its own row. A figure shows a few of those keys by its encoding: a colour per bound, a
line style per critic, a panel, an axis. ``line_labels`` names, for every row, the other keys
that vary among rows the encoding would otherwise draw as one line ("steps=20" against
"steps=1500"), so that a figure draws one line per (bound, critic, label) and one point per cell,
and its legend names what tells the lines apart. A figure that pools cells on purpose (the
throughput's median over the true MIs of a task family) passes those keys as ``pooled`` and says
so on the figure (``pooled_note``).

- ``with_lines(frame, ...)``: ``frame`` with a ``_line`` column, the label of each row;
  ``keep_lines``: the same for the lines with points at two or more positions.
- ``per_cell(runs, column)``: run rows aggregated per cell (mean, sd, median, count).
- ``pooled_note(frame, by, pooled)``: what a bar or line pools on purpose, for its caption.
- ``ordered_lines`` / ``line_colors``: the (bound, label) lines in display order and their
  colours: the bound's colour, in shades when a bound has several lines (the legend text is
  ``style.line_text``).
"""

from __future__ import annotations

import json
import re
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from ..stats import CELL_DEFAULTS, cell_ids, key_text

#: The cell keys a label may name, in the order they are tried (the broadest first). The task
#: parameters come after them, then a staircase's levels (no cell key, but its truths), then
#: the grid: a sweep's name, which tells cells apart only where two of them would meet.
LABEL_KEYS = ("task", "library", "options", "critic", "encoder", "n_negatives", "batch_size", "steps", "precision",
              "n_samples", "protocol", "device")
#: How a label names a key: K and B as in the tables, a bound's options and a task's name by
#: their value alone.
SHORT = {"n_negatives": "K", "batch_size": "B", "n_samples": "sample size", "options": None, "protocol": None,
         "name": None}
LINE = "_line"


def params_of(value: Any) -> dict:
    """A row's task parameters as a dict: rows hold a dict, summaries a JSON string."""
    if isinstance(value, dict):
        return value
    return json.loads(value) if isinstance(value, str) and value.startswith("{") else {}


def _param_text(value: Any) -> str:
    return key_text(value) if not isinstance(value, (dict, list)) else json.dumps(value, sort_keys=True)


def _candidates(frame: pd.DataFrame, skip: set[str]) -> list[tuple[str, pd.Series, str]]:
    """(name shown, values as text, kind) for every key a label may use; kind: "key" (a cell
    key, or a staircase's levels), "param" (a task parameter) or "name" (the grid)."""
    def text(key: str) -> pd.Series:         # rows written before a key existed hold its default
        values = frame[key] if CELL_DEFAULTS.get(key) is None else frame[key].fillna(CELL_DEFAULTS[key])
        return values.map(key_text)

    out = [(key, text(key), "key") for key in LABEL_KEYS if key in frame and key not in skip]
    if "task_params" in frame and "task_params" not in skip:
        params = frame["task_params"].map(params_of)
        for name in sorted({k for p in params for k in p}):
            out.append((name, params.map(lambda p, n=name: _param_text(p.get(n)) if n in p else ""), "param"))
    out += [(key, text(key), kind) for key, kind in (("staircase", "key"), ("grid", "name"))
            if key in frame and key not in skip]
    return out


def line_labels(frame: pd.DataFrame, *, encoded: Sequence[str] = ("bound", "critic"), along: str | None = None,
                pooled: Iterable[str] = ()) -> pd.Series:
    """A label per row of ``frame`` (summary or run rows) naming the cell keys that tell its line
    apart from others of the same ``encoded`` values (the columns the figure shows by colour,
    line style, panel or axis): "" where nothing does, else e.g. "steps=20" or "task=tiny, K=8".

    ``along``: the column a figure spreads a line's points along (e.g. "mi_true", or
    "n_negatives"), never a label. Keys are tried in ``LABEL_KEYS`` order, then the task
    parameters, then the grid, each added when it still varies among rows that share the
    encoded values and the keys chosen so far, so that every line (encoded values and label)
    holds one value of every key not ``pooled`` (a column name, or "task_params" for all the
    task parameters) -- with two exceptions that keep a line's points together: a task
    parameter is a line key only if one of its values spans two or more positions along the
    line (the dim of two Gaussians swept over MI; not BMI's tasks, each at its own truth), and
    the grid only where two grids would put a cell at one position."""
    if len(frame) == 0:
        return pd.Series([], index=frame.index, dtype=object)
    skip = set(encoded) | set(pooled) | {"bound", along}
    groups = [frame[c].map(key_text).to_numpy() if c in frame else np.full(len(frame), "") for c in encoded]
    chosen: list[tuple[str, pd.Series]] = []
    positions = frame[along].map(key_text).to_numpy() if along is not None and along in frame else None
    for name, values, kind in _candidates(frame, skip):
        keys = pd.DataFrame({f"g{i}": g for i, g in enumerate([*groups, *(v.to_numpy() for _, v in chosen)])})
        if kind == "name" and positions is not None:           # the grid: only where cells would meet
            keys["_at"] = positions
        keys["_v"] = values.to_numpy()
        if keys.shape[1] == 1:
            varies = keys["_v"].nunique() > 1
        else:
            varies = bool((keys.groupby(list(keys.columns[:-1]), dropna=False)["_v"].nunique() > 1).any())
        if varies and kind == "param" and positions is not None:
            keys["_at"] = positions
            varies = bool((keys.groupby([*keys.columns[:-2], "_v"], dropna=False)["_at"].nunique() > 1).any())
        if varies:
            chosen.append((name, values))
    if not chosen:
        return pd.Series("", index=frame.index, dtype=object)
    parts = [values.map(lambda v, n=name: v if SHORT.get(n, n) is None else f"{SHORT.get(n, n)}={v}")
             for name, values in chosen]
    text = [", ".join(p for p in row if p) for row in zip(*parts)]
    return pd.Series(text, index=frame.index, dtype=object)


def with_lines(frame: pd.DataFrame, **kwargs) -> pd.DataFrame:
    """A copy of ``frame`` with its ``line_labels`` (same keyword arguments) in ``_line``."""
    return frame.assign(**{LINE: line_labels(frame, **kwargs)})


def keep_lines(frame: pd.DataFrame, along: str, at_least: int = 2, **kwargs) -> pd.DataFrame:
    """The rows of the lines (bound, critic, label) with values at ``at_least`` positions along
    ``along``, labelled anew (``with_lines``) from the rows kept: a key that told a dropped line
    apart no longer labels the others."""
    frame = with_lines(frame, along=along, **kwargs)
    encoded = [c for c in kwargs.get("encoded", ("bound", "critic")) if c in frame]
    n = frame.groupby([*encoded, LINE], dropna=False)[along].transform("nunique")
    return with_lines(frame[n >= at_least], along=along, **kwargs)


def pooled_note(frame: pd.DataFrame, by: Sequence[str], pooled: Sequence[str]) -> str:
    """What the groups of ``frame`` by ``by`` (the columns that make one bar or line) pool
    besides seeds, of the ``pooled`` keys (cell keys, or "task_params"): "" when each group is
    one cell, else e.g. "grids, tasks (transform)" (with the task parameters that vary)."""
    if len(frame) == 0:
        return ""
    keys = frame[list(by)].astype(str).agg("\x1f".join, axis=1).to_numpy()
    if not (cell_ids(frame).map("\x1f".join).groupby(keys).nunique() > 1).any():
        return ""
    parts = []
    for key in pooled:
        if key == "task_params" and key in frame:
            params = frame["task_params"].map(params_of)
            names = [n for n in sorted({k for p in params for k in p})
                     if (params.map(lambda p, n=n: _param_text(p.get(n))).groupby(keys).nunique() > 1).any()]
            if names:
                parts.append(f"tasks ({', '.join(names)})")
        elif key in frame and (frame[key].map(key_text).groupby(keys).nunique() > 1).any():
            parts.append(f"{key}s")
    return ", ".join(parts) or "cells"


def per_cell(runs: pd.DataFrame, column: str, stats: Sequence[str] = ("mean", "std")) -> pd.DataFrame:
    """One row per cell of ``runs`` (its first run's columns, in first-seen order) with the
    ``stats`` of ``column`` over the cell's runs as columns of those names ("mean", "std",
    "median", "count"): a point per cell, as the tables have it."""
    if len(runs) == 0:
        return runs.assign(**{s: pd.Series(dtype=float) for s in stats})
    ids = cell_ids(runs).map("\x1f".join)
    agg = pd.to_numeric(runs[column], errors="coerce").groupby(ids.to_numpy(), sort=False).agg(list(stats))
    first = runs.loc[~ids.duplicated()].copy()
    values = agg.loc[ids[~ids.duplicated()].to_numpy()]
    for s in stats:
        first[s] = values[s].to_numpy()
    return first


def natural(text: str) -> tuple:
    """Sort key reading the numbers in a label as numbers: "steps=20" before "steps=1500"."""
    return tuple((0, float(p), "") if re.fullmatch(r"-?\d+(\.\d+)?", p) else (1, 0.0, p)
                 for p in re.split(r"(-?\d+(?:\.\d+)?)", str(text)) if p)


def ordered_lines(frame: pd.DataFrame, order: Sequence[str]) -> list[tuple[str, str]]:
    """The (bound, label) lines of ``frame`` (with ``_line``), bounds in ``order``, labels in
    natural order within a bound."""
    labels = frame[LINE] if LINE in frame else pd.Series("", index=frame.index)
    pairs = set(zip(frame["bound"], labels))
    return sorted(pairs, key=lambda bl: (order.index(bl[0]) if bl[0] in order else len(order), natural(bl[1])))


def shade(color: Any, amount: float) -> tuple[float, float, float]:
    """``color`` mixed with white (amount > 0) or black (amount < 0), |amount| <= 1."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(color))
    mixed = rgb + (1 - rgb) * amount if amount > 0 else rgb * (1 + amount)
    return tuple(float(v) for v in mixed)


def line_colors(lines: Iterable[tuple[str, str]], base: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """A colour per (bound, label) line: the bound's colour (``base``) when it has one line,
    else shades of it from darker to lighter in the order given."""
    by_bound: dict[str, list[str]] = {}
    for bound, label in lines:
        by_bound.setdefault(bound, []).append(label)
    out = {}
    for bound, labels in by_bound.items():
        n = len(labels)
        for i, label in enumerate(labels):
            out[(bound, label)] = base[bound] if n == 1 else shade(base[bound], -0.35 + 0.85 * i / (n - 1))
    return out
