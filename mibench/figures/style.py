"""The figures' shared look: one-column size and rc style, a colour per bound, a line style
and marker per critic, the reference lines (truth, ln(K + 1)), legends, saving.

Every figure is a ``matplotlib.figure.Figure`` (``new_figure``, no pyplot state), built under
``STYLE`` (``styled``) and written by ``save_figure`` as PNG and PDF. Bounds are shown by
their registered label (``mibench.bounds.BOUNDS[name].label``) in registry order.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import matplotlib as mpl
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from ..atomic import make_folder, writing
from ..bounds import BOUNDS
from .lines import line_colors, ordered_lines

WIDTH = 3.4          # inches: one column of a two-column paper
DPI = 200
FORMATS = ("png", "pdf")
STYLE = {
    "font.size": 7.5, "axes.labelsize": 7.5, "axes.titlesize": 7.5, "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5, "legend.fontsize": 6.5, "legend.title_fontsize": 6.5,
    "legend.frameon": False, "legend.handlelength": 2.4, "lines.linewidth": 1.1,
    "lines.markersize": 3.5, "axes.linewidth": 0.6, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.linewidth": 0.4, "grid.alpha": 0.5,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "pdf.fonttype": 42, "ps.fonttype": 42,
    "savefig.dpi": DPI,
}

CRITIC_STYLES = {"separable": ("-", "o"), "joint": ("-.", "s"), "bilinear": ((0, (4, 1, 1, 1, 1, 1)), "^"),
                 "conditional_gaussian": ((0, (1, 1)), "D")}
TRUTH = {"color": "black", "linestyle": "--", "linewidth": 1.0, "zorder": 4}     # drawn over the estimates
LOG_K = {"color": "0.4", "linestyle": ":", "linewidth": 1.3, "zorder": 4}
TRUTH_LABEL = "true MI"
LOGK_LABEL = "ln(K+1)"
TEST_LABEL = "held-out estimate"


def bound_label(name: str) -> str:
    """How figures show a bound or sample estimator: its registered label ("α-InfoNCE", "KSG");
    an unregistered name as itself."""
    from ..sample import SAMPLE_ESTIMATORS

    if name in BOUNDS:
        return BOUNDS[name].label
    return SAMPLE_ESTIMATORS[name].label if name in SAMPLE_ESTIMATORS else str(name)


def bound_colors(names: Iterable[str]) -> dict[str, Any]:
    """One colour per bound, the same in every figure (colour-blind-safe palette, fixed order)."""
    cb = sns.color_palette("colorblind", 10)
    # the five common bounds get five well-separated hues; grey (cb[7]) is left to ln(K+1)
    fixed = {"infonce": cb[0], "smile": cb[3], "nwj": cb[2], "js": cb[4], "mine": cb[5], "dv": cb[1],
             "tuba": cb[9], "alpha_infonce": cb[6], "flo": cb[8]}
    # the others, in registry order (ba, club, l1out, doe, plugins), then unregistered names
    rest = [b for b in list(BOUNDS) + sorted(set(names) - set(BOUNDS)) if b not in fixed]
    dark = sns.color_palette("dark", 10)
    return {**fixed, **{name: dark[i % 10] for i, name in enumerate(rest)}}


def critic_style(name: str) -> tuple[Any, str]:
    """(line style, marker) of a critic."""
    return CRITIC_STYLES.get(name, ("--", "v"))


def bound_order(names: Iterable[str]) -> list[str]:
    """Bound names in display order: the registry's (``list(BOUNDS)``), unregistered ones last."""
    order = list(BOUNDS)
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), str(n)))


def new_figure(height: float, nrows: int = 1, ncols: int = 1, sharex: bool = True, **kw):
    """A constrained-layout Figure (no pyplot) and its axes as a flat list."""
    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    FigureCanvasAgg(fig)          # render with Agg whatever pyplot's backend is
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False, **kw)
    return fig, list(axes.ravel())


def styled(fn):
    """Build the figure under STYLE (rc values are read when artists are created)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def line_text(line: str | tuple[str, str]) -> str:
    """A line's legend text: the bound's label, then what tells it apart ("InfoNCE, steps=20")."""
    bound, label = line if isinstance(line, tuple) else (line, "")
    return bound_label(bound) + (f", {label}" if label else "")


def _line_colors(lines: Sequence[str | tuple[str, str]]) -> dict[tuple[str, str], Any]:
    """A colour per line (a bound, or a (bound, label) pair): the bound's colour, in shades
    when a bound has several lines (``lines.line_colors``)."""
    pairs = [b if isinstance(b, tuple) else (b, "") for b in lines]
    return line_colors(pairs, bound_colors([b for b, _ in pairs]))


def add_legend(fig, bounds: Sequence[str | tuple[str, str]], critics: Sequence[str], *,
            extra: Sequence[tuple[Any, str]] = (), ncol: int | None = None) -> None:
    """A figure legend above the axes: one entry per line (colour: a bound, or a (bound, label)
    line named "InfoNCE, steps=20"), per critic (line style, when there is more than one) and
    the reference lines/markers in ``extra``."""
    colors = _line_colors(bounds)
    entries = [(Line2D([], [], color=colors[b if isinstance(b, tuple) else (b, "")], lw=1.6), line_text(b))
               for b in bounds]
    others = []
    if len(critics) > 1:
        for c in critics:
            ls, marker = critic_style(c)
            label = "sample estimator" if c == "none" else f"{c} critic"      # no critic: KSG, CCA, ...
            others.append((Line2D([], [], color="0.3", ls=ls, marker=marker, lw=1.1), label))
    others += list(extra)
    ncol = ncol or min(4, len(entries) + len(others))
    renderer = fig.canvas.get_renderer()
    for n in range(ncol, 0, -1):        # as many columns as fit in the figure's width
        legend = fig.legend(*_by_rows(entries, others, n), loc="outside upper center", ncol=n,
                            columnspacing=1.0, handletextpad=0.5)
        if n == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            return
        legend.remove()


def _by_rows(entries: list, others: list, ncol: int) -> tuple[list, list]:
    """Handles and labels ordered so that a legend of ``ncol`` columns (which matplotlib fills
    column by column) reads by rows: the bounds first, the reference entries after them."""
    blank = (Line2D([], [], alpha=0), "")
    entries = list(entries)
    pad = -len(entries) % ncol
    if 0 < pad <= ncol // 2:            # start the reference entries on a row of their own
        entries += [blank] * pad
    entries += others
    entries += [blank] * (-len(entries) % ncol)
    rows = len(entries) // ncol
    entries = [entries[r * ncol + c] for c in range(ncol) for r in range(rows)]
    handles, labels = zip(*entries)
    return list(handles), list(labels)


def _critic_styles(critics: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """Line style and marker per critic; all solid with round markers when there is only one."""
    if len(critics) == 1:
        return {critics[0]: ("-", "o")}
    return {c: critic_style(c) for c in critics}


def encodings(frame: pd.DataFrame):
    """The lines of ``frame`` ((bound, label) pairs, bounds in display order: ``ordered_lines``
    over its ``_line`` labels, "" when it has none), its critics, a colour per line and a
    (line style, marker) per critic: the encoding every bound-by-critic figure shares."""
    lines = ordered_lines(frame, bound_order(frame["bound"]))
    critics = sorted(set(frame["critic"]))
    return lines, critics, _line_colors(lines), _critic_styles(critics)


def truth_marker():
    return Line2D([], [], **TRUTH), TRUTH_LABEL


def logk_handle():
    return Line2D([], [], **LOG_K), LOGK_LABEL


def test_marker():
    return Line2D([], [], ls="none", marker="o", color="0.6", markeredgecolor="black",
                  markeredgewidth=0.6, markersize=4.5), TEST_LABEL


def compact(value: float, _pos=None) -> str:
    """1500 -> "1.5k", 2e6 -> "2M": tick labels for a log throughput axis."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def smooth_series(values: pd.Series, window: int) -> pd.Series:
    return values.rolling(window, center=True, min_periods=1).mean() if window > 1 else values


def auto_window(n_points: int, per: int = 25) -> int:
    return max(1, int(round(n_points / per)))


def fit_ylim(ax, values: np.ndarray, truths: Iterable[float]) -> None:
    """y limits that show the truths and the estimates, but no lower than -(top / 2 + 0.5)
    and no higher than 1.6 top + 1 (top = the largest truth): a diverging estimator (NWJ,
    MINE at high MI) runs off the edge rather than flattening every other line."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    t = [x for x in truths if np.isfinite(x)]
    top = max(t) if t else (float(np.max(v)) if v.size else 1.0)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, top)
    lo = max(min(lo, 0.0), -0.5 * top - 0.5)
    hi = min(max(hi, top), 1.6 * top + 1.0)
    span = hi - lo
    ax.set_ylim(lo - 0.06 * span, hi + 0.08 * span)


def finished_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"] if "status" in runs else runs


def fmt_mi(v: float) -> str:
    return f"{v:.2f}" if abs(v - round(v)) > 1e-6 else f"{v:.0f}"


def save_figure(fig, out_dir: str | os.PathLike, name: str, formats: Sequence[str] | None = None) -> list[Path]:
    """Write ``fig`` as OUT/NAME.png (``DPI`` dots per inch) and OUT/NAME.pdf (TrueType fonts
    embedded), or in the ``formats`` given (default: this module's ``FORMATS``); returns the
    paths. A PDF carries no creation date, so the same figure rebuilt is the same file (and the
    committed figures change only when their data or drawing does). Each file is written whole
    or not at all (``atomic.writing``: a full disk leaves no truncated file); a failed write is
    a ConfigError naming the file and the cause."""
    out = make_folder(out_dir)
    paths = [out / f"{name}.{ext}" for ext in (FORMATS if formats is None else formats)]
    with mpl.rc_context(STYLE):
        for p in paths:
            with writing(p) as tmp:
                fig.savefig(tmp, format=p.suffix[1:], dpi=DPI,
                            metadata={"CreationDate": None} if p.suffix == ".pdf" else None)
    return paths


def slug(value: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(value)) or "all"

