"""Fixed samples: a run's training and held-out data under the ``n_samples`` protocol
(``FiniteSample``), their joint standardisation (``standardize_together``) and the estimate over
a fixed sample (``evaluate_sample``)."""

from __future__ import annotations

from typing import Iterable

import torch

from .estimators import TransformedEstimator
from .interface import ConfigError, Task

BATCH_DRAWS = ("epochs", "independent")


class FiniteSample:
    """A fixed sample of ``n`` pairs drawn once from ``task`` (BMI's protocol: an estimator sees
    a data set, not a stream). ``sample`` goes through it epoch by epoch, each epoch in a fresh
    order drawn from the caller's generator, dropping the last partial batch; with ``draw =
    "independent"`` each batch is instead drawn anew, without replacement within the batch and
    independently of the others (BMI's batches). ``batches`` covers it once in order, for
    evaluation. The truth is the task's."""

    def __init__(self, task: Task, n: int, generator: torch.Generator, draw: str = "epochs"):
        if draw not in BATCH_DRAWS:
            raise ConfigError(f"batches must be one of {', '.join(BATCH_DRAWS)}, got {draw!r}")
        self.task, self.n, self.draw = task, n, draw
        self.x, self.y = task.sample(n, generator=generator)
        self.name, self.device = f"{task.name}-n{n}", task.device
        self.x_shape, self.y_shape = task.x_shape, task.y_shape
        self._order: torch.Tensor | None = None
        self._at = 0

    def ground_truth(self):
        return self.task.ground_truth()

    def heldout(self) -> Task:
        return self.task.heldout()

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        if self.draw == "independent":
            pick = torch.randperm(self.n, generator=generator, device=self.device)[:n]
            return self.x[pick], self.y[pick]
        if self._order is None or self._at + n > self.n:          # a new epoch
            self._order = torch.randperm(self.n, generator=generator, device=self.device)
            self._at = 0
        pick = self._order[self._at:self._at + n]
        self._at += n
        return self.x[pick], self.y[pick]

    def batches(self, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, self.n - batch_size + 1, batch_size):
            yield self.x[start:start + batch_size], self.y[start:start + batch_size]


@torch.no_grad()
def standardize_together(*samples: FiniteSample) -> None:
    """Standardise fixed samples in place with the statistics of their union: each coordinate
    of x, and of y, separately to mean 0 and sd 1 (ddof 0, as scikit-learn's StandardScaler; a
    constant coordinate is only centred). BMI's estimators standardise their whole sample
    before splitting it into training and test halves; a training and a held-out sample of a
    run are two independent draws, distributed as such a split of their union. The map is an
    invertible affine map per coordinate, so the mutual information is the task's."""
    for side in ("x", "y"):
        parts = [getattr(s, side) for s in samples]
        union = torch.cat([p.reshape(len(p), -1) for p in parts]).double()
        mean, sd = union.mean(0), union.std(0, correction=0)
        sd = torch.where(sd > 0, sd, torch.ones_like(sd))
        for s, p in zip(samples, parts):
            z = (p.reshape(len(p), -1).double() - mean) / sd
            setattr(s, side, z.to(p.dtype).reshape(p.shape))


@torch.no_grad()
def evaluate_sample(estimator: TransformedEstimator, sample: FiniteSample, *, batch_size: int,
                    n_negatives: int, generator: torch.Generator) -> tuple[float, float]:
    """The bound over a fixed sample, in consecutive batches (the last partial one dropped):
    (mean, standard deviation over the batches) in nats."""
    estimator.eval()
    values = torch.stack([estimator.estimate(x, y, n_negatives, generator)
                          for x, y in sample.batches(batch_size)]).double()
    estimator.train()
    std = values.std().item() if len(values) > 1 else 0.0
    return values.mean().item(), std
