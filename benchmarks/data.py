"""Speed of the task samplers and of held-out evaluation."""

from __future__ import annotations

from mibench.distributions import TASK_FAMILIES

from .common import BATCH, GAUSSIAN_DIM, GAUSSIAN_MI, Timing, generator, one_thread, paired_mnist, seed_mnist


class TimeSample(Timing):
    """One batch of 128 pairs from every registered task family: the Gaussian at d = 20,
    paired MNIST on its training split, every other family at its contract example
    (``TaskFamily.example``). Samples/s = 128 / the time."""

    params = ["gaussian", "paired_mnist", *[f for f in TASK_FAMILIES if f not in ("gaussian", "paired_mnist")]]
    param_names = ["task"]
    repeat = (5, 20, 0.5)

    def setup(self, task):
        from mibench.distributions import CorrelatedGaussian

        one_thread()
        if task == "gaussian":
            self.task = CorrelatedGaussian(GAUSSIAN_DIM, mi=GAUSSIAN_MI)
        elif task == "paired_mnist":
            self.task = paired_mnist("train")
        else:
            family = TASK_FAMILIES[task]
            self.task = family.build(family.example)
        self.gen = generator(0)
        self.task.sample(BATCH, generator=self.gen)          # data sets load on first use

    def time_sample(self, task):
        self.task.sample(BATCH, generator=self.gen)


class TimeEvaluate(Timing):
    """``mibench.train.evaluate``: 10 held-out batches of 128 through an untrained estimator.

    gaussian: InfoNCE, separable critic [256], 127 negatives; paired_mnist: the seed cell of
    tasks/paired_mnist.toml on the test split, 32 negatives.
    """

    params = ["gaussian", "paired_mnist"]
    param_names = ["task"]
    repeat = (3, 5, 2.0)
    warmup_time = 0.0
    batches = 10

    def setup(self, task):
        from mibench.distributions import CorrelatedGaussian
        from mibench.estimators import EstimatorSpec, estimator_for

        one_thread()
        if task == "gaussian":
            self.task = CorrelatedGaussian(GAUSSIAN_DIM, mi=GAUSSIAN_MI)
            spec = EstimatorSpec.from_dict({"bound": "infonce", "hidden": [256]})
        else:
            self.task = paired_mnist("test")
            spec = seed_mnist()[0]
        self.k = spec.n_negatives(BATCH)
        self.estimator = estimator_for(spec, self.task, seed=0)

    def time_evaluate(self, task):
        from mibench.train import evaluate

        evaluate(self.estimator, self.task, batches=self.batches, batch_size=BATCH,
                 n_negatives=self.k, generator=generator(1))
