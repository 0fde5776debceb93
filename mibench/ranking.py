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
``mibench.figures.cd.fig_cd_diagram(result)`` draws the diagram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy import stats

ALPHA = 0.05
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
