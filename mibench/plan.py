"""Planning a sweep: preset + overrides + what the results folder holds -> the runs still to do.

``expand`` turns a preset's grids into ``RunSpec``s, checking every value of every axis (task
parameters and staircase levels by building the tasks, which reads no data; estimator specs by
building each distinct estimator on the meta device), so a bad value is one ConfigError before
any run starts. A grid of sample estimators (``estimators = [...]``) is the exception: their
names and options are checked by each run, so an unknown one is that run's error row (as is
another library's unknown bound name). ``plan_sweep`` adds the results folder: the runs
recorded there are done, the rest are grouped into what trains together. Executing a plan is ``mibench.runner``'s job.

What one run is, and its id, is ``mibench.runspec``'s; the checks of a grid's values are
``mibench.presets``'.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .bounds import bound_options
from .distributions import TASK_FAMILIES
from .estimators import EstimatorSpec, estimator_for
from .interface import ConfigError, check_keys
from .presets import (AXES, TRAIN_KEYS, Preset, as_list, budget, check_axes, check_nonempty, estimator_keys,
                      eval_options, load_preset, train_options)
from .registry import unknown_name
from .results import FINISHED, default_out_dir, load_rows
from .runspec import RunSpec, upgrade_row
from .sample import SAMPLE_ESTIMATORS, SampleSpec, sample_options

# --------------------------------------------------------------------------------------------
# Expanding a preset


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


def _expand_grid(preset: Preset, grid: Mapping[str, Any], train: dict[str, Any], where: str,
                 checker: _Checker) -> list[RunSpec]:
    train = {**train, **{k: v for k, v in grid.items() if k in TRAIN_KEYS}}
    est_keys = estimator_keys()
    est_base = {**preset.estimator, **{k: v for k, v in grid.items() if k in est_keys}}
    task_axes = grid.get("task", {})
    check_keys(task_axes, TASK_FAMILIES[preset.family].parameters(), f"{where} task")
    axes = {
        "bound": as_list(grid.get("bounds", est_base.get("bound", "infonce"))),
        "critic": as_list(grid.get("critics", est_base.get("critic", "separable"))),
        "negatives": as_list(grid.get("negatives", est_base.get("negatives", "all"))),
        "batch_size": as_list(grid.get("batch_sizes", train.get("batch_size", 128))),
        "device": as_list(grid.get("devices", "cpu")),
        "seed": as_list(grid.get("seeds", 0)),
    }
    check_axes(axes, where)
    options = train_options(train, where)
    task_lists = {k: as_list(v) for k, v in task_axes.items()}
    check_nonempty({f"task {k}": v for k, v in task_lists.items()}, where)
    if "estimators" in grid:
        return _expand_sample_grid(preset, grid, options, axes, task_lists, where, checker)
    # A bound option given as a list (tau = [1.0, 5.0, inf]) is one more axis; bounds without
    # that option ignore it, and their duplicate runs are merged by ``merge_duplicates``.
    option_lists = {k: list(v) for k, v in est_base.items() if k in bound_options() and isinstance(v, (list, tuple))}
    check_nonempty(option_lists, where)
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
            ev = eval_options(preset.eval, cell["batch_size"], options["n_samples"], options["n_samples"])
            est.n_negatives(ev["batch_size"])
            steps, epochs = budget(train, preset.family, params, cell["batch_size"], where)
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
    names = [str(v) for v in as_list(grid["estimators"])]
    check_nonempty({"estimators": names}, where)
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
