"""The truth's standard error: a Monte Carlo truth carries it from the task into every row, the
summary and the printed tables; an exact truth shows none; old rows get it from the upgrade."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mibench import cli
from mibench.distributions import TASK_FAMILIES
from mibench.results import RUNS_FILE, load_results, read_jsonl
from mibench.stats import summarize
from mibench.tables import to_markdown
from mibench.wide_tables import task_display, task_table

REPO = Path(__file__).resolve().parent.parent
GALAXY, DENSE = "2v1-galaxy-0.5-3.0", "multinormal-dense-5-5-0.5"     # Monte Carlo truth, exact truth
PRESET = f"""
name = "truths"
[task]
family = "bmi"
[[grid]]
name = "cca"
estimators = ["cca"]
n_samples = 500
seeds = [0, 1]
task = {{ name = ["{GALAXY}", "{DENSE}"] }}
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("truths")
    (root / "truths.toml").write_text(PRESET)
    out = root / "out"
    assert cli.main(["run", "--task", str(root / "truths.toml"), "--out", str(out), "--no-progress"]) == 0
    return out


def _truth(name):
    return TASK_FAMILIES["bmi"].build({"name": name}).ground_truth()


def test_each_row_carries_its_tasks_standard_error(folder):
    rows = list(read_jsonl(folder / RUNS_FILE))
    assert len(rows) == 4
    for row in rows:
        truth = _truth(row["task_params"]["name"])
        assert row["mi_true_stderr"] == truth.stderr and row["truth_method"] == truth.method
    assert {r["task_params"]["name"]: r["mi_true_stderr"] > 0 for r in rows} == {GALAXY: True, DENSE: False}


def test_tables_show_it_where_the_truth_is_a_monte_carlo_estimate(folder):
    summary = summarize(load_results(folder))
    by_task = {json.loads(p)["name"]: se for p, se in zip(summary["task_params"], summary["mi_true_stderr"])}
    assert by_task == {GALAXY: _truth(GALAXY).stderr, DENSE: 0.0}
    assert "truth s.e. [nats]" in to_markdown(summary)
    assert f"{_truth(GALAXY).stderr:.4f}" in to_markdown(summary)
    assert "truth s.e." not in to_markdown(summary[summary["mi_true_stderr"] == 0])     # all exact: no column
    wide = task_table(summary, summary["bound"])
    shown = dict(zip(task_display(wide)["task"], task_display(wide)["true MI [nats]"]))
    assert shown[GALAXY] == f"{_truth(GALAXY).mi:.3f} ± {_truth(GALAXY).stderr:.4f}"
    assert shown[DENSE] == f"{_truth(DENSE).mi:.3f}"


def test_rows_recorded_before_it_get_it_from_the_upgrade(folder, tmp_path):
    rows = list(read_jsonl(folder / RUNS_FILE))
    old = tmp_path / "old"
    old.mkdir()
    (old / RUNS_FILE).write_text("".join(json.dumps({k: v for k, v in r.items() if k != "mi_true_stderr"}) + "\n"
                                         for r in rows))
    frame = load_results(old)
    unknown = frame[frame["truth_method"] == "monte_carlo"]["mi_true_stderr"]
    assert unknown.isna().all() and len(unknown) == 2             # not recorded, and not invented
    assert (frame[frame["truth_method"] == "analytic"]["mi_true_stderr"] == 0).all()
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "upgrade_results.py"), str(old)],
                          capture_output=True, text=True, check=True)
    assert "4 rows given the truth's standard error" in done.stdout
    assert [r["mi_true_stderr"] for r in read_jsonl(old / RUNS_FILE)] == [r["mi_true_stderr"] for r in rows]
