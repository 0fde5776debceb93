"""BMI's report conventions (its v2 table's rounding, its neural fail filter, its heatmap) and
reports over several results folders (a new estimator placed into a leaderboard)."""

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh

from mibench import cli
from conftest import capture_figures, one_error_line
from mibench import figures as F
from mibench import report as R
from mibench.bmi_table import bmi_sd, bmi_text
from mibench.cli import main
from mibench.results import append_jsonl
from mibench.stats import FAIL_FILTERS, bmi_fails, summarize

#: BMI's protocol, as bmi_v2 runs record it.
BMI_SPEC = {"eval_every": 250, "patience": 2, "report": "best", "standardize": True, "batches": "independent",
            "eval_n_samples": 2500, "eval_batch_size": 2500, "eval_batches": 50}
#: Three tasks of the bmi_quick preset, in its order (which is not the order of their truths).
TASKS = {"1v1-normal-0.75": 0.41, "1v1-additive-0.75": 0.33, "multinormal-dense-5-5-0.5": 0.59}


def row(**kw):
    """A run row of a BMI task as the reporter reads it; keyword arguments override, ``spec``
    keys are merged into BMI's protocol."""
    name = kw.pop("name", "1v1-normal-0.75")
    base = dict(run_id="r", task="bmi_quick", family="bmi", grid="g", bound="infonce", critic="joint",
                encoder="identity", n_negatives=255, batch_size=256, device="cpu", seed=0, steps=10000, lr=0.1,
                n_samples=2500, task_params={"name": name, "rescale": True}, status="ok", mi_true=TASKS[name],
                mi_estimate=TASKS[name], mi_std=0.0, pairs_per_s=1000.0, steps_per_s=10.0, staircase=[],
                estimator_kind="neural")
    base["spec"] = {**BMI_SPEC, **kw.pop("spec", {})}
    base.update(kw)
    if base["estimator_kind"] == "sample":
        base.update(critic=None, n_negatives=None, batch_size=None, steps=0, lr=0.0, spec={})
    base["run_id"] = base["run_id"] if base["run_id"] != "r" else \
        f"{base['bound']}-{name}-{base['seed']}-{base['steps']}-{base['n_samples']}"
    return base


def write_folder(folder, rows):
    for r in rows:
        append_jsonl(folder / "runs.jsonl", r)
    return folder




# --------------------------------------------------------------------------------------------
# BMI's v2 table: mean ± sd, the sd rounded up to 2 decimals, at least 0.01


@pytest.mark.parametrize("sd, shown", [(0.001, 0.01), (0.011, 0.02), (0.02, 0.02), (0.0, 0.01), (0.1234, 0.13),
                                       (0.5, 0.5), (1.0001, 1.01), (0.07, 0.08)])
def test_bmi_sd_rounds_up_to_two_decimals_and_at_least_one_hundredth(sd, shown):
    """0.07 shows as 0.08 because BMI computes ceil(100 * sd) / 100 in floating point, and
    100 * 0.07 is a hair above 7: the table prints what BMI's prints."""
    assert bmi_sd(sd) == shown


def test_bmi_text_prints_the_mean_to_two_decimals_and_the_rounded_sd():
    assert bmi_text(0.5234, 0.011) == "0.52 ± 0.02"
    assert bmi_text(1.0, 0.0) == "1.00 ± 0.01"
    assert bmi_text(0.5234, math.nan) == "0.52"           # one seed: no sd
    assert bmi_text(math.nan, math.nan) == "–"
    assert math.isnan(bmi_sd(math.nan))


# --------------------------------------------------------------------------------------------
# The fail filter


def fail_rows():
    """A neural cell with two of BMI's fails (below 0; below 0.1 x the best), one run exactly at
    0.1 x the best (kept: BMI's test is strict) and an errored run; a neural cell where every run
    is below 0; a sample estimator's cell with the same estimates (never filtered)."""
    est = [1.0, 0.9, 0.05, -0.2, 0.1]
    rows = [row(bound="nwj", seed=s, mi_estimate=e) for s, e in enumerate(est)]
    rows.append(row(bound="nwj", seed=9, status="error", mi_estimate=None))
    rows += [row(bound="mine", seed=s, mi_estimate=e) for s, e in enumerate([-0.3, -0.1])]
    rows += [row(bound="ksg", estimator_kind="sample", n_samples=5000, seed=s, mi_estimate=e)
             for s, e in enumerate(est)]
    return pd.DataFrame(rows)


def bmi_rule(runs):
    """BMI's rule as its workflow states it, over (estimator, task, sample size) and neural
    estimators only, written independently of mibench's cells."""
    ok = runs[runs["status"] == "ok"]
    best = ok.groupby(["bound", "n_samples"])["mi_estimate"].transform("max")
    fail = (ok["mi_estimate"] < 0) | (ok["mi_estimate"] < 0.1 * best)
    return (fail & (ok["estimator_kind"] == "neural")).reindex(runs.index, fill_value=False)


def test_fail_filter_drops_exactly_bmis_fails_and_counts_them_per_cell():
    runs = fail_rows()
    assert list(bmi_fails(runs)) == list(bmi_rule(runs))
    plain = summarize(runs, n_boot=10).set_index("bound")
    assert "n_dropped" not in plain                      # no filter: no column, every run counted
    assert plain.loc["nwj", "mean"] == pytest.approx(np.mean([1.0, 0.9, 0.05, -0.2, 0.1]))
    filtered = summarize(runs, n_boot=10, fail_filter="bmi").set_index("bound")
    assert filtered.loc["nwj", ["n_runs", "n_failed", "n_dropped"]].tolist() == [6, 1, 2]
    assert filtered.loc["nwj", "mean"] == pytest.approx(np.mean([1.0, 0.9, 0.1]))
    assert filtered.loc["nwj", "sd"] == pytest.approx(np.std([1.0, 0.9, 0.1], ddof=1))
    assert filtered.loc["mine", "n_dropped"] == 2 and math.isnan(filtered.loc["mine", "mean"])
    assert filtered.loc["ksg", "n_dropped"] == 0            # sample estimators are never filtered
    assert filtered.loc["ksg", "mean"] == pytest.approx(plain.loc["ksg", "mean"])
    assert cli.FAIL_FILTERS == FAIL_FILTERS


def test_report_with_the_fail_filter_says_what_it_dropped(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    rows = fail_rows().to_dict("records")
    rows += [{**r, "task_params": {"name": "1v1-additive-0.75", "rescale": True}, "mi_true": 0.33,
              "run_id": r["run_id"] + "-b"} for r in rows]
    write_folder(tmp_path / "res", rows)
    assert main(["report", str(tmp_path / "res"), "--out", str(tmp_path / "out"), "--fail-filter", "bmi"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("fail filter bmi:"))
    assert "8 run(s) dropped" in line and "in 4 cell(s)" in line and "nwj on 1v1-additive-0.75: 2" in line
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert summary["dropped by the fail filter"].sum() == 8
    table = (tmp_path / "out" / "bmi_table.md").read_text()
    assert "(2 dropped)" in table and "BMI's fail filter" in table
    assert "– (2 dropped)" in table                       # mine: every run dropped


# --------------------------------------------------------------------------------------------
# The BMI-style table and the heatmap draw the same cells


def heatmap_rows():
    """Two neural estimators and KSG on three tasks, three seeds each; MINE's runs on one task
    all fail."""
    rows = []
    for name, truth in TASKS.items():
        for s in range(3):
            rows.append(row(bound="infonce", name=name, seed=s, mi_estimate=truth * (0.8 + 0.1 * s)))
            rows.append(row(bound="ksg", name=name, seed=s, estimator_kind="sample", n_samples=5000,
                            mi_estimate=truth * (1.1 + 0.2 * s)))
            fail = name == "1v1-additive-0.75"
            rows.append(row(bound="mine", name=name, seed=s, mi_estimate=-0.5 if fail else truth * (2.0 + s)))
    return rows


def test_heatmap_cells_are_the_bmi_tables_numbers(tmp_path, monkeypatch):
    saved = capture_figures(monkeypatch)
    rows = heatmap_rows()
    write_folder(tmp_path / "res", rows)
    R.make_report(tmp_path / "res", tmp_path / "out", fail_filter="bmi")
    table = pd.read_csv(tmp_path / "out" / "bmi_table.csv")
    assert list(table["task"]) == list(TASKS)                  # the preset's order, not the truths'
    fig = saved["heatmap"]
    ax = next(a for a in fig.axes if any(isinstance(c, QuadMesh) for c in a.collections))
    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    colours = np.ma.asarray(mesh.get_array()).reshape(len(TASKS), -1)
    estimators = [t.get_text() for t in ax.get_xticklabels()]
    assert estimators == ["infonce", "ksg", "mine", "true MI"]
    assert [t.get_text() for t in ax.get_yticklabels()] == list(TASKS)
    texts = {(round(t.get_position()[0] - 0.5), round(t.get_position()[1] - 0.5)): t.get_text() for t in ax.texts}
    by_hand = pd.DataFrame(rows)
    by_hand = by_hand[by_hand["mi_estimate"] > 0].assign(ratio=lambda d: np.log(d["mi_estimate"] / d["mi_true"]))
    for i, task in enumerate(TASKS):
        for j, label in enumerate(estimators[:-1]):
            runs, mean = table.loc[i, f"{label} runs"], table.loc[i, f"{label} mean [nats]"]
            ratio = table.loc[i, f"{label} log(estimate / truth)"]
            if runs == 0:                                          # every run dropped: grey, marked
                assert np.ma.getmaskarray(colours)[i, j] and texts[(j, i)] == "–"
                continue
            assert colours[i, j] == pytest.approx(np.clip(ratio, -1, 1))
            assert texts[(j, i)] == f"{mean:.1f}"
            mine = by_hand[(by_hand["bound"] == label)
                           & (by_hand["task_params"].map(lambda p: p["name"]) == task)]
            assert ratio == pytest.approx(mine["ratio"].mean())     # the mean of the seeds' log ratios
            assert mean == pytest.approx(mine["mi_estimate"].mean())
        assert colours[i, -1] == 0 and texts[(len(estimators) - 1, i)] == f"{TASKS[task]:.1f}"
    assert table.loc[1, "mine runs"] == 0 and table.loc[1, "mine dropped"] == 3
    assert colours[0, 2] == 1.0                                    # MINE at 2x-4x the truth: clipped


def test_one_estimator_on_several_tasks_gets_the_table_and_the_heatmap(tmp_path, capsys, monkeypatch):
    """One estimator on three tasks of distinct truths: the mi_table's case, no ranking (one
    estimator), and still the BMI-style table and heatmap, with a single seed (no sd)."""
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    write_folder(tmp_path / "res", [row(name=n, mi_estimate=t - 0.05) for n, t in TASKS.items()])
    assert main(["report", str(tmp_path / "res")]) == 0
    out = tmp_path / "res"
    assert not (out / "ranking.md").exists() and (out / "figures" / "heatmap.png").is_file()
    lines = (out / "bmi_table.md").read_text().splitlines()
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == ["task", "true MI [nats]", "infonce"]
    assert [c.strip() for c in lines[4].split("|")[1:-1]] == ["1v1-normal-0.75", "0.41", "0.36"]
    assert "±" not in "\n".join(lines[4:])


def test_default_report_keeps_the_summary_columns(tmp_path, monkeypatch):
    """Without a fail filter the summary has no dropped column (the committed tables stay
    as they were)."""
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    write_folder(tmp_path / "res", heatmap_rows())
    result = R.make_report(tmp_path / "res")
    assert "n_dropped" not in result["summary"]
    assert "dropped by the fail filter" not in pd.read_csv(tmp_path / "res" / "summary.csv")


# --------------------------------------------------------------------------------------------
# Several folders: a newcomer joins a leaderboard


def leaderboard(folder, bounds=("infonce", "nwj"), sample="ksg", **kw):
    """A folder of ``bounds`` under BMI's protocol (``kw`` overriding it) and a sample
    estimator on 5,000 points, three tasks, seeds 0-2."""
    rows = [row(bound=b, name=n, seed=s, mi_estimate=t * (0.7 + 0.05 * i + 0.02 * s), **kw)
            for i, b in enumerate(bounds) for n, t in TASKS.items() for s in range(3)]
    if sample:
        rows += [row(bound=sample, name=n, seed=s, estimator_kind="sample", n_samples=5000,
                     mi_estimate=t * (0.95 + 0.01 * s)) for n, t in TASKS.items() for s in range(3)]
    return write_folder(folder, rows)


def test_compatible_folders_pool_into_one_ranking_and_heatmap(tmp_path, capsys, monkeypatch):
    saved = capture_figures(monkeypatch)
    ref = leaderboard(tmp_path / "reference")
    mine = leaderboard(tmp_path / "mine", bounds=("mybound",), sample="knn")
    assert main(["report", str(mine), str(ref), "--out", str(tmp_path / "board")]) == 0
    out = capsys.readouterr().out
    assert "(the runs of 2 folders pooled)" in out
    ranking = pd.read_csv(tmp_path / "board" / "ranking.csv")
    assert set(ranking["estimator"]) == {"mybound", "knn", "infonce", "nwj", "ksg"}
    assert ranking.loc[ranking["estimator"] == "mybound", "n_tasks"].item() == 3
    assert (tmp_path / "board" / "figures" / "cd_diagram.png").is_file()
    heat = saved["heatmap"].axes[0]
    assert [t.get_text() for t in heat.get_xticklabels()] == ["infonce", "knn", "ksg", "mybound", "nwj", "true MI"]
    assert sorted(p.name for p in mine.iterdir()) == ["runs.jsonl"]       # nothing written into the inputs
    assert sorted(p.name for p in ref.iterdir()) == ["runs.jsonl"]


@pytest.mark.parametrize("change, what", [
    (dict(steps=500), "neural runs' steps: 500 in {mine}, 10000 in {ref}"),
    (dict(spec={"patience": 5}), "neural runs' training protocol: "),
    (dict(spec={"eval_n_samples": 1000}), "neural runs' held-out sample: 1000 pairs in batches of 2500 in {mine}"),
    (dict(n_samples=1000), "neural runs' sample size: 1000 in {mine}, 2500 in {ref}"),
    (dict(lr=0.01), "neural runs' learning rate: 0.01 in {mine}, 0.1 in {ref}"),
])
def test_a_folder_run_under_another_protocol_is_refused_and_nothing_written(tmp_path, capsys, change, what):
    ref = leaderboard(tmp_path / "reference")
    mine = leaderboard(tmp_path / "mine", bounds=("mybound",), sample=None, **change)
    assert main(["report", str(mine), str(ref), "--out", str(tmp_path / "board")]) == 2
    err = one_error_line(capsys)
    assert f"not pooling {mine} with {ref}" in err and what.format(mine=mine, ref=ref) in err, err
    assert "(and 2 more of the 3 tasks they share)" in err
    assert not (tmp_path / "board").exists()


def test_other_seeds_or_sample_sizes_are_refused(tmp_path, capsys):
    ref = leaderboard(tmp_path / "reference")
    seeds = write_folder(tmp_path / "seeds", [row(bound="mybound", name=n, seed=s, mi_estimate=t)
                                              for n, t in TASKS.items() for s in range(2)])
    assert main(["report", str(seeds), str(ref), "--out", str(tmp_path / "board")]) == 2
    assert f"neural runs' seeds: 0,1 in {seeds}, 0-2 in {ref}" in one_error_line(capsys)
    knn = write_folder(tmp_path / "knn", [row(bound="knn", name=n, seed=s, estimator_kind="sample", n_samples=2500,
                                              mi_estimate=t) for n, t in TASKS.items() for s in range(3)])
    assert main(["report", str(knn), str(ref), "--out", str(tmp_path / "board")]) == 2
    assert f"sample runs' sample size: 2500 in {knn}, 5000 in {ref}" in one_error_line(capsys)
    assert not (tmp_path / "board").exists()


def test_several_folders_need_an_out_of_their_own_and_distinct_runs(tmp_path, capsys):
    ref = leaderboard(tmp_path / "reference")
    mine = leaderboard(tmp_path / "mine", bounds=("mybound",), sample=None)
    assert main(["report", str(mine), str(ref)]) == 2
    assert "needs --out" in one_error_line(capsys)
    assert main(["report", str(mine), str(ref), "--out", str(ref / "board")]) == 2
    assert f"lies in {ref}" in one_error_line(capsys)
    assert main(["report", str(ref), str(ref), "--out", str(tmp_path / "board")]) == 2
    assert "given more than once" in one_error_line(capsys)
    copy = leaderboard(tmp_path / "copy", bounds=("infonce",), sample=None)        # the reference's own runs
    assert main(["report", str(copy), str(ref), "--out", str(tmp_path / "board")]) == 2
    assert f"{copy} and {ref} both hold run" in one_error_line(capsys)
    other = write_folder(tmp_path / "other", [row(bound="mybound", task="bmi_v2", seed=s) for s in range(3)])
    assert main(["report", str(other), str(ref), "--out", str(tmp_path / "board")]) == 2
    assert "share no task" in one_error_line(capsys)
    assert not (tmp_path / "board").exists() and sorted(p.name for p in ref.iterdir()) == ["runs.jsonl"]
