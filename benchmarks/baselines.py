"""The sample estimators: KSG's speed against the sample size, and the accuracy of KSG and CCA.

The case is the one of ``accuracy.py``: x, y each 5-dimensional, I = 1 nat, one sample drawn
from a fixed generator, so on one machine and software stack the tracked values are exact and a
change in them comes from the code. KSG uses scipy's k-d tree on the CPU (its neighbour counts
use every core scipy is allowed; torch is held to one thread). ``scripts/ksg_speed.py``
measures n = 100,000 and the GPU path, which are too long for every commit.
"""

from __future__ import annotations

from .common import Benchmark, Timing, generator, one_thread

DIM, MI = 5, 1.0


def _sample(n: int):
    from mibench.distributions import CorrelatedGaussian

    task = CorrelatedGaussian(DIM, mi=MI)
    x, y = task.sample(n, generator=generator(0))
    return task, x, y


class TimeKSG(Timing):
    """One KSG estimate (k = 3) on n pairs."""

    params = [[1_000, 10_000]]
    param_names = ["n"]
    repeat = (2, 5, 5.0)

    def setup(self, n):
        one_thread()
        _, self.x, self.y = _sample(n)

    def time_ksg(self, n):
        from mibench.baselines import ksg

        ksg(self.x, self.y, k=3)


class TrackSampleBias(Benchmark):
    """|estimate - true MI| of a sample estimator on 5,000 pairs."""

    params = [["ksg", "cca", "ksg_ensemble"]]
    param_names = ["estimator"]
    unit = "nats"

    def setup(self, name):
        from mibench.sample import SampleSpec

        one_thread()
        task, x, y = _sample(5_000)
        self.error = abs(SampleSpec(name).build().estimate(x, y, seed=0) - task.ground_truth().mi)

    def track_abs_bias(self, name):
        return self.error
