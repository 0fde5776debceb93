"""Presets, sweeps, resume, failure rows and the CLI's handling of bad input."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import TINY_HEAD, kill_after_rows
from mibench import bounds as B
from mibench.cli import main
from mibench.plan import expand
from mibench.presets import load_preset
from mibench.results import RUNS_FILE, load_results, load_rows
from mibench.stats import summarize
from mibench.executors import sweep

TINY = TINY_HEAD + """
[[grid]]
bounds = ["infonce", "nwj"]
negatives = [4, "all"]
seeds = [0, 1]
"""


def tiny(tmp_path, steps=30, text=TINY):
    path = tmp_path / "tiny.toml"
    path.write_text(text.format(steps=steps))
    return str(path)


def test_gaussian_preset_expands_to_the_product_of_its_axes():
    preset = load_preset("gaussian")
    specs = expand(preset)
    assert len(specs) == 5 * 5 * (5 + 3)                 # bounds x MIs x (5 separable + 3 joint seeds)
    assert {dict(s.task_params)["mi"] for s in specs} == {2.0, 4.0, 6.0, 8.0, 10.0}
    assert {(s.estimator.bound, s.estimator.critic) for s in specs} == {
        (b, c) for b in ("infonce", "nwj", "js", "smile", "mine") for c in ("separable", "joint")}
    seeds = {c: {s.seed for s in specs if s.estimator.critic == c} for c in ("separable", "joint")}
    assert seeds == {"separable": {0, 1, 2, 3, 4}, "joint": {0, 1, 2}}
    assert all(s.n_negatives == 63 and s.steps == 2000 and s.batch_size == 64 for s in specs)
    assert len({s.run_id for s in specs}) == len(specs)
    assert len(expand(preset, quick=True)) == 4


def test_paired_mnist_preset_holds_the_seed_cell():
    specs = expand(load_preset("paired_mnist"))
    ref = [s for s in specs if s.grid == "reference"]
    assert {s.device for s in ref} == {"cpu", "cuda"}
    s = ref[0]
    e = s.estimator
    assert (e.bound, e.critic, e.hidden, e.encoder, e.embed_dim, e.shared, s.n_negatives, s.batch_size) == (
        "smile", "joint", (64, 32), "conv", 16, True, 32, 128)
    assert s.epochs == 10 and s.steps == math.ceil(10 * 60_000 / 128)
    ks = {(x.estimator.bound, x.n_negatives) for x in specs if x.grid == "negatives"}
    assert ks == {(b, k) for b in ("smile", "infonce") for k in (1, 8, 127)}


def test_overrides_replace_axes_in_every_grid():
    specs = expand(load_preset("paired_mnist"), overrides={
        "bounds": ["nwj"], "negatives": [8], "devices": ["cpu"], "seeds": [3, 4], "steps": 10})
    assert {(s.estimator.bound, s.n_negatives, s.device, s.steps) for s in specs} == {("nwj", 8, "cpu", 10)}
    assert {s.seed for s in specs} == {3, 4}


def test_preset_found_by_name_and_from_an_installed_wheel_layout():
    from mibench import presets

    assert load_preset("gaussian_staircase").train["staircase"] == [2.0, 4.0, 6.0, 8.0, 10.0]
    # a wheel carries tasks/ as mibench/_presets; both places are searched
    assert any(d.name in ("tasks", "_presets") for d in presets.preset_dirs())


@pytest.mark.slow
def test_sweep_records_one_row_per_run_and_resumes(tmp_path):
    out = tmp_path / "out"
    df = sweep(tiny(tmp_path), out=out, progress=False)
    assert len(df) == 8 and (df["status"] == "ok").all()
    for col in ("run_id", "task", "bound", "critic", "encoder", "n_negatives", "batch_size", "device",
                "seed", "steps", "mi_true", "mi_estimate", "status", "error", "pairs_per_s",
                "steps_per_s", "peak_mem_mb", "wall_s", "versions"):
        assert col in df, col
    assert set(df["n_negatives"]) == {4, 31}
    assert df["mi_true"].unique().tolist() == [pytest.approx(0.5)]
    # drop two rows as if the sweep had been killed before them; a rerun does just those two
    lines = (out / RUNS_FILE).read_text().splitlines()
    (out / RUNS_FILE).write_text("\n".join(lines[:6]) + "\n")
    kept = {r["run_id"]: r["finished_at"] for r in load_rows(out)}
    df2 = sweep(tiny(tmp_path), out=out, progress=False)
    assert len(df2) == 8
    rows = load_rows(out)
    assert len(rows) == 8 and len((out / RUNS_FILE).read_text().splitlines()) == 8
    assert all(r["finished_at"] == kept[r["run_id"]] for r in rows if r["run_id"] in kept)
    traces = [json.loads(line) for line in (out / "traces.jsonl").read_text().splitlines()]
    assert traces[0]["step"][:3] == [0, 5, 10]


@pytest.mark.slow
def test_killed_sweep_loses_nothing_and_resumes(tmp_path):
    """kill -9 in the middle of a sweep: finished rows stay loadable; a rerun does the rest."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mibench.cli", "run", "--task", tiny(tmp_path, steps=400),
           "--out", str(out), "--no-progress"]
    kill_after_rows(cmd, out)
    done = {r["run_id"] for r in load_rows(out)}
    assert 2 <= len(done) < 8
    with open(out / RUNS_FILE, "a") as f:     # what a write cut short would leave behind
        f.write('{"run_id": "abc", "status": "o')
    assert len(load_results(out)) == len(done)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = load_rows(out)
    assert {r["run_id"] for r in rows} >= done and len([r for r in rows if r["run_id"] != "abc"]) == 8


def test_nan_and_error_runs_become_rows(tmp_path, monkeypatch):
    class NaNBound(B.InfoNCE):
        def estimate(self, scores, aux=None):
            return super().estimate(scores) * math.nan

    monkeypatch.setitem(B.BOUNDS._items, "nwj", NaNBound)          # nwj now reports NaN
    import mibench.runner as runner

    real_fit = runner.fit

    def flaky_fit(est, *a, **k):
        if est.spec.negatives == 4 and est.spec.bound == "infonce":
            raise RuntimeError("simulated out-of-memory")
        return real_fit(est, *a, **k)

    monkeypatch.setattr(runner, "fit", flaky_fit)
    df = sweep(tiny(tmp_path), out=tmp_path / "out", progress=False)
    assert len(df) == 8
    by = df.set_index(["bound", "n_negatives", "seed"])["status"]
    assert (by.loc["nwj"] == "diverged").all()
    assert (by.loc[("infonce", 4)] == "error").all() and (by.loc[("infonce", 31)] == "ok").all()
    err = df[df["status"] == "error"]["error"].iloc[0]
    assert err == "RuntimeError: simulated out-of-memory"


def test_same_seed_same_estimate_on_cpu(tmp_path):
    a = sweep(tiny(tmp_path), out=tmp_path / "a", progress=False)
    b = sweep(tiny(tmp_path), out=tmp_path / "b", progress=False)
    assert a["mi_estimate"].tolist() == b["mi_estimate"].tolist()
    assert a["mi_estimate"].nunique() > 1


def test_absent_device_is_skipped_not_a_crash(tmp_path, caplog):
    missing = "cuda:99" if torch.cuda.is_available() else "cuda"
    df = sweep(tiny(tmp_path), out=tmp_path / "out", progress=False,
               overrides={"devices": ["cpu", missing], "seeds": [0], "bounds": ["infonce"]})
    assert set(df["device"]) == {"cpu"} and len(df) == 2
    assert f"device {missing} not available here" in caplog.text


BAD_PRESETS = {
    "syntax": ("[task\nfamily = 1", "not valid TOML"),
    "top_key": ('name = "x"\ncolour = 1\n[task]\nfamily = "gaussian"\nmi = 1.0\n[train]\nsteps = 5',
                "unknown key 'colour'"),
    "task_param": ('[task]\nfamily = "gaussian"\nsigma = 2\n[train]\nsteps = 5',
                   "[task]: unknown key 'sigma'; allowed: dim, family, mi, rho, transform"),
    "family": ('[task]\nfamily = "gausian"\n[train]\nsteps = 5', "did you mean 'gaussian'"),
    "bound": ('[task]\nfamily = "gaussian"\nmi = 1.0\n[train]\nsteps = 5\n[[grid]]\nbounds = ["infonse"]',
              "unknown bound 'infonse'"),
    "negatives": ('[task]\nfamily = "gaussian"\nmi = 1.0\n[train]\nsteps = 5\nbatch_size = 16\n'
                  '[[grid]]\nnegatives = [16]', "needs a batch of at least 17"),
    "budget": ('[task]\nfamily = "gaussian"\nmi = 1.0\n[train]\nepochs = 2', "epochs need a finite training set"),
    "device": ('[task]\nfamily = "gaussian"\nmi = 1.0\n[train]\nsteps = 5\n[[grid]]\ndevices = ["gpu"]',
               "unknown device 'gpu'"),
    "train_key": ('[task]\nfamily = "gaussian"\nmi = 1.0\n[train]\nsteps = 5\nlearning_rate = 1',
                  "[train]: unknown key 'learning_rate'"),
    "precision": ('[task]\nfamily = "gaussian"\nmi = 1.0\n[train]\nsteps = 5\nprecision = "fp16"',
                  "precision must be one of fp32, bf16, got 'fp16'"),
}


@pytest.mark.parametrize("case", list(BAD_PRESETS))
def test_bad_preset_gives_one_line_and_exit_2_and_writes_nothing(case, tmp_path, capsys):
    text, message = BAD_PRESETS[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["run", "--task", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mibench: error: ") and message in err
    assert not out.exists()


@pytest.mark.parametrize("argv,message", [
    (["run", "--precision", "fp16"], "argument --precision: invalid choice: 'fp16' (choose from 'fp32', 'bf16')"),
    (["run", "--threads", "0"], "argument --threads"),
    (["runn"], "invalid choice: 'runn'"),
])
def test_bad_arguments_give_one_line_and_exit_2(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "o")] if argv[0] == "run" else argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "o").exists()


def test_unknown_task_name(tmp_path, capsys):
    assert main(["run", "--task", "paired_mnits", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown task 'paired_mnits'; did you mean 'paired_mnist'" in err


def test_unknown_bound_on_the_command_line(tmp_path, capsys):
    assert main(["run", "--task", "gaussian", "--bounds", "smile,nce", "--out", str(tmp_path / "o")]) == 2
    assert "unknown bound 'nce'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_missing_data_offline_gives_one_line(tmp_path, capsys, monkeypatch):
    from torchvision import datasets

    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])   # nothing listens there
    out = tmp_path / "o"
    code = main(["run", "--task", "paired_mnist", "--quick", "--data-dir", str(tmp_path / "empty"),
                 "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "MNIST not found under" in err and "--data-dir" in err
    assert not out.exists()


def test_list_shows_truths(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "2.3012" in text and "-(d/2) ln(1 - rho^2)" in text
    for name in ("smile", "infonce", "club", "separable", "joint", "conv", "paired_mnist", "gaussian_staircase"):
        assert name in text


@pytest.mark.slow
def test_cli_main_module_runs_as_a_command(tmp_path):
    res = subprocess.run([sys.executable, "-m", "mibench.cli", "run", "--task", "nope"],
                         capture_output=True, text=True)
    assert res.returncode == 2 and res.stderr.startswith("mibench: error: unknown task 'nope'")


@pytest.mark.slow
def test_batch_seeds_gives_one_row_per_seed_matching_unbatched_runs(tmp_path):
    plain = sweep(tiny(tmp_path), out=tmp_path / "a", progress=False)
    batched = sweep(tiny(tmp_path), out=tmp_path / "b", progress=False, overrides={"batch_seeds": True})
    assert len(batched) == len(plain) == 8 and (batched["status"] == "ok").all()
    assert set(batched["batched_models"]) == {2} and set(plain["batched_models"]) == {1}
    key = ["bound", "n_negatives", "seed"]
    a = plain.set_index(key)["mi_estimate"].sort_index()
    b = batched.set_index(key)["mi_estimate"].sort_index()
    assert b.tolist() == pytest.approx(a.tolist(), abs=1e-3)
    assert not set(plain["run_id"]) & set(batched["run_id"])


def test_precision_is_a_recorded_run_option(tmp_path):
    """bf16 runs are their own cells: new run ids, a precision column, and fp32 ids unchanged
    (the option enters the hash only when set)."""
    plain = sweep(tiny(tmp_path), out=tmp_path / "a", progress=False)
    bf16 = sweep(tiny(tmp_path), out=tmp_path / "a", progress=False, overrides={"precision": "bf16"})
    assert len(bf16) == 8 and (bf16["status"] == "ok").all()
    assert set(plain["precision"]) == {"fp32"} and set(bf16["precision"]) == {"bf16"}
    assert not set(plain["run_id"]) & set(bf16["run_id"])
    assert len(summarize(pd.concat([plain, bf16]))) == 2 * len(summarize(plain))


@pytest.mark.parametrize("name", ["gaussian", "paired_mnist", "gaussian_staircase_small"])
def test_recorded_reference_runs_keep_their_ids(name):
    """Options added since the reference runs were recorded (batch_seeds, precision) must not
    change the ids of runs that leave them at their defaults: the recorded runs still resume."""
    repo = Path(__file__).resolve().parents[1]
    recorded = {r["run_id"] for r in load_rows(repo / "results" / "reference" / name)}
    expected = {s.run_id for s in expand(load_preset(name)) if s.device == "cpu"}
    assert recorded and recorded <= expected


@pytest.mark.slow
def test_a_built_wheel_carries_the_presets(tmp_path):
    """Installed from a wheel (no checkout), `mibench list` still finds tasks/*.toml."""
    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(repo)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("mibench-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(tmp_path / "site"), str(wheel)], check=True, capture_output=True)
    code = ("import mibench.presets as p; assert 'site' in p.__file__, p.__file__; "
            "print([x.name for x in p.list_presets()])")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(tmp_path / "site")})
    assert res.returncode == 0, res.stderr
    assert "paired_mnist" in res.stdout and "gaussian_staircase" in res.stdout
