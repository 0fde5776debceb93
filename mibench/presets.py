"""Presets (``tasks/*.toml``): a task, an estimator, a training budget and sweep grids.

A preset is validated completely when loaded and expanded, before any run starts: unknown
keys, unknown names and impossible values are ConfigErrors that name the key and what is
allowed. See ``tasks/gaussian.toml`` for a commented example.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
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

from .distributions import TASK_FAMILIES, task_parameters
from .estimators import EstimatorSpec
from .interface import PRECISIONS, ConfigError

# Grid axes and the RunSpec / EstimatorSpec field each one sets.
AXES = {"bounds": "bound", "critics": "critic", "negatives": "negatives",
        "batch_sizes": "batch_size", "devices": "device", "seeds": "seed"}
TRAIN_KEYS = {"steps", "epochs", "batch_size", "lr", "log_every", "staircase", "save_model", "batch_seeds",
              "precision"}
EVAL_KEYS = {"batches", "batch_size"}
GRID_KEYS = {"name", "task", *AXES, *TRAIN_KEYS, *EstimatorSpec.__dataclass_fields__}
TOP_KEYS = {"name", "description", "task", "estimator", "train", "eval", "grid", "quick"}
DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run's numbers; its hash is the run id.

    Attributes are plain values so a RunSpec round-trips through JSON. ``steps`` is final
    (epochs are converted when the preset is expanded).
    """

    preset: str
    grid: str
    family: str
    task_params: tuple[tuple[str, Any], ...]
    estimator: EstimatorSpec
    batch_size: int
    steps: int
    lr: float
    device: str
    seed: int
    eval_batches: int
    eval_batch_size: int
    log_every: int
    staircase: tuple[float, ...] = ()   # MI levels (nats) stepped through evenly over the steps
    epochs: float | None = None
    save_model: bool = False            # keep the trained weights in DIR/models/<run_id>.pt
    batch_seeds: bool = False           # train this run with its sibling seeds as one batched model
    precision: str = "fp32"             # "bf16": the training forward under bfloat16 autocast

    @property
    def n_negatives(self) -> int:
        return self.estimator.n_negatives(self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["task_params"] = dict(self.task_params)
        return d

    @property
    def run_id(self) -> str:
        """A hash of the full spec: same spec, same id, across machines and sessions.

        Options added after the first results were recorded enter the hash only when set, so
        adding an option does not change the ids (and resume) of existing runs.
        """
        d = self.to_dict()
        for name in _HASHED_WHEN_SET:
            if d[name] == RunSpec.__dataclass_fields__[name].default:
                del d[name]
        blob = json.dumps(d, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


_HASHED_WHEN_SET = ("batch_seeds", "precision")


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

    @property
    def family(self) -> str:
        return self.task["family"]

    def describe(self) -> str:
        fam = TASK_FAMILIES[self.family]
        return f"{self.family}: {self.description} [{fam.truth}]"


def _check_keys(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table, got {type(table).__name__}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")


def preset_dirs() -> list[Path]:
    """Where presets are looked up: the checkout's tasks/, then the copy inside an installed wheel."""
    here = Path(__file__).resolve().parent
    return [d for d in (here.parent / "tasks", here / "_presets") if d.is_dir()]


def find_preset(name: str) -> Path:
    if name.endswith(".toml") or os.sep in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"preset file {name!r} does not exist")
        return path
    known: dict[str, Path] = {}
    for d in preset_dirs():
        for p in sorted(d.glob("*.toml")):
            known.setdefault(p.stem, p)
    if name not in known:
        import difflib

        close = difflib.get_close_matches(name, known, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown task {name!r}{hint} Known presets: {', '.join(known)} (or a path to a .toml file)")
    return known[name]


def list_presets() -> list[Preset]:
    seen: dict[str, Preset] = {}
    for d in preset_dirs():
        for p in sorted(d.glob("*.toml")):
            if p.stem not in seen:
                seen[p.stem] = load_preset(str(p))
    return list(seen.values())


def load_preset(name: str) -> Preset:
    """Read and validate a preset by name (tasks/NAME.toml) or path."""
    path = find_preset(name)
    where = path.name
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    _check_keys(data, TOP_KEYS, where)
    task = dict(data.get("task", {}))
    _check_keys(task, {"family", *_family_params(task.get("family"), where)}, f"{where} [task]")
    estimator = dict(data.get("estimator", {}))
    EstimatorSpec.from_dict(estimator)  # validates names and values now
    train = dict(data.get("train", {}))
    _check_keys(train, TRAIN_KEYS, f"{where} [train]")
    evaluation = dict(data.get("eval", {}))
    _check_keys(evaluation, EVAL_KEYS, f"{where} [eval]")
    grids = data.get("grid", [{}])
    quick = data.get("quick", [])
    grids = [grids] if isinstance(grids, dict) else grids
    quick = [quick] if isinstance(quick, dict) else quick
    for kind, tables in (("grid", grids), ("quick", quick)):
        if not isinstance(tables, list):
            raise ConfigError(f"{where}: [[{kind}]] must be an array of tables")
        for i, g in enumerate(tables):
            _check_keys(g, GRID_KEYS, f"{where} [[{kind}]] #{i + 1}")
    preset = Preset(data.get("name", path.stem), path, data.get("description", ""), task, estimator,
                    train, evaluation, list(grids), list(quick))
    expand(preset)            # a bad value anywhere in the grid fails here, not mid-sweep
    if preset.quick:
        expand(preset, quick=True)
    return preset


def _family_params(family: Any, where: str) -> list[str]:
    if family is None:
        raise ConfigError(f"{where} [task]: 'family' is required; allowed: {', '.join(TASK_FAMILIES)}")
    if family not in TASK_FAMILIES:
        raise ConfigError(f"{where} [task]: {TASK_FAMILIES.unknown_message(family)}")
    return task_parameters(family)


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def expand(preset: Preset, *, quick: bool = False, overrides: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """All runs of the preset: for each grid, the product of its axes.

    ``overrides`` maps axis names (bounds, critics, negatives, batch_sizes, devices, seeds) to
    lists, or steps / epochs to a number; they replace the preset's values in every grid.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    grids = preset.quick if quick else preset.grids
    if quick and not grids:
        raise ConfigError(f"{preset.path.name}: no [[quick]] grid in this preset")
    where = preset.path.name
    specs: list[RunSpec] = []
    for i, grid in enumerate(grids):
        g = dict(grid)
        if "steps" in overrides or "epochs" in overrides:  # a budget override replaces both
            g.pop("steps", None)
            g.pop("epochs", None)
        g.update(overrides)
        specs += _expand_grid(preset, g, f"{where} [[{'quick' if quick else 'grid'}]] #{i + 1}")
    unique = {s.run_id: s for s in reversed(specs)}          # grids may overlap: keep the first
    return [s for s in specs if unique.get(s.run_id) is s]


def _expand_grid(preset: Preset, grid: dict[str, Any], where: str) -> list[RunSpec]:
    train = {**preset.train, **{k: v for k, v in grid.items() if k in TRAIN_KEYS}}
    est_base = {**preset.estimator, **{k: v for k, v in grid.items() if k in EstimatorSpec.__dataclass_fields__}}
    task_axes = grid.get("task", {})
    _check_keys(task_axes, set(task_parameters(preset.family)), f"{where} task")
    batch_default = train.get("batch_size", 128)
    axes = {
        "bound": _as_list(grid.get("bounds", est_base.get("bound", "infonce"))),
        "critic": _as_list(grid.get("critics", est_base.get("critic", "separable"))),
        "negatives": _as_list(grid.get("negatives", est_base.get("negatives", "all"))),
        "batch_size": _as_list(grid.get("batch_sizes", batch_default)),
        "device": _as_list(grid.get("devices", "cpu")),
        "seed": _as_list(grid.get("seeds", 0)),
    }
    task_lists = {k: _as_list(v) for k, v in task_axes.items()}
    for device in axes["device"]:
        if not isinstance(device, str) or not DEVICE_RE.match(device):
            raise ConfigError(f"{where}: unknown device {device!r}; allowed: cpu, cuda, cuda:N, mps")
    for b in axes["batch_size"]:
        if not (isinstance(b, int) and b >= 2):
            raise ConfigError(f"{where}: batch size must be an integer >= 2, got {b!r}")
    for s in axes["seed"]:
        if not (isinstance(s, int) and s >= 0):
            raise ConfigError(f"{where}: seeds must be non-negative integers, got {s!r}")
    lr = train.get("lr", 1e-3)
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ConfigError(f"{where}: lr must be a positive number, got {lr!r}")
    log_every = train.get("log_every", 20)
    staircase = tuple(float(v) for v in _as_list(train.get("staircase", [])))
    batch_seeds = train.get("batch_seeds", False)
    if not isinstance(batch_seeds, bool):
        raise ConfigError(f"{where}: batch_seeds must be true or false, got {batch_seeds!r}")
    if batch_seeds and "mine" in axes["bound"]:
        raise ConfigError(f"{where}: bound 'mine' keeps an in-place moving average and cannot use batch_seeds")
    precision = train.get("precision", "fp32")
    if precision not in PRECISIONS:
        raise ConfigError(f"{where}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if staircase and preset.family != "gaussian":
        raise ConfigError(f"{where}: staircase is only defined for the 'gaussian' family")

    specs = []
    names = list(axes) + list(task_lists)
    for values in itertools.product(*axes.values(), *task_lists.values()):
        cell = dict(zip(names, values))
        task_params = {**{k: v for k, v in preset.task.items() if k != "family"},
                       **{k: cell[k] for k in task_lists}}
        est = EstimatorSpec.from_dict({**est_base, "bound": cell["bound"], "critic": cell["critic"],
                                       "negatives": cell["negatives"]})
        est.n_negatives(cell["batch_size"])      # K <= B - 1, checked now
        steps, epochs = _budget(train, preset.family, cell["batch_size"], where)
        ev = {"batches": 50, "batch_size": cell["batch_size"], **preset.eval}
        specs.append(RunSpec(
            preset=preset.name, grid=str(grid.get("name", "")), family=preset.family,
            task_params=tuple(sorted(task_params.items())), estimator=est,
            batch_size=cell["batch_size"], steps=steps, lr=float(lr), device=cell["device"],
            seed=cell["seed"], eval_batches=int(ev["batches"]), eval_batch_size=int(ev["batch_size"]),
            log_every=int(log_every), staircase=staircase, epochs=epochs,
            save_model=bool(train.get("save_model", False)), batch_seeds=batch_seeds,
            precision=precision))
    return specs


# Training-set sizes of the finite data sets, to turn epochs into steps without loading data.
TRAIN_SIZE = {"paired_mnist": 60_000, "paired_fashion_mnist": 60_000}


def _budget(train: Mapping[str, Any], family: str, batch_size: int, where: str) -> tuple[int, float | None]:
    steps, epochs = train.get("steps"), train.get("epochs")
    if (steps is None) == (epochs is None):
        raise ConfigError(f"{where}: give exactly one of steps or epochs for the training budget")
    if epochs is not None:
        if family not in TRAIN_SIZE:
            raise ConfigError(f"{where}: epochs need a finite data set; use steps for {family!r}")
        if not (isinstance(epochs, (int, float)) and epochs > 0):
            raise ConfigError(f"{where}: epochs must be a positive number, got {epochs!r}")
        return max(1, math.ceil(epochs * TRAIN_SIZE[family] / batch_size)), float(epochs)
    if not (isinstance(steps, int) and steps >= 1):
        raise ConfigError(f"{where}: steps must be a positive integer, got {steps!r}")
    return steps, None
