"""Rank estimators across tasks: mean ranks, the Friedman test and the Nemenyi critical difference.

Follows Demšar (2006), "Statistical comparisons of classifiers over multiple data sets", JMLR 7:

- on every task the k estimators are ranked by a score where lower is better (1 = best, ties
  share the average of the ranks they span), and each estimator's ranks are averaged over the
  N tasks (R_j);
- Friedman's statistic χ²_F = 12N / (k(k+1)) · [Σ_j R_j² − k(k+1)²/4], with k − 1 degrees of
  freedom, and Iman and Davenport's F_F = (N − 1) χ²_F / (N(k − 1) − χ²_F), F-distributed with
  (k − 1) and (k − 1)(N − 1) degrees of freedom (Demšar, Sec. 3.2.2);
- the Nemenyi post-hoc test: two estimators differ significantly when their mean ranks differ
  by at least CD = q_α · sqrt(k(k+1) / (6N)), where q_α is the studentized range quantile for k
  groups and infinite degrees of freedom divided by sqrt(2) (Demšar, Sec. 3.2.2, Table 5a);
- the critical-difference diagram (Demšar, Sec. 3.2.4, Figs. 1-2): mean ranks on an axis, with
  thick bars joining groups of estimators that are not significantly different.

``rank_table(summary)`` computes all of it from one row per (estimator, task) cell;
``fig_cd_diagram(result)`` draws the diagram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from scipy import stats

ALPHA = 0.05
WIDTH = 3.4          # inches: one column of a two-column paper
LABEL_SEP = " / "    # joins several identifying columns into one label


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """The Nemenyi test's q_α for k groups: the studentized range quantile at 1 − α with
    infinite degrees of freedom, divided by sqrt(2) (Demšar 2006, Table 5a)."""
    if k < 2:
        raise ValueError(f"the Nemenyi test needs at least 2 groups, got k = {k}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def critical_difference(k: int, n: int, alpha: float = ALPHA) -> float:
    """The Nemenyi critical difference of mean ranks, q_α · sqrt(k(k+1) / (6N)), for k
    estimators ranked on N tasks (Demšar 2006, Sec. 3.2.2)."""
    if n < 1:
        raise ValueError(f"the critical difference needs at least 1 task, got N = {n}")
    return nemenyi_q(k, alpha) * math.sqrt(k * (k + 1) / (6 * n))


def _friedman(ranks: np.ndarray) -> tuple[float, float, float, float]:
    """(χ²_F, its p-value, F_F, its p-value) of an (N tasks, k estimators) array of within-task
    ranks, by Demšar's (2006) formulas, without a correction for ties."""
    n, k = ranks.shape
    mean_ranks = ranks.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * (float(np.sum(mean_ranks ** 2)) - k * (k + 1) ** 2 / 4)
    chi2 = max(chi2, 0.0)                   # rounding can leave -1e-15 when every rank ties
    p = float(stats.chi2.sf(chi2, k - 1))
    denominator = n * (k - 1) - chi2        # 0 when every task orders the estimators alike
    if denominator <= 1e-12 * n * (k - 1):
        return chi2, p, math.inf, 0.0
    f = (n - 1) * chi2 / denominator
    return chi2, p, f, float(stats.f.sf(f, k - 1, (k - 1) * (n - 1)))


def _text(value: Any) -> str:
    """A key value as label text: integral floats without ".0" (63.0 -> "63"), missing as "-"."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _labels(frame: pd.DataFrame, columns: str | Sequence[str], what: str) -> list[str]:
    """One label per row: the values of ``columns`` joined by " / "."""
    cols = [columns] if isinstance(columns, str) else list(columns)
    if not cols:
        raise ValueError(f"no {what} column given")
    missing = [c for c in cols if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} column(s) {missing} not in the summary; it has {list(frame.columns)}")
    return [LABEL_SEP.join(_text(v) for v in row) for row in frame[cols].itertuples(index=False, name=None)]


@dataclass(frozen=True, eq=False)
class RankResult:
    """Estimators ranked over tasks (``rank_table``), with the Friedman test and the Nemenyi
    critical difference (Demšar 2006).

    table: estimator, mean_rank, mean_value (mean score over the tasks used), n_tasks; sorted
        by mean_rank (best first). ranks: within-task ranks, tasks × estimators (1 = best).
    dropped_tasks: tasks left out because some estimator had no finite score there.
    friedman_chi2 / friedman_p: Friedman's χ²_F and its p-value (k − 1 df).
    iman_davenport_f / iman_davenport_p: F_F and its p-value ((k − 1), (k − 1)(N − 1) df).
    cd: the Nemenyi critical difference of mean ranks at level ``alpha``.
    """

    table: pd.DataFrame
    ranks: pd.DataFrame
    n_tasks: int
    n_estimators: int
    dropped_tasks: list[str] = field(default_factory=list)
    friedman_chi2: float = math.nan
    friedman_p: float = math.nan
    iman_davenport_f: float = math.nan
    iman_davenport_p: float = math.nan
    cd: float = math.nan
    alpha: float = ALPHA
    value: str = "abs_bias"

    def cliques(self) -> list[tuple[str, ...]]:
        """Groups of estimators not significantly different by the Nemenyi test: the maximal
        runs of consecutive estimators in rank order whose mean ranks span less than ``cd``.
        Runs inside another run, and single estimators, are left out. Each group lists its
        estimators best first; groups come in order of their best member."""
        names = list(self.table["estimator"])
        mean_ranks = self.table["mean_rank"].to_numpy(dtype=float)
        groups: list[tuple[str, ...]] = []
        last_end = -1
        for start in range(len(names)):
            end = start
            while end + 1 < len(names) and mean_ranks[end + 1] - mean_ranks[start] < self.cd:
                end += 1
            # ends never decrease with the start, so a run ending where the previous one ended
            # lies inside it
            if end > start and end > last_end:
                groups.append(tuple(names[start:end + 1]))
            last_end = max(last_end, end)
        return groups

    def describe(self) -> str:
        """One line: the Friedman test and the critical difference."""
        return (f"Friedman χ² = {self.friedman_chi2:.2f}, p = {self.friedman_p:.2g}; "
                f"Nemenyi CD (α = {self.alpha:g}) = {self.cd:.2f} over {self.n_tasks} tasks")

    def to_markdown(self) -> str:
        """The rank table as Markdown, with ``describe()`` (and the dropped tasks) above it."""
        view = pd.DataFrame({
            "estimator": self.table["estimator"],
            "mean rank": self.table["mean_rank"].map(lambda v: f"{v:.2f}"),
            f"mean {self.value}": self.table["mean_value"].map(lambda v: f"{v:.3f}"),
            "tasks": self.table["n_tasks"].map(str),
        })
        text = view.to_markdown(index=False, disable_numparse=True, colalign=("left", "right", "right", "right"))
        note = self.describe()
        if self.dropped_tasks:
            note += (f"; {len(self.dropped_tasks)} task(s) dropped for missing or non-finite values: "
                     + ", ".join(self.dropped_tasks))
        return f"{note}\n\n{text}\n"


def rank_table(summary: pd.DataFrame, *, estimator: str | list[str] = "estimator",
               task: str | list[str] = "task_id", value: str = "abs_bias",
               alpha: float = ALPHA) -> RankResult:
    """Rank the estimators on every task by ``value`` (lower is better) and test the ranks
    (Demšar 2006).

    summary: one row per (estimator, task) cell. ``estimator`` and ``task`` name the column(s)
        identifying each; several columns are joined into one label ("a / b").
    Only tasks on which every estimator has a finite ``value`` are used; the others are listed
    in ``dropped_tasks``. Ties get the average rank (``scipy.stats.rankdata``).

    Raises ValueError when a cell appears twice, or when fewer than 2 estimators or 2 usable
    tasks remain.
    """
    if value not in summary.columns:
        raise ValueError(f"value column {value!r} not in the summary; it has {list(summary.columns)}")
    cells = pd.DataFrame({
        "estimator": _labels(summary, estimator, "estimator"),
        "task": _labels(summary, task, "task"),
        "value": pd.to_numeric(summary[value], errors="coerce").to_numpy(dtype=float),
    })
    repeated = cells[cells.duplicated(["estimator", "task"], keep=False)]
    if len(repeated):
        pairs = sorted(set(zip(repeated["estimator"], repeated["task"])))
        raise ValueError(f"the summary has several rows for (estimator, task) cell(s) {pairs[:5]}"
                         + (" ..." if len(pairs) > 5 else "") + "; give one row per cell")

    wide = (cells.pivot(index="task", columns="estimator", values="value")
            .reindex(index=pd.unique(cells["task"]), columns=pd.unique(cells["estimator"])))
    complete = np.isfinite(wide.to_numpy(dtype=float)).all(axis=1)
    dropped = [str(t) for t in wide.index[~complete]]
    wide = wide[complete]
    n, k = wide.shape
    if k < 2 or n < 2:
        raise ValueError("ranking needs at least 2 estimators and 2 tasks with values for all of them; "
                         f"got {k} estimator(s) and {n} such task(s) ({len(dropped)} task(s) dropped for "
                         "missing or non-finite values)")

    ranks = pd.DataFrame(stats.rankdata(wide.to_numpy(dtype=float), method="average", axis=1),
                         index=wide.index.rename("task"), columns=wide.columns.rename("estimator"))
    table = pd.DataFrame({
        "estimator": list(wide.columns),
        "mean_rank": ranks.mean(axis=0).to_numpy(),
        "mean_value": wide.mean(axis=0).to_numpy(),
        "n_tasks": n,
    }).sort_values("mean_rank", kind="stable").reset_index(drop=True)

    chi2, p, f, f_p = _friedman(ranks.to_numpy())
    return RankResult(table=table, ranks=ranks, n_tasks=n, n_estimators=k, dropped_tasks=dropped,
                      friedman_chi2=chi2, friedman_p=p, iman_davenport_f=f, iman_davenport_p=f_p,
                      cd=critical_difference(k, n, alpha), alpha=alpha, value=value)


# --------------------------------------------------------------------------------------------
# The critical-difference diagram. Layout in inches, y downwards from the top of the axes.

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
