"""``TaskFamily``: a task class plus how ``mibench list`` and the contract tests see it.

Kept apart from the registry so that family modules can declare their families
(``FAMILIES = [TaskFamily(...), ...]``) without importing the package that registers them.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch

from ..interface import ConfigError, FiniteTrainingSet, HasChosenMI, NeedsData, Task, check_keys


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
            from . import TASK_FAMILIES

            able = [f.name for f in TASK_FAMILIES.values() if issubclass(f.cls, HasChosenMI)]
            raise ConfigError(f"staircase needs a family whose MI can be set ({', '.join(able)}); "
                              f"{self.name!r} cannot")
        return self.cls.params_with_mi(params, mi)

    def level_params(self, params: dict[str, Any], staircase: tuple[float, ...] = ()) -> list[dict[str, Any]]:
        """The parameters trained on: one set per staircase level (MI in nats), else ``params``."""
        return [self.params_with_mi(params, mi) for mi in staircase] if staircase else [dict(params)]

    def train_size(self, params: dict[str, Any]) -> int:
        """Items in the training set, to turn epochs into steps (no data is read)."""
        if not issubclass(self.cls, FiniteTrainingSet):
            raise ConfigError(f"epochs need a finite training set, and {self.name!r} draws fresh "
                              "samples every step: give the budget in steps")
        return self.cls.train_size(params)
