"""A results folder as a hostile user leaves it: claims, locks, records, trace lines and plans
that are not what they claim to be, a driver stopped by a signal, a forced redo that fails.
Every command ends in exit 0 or one ``mibench: error:`` line, never hangs, and loses no good row."""

import json
import math
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY_HEAD
from mibench.cli import main
from mibench.executors import Options, sweep
from mibench.results import PENDING_DIR, RUNS_FILE, TRACES_FILE, iter_rows, load_rows, load_traces, pending_records
from mibench.store import CLAIMS_DIR, LOCK_FILE, Store

GRID = """
[[grid]]
bounds = ["infonce", "nwj"]
seeds = [0, 1]
"""
SAMPLE_GRID = """
[[grid]]
estimators = ["ksg", "cca"]
n_samples = 300
"""


def tiny(tmp_path, steps=20, grid=GRID) -> str:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_HEAD.format(steps=steps) + grid)
    return str(path)


def planned_ids(preset: str, out) -> list[str]:
    from mibench.plan import plan_sweep
    from mibench.presets import load_preset

    return [s.run_id for s in plan_sweep(load_preset(preset), out=out, force=True).specs]


def mibench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command line in a process of its own; a hang is a TimeoutExpired."""
    return subprocess.run([sys.executable, "-m", "mibench", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "MPLBACKEND": "Agg"})


def age(path: Path, seconds: float = 60.0) -> None:
    """Make a file look as if it had been left there ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def one_line_or_ok(res: subprocess.CompletedProcess) -> None:
    """Exit 0, or one ``mibench: error:`` line; never a traceback."""
    text = res.stdout + res.stderr
    assert "Traceback" not in text, text[-3000:]
    if res.returncode != 0:
        errors = [line for line in res.stderr.splitlines() if line.startswith("mibench: error:")]
        assert len(errors) == 1, res.stderr[-3000:]


NOT_CLAIMS = {"x": b"x", "5": b"5", "list": b"[1]", "empty": b"", "bytes": bytes(range(256))[::7],
              "string": b'"host:1"', "worker-number": b'{"worker": 5}', "no-worker": b'{"since": 1}'}


# ------------------------------------------------------------------------------------------------ claims and the lock


@pytest.mark.parametrize("content", list(NOT_CLAIMS.values()), ids=list(NOT_CLAIMS))
def test_a_claim_that_is_not_a_claim_is_taken_over_once_old(tmp_path, content):
    store = Store(tmp_path)
    store.check_writable()
    path = tmp_path / CLAIMS_DIR / "run1"
    path.write_bytes(content)
    assert store.running() == {}                      # names no live worker: not running
    assert store.claim("run1") is None                # fresh: it may be a claim being written
    age(path)
    claim = store.claim("run1")                       # old: abandoned, taken over
    assert claim is not None
    assert json.loads(path.read_text())["worker"].endswith(f":{os.getpid()}")
    assert list(store.running()) == ["run1"]
    claim.release()


@pytest.mark.slow
def test_a_sweep_takes_over_a_garbage_claim_instead_of_waiting_for_ever(tmp_path):
    preset, out = tiny(tmp_path), tmp_path / "out"
    ids = planned_ids(preset, out)
    Store(out).check_writable()
    for run_id, content in zip(ids, (b"x", b"5", b"[1]", b"")):
        (out / CLAIMS_DIR / run_id).write_bytes(content)
        age(out / CLAIMS_DIR / run_id)
    res = mibench("run", "--task", preset, "--out", str(out), "--no-progress", timeout=60)
    assert res.returncode == 0, res.stderr
    rows = load_rows(out)
    assert sorted(r["run_id"] for r in rows) == sorted(ids) and all(r["status"] == "ok" for r in rows)
    assert not list((out / CLAIMS_DIR).iterdir())


def test_status_counts_a_run_with_a_garbage_claim_as_waiting(tmp_path, capsys):
    preset, out = tiny(tmp_path, steps=5), tmp_path / "out"
    sweep(preset, out=out, progress=False)
    rows = load_rows(out)
    lines = (out / RUNS_FILE).read_text().splitlines()
    (out / RUNS_FILE).write_text("\n".join(lines[1:]) + "\n")           # one run not done
    (out / CLAIMS_DIR / rows[0]["run_id"]).write_text("5")
    assert main(["status", str(out)]) == 0
    assert "planned 4   done 3   failed 0   running 0   waiting 1" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"x", b"5", b"[1]", b"", b'{"worker": 5}'], ids=["x", "5", "list", "empty", "number"])
def test_a_garbage_merge_lock_is_taken_over_once_old(tmp_path, content):
    out = tmp_path / "out"
    sweep(tiny(tmp_path, steps=5), out=out, progress=False)
    rows = list(iter_rows(out))
    (out / RUNS_FILE).unlink()
    store = Store(out)
    for row in rows:
        store.put(row, {"run_id": row["run_id"], "step": [], "estimate": [], "mi_true": []})
    (out / LOCK_FILE).write_bytes(content)
    assert store.merge() == 0                         # fresh: it may be a lock being written
    age(out / LOCK_FILE)
    assert store.merge() == 4 and len(load_rows(out)) == 4 and not pending_records(out)
    assert not (out / LOCK_FILE).exists()


def test_run_names_no_runs_jsonl_that_does_not_exist(tmp_path, capsys):
    """The merge lock is held (here: a fresh file that is not a lock) when the sweep ends: the
    closing line says where the rows are rather than naming a runs.jsonl that is not there."""
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("x")
    assert main(["run", "--task", tiny(tmp_path, steps=5), "--out", str(out), "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert not (out / RUNS_FILE).exists()
    assert f"{out / RUNS_FILE} " not in last and f"4 records in {out / PENDING_DIR} not merged" in last, last


# ------------------------------------------------------------------------------------------------ records, traces, plan


def _good_row(out) -> dict:
    return dict(next(iter_rows(out)))


BAD_RECORDS = {"bytes": bytes(range(256))[::3], "list": b"[1, 2]", "empty-object": b"{}", "row-number": b'{"row": 5}',
               "row-list": b'{"row": [1], "trace": {}}', "row-without-run-id": b'{"row": {"status": "ok"}}',
               "truncated": b'{"row": {"run_id": "abc", "sta', "row-wrong-types": None}


@pytest.mark.parametrize("name", list(BAD_RECORDS))
def test_a_corrupt_pending_record_is_skipped_then_set_aside(tmp_path, capsys, caplog, name):
    """status, report and run work; the record is warned about, then moved to corrupt/ by the
    next merge (kept, no longer read); a good record beside it whose trace is not a trace is
    merged without its trace."""
    preset, out = tiny(tmp_path, steps=5), tmp_path / "out"
    sweep(preset, out=out, progress=False)
    content = BAD_RECORDS[name]
    if content is None:
        content = json.dumps({"row": {**_good_row(out), "mi_estimate": "x", "record_id": [1]}}).encode()
    bad = out / PENDING_DIR / f"bad-{name}.json"
    bad.write_bytes(content)
    extra = {**_good_row(out), "record_id": "feedfeed", "mi_estimate": 0.125}
    (out / PENDING_DIR / "good.json").write_text(json.dumps({"row": extra, "trace": 5}))
    assert main(["status", str(out)]) == 0
    assert "rows in the folder: 4 (4 finished), 1 not merged yet" in capsys.readouterr().out
    assert f"{bad}:1: skipping a record" in caplog.text
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert len(load_traces(out)["run_id"].unique()) == 4
    assert main(["run", "--task", preset, "--out", str(out), "--no-progress"]) == 0
    assert not bad.exists() and [p.read_bytes() for p in (out / "corrupt").iterdir()] == [content]
    assert not pending_records(out) and "feedfeed" in {r["record_id"] for r in iter_rows(out)}
    assert all(isinstance(json.loads(line), dict) for line in (out / TRACES_FILE).read_text().splitlines())


BAD_ROWS = ['{"run_id": "a", "status": 5}', '{"run_id": "b", "status": "ok", "mi_true": 0.5, "mi_estimate": "x"}',
            '{"run_id": "c", "status": "ok", "mi_true": 0.5, "mi_estimate": null}',
            '{"run_id": "d", "status": "error", "record_id": [1]}', '{"run_id": "e", "status": "error", "schema_version": "2"}',
            '{"run_id": "f", "status": "error", "schema_version": 1, "spec": {"estimator": 5}}']


def test_wrong_typed_run_rows_are_reported_and_skipped(tmp_path, capsys, caplog):
    """Rows whose fields have the wrong type: skipped by readers (an "ok" row needs its estimate,
    ids are strings, schema_version an integer); a schema-1 row whose spec is not one keeps its id."""
    preset, out = tiny(tmp_path, steps=5), tmp_path / "out"
    sweep(preset, out=out, progress=False)
    with open(out / RUNS_FILE, "a") as f:
        f.write("\n".join(BAD_ROWS) + "\n")
    row = _good_row(out)
    Store(out).put({**row, "record_id": "feedfeed"}, {"run_id": row["run_id"], "step": [], "estimate": [], "mi_true": []})
    assert main(["status", str(out)]) == 0
    assert "rows in the folder: 5 (4 finished), 1 not merged yet" in capsys.readouterr().out
    for number in range(5, 10):
        assert f"runs.jsonl:{number}: skipping a run row with" in caplog.text
    assert main(["run", "--task", preset, "--out", str(out), "--no-progress"]) == 0
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    assert not pending_records(out) and "feedfeed" in {r.get("record_id") for r in iter_rows(out)}


BAD_TRACES = ['5', '[1]', '"x"', 'null', '{"run_id": "x", "step": 5}', '{"run_id": "x", "step": 5, "estimate": 1, "mi_true": 1}',
              '{"run_id": "x", "step": [1, 2], "estimate": [1], "mi_true": [1]}',
              '{"run_id": "x", "step": ["a"], "estimate": ["b"], "mi_true": [1]}', '{"run_id": 5, "step": [], "estimate": [], "mi_true": []}']


def test_malformed_trace_lines_are_reported_and_skipped(tmp_path, caplog):
    out = tmp_path / "out"
    sweep(tiny(tmp_path, steps=5), out=out, progress=False)
    with open(out / TRACES_FILE, "a") as f:
        f.write("\n".join(BAD_TRACES) + "\n")
    traces = load_traces(out)
    assert sorted(traces["run_id"].unique()) == sorted(r["run_id"] for r in load_rows(out))
    assert traces["estimate"].dtype.kind == "f" and traces["step"].dtype.kind == "i"
    for number in range(5, 5 + len(BAD_TRACES)):
        assert f"traces.jsonl:{number}: skipping" in caplog.text


@pytest.mark.parametrize("plan", ["garbage{", "[]", "{}", '{"sweep_id": "a", "preset": "p", "executor": "inline", '
                                  '"created": "now", "planned": 5}', "\xff\xfe"])
def test_a_corrupt_plan_json_is_no_plan(tmp_path, capsys, plan):
    out = tmp_path / "out"
    preset = tiny(tmp_path, steps=5)
    sweep(preset, out=out, progress=False)
    (out / "plan.json").write_bytes(plan.encode("latin-1"))
    assert main(["status", str(out)]) == 0
    assert "no sweep planned here (plan.json is not a plan)" in capsys.readouterr().out
    assert main(["run", "--task", preset, "--out", str(out), "--no-progress"]) == 0
    assert main(["status", str(out)]) == 0
    assert "planned 4   done 4" in capsys.readouterr().out


# ------------------------------------------------------------------------------------------------ forced redos, sample presets


def test_a_failed_forced_redo_is_an_error_not_the_old_success(tmp_path, monkeypatch, capsys):
    preset, out = tiny(tmp_path, steps=5), tmp_path / "out"
    good = sweep(preset, out=out, progress=False)
    import mibench.runner as runner

    def broken(*a, **k):
        raise RuntimeError("the environment broke")

    monkeypatch.setattr(runner, "fit", broken)
    df = sweep(preset, out=out, progress=False, force=True)
    assert (df["status"] == "error").all() and len(df) == len(good)
    assert main(["run", "--task", preset, "--out", str(out), "--no-progress", "--force"]) == 1
    monkeypatch.undo()
    assert {r["status"] for r in load_rows(out)} == {"ok"}                 # the old rows stay


def test_sample_estimators_get_a_time_estimate(tmp_path):
    from mibench.executors.costs import DEFAULT_SAMPLE_S, estimate_seconds
    from mibench.plan import plan_sweep
    from mibench.presets import load_preset

    preset, out = tiny(tmp_path, grid=SAMPLE_GRID), tmp_path / "out"
    groups = [[s.to_dict() for s in g] for g in plan_sweep(load_preset(preset), out=out).todo]
    assert [estimate_seconds(out)(g) for g in groups] == [10.0 + DEFAULT_SAMPLE_S] * 2
    sweep(preset, out=out, progress=False)
    walls = {r["spec"]["estimator"]["name"]: r["wall_s"] for r in load_rows(out)}
    assert [estimate_seconds(out)(g) for g in groups] == [10.0 + walls[g[0]["estimator"]["name"]] for g in groups]


@pytest.mark.slow
def test_a_sample_only_preset_runs_on_the_local_executor(tmp_path):
    df = sweep(tiny(tmp_path, grid=SAMPLE_GRID), out=tmp_path / "out", progress=False, executor="local",
               executor_options={"workers": 1})
    assert sorted(df["bound"]) == ["cca", "ksg"] and (df["status"] == "ok").all()


# ------------------------------------------------------------------------------------------------ signals


def _worker_pids(out: Path, n: int, timeout: float = 60) -> list[int]:
    """The pids of the workers holding claims in ``out``, once ``n`` claims are held."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        owners = list(Store(out).running().values())
        if len(owners) >= n:
            return [int(owner.rpartition(":")[2]) for owner in owners]
        time.sleep(0.1)
    raise AssertionError(f"no {n} workers started in {out}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_driver_alone_stops_its_local_workers(tmp_path, sig):
    out = tmp_path / "out"
    # SIGINT at its default in the driver, as in a terminal: a test suite started in the
    # background of a shell inherits SIGINT ignored, and the driver rightly leaves it ignored.
    driver = subprocess.Popen([sys.executable, "-m", "mibench", "run", "--task", tiny(tmp_path, steps=100_000),
                               "--out", str(out), "--executor", "local", "--workers", "2", "--no-progress"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        workers = _worker_pids(out, 2)
        driver.send_signal(sig)                        # the driver only, not its process group
        _, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    deadline = time.time() + 10
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.1)
    orphans = [pid for pid in workers if _alive(pid)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert not orphans, "workers left training after the driver was stopped"
    assert driver.returncode == 128 + sig, err
    assert err.strip().splitlines()[-1] == f"mibench: stopped by {sig.name}; finished runs are saved"
    assert not list((out / CLAIMS_DIR).iterdir())        # each worker released its claim
    logs = " ".join(p.read_text() for p in (out / "logs").iterdir())
    assert logs.count("mibench worker: stopped by SIGTERM") == 2 and "Traceback" not in logs


# ------------------------------------------------------------------------------------------------ checked before training


@pytest.mark.parametrize("name", [RUNS_FILE, TRACES_FILE, LOCK_FILE])
def test_a_folder_where_a_results_file_should_be_stops_before_training(tmp_path, capsys, monkeypatch, name):
    import mibench.runner as runner

    monkeypatch.setattr(runner, "fit", lambda *a, **k: pytest.fail("trained although the results cannot be written"))
    out = tmp_path / "out"
    (out / name).mkdir(parents=True)
    assert main(["run", "--task", tiny(tmp_path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"mibench: error: cannot write {out / name}: it is a folder, not a file\n"
    assert [p.name for p in out.iterdir()] == [name]


@pytest.mark.parametrize("option", ["mem_gb", "time_min", "job_minutes", "workers", "cpus", "gpus", "array_parallelism"])
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_executor_options_refuse_nan_and_infinity(option, value):
    from mibench.interface import ConfigError

    with pytest.raises(ConfigError, match=f"executor option {option} must be a"):
        Options("slurm", **{option: value})


def test_mem_gb_nan_on_the_command_line_is_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["run", "--task", tiny(tmp_path), "--out", str(out), "--executor", "slurm", "--dry-run", "--mem-gb", "nan"]
    assert main(argv) == 2
    assert capsys.readouterr().err == "mibench: error: executor option mem_gb must be a finite number > 0, got nan\n"
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ the fuzz test

FUZZ_KINDS = ["bytes", "truncated", "wrong-type", "mixed"]
FUZZ_CASES = [("bytes", 0), ("truncated", 0), ("wrong-type", 0), ("wrong-type", 1), ("mixed", 0), ("mixed", 1)]
FUZZ_GRID = """
[[grid]]
bounds = ["infonce", "nwj"]
seeds = [0, 1, 2]
"""
WRONG = {  # wrong-typed JSON for each kind of file; None stands for "a real one with a field of the wrong type"
    "row": [5, "x", [1], None, {}, {"run_id": 5, "status": "ok"}, "status", "run_id", "mi_estimate", "record_id",
            "schema_version", {"run_id": "x", "status": "error", "schema_version": 1, "spec": {"estimator": 5}}],
    "trace": [5, [1], {"run_id": "x", "step": 5}, "step", "estimate", "run_id"],
    "record": [[1, 2], {}, {"row": 5}, {"row": [1]}, "row"],
    "claim": [5, [1], "x", {"worker": 5}, {}],
    "plan": [[], {}, 5, "planned", "sweep_id"],
}
WRONG_VALUES = [5, "x", [1], {"a": 1}, True, None]


@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    """A real tiny sweep of six runs, finished and merged."""
    tmp = tmp_path_factory.mktemp("fuzz")
    preset = tiny(tmp, steps=20, grid=FUZZ_GRID)
    sweep(preset, out=tmp / "base", progress=False)
    return preset, tmp / "base"


class Fuzzer:
    """Corrupts text the way ``kind`` says, from a seeded generator."""

    def __init__(self, kind: str, seed: int):
        self.kind, self.rng = kind, random.Random(f"{kind}-{seed}")
        self.count = 0

    def __call__(self, real: object, what: str) -> bytes:
        self.count += 1
        kind = self.rng.choice(FUZZ_KINDS[:3]) if self.kind == "mixed" else self.kind
        text = json.dumps(real).encode()
        if kind == "bytes":
            return self.rng.randbytes(self.rng.randrange(1, 80))
        if kind == "truncated":
            return text[:self.rng.randrange(1, len(text))]
        choice = self.rng.choice(WRONG[what])
        if isinstance(choice, str) and isinstance(real, dict) and choice in real:   # one field made wrong
            choice = {**real, choice: self.rng.choice([v for v in WRONG_VALUES if v != real[choice]])}
        return json.dumps(choice).encode()


def _corrupt_folder(base: Path, out: Path, fuzz: Fuzzer) -> dict[str, float]:
    """Copy ``base`` to ``out`` and leave it as a hostile user would: two runs pending (one a
    good record, one corrupt), one run missing with a garbage claim on it, one runs.jsonl line
    and one traces.jsonl line corrupted and a junk line appended to each, a junk pending record,
    a garbage claim on a finished run, a garbage merge lock and plan.json. Returns the good rows
    left ({record_id: mi_estimate})."""
    import shutil

    shutil.copytree(base, out)
    rows = [json.loads(line) for line in (out / RUNS_FILE).read_text().splitlines()]
    traces = {t["run_id"]: t for t in map(json.loads, (out / TRACES_FILE).read_text().splitlines())}
    kept, pending, missing = rows[:3], rows[3:5], rows[5]
    corrupt_row, corrupt_trace = fuzz.rng.randrange(3), fuzz.rng.randrange(3)
    lines = [fuzz(r, "row") if i == corrupt_row else json.dumps(r).encode() for i, r in enumerate(kept)]
    (out / RUNS_FILE).write_bytes(b"\n".join(lines + [fuzz(kept[0], "row")]) + b"\n")
    lines = [fuzz(traces[r["run_id"]], "trace") if i == corrupt_trace else json.dumps(traces[r["run_id"]]).encode()
             for i, r in enumerate(kept)]
    (out / TRACES_FILE).write_bytes(b"\n".join(lines + [fuzz(traces[kept[0]["run_id"]], "trace")]) + b"\n")
    records = [{"row": r, "trace": traces[r["run_id"]]} for r in pending]
    (out / PENDING_DIR / f"{pending[0]['run_id']}-{pending[0]['record_id']}.json").write_text(json.dumps(records[0]))
    (out / PENDING_DIR / f"{pending[1]['run_id']}-{pending[1]['record_id']}.json").write_bytes(fuzz(records[1], "record"))
    (out / PENDING_DIR / "junk.json").write_bytes(fuzz(records[0], "record"))
    claim = {"worker": "elsewhere:1", "since": 0}
    for run_id in (missing["run_id"], kept[1]["run_id"]):
        (out / CLAIMS_DIR / run_id).write_bytes(fuzz(claim, "claim"))
        age(out / CLAIMS_DIR / run_id)
    (out / LOCK_FILE).write_bytes(fuzz(claim, "claim"))
    age(out / LOCK_FILE)
    (out / "plan.json").write_bytes(fuzz(json.loads((out / "plan.json").read_text()), "plan"))
    good = [r for i, r in enumerate(kept) if i != corrupt_row] + pending[:1]
    return {r["record_id"]: r["mi_estimate"] for r in good}


@pytest.mark.slow
@pytest.mark.parametrize("kind, seed", FUZZ_CASES, ids=[f"{k}-{s}" for k, s in FUZZ_CASES])
def test_fuzzed_results_folder(fuzz_base, tmp_path, kind, seed):
    """Random bytes, truncated JSON or wrong-typed JSON (or a mix) in every file of a results
    folder: status, report and a resuming run each end in exit 0 or one line, within the
    timeout; every good row is still there after, and the resumed sweep is complete."""
    preset, base = fuzz_base
    out = tmp_path / "out"
    fuzz = Fuzzer(kind, seed)
    good = _corrupt_folder(base, out, fuzz)
    assert fuzz.count == 10
    for args in (["status", str(out)], ["report", str(out), "--out", str(tmp_path / "rep")],
                 ["run", "--task", preset, "--out", str(out), "--no-progress"]):
        res = mibench(*args, timeout=60)
        one_line_or_ok(res)
        if args[0] == "run":
            assert res.returncode == 0, res.stderr[-3000:]
    found = {r.get("record_id"): r["mi_estimate"] for r in iter_rows(out)}
    assert {k: found.get(k) for k in good} == good                 # no good row lost
    assert {r["status"] for r in load_rows(out)} == {"ok"} and len(load_rows(out)) >= 6
    assert not pending_records(out) and not Store(out).running()
