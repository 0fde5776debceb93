"""Reports of results folders a hostile user makes: figures that draw exactly the cells of the
tables (never a mean of cells), write errors as one line with nothing half-written, folders
with only pending records, and folders where every run failed."""

import errno
import os

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_HEAD, capture_figures, one_error_line
from mibench import figures as F
from mibench import report as R
from mibench.cli import main
from mibench.results import append_jsonl
from mibench.stats import staircase_summary, summarize
from mibench.store import Store


def row(**kw):
    """One run row with the fields the reporter reads; keyword arguments override."""
    base = dict(run_id="r", task="t", grid="g", bound="infonce", critic="separable", encoder="identity",
                n_negatives=63, batch_size=64, device="cpu", seed=0, steps=100, family="gaussian",
                task_params={"dim": 2, "mi": 2.0}, status="ok", mi_true=2.0, mi_estimate=2.0,
                mi_std=0.1, pairs_per_s=1000.0, steps_per_s=10.0, staircase=[])
    base.update(kw)
    return base


def write_folder(folder, rows, traces=()):
    """A results folder as a merge leaves it: runs.jsonl and traces.jsonl."""
    for r in rows:
        append_jsonl(folder / "runs.jsonl", r)
    for t in traces:
        append_jsonl(folder / "traces.jsonl", t)



def points(ax):
    """The (x, y) of every data point an axis draws with ``errorbar``, as a sorted list."""
    out = []
    for container in ax.containers:
        line = container.lines[0]
        out += [(float(x), float(y)) for x, y in zip(line.get_xdata(), line.get_ydata())]
    return sorted(out)


def truth_groups(ax):
    """The truth groups of an estimate-vs-truth axis drawn by truth: (x0, x1, truth) of each dashed
    truth segment, the group's band. Checks that no two bands overlap and that every tick lies in
    a band, one per band, labelled with that band's truth (no continuous scale between them)."""
    ax.figure.canvas.draw()
    bands = sorted((float(min(line.get_xdata())), float(max(line.get_xdata())), float(line.get_ydata()[0]))
                   for line in ax.get_lines() if line.get_linestyle() == "--")
    assert bands and all(a[1] < b[0] for a, b in zip(bands, bands[1:])), f"truth bands overlap: {bands}"
    lo, hi = ax.get_xlim()
    ticks = [(float(x), t.get_text()) for x, t in zip(ax.get_xticks(), ax.get_xticklabels()) if lo <= x <= hi]
    for x0, x1, truth in bands:
        labels = [text for x, text in ticks if x0 <= x <= x1]
        assert len(labels) == 1, f"the group of truth {truth} has ticks {labels}"
        value = labels[0].split("\n")[0]                  # a second line may count the tasks
        digits = len(value.partition(".")[2])
        assert digits >= 2 and abs(float(value) - truth) <= 0.5 * 10 ** -digits, (labels[0], truth)
    outside = [text for x, text in ticks if not any(x0 <= x <= x1 for x0, x1, _ in bands)]
    assert not outside, f"ticks between truth groups: {outside}"
    return bands


def truth_points(ax):
    """(truth of its group, y) of every errorbar marker of ``ax``, sorted; each marker must lie
    in exactly one truth group (``truth_groups``)."""
    bands = truth_groups(ax)
    out = []
    for x, y in points(ax):
        truth = [t for x0, x1, t in bands if x0 <= x <= x1]
        assert len(truth) == 1, f"the marker at x={x} lies in {len(truth)} truth groups"
        out.append((truth[0], y))
    return sorted(out)


def legend_texts(fig):
    return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def close(a, b):
    return len(a) == len(b) and np.allclose(np.array(a, dtype=float), np.array(b, dtype=float))


# --------------------------------------------------------------------------------------------
# Figures draw the cells of the tables


TINY = TINY_HEAD.format(steps=30) + """
[[grid]]
name = "mi"
bounds = ["infonce", "nwj"]
seeds = [0, 1, 2]
task = { mi = [0.5, 1.0] }
"""


def test_two_sweeps_differing_only_in_steps_are_two_lines_in_every_figure(tmp_path, monkeypatch, capsys):
    """The issue's case: `--steps 20` then `--steps 40` into one folder. The table keeps the
    two budgets apart; every figure must too: each plotted bias is a cell's bias, every cell
    is plotted, and the legend names the steps."""
    preset = tmp_path / "tiny.toml"
    preset.write_text(TINY)
    out = tmp_path / "res"
    for steps in ("20", "40"):
        assert main(["run", "--task", str(preset), "--bounds", "infonce", "--seeds", "0,1", "--steps", steps,
                     "--out", str(out), "--no-progress"]) == 0
    saved = capture_figures(monkeypatch)
    result = R.make_report(out)
    cells = result["summary"]
    assert len(cells) == 4 and sorted(set(cells["steps"])) == [20, 40]
    assert cells.groupby("mi_true")["bias"].nunique().eq(2).all()        # the budgets differ

    fig = saved["bias_sd"]
    assert close(points(fig.axes[0]), sorted(zip(cells["mi_true"], cells["bias"])))
    assert {"InfoNCE, steps=20", "InfoNCE, steps=40"} <= set(legend_texts(fig))

    fig = saved["estimate_vs_truth"]            # each cell's mean in its truth's group
    assert close(truth_points(fig.axes[0]), sorted(zip(cells["mi_true"], cells["mean"])))

    fig = saved["training_mi"]                  # a held-out marker per cell in each MI panel
    for ax, mi in zip(fig.axes, (0.5, 1.0)):
        means = sorted(cells.loc[cells["mi_true"] == mi, "mean"])
        assert close(sorted(y for _, y in points(ax)), means)
    assert {"InfoNCE, steps=20", "InfoNCE, steps=40"} <= set(legend_texts(fig))

    labels = [t.get_text() for t in saved["throughput"].axes[0].get_yticklabels()]
    assert labels == ["InfoNCE, steps=20", "InfoNCE, steps=40"]
    assert "tasks (mi)" in saved["throughput"].get_supxlabel()        # pooled: said so


def test_two_presets_in_one_folder_are_told_apart_by_name():
    rows = [row(run_id=f"{task}{mi}{s}", task=task, seed=s, mi_true=mi, task_params={"mi": mi},
                mi_estimate=mi - (0.5 if task == "short" else 0.1) + 0.01 * s)
            for task in ("short", "long") for mi in (1.0, 2.0) for s in (0, 1)]
    cells = summarize(pd.DataFrame(rows))
    fig = F.fig_bias_sd(cells)
    assert close(points(fig.axes[0]), sorted(zip(cells["mi_true"], cells["bias"])))
    assert {"InfoNCE, task=long", "InfoNCE, task=short"} <= set(legend_texts(fig))
    fig = F.fig_truth(summarize(pd.DataFrame([*rows, *[row(run_id=f"x{s}", task=t, seed=s, mi_true=3.0,
                                                           task_params={"mi": 3.0}, mi_estimate=2.5)
                                                       for t in ("short", "long") for s in (0, 1)]])))
    assert len(fig.axes[0].containers) == 2                     # a marker row per preset, not one


def test_tasks_of_equal_truth_are_points_of_their_own_not_their_mean():
    """BMI-like: two tasks share a truth. Before, bias_sd drew the mean of the two."""
    rows = [row(run_id=f"{name}{b}", bound=b, task_params={"name": name}, mi_true=t,
                mi_estimate=t + d + (0.05 if b == "nwj" else 0.0))
            for b in ("infonce", "nwj")
            for name, t, d in (("a", 0.5, -0.1), ("b", 1.0, -0.1), ("c", 1.0, -0.6))]
    cells = summarize(pd.DataFrame(rows))
    fig = F.fig_bias_sd(cells)
    assert close(points(fig.axes[0]), sorted(zip(cells["mi_true"], cells["bias"])))
    texts = legend_texts(fig)                                          # tasks are points, not lines
    assert {"InfoNCE", "NWJ"} <= set(texts) and not [t for t in texts if t.startswith(("InfoNCE,", "NWJ,"))]
    fig = F.fig_estimate_vs_truth(cells)
    assert close(truth_points(fig.axes[0]), sorted(zip(cells["mi_true"], cells["mean"])))
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["0.50", "1.00\n2 tasks"]


def test_estimate_vs_truth_puts_every_marker_at_its_truth():
    """x is categorical by truth: every marker lies in its own truth's group, whose tick names
    that truth, the estimators of a group side by side, no two groups' bands overlapping and no
    tick between them. Close truths (1.0 and 1.2) are groups of their own; an estimator with a
    cell at one truth only takes a place in that group only. A panel with too many truths puts
    each marker at its exact truth instead."""
    rows = [row(run_id=f"{b}{c}{mi}{s}", bound=b, critic=c, seed=s, mi_true=mi, task_params={"mi": mi},
                mi_estimate=mi - 0.3 + 0.1 * s)
            for b in ("infonce", "nwj", "smile") for c in ("separable", "joint") for mi in (1.0, 1.2, 4.0)
            for s in (0, 1)]
    rows += [row(run_id=f"js{s}", bound="js", seed=s, mi_true=4.0, task_params={"mi": 4.0}, mi_estimate=3.0 + s)
             for s in (0, 1)]
    cells = summarize(pd.DataFrame(rows))
    ax = F.fig_estimate_vs_truth(cells).axes[0]
    assert close(truth_points(ax), sorted(zip(cells["mi_true"], cells["mean"])))
    assert [t for _, _, t in truth_groups(ax)] == [1.0, 1.2, 4.0]
    for x0, x1, truth in truth_groups(ax):                  # one place per estimator in each group
        xs = [float(x) for c in ax.containers for x in c.lines[0].get_xdata() if x0 <= x <= x1]
        assert len(xs) == (7 if truth == 4.0 else 6) and len(set(np.round(xs, 9))) == len(xs), (truth, xs)
    assert "side by side" in ax.get_xlabel()

    many = [row(run_id=f"{b}{mi}{s}", bound=b, seed=s, mi_true=mi, task_params={"mi": mi}, mi_estimate=mi - 0.1 * s)
            for b in ("infonce", "nwj") for mi in map(float, range(1, 11)) for s in (0, 1)]     # ten truths
    cells = summarize(pd.DataFrame(many))
    assert cells["mi_true"].round(6).nunique() > F.cells.TRUTH_GROUPS
    ax = F.fig_estimate_vs_truth(cells).axes[0]
    assert close(points(ax), sorted(zip(cells["mi_true"], cells["mean"])))


def test_negatives_throughput_and_staircase_keep_cells_apart():
    """Runs of one bound and critic on two devices / at two budgets: each its own line or bar,
    every point a cell's mean over its seeds."""
    runs = pd.DataFrame([row(run_id=f"{d}{k}{s}", device=d, n_negatives=k, seed=s,
                             mi_estimate=(1.0 if d == "cpu" else 1.6) + 0.1 * s,
                             pairs_per_s=100.0 if d == "cpu" else 1e4)
                         for d in ("cpu", "cuda") for k in (1, 8) for s in (0, 1)])
    fig = F.fig_negatives(runs)
    cells = summarize(runs)
    assert close(points(fig.axes[0]), sorted(zip(cells["n_negatives"], cells["mean"])))
    assert {"InfoNCE, device=cpu", "InfoNCE, device=cuda"} <= set(legend_texts(fig))

    runs = pd.DataFrame([row(run_id=f"{n}{s}", steps=n, seed=s, pairs_per_s=float(n)) for n in (20, 1500)
                         for s in (0, 1)])
    labels = [t.get_text() for t in F.fig_throughput(runs).axes[0].get_yticklabels()]
    assert labels == ["InfoNCE, steps=20", "InfoNCE, steps=1500"]

    traces, stair = [], []
    for n, level in ((100, 0.0), (200, 1.0)):                  # two budgets, estimates 0 and 1
        for s in (0, 1):
            rid = f"s{n}{s}"
            stair.append(row(run_id=rid, steps=n, seed=s, staircase=[1.0, 3.0], task_params={"dim": 2}))
            steps = list(range(0, n, 10))
            traces.append(pd.DataFrame({"run_id": rid, "step": steps, "estimate": level,
                                        "mi_true": [1.0 if t < n / 2 else 3.0 for t in steps]}))
    traces, stair = pd.concat(traces, ignore_index=True), pd.DataFrame(stair)
    fig = F.fig_staircase(traces, stair)
    drawn = [line for line in fig.axes[0].get_lines() if line.get_linewidth() == pytest.approx(1.1)
             and line.get_drawstyle() != "steps-post" and line.get_linestyle() == "-"]
    assert sorted({float(np.mean(line.get_ydata())) for line in drawn}) == [0.0, 1.0]     # not 0.5
    assert {"InfoNCE, steps=100", "InfoNCE, steps=200"} <= set(legend_texts(fig))
    summary = staircase_summary(traces, stair)
    assert sorted(summary["mean"]) == [0.0, 0.0, 1.0, 1.0]


def test_staircase_cells_with_other_levels_are_not_averaged():
    traces, runs = [], []
    for s, levels in enumerate(([1.0, 2.0], [4.0, 8.0])):
        rid = f"s{s}"
        runs.append(row(run_id=rid, seed=s, staircase=levels, task_params={"dim": 2}))
        traces.append(pd.DataFrame({"run_id": rid, "step": list(range(0, 100, 10)), "estimate": levels[0],
                                    "mi_true": [levels[0] if t < 50 else levels[1] for t in range(0, 100, 10)]}))
    summary = staircase_summary(pd.concat(traces, ignore_index=True), pd.DataFrame(runs))
    assert sorted(summary["mi_true"]) == [1.0, 2.0, 4.0, 8.0] and set(summary["n_runs"]) == {1}


def test_line_labels_name_only_what_tells_lines_apart():
    from mibench.figures.lines import line_labels

    frame = pd.DataFrame([row(grid=g, steps=n, n_negatives=k, task_params={"mi": mi}, mi_true=mi)
                          for g, n, k in (("a", 20, 1), ("a", 20, 8), ("b", 20, 32)) for mi in (1.0, 2.0)])
    # the grids meet at no K: one line; the truth is a line key (each mi spans two K)
    assert set(line_labels(frame, along="n_negatives")) == {"mi=1", "mi=2"}
    # along the truth, K tells the lines apart; the grid follows K, so it is not named
    assert set(line_labels(frame, along="mi_true")) == {"K=1", "K=8", "K=32"}
    assert set(line_labels(frame.iloc[:2], along="mi_true")) == {""}       # one cell per position
    # a task at each truth (BMI's) is a point of the line, not a line of its own
    tasks = pd.DataFrame([row(task_params={"name": n}, mi_true=t) for n, t in (("a", 1), ("b", 1), ("c", 2))])
    assert set(line_labels(tasks, along="mi_true")) == {""}
    # pooled keys are never named
    assert set(line_labels(frame, along="mi_true", pooled=("n_negatives", "grid"))) == {""}


def test_reference_like_folder_with_one_cell_per_line_keeps_its_legend(monkeypatch, tmp_path):
    """A folder with one cell per bound, critic and truth: no label added anywhere."""
    runs = [row(run_id=f"{b}{c}{mi}{s}", bound=b, critic=c, seed=s, mi_true=mi, task_params={"mi": mi},
                grid=c, mi_estimate=mi * 0.9 + 0.01 * s)
            for b in ("infonce", "nwj") for c in ("separable", "joint") for mi in (2.0, 4.0) for s in (0, 1)]
    traces = [{"run_id": r["run_id"], "step": [0, 50], "estimate": [0.0, r["mi_estimate"]],
               "mi_true": [r["mi_true"]] * 2} for r in runs]
    write_folder(tmp_path / "res", runs, traces)
    saved = capture_figures(monkeypatch)
    R.make_report(tmp_path / "res")
    for name in ("bias_sd", "estimate_vs_truth", "training_joint", "training_separable"):
        texts = legend_texts(saved[name])
        assert {"InfoNCE", "NWJ"} <= set(texts), (name, texts)
        assert not [t for t in texts if t.startswith(("InfoNCE,", "NWJ,"))], (name, texts)
    assert saved["throughput"].get_supxlabel().endswith("tasks (mi)")


# --------------------------------------------------------------------------------------------
# Write errors: one line, nothing half-written


@pytest.fixture
def folder(tmp_path):
    runs = [row(run_id=f"{b}{mi}{s}", bound=b, seed=s, mi_true=mi, task_params={"mi": mi},
                mi_estimate=mi - 0.2 + 0.01 * s) for b in ("infonce", "nwj") for mi in (1.0, 2.0) for s in (0, 1)]
    write_folder(tmp_path / "res", runs)
    return tmp_path / "res"



def test_report_into_a_file_or_past_one_is_one_line(folder, tmp_path, capsys):
    """--out that is a file, DIR/figures that is a file, --out below a file: exit 2, one line
    naming the path, nothing written. (Tests run as root, where a read-only folder does not stop
    a write, so the file in the way stands for every folder that cannot be written.)"""
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out in (blocker, blocker / "below"):
        assert main(["report", str(folder), "--out", str(out)]) == 2
        err = one_error_line(capsys)
        assert str(blocker) in err and "is a file, not a folder" in err
    (folder / "figures").write_text("not a folder")
    assert main(["report", str(folder)]) == 2
    assert str(folder / "figures") in one_error_line(capsys)
    assert not (folder / "summary.md").exists()                  # refused before writing anything
    ref = tmp_path / "ref"
    ref.mkdir()
    os.rename(folder, ref / "res")
    (ref / "res" / "figures").unlink()
    assert main(["figures", "--reference", str(ref), "--out", str(blocker)]) == 2
    assert str(blocker) in one_error_line(capsys)


def test_a_full_disk_leaves_no_partial_table_or_figure(folder, monkeypatch, capsys):
    """Every file is written to a temporary name and renamed when whole: a write that fails
    half-way (no space left) leaves neither the partial file nor the temporary one, and the
    report ends in one line naming the file and the cause."""
    from matplotlib.figure import Figure

    def full_disk(self, fname, *args, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Figure, "savefig", full_disk)
    assert main(["report", str(folder)]) == 2
    err = one_error_line(capsys)
    assert "No space left on device" in err and f"cannot write {folder / 'figures'}{os.sep}" in err
    assert not [p.name for p in (folder / "figures").iterdir()]           # no half figure, no temp

    monkeypatch.undo()
    original = pd.DataFrame.to_csv

    def full_csv(self, path, *args, **kwargs):
        original(self.iloc[:1], path, *args, **kwargs)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_csv", full_csv)
    for path in folder.glob("*.*"):                     # whole files the first report wrote
        if path.name != "runs.jsonl":
            path.unlink()
    assert main(["report", str(folder)]) == 2
    err = one_error_line(capsys)
    assert "No space left on device" in err and ".csv" in err
    assert not [p.name for p in folder.rglob("*.csv")] and not [p for p in folder.rglob("*") if ".tmp" in p.name]


# --------------------------------------------------------------------------------------------
# Pending records, failed runs


def test_report_reads_a_folder_with_only_pending_records(tmp_path, capsys, monkeypatch):
    """Before the first merge (`run --executor local --no-wait`), the finished runs are records
    in pending/: the report reads them as every reader does."""
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    out = tmp_path / "res"
    store = Store(out)
    for i, mi in enumerate((1.0, 2.0, 1.0, 2.0)):
        r = row(run_id=f"p{i}", seed=i // 2, mi_true=mi, mi_estimate=mi - 0.1, task_params={"mi": mi},
                record_id=f"rec{i}")
        store.put(r, {"run_id": r["run_id"], "step": [0, 10], "estimate": [0.0, mi], "mi_true": [mi, mi]})
    assert not (out / "runs.jsonl").exists()
    assert main(["report", str(out)]) == 0
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["runs"]) == [2, 2]
    assert (out / "figures" / "bias_sd.png").is_file() and not (out / "runs.jsonl").exists()
    capsys.readouterr()
    assert main(["figures", "--reference", str(tmp_path), "--out", str(tmp_path / "figs")]) == 0
    assert capsys.readouterr().out.startswith("res: 2 summary rows")


def test_report_where_every_run_failed_is_one_line_with_the_first_error(tmp_path, capsys):
    runs = [row(run_id=f"e{s}", seed=s, status="error", mi_estimate=None, mi_true=None,
                error=f"RuntimeError: out of memory\n  at step {s}") for s in range(3)]
    runs.append(row(run_id="d", status="diverged", mi_estimate=None))
    write_folder(tmp_path / "res", runs)
    assert main(["report", str(tmp_path / "res")]) == 2
    err = one_error_line(capsys)
    assert "no run finished ok (1 diverged, 3 error)" in err and "RuntimeError: out of memory" in err
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == ["runs.jsonl"]
