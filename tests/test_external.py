"""The external sample estimator (a program run on the saved sample) and scripts/bmi_estimator.py,
BMI's estimators through it. Nothing here needs BMI's environment: the programs are tiny Python
scripts, and BMI's side is a stand-in package behind a stand-in environment."""

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mibench.executors import sweep

REPO = Path(__file__).resolve().parents[1]
BMI_ESTIMATOR = REPO / "scripts" / "bmi_estimator.py"
sys.path.append(str(REPO / "scripts"))    # scripts/ is not a package
import bmi_env  # noqa: E402

HEAD = """
name = "external"
[task]
family = "gaussian"
dim = 2
mi = 0.5
"""

# Reads the two arrays, records what it saw, prints a line of chatter and then the estimate.
READER = """
import json, sys
import numpy as np
x_path, y_path, n, seed, record = sys.argv[1:]
load = (lambda p: np.loadtxt(p, delimiter=",", ndmin=2)) if x_path.endswith(".csv") else np.load
x, y = load(x_path), load(y_path)
with open(record, "w") as f:
    json.dump({"x": list(x.shape), "y": list(y.shape), "n": int(n), "seed": int(seed),
               "suffix": x_path.rsplit(".", 1)[-1], "rows_differ": bool((x != y).any())}, f)
print("reading done")
print(0.123456789)
"""


def grid(name: str, command: str, **options) -> str:
    """A [[grid]] of one sample estimator (``external`` unless ``estimator`` is given)."""
    estimator = options.pop("estimator", "external")
    lines = ["[[grid]]", f"name = {json.dumps(name)}", f"estimators = [{json.dumps(estimator)}]",
             "n_samples = 500"]
    if command:
        lines.append(f"command = {json.dumps(command)}")
    lines += [f"{k} = {json.dumps(v)}" for k, v in options.items()]
    return "\n".join(lines) + "\n"


def run_preset(tmp_path: Path, grids: str):
    path = tmp_path / "external.toml"
    path.write_text(HEAD + grids)
    return sweep(str(path), out=tmp_path / "out", progress=False)


def q(path: Path) -> str:
    return shlex.quote(str(path))


@pytest.mark.parametrize("fmt", ["npy", "csv"])
def test_an_external_program_gets_the_sample_and_its_number_is_the_estimate(tmp_path, fmt):
    script = tmp_path / "reader.py"
    script.write_text(READER)
    record = tmp_path / "seen-{seed}.json"
    df = run_preset(tmp_path, grid("reader", f"{{python}} {q(script)} {{x}} {{y}} {{n}} {{seed}} {q(record)}",
                                   format=fmt, label="Reader", library="elsewhere", seeds=[0, 3]))
    assert len(df) == 2 and (df["status"] == "ok").all(), df["error"].tolist()
    assert df["mi_estimate"].tolist() == [0.123456789, 0.123456789]
    assert set(df["bound"]) == {"Reader"} and set(df["library"]) == {"elsewhere"}
    assert set(df["estimator_kind"]) == {"sample"} and df["mi_true"].tolist() == pytest.approx([0.5, 0.5])
    for seed in (0, 3):
        seen = json.loads((tmp_path / f"seen-{seed}.json").read_text())
        assert seen == {"x": [500, 2], "y": [500, 2], "n": 500, "seed": seed, "suffix": fmt, "rows_differ": True}


def test_failing_programs_and_unknown_names_give_error_rows_and_the_sweep_goes_on(tmp_path):
    script = tmp_path / "reader.py"
    script.write_text(READER)
    record = tmp_path / "seen-{seed}.json"
    py = "{python} -c"
    grids = (
        grid("ok", f"{{python}} {q(script)} {{x}} {{y}} {{n}} {{seed}} {q(record)}", label="fine")
        + grid("exits", py + """ "import sys; sys.stderr.write('boom happened'); sys.exit(3)" {x} {y}""",
               label="exits")
        + grid("garbage", py + """ "print(1.5); print('not a number')" {x} {y}""", label="garbage")
        + grid("sleeps", py + """ "import time; time.sleep(30)" {x} {y}""", label="sleeps", timeout=1)
        + grid("no_program", f"{q(tmp_path / 'absent-program')} {{x}} {{y}}", label="absent")
        + grid("typo", "", estimator="ksgg"))
    df = run_preset(tmp_path, grids).set_index("grid")
    assert len(df) == 6
    assert df.loc["ok", "status"] == "ok" and df.loc["ok", "mi_estimate"] == 0.123456789
    errors = df.drop(index="ok")
    assert (errors["status"] == "error").all()
    assert errors["error"].map(lambda e: isinstance(e, str) and e.count("\n") == 0).all()
    reasons = errors["error"].to_dict()
    assert "exited with status 3" in reasons["exits"] and "boom happened" in reasons["exits"]
    assert "no number" in reasons["garbage"] and "not a number" in reasons["garbage"]
    assert "timed out after 1 s" in reasons["sleeps"]
    assert "could not start" in reasons["no_program"]
    assert "ksgg" in reasons["typo"] and "ksg" in reasons["typo"].replace("ksgg", "")
    assert errors["mi_estimate"].isna().all()


# --- scripts/bmi_estimator.py -------------------------------------------------------------------

def bmi_estimator(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BMI_ESTIMATOR), *map(str, args)], check=False, capture_output=True,
                          text=True, timeout=60, env=env, cwd=REPO)


@pytest.fixture
def no_bmi_here():
    import importlib.util

    if importlib.util.find_spec("bmi") is not None:
        pytest.skip("this Python can import a package named bmi")


def test_an_unknown_bmi_estimator_is_refused_with_the_known_names(tmp_path, no_bmi_here):
    done = bmi_estimator("ksgg", tmp_path / "x.npy", tmp_path / "y.npy", "--venv", tmp_path / "absent")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "'ksgg'" in lines[0]
    known = lines[0].split("known:")[1].replace(",", " ").split()
    assert {"ksg", "cca", "histogram", "infonce", "nwj", "mine", "dv"} <= set(known)


def test_a_missing_bmi_environment_is_one_line_and_not_built(tmp_path, no_bmi_here):
    venv = tmp_path / "absent"
    done = bmi_estimator("ksg", tmp_path / "x.npy", tmp_path / "y.npy", "--venv", venv)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "BMI's environment is missing: build it with python scripts/bmi_estimator.py --setup"]
    assert not venv.exists()
    # an environment whose build did not finish (no record of its pins) is missing too
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    done = bmi_estimator("ksg", tmp_path / "x.npy", tmp_path / "y.npy", "--venv", venv)
    assert done.returncode == 2 and "missing" in done.stderr


# A stand-in for BMI: records how each estimator was built and returns a number from it.
FAKE_BMI = """
import json, os

def _make(cls_name):
    class Estimator:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
        def estimate(self, x, y):
            with open(os.environ["FAKE_BMI_RECORD"], "w") as f:
                json.dump({"class": cls_name, "kwargs": self.kwargs, "x": list(x.shape), "y": list(y.shape),
                           "dtype": str(x.dtype)}, f)
            print("training chatter")
            return 0.25 * x.shape[1] + self.kwargs.get("seed", 0)
    Estimator.__name__ = cls_name
    return Estimator

for _name in ("KSGEnsembleFirstEstimator", "CCAMutualInformationEstimator", "HistogramEstimator",
              "KDEMutualInformationEstimator", "InfoNCEEstimator", "NWJEstimator", "MINEEstimator",
              "DonskerVaradhanEstimator"):
    globals()[_name] = _make(_name)
"""


@pytest.mark.skipif(os.name != "posix", reason="the stand-in environment's python is a shell script")
def test_bmi_estimator_runs_itself_again_in_bmi_environment(tmp_path, no_bmi_here):
    import numpy as np

    fake = tmp_path / "fake_site" / "bmi"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "estimators.py").write_text(FAKE_BMI)
    venv = tmp_path / "bmi-venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f"#!/bin/sh\nPYTHONPATH={q(fake.parent)} exec {q(Path(sys.executable))} \"$@\"\n")
    python.chmod(0o755)
    (venv / bmi_env.READY_FILE).write_text("\n".join(bmi_env.BMI_PINS) + "\n")
    x, y = np.zeros((40, 3)), np.ones((40, 2))
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.csv", y, delimiter=",")
    record = tmp_path / "record.json"
    env = {**os.environ, "FAKE_BMI_RECORD": str(record)}

    done = bmi_estimator("ksg", tmp_path / "x.npy", tmp_path / "y.csv", "--venv", venv, "--seed", 7, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "0.75"          # seed not taken by KSG
    seen = json.loads(record.read_text())
    assert seen == {"class": "KSGEnsembleFirstEstimator", "kwargs": {"neighborhoods": [10]}, "x": [40, 3],
                    "y": [40, 2], "dtype": "float64"}

    done = bmi_estimator("infonce", tmp_path / "x.npy", tmp_path / "y.csv", "--venv", venv, "--seed", 7, env=env)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.strip().splitlines()[-1]) == 7.75
    assert json.loads(record.read_text())["kwargs"] == {"verbose": False, "seed": 7}

    done = bmi_estimator("mine", tmp_path / "x.npy", tmp_path / "y.csv", "--venv", venv, env=env)
    assert float(done.stdout.strip().splitlines()[-1]) == 0.75      # BMI's own default seed
    assert json.loads(record.read_text())["kwargs"] == {"verbose": False}


def test_bmi_truths_takes_bmi_environment_from_bmi_env():
    import bmi_truths

    assert bmi_truths.bmi_python is bmi_env.bmi_python and bmi_truths.BMI_PINS is bmi_env.BMI_PINS
    assert bmi_truths.DEFAULT_VENV == bmi_env.DEFAULT_VENV
