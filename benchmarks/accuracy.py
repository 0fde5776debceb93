"""Accuracy of every bound: |held-out estimate - true MI| after a short, deterministic training.

The protocol is fixed: Gaussian d = 5, I = 1 nat; separable critic [64] (generative bounds: a
conditional Gaussian [64]); 300 Adam steps (lr 1e-3) of batch 128 with all 127 in-batch
negatives; then the mean of 10 held-out batches. One CPU thread, explicit generators for data and
negatives, initial parameters drawn under a forked RNG with a fixed seed: on one machine and
software stack the value is reproduced exactly, so any change in it comes from the code.

For upper bounds and DoE the figure is still |estimate - truth| (CLUB's is large by design: it
stays far above the truth); BA gets H(y) from the task. CI's gate (.ci/asv_gate.py) fails when a
value grows by more than its threshold against the previous commit. Bump ``version`` when the
protocol itself changes on purpose: results of different versions are not compared.
"""

from __future__ import annotations

import math

from mibench.bounds import BOUNDS

from .common import BATCH, Benchmark, generator, one_thread

DIM, MI = 5, 1.0
STEPS = 300
EVAL_BATCHES = 10


class TrackBias(Benchmark):
    params = [list(BOUNDS)]
    param_names = ["bound"]
    unit = "nats"
    timeout = 180

    def setup(self, bound):
        from mibench.distributions import CorrelatedGaussian
        from mibench.estimators import EstimatorSpec, estimator_for
        from mibench.train import evaluate, fit

        one_thread()
        task = CorrelatedGaussian(DIM, mi=MI)
        spec = EstimatorSpec.from_dict({"bound": bound, "critic": "separable", "hidden": [64]})
        est = estimator_for(spec, task, seed=0)          # BA gets H(y) from the task
        fit(est, task, steps=STEPS, batch_size=BATCH, lr=1e-3, n_negatives=BATCH - 1,
            generator=generator(0), log_every=STEPS)
        self.estimate, _ = evaluate(est, task.heldout(), batches=EVAL_BATCHES, batch_size=BATCH,
                                    n_negatives=BATCH - 1, generator=generator(1))
        if not math.isfinite(self.estimate):
            raise RuntimeError(f"{bound}: held-out estimate is {self.estimate} after training")
        self.truth = task.ground_truth().mi

    def track_abs_bias(self, bound):
        return abs(self.estimate - self.truth)
