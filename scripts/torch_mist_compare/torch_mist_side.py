"""The torch-mist side: the series measured with torch-mist 0.2.17.

Runs in torch-mist's environment (see ``venv``) and imports nothing from mibench: the seed MNIST
cell's spec arrives from the driver, which read it from tasks/paired_mnist.toml. Series are
methods named as the driver's plan names them: mnist_notebook, mnist_model,
gauss_<config>_plain and gauss_<config>_util; each returns steps per second.
"""

from __future__ import annotations

import math
import os
import platform
import time

from .shared import BATCH, GAUSS_CONFIGS, GAUSS_DIM, N_FIXED_BATCHES, fixed_rate, gaussian_pair


def check_seed_spec(spec: dict) -> None:
    """The seed cell as torch-mist's side builds it by hand: one conv encoder (mibench's "conv"
    network) shared by x and y, then SMILE with a joint critic. Any other spec would be measured
    against a different torch-mist model: refuse it."""
    expected = {"bound": "smile", "critic": "joint", "encoder": "conv", "shared": True}
    wrong = {k: spec.get(k) for k, v in expected.items() if spec.get(k) != v}
    if wrong:
        raise ValueError(f"the torch-mist side mirrors a seed cell with {expected}; the preset has {wrong}")


class TorchMistSide:
    """The torch-mist half; runs in torch-mist's environment and imports nothing from mibench."""

    def __init__(self, data_dir: str | None, seed_cell: dict):
        check_seed_spec(seed_cell["estimator"])
        self.data_dir = data_dir
        self.spec = seed_cell["estimator"]
        self.batch = seed_cell["batch_size"]
        self.lr = seed_cell["lr"]
        self._paired = None
        self._fixed = None

    def versions(self) -> dict:
        import importlib.metadata as md

        import torch

        return {"python": platform.python_version(), "torch": torch.__version__,
                "torch-mist": md.version("torch-mist"), "numpy": md.version("numpy"),
                "torchvision": md.version("torchvision"), "threads": torch.get_num_threads()}

    # ---- the paired-MNIST example's pieces
    def _paired_mnist(self):
        """The example's data set: each item draws a same-label partner by scanning all labels."""
        if self._paired is None:
            import numpy as np
            from torch.utils.data import Dataset
            from torchvision.datasets import MNIST
            from torchvision.transforms import ToTensor

            class SameDigitPairs(Dataset):
                def __init__(self, root):
                    self.mnist = MNIST(root, train=True, transform=ToTensor(), download=False)

                def __len__(self):
                    return len(self.mnist)

                def __getitem__(self, idx):
                    x, label = self.mnist[idx]
                    same = np.arange(len(self.mnist))[self.mnist.targets == label]   # O(N) per item
                    y, _ = self.mnist[int(np.random.choice(same))]
                    return {"x": x, "y": y}

            self._paired = SameDigitPairs(self.data_dir)
        return self._paired

    def _seed_estimator(self):
        from torch import nn
        from torch_mist.estimators import TransformedMIEstimator, smile

        spec = self.spec
        z = spec["embed_dim"]
        encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(True),
            nn.Conv2d(16, 32, 5, stride=3), nn.ReLU(True),
            nn.Conv2d(32, 128, 8), nn.ReLU(True),
            nn.Flatten(), nn.Linear(128, z),
        )
        return TransformedMIEstimator(
            transforms={"x": encoder, "y": encoder},
            base_estimator=smile(x_dim=z, y_dim=z, hidden_dims=list(spec["hidden"]),
                                 neg_samples=spec["negatives"], tau=spec["tau"]),
        )

    @staticmethod
    def _timing_logger():
        """torch-mist's default logger, also noting when each training iteration starts."""
        from torch_mist.utils.logging import PandasLogger

        class TimedPandasLogger(PandasLogger):
            def __init__(self):
                super().__init__()
                self.starts = []

            def on_iteration_start(self):
                self.starts.append(time.perf_counter())
                super().on_iteration_start()

        return TimedPandasLogger()

    def _run_train_epoch(self, estimator, loader, steps: int, warmup: int) -> float:
        """One call of torch-mist's train_epoch as train_model makes it (eval every step)."""
        from torch_mist.utils.train.model import instantiate_optimizer, train_epoch
        from tqdm.auto import tqdm

        total = warmup + steps
        if total + 1 > len(loader):
            raise ValueError(f"{total + 1} steps do not fit in one epoch of {len(loader)} batches")
        opt, scheduler = instantiate_optimizer(model=estimator, max_iterations=total + 1)
        logger = self._timing_logger()
        with open(os.devnull, "w") as null:
            bar = tqdm(total=len(loader), desc="Iteration", file=null)     # verbose=True's bar
            train_epoch(model=estimator, train_loader=loader, opt=opt, device="cpu",
                        lr_scheduler=scheduler, train_method="loss", eval_method="mutual_information",
                        logger=logger, tqdm_iteration=bar, train_logged_methods=["loss"],
                        eval_logged_methods=["mutual_information"], max_iterations=total + 1)
            bar.close()
        # starts[k] is when iteration k began, its batch already loaded: from starts[warmup] to
        # starts[total] lie `steps` whole iterations, each with the loading of the next batch.
        return steps / (logger.starts[total] - logger.starts[warmup])

    # ---- series
    def mnist_notebook(self, steps: int, warmup: int, seed: int) -> float:
        import numpy as np
        import torch
        from torch.utils.data import DataLoader

        torch.manual_seed(seed)
        np.random.seed(seed)
        loader = DataLoader(self._paired_mnist(), batch_size=self.batch, shuffle=True, num_workers=0)
        return self._run_train_epoch(self._seed_estimator(), loader, steps, warmup)

    def mnist_model(self, steps: int, warmup: int, seed: int) -> float:
        import numpy as np
        import torch
        from torch.utils.data import default_collate

        torch.manual_seed(seed)
        np.random.seed(seed)
        if self._fixed is None:
            data = self._paired_mnist()
            self._fixed = []
            for b in range(N_FIXED_BATCHES):
                batch = default_collate([data[i] for i in range(b * self.batch, (b + 1) * self.batch)])
                self._fixed.append((batch["x"], batch["y"]))
        est = self._seed_estimator()
        opt = torch.optim.Adam(est.parameters(), lr=self.lr)

        def step(x, y):
            loss = est.loss(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return fixed_rate(step, self._fixed, steps, warmup)

    @staticmethod
    def _gauss_estimator(config: str):
        from torch_mist import estimators

        name, kwargs = GAUSS_CONFIGS[config][1]
        return getattr(estimators, name)(x_dim=GAUSS_DIM, y_dim=GAUSS_DIM, **kwargs)

    def _gauss_plain(self, config: str, steps: int, warmup: int, seed: int) -> float:
        import torch

        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        est = self._gauss_estimator(config)
        opt = torch.optim.Adam(est.parameters(), lr=5e-4)
        for i in range(warmup + steps):
            if i == warmup:
                t0 = time.perf_counter()
            x, y = gaussian_pair(BATCH, gen)
            loss = est.loss(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return steps / (time.perf_counter() - t0)

    def _gauss_util(self, config: str, steps: int, warmup: int, seed: int) -> float:
        import torch
        from torch_mist.utils import train_mi_estimator

        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        total = warmup + steps
        # enough samples that the training split (90%) holds total + 1 full batches
        x, y = gaussian_pair(math.ceil((total + 2) * BATCH / 0.9), gen)
        logger = self._timing_logger()
        train_mi_estimator(self._gauss_estimator(config), train_data=(x, y), batch_size=BATCH,
                           max_iterations=total + 1, verbose=False, logger=logger)
        return steps / (logger.starts[total] - logger.starts[warmup])

    def __getattr__(self, name: str):
        # gauss_<config>_plain / gauss_<config>_util
        if name.startswith("gauss_") and name.endswith(("_plain", "_util")):
            config, how = name[len("gauss_"):].rsplit("_", 1)
            run = self._gauss_plain if how == "plain" else self._gauss_util
            return lambda steps, warmup, seed: run(config, steps, warmup, seed)
        raise AttributeError(name)
