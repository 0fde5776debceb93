"""The critical-difference diagram (Demšar 2006, Sec. 3.2.4, Figs. 1-2) of a ``RankResult``:
mean ranks on an axis, with thick bars joining groups of estimators that are not significantly
different (``mibench.ranking`` computes them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text

from ..ranking import LABEL_SEP, RankResult

WIDTH = 3.4          # inches: one column of a two-column paper

# Layout in inches, y downwards from the top of the axes.

_FONT = 6.5          # points: labels and ticks
_MIN_FONT = 5.0      # labels are shrunk down to this size, then wrapped at " / "
_CD_BAR = 0.22       # the CD bar, its label above it
_AXIS = 0.48         # the rank axis, tick labels above it
_CLIQUE_ROW = 0.075  # spacing of the rows of clique bars below the axis
_STUB = 0.15         # how far label lines reach past the ends of the axis
_PAD = 0.05          # between a label line's end and its text
_BOTTOM = 0.06
_MAX_MARGIN = 0.34   # of the width: the most each side's labels may take
_SLACK = 1.15        # measured label widths are scaled by this


def _clique_rows(spans: list[tuple[float, float]], gap: float) -> list[int]:
    """A row index for each (start, end) bar, sorted by start: the first row whose last bar ends
    more than ``gap`` before this one starts."""
    row_ends: list[float] = []
    rows = []
    for start, end in spans:
        for i, row_end in enumerate(row_ends):
            if start - row_end > gap:
                row_ends[i] = end
                rows.append(i)
                break
        else:
            row_ends.append(end)
            rows.append(len(row_ends) - 1)
    return rows


def _fit_labels(labels: list[Text], renderer: Any, dpi: float, room: float) -> float:
    """Shrink the labels (not below ``_MIN_FONT``), then wrap them at " / ", until the widest is
    at most ``room`` inches where possible; returns the widest label's width in inches."""
    def widest() -> float:     # with slack: hinting makes text a little wider at some resolutions
        return _SLACK * max(t.get_window_extent(renderer).width for t in labels) / dpi

    width = widest()
    if width > room and _FONT * room / width < _MIN_FONT:
        for t in labels:
            t.set_text(t.get_text().replace(LABEL_SEP, "\n"))
        width = widest()
    if width > room:
        size = max(_MIN_FONT, _FONT * room / width)
        for t in labels:
            t.set_fontsize(size)
        width = widest()
    return width


def fig_cd_diagram(result: RankResult, *, ax: Axes | None = None) -> Figure:
    """The critical-difference diagram of ``result`` (Demšar 2006, Sec. 3.2.4, Figs. 1-2).

    A horizontal axis of mean ranks from 1 (best, on the left) to k; each estimator is marked
    at its mean rank, with a line out to its name: the better half on the left, the worse half
    on the right. Thick bars under the axis join the estimators of each clique
    (``result.cliques()``: not significantly different by the Nemenyi test), and a bar of length
    CD above the axis, from rank 1, shows the critical difference (drawn no longer than the
    axis when CD exceeds k − 1; its label gives the value). Long names are set smaller, then
    broken at " / ".

    Returns a new one-column Figure (3.4 in wide, taller with k) rendered with Agg, or ``ax``'s
    figure when an Axes is given (the diagram is then stretched to fit that Axes).
    """
    names = [str(n) for n in result.table["estimator"]]
    mean_ranks = result.table["mean_rank"].to_numpy(dtype=float)
    k = len(names)
    n_left = math.ceil(k / 2)
    cliques = result.cliques()
    position = {name: i for i, name in enumerate(names)}
    spans = [(mean_ranks[position[g[0]]], mean_ranks[position[g[-1]]]) for g in cliques]
    rows = _clique_rows(spans, gap=0.1)
    n_rows = max(rows) + 1 if rows else 0

    own = ax is None
    if ax is None:
        fig = Figure(figsize=(WIDTH, 2.0))          # the height is set once the labels are laid out
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0, 0, 1, 1))
        width = WIDTH
    else:
        fig = ax.figure
        if not hasattr(fig.canvas, "get_renderer"):
            FigureCanvasAgg(fig)
        width = ax.get_position().width * fig.get_figwidth()
    ax.set_axis_off()

    labels = [ax.text(0, 0, n, fontsize=_FONT, va="center", ha="right" if i < n_left else "left",
                      linespacing=1.0)
              for i, n in enumerate(names)]
    widest = _fit_labels(labels, fig.canvas.get_renderer(), fig.dpi, _MAX_MARGIN * width - _STUB - _PAD)
    margin = max(widest + _STUB + _PAD, 0.125 * width)
    x0, x1 = margin, width - margin
    lines = max(t.get_text().count("\n") + 1 for t in labels)
    row_height = max(0.15, lines * labels[0].get_fontsize() / 72 * 1.15 + 0.05)
    rows_top = _AXIS + 0.08 + n_rows * _CLIQUE_ROW + 0.04 + row_height / 2
    height = rows_top + (n_left - 1) * row_height + row_height / 2 + _BOTTOM
    if own:
        fig.set_figheight(height)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)

    def x(rank: float) -> float:
        return x0 + (rank - 1) / (k - 1) * (x1 - x0)

    line = {"color": "black", "linewidth": 0.7, "solid_capstyle": "butt"}
    # the rank axis: ticks at integers (labelled above) and halves
    ax.plot([x0, x1], [_AXIS, _AXIS], **line)
    for r in np.arange(1, k + 0.25, 0.5):
        whole = float(r).is_integer()
        ax.plot([x(r), x(r)], [_AXIS, _AXIS - (0.06 if whole else 0.03)], **line)
        if whole:
            ax.text(x(r), _AXIS - 0.08, f"{int(r)}", fontsize=_FONT, ha="center", va="bottom")

    # the critical difference, from rank 1 rightwards
    cd_end = x(1 + min(result.cd, k - 1))
    ax.plot([x0, cd_end], [_CD_BAR, _CD_BAR], **{**line, "linewidth": 1.0})
    for end in (x0, cd_end):
        ax.plot([end, end], [_CD_BAR - 0.03, _CD_BAR + 0.03], **line)
    ax.text((x0 + cd_end) / 2, _CD_BAR - 0.05, f"CD = {result.cd:.2f}", fontsize=_FONT, ha="center",
            va="bottom")

    # each estimator: a mark on the axis, a line down to its row, then out to its name
    for i, (label, rank) in enumerate(zip(labels, mean_ranks)):
        if i < n_left:                      # best at the top, so that no lines cross
            y, end = rows_top + i * row_height, x0 - _STUB
            label.set_position((end - _PAD, y))
        else:                               # worst at the top
            y, end = rows_top + (k - 1 - i) * row_height, x1 + _STUB
            label.set_position((end + _PAD, y))
        ax.plot([x(rank), x(rank), end], [_AXIS, y, y], **line)
        ax.plot([x(rank)], [_AXIS], marker="o", markersize=2.5, color="black", zorder=3)

    # the cliques: thick bars just below the axis, a little longer than the ranks they join
    for (start, stop), row in zip(spans, rows):
        y = _AXIS + 0.08 + row * _CLIQUE_ROW
        ax.plot([x(start) - 0.04, x(stop) + 0.04], [y, y], color="black", linewidth=2.2,
                solid_capstyle="butt", zorder=4)
    return fig
