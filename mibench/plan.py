"""Planning a sweep: preset + overrides + what the results folder holds -> the runs still to do.

``expand`` turns a preset's grids into ``RunSpec``s, checking every value of every axis (task
parameters and staircase levels by building the tasks, which reads no data; estimator specs by
building each distinct estimator on the meta device), so a bad value is one ConfigError before
any run starts. A grid of sample estimators (``estimators = [...]``) is the exception: their
names and options are checked by each run, so an unknown one is that run's error row (as is
another library's unknown bound name). ``plan_sweep`` adds the results folder: the runs
recorded there are done, the rest are grouped into what trains together. Executing a plan is ``mibench.runner``'s job.

A run's identity (``RunSpec.run_id``) is what is trained and evaluated. The grids a run
belongs to are labels, and output options (``save_model``, ``log_every``) do not make a run new:
two grids that meet on one configuration train it once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping, Protocol

import torch

from .bounds import bound_options
from .distributions import TASK_FAMILIES
from .estimators import EstimatorSpec, estimator_for
from .interface import PRECISIONS, ConfigError, check_keys, number
from .presets import AXES, TRAIN_KEYS, Preset, estimator_keys, load_preset
from .protocol import protocol_options
from .registry import unknown_name
from .results import FINISHED, PROTOCOL_DEFAULTS, SCHEMA_VERSION, default_out_dir, load_rows
from .sample import SAMPLE_ESTIMATORS, SampleSpec, sample_options

DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?|mps)$")
# A seed seeds torch.Generator.manual_seed (at most 2**64 - 1) after the runner adds its offsets
# (under SEED_OFFSETS_BELOW, ``mibench.runner``), and is stored as a signed 64-bit integer.
SEED_OFFSETS_BELOW = 5_000_000
MAX_SEED = 2**63 - 1 - SEED_OFFSETS_BELOW
# Run options added after the first results were recorded: they enter the identity only when set,
# so adding an option leaves the ids of existing runs as they were.
_IDENTITY_WHEN_SET = {"batch_seeds": False, "precision": "fp32", "n_samples": None, "eval_n_samples": None,
                      **PROTOCOL_DEFAULTS}


class RunEstimator(Protocol):
    """The seam between a run and its kind: what each estimator spec of a run implements.

    ``EstimatorSpec`` (a critic trained by mibench's loop, mibench's or another library's) and
    ``SampleSpec`` (one estimate on a sample) are the two kinds; ``mibench.runner.RUNNERS`` runs
    each ``kind``. A spec says which fields of its run make the run what it is (``RUN_FIELDS``,
    beside the task, the seed-independent options set away from their defaults, and its own
    ``identity``) and which columns of the row it fills (``row_columns``)."""

    kind: ClassVar[str]
    RUN_FIELDS: ClassVar[tuple[str, ...]]

    def to_dict(self) -> dict[str, Any]: ...

    def identity(self, batch_size: int | None) -> dict[str, Any]: ...

    def row_columns(self, run: "RunSpec") -> dict[str, Any]: ...

    def n_negatives(self, batch_size: int) -> int: ...


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one run, plus the labels it carries; plain values throughout
    so that it round-trips through JSON. ``steps`` is final (epochs are converted in ``expand``).
    The training fields are None for a run that trains nothing (a sample estimator's)."""

    preset: str
    grids: tuple[str, ...]              # labels: the grids of the preset this run belongs to
    family: str
    task_params: tuple[tuple[str, Any], ...]
    estimator: EstimatorSpec | SampleSpec   # the kind of run (``RunEstimator``) and what it estimates with
    device: str
    seed: int
    batch_size: int | None = None
    steps: int | None = None
    lr: float | None = None
    eval_batches: int | None = None
    eval_batch_size: int | None = None
    log_every: int | None = None        # output: how often the training estimate is traced
    staircase: tuple[float, ...] = ()   # MI levels (nats) stepped through evenly over the steps
    epochs: float | None = None         # label: the budget as given, when given in epochs
    save_model: bool = False            # output: keep the weights (and embeddings) of the run
    batch_seeds: bool = False           # train with its sibling seeds as one batched model
    precision: str = "fp32"             # "bf16": the training forward under bfloat16 autocast
    n_samples: int | None = None        # train on a fixed sample of this many pairs (else a stream)
    eval_n_samples: int | None = None   # ... and estimate on a fixed held-out sample of this many
    # The training protocol: evaluate on the held-out data every eval_every steps, stop after
    # patience evaluations in a row without a new best, report the "final" or the "best" estimate
    eval_every: int | None = None
    patience: int | None = None
    report: str = "final"
    standardize: bool = False           # standardise both fixed samples with their union's statistics
    batches: str = "epochs"             # how batches come from a fixed sample: "epochs" or "independent"

    @property
    def grid(self) -> str:
        return self.grids[0] if self.grids else ""

    @property
    def n_negatives(self) -> int:
        return self.estimator.n_negatives(self.batch_size)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d.update(grids=list(self.grids), task_params=dict(self.task_params), estimator=self.estimator.to_dict(),
                 staircase=list(self.staircase))
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "RunSpec":
        """The inverse of ``to_dict``; also reads the specs of rows written before schema 2
        (one ``grid`` label, bound options of every bound in the estimator table)."""
        d = dict(d)
        grids = d.pop("grids", None)
        grid = d.pop("grid", "")
        names = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in names}
        est = dict(d["estimator"])
        est = SampleSpec.from_dict(est) if est.get("kind") == "sample" else EstimatorSpec.from_dict(est)
        return cls(**{**d, "grids": tuple(grids if grids is not None else [grid]),
                      "task_params": tuple(sorted(dict(d["task_params"]).items())),
                      "estimator": est,
                      "staircase": tuple(d.get("staircase", ()))})

    def identity(self) -> dict[str, Any]:
        """What is trained and evaluated: the run id hashes this and nothing else. The task,
        the estimator's own identity, the run fields its kind names (``RunEstimator``) and the
        options added over time where they differ from their defaults."""
        est = self.estimator
        ident = {"family": self.family, "task_params": dict(self.task_params), "estimator": est.identity(self.batch_size)}
        for name in est.RUN_FIELDS:
            value = getattr(self, name)
            ident[name] = list(value) if isinstance(value, tuple) else value
        ident.update({k: getattr(self, k) for k, default in _IDENTITY_WHEN_SET.items()
                      if getattr(self, k) != default})
        return ident

    @property
    def run_id(self) -> str:
        """A hash of ``identity()``: the same run has the same id on every machine, every time."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    def level_params(self) -> list[dict[str, Any]]:
        """The task parameters trained on: one set per staircase level, else the task's own
        (``TaskFamily.level_params``)."""
        return TASK_FAMILIES[self.family].level_params(dict(self.task_params), self.staircase)


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the current schema identifies it: rows written before schema 2 get the run id
    their spec has now (and keep the old one as ``run_id_v1``)."""
    if row.get("schema_version", 1) >= SCHEMA_VERSION or not isinstance(row.get("spec"), Mapping):
        return row
    try:
        new_id = RunSpec.from_dict(row["spec"]).run_id
    except (KeyError, TypeError, ValueError, AttributeError):     # a spec that is not one: the id it has
        return row
    return {**row, "run_id": new_id, "run_id_v1": row["run_id"]}


# --------------------------------------------------------------------------------------------
# Expanding a preset


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


class _Checker:
    """Checks each distinct task and (estimator, task) pair once per expansion."""

    def __init__(self):
        self.tasks: dict[str, Any] = {}
        self.estimators: set[tuple] = set()

    def task(self, family: str, params: dict[str, Any], where: str):
        key = json.dumps([family, params], sort_keys=True, default=str)
        if key not in self.tasks:
            try:
                self.tasks[key] = TASK_FAMILIES[family].build(params)      # reads no data
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        return self.tasks[key]

    def estimator(self, spec: EstimatorSpec, task, where: str) -> None:
        key = (spec, task.x_shape, task.y_shape, type(task))
        if key in self.estimators or not spec.checked_when_planned:   # another library: checked by its run
            return
        try:
            with torch.device("meta"), torch.random.fork_rng(devices=[]):
                estimator_for(spec, task)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        except (RuntimeError, OverflowError) as exc:     # sizes no tensor can have (dim = 2**63 - 1)
            raise ConfigError(f"{where}: the estimator cannot be built for this task: {exc}") from None
        self.estimators.add(key)


def _budget(train: Mapping[str, Any], family: str, params: dict, batch_size: int,
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


def _train_options(train: Mapping[str, Any], where: str) -> dict[str, Any]:
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
    staircase = tuple(number(v, f"{where}: staircase levels") for v in _as_list(train.get("staircase", [])))
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


def _nonempty(axes: Mapping[str, list], where: str) -> None:
    """Every axis has a value: an empty one (``seeds = []``) would leave the grid without runs."""
    for field, values in axes.items():
        if not values:
            name = next((axis for axis, f in AXES.items() if f == field), field)
            raise ConfigError(f"{where}: {name} is empty; give at least one value")


def _check_axes(axes: dict[str, list], where: str) -> None:
    _nonempty(axes, where)
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


def _expand_grid(preset: Preset, grid: Mapping[str, Any], train: dict[str, Any], where: str,
                 checker: _Checker) -> list[RunSpec]:
    train = {**train, **{k: v for k, v in grid.items() if k in TRAIN_KEYS}}
    est_keys = estimator_keys()
    est_base = {**preset.estimator, **{k: v for k, v in grid.items() if k in est_keys}}
    task_axes = grid.get("task", {})
    check_keys(task_axes, TASK_FAMILIES[preset.family].parameters(), f"{where} task")
    axes = {
        "bound": _as_list(grid.get("bounds", est_base.get("bound", "infonce"))),
        "critic": _as_list(grid.get("critics", est_base.get("critic", "separable"))),
        "negatives": _as_list(grid.get("negatives", est_base.get("negatives", "all"))),
        "batch_size": _as_list(grid.get("batch_sizes", train.get("batch_size", 128))),
        "device": _as_list(grid.get("devices", "cpu")),
        "seed": _as_list(grid.get("seeds", 0)),
    }
    _check_axes(axes, where)
    options = _train_options(train, where)
    task_lists = {k: _as_list(v) for k, v in task_axes.items()}
    _nonempty({f"task {k}": v for k, v in task_lists.items()}, where)
    if "estimators" in grid:
        return _expand_sample_grid(preset, grid, options, axes, task_lists, where, checker)
    # A bound option given as a list (tau = [1.0, 5.0, inf]) is one more axis; bounds without
    # that option ignore it, and their duplicate runs are merged by ``merge_duplicates``.
    option_lists = {k: list(v) for k, v in est_base.items() if k in bound_options() and isinstance(v, (list, tuple))}
    _nonempty(option_lists, where)
    names = list(axes) + list(task_lists) + list(option_lists)
    specs = []
    for values in itertools.product(*axes.values(), *task_lists.values(), *option_lists.values()):
        cell = dict(zip(names, values))
        params = {**preset.task_params, **{k: cell[k] for k in task_lists}}
        try:
            est = EstimatorSpec.from_dict({**est_base, **{k: cell[k] for k in option_lists}, "bound": cell["bound"],
                                           "critic": cell["critic"], "negatives": cell["negatives"]})
            est.n_negatives(cell["batch_size"])      # K <= B - 1
            if options["batch_seeds"] and not est.batchable:
                raise ConfigError(f"bound {est.bound!r} cannot train as a batched model; "
                                  "run it with batch_seeds = false")
            ev = {"batches": 50, "batch_size": cell["batch_size"], "n_samples": options["n_samples"],
                  **preset.eval}
            for key, least in (("batches", 1), ("batch_size", 2)):
                if isinstance(ev[key], bool) or not (isinstance(ev[key], int) and ev[key] >= least):
                    raise ConfigError(f"[eval] {key} must be an integer >= {least}, got {ev[key]!r}")
            est.n_negatives(ev["batch_size"])
            for what, n, b in (("n_samples", options["n_samples"], cell["batch_size"]),
                               ("[eval] n_samples", ev["n_samples"], ev["batch_size"])):
                if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < b):
                    raise ConfigError(f"{what} must be an integer >= the batch size {b}, got {n!r}")
            steps, epochs = _budget(train, preset.family, params, cell["batch_size"], where)
            if options["eval_every"] is not None and options["eval_every"] > steps:
                raise ConfigError(f"eval_every must be at most the {steps} training steps (else nothing is "
                                  f"evaluated), got {options['eval_every']}")
            if options["standardize"] and ev["n_samples"] is None:
                raise ConfigError("standardize needs a fixed held-out sample too ([eval] n_samples)")
        except ConfigError as exc:
            raise ConfigError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
        spec = RunSpec(
            preset=preset.name, grids=(str(grid.get("name", "")),), family=preset.family,
            task_params=tuple(sorted(params.items())), estimator=est, batch_size=cell["batch_size"],
            steps=steps, lr=options["lr"], device=cell["device"], seed=cell["seed"],
            eval_batches=ev["batches"], eval_batch_size=ev["batch_size"],
            log_every=options["log_every"], staircase=options["staircase"], epochs=epochs,
            save_model=options["save_model"], batch_seeds=options["batch_seeds"],
            precision=options["precision"], n_samples=options["n_samples"],
            eval_n_samples=ev["n_samples"], eval_every=options["eval_every"], patience=options["patience"],
            report=options["report"], standardize=options["standardize"], batches=options["batches"])
        try:
            level_params = spec.level_params()
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for p in level_params:
            checker.estimator(est, checker.task(preset.family, p, f"{where} task"), where)
        specs.append(spec)
    return specs


def _expand_sample_grid(preset: Preset, grid: Mapping[str, Any], options: dict[str, Any], axes: dict[str, list],
                        task_lists: dict[str, list], where: str, checker: _Checker) -> list[RunSpec]:
    """The runs of a grid of sample estimators: one per name, seed, device and task.

    Names and options are not checked here: an unknown name or a bad option is that run's
    error row (``mibench.sample``), so the rest of the sweep goes on."""
    n = options["n_samples"]
    if n is None:
        raise ConfigError(f"{where}: sample estimators need n_samples (the size of the sample each "
                          "estimate gets), e.g. n_samples = 5000")
    if options["staircase"]:
        raise ConfigError(f"{where}: sample estimators take no staircase (they train nothing)")
    names = [str(v) for v in _as_list(grid["estimators"])]
    _nonempty({"estimators": names}, where)
    given = {k: v for k, v in grid.items() if k in sample_options()}
    specs = []
    task_names = list(task_lists)
    for name, device, seed, *task_values in itertools.product(names, axes["device"], axes["seed"],
                                                               *task_lists.values()):
        params = {**preset.task_params, **dict(zip(task_names, task_values))}
        checker.task(preset.family, params, f"{where} task")
        known = SAMPLE_ESTIMATORS[name].options if name in SAMPLE_ESTIMATORS else given
        opts = {k: v for k, v in given.items() if k in known}
        spec = RunSpec(
            preset=preset.name, grids=(str(grid.get("name", "")),), family=preset.family,
            task_params=tuple(sorted(params.items())), estimator=SampleSpec.from_dict({"name": name, **opts}),
            device=device, seed=seed, n_samples=n)
        specs.append(spec)
    return specs


def expand(preset: Preset, *, quick: bool = False, overrides: Mapping[str, Any] | None = None) -> list[RunSpec]:
    """All runs of the preset, each once: for each grid, the product of its axes.

    ``overrides`` maps axis names (bounds, critics, negatives, batch_sizes, devices, seeds) to
    lists, or a [train] key (steps or epochs, batch_seeds, precision) to a value; they replace
    the preset's values in every grid, and a budget given here replaces the preset's budget
    whichever way that was given. ``grids`` names the grids to expand: the others are left out,
    and a run that an unselected grid shares carries only the selected grids' labels.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    check_keys(overrides, {*AXES, *TRAIN_KEYS, "grids"}, "overrides")
    tables = preset.grid_tables(quick)
    if "grids" in overrides:
        names = [str(t.get("name", "")) for _, t in tables]
        for name in overrides["grids"]:
            if name not in names:
                raise ConfigError(unknown_name(f"grid of {preset.name}", name, names, "Its grids"))
        chosen = set(overrides.pop("grids"))
        tables = [(w, t) for w, t in tables if str(t.get("name", "")) in chosen]
    if not tables:
        raise ConfigError(f"{preset.path.name}: no grid to run (an empty [[{'quick' if quick else 'grid'}]] list "
                          "or --grids); give at least one")
    budget = {"steps", "epochs"} & set(overrides)
    train = {k: v for k, v in preset.train.items() if not (budget and k in ("steps", "epochs"))}
    checker = _Checker()
    specs: list[RunSpec] = []
    for where, table in tables:
        grid = {k: v for k, v in table.items() if not (budget and k in ("steps", "epochs"))}
        specs += _expand_grid(preset, {**grid, **overrides}, train, where, checker)
    return merge_duplicates(specs)


def merge_duplicates(specs: list[RunSpec]) -> list[RunSpec]:
    """One spec per run id, in first-seen order, carrying the labels of every grid it was in;
    it keeps its model when any of them asks to."""
    merged: dict[str, RunSpec] = {}
    for s in specs:
        first = merged.get(s.run_id)
        if first is None:
            merged[s.run_id] = s
            continue
        grids = first.grids + tuple(g for g in s.grids if g not in first.grids)
        merged[s.run_id] = dataclasses.replace(first, grids=grids, save_model=first.save_model or s.save_model)
    return list(merged.values())


def groups(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Runs that train together: with batch_seeds, the seeds of one configuration; else one each."""
    out: dict[str, list[RunSpec]] = {}
    for s in specs:
        key = s.run_id
        if s.batch_seeds:
            key = json.dumps({**s.identity(), "seed": None}, sort_keys=True, default=str)
        out.setdefault(key, []).append(s)
    return list(out.values())


# --------------------------------------------------------------------------------------------
# The plan


def device_available(device: str) -> bool:
    kind = torch.device(device).type
    if kind == "cuda":
        index = torch.device(device).index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return True


@dataclass
class Plan:
    """preset: the preset planned; out_dir: its results folder; specs: every run of the sweep on
    the devices present; todo: the groups still to run; n_done: runs already recorded; absent:
    runs skipped per absent device."""

    preset: Preset
    out_dir: Path
    specs: list[RunSpec]
    todo: list[list[RunSpec]]
    n_done: int
    absent: dict[str, int]

    @property
    def n_todo(self) -> int:
        return sum(len(g) for g in self.todo)


def plan_sweep(task: str | Preset, *, quick: bool = False, overrides: Mapping[str, Any] | None = None,
               out: str | Path | None = None, force: bool = False, here: bool = True) -> Plan:
    """Expand ``task`` (a preset name, path or Preset) and subtract the runs ``out`` holds.

    ``here``: the runs will execute on this machine, so runs on devices absent here are left
    out (with a warning). A cluster executor plans with ``here=False``: its workers decide.
    Raises ConfigError for any bad value, and when no device of the sweep is present here.
    """
    preset = task if isinstance(task, Preset) else load_preset(task)
    specs = expand(preset, quick=quick, overrides=overrides)
    absent: dict[str, int] = {}
    for s in specs if here else []:
        if not device_available(s.device):
            absent[s.device] = absent.get(s.device, 0) + 1
    if specs and len(absent) == len({s.device for s in specs}):
        raise ConfigError(f"device {', '.join(sorted(absent))} is not available here, and this sweep has no "
                          "other; allowed here: cpu" + (", cuda" if torch.cuda.is_available() else ""))
    present = [s for s in specs if s.device not in absent]
    out_dir = Path(out) if out else default_out_dir(preset.name)
    done = set() if force else {upgrade_row(r)["run_id"] for r in load_rows(out_dir)
                                if r.get("status") in FINISHED}
    todo = [s for s in present if s.run_id not in done]
    return Plan(preset, out_dir, present, groups(todo), len(present) - len(todo), absent)
