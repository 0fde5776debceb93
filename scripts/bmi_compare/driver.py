"""The driver: BMI's cell from tasks/bmi_v2.toml, the workers, the alternating measurement and
the report. Runs in the Python that has mibench; the workers train."""

from __future__ import annotations

import os
import sys
import tempfile

import bmi_env

from . import report
from .worker import Worker, one_thread_env

PRESET = "bmi_v2"
# What BMI's neural estimators are (benchmark-mi 0.1.3's defaults); the preset must say the same.
BMI_CELL = {"critic": "joint", "negatives": "all", "hidden": [16, 8], "batch_size": 256, "lr": 0.1}
DATA_SEED = 0


def bmi_cell() -> dict:
    """The training cell as tasks/bmi_v2.toml states it: the [estimator] table (its bound set per
    row) and each of mibench's bounds as the preset's plan builds it, grid settings included
    (MINE's sampling and moving average: ``per_bound``), batch size, learning rate, log interval
    and the sizes of the two halves. A preset that no longer matches BMI's estimators would time
    two different models: refuse it."""
    from mibench.plan import expand
    from mibench.presets import load_preset

    preset = load_preset(PRESET)
    per_bound = {}                              # each bound's estimator as the preset plans it
    for spec in expand(preset):
        est = spec.estimator
        if est.kind == "neural" and est.is_mibench:
            per_bound.setdefault(est.bound, est.to_dict())
    cell = {"estimator": dict(preset.estimator), "per_bound": per_bound, "hidden": list(preset.estimator["hidden"]),
            "batch_size": int(preset.train["batch_size"]), "lr": float(preset.train["lr"]),
            "log_every": int(preset.train.get("log_every", 250)), "n_train": int(preset.train["n_samples"]),
            "n_test": int(preset.eval["n_samples"])}
    stated = {k: preset.estimator.get(k, cell.get(k)) for k in BMI_CELL}
    wrong = {k: v for k, v in stated.items() if v != BMI_CELL[k]}
    if wrong:
        raise SystemExit(f"tasks/{PRESET}.toml no longer states BMI's estimators {BMI_CELL}: it has {wrong}")
    return cell


def _bmi_python(args) -> str | None:
    if args.no_bmi:
        print("BMI's side left out (--no-bmi): timing mibench alone")
        return None
    try:
        return str(bmi_env.bmi_python(args.venv, create=False))
    except bmi_env.BMIEnvMissing:
        print(f"BMI's environment is missing ({args.venv}): timing mibench alone; build it with "
              "python scripts/bmi_estimator.py --setup")
        return None


def measure(workers: dict, plan: list[tuple[str, int]], data: dict, cell: dict, args) -> dict:
    """Every row with every library, ``args.repeats`` times; the order of the libraries flips
    from row to row and from repeat to repeat. runs[(bound, dims)][library]: measurements."""
    runs = {row: {lib: [] for lib in workers} for row in plan}
    libs = list(workers)
    for r in range(args.repeats):
        for i, (bound, dims) in enumerate(plan):
            for lib in (libs if (r + i) % 2 == 0 else libs[::-1]):
                common = dict(bound=bound, steps=args.steps, warmup=args.warmup, seed=r, cell=cell)
                if lib == "bmi":
                    got = workers[lib].request("train", x=data[dims]["x"], y=data[dims]["y"], **common)
                else:
                    got = workers[lib].request("train", dims=dims, **common)
                runs[(bound, dims)][lib].append(got)
                print(f"  repeat {r + 1}/{args.repeats}  {bound:8} {dims:>2}x{dims:<2}  {lib:8} "
                      f"{got['steps_per_s']:9.1f} steps/s  one-off {max(got['first_s'], 0.0):6.2f} s", flush=True)
    return runs


def run(args) -> int:
    """The whole comparison, for the parsed command line of bmi_speed.py."""
    args.steps = args.steps or (20 if args.quick else 2000)
    args.warmup = args.warmup or (3 if args.quick else 10)
    args.repeats = args.repeats or (1 if args.quick else 3)
    peak_seconds = 0.2 if args.quick else 2.0
    try:
        import mibench  # noqa: F401  (the mibench side runs in this Python)
    except ImportError:
        raise SystemExit("mibench is not importable from this Python: pip install -e . first") from None
    cell = bmi_cell()
    python = _bmi_python(args)
    env = one_thread_env(dict(os.environ))
    plan = [(bound, dims) for bound in args.bounds for dims in args.dims]
    workers: dict[str, Worker] = {}
    with tempfile.TemporaryDirectory(prefix="bmi-speed-") as tmp:
        try:
            workers["mibench"] = Worker("mibench", sys.executable, env, args.cpu)
            if python:
                workers["bmi"] = Worker("bmi", python, env, args.cpu)
            for w in workers.values():
                print(f"{w.side}: " + ", ".join(f"{k} {v}" for k, v in w.versions.items()), flush=True)
            peaks = {lib: w.request("peak", seconds=peak_seconds) for lib, w in workers.items()}
            data = {dims: workers["mibench"].request("prepare", dims=dims, n_train=cell["n_train"],
                                                     n_test=cell["n_test"], seed=DATA_SEED, out=tmp)
                    for dims in args.dims}
            runs = measure(workers, plan, data, cell, args)
        finally:
            for w in workers.values():
                w.close()

    peak = peaks["mibench"]["gflops"]
    table_rows = report.rows(runs, cell, peak)
    where = "no core pinned" if args.cpu is None else f"pinned to core {args.cpu}"
    jax_peak = f"; JAX's {peaks['bmi']['gflops']:.1f} ({peaks['bmi']['what']})" if "bmi" in peaks else ""
    print(f"\nOne thread each, {where}; median of {args.repeats} run(s) of {args.steps} steps after "
          f"{args.warmup} warm-up steps{' (--quick: the figures mean nothing)' if args.quick else ''}.")
    print(f"Matmul peak (the roofline): {peak:.1f} GFLOP/s ({peaks['mibench']['what']}){jax_peak}.\n")
    print(report.table(table_rows))
    print()
    for line in report.notes(table_rows, "bmi" in workers):
        print(line)
    if args.json:
        meta = {"steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "quick": args.quick,
                "cpu": args.cpu, "cell": cell, "peaks": peaks, "roofline_gflops": peak,
                "data": {str(d): {"task": v["task"], "mi": v["mi"]} for d, v in data.items()},
                "bmi": "bmi" in workers, "versions": {lib: w.versions for lib, w in workers.items()},
                "thread_env": {k: env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "XLA_FLAGS")}}
        report.save_json(args.json, table_rows, meta=meta)
    return 0
