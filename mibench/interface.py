"""Core types shared by every module: ground truth, the task protocol, errors.

This is a leaf module: it imports nothing from mibench, so anything may import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


# Precisions of the training forward pass (see ``train.autocast``).
PRECISIONS = ("fp32", "bf16")


class ConfigError(ValueError):
    """A user-facing configuration mistake: bad name, bad value, unknown key.

    The message is one line that says what was wrong and what is allowed; the CLI prints it
    and exits with status 2.
    """


class DataNotFoundError(ConfigError):
    """A data set is missing and could not be downloaded."""


@dataclass(frozen=True)
class GroundTruth:
    """The true mutual information of a task.

    Attributes:
        mi: nats.
        method: how it is known: "analytic" (closed form), "by_construction" (exact on the
            empirical distribution the sampler draws from) or "monte_carlo".
        stderr: nats; > 0 only when the truth is itself a Monte Carlo estimate.
        note: a short human-readable statement of where the number comes from.
    """

    mi: float
    method: str = "analytic"
    stderr: float = 0.0
    note: str = ""


@runtime_checkable
class Task(Protocol):
    """A joint distribution p(x, y) with known mutual information.

    Implementations sample on their own device; ``generator`` must live on that device.
    """

    name: str
    device: torch.device

    def ground_truth(self) -> GroundTruth:
        """The true I(X; Y) of what ``sample`` draws from, in nats."""
        ...

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw n pairs from p(x, y). Returns x: (n, *x_shape), y: (n, *y_shape)."""
        ...

    def heldout(self) -> "Task":
        """The task to evaluate on after training (a test split for data sets, else itself)."""
        ...
