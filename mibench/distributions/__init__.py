"""Task families with known mutual information, and ``build_task`` to make one from a preset.

A family is a task class (which declares its capabilities: see the optional protocols in
``mibench.interface``) plus how ``mibench list`` describes it. Adding one is a module here (or
in another package, through the ``mibench.tasks`` entry point) and one ``TASK_FAMILIES``
entry; ``mibench.testing.check_task`` is the contract it must pass.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from ..interface import Task
from ..registry import Registry
from . import bmi, mixtures
from .family import TaskFamily
from .gaussian import CorrelatedGaussian, JointGaussian
from .mnist import PairedImages


TASK_FAMILIES: Registry[TaskFamily] = Registry("task family", entry_points="mibench.tasks")


def _paired(dataset: str) -> Callable[..., PairedImages]:
    cls = PairedImages.on(dataset)

    def build(split: str = "train", keep: float = 1.0, k: int = 1, data_dir: str | None = None,
              device: str | torch.device = "cpu") -> PairedImages:
        return cls(dataset, split, keep, data_dir, device, k=k)
    return build


for _family in [
    TaskFamily("gaussian", CorrelatedGaussian, "I = -(d/2) ln(1 - rho^2)",
               "x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps; params dim, rho | mi, transform",
               example={"dim": 3, "mi": 1.0}),
    TaskFamily("gaussian_cov", JointGaussian, "I = 1/2 ln(det Sxx det Syy / det S)",
               "(x, y) ~ N(0, cov); params cov, dim_x",
               example={"cov": [[1.0, 0.5, 0.0], [0.5, 1.0, 0.3], [0.0, 0.3, 1.0]], "dim_x": 1}),
    TaskFamily("paired_mnist", PairedImages.on("mnist"),
               "I = k H(labels), H = 2.3012 nats (train), 2.3008 (test); ln 10 = 2.3026; less with keep < 1",
               "x k MNIST images side by side (1, 28, 28k), y k images of the same digits; "
               "params split, keep, k", example={"split": "test", "k": 2}, make=_paired("mnist")),
    TaskFamily("paired_fashion_mnist", PairedImages.on("fashion_mnist"),
               "I = k H(labels) = k ln 10 = 2.3026 k nats (balanced); less with keep < 1",
               "x k Fashion-MNIST images side by side, y k of the same classes; params split, keep, k",
               example={"split": "test"}, make=_paired("fashion_mnist")),
    *bmi.FAMILIES,
    *mixtures.FAMILIES,
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
