"""Task families with known mutual information, and ``build_task`` to make one from a preset."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..interface import ConfigError, Task
from ..registry import Registry
from .gaussian import CorrelatedGaussian, JointGaussian
from .mnist import PairedImages


@dataclass(frozen=True)
class TaskFamily:
    name: str
    build: Callable[..., Task]
    truth: str          # how the truth is known, for `mibench list`
    summary: str
    needs_data: bool = False


TASK_FAMILIES: Registry[TaskFamily] = Registry("task family")


def _paired(dataset: str) -> Callable[..., PairedImages]:
    def build(split: str = "train", keep: float = 1.0, data_dir: str | None = None,
              device: str | torch.device = "cpu") -> PairedImages:
        return PairedImages(dataset, split, keep, data_dir, device)
    return build


for _family in [
    TaskFamily("gaussian", CorrelatedGaussian, "I = -(d/2) ln(1 - rho^2)",
               "x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps; params dim, rho | mi, transform"),
    TaskFamily("gaussian_cov", JointGaussian, "I = 1/2 ln(det Sxx det Syy / det S)",
               "(x, y) ~ N(0, cov); params cov, dim_x"),
    TaskFamily("paired_mnist", _paired("mnist"), "I = H(labels) = 2.3012 nats (train), 2.3008 (test); ln 10 = 2.3026",
               "x an MNIST image, y an image of the same digit; params split, keep", needs_data=True),
    TaskFamily("paired_fashion_mnist", _paired("fashion_mnist"), "I = H(labels) = ln 10 = 2.3026 nats (balanced)",
               "x a Fashion-MNIST image, y one of the same class; params split, keep", needs_data=True),
]:
    TASK_FAMILIES.register(_family.name, _family)


def task_parameters(family: str) -> list[str]:
    """The preset parameters a family takes (its constructor's, less device and data_dir)."""
    build = TASK_FAMILIES[family].build
    return [p for p in inspect.signature(build).parameters if p not in ("device", "data_dir")]


def build_task(family: str, params: dict[str, Any] | None = None, *,
               device: str | torch.device = "cpu", data_dir: str | None = None) -> Task:
    """Construct a task of ``family`` from its preset parameters; unknown keys are errors."""
    fam = TASK_FAMILIES[family]
    params = dict(params or {})
    allowed = task_parameters(family)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"task {family!r}: unknown parameter {unknown[0]!r}; allowed: {', '.join(allowed)}")
    if fam.needs_data:
        params["data_dir"] = data_dir
    try:
        return fam.build(**params, device=device)
    except TypeError as exc:  # a value of the wrong type reaching the constructor
        raise ConfigError(f"task {family!r}: {exc}") from None


__all__ = ["TASK_FAMILIES", "TaskFamily", "build_task", "task_parameters", "CorrelatedGaussian", "JointGaussian", "PairedImages"]
