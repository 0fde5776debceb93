"""Speed and memory of one training step: forward, loss, backward and Adam step."""

from __future__ import annotations

from .common import (BATCH, GAUSSIAN_DIM, GAUSSIAN_MI, Benchmark, Timing, TrainStep, generator,
                     one_thread, paired_mnist, require_device, seed_mnist, sync)

BMI_BATCH = 256     # BMI's neural estimators' batch size (tasks/bmi_v2.toml)


class TimeGaussianStep(Timing):
    """Gaussian d = 20, I = 4 nats, batch 128, all 127 in-batch negatives, critic hidden [256],
    for a representative subset of bounds and both critic shapes, on one CPU thread."""

    params = (["infonce", "nwj", "js", "smile", "mine", "flo", "club"], ["separable", "joint"])
    param_names = ["bound", "critic"]

    def setup(self, bound, critic):
        from mibench.bounds import BOUNDS
        from mibench.distributions import CorrelatedGaussian
        from mibench.estimators import EstimatorSpec, estimator_for

        if BOUNDS[bound].generative and critic != "separable":
            # generative bounds model q(y | x) and have no critic to choose: one case is enough
            raise NotImplementedError("generative bound: the critic does not apply")
        one_thread()
        task = CorrelatedGaussian(GAUSSIAN_DIM, mi=GAUSSIAN_MI)
        spec = EstimatorSpec.from_dict({"bound": bound, "critic": critic, "hidden": [256]})
        est = estimator_for(spec, task, seed=0)
        x, y = task.sample(BATCH, generator=generator(0))
        self.step = TrainStep(est, x, y, BATCH - 1)
        self.step.warm_up()

    def time_step(self, bound, critic):
        self.step()


class TimeBmiStep(Timing):
    """BMI's small critic: joint MLP with hidden layers (16, 8), InfoNCE on all 65,536 pairs of
    a batch of 256, Adam at lr 0.1, on one CPU thread; inputs of BMI's 5 x 5 and 50 x 50 task
    shapes. ``pairs``: the fused pair kernel (the default on the CPU) or torch ops
    (``MIBENCH_PAIR_KERNEL=0``), so that each run shows what the kernel gains."""

    params = ([5, 50], ["kernel", "torch"])
    param_names = ["dim", "pairs"]

    def setup(self, dim, pairs):
        import os

        from mibench.distributions import CorrelatedGaussian
        from mibench.estimators import EstimatorSpec, estimator_for
        from mibench.pairmlp import ENV

        os.environ[ENV] = "1" if pairs == "kernel" else "0"     # asv runs each case in its own process
        one_thread()
        task = CorrelatedGaussian(dim, mi=1.0)
        spec = EstimatorSpec.from_dict({"bound": "infonce", "critic": "joint", "hidden": [16, 8]})
        est = estimator_for(spec, task, seed=0)
        x, y = task.sample(BMI_BATCH, generator=generator(0))
        self.step = TrainStep(est, x, y, BMI_BATCH - 1, lr=0.1)
        self.step.warm_up()

    def time_step(self, dim, pairs):
        self.step()


class _SeedMnistStep:
    """The seed paired-MNIST cell of tasks/paired_mnist.toml: shared conv encoder (z = 16),
    SMILE, joint critic [64, 32], 32 negatives, batch 128."""

    def _prepare(self, device_name: str) -> None:
        from mibench.estimators import estimator_for

        device = require_device(device_name)
        one_thread()
        spec, batch, lr = seed_mnist()
        task = paired_mnist("train", device_name)
        x, y = task.sample(batch, generator=generator(0, device))
        est = estimator_for(spec, task, seed=0).to(device)
        self.device = device
        self.step = TrainStep(est, x, y, spec.n_negatives(batch), lr=lr)
        self.step.warm_up()


class TimeMnistStep(_SeedMnistStep, Timing):
    params = ["cpu", "cuda"]
    param_names = ["device"]
    repeat = (3, 10, 2.0)

    def setup(self, device):
        self._prepare(device)

    def time_step(self, device):
        self.step()
        sync(self.device)


class PeakMemMnistStep(_SeedMnistStep, Benchmark):
    """Peak resident memory of the process (the training split as float32 images, about
    190 MB, included) after warm-up and one more step, on the CPU."""

    def setup(self):
        self._prepare("cpu")

    def peakmem_step(self):
        self.step()
