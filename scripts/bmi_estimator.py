#!/usr/bin/env python3
"""One of BMI's own estimators on a saved sample: the worked example of an external estimator.

    python scripts/bmi_estimator.py --setup                      # build BMI's environment, once
    python scripts/bmi_estimator.py ksg x.npy y.npy              # prints the estimate in nats
    python scripts/bmi_estimator.py infonce x.npy y.npy --seed 3

x and y are arrays of shape (n, d) as numpy ``.npy`` files or comma-separated ``.csv`` files
(no header, one row per pair), as mibench's ``external`` sample estimator saves them. The last
line of standard output is the estimate in nats. In a preset:

    [[grid]]
    name = "bmi_ksg"
    estimators = ["external"]
    command = "{python} scripts/bmi_estimator.py ksg {x} {y} --seed {seed}"
    label = "KSG (BMI)"
    library = "bmi"

BMI (``benchmark-mi`` 0.1.3) cannot be installed beside mibench, so when the running Python
cannot import it the script runs itself again with the Python of BMI's environment (``--venv``,
default ~/.cache/mibench-bench/benchmark-mi-0.1.3; see bmi_env.py). It never builds that
environment on its own: ``--setup`` does. The estimators and their settings are those of BMI's
benchmark workflows (``ESTIMATORS`` below names the file each comes from). ``--seed`` sets the
seed of the estimators that take one (the neural ones: their weights, the train/test split and
the batches); without it they keep BMI's default, 42, which BMI's workflows use for every
sample. The others take no seed and ignore it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bmi_env  # noqa: E402  (scripts/ is not a package)

MISSING = "BMI's environment is missing: build it with python scripts/bmi_estimator.py --setup"
_REEXEC = "MIBENCH_BMI_ESTIMATOR_REEXEC"    # set when the script runs itself in BMI's Python

# The neural ones keep the defaults of src/bmi/estimators/neural/_estimators.py (BMI's second
# benchmark sets only verbose=False): an MLP critic with hidden layers (16, 8), Adam at learning
# rate 0.1, batches of 256, standardized data, half the sample to train on and the other half to
# estimate on every 250 steps, at most 10,000 steps but stopping once two checks in a row did not
# beat the best held-out estimate, which is the result; seed 42. MINE adds gradient smoothing
# with alpha 0.9. The histogram fills n_bins ** (d_x + d_y) cells: for small d only.
_V2 = "workflows/benchmark/v2/config.py"
# name -> (class in bmi.estimators, constructor arguments, takes a seed, where BMI sets it so)
ESTIMATORS: dict[str, tuple[str, dict, bool, str]] = {
    "ksg": ("KSGEnsembleFirstEstimator", {"neighborhoods": (10,)}, False, f"{_V2} (KSG-10)"),
    "cca": ("CCAMutualInformationEstimator", {}, False, f"{_V2} (CCA)"),
    "histogram": ("HistogramEstimator", {"n_bins_x": 10}, False,
                  "workflows/projects/Mixtures/cool_tasks.smk (Hist-10)"),
    "kde": ("KDEMutualInformationEstimator", {}, False,
            "src/bmi/estimators/_kde.py defaults (no BMI workflow runs it)"),
    "infonce": ("InfoNCEEstimator", {"verbose": False}, True, f"{_V2} (InfoNCE)"),
    "nwj": ("NWJEstimator", {"verbose": False}, True, f"{_V2} (NWJ)"),
    "mine": ("MINEEstimator", {"verbose": False}, True, f"{_V2} (MINE)"),
    "dv": ("DonskerVaradhanEstimator", {"verbose": False}, True, f"{_V2} (Donsker-Varadhan)"),
}


def _parser() -> argparse.ArgumentParser:
    epilog = "estimators (settings from the benchmark-mi repository):\n" + "\n".join(
        f"  {name:10s} {cls}({_args(kw)})\n  {'':10s}   {where}" for name, (cls, kw, _, where) in ESTIMATORS.items())
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=epilog,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", nargs="?", help="the estimator: " + ", ".join(ESTIMATORS))
    parser.add_argument("x", nargs="?", type=Path, help="x, shape (n, d_x), .npy or .csv")
    parser.add_argument("y", nargs="?", type=Path, help="y, shape (n, d_y), .npy or .csv")
    parser.add_argument("--seed", type=int, help="seed of the neural estimators (default: BMI's, 42)")
    parser.add_argument("--venv", type=Path, default=bmi_env.DEFAULT_VENV, help="BMI's virtual environment")
    parser.add_argument("--setup", action="store_true", help="build BMI's environment and exit")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of JAX and BLAS (default 1, as mibench's workers: one "
                             "core per run; a number of threads changes no estimate beyond "
                             "the order of floating-point sums)")
    return parser


def _args(kwargs: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _load(path: Path):
    import numpy as np

    a = np.loadtxt(path, delimiter=",", ndmin=2) if path.suffix == ".csv" else np.load(path)
    return np.asarray(a, dtype=np.float64).reshape(len(a), -1)


def estimate(name: str, x_path: Path, y_path: Path, seed: int | None) -> float:
    """The estimate in nats; runs in BMI's environment."""
    import bmi.estimators

    cls, kwargs, seeded, _ = ESTIMATORS[name]
    if seeded and seed is not None:
        kwargs = {**kwargs, "seed": seed}
    estimator = getattr(bmi.estimators, cls)(**kwargs)
    x, y = _load(x_path), _load(y_path)
    if len(x) != len(y):
        raise SystemExit(f"x and y hold different numbers of pairs: {len(x)} and {len(y)}")
    return float(estimator.estimate(x, y))


def _limit_threads(threads: int) -> None:
    """XLA's CPU backend and the BLAS libraries read these when first imported. A setting the
    caller made already (XLA_FLAGS, OMP_NUM_THREADS, ...) is kept."""
    flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" if threads == 1 else \
        f"intra_op_parallelism_threads={threads}"
    os.environ.setdefault("XLA_FLAGS", flags)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))


def _bmi_importable() -> bool:
    try:
        import bmi.estimators  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args = parser.parse_args(argv)
    if args.setup:
        print(bmi_env.bmi_python(args.venv, create=True))
        return 0
    if args.name is None or args.x is None or args.y is None:
        parser.error("give NAME, X and Y (or --setup)")
    if args.name not in ESTIMATORS:
        print(f"unknown BMI estimator {args.name!r}; known: {', '.join(ESTIMATORS)}", file=sys.stderr)
        return 2
    if args.threads < 1:
        print(f"--threads must be at least 1, got {args.threads}", file=sys.stderr)
        return 2
    _limit_threads(args.threads)    # before JAX or numpy is imported, and inherited on re-exec
    if not _bmi_importable():
        if os.environ.get(_REEXEC):
            print(f"BMI's environment cannot import bmi: rebuild it with python scripts/bmi_estimator.py "
                  f"--setup (running {sys.executable})", file=sys.stderr)
            return 2
        try:
            python = str(bmi_env.bmi_python(args.venv, create=False))
        except bmi_env.BMIEnvMissing:
            print(MISSING, file=sys.stderr)
            return 2
        command = [python, str(Path(__file__).resolve()), *argv]
        os.environ[_REEXEC] = "1"
        sys.stdout.flush()
        sys.stderr.flush()
        if os.name == "posix":
            os.execv(python, command)       # one process: a timeout that kills it stops the work
        return subprocess.run(command, check=False).returncode
    print(repr(estimate(args.name, args.x, args.y, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
