"""Presets (``tasks/*.toml``): a task, an estimator, a training budget and sweep grids.

Loading a preset checks its tables (TOML syntax, known keys, a known task family, a valid
estimator table); every value of every grid axis is checked when the sweep is planned
(``mibench.plan`` calls the checks at the end of this module), before any run starts. See ``tasks/gaussian.toml`` for a commented example.
"""

from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from .bounds import bound_options
from .distributions import TASK_FAMILIES
from .estimators import EstimatorSpec
from .interface import PRECISIONS, ConfigError, check_keys, number
from .protocol import protocol_options
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


# --------------------------------------------------------------------------------------------
# The values of a grid: checked when a sweep is planned (``mibench.plan.expand``), before any run

DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
# A seed seeds torch.Generator.manual_seed (at most 2**64 - 1) after the runner adds its offsets
# (under SEED_OFFSETS_BELOW, ``mibench.runner``), and is stored as a signed 64-bit integer.
SEED_OFFSETS_BELOW = 5_000_000
MAX_SEED = 2**63 - 1 - SEED_OFFSETS_BELOW


def eval_options(preset_eval: Mapping[str, Any], batch_size: int, n_samples: int | None,
                 train_n_samples: int | None = None) -> dict[str, Any]:
    """The [eval] table of a cell with its defaults (50 batches of the training batch size, the
    training sample's size), checked: batches >= 1, batch size >= 2, and each fixed sample at
    least one batch."""
    ev = {"batches": 50, "batch_size": batch_size, "n_samples": n_samples, **preset_eval}
    for key, least in (("batches", 1), ("batch_size", 2)):
        if isinstance(ev[key], bool) or not (isinstance(ev[key], int) and ev[key] >= least):
            raise ConfigError(f"[eval] {key} must be an integer >= {least}, got {ev[key]!r}")
    for what, n, b in (("n_samples", train_n_samples, batch_size), ("[eval] n_samples", ev["n_samples"], ev["batch_size"])):
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < b):
            raise ConfigError(f"{what} must be an integer >= the batch size {b}, got {n!r}")
    return ev


def as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def budget(train: Mapping[str, Any], family: str, params: dict, batch_size: int,
            where: str) -> tuple[int, float | None]:
    steps, epochs = train.get("steps"), train.get("epochs")
    if (steps is None) == (epochs is None):
        raise ConfigError(f"{where}: give exactly one of steps or epochs for the training budget")
    if epochs is not None:
        n = train.get("n_samples")
        size = n if n is not None else TASK_FAMILIES[family].train_size(params)
        if not (isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and 0 < epochs < math.inf):
            raise ConfigError(f"{where}: epochs must be a positive number, got {epochs!r}")
        per_epoch = size // batch_size if train.get("n_samples") is not None else size / batch_size
        return max(1, math.ceil(epochs * per_epoch)), float(epochs)
    if isinstance(steps, bool) or not (isinstance(steps, int) and steps >= 1):
        raise ConfigError(f"{where}: steps must be a positive integer, got {steps!r}")
    return steps, None


def train_options(train: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The [train] values that are the same for every cell of a grid, checked."""
    lr = train.get("lr", 1e-3)
    if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and 0 < lr < math.inf):
        raise ConfigError(f"{where}: lr must be a positive number, got {lr!r}")
    log_every = train.get("log_every", 20)
    if isinstance(log_every, bool) or not (isinstance(log_every, int) and log_every >= 1):
        raise ConfigError(f"{where}: log_every must be a positive integer, got {log_every!r}")
    for key in ("batch_seeds", "save_model"):
        if not isinstance(train.get(key, False), bool):
            raise ConfigError(f"{where}: {key} must be true or false, got {train[key]!r}")
    precision = train.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"{where}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    staircase = tuple(number(v, f"{where}: staircase levels") for v in as_list(train.get("staircase", [])))
    n = train.get("n_samples")
    if n is not None:
        if isinstance(n, bool) or not (isinstance(n, int) and n >= 2):
            raise ConfigError(f"{where}: n_samples must be an integer >= 2, got {n!r}")
        if staircase:
            raise ConfigError(f"{where}: n_samples (a fixed training sample) and staircase (a moving truth) "
                              "cannot be combined")
        if train.get("batch_seeds", False):
            raise ConfigError(f"{where}: n_samples trains each seed on its own sample; use batch_seeds = false")
    return {"lr": float(lr), "log_every": log_every, "batch_seeds": train.get("batch_seeds", False),
            "save_model": train.get("save_model", False), "precision": precision, "staircase": staircase,
            "n_samples": n, **protocol_options(train, staircase, where)}


def check_nonempty(axes: Mapping[str, list], where: str) -> None:
    """Every axis has a value: an empty one (``seeds = []``) would leave the grid without runs."""
    for axis_field, values in axes.items():
        if not values:
            name = next((axis for axis, f in AXES.items() if f == axis_field), axis_field)
            raise ConfigError(f"{where}: {name} is empty; give at least one value")


def check_axes(axes: dict[str, list], where: str) -> None:
    check_nonempty(axes, where)
    for device in axes["device"]:
        if not isinstance(device, str) or not DEVICE_RE.match(device):
            raise ConfigError(f"{where}: unknown device {device!r}; allowed: cpu, cuda, cuda:N, mps")
    for b in axes["batch_size"]:
        if isinstance(b, bool) or not (isinstance(b, int) and b >= 2):
            raise ConfigError(f"{where}: batch size must be an integer >= 2, got {b!r}")
    for s in axes["seed"]:
        if isinstance(s, bool) or not (isinstance(s, int) and 0 <= s <= MAX_SEED):
            raise ConfigError(f"{where}: seeds must be non-negative integers, got {s!r}; allowed: 0 to 2**63 - 1 - "
                              f"{SEED_OFFSETS_BELOW:_} = {MAX_SEED} (a 64-bit seed, less room for the offsets "
                              "of a run's other generators)")
