"""The mibench side: the samples both libraries train on, mibench's training and the matmul
peak, in the Python that runs the script (one torch thread)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

TASK_FAMILY = "bmi_multinormal_dense"      # BMI's multinormal-dense-d-d-0.5
OFF_DIAG = 0.5


class MibenchSide:
    """The mibench half; runs in the Python that runs this script."""

    def __init__(self):
        import torch

        torch.set_num_threads(1)
        self.samples = {}           # dims -> the fixed training sample

    def versions(self) -> dict:
        import importlib.metadata as md

        import torch

        from mibench.results import git_commit

        return {"python": platform.python_version(), "torch": torch.__version__,
                "mibench": md.version("mibench"), "mibench_commit": git_commit(),
                "threads": torch.get_num_threads()}

    def peak(self, seconds: float, n: int = 1024) -> dict:
        """The float32 matmul peak on this thread (``mibench.cpu.matmul_peak_gflops``)."""
        from mibench.cpu import matmul_peak_gflops

        return {"gflops": matmul_peak_gflops(seconds, n), "n": n, "what": f"torch.mm float32 {n}x{n}"}

    def prepare(self, dims: int, n_train: int, n_test: int, seed: int, out: str) -> dict:
        """The run's data as mibench's runner prepares a bmi_v2 run: a fixed training sample
        (batches drawn anew each step) and a held-out sample of BMI's multinormal-dense task,
        standardised with their union's statistics. The union is saved for BMI's side, which
        standardises and splits it itself; the paths and the task come back."""
        import numpy as np
        import torch

        from mibench.distributions import build_task
        from mibench.finite import FiniteSample, standardize_together

        task = build_task(TASK_FAMILY, {"dim_x": dims, "dim_y": dims, "off_diag": OFF_DIAG})
        train = FiniteSample(task, n_train, torch.Generator().manual_seed(seed), draw="independent")
        test = FiniteSample(task, n_test, torch.Generator().manual_seed(seed + 1))
        standardize_together(train, test)
        self.samples[dims] = train
        paths = {}
        for side in ("x", "y"):
            paths[side] = str(Path(out) / f"{side}-{dims}x{dims}.npy")
            union = torch.cat([getattr(train, side), getattr(test, side)]).reshape(n_train + n_test, -1)
            np.save(paths[side], union.numpy().astype(np.float32))
        return {**paths, "task": task.name, "mi": task.ground_truth().mi}

    def train(self, bound: str, dims: int, steps: int, warmup: int, seed: int, cell: dict) -> dict:
        """mibench's ``fit`` on the prepared sample of ``dims``: steps/s over ``steps`` steps
        after ``warmup``, and the warm-up's cost beyond as many steady steps (first_s)."""
        import torch

        from mibench.estimators import EstimatorSpec, estimator_for
        from mibench.train import fit

        sample = self.samples[dims]
        spec = EstimatorSpec.from_dict(cell["per_bound"][bound])
        batch = cell["batch_size"]
        est = estimator_for(spec, sample, seed=seed)
        t0 = time.perf_counter()
        res = fit(est, sample, steps=warmup + steps, batch_size=batch, lr=cell["lr"],
                  n_negatives=spec.n_negatives(batch), generator=torch.Generator().manual_seed(seed),
                  log_every=cell["log_every"], warmup=warmup)
        wall = time.perf_counter() - t0
        return {"steps_per_s": res.steps_per_s, "first_s": wall - res.train_s - warmup / res.steps_per_s,
                "wall_s": wall, "steps_run": res.steps, "last_estimate": res.trace[-1][1]}
