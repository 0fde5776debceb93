"""The mibench side: the series measured with mibench, in the Python that runs the script.

Series are methods named as the driver's plan names them: mnist_fit, mnist_model and
gauss_<config>_fit; each returns steps per second. The seed MNIST cell (spec, batch size,
learning rate) is tasks/paired_mnist.toml's, handed over by the driver.
"""

from __future__ import annotations

import inspect
import platform

from .shared import BATCH, GAUSS_CONFIGS, GAUSS_DIM, GAUSS_MI, N_FIXED_BATCHES, fixed_rate


class MibenchSide:
    """The mibench half; runs in the Python that runs this script."""

    def __init__(self, data_dir: str | None, seed_cell: dict):
        from mibench.cpu import keep_freed_buffers

        keep_freed_buffers()        # what fit does on its first call; the model-only step too
        self.data_dir = data_dir
        self.spec = seed_cell["estimator"]
        self.batch = seed_cell["batch_size"]
        self.lr = seed_cell["lr"]
        self._task = None
        self._fixed = None

    def versions(self) -> dict:
        import importlib.metadata as md

        import torch

        from mibench.results import git_commit

        return {"python": platform.python_version(), "torch": torch.__version__,
                "mibench": md.version("mibench"), "mibench_commit": git_commit(),
                "threads": torch.get_num_threads()}

    @staticmethod
    def _optimizer(est, lr: float):
        """The optimizer fit builds (make_optimizer where this mibench has one)."""
        import torch

        from mibench import train

        make = getattr(train, "make_optimizer", None)
        if make is None:                       # older mibench: fit used plain Adam
            return torch.optim.Adam(est.parameters(), lr=lr)
        takes_module = next(iter(inspect.signature(make).parameters)) == "module"
        return make(est if takes_module else est.parameters(), lr, torch.device("cpu"))

    def _paired(self):
        if self._task is None:
            from mibench.distributions import PairedImages

            self._task = PairedImages("mnist", "train", data_dir=self.data_dir)
        return self._task

    def _fit(self, spec: dict, task, steps: int, warmup: int, seed: int, lr: float,
             batch: int = BATCH) -> float:
        import torch

        from mibench.estimators import EstimatorSpec, build_estimator
        from mibench.train import fit

        torch.manual_seed(seed)
        spec = EstimatorSpec.from_dict(spec)
        x, y = task.sample(2, generator=torch.Generator().manual_seed(seed))
        est = build_estimator(spec, tuple(x.shape[1:]), tuple(y.shape[1:]))
        result = fit(est, task, steps=warmup + steps, batch_size=batch, lr=lr,
                     n_negatives=spec.n_negatives(batch), generator=torch.Generator().manual_seed(seed),
                     warmup=warmup)
        return result.steps_per_s

    def mnist_fit(self, steps: int, warmup: int, seed: int) -> float:
        return self._fit(self.spec, self._paired(), steps, warmup, seed, lr=self.lr, batch=self.batch)

    def mnist_model(self, steps: int, warmup: int, seed: int) -> float:
        import torch

        from mibench.estimators import build_estimator

        torch.manual_seed(seed)
        task = self._paired()
        if self._fixed is None:
            g = torch.Generator().manual_seed(1234)
            self._fixed = [task.sample(self.batch, generator=g) for _ in range(N_FIXED_BATCHES)]
        x, y = self._fixed[0]
        est = build_estimator(self.spec, tuple(x.shape[1:]), tuple(y.shape[1:]))
        opt = self._optimizer(est, self.lr)
        gen = torch.Generator().manual_seed(seed)
        k = est.spec.n_negatives(self.batch)

        def step(x, y):
            loss = est.loss(x, y, k, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        est.train()
        return fixed_rate(step, self._fixed, steps, warmup)

    def mnist_step_flops(self, steps: int = 0, warmup: int = 0, seed: int = 0) -> float:
        """FLOPs of one model-only training step of the seed cell (forward and backward), as
        torch's FlopCounterMode counts them: the matrix products and convolutions."""
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from mibench.estimators import build_estimator

        task = self._paired()
        x, y = task.sample(self.batch, generator=torch.Generator().manual_seed(seed))
        est = build_estimator(self.spec, tuple(x.shape[1:]), tuple(y.shape[1:]), seed=seed)
        est.loss(x, y, est.spec.n_negatives(self.batch), torch.Generator().manual_seed(seed)).backward()
        with FlopCounterMode(display=False) as counter:
            est.loss(x, y, est.spec.n_negatives(self.batch), torch.Generator().manual_seed(seed)).backward()
        return float(counter.get_total_flops())

    def matmul_peak(self, steps: int = 0, warmup: int = 0, seed: int = 0) -> float:
        """The float32 matmul peak on this thread, GFLOP/s (``mibench.cpu.matmul_peak_gflops``,
        as scripts/bmi_speed.py measures it)."""
        from mibench.cpu import matmul_peak_gflops

        return matmul_peak_gflops()

    def __getattr__(self, name: str):
        # gauss_<config>_fit
        if name.startswith("gauss_") and name.endswith("_fit"):
            config = name[len("gauss_"):-len("_fit")]

            def run(steps, warmup, seed):
                from mibench.distributions import CorrelatedGaussian

                task = CorrelatedGaussian(GAUSS_DIM, mi=GAUSS_MI)
                return self._fit(GAUSS_CONFIGS[config][0], task, steps, warmup, seed, lr=5e-4)

            return run
        raise AttributeError(name)
