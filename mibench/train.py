"""One training loop, ``fit``, and held-out evaluation, ``evaluate``."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from .estimators import TransformedEstimator
from .interface import Task


@dataclass
class FitResult:
    """What a training run measured.

    trace: (step, training-batch estimate in nats, true MI at that step) every ``log_every``
        steps; the truth moves only in staircase schedules.
    pairs_per_s, steps_per_s: after the warm-up steps, wall clock, device synchronised.
    """

    trace: list[tuple[int, float, float]] = field(default_factory=list)
    steps: int = 0
    pairs_per_s: float = math.nan
    steps_per_s: float = math.nan
    train_s: float = 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_optimizer(module: torch.nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam; the fused kernel (one pass over all parameters) where torch has one for the device."""
    fused = True if device.type in ("cpu", "cuda") else None
    return torch.optim.Adam(module.parameters(), lr=lr, fused=fused)


def fit(estimator: TransformedEstimator, task: Task, *, steps: int, batch_size: int, lr: float,
        n_negatives: int, generator: torch.Generator, task_at: Callable[[int], Task] | None = None,
        log_every: int = 20, warmup: int = 10, progress: bool = False, desc: str = "") -> FitResult:
    """Train ``estimator`` with Adam on fresh batches of ``task`` for ``steps`` steps.

    ``task_at(step)``, when given, replaces ``task`` step by step (the staircase protocol).
    Nothing leaves the device on a step except every ``log_every`` steps, when the batch's
    estimate is read back for the trace and the progress bar.
    """
    device = next(estimator.parameters()).device
    opt = make_optimizer(estimator, lr, device)
    result = FitResult()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False, dynamic_ncols=True, disable=None)

    estimator.train()
    t_start = None
    for step in range(steps):
        if step == min(warmup, steps - 1):
            _sync(device)
            t_start, step_start = time.perf_counter(), step
        current = task_at(step) if task_at else task
        x, y = current.sample(batch_size, generator=generator)
        scores, aux = estimator.scores(x, y, n_negatives, generator)
        loss = estimator.bound.loss(scores, aux)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

        if step % log_every == 0 or step == steps - 1:
            with torch.no_grad():
                value = estimator.bound.estimate(scores.detach(), None if aux is None else aux.detach())
            truth = current.ground_truth().mi
            result.trace.append((step, value.item(), truth))     # the only host sync
            if bar is not None:
                bar.set_postfix(mi=f"{result.trace[-1][1]:.3f}", true=f"{truth:.3f}")
        if bar is not None:
            bar.update(1)

    _sync(device)
    if t_start is not None:
        elapsed = time.perf_counter() - t_start
        timed = steps - step_start
        result.steps_per_s = timed / elapsed if elapsed > 0 else math.nan
        result.pairs_per_s = result.steps_per_s * batch_size
        result.train_s = elapsed
    result.steps = steps
    if bar is not None:
        bar.close()
    return result


@torch.no_grad()
def evaluate(estimator: TransformedEstimator, task: Task, *, batches: int, batch_size: int,
             n_negatives: int, generator: torch.Generator) -> tuple[float, float]:
    """The bound on ``batches`` fresh held-out batches: (mean, standard deviation) in nats.

    The standard deviation is the batch-to-batch spread of the estimate at the end of training.
    """
    estimator.eval()
    values = torch.stack([
        estimator.estimate(*task.sample(batch_size, generator=generator), n_negatives, generator)
        for _ in range(batches)
    ]).double()
    estimator.train()
    std = values.std().item() if batches > 1 else 0.0
    return values.mean().item(), std
