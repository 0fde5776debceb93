"""What an executor is, the registry of them, and the options a sweep is executed with.

An executor takes a ``WorkOrder`` (the run groups still to train and the results folder) and
has ``work`` run it somewhere: in this process, in worker processes, in cluster jobs. Every
executor hands its workers the same order and the same ``work`` function, so claims, resumes
and rows are the same whichever runs them; an executor only decides the processes.

A new executor is a class with the attributes and methods of ``Executor``, registered under a
name in ``EXECUTORS`` (``EXECUTORS.register("mine", Mine())``, or the entry point group
``mibench.executors``); ``mibench.testing.check_executor`` is its contract.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..interface import ConfigError
from ..registry import Registry

if TYPE_CHECKING:
    from ..plan import Plan
    from .worker import WorkOrder


@runtime_checkable
class Executor(Protocol):
    """Who runs a plan's groups, and where.

    ``here``: the runs train on this machine, so the driver checks here, before anything is
    written, that their data loads and their device exists. ``check`` refuses, with a
    ConfigError of one line and before anything is written, a submission that cannot go
    through (no scheduler, a partition it does not know). ``describe`` is what a dry run prints
    beyond the plan. ``execute`` runs the order (``opts.wait``: returns when every group has
    been run, else once the work is handed over); a group it could not run stays unfinished,
    for the next ``mibench run``.
    """

    here: bool

    def check(self, plan: "Plan", opts: "Options") -> None: ...

    def describe(self, plan: "Plan", opts: "Options") -> str: ...

    def execute(self, order: "WorkOrder", opts: "Options", out_dir: Path) -> None: ...


EXECUTORS: Registry[Executor] = Registry("executor", "mibench.executors")


@dataclass
class Options:
    """How to execute: the executor, its processes and, for SLURM, its resources."""

    executor: str = "inline"
    workers: int | None = None              # local: processes (default: the cores available)
    wait: bool = True                       # False: submit / start, then return
    partition: str | None = None            # SLURM
    time_min: int = 60                      # SLURM time limit of one job, minutes
    gpus: int = 0                           # SLURM GPUs per job
    mem_gb: float | None = None             # SLURM memory per job
    cpus: int = 1                           # SLURM CPUs per task (= torch threads)
    job_minutes: float = 20.0               # SLURM: chunk short runs into jobs of about this long
    array_parallelism: int = 256
    extra: dict[str, Any] = field(default_factory=dict)   # more sbatch options, e.g. {"account": "x"}
    dry_run: bool = False                   # plan and show what would run; train nothing

    def __post_init__(self):
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown executor {self.executor!r}; allowed: {', '.join(EXECUTORS)}")
        for key in ("workers", "time_min", "gpus", "mem_gb", "cpus", "job_minutes", "array_parallelism"):
            value, whole = getattr(self, key), key not in ("mem_gb", "job_minutes")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0 or (value == 0 and key != "gpus")
                                      or (whole and value != int(value))):
                kind = ("a whole number" if whole else "a finite number") + (" >= 0" if key == "gpus" else " > 0")
                raise ConfigError(f"executor option {key} must be {kind}, got {value!r}")
        if not isinstance(self.extra, dict):
            raise ConfigError(f"[slurm] extra must be a table of sbatch options, got {self.extra!r}")


OPTION_KEYS = [k for k in Options.__dataclass_fields__ if k != "executor"]
