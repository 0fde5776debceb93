"""(being written) BMI task families: see FAMILIES."""

from __future__ import annotations

from .family import TaskFamily

FAMILIES: list[TaskFamily] = []
