"""Task families with known mutual information, and ``build_task`` to make one from a preset.

A family is a task class (which declares its capabilities: see the optional protocols in
``mibench.interface``) plus how ``mibench list`` describes it. Adding one is a module here (or
in another package, through the ``mibench.tasks`` entry point) and one ``TASK_FAMILIES``
entry; ``mibench.testing.check_task`` is the contract it must pass.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..interface import ConfigError, FiniteTrainingSet, HasChosenMI, NeedsData, Task, check_keys
from ..registry import Registry
from .gaussian import CorrelatedGaussian, JointGaussian
from .mnist import PairedImages


@dataclass(frozen=True)
class TaskFamily:
    """name: the registry key; cls: the task class, whose classmethods and protocols say what
    the family can do; truth, summary: one line each for ``mibench list``; make: builds a task
    from the preset's parameters (default: ``cls`` itself), with ``device`` and, for families
    that read data, ``data_dir`` keywords; example: parameters of a small valid task, for the
    contract tests."""

    name: str
    cls: type
    truth: str
    summary: str
    example: dict[str, Any]
    make: Callable[..., Task] | None = None

    @property
    def needs_data(self) -> bool:
        return issubclass(self.cls, NeedsData)

    def parameters(self) -> list[str]:
        """The preset parameters the family takes (its constructor's, less device and data_dir)."""
        return [p for p in inspect.signature(self.make or self.cls).parameters if p not in ("device", "data_dir")]

    def build(self, params: dict[str, Any] | None = None, *, device: str | torch.device = "cpu",
              data_dir: str | None = None) -> Task:
        """A task of this family; unknown or ill-typed parameters are ConfigErrors."""
        params = dict(params or {})
        check_keys(params, self.parameters(), f"task {self.name!r}")
        if self.needs_data:
            params["data_dir"] = data_dir
        try:
            return (self.make or self.cls)(**params, device=device)
        except ConfigError:
            raise
        except (TypeError, ValueError) as exc:  # a value of the wrong type reaching the constructor
            raise ConfigError(f"task {self.name!r}: {exc}") from None

    def params_with_mi(self, params: dict[str, Any], mi: float) -> dict[str, Any]:
        """``params`` set to true MI ``mi`` (nats), for families that can be (the staircase)."""
        if not issubclass(self.cls, HasChosenMI):
            able = [f.name for f in TASK_FAMILIES.values() if issubclass(f.cls, HasChosenMI)]
            raise ConfigError(f"staircase needs a family whose MI can be set ({', '.join(able)}); "
                              f"{self.name!r} cannot")
        return self.cls.params_with_mi(params, mi)

    def train_size(self, params: dict[str, Any]) -> int:
        """Items in the training set, to turn epochs into steps (no data is read)."""
        if not issubclass(self.cls, FiniteTrainingSet):
            raise ConfigError(f"epochs need a finite training set, and {self.name!r} draws fresh "
                              "samples every step: give the budget in steps")
        return self.cls.train_size(params)


TASK_FAMILIES: Registry[TaskFamily] = Registry("task family", entry_points="mibench.tasks")


def _paired(dataset: str) -> Callable[..., PairedImages]:
    def build(split: str = "train", keep: float = 1.0, data_dir: str | None = None,
              device: str | torch.device = "cpu") -> PairedImages:
        return PairedImages(dataset, split, keep, data_dir, device)
    return build


for _family in [
    TaskFamily("gaussian", CorrelatedGaussian, "I = -(d/2) ln(1 - rho^2)",
               "x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps; params dim, rho | mi, transform",
               example={"dim": 3, "mi": 1.0}),
    TaskFamily("gaussian_cov", JointGaussian, "I = 1/2 ln(det Sxx det Syy / det S)",
               "(x, y) ~ N(0, cov); params cov, dim_x",
               example={"cov": [[1.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.0]], "dim_x": 1}),
    TaskFamily("paired_mnist", PairedImages, "I = H(labels) = 2.3012 nats (train), 2.3008 (test); ln 10 = 2.3026",
               "x an MNIST image, y an image of the same digit; params split, keep",
               example={"split": "test"}, make=_paired("mnist")),
    TaskFamily("paired_fashion_mnist", PairedImages, "I = H(labels) = ln 10 = 2.3026 nats (balanced)",
               "x a Fashion-MNIST image, y one of the same class; params split, keep",
               example={"split": "test"}, make=_paired("fashion_mnist")),
]:
    TASK_FAMILIES.register(_family.name, _family)


def task_parameters(family: str) -> list[str]:
    """The preset parameters a family takes."""
    return TASK_FAMILIES[family].parameters()


def build_task(family: str, params: dict[str, Any] | None = None, *,
               device: str | torch.device = "cpu", data_dir: str | None = None) -> Task:
    """Construct a task of ``family`` from its preset parameters; unknown keys are errors."""
    return TASK_FAMILIES[family].build(params, device=device, data_dir=data_dir)


__all__ = ["TASK_FAMILIES", "TaskFamily", "build_task", "task_parameters", "CorrelatedGaussian",
           "JointGaussian", "PairedImages"]
