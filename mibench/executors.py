"""Executors: who runs a plan's run groups, and where.

Every executor hands the same ``WorkOrder`` (the groups to run, the results folder) to the same
``work`` function; only the processes differ:

* ``inline``: in this process (the default);
* ``local``: N worker processes on this machine (default: one per core of the CPU affinity),
  one torch thread each (``mibench.local``);
* ``slurm``: submitit job arrays on a SLURM cluster, short runs chunked into jobs of about
  ``job_minutes``; ``submitit-local`` and ``submitit-debug`` run the same jobs as local
  processes or in this process (how the SLURM path is tested without a cluster;
  ``mibench.cluster``).

SIGTERM, or SIGINT, stops a sweep cleanly (``mibench.local.stop_on_signals``): claims are
released, local workers stopped, and the runs finished so far merged.

Workers claim each group before training it (``mibench.store``), so any number of workers and
drivers can share a folder: a run is trained once, and a worker that dies leaves its claim to be
taken over. Each finished run is a record of its own until a merge moves it into runs.jsonl.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .interface import ConfigError

log = logging.getLogger(__name__)

EXECUTORS = ("inline", "local", "slurm", "submitit-local", "submitit-debug")
ORDERS_DIR = "orders"
LOGS_DIR = "logs"
PLAN_FILE = "plan.json"
POLL_S = 2.0


@dataclass
class WorkOrder:
    """What a worker needs, as plain values (it crosses process and machine boundaries)."""

    out_dir: str
    groups: list[list[dict[str, Any]]]          # RunSpec.to_dict() of each run, by group
    sweep_id: str
    force: bool = False
    data_dir: str | None = None
    threads: int | None = None
    progress: bool = False

    def save(self, path: Path) -> Path:
        from .atomic import failing_as, write_durable
        from .store import StoreError

        with failing_as(path.parent, StoreError):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_durable(path, json.dumps(asdict(self)), StoreError)
        return path

    def run_ids(self) -> list[str]:
        from .plan import RunSpec

        return [RunSpec.from_dict(d).run_id for g in self.groups for d in g]

    @classmethod
    def load(cls, path: str | os.PathLike) -> "WorkOrder":
        return cls(**json.loads(Path(path).read_text()))


def work(order: WorkOrder) -> int:
    """Run the order's groups that no one has finished or is running, claiming each first;
    then wait for the groups other workers hold, taking over those whose worker died. Returns
    the number of runs this worker trained. Merges the records at the end."""
    import torch

    from .cpu import default_threads
    from .plan import RunSpec, device_available
    from .runner import Workspace, run_group
    from .store import FinishedIndex, Store, worker_name

    store = Store(order.out_dir)
    index = FinishedIndex(order.out_dir, order.sweep_id if order.force else None)
    groups = [[RunSpec.from_dict(d) for d in g] for g in order.groups]
    torch.set_num_threads(order.threads or default_threads())
    workspace = Workspace(order.data_dir, Path(order.out_dir), order.progress)
    trained = 0
    remaining = groups
    bar = None
    if order.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(map(len, groups)), unit="run", dynamic_ncols=True, disable=None)
    while remaining:
        held_elsewhere = []
        for group in remaining:
            ids = [s.run_id for s in group]
            if index.count(ids) == len(ids):
                continue
            claim = store.claim(ids[0])
            if claim is None:
                held_elsewhere.append(group)
                continue
            with claim:
                if index.count(ids) == len(ids):         # finished while we were claiming
                    continue
                if not device_available(group[0].device):
                    log.warning("device %s not available on %s; its runs are left for another worker",
                                group[0].device, worker_name())
                    continue
                workspace.load_data(group[:1])
                for row, trace in run_group(group, workspace, order.sweep_id):
                    store.put(row.to_dict(), trace)
                    trained += 1
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(last=f"{row.bound} {row.mi_estimate or math.nan:.3f}"
                                             f"/{row.mi_true or math.nan:.3f}")
        if held_elsewhere:
            time.sleep(POLL_S)
        remaining = held_elsewhere
    if bar is not None:
        bar.close()
    store.merge()
    return trained


# --------------------------------------------------------------------------------------------
# Executors


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


def available_cores() -> int:
    """Cores this process may use: SLURM's allocation, else the CPU affinity, else cpu_count."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _inline(order: WorkOrder, opts: Options) -> None:
    work(order)


def run_plan(plan, opts: Options, *, data_dir: str | None = None, threads: int | None = None,
             progress: bool = True, force: bool = False) -> str | None:
    """Hand the plan's groups to the executor, after checking that the folder can be written.
    With ``opts.wait`` (the default) it returns when every run is finished and merged. Returns
    the sweep id (None for a dry run). SIGTERM or SIGINT stop the sweep (``Stopped``): workers
    are stopped, claims released, and the runs finished so far merged."""
    from .local import stop_on_signals
    from .atomic import write_durable
    from .store import Store, StoreError

    for device, n in plan.absent.items():
        log.warning("device %s not available here; skipping its %d runs", device, n)
    if plan.n_done:
        log.warning("%d of %d runs already in %s; running the other %d (--force redoes them)",
                    plan.n_done, len(plan.specs), plan.out_dir, plan.n_todo)
    if opts.dry_run:
        print(f"{plan.preset.name}: {len(plan.specs)} runs planned, {plan.n_done} already in {plan.out_dir}, "
              f"{plan.n_todo} to run in {len(plan.todo)} groups ({opts.executor})")
        if plan.todo and opts.executor == "slurm":
            from .cluster import chunk, estimate_seconds, sbatch_script

            groups = [[s.to_dict() for s in g] for g in plan.todo]
            n = len(chunk(groups, estimate_seconds(plan.out_dir), opts.job_minutes * 60))
            print(f"{n} SLURM jobs of about {opts.job_minutes:g} minutes; the sbatch script:\n")
            print(sbatch_script(opts, plan.out_dir, n))
        return None
    if plan.todo and opts.executor in ("inline", "local"):
        from .runner import Workspace

        Workspace(data_dir).load_data([g[0] for g in plan.todo])     # a data problem: one line, nothing written
    if plan.todo and opts.executor == "slurm":
        from .cluster import check_submission

        check_submission(plan, opts)          # no sbatch, or it refuses the array: one line, nothing written
    store = Store(plan.out_dir)
    store.check_writable()
    sweep_id = uuid.uuid4().hex[:12]
    write_durable(plan.out_dir / PLAN_FILE, json.dumps({
        "sweep_id": sweep_id, "preset": plan.preset.name, "executor": opts.executor,
        "planned": [s.run_id for s in plan.specs], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}), StoreError)
    store.merge()
    if not plan.todo:
        return sweep_id
    order = WorkOrder(str(plan.out_dir), [[s.to_dict() for s in g] for g in plan.todo], sweep_id, force,
                      data_dir, threads if opts.executor == "inline" else (threads or 1),
                      progress and opts.executor == "inline")
    try:
        with stop_on_signals():
            if opts.executor == "inline":
                _inline(order, opts)
            elif opts.executor == "local":
                from .cluster import estimate_seconds
                from .local import run_local

                seconds = estimate_seconds(plan.out_dir)         # longest first (as far as the folder's
                order.groups.sort(key=seconds, reverse=True)    # finished runs tell): less idling at the end
                order.progress = progress
                run_local(order, opts, plan.out_dir)
            else:
                from .cluster import submit

                submit(order, opts, plan.out_dir)
    except KeyboardInterrupt:            # stopped: what finished goes into runs.jsonl on the way out
        with contextlib.suppress(ConfigError, KeyboardInterrupt):
            store.merge()
        raise
    if opts.wait:
        store.merge()
    return sweep_id


def sweep(task: str = "gaussian", *, quick: bool = False, out: str | os.PathLike | None = None,
          force: bool = False, data_dir: str | None = None, threads: int | None = None,
          progress: bool = True, overrides: Mapping[str, Any] | None = None,
          executor: str = "inline", executor_options: Mapping[str, Any] | None = None):
    """Plan a preset's sweep, run what ``out`` does not hold yet, and return the sweep's rows
    (those of its runs on the devices it covers, old and new) as a pandas DataFrame. With
    ``force``, a redone run's row is the one this sweep recorded (an error included).

    ``overrides``: bounds, critics, negatives, batch_sizes, devices, seeds (lists), steps or
    epochs (numbers), batch_seeds (bool) and precision, replacing the preset's values.
    ``executor``: a name in EXECUTORS; ``executor_options``: fields of ``Options``, over the
    preset's [slurm] table.
    """
    from .interface import check_keys
    from .plan import plan_sweep, upgrade_row
    from .presets import Preset, load_preset
    from .results import iter_rows, load_rows, to_frame

    preset = task if isinstance(task, Preset) else load_preset(task)
    given = dict(executor_options or {})
    check_keys(given, OPTION_KEYS, "executor options")
    opts = Options(executor, **{**preset.slurm, **given})
    plan = plan_sweep(preset, quick=quick, overrides=overrides, out=out, force=force,
                      here=opts.executor in ("inline", "local"))
    sweep_id = run_plan(plan, opts, data_dir=data_dir, threads=threads, progress=progress, force=force)
    ids = {s.run_id for s in plan.specs}
    rows = [r for r in map(upgrade_row, load_rows(plan.out_dir)) if r["run_id"] in ids]
    if force and sweep_id:               # a forced run shows what it did now, an error included
        this = {r["run_id"]: r for r in iter_rows(plan.out_dir) if r.get("sweep_id") == sweep_id}
        rows = [this.get(r["run_id"], r) for r in rows]
    return to_frame(rows)


def _main(argv: list[str]) -> int:
    """A worker process of the local executor: ``python -m mibench.executors ORDER.json``.
    SIGTERM or SIGINT stop it cleanly: the run in training is dropped, its claim released."""
    from .local import stop_on_signals

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        with stop_on_signals():
            n = work(WorkOrder.load(argv[0]))
    except ConfigError as exc:
        print(f"mibench worker: error: {exc}", flush=True)
        return 2
    except KeyboardInterrupt as exc:
        print(f"mibench worker: {str(exc) or 'interrupted'}; its finished runs are saved", flush=True)
        return 128 + getattr(exc, "signum", signal.SIGINT)
    print(f"mibench worker: trained {n} runs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


def read_plan(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """DIR/plan.json (the last sweep planned there), or None when there is none; one that is not
    a plan (does not parse, wrong-typed or missing fields) is reported and read as none."""
    path = Path(out_dir) / PLAN_FILE
    if not path.is_file():
        return None
    try:
        plan = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        plan = None
    fields = ("sweep_id", "preset", "executor", "created")
    if (not isinstance(plan, dict) or not all(isinstance(plan.get(k), str) for k in fields)
            or not isinstance(plan.get("planned"), list) or not all(isinstance(i, str) for i in plan["planned"])):
        log.warning("%s: skipping it, not a sweep plan (a JSON object with %s and planned)", path, ", ".join(fields))
        return None
    return plan


def status(out_dir: str | os.PathLike) -> str:
    """What ``mibench status DIR`` prints: the last sweep planned in DIR and where its runs are."""
    from .plan import upgrade_row
    from .results import FINISHED, load_rows, pending_records
    from .store import Store

    out = Path(out_dir)
    if not out.is_dir():
        raise ConfigError(f"{out}: no such results folder")
    rows = {r["run_id"]: r for r in map(upgrade_row, load_rows(out))}
    running = Store(out).running()
    pending = len(pending_records(out))
    plan = read_plan(out)
    lines = []
    if plan is not None:
        ids = plan["planned"]
        done = sum(rows.get(i, {}).get("status") in FINISHED for i in ids)
        failed = sum(rows.get(i, {}).get("status") == "error" for i in ids)
        busy = sum(i in running for i in ids)
        waiting = sum(i not in running and rows.get(i, {}).get("status") not in (*FINISHED, "error") for i in ids)
        lines.append(f"{out}: sweep {plan['sweep_id']} of preset {plan['preset']} ({plan['executor']}, "
                     f"planned {plan['created']})")
        lines.append(f"  planned {len(ids)}   done {done}   failed {failed}   running {busy}   waiting {waiting}")
    else:
        lines.append(f"{out}: no sweep planned here " + ("(plan.json is not a plan)" if (out / PLAN_FILE).exists() else "yet"))
    lines.append(f"  rows in the folder: {len(rows)} ({sum(r['status'] in FINISHED for r in rows.values())} "
                 f"finished), {pending} not merged yet")
    for run_id, worker in sorted(running.items()):
        lines.append(f"  running {run_id} on {worker}")
    return "\n".join(lines)
