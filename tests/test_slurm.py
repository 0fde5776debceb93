"""``mibench run --executor slurm`` through a real single-node SLURM (real sbatch, squeue,
scancel, scontrol): the rows inline gives, and every run exactly once through cancelled tasks and
arrays, requeues (time-limit signal, preemption), a node failure and two sweeps on one folder;
a submission SLURM refuses is one line with nothing written.

Each sweep is counted as planned, trained (distinct finished runs), lost (planned, not
finished) and duplicated (runs with more than one row) and the counts are printed
(``pytest -m slurm -s`` shows them).
"""

from __future__ import annotations

import collections
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pandas import read_csv

from conftest import TINY_HEAD
from mibench.cli import main
from mibench.results import RUNS_FILE, load_rows, pending_records, read_jsonl

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

GRID = """
[[grid]]
bounds = ["infonce", "nwj"]
negatives = [4, "all"]
seeds = [0, 1]
"""
# neural and sample grids in one preset: InfoNCE, and KSG and CCA on 500 pairs
MIXED = """
[[grid]]
name = "neural"
bounds = ["infonce"]
seeds = [0, 1]
[[grid]]
name = "classical"
estimators = ["ksg", "cca"]
n_samples = 500
seeds = [0, 1]
"""


def preset(tmp_path: Path, steps: int = 30, grid: str = GRID) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_HEAD.format(steps=steps) + grid)
    return str(path)


def slurm_run(task: str, out: Path, *extra: str, steps: int = 30, minutes: float | None = None) -> list[str]:
    """The command of a sweep of ``task`` into ``out`` on the cluster, in jobs of four runs of
    ``steps`` steps each (as mibench estimates them before any has finished: 10 s + steps / 100)."""
    minutes = minutes or (4 * (10 + steps / 100) + 1) / 60
    return [sys.executable, "-m", "mibench", "run", "--task", task, "--out", str(out), "--executor", "slurm",
            "--partition", "debug", "--job-minutes", f"{minutes:.3f}", "--no-progress", *extra]


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen, timeout: float = 180) -> tuple[int, str, str]:
    """The driver's exit status, stdout and stderr; a driver still waiting after ``timeout`` is
    stopped and the test fails."""
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
        pytest.fail(f"the driver still waits after {timeout:g} s:\n{out}\n{err}")
    return proc.returncode, out, err


def array_of(out_dir: Path, cluster) -> str:
    """The job array a sweep into ``out_dir`` submitted (from submitit's folder names)."""
    names = cluster.wait(lambda: [p.name for p in (out_dir / "submitit").glob("*_*") if p.is_dir()],
                         f"a job folder in {out_dir / 'submitit'}")
    return names[0].split("_")[0]


def count(out: Path, scenario: str) -> dict[str, int]:
    """Planned (plan.json), trained (distinct finished runs), lost and duplicated (runs with
    more than one row, by run_id, in runs.jsonl and the pending records) of the folder."""
    planned = set(json.loads((out / "plan.json").read_text())["planned"])
    rows = [r for r in read_jsonl(out / RUNS_FILE) if isinstance(r, dict)]
    rows += [rec["row"] for _, rec in pending_records(out)]
    per_run = collections.Counter(r["run_id"] for r in rows)
    finished = {r["run_id"] for r in load_rows(out) if r["status"] == "ok"}
    counts = {"planned": len(planned), "trained": len(finished & planned), "lost": len(planned - finished),
              "duplicated": sum(n > 1 for n in per_run.values())}
    print(f"\n{scenario}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    return counts


def complete(out: Path, scenario: str, n: int) -> None:
    assert count(out, scenario) == {"planned": n, "trained": n, "lost": 0, "duplicated": 0}


def busy(cluster, out: Path, task: str):
    """A condition: ``task`` runs, has finished one or two runs into ``out`` and is training
    another (it holds a claim), so at least two of its four runs are unfinished."""
    def condition() -> bool:
        pids = {f"{socket.gethostname()}:{pid}" for pid in cluster.pids(task)}
        held = []
        for path in (out / "claims").glob("*") if (out / "claims").is_dir() else []:
            try:
                held.append(json.loads(path.read_text())["worker"])
            except (OSError, ValueError, KeyError, TypeError):
                continue
        done = sum(r.get("worker") in pids for r in load_rows(out))
        return bool(pids) and any(w in pids for w in held) and 1 <= done <= 2
    return condition


@pytest.mark.parametrize("grid", ["gaussian", "mixed"])
def test_slurm_gives_the_rows_inline_gives(tmp_path, slurm_cluster, grid):
    """The tiny Gaussian preset, and one mixing a neural grid with KSG and CCA, through sbatch:
    the same estimates as inline, bit for bit; the driver polls no sacct (this cluster has no
    accounting), so none of submitit's "Bypassing sacct error" warnings."""
    task = preset(tmp_path, grid=GRID if grid == "gaussian" else MIXED)
    n = 8 if grid == "gaussian" else 6
    assert main(["run", "--task", task, "--out", str(tmp_path / "inline"), "--no-progress"]) == 0
    # two jobs: the mixed preset's KSG and CCA runs count 5 s each before any has finished
    minutes = None if grid == "gaussian" else 0.8
    rc, out, err = finish(start(slurm_run(task, tmp_path / "slurm", minutes=minutes), tmp_path))
    assert rc == 0, err + slurm_cluster.logs()
    assert "sacct" not in err, err
    assert re.search(r"submitted 2 jobs \(slurm array \d+;", out), out
    inline = {r["run_id"]: r["mi_estimate"] for r in load_rows(tmp_path / "inline")}
    slurm = {r["run_id"]: r["mi_estimate"] for r in load_rows(tmp_path / "slurm")}
    assert len(inline) == n and slurm == inline
    complete(tmp_path / "slurm", f"same rows as inline ({grid})", n)


def test_a_cancelled_task_fails_the_driver_and_a_resume_finishes_it(tmp_path, slurm_cluster):
    """scancel one running array task: the driver reports it in one line and exits 2 once the
    other task has finished its runs; run again, the cancelled task's runs are trained once."""
    task, out = preset(tmp_path, steps=400), tmp_path / "out"
    driver = start(slurm_run(task, out, steps=400), tmp_path)
    array = array_of(out, slurm_cluster)
    slurm_cluster.wait(busy(slurm_cluster, out, f"{array}_1"), "task 1 training its second or third run")
    subprocess.run(["scancel", f"{array}_1"], check=True)
    rc, _, err = finish(driver)
    assert rc == 2, err
    assert "1 of 2 jobs failed" in err and f"job {array}_1 ended (CANCELLED) without finishing its runs" in err, err
    assert slurm_cluster.tasks(array)[f"{array}_0"] == "COMPLETED"
    before = count(out, "scancel one task, before the resume")
    assert before["lost"] > 0 and before["duplicated"] == 0
    rc, _, err = finish(start(slurm_run(task, out, steps=400), tmp_path))
    assert rc == 0, err
    complete(out, "scancel one task, after the resume", 8)


def test_no_wait_status_and_report_then_a_cancelled_array_resumes(tmp_path, slurm_cluster, capsys):
    """--no-wait returns at once; `mibench status` shows the runs while the jobs run; scancel of
    the whole array; `mibench report` works on the partial folder; a resume: every run once."""
    task, out = preset(tmp_path, steps=400), tmp_path / "out"
    rc, text, err = finish(start(slurm_run(task, out, "--no-wait", steps=400), tmp_path))
    assert rc == 0 and "submitted 2 jobs" in text and "scancel " in text, text + err
    array = array_of(out, slurm_cluster)
    slurm_cluster.wait(busy(slurm_cluster, out, f"{array}_0"), "task 0 training its second or third run")
    assert main(["status", str(out)]) == 0
    status = capsys.readouterr().out
    done, failed, running, waiting = map(int, re.search(
        r"planned 8   done (\d+)   failed (\d+)   running (\d+)   waiting (\d+)", status).groups())
    assert done >= 1 and failed == 0 and done + running + waiting == 8, status
    subprocess.run(["scancel", array], check=True)
    slurm_cluster.wait(lambda: not set(slurm_cluster.tasks(array).values()) & {"RUNNING", "PENDING", "COMPLETING"},
                       "the array cancelled")
    before = count(out, "scancel the array, before the resume")
    assert before["lost"] > 0 and before["duplicated"] == 0
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0      # the partial folder
    assert len(read_csv(tmp_path / "report" / "summary.csv")) >= 1
    rc, _, err = finish(start(slurm_run(task, out, steps=400), tmp_path))
    assert rc == 0, err
    complete(out, "scancel the array, after the resume", 8)


@pytest.mark.parametrize("how", ["time limit signal", "scontrol requeue"])
def test_a_requeued_task_trains_only_its_remaining_runs(tmp_path, slurm_cluster, how):
    """The signal SLURM sends before a job's time limit (USR2, what `scancel --signal` sends
    here): the job checkpoints and requeues itself. `scontrol requeue` (an operator, or
    preemption): SLURM kills and requeues it. Either way the requeued task trains only the runs
    its first start did not finish, and the driver, still waiting, ends with every run once."""
    task, out = preset(tmp_path, steps=400), tmp_path / "out"
    driver = start(slurm_run(task, out, "--time-min", "5", steps=400), tmp_path)
    array = array_of(out, slurm_cluster)
    victim = f"{array}_0"
    slurm_cluster.wait(busy(slurm_cluster, out, victim), "task 0 training its second or third run")
    if how == "time limit signal":
        subprocess.run(["scancel", "--signal=USR2", victim], check=True)
    else:
        subprocess.run(["scontrol", "requeue", victim], check=True)
    slurm_cluster.release(victim)
    rc, _, err = finish(driver)
    assert rc == 0, err + slurm_cluster.logs()
    log = "".join(p.read_text() for p in sorted((out / "submitit" / victim).glob("*_log.*")))   # out, err
    if how == "time limit signal":                 # submitit asked mibench's worker for its checkpoint
        assert "this job is timed-out" in log and "Calling checkpoint method" in log, log
    assert log.count("Starting with JobEnvironment") == 2, log         # it ran twice
    complete(out, f"requeue by {how}", 8)


def test_a_node_failure_mid_sweep_requeues_and_every_run_is_trained_once(tmp_path, slurm_cluster):
    """kill -9 slurmd, its step daemons and the jobs' processes while they train, then start
    slurmd again: SLURM requeues the lost jobs, which train the runs not yet finished; a resume
    afterwards has nothing left to train."""
    task, out = preset(tmp_path, steps=400), tmp_path / "out"
    driver = start(slurm_run(task, out, steps=400), tmp_path)
    array = array_of(out, slurm_cluster)
    slurm_cluster.wait(busy(slurm_cluster, out, f"{array}_0"), "task 0 training its second or third run")
    assert slurm_cluster.fail_node()
    for t in (f"{array}_0", f"{array}_1"):
        slurm_cluster.wait(lambda: slurm_cluster.tasks(array).get(t) in ("PENDING", "COMPLETED"), f"{t} requeued",
                           timeout=120)
        if slurm_cluster.tasks(array)[t] == "PENDING":
            slurm_cluster.release(t)
    rc, _, err = finish(driver)
    assert rc == 0, err + slurm_cluster.logs()
    complete(out, "node failure", 8)
    rc, text, err = finish(start(slurm_run(task, out, steps=400), tmp_path))
    assert rc == 0 and "submitted" not in text, text + err                    # nothing left to run
    complete(out, "node failure, after a resume", 8)


def test_two_sweeps_on_one_folder_train_each_run_once(tmp_path, slurm_cluster):
    """Two drivers submit the same sweep to one folder at once: two job arrays share the runs."""
    task, out = preset(tmp_path, steps=100), tmp_path / "out"
    drivers = [start(slurm_run(task, out, steps=100, minutes=2), tmp_path) for _ in range(2)]   # one job each
    results = [finish(d) for d in drivers]
    assert [rc for rc, _, _ in results] == [0, 0], results
    assert sum(bool(re.search(r"submitted 1 jobs? \(slurm array", text)) for _, text, _ in results) == 2, results
    complete(out, "two sweeps at once", 8)


@pytest.mark.parametrize("problem", ["no sbatch", "unknown partition", "too much memory"])
def test_a_refused_submission_is_one_line_and_writes_nothing(tmp_path, slurm_cluster, capsys, monkeypatch, problem):
    """No sbatch on PATH, or sbatch refusing the array: one line, exit 2, no results folder."""
    out = tmp_path / "out"
    args = ["run", "--task", preset(tmp_path), "--out", str(out), "--executor", "slurm", "--no-progress"]
    if problem == "no sbatch":
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    args += {"no sbatch": [], "unknown partition": ["--partition", "nosuch"], "too much memory": ["--mem-gb", "100000"]}[problem]
    assert main(args) == 2
    err = capsys.readouterr().err
    print(f"\n{problem}: {err.strip()}")
    assert err.count("\n") == 1 and err.startswith("mibench: error: "), err
    expected = {"no sbatch": "needs SLURM's sbatch, which is not on PATH",
                "unknown partition": "sbatch refuses the job array (partition nosuch",
                "too much memory": "Requested node configuration is not available"}[problem]
    assert expected in err, err
    assert not out.exists()


def test_the_slurm_executor_meets_the_executor_contract(tmp_path, slurm_cluster):
    """``check_executor`` (every planned run once, inline's estimates, nothing left) through sbatch."""
    from mibench.testing import check_executor

    check_executor("slurm", tmp_path, {"partition": "debug", "job_minutes": 0.5})
