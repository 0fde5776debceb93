#!/usr/bin/env python3
"""BMI's own ground-truth MI for its tasks, from its package, next to mibench's.

    python scripts/bmi_truths.py                    # builds BMI's environment once, then compares
    python scripts/bmi_truths.py --json results/reference/bmi_truths.json

BMI (``benchmark-mi``) pins old numpy, pandas, pydantic and jax, so it cannot share mibench's
environment: the first run creates its own virtual environment (``--venv``, default
~/.cache/mibench-bench/benchmark-mi-0.1.3) with ``benchmark-mi==0.1.3`` and jax 0.4.33 (its
tensorflow-probability needs a jax from before 0.4.34); ``bmi_env.py`` beside this script builds
and finds it. A worker in that environment prints each task's ``mutual_information`` by its id;
this script builds the same id with mibench's ``bmi`` family and prints both. ``--json`` saves
BMI's values, which tests/test_bmi_tasks.py checks mibench's truths against (analytic ones to
1e-6 nats, Monte Carlo ones within 4 of mibench's standard errors).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bmi_env import BMI_PINS, DEFAULT_VENV, bmi_python  # noqa: E402  (scripts/ is not a package)

# Runs inside BMI's environment: every task of its first suite and of its second suite's config.
WORKER = r"""
import json
import bmi.benchmark.task_list as task_list
import bmi.benchmark.tasks.mixtures as m
tasks = list(task_list.BENCHMARK_TASKS_LIST) + [
    m.task_x(), m.task_ai(), m.task_waves(), m.task_galaxy(),
    *[m.task_concentric_multinormal(dim_x=d, n_components=c) for d, c in ((3, 5), (5, 5), (3, 10), (5, 10), (25, 5))],
    *[m.task_multinormal_sparse_w_inliers(dim_x=d, dim_y=d, inlier_fraction=f) for f in (0.2, 0.5) for d in (5, 25)],
]
print(json.dumps({t.id: float(t.mutual_information) for t in tasks}))
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, help="BMI's virtual environment")
    parser.add_argument("--json", type=Path, help="save BMI's values here")
    args = parser.parse_args(argv)
    out = subprocess.run([str(bmi_python(args.venv)), "-c", WORKER], check=True, capture_output=True, text=True)
    theirs = json.loads(out.stdout.strip().splitlines()[-1])

    from mibench.distributions import TASK_FAMILIES

    family = TASK_FAMILIES["bmi"]
    print(f"{'BMI task':48s} {'mibench':>18s} {'BMI':>8s}  difference")
    for name, value in theirs.items():
        truth = family.build({"name": name}).ground_truth()
        diff = truth.mi - value
        ours = f"{truth.mi:.4f} ± {truth.stderr:.4f}" if truth.stderr else f"{truth.mi:.6f}"
        gap = f"{diff:+.4f} ({diff / truth.stderr:+.1f} SE)" if truth.stderr else f"{diff:+.1e}"
        print(f"{name:48s} {ours:>18s} {value:8.4f}  {gap}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"package": BMI_PINS[0], "mutual_information": theirs},
                                        indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
