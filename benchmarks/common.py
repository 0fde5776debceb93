"""Helpers shared by the benchmark modules, and the base classes that hold asv's attributes.

Nothing here computes at import (only libraries are imported): every function is called from a
benchmark's ``setup``.
"""

from __future__ import annotations

import functools

import torch
# Imported here, not in a benchmark: creating the first optimizer imports torch._dynamo (about 2 s)
# and the MNIST loader imports torchvision. asv forks each benchmark from a server process that
# has imported this module, so each library is loaded once per run instead of once per benchmark.
import torch._dynamo  # noqa: F401
import torchvision  # noqa: F401

from mibench.cpu import keep_freed_buffers
from mibench.train import make_optimizer

# The Gaussian speed case: d = 20, I = 4 nats, batch 128 with all in-batch negatives.
GAUSSIAN_DIM = 20
GAUSSIAN_MI = 4.0
BATCH = 128


# ---------------------------------------------------------------------------- asv attributes
# asv reads these through getattr on the benchmark's class, so subclasses inherit them and state
# only what differs.

class Benchmark:
    """Every benchmark here. ``version`` is what asv keys results on: results of different
    versions are not compared (by ``asv compare`` nor by CI's gate). Bump it in a subclass only
    when what that benchmark measures changes on purpose."""

    version = "1"


class Timing(Benchmark):
    """``time_`` benchmarks. Short samples: one call takes milliseconds, and asv re-runs setup
    before every sample, so one round and a short warm-up; ``repeat`` is (min samples, max
    samples, seconds)."""

    rounds = 1
    repeat = (3, 10, 1.0)
    warmup_time = 0.05


# ---------------------------------------------------------------------------- helpers

@functools.lru_cache(maxsize=1)
def seed_mnist():
    """The seed paired-MNIST cell as tasks/paired_mnist.toml states it: (estimator spec,
    batch size, learning rate)."""
    from mibench.estimators import EstimatorSpec
    from mibench.presets import load_preset

    preset = load_preset("paired_mnist")
    return EstimatorSpec.from_dict(preset.estimator), preset.train["batch_size"], preset.train["lr"]


def one_thread() -> None:
    """One torch CPU thread: the figure CI machines (2 cores, one often busy) can reproduce."""
    torch.set_num_threads(1)


def generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def require_device(device: str) -> torch.device:
    """The device, or NotImplementedError (asv's "skipped") when it is not present."""
    if device == "cuda" and not torch.cuda.is_available():
        raise NotImplementedError("no CUDA device")
    return torch.device(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.lru_cache(maxsize=2)
def paired_mnist(split: str, device: str = "cpu"):
    """The paired-MNIST task of a split, built once per process (the data is found through
    ``$MIBENCH_DATA_DIR``, as everywhere in mibench)."""
    from mibench.distributions import PairedImages

    return PairedImages("mnist", split, device=device)


class TrainStep:
    """One training step as ``fit`` takes it (candidate negatives, forward, loss, backward, Adam
    step) on a fixed batch, so the timing excludes the sampler (timed on its own)."""

    def __init__(self, estimator, x, y, n_negatives: int, *, lr: float = 1e-3, seed: int = 0):
        self.device = x.device
        if self.device.type == "cpu":
            keep_freed_buffers()          # as fit does on its first call
        self.estimator = estimator
        self.x, self.y, self.n_negatives = x, y, n_negatives
        self.opt = make_optimizer(estimator.parameters(), lr, self.device)
        self.gen = generator(seed, self.device)
        estimator.train()

    def __call__(self) -> None:
        loss = self.estimator.loss(self.x, self.y, self.n_negatives, self.gen)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def warm_up(self, steps: int = 1) -> None:
        """The first step allocates Adam's state and the autograd buffers: keep it out of the timing."""
        for _ in range(steps):
            self()
        sync(self.device)
