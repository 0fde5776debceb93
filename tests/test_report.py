"""Reporter: summary statistics against hand computations (mibench.stats), tables
(mibench.tables), figures (mibench.figures), the report (mibench.report) and the CLI."""

import inspect
import math
import sys
import types

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_HEAD
from mibench import figures as F
from mibench import report as R
from mibench.bounds import BOUNDS
from mibench.cli import main
from mibench.results import append_jsonl
from mibench.stats import (bootstrap_ci, cells_of, in_units, staircase_levels, staircase_runs, staircase_summary,
                           summarize)
from mibench.tables import display_table, run_table, to_markdown, to_text, write_tables
from mibench.wide_tables import STAIRCASE_NOTE, has_mi_levels, level_display, level_table, write_level_table


def row(**kw):
    """One run row with the fields the reporter reads; keyword arguments override."""
    base = dict(run_id="r", task="t", grid="g", bound="infonce", critic="separable", encoder="identity",
                n_negatives=63, batch_size=64, device="cpu", seed=0, steps=100,
                task_params={"dim": 2, "mi": 2.0}, status="ok", mi_true=2.0, mi_estimate=2.0,
                mi_std=0.1, pairs_per_s=1000.0, steps_per_s=10.0, staircase=[])
    base.update(kw)
    return base


def frame(rows):
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# summarize


def test_summary_bias_sd_mse_by_hand_and_failed_runs_excluded():
    est = [1.0, 2.0, 4.0]                  # truth 2.5: errors -1.5, -0.5, 1.5
    rows = [row(run_id=f"a{i}", seed=i, mi_true=2.5, mi_estimate=e, mi_std=s, pairs_per_s=p,
                task_params={"mi": 2.5})
            for i, (e, s, p) in enumerate(zip(est, [0.1, 0.3, 0.2], [100.0, 300.0, 200.0]))]
    rows += [row(run_id="bad1", seed=7, status="error", mi_true=None, mi_estimate=None, mi_std=None,
                 pairs_per_s=None, task_params={"mi": 2.5}),
             row(run_id="bad2", seed=8, status="diverged", mi_true=2.5, mi_estimate=math.nan,
                 mi_std=math.nan, pairs_per_s=1e9, task_params={"mi": 2.5}),
             row(run_id="other", mi_true=4.0, mi_estimate=3.0, task_params={"mi": 4.0})]   # another MI level
    s = summarize(frame(rows))
    assert len(s) == 2
    a = s[s["mi_true"] == 2.5].iloc[0]
    assert (a["n_runs"], a["n_failed"]) == (5, 2)
    assert a["mean"] == pytest.approx(7 / 3)
    assert a["bias"] == pytest.approx(7 / 3 - 2.5)
    assert a["sd"] == pytest.approx(np.std(est, ddof=1))
    assert a["mse"] == pytest.approx((1.5 ** 2 + 0.5 ** 2 + 1.5 ** 2) / 3)
    assert a["within_sd"] == pytest.approx(0.2) and a["pairs_per_s"] == pytest.approx(200.0)
    assert a["bias_ci_low"] < a["bias"] < a["bias_ci_high"]
    assert -1.5 <= a["bias_ci_low"] and a["bias_ci_high"] <= 1.5
    b = s[s["mi_true"] == 4.0].iloc[0]      # one run: no sd, no CI
    assert (b["n_runs"], b["n_failed"], b["bias"], b["mse"]) == (1, 0, -1.0, 1.0)
    assert math.isnan(b["sd"]) and math.isnan(b["bias_ci_low"]) and math.isnan(b["bias_ci_high"])


def test_cells_are_split_by_every_key():
    rows = [row(run_id="1"), row(run_id="2", critic="joint"), row(run_id="3", n_negatives=8),
            row(run_id="4", device="cuda"), row(run_id="5", seed=1)]
    s = summarize(frame(rows))
    assert len(s) == 4 and s["n_runs"].sum() == 5


def test_precision_splits_cells_and_shows_in_the_table_only_when_it_varies():
    """Rows written before the precision key existed count as fp32; a bf16 run is its own cell,
    and the printed table keeps the column so the two rows can be told apart."""
    old = row(run_id="1")                                   # no precision field at all
    s = summarize(frame([old, row(run_id="2", precision="bf16")]))
    assert sorted(s["precision"]) == ["bf16", "fp32"]
    table, caption = display_table(s)
    assert sorted(table["precision"]) == ["bf16", "fp32"] and "precision" not in caption
    table, caption = display_table(summarize(frame([old, row(run_id="3", bound="nwj")])))
    assert "precision" not in table and caption["precision"] == "fp32"


def test_bootstrap_ci_covers_the_true_mean_at_about_95_percent():
    rng = np.random.default_rng(1)
    reps, n, mu = 200, 20, 1.0
    values = rng.normal(mu, 0.5, size=(reps, n))
    rows = [row(run_id=f"{r}-{i}", grid=f"rep{r}", seed=i, mi_true=0.0, mi_estimate=v)
            for r in range(reps) for i, v in enumerate(values[r])]
    s = summarize(frame(rows))
    assert len(s) == reps
    coverage = ((s["bias_ci_low"] <= mu) & (mu <= s["bias_ci_high"])).mean()
    assert 0.88 <= coverage <= 0.99
    # a fixed RNG: the same values give the same interval
    assert bootstrap_ci(values[0]) == bootstrap_ci(values[0])
    assert math.isnan(bootstrap_ci([1.0])[0])


def test_empty_input_gives_an_empty_summary():
    assert summarize(pd.DataFrame()).empty


# --------------------------------------------------------------------------------------------
# staircase


def stair_data(seeds=(0, 1)):
    """Two levels (1 and 3 nats) over 100 steps, traced every 10 steps and at step 99; the
    estimate is step / 10 + seed, so the last half of each level is known."""
    steps = [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99]
    runs, traces = [], []
    for s in seeds:
        rid = f"s{s}"
        runs.append(row(run_id=rid, seed=s, staircase=[1.0, 3.0], mi_true=3.0, task_params={"dim": 2}))
        traces.append(pd.DataFrame({"run_id": rid, "step": steps, "estimate": [t / 10 + s for t in steps],
                                    "mi_true": [1.0 if t < 50 else 3.0 for t in steps]}))
    runs.append(row(run_id="plain"))                              # not a staircase run: ignored
    traces.append(pd.DataFrame({"run_id": "plain", "step": [0], "estimate": [0.0], "mi_true": [2.0]}))
    return pd.concat(traces, ignore_index=True), frame(runs)


def test_staircase_level_means_over_the_last_half_of_each_level():
    traces, runs = stair_data()
    per_run = staircase_levels(traces, runs)
    assert set(per_run["run_id"]) == {"s0", "s1"}
    r0 = per_run[per_run["run_id"] == "s0"].set_index("level")
    # level 0 = steps 0..49, last half >= 25: steps 30, 40; level 1 = 50..99, >= 75: 80, 90, 99
    assert r0.loc[0, "level_mean"] == pytest.approx(3.5) and r0.loc[0, "n_points"] == 2
    assert r0.loc[0, "level_sd"] == pytest.approx(np.std([3.0, 4.0], ddof=1))
    assert r0.loc[1, "level_mean"] == pytest.approx((8 + 9 + 9.9) / 3)
    assert list(r0["mi_true"]) == [1.0, 3.0]
    agg = staircase_summary(traces, runs).set_index("level")
    assert list(agg["n_runs"]) == [2, 2]
    assert agg.loc[0, "mean"] == pytest.approx(4.0)              # seeds 0 and 1: 3.5 and 4.5
    assert agg.loc[0, "bias"] == pytest.approx(3.0)
    assert agg.loc[0, "sd"] == pytest.approx(np.std([3.5, 4.5], ddof=1))
    assert agg.loc[0, "mse"] == pytest.approx((2.5 ** 2 + 3.5 ** 2) / 2)


def test_staircase_summary_without_staircase_runs_is_empty():
    traces, runs = stair_data()
    assert staircase_summary(traces, runs[runs["run_id"] == "plain"]).empty


def test_staircase_levels_use_the_shared_schedule_the_last_level_taking_the_rest():
    """10 steps over 3 levels: ceil(10 / 3) = 4 steps per level, so levels [0, 4), [4, 8) and
    [8, 10) (mibench.interface.level_of_step); the last half of each: {2, 3}, {6, 7}, {9}."""
    from mibench import stats
    from mibench.interface import level_of_step

    assert stats.level_of_step is level_of_step                    # one definition, not a copy
    steps = list(range(10))
    runs = frame([row(run_id="s", staircase=[1.0, 2.0, 3.0], steps=10)])
    traces = pd.DataFrame({"run_id": "s", "step": steps, "estimate": [float(t) for t in steps],
                           "mi_true": [1.0] * 4 + [2.0] * 4 + [3.0] * 2})
    per_run = staircase_levels(traces, runs).set_index("level")
    assert list(per_run["level_mean"]) == pytest.approx([2.5, 6.5, 9.0])
    assert list(per_run["n_points"]) == [2, 2, 1]
    assert list(per_run["mi_true"]) == [1.0, 2.0, 3.0]


def test_staircase_table_has_a_row_per_cell_and_a_column_per_level(tmp_path):
    """The wide table: the interval of the mean is the bias interval shifted by the level's
    truth; one seed shows its value alone; magnitudes from 1000 on take 3 significant digits."""
    traces, runs = stair_data(seeds=(0, 1, 2))
    one = runs["run_id"] == "s0"
    lone = runs[one].assign(run_id="lone", grid="h")
    traces = pd.concat([traces, traces[traces["run_id"] == "s0"].assign(
        run_id="lone", estimate=lambda t: t["estimate"] * 1000)], ignore_index=True)
    stair = staircase_summary(traces, pd.concat([runs, lone], ignore_index=True))
    wide = level_table(stair)
    assert list(wide["grid"]) == ["g", "h"] and list(wide["n_seeds"]) == [3, 1]
    level0 = stair[(stair["grid"] == "g") & (stair["level"] == 0)].iloc[0]
    g = wide.iloc[0]
    assert g["I = 1"] == pytest.approx(4.5)                             # seeds 0, 1, 2: 3.5, 4.5, 5.5
    assert g["I = 1 low"] == pytest.approx(level0["bias_ci_low"] + 1.0)
    assert g["I = 1 high"] == pytest.approx(level0["bias_ci_high"] + 1.0)
    assert g["I = 1 low"] < 4.5 < g["I = 1 high"]
    assert math.isnan(wide.iloc[1]["I = 3 low"])
    view, constant = level_display(wide)
    assert constant["task"] == "t" and "task" not in view                # constant: in the caption
    assert list(view.columns) == ["grid", "seeds", "I = 1", "I = 3"]
    assert view.loc[0, "I = 1"] == f"4.50 [{g['I = 1 low']:.2f}, {g['I = 1 high']:.2f}]"
    assert view.loc[1, "I = 1"] == "3.5e+03"                               # 1000 x 3.5, no interval
    paths = write_level_table(in_units(stair, "bits"), tmp_path, "staircase_table", STAIRCASE_NOTE)
    assert [p.name for p in paths] == ["staircase_table.csv", "staircase_table.md", "staircase_table.tex"]
    md = paths[1].read_text()
    assert "estimates in bits" in md and f"I = {1 / math.log(2):.3g}" in md
    csv = pd.read_csv(paths[0])
    assert csv[f"I = {1 / math.log(2):.3g} [bits]"].iloc[0] == pytest.approx(4.5 / math.log(2))


def test_staircase_variants_are_separate_cells_tables_and_figures(tmp_path, monkeypatch):
    """A cubic variant in the same grid is its own cell (not averaged with the Gaussian one),
    its own table row and its own bias/sd figure, even with one seed against two."""
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    traces, runs = stair_data()
    cubic = runs[runs["run_id"] == "s0"].assign(run_id="c0", task_params=[{"dim": 2, "transform": "cubic"}])
    traces = pd.concat([traces, traces[traces["run_id"] == "s0"].assign(run_id="c0", estimate=lambda t: t["estimate"] / 2)],
                       ignore_index=True)
    runs = pd.concat([runs, cubic], ignore_index=True)
    stair = staircase_summary(traces, runs)
    assert len(stair) == 4 and sorted(stair["n_runs"]) == [1, 1, 2, 2]
    cub = stair[stair["task_params"].str.contains("cubic")].set_index("level")
    assert cub.loc[0, "mean"] == pytest.approx(3.5 / 2)                     # the cubic run alone
    view, _ = level_display(level_table(stair))
    assert list(view["task parameters"]) == ["", "transform=cubic"] and list(view["seeds"]) == ["2", "1"]
    names = {p.name for p in F.make_figures(tmp_path, runs=runs, traces=traces, summary=summarize(runs),
                                            staircase=stair)}
    assert {"bias_sd_staircase.png", "bias_sd_staircase_transform-cubic.png",
            "staircase.png", "staircase_transform-cubic.png"} <= names


def test_bits_scale_the_staircase_truth_and_estimates_but_not_the_level_index():
    traces, runs = stair_data()
    nats = staircase_summary(traces, runs)
    bits = in_units(nats, "bits")
    assert list(bits["level"]) == list(nats["level"]) == [0, 1]
    assert np.allclose(bits["mi_true"], nats["mi_true"] / math.log(2))
    per_run = in_units(staircase_levels(traces, runs), "bits")
    assert sorted(set(per_run["level"])) == [0, 1]


def test_cells_of_picks_the_summary_rows_of_some_runs():
    traces, stair = stair_data()
    _, plain = gaussian_data()
    runs = pd.concat([plain, stair], ignore_index=True)
    s = summarize(runs)
    mask = cells_of(s, staircase_runs(runs))
    assert mask.sum() == 1 and s[mask].iloc[0]["n_runs"] == 2          # the two staircase seeds
    # the other rows are exactly the summary of the other runs, computed without them
    rest = s[~mask].reset_index(drop=True)
    pd.testing.assert_frame_equal(rest, summarize(runs[~runs.index.isin(staircase_runs(runs).index)]))
    # a column typed float (a missing K somewhere) still matches its int-typed runs
    assert cells_of(s.assign(n_negatives=s["n_negatives"].astype(float)), staircase_runs(runs)).sum() == 1
    assert not cells_of(s, runs.iloc[:0]).any()


# --------------------------------------------------------------------------------------------
# tables


def test_write_tables_writes_csv_markdown_and_latex_with_the_numbers(tmp_path):
    rows = [row(run_id="a", mi_estimate=1.5, bound="smile", pairs_per_s=12345.6),
            row(run_id="b", seed=1, mi_estimate=2.5, bound="smile", pairs_per_s=12345.6),
            row(run_id="c", mi_estimate=1.25, bound="nwj")]
    s = summarize(frame(rows))
    paths = write_tables(s, tmp_path)
    assert [p.name for p in paths] == ["summary.csv", "summary.md", "summary.tex"]
    csv = pd.read_csv(paths[0])
    assert "bias [nats]" in csv and "pairs/s" in csv
    assert sorted(csv["bias [nats]"]) == pytest.approx([-0.75, 0.0])
    md, tex = paths[1].read_text(), paths[2].read_text()
    for text in (md, tex):
        assert "-0.750" in text and "12,346" in text and "smile" in text and "nwj" in text
        assert "0.707" in text                                      # sd of 1.5 and 2.5
    assert "| estimator" in md and "bias [nats]" in md
    assert "\\begin{tabular}" in tex and "\\toprule" in tex and "bias [nats]" in tex
    assert "task = t" in md                                         # constant columns in the caption


def run_rows():
    """Two seeds of an InfoNCE cell (estimates 2 and 3 nats), a SMILE cell with one ok and one
    failed run, at one true MI: what a sweep returns."""
    return frame([row(run_id="a0", seed=0, mi_estimate=2.0, mi_std=0.1, pairs_per_s=12345.6),
                  row(run_id="a1", seed=1, mi_estimate=3.0, mi_std=0.3, pairs_per_s=12345.6),
                  row(run_id="b0", seed=0, bound="smile", mi_estimate=1.9, mi_std=0.2, pairs_per_s=800.0),
                  row(run_id="b1", seed=1, bound="smile", status="error", mi_estimate=None, mi_std=None,
                      pairs_per_s=None, error="RuntimeError: boom\nTraceback ...")])


def table_lines(text):
    """The rows of a ``to_text`` table: the lines after the dashed rule under the header."""
    lines = text.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line.replace(" ", "")) == {"-"})
    end = next((i for i in range(rule + 1, len(lines)) if not lines[i].strip()), len(lines))
    return lines[rule - 1], lines[rule + 1:end]


def test_run_table_prints_one_row_per_cell_with_the_display_rules():
    text = run_table(run_rows())
    caption = text.splitlines()[0]
    assert "task = t" in caption and "device = cpu" in caption and "K = 63" in caption   # constant columns
    assert "seeds = 0,1" in caption
    header, rows = table_lines(text)
    for name in ("estimator", "runs", "failed", "true MI [nats]", "estimate [nats]", "bias [nats]",
                 "sd over seeds [nats]", "within-run sd [nats]", "pairs/s"):
        assert name in header, name
    assert "MSE" not in header and "CI" not in header                # left to the written tables
    assert len(rows) == 2                                           # cells, not runs
    infonce = next(r for r in rows if "infonce" in r).split()
    assert infonce[1:] == ["2", "0", "2.000", "2.500", "0.500", "0.707", "0.200", "12,346"]
    smile = next(r for r in rows if "smile" in r).split()
    assert smile[1:3] == ["2", "1"] and smile[4] == "1.900" and smile[6] == "–"   # one ok run: no sd
    # the failed run is named, with its status and the first line of its error
    assert "b1 (estimator = smile, critic = separable, K = 63, B = 64, device = cpu, seed = 1): error: " \
           "RuntimeError: boom" in text and "Traceback" not in text


def test_to_text_keeps_varying_identity_columns_and_seeds():
    s = summarize(run_rows().assign(seed=[0, 1, 0, 2], device=["cpu", "cpu", "cuda", "cuda"]), seeds=True)
    text = to_text(s)
    header, rows = table_lines(text)
    assert "device" in header and "seeds" in header and "device" not in text.splitlines()[0]
    assert sorted(r.split()[4] for r in rows) == ["0,1", "0,2"]     # bound critic device runs failed seeds ...
    assert "seeds" not in summarize(run_rows())                     # only on request: the CSV is unchanged


# --------------------------------------------------------------------------------------------
# figures


def gaussian_data():
    """Two bounds x two critics at MI 2 and 6 nats, two seeds, traced every 10 of 100 steps."""
    runs, traces = [], []
    k = 0
    for bound, bias in (("infonce", -0.5), ("nwj", -0.1)):
        for critic in ("separable", "joint"):
            for mi in (2.0, 6.0):
                for seed in (0, 1):
                    rid = f"g{k}"
                    k += 1
                    est = mi + bias * mi + 0.05 * seed
                    runs.append(row(run_id=rid, bound=bound, critic=critic, seed=seed, mi_true=mi,
                                    mi_estimate=est, task_params={"mi": mi},
                                    pairs_per_s=5000.0 if critic == "separable" else 500.0))
                    steps = np.arange(0, 100, 10)
                    traces.append(pd.DataFrame({"run_id": rid, "step": steps,
                                                "estimate": est * (1 - np.exp(-steps / 30)), "mi_true": mi}))
    return pd.concat(traces, ignore_index=True), frame(runs)


def test_mi_table_is_written_when_each_estimator_has_one_cell_per_true_mi(tmp_path):
    """Two bounds x two critics at 2 and 6 nats: four rows, a column per MI; a second task at
    an MI already present would share a column, so no MI table is drawn from it."""
    _, runs = gaussian_data()
    summary = summarize(runs)
    assert has_mi_levels(summary)
    wide = level_table(summary)
    assert len(wide) == 4 and list(wide["n_seeds"]) == [2] * 4
    one = wide[(wide["bound"] == "nwj") & (wide["critic"] == "joint")].iloc[0]
    assert one["I = 6"] == pytest.approx(6 - 0.6 + 0.025)                # seeds 0, 1: +0, +0.05
    paths = write_level_table(summary, tmp_path, "mi_table", "held out")
    assert "| estimator   | critic    |   seeds |" in paths[1].read_text()
    other = runs.assign(run_id=runs["run_id"] + "b", task_params=[{"mi": m, "dim": 3} for m in runs["mi_true"]])
    assert not has_mi_levels(summarize(pd.concat([runs, other], ignore_index=True)))
    assert not has_mi_levels(summarize(runs[runs["mi_true"] == 2.0]))      # one MI: nothing to tabulate


def legend_texts(fig):
    texts = [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    for ax in fig.axes:
        if ax.get_legend() is not None:
            texts += [t.get_text() for t in ax.get_legend().get_texts()]
    return texts


def has_hline(ax, y, linestyle="--"):
    for line in ax.get_lines():
        yd = np.asarray(line.get_ydata(), dtype=float)
        if line.get_linestyle() == linestyle and yd.size and np.allclose(yd, y):
            return True
    return False


def test_training_figure_draws_truth_test_points_and_names_bounds():
    traces, runs = gaussian_data()
    fig = F.fig_training(traces, runs)
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert len(axes) == 2                                           # one panel per MI level
    assert has_hline(axes[0], 2.0) and has_hline(axes[1], 6.0)
    texts = legend_texts(fig)
    assert {"InfoNCE", "NWJ", "true MI", "held-out estimate", "separable critic", "joint critic"} <= set(texts)
    assert all("[nats]" in ax.get_ylabel() for ax in axes) and axes[-1].get_xlabel() == "training step"
    assert fig.get_size_inches()[0] == pytest.approx(F.WIDTH)


def test_staircase_figure_draws_stepped_truth_and_log_k():
    traces, runs = stair_data()
    fig = F.fig_staircase(traces, runs)
    ax = fig.axes[0]
    stepped = [line for line in ax.get_lines() if line.get_drawstyle() == "steps-post"]
    assert stepped and set(np.asarray(stepped[0].get_ydata())) == {1.0, 3.0}
    assert has_hline(ax, math.log(64), linestyle=":")
    texts = legend_texts(fig)
    assert "InfoNCE" in texts and "true MI (stepped)" in texts and any("ln(K+1)" in t for t in texts)


def test_bias_sd_figure_draws_zero_bias_and_names_bounds():
    traces, runs = gaussian_data()
    fig = F.fig_bias_sd(summarize(runs))
    ax_bias, ax_sd = fig.axes[:2]
    assert has_hline(ax_bias, 0.0)
    assert ax_bias.get_ylabel() == "bias [nats]" and ax_sd.get_xlabel() == "true MI [nats]"
    assert "[nats]" in ax_sd.get_ylabel()
    texts = legend_texts(fig)
    assert {"InfoNCE", "NWJ", "zero bias (truth)"} <= set(texts)
    # the staircase summary has the same columns and makes the same figure
    traces, sruns = stair_data()
    assert F.fig_bias_sd(staircase_summary(traces, sruns)) is not None


def test_negatives_figure_draws_truth_and_log_k_on_a_log_axis():
    runs = frame([row(run_id=f"{b}{k}{s}", bound=b, n_negatives=k, seed=s, mi_true=2.3,
                      mi_estimate=min(math.log(k + 1), 2.0) + 0.01 * s)
                  for b in ("smile", "infonce") for k in (1, 8, 127) for s in (0, 1)])
    fig = F.fig_negatives(runs)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and "K" in ax.get_xlabel() and "[nats]" in ax.get_ylabel()
    assert has_hline(ax, 2.3)
    dotted = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    x, y = (np.asarray(v, dtype=float) for v in dotted[0].get_data())
    assert np.allclose(y, np.log(x + 1)) and x.min() == 1 and x.max() == 127
    assert {"SMILE", "InfoNCE", "true MI", "ln(K+1)"} <= set(legend_texts(fig))


def test_throughput_figure_has_a_bar_per_bound_and_device():
    traces, runs = gaussian_data()
    runs = pd.concat([runs, runs.assign(device="cuda", pairs_per_s=runs["pairs_per_s"] * 30,
                                        run_id=runs["run_id"] + "c")])
    fig = F.fig_throughput(runs)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert list(BOUNDS).index("infonce") < list(BOUNDS).index("nwj")          # the registry's order
    assert labels == ["InfoNCE, joint", "InfoNCE, separable", "NWJ, joint", "NWJ, separable"]
    assert ax.get_xscale() == "log" and "pairs/s" in ax.get_xlabel()
    assert {"device: cpu", "device: cuda"} <= set(legend_texts(fig))
    assert len(ax.patches) >= 8


def test_embedding_figure_colours_by_class_and_states_the_truth():
    rng = np.random.default_rng(0)
    emb = pd.DataFrame({"pc1": rng.normal(size=100), "pc2": rng.normal(size=100), "label": np.arange(100) % 10})
    run = row(bound="smile", critic="joint", n_negatives=32, mi_estimate=2.16, mi_true=2.3008)
    fig = F.fig_embedding(emb, run=run)
    assert [str(d) for d in range(10)] == legend_texts(fig)
    title = fig.axes[0].get_title(loc="left")
    assert "2.301" in title and "SMILE" in title


def test_bounds_show_their_registered_label_in_registry_order_with_fixed_colours():
    """Labels and order come from mibench.bounds.BOUNDS; the colours are the ones every
    committed figure uses (colour-blind palette for the common bounds, then 'dark')."""
    import seaborn as sns

    cb, dark = sns.color_palette("colorblind", 10), sns.color_palette("dark", 10)
    expected = {"infonce": cb[0], "smile": cb[3], "nwj": cb[2], "js": cb[4], "mine": cb[5], "dv": cb[1],
                "tuba": cb[9], "alpha_infonce": cb[6], "flo": cb[8], "ba": dark[0], "club": dark[1],
                "l1out": dark[2], "doe": dark[3]}
    colors = F.bound_colors(["zz_custom"])
    assert {b: colors[b] for b in expected} == expected and colors["zz_custom"] == dark[4]
    assert F.bound_label("alpha_infonce") == "α-InfoNCE" == BOUNDS["alpha_infonce"].label
    assert F.bound_label("zz_custom") == "zz_custom"
    assert F.style.bound_order(["zz_custom", "smile", "infonce", "nwj"]) == ["infonce", "smile", "nwj", "zz_custom"]
    BOUNDS.register("zz_labelled", type("ZZ", (), {"label": "ZZ-β"}))
    try:
        runs = frame([row(run_id=f"{b}{k}", bound=b, n_negatives=k, mi_true=2.3, mi_estimate=1.0)
                      for b in ("zz_labelled", "infonce") for k in (1, 8)])
        texts = legend_texts(F.fig_negatives(runs))
        assert texts.index("InfoNCE") < texts.index("ZZ-β")         # registered later: shown later
    finally:
        BOUNDS.unregister("zz_labelled")


# --------------------------------------------------------------------------------------------
# CLI and end to end


def test_report_on_a_folder_without_runs_exits_2_with_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mibench: error: ") and "runs.jsonl" in err
    assert main(["figures", "--reference", str(tmp_path / "none")]) == 2


TINY = TINY_HEAD.format(steps=30) + """
[[grid]]
name = "mi"
bounds = ["infonce"]
negatives = [4, "all"]
seeds = [0, 1]
task = { mi = [0.5, 1.0] }
[[grid]]
name = "stairs"
bounds = ["infonce"]
staircase = [0.5, 1.0]
steps = 40
"""


def test_save_figure_writes_png_and_pdf(tmp_path):
    traces, runs = stair_data()
    paths = F.save_figure(F.fig_staircase(traces, runs), tmp_path, "stairs")
    assert [p.name for p in paths] == ["stairs.png", "stairs.pdf"]
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:5] == b"%PDF-"
    # rebuilt, the same bytes: no creation date, so committed figures change only with their data
    again = F.save_figure(F.fig_staircase(traces, runs), tmp_path / "again", "stairs")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths]


def test_sweep_then_report_writes_tables_and_figures(tmp_path, capsys, monkeypatch):
    from mibench.executors import sweep

    monkeypatch.setattr(F.style, "FORMATS", ("png",))  # PDFs: test_save_figure_writes_png_and_pdf
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    out = tmp_path / "gaussian"
    df = sweep(str(preset), out=out, progress=False)
    assert len(df) == 9 and (df["status"] == "ok").all()
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "estimator = infonce" in printed and "| grid" in printed and "bias [nats]" in printed
    for name in ("summary.csv", "summary.md", "summary.tex", "staircase.csv", "staircase.md", "staircase.tex"):
        assert (out / name).is_file(), name
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 * 2 + 1 and set(summary["runs"]) == {2, 1}
    assert (out / "summary.md").read_text() == to_markdown(summarize(df))
    made = {p.name for p in (out / "figures").iterdir()}
    assert made == {f"{name}.png" for name in ("training_mi", "staircase", "bias_sd", "bias_sd_staircase",
                                               "negatives", "throughput", "cd_diagram", "estimate_vs_truth")}
    assert "Friedman" in (out / "ranking.md").read_text()           # two K values over two MI levels


def test_figures_command_reports_every_reference_subfolder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    traces, runs = stair_data(seeds=(0,))
    ref = tmp_path / "reference"
    for sub, keep in (("gaussian_staircase", ["s0"]), ("paired_mnist", ["plain"])):
        for r in runs[runs["run_id"].isin(keep)].to_dict("records"):
            append_jsonl(ref / sub / "runs.jsonl", r)
        for rid, t in traces.groupby("run_id"):
            append_jsonl(ref / sub / "traces.jsonl", {"run_id": rid, **{c: t[c].tolist() for c in
                                                                       ("step", "estimate", "mi_true")}})
    (ref / "notes").mkdir()                                         # no runs.jsonl: not a results folder
    assert main(["figures", "--reference", str(ref), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["gaussian_staircase", "paired_mnist"]

    # a figure and a table the results no longer make (a removed grid) are named, not deleted
    old = [tmp_path / "out" / "paired_mnist" / "figures" / "training_gone.png",
           tmp_path / "out" / "paired_mnist" / "mi_table.md"]
    for path in old:
        path.write_text("old")
    assert main(["figures", "--reference", str(ref), "--out", str(tmp_path / "out")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2] == ("  not made from these results, left in place (delete them if they are out of date): "
                        "figures/training_gone.png, mi_table.md")
    assert all(path.read_text() == "old" for path in old) and len(lines) == 3
    out = tmp_path / "out"
    assert (out / "gaussian_staircase" / "staircase.tex").is_file()
    assert (out / "gaussian_staircase" / "figures" / "staircase.png").is_file()
    assert (out / "paired_mnist" / "summary.md").is_file()
    assert (out / "paired_mnist" / "figures" / "training_g.png").is_file()
    assert not (out / "paired_mnist" / "staircase.md").exists()
    assert not (tmp_path / "out" / "notes").exists()


def write_folder(folder, runs, traces=None):
    """A results folder as the runner writes it: runs.jsonl and traces.jsonl."""
    for r in runs.to_dict("records"):
        append_jsonl(folder / "runs.jsonl", r)
    for rid, t in ([] if traces is None else traces.groupby("run_id")):
        append_jsonl(folder / "traces.jsonl", {"run_id": rid, **{c: t[c].tolist() for c in
                                                                 ("step", "estimate", "mi_true")}})


def test_make_report_loads_and_summarizes_once(tmp_path, monkeypatch):
    """Runs and traces are read once and each summary is computed once per report, however
    many tables and figures use it; the bias/sd figure gets the plain cells of that summary."""
    from mibench import results, stats

    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    st, stair = stair_data()
    gt, plain = gaussian_data()
    write_folder(tmp_path / "res", pd.concat([plain, stair[stair["run_id"] != "plain"]], ignore_index=True),
                 pd.concat([gt, st], ignore_index=True))
    calls = {}

    def counting(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return original(*args, **kwargs)

        # wherever a mibench module holds the function (imported by name), count it there too
        for mod in [m for n, m in sys.modules.items() if n == "mibench" or n.startswith("mibench.")]:
            if getattr(mod, name, None) is original:
                monkeypatch.setattr(mod, name, wrapper)

    for module, name in ((stats, "summarize"), (stats, "staircase_summary"), (results, "load_results"),
                         (results, "load_traces")):
        counting(module, name)
    drawn = []
    monkeypatch.setattr(F, "fig_bias_sd", lambda summary, **kw: drawn.append(summary) or F.cells.fig_bias_sd(summary))
    result = R.make_report(tmp_path / "res", tmp_path / "out")
    assert calls == {"summarize": 1, "staircase_summary": 1, "load_results": 1, "load_traces": 1}
    made = {p.name for p in result["figures"]}
    assert {"bias_sd.png", "bias_sd_staircase.png", "staircase.png", "training_g.png"} <= made
    assert set(result) == {"summary", "markdown", "tables", "figures", "ranking", "page"}
    assert len(result["summary"]) == 9                                # 8 plain cells and the staircase one
    plain_rows, stair_rows = drawn
    assert len(plain_rows) == 8 and set(plain_rows["mi_true"]) == {2.0, 6.0}
    assert "level" in stair_rows and len(stair_rows) == 2
    assert (tmp_path / "out" / "staircase.csv").is_file() and (tmp_path / "out" / "summary.md").is_file()
    assert "staircase_table.md" in {p.name for p in result["tables"]}


def embedding_folder(folder, devices=("cpu",)):
    """Paired-MNIST-like runs, one per device, each with its saved embedding and no model."""
    rng = np.random.default_rng(0)
    runs = frame([row(run_id=f"e{d}", device=d, task="paired_mnist", family="paired_mnist", bound="smile",
                      critic="joint", n_negatives=32, mi_estimate=2.16, mi_true=2.3008) for d in devices])
    write_folder(folder, runs)
    embs = {}
    for rid in runs["run_id"]:
        emb = pd.DataFrame({"pc1": rng.normal(size=200), "pc2": rng.normal(size=200), "label": np.arange(200) % 10})
        (folder / "embeddings").mkdir(exist_ok=True)
        emb.to_csv(folder / "embeddings" / f"{rid}.csv", index=False, float_format="%.17g")
        embs[rid] = emb
    return embs


def test_embedding_figure_is_drawn_from_the_saved_csv_without_a_model_or_mnist(tmp_path, monkeypatch):
    from mibench import data

    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setenv("MIBENCH_DATA_DIR", str(empty))

    def no_mnist(*args, **kwargs):
        raise AssertionError("the report must not read image data")

    monkeypatch.setattr(data, "load_split", no_mnist, raising=False)
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    embs = embedding_folder(tmp_path / "res")
    drawn = []

    def spy(emb, **kw):
        drawn.append((emb, kw))
        return F.cells.fig_embedding(emb, **kw)

    monkeypatch.setattr(F, "fig_embedding", spy)
    result = R.make_report(tmp_path / "res", tmp_path / "out")
    assert "embedding.png" in {p.name for p in result["figures"]}
    assert not (tmp_path / "res" / "models").exists() and not any(empty.iterdir())
    (emb, kw), = drawn
    pd.testing.assert_frame_equal(emb, embs["ecpu"])                  # the CSV, to the last digit
    assert kw["run"].name == "ecpu" and kw["run"]["device"] == "cpu" and kw["class_name"] == "digit"
    for module in (R, F, F.style, F.curves, F.cells):               # nothing that could rebuild a model
        source = inspect.getsource(module)
        imports = [line.strip() for line in source.splitlines() if line.strip().startswith(("import ", "from "))]
        assert not [i for i in imports if "torch" in i or ".estimators" in i or "load_split" in i], imports


def test_several_embeddings_are_named_by_device(tmp_path, monkeypatch):
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    embedding_folder(tmp_path / "res", devices=("cpu", "cuda"))
    names = {p.name for p in R.make_report(tmp_path / "res", tmp_path / "out")["figures"]}
    assert {"embedding_cpu.png", "embedding_cuda.png"} <= names and "embedding.png" not in names


def test_run_command_prints_the_cell_table(monkeypatch, capsys):
    """`mibench run` prints the per-cell summary of the runs it did (tables.run_table), with
    the failed run named, and exits 1 because one run errored."""
    seen = {}

    def sweep(task, **kwargs):
        seen.update(task=task, **kwargs)
        return run_rows()

    monkeypatch.setitem(sys.modules, "mibench.executors", types.SimpleNamespace(sweep=sweep, Options=lambda *a, **k: None))
    assert main(["run", "--task", "tiny", "--out", "somewhere"]) == 1
    printed = capsys.readouterr().out
    assert seen["task"] == "tiny"
    assert printed.startswith(run_table(run_rows()))
    assert "4 runs in somewhere/runs.jsonl" in printed
    header, rows = table_lines(printed)
    assert len(rows) == 2 and "seed" not in header.split()          # no per-run rows any more


def test_truth_figure_draws_a_row_per_task_in_order_of_truth():
    rows = [row(run_id=f"{b}{i}", bound=b, mi_true=t, mi_estimate=t - 0.1 * (i + 1),
                task_params={"name": f"task{i}", "rescale": True})
            for i, t in enumerate([0.4, 1.0, 0.7]) for b in ("infonce", "smile")]
    fig = F.fig_truth(summarize(frame(rows)))
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["task0", "task2", "task1"]      # by truth
    with pytest.raises(ValueError, match="fewer than three tasks"):
        F.fig_truth(summarize(frame(rows[:4])))
