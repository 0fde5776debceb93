"""Executors and the results store under many writers and faults: every test counts the rows
lost (planned runs without a finished row) and duplicated (runs trained more than once)."""

import collections
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_HEAD, kill_after_rows
from mibench.cli import main
from mibench.executors import sweep
from mibench.results import RUNS_FILE, load_rows, pending_records, read_jsonl
from mibench.store import Store

GRID = """
[[grid]]
bounds = ["infonce", "nwj"]
negatives = [4, "all"]
seeds = [0, 1]
"""


def tiny(tmp_path, steps=30, grid=GRID) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_HEAD.format(steps=steps) + grid)
    return str(path)


def attempts(out) -> collections.Counter:
    """How many times each run was trained: its distinct record ids in runs.jsonl and pending."""
    seen = {}
    rows = [r for r in read_jsonl(Path(out) / RUNS_FILE) if isinstance(r, dict)]
    rows += [rec["row"] for _, rec in pending_records(out)]
    for r in rows:
        seen.setdefault(r["run_id"], set()).add(r["record_id"])
    return collections.Counter({k: len(v) for k, v in seen.items()})


def check_complete(out, n: int) -> None:
    rows = load_rows(out)
    assert len(rows) == n and all(r["status"] == "ok" for r in rows), [r["status"] for r in rows]
    trained = attempts(out)
    assert len(trained) == n and max(trained.values()) == 1, trained          # none lost, none twice


def mibench_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "mibench", *args, "--no-progress"]


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["local", "submitit-local", "submitit-debug"])
def test_every_executor_gives_the_rows_inline_gives(tmp_path, executor):
    inline = sweep(tiny(tmp_path), out=tmp_path / "inline", progress=False)
    other = sweep(tiny(tmp_path), out=tmp_path / executor, progress=False, executor=executor,
                  executor_options={"workers": 2} if executor == "local" else {"job_minutes": 0.1})
    a = inline.set_index("run_id")["mi_estimate"].sort_index()
    b = other.set_index("run_id")["mi_estimate"].sort_index()
    assert len(a) == 8 and a.index.equals(b.index) and a.tolist() == b.tolist()
    check_complete(tmp_path / executor, 8)
    assert not list((tmp_path / executor / "claims").glob("*"))                  # every claim released


@pytest.mark.slow
def test_concurrent_drivers_train_each_run_once(tmp_path):
    """Three drivers started together on one folder: each run trained exactly once."""
    preset = tiny(tmp_path, steps=40, grid=GRID.replace("seeds = [0, 1]", "seeds = [0, 1, 2, 3]"))
    out = tmp_path / "out"
    procs = [subprocess.Popen(mibench_cmd("run", "--task", preset, "--out", str(out)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errs
    check_complete(out, 16)


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_its_run_to_the_others(tmp_path):
    """kill -9 one of two local workers while it trains: the other takes its claim over."""
    out = tmp_path / "out"
    driver = subprocess.Popen(mibench_cmd("run", "--task", tiny(tmp_path, steps=3000), "--out", str(out),
                                          "--executor", "local", "--workers", "2"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    claims = out / "claims"
    deadline = time.time() + 120
    victim = None
    while time.time() < deadline and victim is None:
        for c in claims.glob("*") if claims.is_dir() else []:
            try:
                victim = int(json.loads(c.read_text())["worker"].rpartition(":")[2])
                break
            except (OSError, ValueError, KeyError):
                continue
        time.sleep(0.05)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    err = driver.communicate(timeout=600)[1]
    assert driver.returncode == 0, err
    assert "workers failed (the others finished their runs)" in err
    check_complete(out, 8)


@pytest.mark.slow
def test_a_killed_driver_resumes_without_loss_or_duplicates(tmp_path):
    out = tmp_path / "out"
    cmd = mibench_cmd("run", "--task", tiny(tmp_path, steps=600), "--out", str(out))
    kill_after_rows(cmd, out)
    # what a kill in the middle of a write leaves: a temporary record and a cut line
    (out / "pending" / ".x-y.json.0000.tmp").write_text('{"row": {"run_id"')
    with open(out / RUNS_FILE, "a") as f:
        f.write('{"run_id": "abc", "status": "o')
    assert 2 <= len(load_rows(out)) < 8
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    check_complete(out, 8)


def test_lines_that_are_not_rows_are_reported_once_and_skipped(tmp_path, caplog, capsys):
    out = tmp_path / "out"
    sweep(tiny(tmp_path, steps=10), out=out, progress=False)
    with open(out / RUNS_FILE, "a") as f:
        f.write('[1, 2]\n{"status": "ok"}\n{"run_id": "x", "status": "ok"}\n')
    rows = load_rows(out)
    assert len(rows) == 8 and "x" not in {r["run_id"] for r in rows}       # no mi_estimate: not finished
    text = caplog.text
    assert "runs.jsonl:9: skipping a line that is not a run row" in text
    assert "runs.jsonl:10: skipping a run row without run_id" in text
    assert "runs.jsonl:11: skipping a run row without mi_true, mi_estimate" in text
    assert len(sweep(tiny(tmp_path, steps=10), out=out, progress=False)) == 8     # run resumes
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0        # report works


def test_a_newer_error_row_never_hides_a_good_one(tmp_path, monkeypatch):
    out = tmp_path / "out"
    good = sweep(tiny(tmp_path, steps=10), out=out, progress=False)
    import mibench.runner as runner

    def broken(*a, **k):
        raise RuntimeError("the environment broke")

    monkeypatch.setattr(runner, "fit", broken)
    sweep(tiny(tmp_path, steps=10), out=out, progress=False, force=True)
    assert sum(1 for r in read_jsonl(out / RUNS_FILE) if r["status"] == "error") == 8
    rows = {r["run_id"]: r for r in load_rows(out)}
    assert {k: r["status"] for k, r in rows.items()} == {k: "ok" for k in good["run_id"]}
    assert {k: r["mi_estimate"] for k, r in rows.items()} == dict(zip(good["run_id"], good["mi_estimate"]))


@pytest.mark.parametrize("make_bad", ["file", "file_parent"])
def test_an_unwritable_out_stops_before_any_training(tmp_path, capsys, monkeypatch, make_bad):
    import mibench.runner as runner

    monkeypatch.setattr(runner, "fit", lambda *a, **k: pytest.fail("trained although --out cannot be written"))
    target = tmp_path / "taken"
    target.write_text("not a folder")
    out = target if make_bad == "file" else target / "sub"
    assert main(["run", "--task", tiny(tmp_path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err, err
    assert target.read_text() == "not a folder"


def test_a_write_failure_mid_sweep_is_one_line_and_the_sweep_resumes(tmp_path, capsys, monkeypatch):
    """No space left while the fourth record is written: exit 2 naming the path, no record
    half-written, the three finished runs kept; once space is back the sweep completes."""
    import mibench.store as store

    real_replace, calls = os.replace, []

    def full_disk(src, dst):
        if "pending" in str(dst) and str(dst).endswith(".json"):          # the run records
            calls.append(dst)
            if len(calls) == 4:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))
        return real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", full_disk)
    out = tmp_path / "out"
    assert main(["run", "--task", tiny(tmp_path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and str(out / "pending") in err
    assert len(load_rows(out)) == 3 and not list((out / "pending").glob(".*.tmp"))
    monkeypatch.setattr(store.os, "replace", real_replace)
    assert main(["run", "--task", tiny(tmp_path), "--out", str(out), "--no-progress"]) == 0
    check_complete(out, 8)


@pytest.fixture
def tiny_fs(tmp_path):
    """A 512 KiB tmpfs (root only; where mounting is not allowed, the patched write above
    covers the same path)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_filesystem_stops_cleanly_and_resumes_elsewhere(tmp_path, tiny_fs, capsys):
    (tiny_fs / "filler").write_bytes(b"\0" * (512 * 1024 - 8 * 1024))   # leave almost nothing
    out = tiny_fs / "out"
    assert main(["run", "--task", tiny(tmp_path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    (tiny_fs / "filler").unlink()
    assert main(["run", "--task", tiny(tmp_path), "--out", str(out), "--no-progress"]) == 0
    check_complete(out, 8)


def test_peak_memory_is_measured_per_run(tmp_path, monkeypatch):
    """A large joint critic then small separable ones: the small runs no longer report the
    large run's peak (the process peak is reset per run). The joint critic runs on torch's ops,
    which hold its (B, B, H) pair tensors in memory (the fused kernel would not)."""
    monkeypatch.setenv("MIBENCH_PAIR_KERNEL", "0")
    grid = '[[grid]]\nname = "big"\ncritics = ["joint"]\nbatch_sizes = [512]\nhidden = [512]\n' \
           '[[grid]]\nname = "small"\ncritics = ["separable"]\nseeds = [1, 2]\n'
    df = sweep(tiny(tmp_path, steps=5, grid=grid), out=tmp_path / "out", progress=False)
    peak = df.set_index("grid")["peak_mem_mb"]
    assert peak["big"] > peak["small"].max() + 100          # MB: (512, 512, 512) floats are 512 MB


def test_status_shows_planned_done_failed_and_running(tmp_path, capsys):
    out = tmp_path / "out"
    sweep(tiny(tmp_path, steps=10), out=out, progress=False)
    with open(out / RUNS_FILE, "a") as f:      # one run's latest row is an error without a good one
        f.write(json.dumps({"run_id": "zzz", "status": "error"}) + "\n")
    claim = Store(out).claim(load_rows(out)[0]["run_id"])
    try:
        assert main(["status", str(out)]) == 0
    finally:
        claim.release()
    text = capsys.readouterr().out
    assert "planned 8   done 8   failed 0   running 1" in text
    assert "rows in the folder: 9 (8 finished), 0 not merged yet" in text


def test_the_slurm_executor_writes_an_sbatch_array_script(tmp_path):
    """What submitit would submit for a sample configuration (no cluster needed to write it)."""
    from mibench.executors.cluster import sbatch_script
    from mibench.executors import Options

    text = sbatch_script(Options("slurm", partition="gpu", gpus=1, time_min=30, mem_gb=16, cpus=4),
                         tmp_path, n_jobs=5)
    for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --time=30",
                 "#SBATCH --mem=16GB", "#SBATCH --cpus-per-task=4", "#SBATCH --array=0-4%5"):
        assert line in text, text


def test_a_failed_append_leaves_no_half_line(tmp_path, monkeypatch):
    """No space left in the middle of the merge's append: the file is cut back, so runs.jsonl
    never holds a half-written row, and the records stay pending for the next merge."""
    import builtins

    from mibench.results import append_jsonl

    path = tmp_path / "runs.jsonl"
    append_jsonl(path, {"run_id": "a", "status": "ok"})
    before = path.read_bytes()
    real_open = builtins.open

    class HalfWriter:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            self.f.flush()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

    monkeypatch.setattr(builtins, "open", lambda p, *a, **k: HalfWriter(real_open(p, *a, **k))
                        if str(p) == str(path) else real_open(p, *a, **k))
    with pytest.raises(OSError):
        append_jsonl(path, [{"run_id": "b", "status": "ok"}, {"run_id": "c", "status": "ok"}])
    monkeypatch.setattr(builtins, "open", real_open)
    assert path.read_bytes() == before
