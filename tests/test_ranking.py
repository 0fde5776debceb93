"""Ranking estimators across tasks (mibench.ranking): ranks, the Friedman and Iman-Davenport
statistics, the Nemenyi critical difference and its cliques against hand computations and
Demšar (2006, JMLR 7), and the critical-difference diagram."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mibench.figures.cd import fig_cd_diagram
from mibench.ranking import RankResult, critical_difference, nemenyi_q, rank_table


def cells(values: dict[str, list[float]], tasks: list[str] | None = None) -> pd.DataFrame:
    """One row per (estimator, task): ``values`` maps an estimator to its score on each task."""
    n = len(next(iter(values.values())))
    tasks = tasks or [f"t{i}" for i in range(n)]
    return pd.DataFrame([{"estimator": name, "task_id": task, "abs_bias": v}
                         for name, scores in values.items() for task, v in zip(tasks, scores)])


def test_lowest_value_ranks_first_and_ties_share_the_average_rank():
    result = rank_table(cells({"a": [0.1, 0.2], "b": [0.1, 0.1], "c": [0.3, 0.1]}))
    assert result.ranks.loc["t0"].tolist() == [1.5, 1.5, 3.0]
    assert result.ranks.loc["t1"].tolist() == [3.0, 1.5, 1.5]
    assert list(result.ranks.columns) == ["a", "b", "c"]
    assert result.table["estimator"].tolist() == ["b", "a", "c"]            # mean ranks 1.5, 2.25, 2.25
    assert result.table["mean_rank"].tolist() == [1.5, 2.25, 2.25]
    assert result.table["mean_value"].tolist() == pytest.approx([0.1, 0.15, 0.2])
    assert result.table["n_tasks"].tolist() == [2, 2, 2]
    assert (result.n_tasks, result.n_estimators, result.dropped_tasks) == (2, 3, [])


def test_several_columns_make_one_label():
    summary = pd.DataFrame({"bound": ["infonce", "infonce", "nwj", "nwj"],
                            "critic": ["separable", "joint", "separable", "joint"],
                            "task": ["g", "g", "g", "g"], "mi": [2.0, 2.0, 2.0, 2.0],
                            "abs_bias": [0.1, 0.2, 0.3, 0.4]})
    summary = pd.concat([summary, summary.assign(mi=4.0)], ignore_index=True)
    result = rank_table(summary, estimator=["bound", "critic"], task=["task", "mi"])
    assert result.table["estimator"].tolist() == ["infonce / separable", "infonce / joint", "nwj / separable",
                                                  "nwj / joint"]
    assert result.ranks.index.tolist() == ["g / 2", "g / 4"]


def test_friedman_statistic_equals_scipys_without_ties():
    rng = np.random.default_rng(3)
    scores = rng.random((12, 5))                         # 12 tasks, 5 estimators: no ties
    scores[:, 0] -= 0.3                                  # estimator 0 tends to be best
    result = rank_table(cells({f"e{j}": list(scores[:, j]) for j in range(5)}))
    chi2, p = stats.friedmanchisquare(*scores.T)
    assert result.friedman_chi2 == pytest.approx(chi2, rel=1e-12)
    assert result.friedman_p == pytest.approx(p, rel=1e-9)


def test_friedman_and_iman_davenport_by_hand():
    # ranks per task (1, 2, 3), (1, 2, 3), (1, 3, 2), (2, 1, 3): mean ranks 1.25, 2, 2.75
    # chi2_F = 12*4/(3*4) * (1.25^2 + 2^2 + 2.75^2 - 3*4^2/4) = 4 * 1.125 = 4.5
    # F_F = (4 - 1) * 4.5 / (4 * 2 - 4.5) = 27/7, with 2 and 6 degrees of freedom
    result = rank_table(cells({"a": [1, 1, 1, 2], "b": [2, 2, 3, 1], "c": [3, 3, 2, 3]}))
    assert result.table["mean_rank"].tolist() == [1.25, 2.0, 2.75]
    assert result.friedman_chi2 == pytest.approx(4.5)
    assert result.friedman_p == pytest.approx(math.exp(-4.5 / 2))          # chi2 with 2 df
    assert result.iman_davenport_f == pytest.approx(27 / 7)
    assert result.iman_davenport_p == pytest.approx(stats.f.sf(27 / 7, 2, 6))


def test_tasks_that_all_agree_give_an_infinite_iman_davenport_statistic():
    result = rank_table(cells({"a": [1, 1, 1], "b": [2, 2, 2], "c": [3, 3, 3]}))
    assert result.friedman_chi2 == pytest.approx(6.0)                       # N (k - 1): its maximum
    assert (result.iman_davenport_f, result.iman_davenport_p) == (math.inf, 0.0)


@pytest.mark.parametrize("k, q", [(2, 1.960), (3, 2.343), (4, 2.569), (5, 2.728), (10, 3.164)])
def test_nemenyi_q_matches_demsars_table_5a(k, q):
    assert nemenyi_q(k, 0.05) == pytest.approx(q, abs=1e-3)


def test_critical_difference():
    # Demšar's example (Sec. 3.2.4): k = 4 classifiers, N = 14 data sets, CD = 1.25
    assert critical_difference(4, 14) == pytest.approx(nemenyi_q(4) * math.sqrt(4 * 5 / (6 * 14)), rel=1e-12)
    assert critical_difference(4, 14) == pytest.approx(1.25, abs=0.005)
    result = rank_table(cells({"a": [1, 1, 1, 2], "b": [2, 2, 3, 1], "c": [3, 3, 2, 3]}))
    assert result.cd == pytest.approx(2.343 * math.sqrt(3 * 4 / (6 * 4)), abs=1e-3)
    assert result.alpha == 0.05


def with_mean_ranks(mean_ranks: list[float], cd: float) -> RankResult:
    """A result whose table holds the given mean ranks (estimators a, b, c, ...) and cd."""
    base = rank_table(cells({"a": [1, 1], "b": [2, 2]}))
    names = [chr(ord("a") + i) for i in range(len(mean_ranks))]
    table = pd.DataFrame({"estimator": names, "mean_rank": mean_ranks, "mean_value": mean_ranks, "n_tasks": 10})
    return dataclasses.replace(base, table=table, n_estimators=len(names), cd=cd)


@pytest.mark.parametrize("mean_ranks, cd, expected", [
    ([1.0, 1.2, 3.0, 3.1], 0.5, [("a", "b"), ("c", "d")]),
    ([1.0, 1.4, 1.8, 3.0], 0.5, [("a", "b"), ("b", "c")]),     # overlapping groups
    ([1.0, 1.1, 1.2, 3.0], 0.5, [("a", "b", "c")]),            # (b, c) lies inside (a, b, c)
    ([1.0, 2.0, 3.0], 0.5, []),                                 # all different: no bars
    ([1.0, 1.5, 1.9], 0.5, [("b", "c")]),                     # a difference of exactly CD is significant
    ([1.5, 1.5, 3.0], 10.0, [("a", "b", "c")]),
])
def test_cliques(mean_ranks, cd, expected):
    assert with_mean_ranks(mean_ranks, cd).cliques() == expected


@pytest.mark.parametrize("values", [
    {"a": [0.1, 0.2, 0.3]},                                     # one estimator
    {"a": [0.1], "b": [0.2]},                                   # one task
    {"a": [0.1, math.nan, 0.3], "b": [0.2, 0.1, math.nan]},     # one task left with values for both
])
def test_too_few_estimators_or_tasks_is_an_error(values):
    with pytest.raises(ValueError, match="ranking needs at least 2 estimators and 2 tasks with values for all"):
        rank_table(cells(values))


def test_a_repeated_cell_is_an_error():
    summary = cells({"a": [0.1, 0.2], "b": [0.2, 0.1]})
    with pytest.raises(ValueError, match="several rows"):
        rank_table(pd.concat([summary, summary.iloc[:1]]))


def test_tasks_without_a_finite_value_for_every_estimator_are_dropped_and_reported():
    summary = cells({"a": [0.1, math.nan, 0.3, 0.1, 0.5], "b": [0.2, 0.1, 0.2, math.inf, 0.4],
                     "c": [0.3, 0.3, 0.1, 0.2, 0.6]})
    summary = summary[~((summary["estimator"] == "c") & (summary["task_id"] == "t4"))]     # a missing cell
    result = rank_table(summary)
    assert result.dropped_tasks == ["t1", "t3", "t4"]
    assert result.n_tasks == 2 and result.ranks.index.tolist() == ["t0", "t2"]
    assert result.table["n_tasks"].tolist() == [2, 2, 2]
    assert result.table.set_index("estimator")["mean_value"].to_dict() == pytest.approx(
        {"a": 0.2, "b": 0.2, "c": 0.2})
    assert "over 2 tasks" in result.describe()
    assert "3 task(s) dropped" in result.to_markdown() and "t1, t3, t4" in result.to_markdown()


def test_describe_and_markdown():
    result = rank_table(cells({"a": [1, 1, 1, 2], "b": [2, 2, 3, 1], "c": [3, 3, 2, 3]}))
    assert result.describe() == "Friedman χ² = 4.50, p = 0.11; Nemenyi CD (α = 0.05) = 1.66 over 4 tasks"
    lines = result.to_markdown().splitlines()
    assert lines[0] == result.describe()
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["estimator", "mean rank", "mean abs_bias", "tasks"]
    assert [line.split("|")[1].strip() for line in lines[4:]] == ["a", "b", "c"]


def test_cd_diagram_renders_with_one_label_per_estimator(tmp_path):
    names = ["InfoNCE", "SMILE", "NWJ", "JS", "MINE"]
    rng = np.random.default_rng(0)
    scores = np.abs(rng.normal(np.arange(5) * 0.3, 0.4, size=(10, 5)))
    result = rank_table(cells({n: list(scores[:, j]) for j, n in enumerate(names)}))
    fig = fig_cd_diagram(result)
    path = tmp_path / "cd.png"
    fig.savefig(path, dpi=100)
    assert path.stat().st_size > 1000
    assert fig.get_figwidth() == pytest.approx(3.4)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(t for t in texts if t in names) == sorted(names)
    assert f"CD = {result.cd:.2f}" in texts
    three = fig_cd_diagram(rank_table(cells({n: list(scores[:, j]) for j, n in enumerate(names[:3])})))
    assert three.get_figheight() < fig.get_figheight()


def test_cd_diagram_draws_into_given_axes():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3))
    ax = fig.add_subplot(1, 2, 2)
    result = rank_table(cells({"a": [0.1, 0.2, 0.1], "b": [0.2, 0.1, 0.3]}))
    assert fig_cd_diagram(result, ax=ax) is fig
    assert {"a", "b"} <= {t.get_text() for t in ax.texts}
