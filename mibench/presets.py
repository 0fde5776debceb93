"""Presets (``tasks/*.toml``): a task, an estimator, a training budget and sweep grids.

Loading a preset checks its tables (TOML syntax, known keys, a known task family, a valid
estimator table); every value of every grid axis is checked when the sweep is planned
(``mibench.plan``), before any run starts. See ``tasks/gaussian.toml`` for a commented example.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .bounds import bound_options
from .distributions import TASK_FAMILIES
from .estimators import EstimatorSpec
from .interface import ConfigError, check_keys
from .registry import unknown_name
from .sample import sample_options

# Grid axes and the RunSpec / EstimatorSpec field each one sets.
AXES = {"bounds": "bound", "critics": "critic", "negatives": "negatives",
        "batch_sizes": "batch_size", "devices": "device", "seeds": "seed"}
TRAIN_KEYS = {"steps", "epochs", "batch_size", "lr", "log_every", "staircase", "save_model", "batch_seeds",
              "precision", "n_samples", "eval_every", "patience", "report", "standardize", "batches"}
EVAL_KEYS = {"batches", "batch_size", "n_samples"}
TOP_KEYS = {"name", "description", "task", "estimator", "train", "eval", "grid", "quick", "slurm"}
# A preset's name names its results folder (results/NAME): one path component, no '..'.
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
SLURM_KEYS = {"partition", "time_min", "gpus", "mem_gb", "cpus", "job_minutes", "array_parallelism", "extra"}


def estimator_keys() -> set[str]:
    """Keys of an [estimator] table (and of a grid, which may set them): the spec's fields and
    every registered bound's options."""
    return {f for f in EstimatorSpec.__dataclass_fields__ if f != "options"} | bound_options()


def grid_keys() -> set[str]:
    """Keys a grid may set: the axes, [train] and [estimator] keys, and ``estimators`` (sample
    estimators by name) with their options."""
    return {"name", "task", "estimators", *AXES, *TRAIN_KEYS, *estimator_keys(), *sample_options()}


@dataclass
class Preset:
    name: str
    path: Path
    description: str
    task: dict[str, Any]
    estimator: dict[str, Any]
    train: dict[str, Any]
    eval: dict[str, Any]
    grids: list[dict[str, Any]]
    quick: list[dict[str, Any]] = field(default_factory=list)
    slurm: dict[str, Any] = field(default_factory=dict)     # defaults of the SLURM executor

    @property
    def family(self) -> str:
        return self.task["family"]

    @property
    def task_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.task.items() if k != "family"}

    def describe(self) -> str:
        return f"{self.family}: {self.description} [{TASK_FAMILIES[self.family].truth}]"

    def grid_tables(self, quick: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """(where, table) of the grids a sweep runs: [[grid]], or [[quick]] with ``quick``."""
        tables = self.quick if quick else self.grids
        if quick and not tables:
            raise ConfigError(f"{self.path.name}: no [[quick]] grid in this preset")
        kind = "quick" if quick else "grid"
        return [(f"{self.path.name} [[{kind}]] #{i + 1}", t) for i, t in enumerate(tables)]


def preset_dirs() -> list[Path]:
    """Where presets are looked up: the checkout's tasks/, then the copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    return [d for d in (here.parent / "tasks", here / "_presets") if d.is_dir()]


def known_presets() -> dict[str, Path]:
    known: dict[str, Path] = {}
    for d in preset_dirs():
        for p in sorted(d.glob("*.toml")):
            known.setdefault(p.stem, p)
    return known


def find_preset(name: str) -> Path:
    if name.endswith(".toml") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"preset file {name!r} does not exist")
        return path
    known = known_presets()
    if name not in known:
        raise ConfigError(unknown_name("task", name, known, "Known presets")
                          + " (or a path to a .toml file)")
    return known[name]


def list_presets() -> list[Preset]:
    return [load_preset(str(p)) for p in known_presets().values()]


def load_preset(name: str) -> Preset:
    """Read a preset by name (tasks/NAME.toml) or path, and check its tables."""
    path = find_preset(name)
    where = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read ({exc})") from None
    check_keys(data, TOP_KEYS, where)
    name = data.get("name", path.stem)
    if not (isinstance(name, str) and NAME_RE.match(name)):
        given = f"got {name!r}" if "name" in data else f"and without a name line it is the file's, {name!r}"
        raise ConfigError(f"{where}: name must be a simple name (letters, digits, '-', '_' and '.', not starting "
                          f"with '.'; it names the results folder results/NAME), {given}")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ConfigError(f"{where}: description must be a string, got {description!r}")
    task = _table(data, "task", where)
    family = task.get("family")
    if family is None:
        raise ConfigError(f"{where} [task]: 'family' is required; allowed: {', '.join(TASK_FAMILIES)}")
    if not isinstance(family, str) or family not in TASK_FAMILIES:
        raise ConfigError(f"{where} [task]: {TASK_FAMILIES.unknown_message(family)}")
    check_keys(task, {"family", *TASK_FAMILIES[family].parameters()}, f"{where} [task]")
    estimator = _table(data, "estimator", where)
    check_keys(estimator, estimator_keys(), f"{where} [estimator]")
    train = _table(data, "train", where)
    check_keys(train, TRAIN_KEYS, f"{where} [train]")
    evaluation = _table(data, "eval", where)
    check_keys(evaluation, EVAL_KEYS, f"{where} [eval]")
    slurm = _table(data, "slurm", where)
    check_keys(slurm, SLURM_KEYS, f"{where} [slurm]")
    tables = {}
    for kind, default in (("grid", [{}]), ("quick", [])):
        value = data.get(kind, default)
        value = [value] if isinstance(value, dict) else value
        if not isinstance(value, list):
            raise ConfigError(f"{where}: [[{kind}]] must be an array of tables")
        for i, g in enumerate(value):
            check_keys(g, grid_keys(), f"{where} [[{kind}]] #{i + 1}")
        tables[kind] = list(value)
    return Preset(name, path, description, task, estimator, train, evaluation, tables["grid"], tables["quick"],
                  slurm)


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """The preset's table ``key`` (empty when absent); a ConfigError when it is not a table."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: {key} must be a table ([{key}] with its keys below it), got {value!r}")
    return dict(value)
