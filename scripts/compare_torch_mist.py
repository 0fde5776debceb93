#!/usr/bin/env python3
"""Training speed of mibench and torch-mist 0.2.17, measured side by side in one run.

Not part of the test suite: a reproducible benchmark for comparing the two libraries on the
same problems, the same batch sizes and one torch thread each.

Usage (from a checkout, with a Python that has mibench installed):

    python scripts/compare_torch_mist.py                    # everything, 5 alternating repeats
    python scripts/compare_torch_mist.py --quick            # smoke check: a few steps, 1 repeat
    python scripts/compare_torch_mist.py --only mnist --repeats 7 --json out.json
    python scripts/compare_torch_mist.py --only gaussian --seconds 4

The first run creates a virtual environment for torch-mist (default
~/.cache/mibench-bench/torch-mist-0.2.17, see --venv) and pip-installs into it
``torch-mist==0.2.17 'numpy<2' 'pandas<3'`` plus the torch and torchvision versions that the
running Python has, so both libraries run on the same torch; later runs reuse it. Extra pip
options (an index URL, say) go in --pip-args.

How it measures. Each library runs in its own worker process (mibench in this Python,
torch-mist in its environment), both with ``torch.set_num_threads(1)`` and one thread for
OpenMP/MKL. The workers stay up for the whole run and only one computes at a time. For every
series the driver first runs a short probe, which also warms the worker up, and picks the
number of timed steps N so that a measurement lasts about --seconds; then it measures the series
of one comparison in turn (A, B, B, A, ... : the order flips every repeat), each time W warm-up
steps followed by N timed steps, and reports the median over --repeats.

What is compared.

Seed MNIST cell (batch 128; one conv encoder shared by x and y,
Conv2d(1,16,3)-ReLU-Conv2d(16,32,5,stride 3)-ReLU-Conv2d(32,128,8)-ReLU-Flatten-Linear(128,16);
SMILE tau 5; joint critic [64, 32]; 32 negatives), in pairs per second:
  (a) torch-mist, its training loop as its paired-MNIST example drives it: a per-item Dataset
      that finds a same-label partner with an O(N) search over the labels, a DataLoader with
      batch 128, shuffle and num_workers=0, the Adam optimizer torch-mist builds (one
      parameter group per tensor, lr 5e-4), its default PandasLogger logging the loss and the
      mutual information every step
      (``torch_mist.utils.train.model.train_epoch``, the loop ``train_mi_estimator`` runs; it
      is called directly so that the once-per-call setup, a pass over all 60,000 items that
      checks them for NaNs, is not paid on every repeat: it lies outside the timed steps
      anyway).
  (b) the same torch-mist estimator in a plain eager loop on pre-loaded batches:
      ``loss = estimator.loss(x, y); opt.zero_grad(); loss.backward(); opt.step()`` with
      torch.optim.Adam, the model-only limit of (a). It cycles through 4 fixed batches rather
      than one: torch-mist caches its intermediate results keyed on the input values, and a
      repeated batch would hand back the graph of the previous step.
  (c) mibench's ``fit`` on ``PairedImages("mnist", "train")`` with the seed spec.
  (d) mibench's model-only step on the same 4 fixed batches:
      ``loss = est.loss(x, y, 32, gen); opt.zero_grad(); loss.backward(); opt.step()`` with the
      optimizer ``fit`` builds.
  (b') (b) again in a torch-mist process started with glibc's malloc thresholds set the way
      mibench sets them (see "The allocator" below).
  Ratios: c/a (target >= 2), d/c (target <= 1.15: fit within 15% of its model-only limit),
  and for information b/a, d/b and d/b'.

20-d correlated Gaussian (I = 4 nats; batch 128), in steps per second:
  infonce_sep      InfoNCE, separable critic, all in-batch negatives. torch-mist:
                   ``infonce(x_dim=20, y_dim=20, hidden_dims=[128], critic_type="separable")``;
                   with no ``k_dim`` its separable critic uses the last entry of hidden_dims as
                   the projection size, so each side is a single Linear(20, 128). mibench
                   matches that network: hidden = [], critic_dim = 128.
  infonce_sep_wide mibench only: hidden = [128], critic_dim = 128, i.e. "[128]" read as a hidden
                   layer (one more Linear + ReLU per side than torch-mist's network).
  smile_joint_all  SMILE, joint critic [128], all negatives. torch-mist: ``smile(...,
                   hidden_dims=[128], critic_type="joint", neg_samples=-1)`` (B - 1 = 127
                   negatives, the positive excluded, as in mibench's negatives = "all").
  smile_joint_32   the same with 32 negatives (``neg_samples=32``; mibench negatives = 32).
  mibench runs ``fit`` on ``CorrelatedGaussian(20, mi=4)``. torch-mist runs two ways:
  "plain", a loop that draws a fresh batch and calls the estimator's ``loss`` with Adam, and
  "train_mi_estimator", its training utility on a data set of samples (per-item DataLoader,
  PandasLogger logging the loss and the mutual information every step). The ratio
  mibench / torch-mist is printed against both; the plain loop is the like-for-like one (like
  fit, it draws a fresh batch and takes one optimizer step, nothing else). A third torch-mist
  series runs the plain loop with the same allocator setting as mibench.

The allocator. mibench raises glibc's mmap and trim thresholds when it starts training
(``mibench.cpu.keep_freed_buffers``), so the megabyte-sized activations of one step reuse the
previous step's memory instead of being mapped and zero-filled afresh. torch-mist, like plain
PyTorch, runs with glibc's defaults. The "same allocator" series start torch-mist's worker with
MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ set to the same values, to show how much of
each ratio is that setting and how much is the rest of mibench's step.

--json OUT saves every measurement, the medians, the ratios and the versions.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

TORCH_MIST_VERSION = "0.2.17"
DEFAULT_VENV = Path("~/.cache/mibench-bench") / f"torch-mist-{TORCH_MIST_VERSION}"
BATCH = 128
N_FIXED_BATCHES = 4          # model-only loops cycle through these (see the module docstring)
GAUSS_DIM, GAUSS_MI = 20, 4.0
MNIST_EPOCH_STEPS = 60_000 // BATCH     # full batches in one pass of the torch-mist loader

SEED_SPEC = {"bound": "smile", "tau": 5.0, "critic": "joint", "hidden": [64, 32], "encoder": "conv",
             "embed_dim": 16, "shared": True, "negatives": 32}

# glibc's malloc thresholds as mibench sets them at run time (mibench.cpu.keep_freed_buffers),
# given to a second torch-mist worker through glibc's environment variables: that series shows
# how much of a ratio is the allocator setting and how much the rest.
SAME_ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(256 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**30)}

# Gaussian configurations: mibench spec, torch-mist factory call (name, kwargs), label.
GAUSS_CONFIGS = {
    "infonce_sep": (
        {"bound": "infonce", "critic": "separable", "hidden": [], "critic_dim": 128, "negatives": "all"},
        ("infonce", {"hidden_dims": [128], "critic_type": "separable"}),
        "InfoNCE, separable [128], all negatives",
    ),
    "infonce_sep_wide": (
        {"bound": "infonce", "critic": "separable", "hidden": [128], "critic_dim": 128, "negatives": "all"},
        None,
        "InfoNCE, separable, mibench hidden [128] + projection 128 (mibench only)",
    ),
    "smile_joint_all": (
        {"bound": "smile", "tau": 5.0, "critic": "joint", "hidden": [128], "negatives": "all"},
        ("smile", {"hidden_dims": [128], "critic_type": "joint", "neg_samples": -1, "tau": 5.0}),
        "SMILE, joint [128], all (127) negatives",
    ),
    "smile_joint_32": (
        {"bound": "smile", "tau": 5.0, "critic": "joint", "hidden": [128], "negatives": 32},
        ("smile", {"hidden_dims": [128], "critic_type": "joint", "neg_samples": 32, "tau": 5.0}),
        "SMILE, joint [128], 32 negatives",
    ),
}


# ============================================================================ workers
# A worker reads one JSON request per line on stdin and answers one JSON line. Its real stdout
# is kept for the answers; anything the libraries print goes to stderr (a log file).

def _worker_main(side: str, data_dir: str | None) -> None:
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    import torch

    torch.set_num_threads(1)
    impl = _TorchMistSide(data_dir) if side.startswith("torch_mist") else _MibenchSide(data_dir)
    proto.write(json.dumps({"ready": True, "versions": impl.versions()}) + "\n")
    for line in sys.stdin:
        req = json.loads(line)
        try:
            t0 = time.perf_counter()
            rate = getattr(impl, req["series"])(steps=req["steps"], warmup=req["warmup"], seed=req["seed"])
            answer = {"ok": True, "steps_per_s": rate, "wall_s": time.perf_counter() - t0}
        except Exception:  # reported to the driver, which stops with the traceback
            answer = {"ok": False, "error": traceback.format_exc()}
        proto.write(json.dumps(answer) + "\n")


def _fixed_rate(step, batches, steps: int, warmup: int) -> float:
    """Steps per second of ``step(x, y)`` over ``steps`` steps after ``warmup``, cycling batches."""
    n = len(batches)
    for i in range(warmup):
        step(*batches[i % n])
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[(warmup + i) % n])
    return steps / (time.perf_counter() - t0)


def _gaussian_pair(n: int, generator, dim: int = GAUSS_DIM, mi: float = GAUSS_MI):
    """n draws of x ~ N(0, I), y = rho x + sqrt(1 - rho^2) eps with I(x; y) = mi nats."""
    import torch

    rho = math.sqrt(1.0 - math.exp(-2.0 * mi / dim))
    x = torch.randn(n, dim, generator=generator)
    y = rho * x + math.sqrt(1.0 - rho * rho) * torch.randn(n, dim, generator=generator)
    return x, y


class _TorchMistSide:
    """The torch-mist half; runs in torch-mist's environment and imports nothing from mibench."""

    def __init__(self, data_dir: str | None):
        self.data_dir = data_dir
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

    @staticmethod
    def _seed_estimator():
        from torch import nn
        from torch_mist.estimators import TransformedMIEstimator, smile

        z = SEED_SPEC["embed_dim"]
        encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3), nn.ReLU(True),
            nn.Conv2d(16, 32, 5, stride=3), nn.ReLU(True),
            nn.Conv2d(32, 128, 8), nn.ReLU(True),
            nn.Flatten(), nn.Linear(128, z),
        )
        return TransformedMIEstimator(
            transforms={"x": encoder, "y": encoder},
            base_estimator=smile(x_dim=z, y_dim=z, hidden_dims=list(SEED_SPEC["hidden"]),
                                 neg_samples=SEED_SPEC["negatives"], tau=SEED_SPEC["tau"]),
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
        loader = DataLoader(self._paired_mnist(), batch_size=BATCH, shuffle=True, num_workers=0)
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
                batch = default_collate([data[i] for i in range(b * BATCH, (b + 1) * BATCH)])
                self._fixed.append((batch["x"], batch["y"]))
        est = self._seed_estimator()
        opt = torch.optim.Adam(est.parameters(), lr=1e-3)

        def step(x, y):
            loss = est.loss(x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()

        return _fixed_rate(step, self._fixed, steps, warmup)

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
            x, y = _gaussian_pair(BATCH, gen)
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
        x, y = _gaussian_pair(math.ceil((total + 2) * BATCH / 0.9), gen)
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


class _MibenchSide:
    """The mibench half; runs in the Python that runs this script."""

    def __init__(self, data_dir: str | None):
        from mibench.cpu import keep_freed_buffers

        keep_freed_buffers()        # what fit does on its first call; the model-only step too
        self.data_dir = data_dir
        self._task = None
        self._fixed = None

    def versions(self) -> dict:
        import importlib.metadata as md

        import torch

        import mibench

        return {"python": platform.python_version(), "torch": torch.__version__,
                "mibench": md.version("mibench"), "mibench_path": str(Path(mibench.__file__).parent),
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

    def _fit(self, spec: dict, task, steps: int, warmup: int, seed: int, lr: float) -> float:
        import torch

        from mibench.estimators import EstimatorSpec, build_estimator
        from mibench.train import fit

        torch.manual_seed(seed)
        spec = EstimatorSpec.from_dict(spec)
        x, y = task.sample(2, generator=torch.Generator().manual_seed(seed))
        est = build_estimator(spec, tuple(x.shape[1:]), tuple(y.shape[1:]))
        result = fit(est, task, steps=warmup + steps, batch_size=BATCH, lr=lr,
                     n_negatives=spec.n_negatives(BATCH), generator=torch.Generator().manual_seed(seed),
                     warmup=warmup)
        return result.steps_per_s

    def mnist_fit(self, steps: int, warmup: int, seed: int) -> float:
        return self._fit(SEED_SPEC, self._paired(), steps, warmup, seed, lr=1e-3)

    def mnist_model(self, steps: int, warmup: int, seed: int) -> float:
        import torch

        from mibench.estimators import build_estimator

        torch.manual_seed(seed)
        task = self._paired()
        if self._fixed is None:
            g = torch.Generator().manual_seed(1234)
            self._fixed = [task.sample(BATCH, generator=g) for _ in range(N_FIXED_BATCHES)]
        est = build_estimator(SEED_SPEC, (1, 28, 28), (1, 28, 28))
        opt = self._optimizer(est, 1e-3)
        gen = torch.Generator().manual_seed(seed)
        k = SEED_SPEC["negatives"]

        def step(x, y):
            loss = est.loss(x, y, k, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        est.train()
        return _fixed_rate(step, self._fixed, steps, warmup)

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


# ============================================================================ driver

class Worker:
    """A worker process and its log file."""

    def __init__(self, name: str, python: str, data_dir: str | None, env: dict):
        self.name = name
        self.log = tempfile.NamedTemporaryFile("w+", prefix=f"compare-{name}-", suffix=".log", delete=False)
        cmd = [python, str(Path(__file__).resolve()), "--worker", name]
        if data_dir:
            cmd += ["--data-dir", data_dir]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.log, text=True, bufsize=1, env=env)
        hello = self._read()
        self.versions = hello["versions"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            self.fail("exited")
        return json.loads(line)

    def fail(self, what: str):
        self.log.flush()
        tail = Path(self.log.name).read_text()[-4000:]
        raise SystemExit(f"{self.name} worker {what}; its log ({self.log.name}) ends with:\n{tail}")

    def measure(self, series: str, steps: int, warmup: int, seed: int) -> float:
        self.proc.stdin.write(json.dumps({"series": series, "steps": steps, "warmup": warmup,
                                          "seed": seed}) + "\n")
        answer = self._read()
        if not answer["ok"]:
            print(answer["error"], file=sys.stderr)
            self.fail(f"failed on {series}")
        return answer["steps_per_s"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        os.unlink(self.log.name)


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_torch_mist_env(venv: Path, pip_args: list[str]) -> Path:
    """torch-mist's environment: created and filled on first use, reused afterwards."""
    import torch
    import torchvision

    def public(v: str) -> str:          # "2.14.1+cu130" -> "2.14.1"
        return v.split("+")[0]

    py = venv_python(venv)
    probe = "import importlib.metadata as m, torch_mist, torch; print(m.version('torch-mist'), torch.__version__)"
    if py.exists():
        out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split()[0] == TORCH_MIST_VERSION:
            if public(out.stdout.split()[1]) != public(torch.__version__):
                print(f"note: torch-mist's environment has torch {out.stdout.split()[1]}, "
                      f"mibench's has {torch.__version__}")
            return py
    print(f"creating torch-mist's environment in {venv} (once) ...", flush=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    reqs = [f"torch-mist=={TORCH_MIST_VERSION}", "numpy<2", "pandas<3",
            f"torch=={public(torch.__version__)}", f"torchvision=={public(torchvision.__version__)}"]
    print("pip install " + " ".join(shlex.quote(r) for r in reqs + pip_args), flush=True)
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", *reqs, *pip_args], check=True)
    out = subprocess.run([str(py), "-c", probe], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"torch-mist's environment in {venv} does not import torch_mist:\n{out.stderr}")
    return py


# The comparisons: (group, title, [(key, side, series, label)], kind, probe steps, warm-up)
def plan(only: str | None) -> list[dict]:
    groups = []
    if only in (None, "mnist"):
        groups.append({
            "group": "mnist", "unit": "pairs/s",
            "title": "Seed MNIST cell: shared conv encoder, SMILE, joint [64, 32], 32 negatives, batch 128",
            "series": [
                ("a", "torch_mist", "mnist_notebook", "(a) torch-mist training loop, example data set"),
                ("c", "mibench", "mnist_fit", "(c) mibench fit"),
                ("b", "torch_mist", "mnist_model", "(b) torch-mist model-only step"),
                ("d", "mibench", "mnist_model", "(d) mibench model-only step"),
                ("b_heap", "torch_mist_heap", "mnist_model", "(b') torch-mist model-only, same allocator"),
            ],
            "probe": 3, "warmup": 3, "max_steps": MNIST_EPOCH_STEPS - 1,
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
            groups.append({"group": f"gaussian/{config}", "unit": "steps/s",
                           "title": f"20-d Gaussian, batch 128: {title}", "series": series,
                           "probe": 10, "warmup": 10, "max_steps": None})
    return groups


def run_group(group: dict, workers: dict, args) -> dict:
    quick = args.quick
    warmup = 2 if quick else group["warmup"]
    scale = BATCH if group["unit"] == "pairs/s" else 1
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


DB_HEAP = "d/b'"


def ratios(name: str, res: dict) -> dict:
    med = {k: v["median"] for k, v in res["series"].items()}
    if name == "mnist":
        return {"c/a": med["c"] / med["a"], "d/c": med["d"] / med["c"],
                "b/a": med["b"] / med["a"], "d/b": med["d"] / med["b"], DB_HEAP: med["d"] / med["b_heap"]}
    out = {}
    if "torch_mist" in med:
        out["mibench/torch-mist plain"] = med["mibench"] / med["torch_mist"]
        out["mibench/torch-mist train_mi_estimator"] = med["mibench"] / med["torch_mist_util"]
        out["mibench/torch-mist plain, same allocator"] = med["mibench"] / med["torch_mist_heap"]
    return out


def summary(results: dict) -> None:
    print("\n" + "=" * 100)
    for name, res in results.items():
        print(res["title"])
        for key, s in res["series"].items():
            spread = f"[{s['min']:.1f} .. {s['max']:.1f}]" if len(s["runs"]) > 1 else ""
            print(f"  {s['label']:<48} {s['median']:10.1f} {res['unit']:<8} {spread}  N={s['steps']}")
        rs = res.get("ratios", {})
        if name == "mnist":
            print(f"  c/a = {rs['c/a']:.2f} (target >= 2)   d/c = {rs['d/c']:.2f} (target <= 1.15)"
                  f"   b/a = {rs['b/a']:.2f}   d/b = {rs['d/b']:.2f}   d/b' = {rs[DB_HEAP]:.2f}")
        elif rs:
            print("  " + "   ".join(f"{k} = {v:.2f}" for k, v in rs.items()))
    print("=" * 100)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Training speed of mibench and torch-mist side by side "
                                            "(see the module docstring).")
    p.add_argument("--quick", action="store_true",
                   help="a smoke check: 1 repeat of a few steps per series (3 on MNIST, 10 on the Gaussian), no probe")
    p.add_argument("--repeats", type=int, default=None, help="alternating repeats per series (default 5; 1 with --quick)")
    p.add_argument("--seconds", type=float, default=None,
                   help="target length of one timed measurement, which sets N (default 8)")
    p.add_argument("--only", choices=["mnist", "gaussian"], help="run one of the two comparisons")
    p.add_argument("--json", metavar="OUT", help="save the figures to this JSON file")
    p.add_argument("--data-dir", help="MNIST root in torchvision's layout (default: as mibench resolves it)")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help=f"torch-mist's environment (default {DEFAULT_VENV})")
    p.add_argument("--pip-args", default="", help="extra options for pip when creating that environment")
    p.add_argument("--worker", choices=["mibench", "torch_mist", "torch_mist_heap"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        _worker_main(args.worker, args.data_dir)
        return 0

    args.repeats = args.repeats or (1 if args.quick else 5)
    args.seconds = args.seconds or 8.0
    try:
        import mibench  # noqa: F401  (the mibench side runs in this Python)
    except ImportError:
        raise SystemExit("mibench is not importable from this Python: pip install -e . first") from None

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
        workers["mibench"] = Worker("mibench", sys.executable, data_dir, env)
        workers["torch_mist"] = Worker("torch_mist", str(tm_python), data_dir, env)
        workers["torch_mist_heap"] = Worker("torch_mist_heap", str(tm_python), data_dir,
                                            dict(env, **SAME_ALLOCATOR_ENV))
        for w in workers.values():
            print(f"{w.name}: " + ", ".join(f"{k} {v}" for k, v in w.versions.items()))
        results = {}
        for group in plan(args.only):
            res = run_group(group, workers, args)
            res["ratios"] = ratios(group["group"], res)
            results[group["group"]] = res
    finally:
        for w in workers.values():
            w.close()

    summary(results)
    if args.json:
        meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "platform": platform.platform(),
                "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                "batch_size": BATCH, "repeats": args.repeats, "seconds": args.seconds, "quick": args.quick,
                "versions": {name: w.versions for name, w in workers.items()}}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
