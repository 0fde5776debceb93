#!/usr/bin/env python3
"""Training speed of mibench and BMI's own package (benchmark-mi 0.1.3) on BMI's small critics,
measured side by side in one run.

Not part of the test suite: a reproducible benchmark of the step that BMI's suites repeat
thousands of times, a joint MLP critic with hidden layers (16, 8) on batches of 256 (all
256 x 256 pairs scored), Adam at learning rate 0.1, as tasks/bmi_v2.toml states it.

Usage (from a checkout, with a Python that has mibench installed):

    python scripts/bmi_speed.py                         # 4 bounds x 4 dims, 2,000 steps, 3 repeats
    python scripts/bmi_speed.py --quick                 # smoke check: about half a minute
    python scripts/bmi_speed.py --bounds infonce --dims 5 --repeats 5 --json out.json

BMI's side runs in BMI's own environment (``--venv``, default
~/.cache/mibench-bench/benchmark-mi-0.1.3; build it once with
``python scripts/bmi_estimator.py --setup``). Without it the script says so and times mibench
alone: the BMI columns are then empty.

What is compared. For each bound (InfoNCE, NWJ, DV, MINE) and dims d x d (1, 5, 25, 50), on
the same sample: 2,500 training pairs of BMI's multinormal-dense-d-d-0.5 task (the cost
depends on the shapes only) and 2,500 held-out pairs, standardised with their union's
statistics, as mibench's runner prepares a bmi_v2 run.
  mibench  ``fit`` on that fixed sample, batches drawn anew each step (bmi_v2's ``batches =
           "independent"``), the [estimator] and [train] settings of tasks/bmi_v2.toml.
  BMI      its estimator's ``estimate_with_info`` on the union of the two halves (5,000
           pairs: BMI standardises and splits them itself), constructed as BMI's v2 benchmark
           constructs it (scripts/bmi_estimator.py's table) with the same hidden layers, batch
           size and learning rate, and ``max_n_steps`` = the steps to time. That runs BMI's
           own training loop unchanged (``basic_training``, ``mine_training`` for MINE): its
           jit-compiled step, its batch sampling and its per-step logging. It is timed through
           BMI's ``TrainingLog``, replaced in those two modules by a subclass that notes the
           time of each step as the loop logs it; nothing else of BMI's code is touched.
Both run a fixed number of steps, with no held-out evaluation and no early stopping (BMI's
``test_every_n_steps`` lies beyond the last step). steps/s is measured over --steps steps after
--warmup steps; what the warm-up steps cost beyond that many steady steps is reported apart as
the one-off cost ("compile s"): for BMI, JAX's tracing and XLA compilation of the step (each
call of BMI's loop jit-compiles its step afresh; MINE's twice, as its smoothed denominator
turns from a Python float into an array after the first step, hence at least 2 warm-up steps),
for mibench the first steps' allocations.

One thread, one core. Each library runs in its own worker process (mibench in this Python, BMI
in its environment's), both started with OMP_NUM_THREADS = MKL_NUM_THREADS = 1,
``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``, and pinned to
one core (``--cpu``, default the lowest core this process may use); mibench's worker sets
``torch.set_num_threads(1)``. The workers stay up for the whole run and only one computes at a
time: every repeat measures each row with both libraries in turn, the order flipping from row
to row and from repeat to repeat; the figure is the median over --repeats.

FLOPs and the roofline. FLOPs per step are counted from the layer sizes (``critic_flops`` in
bmi_compare/report.py, which states the formula): the forward and backward pass of the critic
on the 256 x 256 pairs, its first layer split as W_x x + W_y y (each x and y multiplied once;
about 58 MFLOP at 5 x 5). BMI computes the same scores with the first layer applied to every
concatenated pair, more arithmetic for the same result: its row is measured against the same
count, so the two fractions compare useful work. BMI's MINE step scores only 2 x 256 pairs (a
batch and a shuffled copy of it), so its fraction counts those. The roofline is a float32
matrix product (torch.mm, 1024 x 1024) timed in mibench's worker in the same run, on the same
core and thread; JAX's own (jnp.dot) is timed in BMI's worker and recorded beside it.

--json OUT saves every measurement, the medians, ratios, FLOPs, peaks and versions.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

# The implementation lives in the package next to this file (scripts/bmi_compare/). The workers
# run this file too, BMI's in its own environment, so the package is found by this file's path.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

import bmi_env  # noqa: E402  (standard library only)
from bmi_compare.worker import SIDES  # noqa: E402

BOUNDS = ("infonce", "nwj", "dv", "mine")
DIMS = (1, 5, 25, 50)


def _bounds(text: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    wrong = [n for n in names if n not in BOUNDS]
    if not names or wrong:
        raise argparse.ArgumentTypeError(f"bounds must be some of {', '.join(BOUNDS)}, got {text!r}")
    return names


def _dims(text: str) -> list[int]:
    try:
        dims = list(dict.fromkeys(int(d) for d in text.split(",") if d.strip()))
    except ValueError:
        dims = []
    if not dims or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"dims must be positive integers separated by commas, got {text!r}")
    return dims


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _warmup(text: str) -> int:
    value = _positive(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be at least 2 (BMI's MINE compiles its step on the first two "
                                         f"steps), got {text!r}")
    return value


def _cpu(text: str) -> int | None:
    if text == "none" or (text == "lowest" and not hasattr(os, "sched_getaffinity")):
        return None
    if text == "lowest":
        return min(os.sched_getaffinity(0))
    try:
        cpu = int(text)
    except ValueError:
        cpu = -1
    if cpu < 0:
        raise argparse.ArgumentTypeError(f"must be a core number, 'lowest' or 'none', got {text!r}")
    allowed = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    if allowed is not None and cpu not in allowed:
        raise argparse.ArgumentTypeError(f"core {cpu} is not one this process may run on "
                                         f"({', '.join(map(str, allowed))})")
    return cpu


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Training speed of mibench and BMI's package on BMI's small "
                                            "critics, side by side (see the module docstring).")
    p.add_argument("--quick", action="store_true",
                   help="a smoke check: 20 steps after 3 warm-up steps, 1 repeat; the figures mean nothing")
    p.add_argument("--steps", type=_positive, help="timed steps per measurement (default 2000)")
    p.add_argument("--warmup", type=_warmup, help="steps before the timing starts, at least 2 (default 10)")
    p.add_argument("--repeats", type=_positive, help="measurements per row and library (default 3)")
    p.add_argument("--bounds", type=_bounds, default=list(BOUNDS),
                   help=f"comma-separated, some of {','.join(BOUNDS)} (default all)")
    p.add_argument("--dims", type=_dims, default=list(DIMS),
                   help=f"comma-separated d of the d x d tasks (default {','.join(map(str, DIMS))})")
    p.add_argument("--cpu", type=_cpu, default="lowest",
                   help="the core both workers are pinned to, or 'none' (default: the lowest this process may use)")
    p.add_argument("--json", metavar="OUT", help="save every figure to this JSON file")
    p.add_argument("--venv", type=Path, default=bmi_env.DEFAULT_VENV,
                   help=f"BMI's environment (default {bmi_env.DEFAULT_VENV})")
    p.add_argument("--no-bmi", action="store_true", help="time mibench alone")
    # a worker process (bmi_compare.worker): its side and its core
    p.add_argument("--worker", choices=list(SIDES), help=argparse.SUPPRESS)
    p.add_argument("--pin", type=int, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.json and (Path(args.json).is_dir() or not Path(args.json).resolve().parent.is_dir()):
        p.error(f"--json {args.json}: not a file in an existing folder")   # before the long run, not after
    if args.worker:
        from bmi_compare.worker import serve

        serve(args.worker, args.pin)
        return 0
    from bmi_compare.driver import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
