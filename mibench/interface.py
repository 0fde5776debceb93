"""Core types shared by every module: ground truth, the task protocol and its optional
capabilities, errors, the staircase schedule.

This is a leaf module: it imports nothing from mibench, and torch only for type annotations,
so anything may import it, and the command line can report a bad argument before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping, Protocol, runtime_checkable

if TYPE_CHECKING:
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
    Constructing a task is cheap and validates its parameters (a ConfigError names a bad one);
    a task that reads a data set loads it on first use, or in ``load()`` (``NeedsData``).
    """

    name: str
    device: torch.device
    x_shape: tuple[int, ...]      # one x, without the batch dimension
    y_shape: tuple[int, ...]

    def ground_truth(self) -> GroundTruth:
        """The true I(X; Y) of what ``sample`` draws from, in nats."""
        ...

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Draw n pairs from p(x, y). Returns x: (n, *x_shape), y: (n, *y_shape)."""
        ...

    def heldout(self) -> "Task":
        """The task to evaluate on after training (a test split for data sets, else itself)."""
        ...


# Optional capabilities. A task (or its class) that has one declares it by defining the method;
# the runner and the contract tests (``mibench.testing.check_task``) look for these protocols.


@runtime_checkable
class HasEntropyY(Protocol):
    """H(y) is known (the BA bound needs it)."""

    def entropy_y(self) -> float | None:
        """Differential (or discrete) entropy of y in nats; None where it is not known for
        these parameters."""
        ...


@runtime_checkable
class HasChosenMI(Protocol):
    """The family can be set to any MI level: the staircase protocol steps through levels.

    A classmethod, so that levels are planned (and validated) from parameters alone.
    """

    @classmethod
    def params_with_mi(cls, params: dict, mi: float) -> dict:
        """``params`` changed so that the task's true MI is ``mi`` nats."""
        ...


@runtime_checkable
class FiniteTrainingSet(Protocol):
    """Training draws from a finite set of items, so a budget can be given in epochs."""

    @classmethod
    def train_size(cls, params: dict) -> int:
        """The number of training items of a task with these parameters (no data loaded)."""
        ...


@runtime_checkable
class NeedsData(Protocol):
    """The task reads files; ``load()`` reads (or downloads) them now and raises a
    DataNotFoundError naming what is missing or broken. Executors call it once per task before
    the first run, so a data problem is one line before any training."""

    def load(self) -> None:
        ...


@runtime_checkable
class HasLabels(Protocol):
    """Items carry a class label: a fixed labelled sample of x's (for embedding figures)."""

    def labelled_sample(self, n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
        """n held-out x's (on the CPU) and their integer labels."""
        ...


def level_of_step(step, steps: int, n_levels: int):
    """The staircase level (0 .. n_levels - 1) of a training step (an int or an integer array):
    ceil(steps / n_levels) steps per level, the last level taking whatever remains. The one
    definition the training loop, the reporter and the figures share."""
    per_level = -(-steps // n_levels)
    level = step // per_level
    return min(level, n_levels - 1) if isinstance(level, int) else level.clip(max=n_levels - 1)


def number(value: object, what: str) -> float:
    """``value`` as a float, or a ConfigError naming ``what`` ("gaussian: mi") when it is not a
    number (TOML strings and booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number, got {value!r}")
    return float(value)


def check_keys(table: object, allowed, where: str) -> None:
    """The one unknown-key check: ``table`` must be a mapping whose keys are all in ``allowed``;
    else a ConfigError naming the first unknown key and listing the allowed ones."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
