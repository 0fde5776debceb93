"""Input a hostile or careless user gives: bad preset values, absurd command-line values, external
programs that misbehave, estimates no bound can report. Each gets one clear line (or an honest
row), never a traceback, a hang or a folder written outside results/."""

import os
import shlex
import sys
import time
from pathlib import Path

import pytest
import torch

from mibench.sample import EstimatorFailed, External


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state in ("Z", "X")


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.05)
    return _gone(pid)


def _cleanup(pid_file: Path) -> None:
    """Kill a process a failing test left behind."""
    if pid_file.is_file() and pid_file.read_text().strip():
        try:
            os.kill(int(pid_file.read_text()), 9)
        except ProcessLookupError:
            pass


SAMPLE = (torch.zeros(4, 1), torch.zeros(4, 1))

# A program that starts a grandchild (with its own output, so nothing waits on its pipes),
# writes the grandchild's pid, then sleeps past its timeout.
SPAWNER = """
import subprocess, sys, time
child = subprocess.Popen(["sleep", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(60)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_external_timeout_kills_the_programs_grandchildren_too(tmp_path):
    script, pid_file = tmp_path / "spawner.py", tmp_path / "grandchild.pid"
    script.write_text(SPAWNER)
    est = External(command=f"{{python}} {shlex.quote(str(script))} {shlex.quote(str(pid_file))} {{x}} {{y}}",
                   timeout=1.5)
    try:
        with pytest.raises(EstimatorFailed, match="timed out after 1.5 s"):
            est.estimate(*SAMPLE, seed=0)
        assert pid_file.read_text().strip(), "the program did not get to start its grandchild"
        assert _wait_gone(int(pid_file.read_text())), "the grandchild outlived the timeout"
    finally:
        _cleanup(pid_file)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_an_answer_printed_before_exit_counts_though_a_background_child_holds_the_output(tmp_path):
    pid_file = tmp_path / "background.pid"
    shell = f"sleep 30 & echo $! > {shlex.quote(str(pid_file))}; echo chatter; echo 0.25"
    est = External(command=f"sh -c {shlex.quote(shell)} sh {{x}} {{y}}", timeout=8)
    try:
        t0 = time.monotonic()
        assert est.estimate(*SAMPLE, seed=0) == 0.25
        assert time.monotonic() - t0 < 5, "the answer waited for the background child"
        assert _wait_gone(int(pid_file.read_text())), "the background child was left running"
    finally:
        _cleanup(pid_file)


# ---------------------------------------------------------------------------------------------
# Presets and command-line values: one line, exit 2, nothing written

import json  # noqa: E402
import math  # noqa: E402

from conftest import TINY_HEAD  # noqa: E402
from mibench.cli import build_parser, main  # noqa: E402
from mibench.interface import ConfigError  # noqa: E402
from mibench.plan import plan_sweep  # noqa: E402
from mibench.presets import MAX_SEED, SEED_OFFSETS_BELOW  # noqa: E402

TINY_GRID = TINY_HEAD.format(steps=3) + "[[grid]]\nbounds = ['infonce']\n"


def _one_line_error(capsys, argv: list[str], *expected: str) -> str:
    """Runs the CLI, expecting exit 2 and one line on stderr holding each of ``expected``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mibench: error: ") and err.count("\n") == 1, err
    for text in expected:
        assert text in err, err
    return err


def _write(tmp_path: Path, text: str, name: str = "p.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,expected", [
    ('name = "a"\ntask = "gaussian"\n', "task must be a table"),
    ('name = "a"\nestimator = 5\n[task]\nfamily = "gaussian"\n', "estimator must be a table"),
    ('name = "a"\ntrain = [1]\n[task]\nfamily = "gaussian"\n', "train must be a table"),
    ('name = "a"\neval = "x"\n[task]\nfamily = "gaussian"\n', "eval must be a table"),
    ('name = "a"\nslurm = 3\n[task]\nfamily = "gaussian"\n', "slurm must be a table"),
    ('name = "a"\n[task]\nfamily = 5\n', "unknown task family 5"),
    ('name = "a"\n[task]\nfamily = ["gaussian"]\n', "unknown task family ['gaussian']"),
    ('name = 5\n' + TINY_GRID.replace('name = "tiny"\n', ""), "name must be a simple name"),
    ('name = "../../x"\n' + TINY_GRID.replace('name = "tiny"\n', ""), "name must be a simple name"),
    ('name = "a/b"\n' + TINY_GRID.replace('name = "tiny"\n', ""), "name must be a simple name"),
    ('name = ".."\n' + TINY_GRID.replace('name = "tiny"\n', ""), "name must be a simple name"),
    ('description = 5\n' + TINY_GRID, "description must be a string"),
    (TINY_GRID.replace("hidden = [16]", "hidden = 1.5"), "hidden must be a list of positive integers"),
    (TINY_GRID.replace("hidden = [16]", "encoder_hidden = 2.5"), "encoder_hidden must be a list"),
    (TINY_GRID + "critics = [{a = 1}]\n", "critic must be a name"),
    (TINY_GRID.replace("hidden = [16]", "encoder = ['mlp']"), "encoder must be a name"),
    (TINY_GRID.replace("[[grid]]", "[[grid]]\nbounds = {a = 1}").replace("bounds = ['infonce']\n", ""),
     "bound must be a name"),
    (TINY_GRID.replace("dim = 2", "dim = 9223372036854775807"), "cannot be built"),
])
def test_preset_values_of_the_wrong_type_are_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, text,
                                                                        expected):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)                     # results/NAME would land here (or ../../x above it)
    _one_line_error(capsys, ["run", "--task", _write(tmp_path, text), "--no-progress"], expected)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "p.toml"]


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml_value, v)) + "]"
    return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(preset: dict) -> str:
    """A preset as TOML: tables as [tables], a list of tables as [[grid]]s, the rest as values."""
    grids = preset["grid"] if isinstance(preset["grid"], list) and all(isinstance(g, dict) for g in preset["grid"]) \
        and preset["grid"] else None
    lines = [f"{k} = {_toml_value(v)}" for k, v in preset.items()
             if not isinstance(v, dict) and not (k == "grid" and grids)]
    for key, table in preset.items():
        if isinstance(table, dict):
            lines += [f"[{key}]", *(f"{k} = {_toml_value(v)}" for k, v in table.items())]
    for grid in grids or []:
        lines += ["[[grid]]", *(f"{k} = {_toml_value(v)}" for k, v in grid.items())]
    return "\n".join(lines) + "\n"


WRONG = ["x", -1, 1.5, math.nan, math.inf, True, [], ["a"], {"a": 1}, 2**63 - 1]
FIELDS = {"top": ["name", "description", "task", "estimator", "train", "eval", "grid", "quick", "slurm"],
          "task": ["family", "dim", "mi", "transform"],
          "estimator": ["bound", "critic", "hidden", "critic_dim", "temperature", "encoder", "encoder_hidden",
                        "embed_dim", "shared", "negatives", "library", "tau", "alpha", "ema_rate",
                        "ema_from_zero", "init"],
          "train": ["steps", "epochs", "batch_size", "lr", "log_every", "staircase", "save_model", "batch_seeds",
                    "precision", "n_samples"],
          "eval": ["batches", "batch_size", "n_samples"],
          "grid": ["name", "task", "bounds", "critics", "negatives", "batch_sizes", "devices", "seeds", "estimators",
                   "k", "ks", "bins", "command", "timeout"]}


def test_every_preset_field_with_a_wrong_type_plans_or_is_a_config_error(tmp_path):
    """A loop over the preset's fields with values of every wrong type: each either plans or is
    a ConfigError of one line, never another exception."""
    base = {"name": "fz", "task": {"family": "gaussian", "dim": 2, "mi": 0.5},
            "estimator": {"hidden": [16], "critic_dim": 8}, "train": {"steps": 3, "batch_size": 16},
            "eval": {"batches": 2}, "grid": [{"bounds": ["infonce"], "seeds": [0]}]}
    failures, n = [], 0
    for section, keys in FIELDS.items():
        for key in keys:
            for value in WRONG:
                preset = json.loads(json.dumps(base))
                table = preset if section == "top" else preset["grid"][0] if section == "grid" else preset[section]
                table[key] = value
                if section == "grid" and key in ("k", "ks", "bins", "command", "timeout"):
                    preset["grid"][0].update(estimators=["ksg"], n_samples=100)
                if key == "epochs":
                    del preset["train"]["steps"]
                n += 1
                try:
                    plan_sweep(_write(tmp_path, _toml(preset)), out=tmp_path / "out")
                except ConfigError as exc:
                    if "\n" in str(exc):
                        failures.append(f"{section}.{key} = {value!r}: a message of several lines")
                except Exception as exc:  # noqa: BLE001 -- what the test looks for
                    failures.append(f"{section}.{key} = {value!r}: {type(exc).__name__}: {exc}")
    assert n > 500 and not failures, "\n".join(failures)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("epochs", ["inf", "nan", "-1", "0"])
def test_a_budget_of_epochs_that_is_not_a_positive_finite_number_is_one_line(tmp_path, capsys, epochs):
    _one_line_error(capsys, ["run", "--task", "paired_mnist", f"--epochs={epochs}", "--out", str(tmp_path / "o"),
                             "--no-progress"], "epochs must be a positive number")
    assert not (tmp_path / "o").exists()


def test_an_infinite_learning_rate_is_one_line(tmp_path, capsys):
    text = TINY_GRID.replace("batch_size = 32", "batch_size = 32\nlr = inf")
    _one_line_error(capsys, ["run", "--task", _write(tmp_path, text), "--out", str(tmp_path / "o")],
                    "lr must be a positive number, got inf")


def test_a_gaussian_mi_beyond_float32_says_the_largest_allowed_and_why(tmp_path, capsys):
    text = TINY_GRID.replace("mi = 0.5", "mi = 1e9")
    err = _one_line_error(capsys, ["run", "--task", _write(tmp_path, text), "--out", str(tmp_path / "o")],
                          "mi = 1000000000.0 nats", "15.94 nats per coordinate", "31.88 nats here", "float32")
    assert "math domain error" not in err
    from mibench.distributions.gaussian import CorrelatedGaussian

    assert CorrelatedGaussian(2, mi=31.8).ground_truth().mi == pytest.approx(31.8, abs=0.01)   # just below


@pytest.mark.parametrize("family", ["bivariate_normal", "bmi_multinormal_sparse"])
@pytest.mark.parametrize("level", ["1e9", "-1.0", "nan"])
def test_a_staircase_level_no_float32_sample_can_carry_is_one_line(tmp_path, capsys, family, level):
    text = (f'name = "s"\n[task]\nfamily = "{family}"\n[estimator]\nhidden = [8]\n'
            f"[train]\nsteps = 4\nbatch_size = 16\nstaircase = [0.5, {level}]\n")
    _one_line_error(capsys, ["run", "--task", _write(tmp_path, text), "--out", str(tmp_path / "o")],
                    f"{family}: mi must be a number of nats from 0 to", "float32")


@pytest.mark.parametrize("grid,axis", [
    ("seeds = []", "seeds is empty"),
    ("bounds = []", "bounds is empty"),
    ("task = { mi = [] }", "task mi is empty"),
    ("bounds = ['smile']\ntau = []", "tau is empty"),
    ("estimators = []\nn_samples = 100", "estimators is empty"),
])
def test_an_empty_axis_is_one_line_naming_it_and_no_folder(tmp_path, capsys, grid, axis):
    text = TINY_HEAD.format(steps=3) + "[[grid]]\n" + grid + "\n"
    _one_line_error(capsys, ["run", "--task", _write(tmp_path, text), "--out", str(tmp_path / "o")], axis)
    assert not (tmp_path / "o").exists()


def test_empty_seeds_on_the_command_line_and_no_grids_are_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["run", "--task", _write(tmp_path, TINY_GRID), "--seeds", ",", "--out",
                             str(tmp_path / "o")], "seeds is empty")
    _one_line_error(capsys, ["run", "--task", _write(tmp_path, "grid = []\n" + TINY_HEAD.format(steps=3)),
                             "--out", str(tmp_path / "o")], "no grid to run")
    assert not (tmp_path / "o").exists()


def test_seeds_beyond_what_a_generator_takes_are_refused_and_the_largest_allowed_runs(tmp_path, capsys):
    from mibench import runner

    assert max(runner.EVAL_SEED, runner.TRAIN_EVAL_SEED, runner.SAMPLE_SEED,
               runner.HELDOUT_SAMPLE_SEED) < SEED_OFFSETS_BELOW
    path = _write(tmp_path, TINY_GRID)
    for seed in (2**64 - 1, MAX_SEED + 1):
        _one_line_error(capsys, ["run", "--task", path, "--seeds", str(seed), "--out", str(tmp_path / "o")],
                        f"seeds must be non-negative integers, got {seed}", str(MAX_SEED))
    assert not (tmp_path / "o").exists()
    assert main(["run", "--task", path, "--seeds", str(MAX_SEED), "--out", str(tmp_path / "o"),
                 "--no-progress"]) == 0
    from mibench.results import load_rows

    assert [(r["seed"], r["status"]) for r in load_rows(tmp_path / "o")] == [(MAX_SEED, "ok")]


# ---------------------------------------------------------------------------------------------
# Honest rows: an estimate no estimator can report is a divergence, with its value kept

from mibench import bounds as B  # noqa: E402
from mibench.executors import sweep  # noqa: E402
from mibench.runner import BLOW_UP, CEILING_SLACK, divergence  # noqa: E402

TWO_BOUNDS = TINY_HEAD.format(steps=5) + "[[grid]]\nbounds = ['infonce', 'nwj']\nbatch_sizes = [16]\n"


def test_the_ceiling_of_infonce_is_ln_k_plus_1_and_alpha_infonce_at_1_is_ln_k():
    assert B.InfoNCE().ceiling(15) == math.log(16)
    assert B.AlphaInfoNCE(alpha=1.0).ceiling(15) == math.log(15)
    assert B.AlphaInfoNCE(alpha=0.5).ceiling(15) == math.inf and B.NWJ().ceiling(15) == math.inf
    scores = torch.full((8, 16), -30.0)
    scores[:, 0] = 30.0                                     # a critic that separates perfectly
    best = B.InfoNCE().estimate(scores).item()               # ln 16 in float32, a little above ln 16
    assert best <= B.InfoNCE().ceiling(15) + CEILING_SLACK
    assert divergence(best, 0.0, truth=0.5, k=15, ceiling=B.InfoNCE().ceiling(15)) is None
    assert divergence(math.log(16), 0.1, truth=0.5, k=15, ceiling=math.log(16)) is None
    assert "above 2.77259" in divergence(math.log(16) + 0.01, 0.1, truth=0.5, k=15, ceiling=math.log(16))
    assert divergence(-40.0, 5.0, truth=10.0, k=63) is None     # a bad estimate is still an estimate
    assert "blow-up" in divergence(-2e7, 1.0, truth=0.5, k=15)
    assert "blow-up" in divergence(1e308, truth=0.5, what="estimate")
    assert divergence(math.nan, truth=0.5) == "non-finite held-out estimate"


@pytest.mark.parametrize("reported,why", [
    (lambda scores: torch.tensor(math.log(scores.shape[1]) + 0.5), "is above 2.77259, the most this bound can report"),
    (lambda scores: torch.tensor(-5.9e25), "numerical blow-up"),
])
def test_a_finite_estimate_no_bound_can_report_is_a_diverged_row_that_keeps_its_value(tmp_path, monkeypatch,
                                                                                        reported, why):
    class Broken(B.InfoNCE):
        def estimate(self, scores, aux=None):
            return super().estimate(scores, aux) * 0 + reported(scores)     # trains, reports the value

    monkeypatch.setitem(B.BOUNDS._items, "infonce", Broken)
    df = sweep(_write(tmp_path, TWO_BOUNDS), out=tmp_path / "out", progress=False).set_index("bound")
    assert df.loc["infonce", "status"] == "diverged" and why in df.loc["infonce", "error"]
    assert df.loc["infonce", "mi_estimate"] == pytest.approx(reported(torch.zeros(1, 16)).item())
    assert df.loc["nwj", "status"] == "ok"


def test_a_learning_rate_of_a_million_gives_diverged_rows_not_ok_ones(tmp_path):
    text = TINY_HEAD.format(steps=30).replace("batch_size = 32", "batch_size = 16\nlr = 1e6") + \
        "[[grid]]\nbounds = ['infonce', 'smile', 'mine', 'dv', 'alpha_infonce']\n"
    df = sweep(_write(tmp_path, text), out=tmp_path / "out", progress=False)
    assert (df["status"] == "diverged").all(), df[["bound", "status", "mi_estimate"]]
    finite = df[df["mi_estimate"].map(math.isfinite)]
    assert len(finite) and (finite["mi_estimate"].abs() > BLOW_UP).all()


def test_an_external_estimate_of_1e308_is_diverged_and_a_sane_one_ok(tmp_path):
    grid = ("[[grid]]\nname = '{name}'\nestimators = ['external']\nn_samples = 100\nlabel = '{name}'\n"
            "command = \"sh -c 'echo {value}' sh {{x}} {{y}}\"\n")
    text = TINY_HEAD.format(steps=3) + grid.format(name="huge", value="1e308") + grid.format(name="sane", value=0.4)
    df = sweep(_write(tmp_path, text), out=tmp_path / "out", progress=False).set_index("bound")
    assert df.loc["huge", "status"] == "diverged" and "blow-up" in df.loc["huge", "error"]
    assert df.loc["huge", "mi_estimate"] == 1e308
    assert df.loc["sane", "status"] == "ok" and df.loc["sane", "mi_estimate"] == 0.4


# ---------------------------------------------------------------------------------------------
# What a newcomer sees first


def test_help_reads_cleanly_and_names_every_command(capsys):
    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text
    commands = next(a for a in parser._actions if a.dest == "command").choices
    assert "status" in commands
    description = parser.description
    for name in commands:
        assert name in description, name


def test_list_columns_line_up_whatever_the_length_of_the_names(capsys):
    import re

    assert main(["list"]) == 0
    sections = capsys.readouterr().out.strip().split("\n\n")
    for section in sections[:-1]:                       # the last is one line of libraries
        header, *rows = section.splitlines()
        starts = set()
        for row in rows:
            named = re.match(r"  \S+ +", row)
            starts.add(named.end() if named else len(row) - len(row.lstrip()))
        assert len(starts) == 1, f"{header}: the second column starts at {sorted(starts)}"
        assert all(re.match(r"  \S+ ", row) or row.startswith("   ") for row in rows), header


def test_a_failed_offline_download_leaves_no_empty_folders(tmp_path, monkeypatch):
    from torchvision import datasets

    from mibench import data
    from mibench.interface import DataNotFoundError

    monkeypatch.setattr(datasets.MNIST, "mirrors", ["http://127.0.0.1:9/"])   # nothing listens there
    root = tmp_path / "fresh" / "data"
    with pytest.raises(DataNotFoundError, match="download failed"):
        data.load_split("mnist", True, root)
    assert not (tmp_path / "fresh").exists()
    kept = tmp_path / "kept" / "MNIST" / "raw"                 # a folder the user made is left alone
    kept.mkdir(parents=True)
    (kept / "notes.txt").write_text("mine")
    with pytest.raises(DataNotFoundError, match="download failed"):
        data.load_split("mnist", False, tmp_path / "kept")
    assert sorted(p.name for p in kept.iterdir()) == ["notes.txt"]
