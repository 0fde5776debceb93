"""The planner: every value checked before any run, budgets from the command line, each run
trained once, resume over results written before schema 2."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY_HEAD
from mibench.cli import main
from mibench.interface import ConfigError
from mibench.plan import expand, plan_sweep
from mibench.runspec import RunSpec, upgrade_row
from mibench.presets import load_preset
from mibench.results import RUNS_FILE, SCHEMA_VERSION, load_rows
from mibench.executors import sweep


def preset(tmp_path, grid: str, head: str = TINY_HEAD, steps: int = 20) -> str:
    path = tmp_path / "p.toml"
    path.write_text(head.format(steps=steps) + grid)
    return str(path)


@pytest.mark.parametrize("grid,message", [
    ("[[grid]]\ntask = { mi = [2.0, -1.0] }", "[[grid]] #1 task: gaussian: mi must be a finite number of nats >= 0, got -1.0"),
    ('[[grid]]\ntask = { mi = "two" }', "gaussian: mi must be a number, got 'two'"),
    ("[[grid]]\nname = 'a'\n[[grid]]\nname = 'b'\ntask = { dim = [2, 0] }", "[[grid]] #2 task: gaussian: dim must be"),
    ("[[grid]]\ntask = { transform = 'cubic' }\nbounds = ['infonce', 'ba']", "ba needs the entropy of y"),
    ("[[grid]]\nencoder = 'conv'", "encoder 'conv' takes (1, 28, 28) images"),
    ("[[grid]]\nstaircase = [1.0, -2.0]", "gaussian: mi must be a finite number of nats >= 0, got -2.0"),
    ("[[grid]]\nbounds = ['smile']\ntau = 0.0", "smile: tau must be > 0 (inf allowed), got 0.0"),
    ("[[grid]]\nbounds = ['mine']\nbatch_seeds = true", "bound 'mine' cannot train as a batched model"),
    ("[[grid]]\nlr = '1e-3'", "lr must be a positive number, got '1e-3'"),
    ("[[grid]]\nseeds = [0, -1]", "seeds must be non-negative integers, got -1"),
    ("[[grid]]\nbatch_sizes = [32, 8]\nnegatives = [16]", "needs a batch of at least 17, got 8"),
])
def test_every_value_of_every_axis_is_checked_before_any_run(tmp_path, capsys, grid, message):
    out = tmp_path / "out"
    assert main(["run", "--task", preset(tmp_path, grid), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_bad_eval_values_are_named(tmp_path, capsys):
    head = TINY_HEAD.replace("batches = 4", 'batches = "four"')
    out = tmp_path / "out"
    assert main(["run", "--task", preset(tmp_path, "[[grid]]\n", head=head), "--out", str(out), "--no-progress"]) == 2
    assert "[eval] batches must be an integer >= 1, got 'four'" in capsys.readouterr().err and not out.exists()


def test_a_staircase_needs_a_family_whose_mi_can_be_set(tmp_path):
    text = ('[task]\nfamily = "gaussian_cov"\ncov = [[1.0, 0.5], [0.5, 1.0]]\ndim_x = 1\n'
            '[train]\nsteps = 10\nstaircase = [1.0, 2.0]\n')
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="staircase needs a family whose MI can be set .*'gaussian_cov' cannot"):
        expand(load_preset(str(path)))


def test_a_command_line_budget_replaces_the_preset_budget():
    pm = load_preset("paired_mnist")                     # its grids give epochs
    assert {s.steps for s in expand(pm, overrides={"steps": 20})} == {20}
    assert {s.epochs for s in expand(pm, overrides={"steps": 20})} == {None}
    g = load_preset("gaussian")                          # its [train] gives steps
    assert {s.steps for s in expand(g, overrides={"steps": 7})} == {7}
    with pytest.raises(ConfigError, match="epochs need a finite training set, and 'gaussian' draws fresh samples"):
        expand(g, overrides={"epochs": 1})
    assert {s.steps for s in expand(pm, overrides={"epochs": 2})} == {-(-2 * 60_000 // 128)}


def test_grids_that_meet_train_their_common_run_once():
    """--bounds smile --negatives 32 --epochs 5 --seeds 0,1,2 collapses the paired-MNIST
    preset's three grids onto one configuration: three runs (one per seed), not nine; each
    carries all three grid labels and keeps its model because the reference grid asks to."""
    specs = expand(load_preset("paired_mnist"), overrides={
        "bounds": ["smile"], "negatives": [32], "epochs": 5, "seeds": [0, 1, 2], "devices": ["cpu"]})
    assert len(specs) == 3 and sorted(s.seed for s in specs) == [0, 1, 2]
    assert all(s.grids == ("reference", "bounds", "negatives") and s.save_model for s in specs)


def test_labels_and_output_options_are_not_part_of_a_run_identity():
    spec = expand(load_preset("gaussian"), quick=True)[0]
    same = dataclasses.replace(spec, grids=("other",), preset="x", save_model=True, log_every=7, epochs=None)
    assert same.run_id == spec.run_id
    assert dataclasses.replace(spec, lr=spec.lr * 2).run_id != spec.run_id
    assert dataclasses.replace(spec, seed=spec.seed + 1).run_id != spec.run_id
    all_k = dataclasses.replace(spec, estimator=dataclasses.replace(spec.estimator, negatives=spec.batch_size - 1))
    assert all_k.run_id == spec.run_id                   # "all" and B - 1 train alike
    assert RunSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_rows_before_schema_2_are_done_for_resume(tmp_path):
    """A folder written before schema 2 (old ids, no schema_version) resumes: nothing reruns."""
    path = preset(tmp_path, '[[grid]]\nname = "g"\nbounds = ["infonce", "nwj"]\n')
    out = tmp_path / "out"
    sweep(path, out=out, progress=False)
    rows = load_rows(out)
    assert all(r["schema_version"] == SCHEMA_VERSION and r["grids"] == ["g"] for r in rows)
    old = [{k: v for k, v in r.items() if k not in ("schema_version", "grids", "git_commit")} | {"run_id": f"old{i}"}
           for i, r in enumerate(rows)]
    (out / RUNS_FILE).write_text("".join(json.dumps(r) + "\n" for r in old))
    assert {upgrade_row(r)["run_id"] for r in old} == {r["run_id"] for r in rows}
    plan = plan_sweep(path, out=out)
    assert plan.n_done == 2 and plan.n_todo == 0
    assert len(sweep(path, out=out, progress=False)) == 2


def test_a_sweep_whose_only_device_is_absent_exits_2(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has the device")
    out = tmp_path / "out"
    assert main(["run", "--task", preset(tmp_path, "[[grid]]\n"), "--devices", "cuda", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device cuda is not available here" in err and not out.exists()


@pytest.mark.parametrize("name,message", [
    ("gausian", "unknown task 'gausian'; did you mean 'gaussian'"),
    ("zzz", "unknown task 'zzz'. Known presets: "),
])
def test_unknown_task_is_one_sentence(name, message, capsys):
    assert main(["run", "--task", name]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="watches /proc for torch being loaded")
def test_ctrl_c_during_start_up_is_one_line_not_a_traceback(tmp_path):
    """SIGINT while the command is still importing torch: no traceback, exit status 130."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "mibench", "run", "--task", "gaussian", "--quick",
                             "--out", str(tmp_path / "o"), "--no-progress"],
                            stderr=subprocess.PIPE, text=True, env=env,
                            # a shell that started us in the background may have left SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    maps = f"/proc/{proc.pid}/maps"
    deadline = time.time() + 30
    while time.time() < deadline:          # wait until torch's libraries are being mapped in
        try:
            if "libtorch" in open(maps).read():
                break
        except OSError:
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines() == ["mibench: interrupted; finished runs are saved"]
