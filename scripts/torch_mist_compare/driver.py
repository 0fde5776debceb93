"""The driver: the plan of comparisons, sizing each series and the alternating measurement.

Runs in the Python that has mibench; the workers (``worker``) run the series.
"""

from __future__ import annotations

import os
import shlex
import statistics
import sys
from pathlib import Path

from . import report
from .shared import BATCH, GAUSS_CONFIGS
from .torch_mist_side import check_seed_spec
from .venv import ensure_torch_mist_env
from .worker import Worker

PRESET = "paired_mnist"      # the seed MNIST cell is this preset's [estimator] and [train]
MNIST_TRAIN_SIZE = 60_000    # items in one pass of the torch-mist loader

# glibc's malloc thresholds as mibench sets them at run time (mibench.cpu.keep_freed_buffers),
# given to a second torch-mist worker through glibc's environment variables: that series shows
# how much of a ratio is the allocator setting and how much the rest.
SAME_ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(256 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}


def seed_cell() -> dict:
    """The seed MNIST cell as tasks/paired_mnist.toml states it, in plain JSON values for the
    workers: the estimator spec with its bound's options filled in (tau for SMILE), the batch
    size and the learning rate."""
    from mibench.estimators import EstimatorSpec
    from mibench.presets import load_preset

    preset = load_preset(PRESET)
    spec = EstimatorSpec.from_dict(preset.estimator)
    return {"estimator": spec.to_dict(), "batch_size": int(preset.train["batch_size"]),
            "lr": float(preset.train["lr"])}


# The comparisons: (group, title, [(key, side, series, label)], kind, probe steps, warm-up)
def plan(only: str | None, cell: dict) -> list[dict]:
    groups = []
    if only in (None, "mnist"):
        spec, batch = cell["estimator"], cell["batch_size"]
        groups.append({
            "group": "mnist", "unit": "pairs/s", "batch": batch,
            "title": (f"Seed MNIST cell: shared conv encoder, SMILE, joint {list(spec['hidden'])}, "
                      f"{spec['negatives']} negatives, batch {batch}"),
            "series": [
                ("a", "torch_mist", "mnist_notebook", "(a) torch-mist training loop, example data set"),
                ("c", "mibench", "mnist_fit", "(c) mibench fit"),
                ("b", "torch_mist", "mnist_model", "(b) torch-mist model-only step"),
                ("d", "mibench", "mnist_model", "(d) mibench model-only step"),
                ("b_heap", "torch_mist_heap", "mnist_model", "(b') torch-mist model-only, same allocator"),
            ],
            # full batches in one pass of the torch-mist loader, less one
            "probe": 3, "warmup": 3, "max_steps": MNIST_TRAIN_SIZE // batch - 1,
        })
    if only in (None, "gaussian"):
        for config, (_, tm, title) in GAUSS_CONFIGS.items():
            series = [("mibench", "mibench", f"gauss_{config}_fit", "mibench fit")]
            if tm is not None:
                series += [("torch_mist", "torch_mist", f"gauss_{config}_plain", "torch-mist plain loop"),
                           ("torch_mist_util", "torch_mist", f"gauss_{config}_util",
                            "torch-mist train_mi_estimator"),
                           ("torch_mist_heap", "torch_mist_heap", f"gauss_{config}_plain",
                            "torch-mist plain loop, same allocator")]
            groups.append({"group": f"gaussian/{config}", "unit": "steps/s", "batch": BATCH,
                           "title": f"20-d Gaussian, batch {BATCH}: {title}", "series": series,
                           "probe": 10, "warmup": 10, "max_steps": None})
    return groups


def run_group(group: dict, workers: dict, args) -> dict:
    """Size each series with a probe (which also warms its worker up), then measure the series
    in turn, the order flipping every repeat."""
    quick = args.quick
    warmup = 2 if quick else group["warmup"]
    scale = group["batch"] if group["unit"] == "pairs/s" else 1
    print(f"\n{group['title']}", flush=True)
    steps = {}
    for key, side, series, label in group["series"]:
        if quick:                                           # no probe: a fixed, small N
            steps[key] = group["probe"]
            continue
        rate = workers[side].measure(series, group["probe"], warmup, seed=0)   # warms up, sizes N
        n = max(group["probe"], round(rate * args.seconds))
        if group["max_steps"]:
            n = min(n, group["max_steps"] - warmup)
        steps[key] = n
    runs = {key: [] for key, *_ in group["series"]}
    order = list(group["series"])
    for r in range(args.repeats):
        for key, side, series, label in (order if r % 2 == 0 else order[::-1]):
            rate = workers[side].measure(series, steps[key], warmup, seed=r + 1)
            runs[key].append(rate * scale)
            print(f"  repeat {r + 1}/{args.repeats}  {label:<48} {rate * scale:10.1f} {group['unit']}",
                  flush=True)
    out = {"title": group["title"], "unit": group["unit"], "warmup": warmup, "series": {}}
    for key, side, series, label in group["series"]:
        vals = runs[key]
        out["series"][key] = {"label": label, "library": side, "steps": steps[key], "runs": vals,
                              "median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    return out


def run(args) -> int:
    """The whole comparison, for the parsed command line of compare_torch_mist.py."""
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.seconds = args.seconds or 8.0
    try:
        import mibench  # noqa: F401  (the mibench side runs in this Python)
    except ImportError:
        raise SystemExit("mibench is not importable from this Python: pip install -e . first") from None

    cell = seed_cell()
    check_seed_spec(cell["estimator"])
    tm_python = ensure_torch_mist_env(Path(args.venv).expanduser(), shlex.split(args.pip_args))
    data_dir = None
    if args.only in (None, "mnist"):
        from mibench.data import load_split, resolve_data_dir
        from mibench.interface import DataNotFoundError

        try:
            load_split("mnist", True, args.data_dir)      # fetches the files if they are missing
        except DataNotFoundError as exc:
            raise SystemExit(str(exc)) from None
        data_dir = str(resolve_data_dir(args.data_dir))

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    workers = {}
    try:
        workers["mibench"] = Worker("mibench", sys.executable, data_dir, cell, env)
        workers["torch_mist"] = Worker("torch_mist", str(tm_python), data_dir, cell, env)
        workers["torch_mist_heap"] = Worker("torch_mist_heap", str(tm_python), data_dir, cell,
                                            dict(env, **SAME_ALLOCATOR_ENV))
        for w in workers.values():
            print(f"{w.name}: " + ", ".join(f"{k} {v}" for k, v in w.versions.items()))
        results = {}
        for group in plan(args.only, cell):
            res = run_group(group, workers, args)
            res["ratios"] = report.ratios(group["group"], res)
            results[group["group"]] = res
        if "mnist" in results:       # mibench's fraction of this thread's matmul peak
            results["mnist"]["roofline"] = report.roofline(
                results["mnist"], workers["mibench"].value("mnist_step_flops"),
                workers["mibench"].value("matmul_peak"), cell["batch_size"])
    finally:
        for w in workers.values():
            w.close()

    report.summary(results)
    if args.json:
        report.save_json(args.json, results, versions={name: w.versions for name, w in workers.items()},
                         batch_size=BATCH, seed_cell=cell, args=args)
    return 0
