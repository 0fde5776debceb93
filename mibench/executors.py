"""Executors: who runs a plan's run groups, and where.

Every executor hands the same ``WorkOrder`` (the groups to run, the results folder) to the same
``work`` function; only the processes differ:

* ``inline``: in this process (the default);
* ``local``: N worker processes on this machine (default: one per core of the CPU affinity),
  one torch thread each;
* ``slurm``: submitit job arrays on a SLURM cluster, short runs chunked into jobs of about
  ``job_minutes``; ``submitit-local`` and ``submitit-debug`` run the same jobs as local
  processes or in this process (how the SLURM path is tested without a cluster).

Workers claim each group before training it (``mibench.store``), so any number of workers and
drivers can share a folder: a run is trained once, and a worker that dies leaves its claim to be
taken over. Each finished run is a record of its own until a merge moves it into runs.jsonl.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
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
        from .store import _write_atomic, _writing

        with _writing(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, json.dumps(asdict(self)))
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
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
                                      or (value == 0 and key not in ("gpus",))):
                raise ConfigError(f"executor option {key} must be a positive number, got {value!r}")
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


def _local(order: WorkOrder, opts: Options, out_dir: Path) -> None:
    """N worker processes, one torch thread each, logs in DIR/logs/; detached with no wait."""
    n = max(1, min(opts.workers or available_cores(), sum(map(len, order.groups)) or 1))
    path = order.save(out_dir / ORDERS_DIR / f"{order.sweep_id}.json")
    (out_dir / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    procs = []
    for i in range(n):
        logfile = open(out_dir / LOGS_DIR / f"{order.sweep_id}-{i}.log", "w")
        procs.append((subprocess.Popen([sys.executable, "-m", "mibench.executors", str(path)],
                                       stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=not opts.wait,
                                       env={**os.environ, "PYTHONUNBUFFERED": "1"}), logfile))
    if not opts.wait:
        print(f"started {n} workers (logs in {out_dir / LOGS_DIR}); `mibench status {out_dir}` follows them")
        return
    _follow(order, out_dir, lambda: sum(p.poll() is None for p, _ in procs))
    failed = []
    for i, (p, logfile) in enumerate(procs):
        logfile.close()
        if p.wait() != 0:
            lines = (out_dir / LOGS_DIR / f"{order.sweep_id}-{i}.log").read_text().strip().splitlines()
            failed.append(lines[-1] if lines else f"exit status {p.returncode}")
    if failed:
        from .store import FinishedIndex

        ids = order.run_ids()
        left = len(ids) - FinishedIndex(out_dir, order.sweep_id if order.force else None).count(ids)
        if left:
            raise ConfigError(f"{len(failed)} of {n} workers failed and {left} runs are unfinished; "
                              f"the first said: {failed[0]}")
        log.warning("%d of %d workers failed (the others finished their runs); the first said: %s",
                    len(failed), n, failed[0])


def _follow(order: WorkOrder, out_dir: Path, alive) -> None:
    """Wait while workers run, with a progress bar over the order's runs."""
    from .store import FinishedIndex

    ids = order.run_ids()
    index = FinishedIndex(out_dir, order.sweep_id if order.force else None)
    bar = None
    if order.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(ids), desc="runs", unit="run", dynamic_ncols=True, disable=None)
    while alive():
        if bar is not None:
            bar.n = index.count(ids)
            bar.refresh()
        time.sleep(POLL_S / 4)
    if bar is not None:
        bar.n = index.count(ids)
        bar.close()


def run_plan(plan, opts: Options, *, data_dir: str | None = None, threads: int | None = None,
             progress: bool = True, force: bool = False) -> None:
    """Hand the plan's groups to the executor, after checking that the folder can be written.
    With ``opts.wait`` (the default) it returns when every run is finished and merged."""
    from .store import Store, _write_atomic

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
        return
    if plan.todo and opts.executor in ("inline", "local"):
        from .runner import Workspace

        Workspace(data_dir).load_data([g[0] for g in plan.todo])     # a data problem: one line, nothing written
    store = Store(plan.out_dir)
    store.check_writable()
    sweep_id = uuid.uuid4().hex[:12]
    _write_atomic(plan.out_dir / PLAN_FILE, json.dumps({
        "sweep_id": sweep_id, "preset": plan.preset.name, "executor": opts.executor,
        "planned": [s.run_id for s in plan.specs], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
    store.merge()
    if not plan.todo:
        return
    order = WorkOrder(str(plan.out_dir), [[s.to_dict() for s in g] for g in plan.todo], sweep_id, force,
                      data_dir, threads if opts.executor == "inline" else (threads or 1),
                      progress and opts.executor == "inline")
    if opts.executor == "inline":
        _inline(order, opts)
    elif opts.executor == "local":
        from .cluster import estimate_seconds

        seconds = estimate_seconds(plan.out_dir)         # longest first (as far as the folder's
        order.groups.sort(key=seconds, reverse=True)    # finished runs tell): less idling at the end
        order.progress = progress
        _local(order, opts, plan.out_dir)
    else:
        from .cluster import submit

        submit(order, opts, plan.out_dir)
    if opts.wait:
        store.merge()


def sweep(task: str = "gaussian", *, quick: bool = False, out: str | os.PathLike | None = None,
          force: bool = False, data_dir: str | None = None, threads: int | None = None,
          progress: bool = True, overrides: Mapping[str, Any] | None = None,
          executor: str = "inline", executor_options: Mapping[str, Any] | None = None):
    """Plan a preset's sweep, run what ``out`` does not hold yet, and return the sweep's rows
    (those of its runs on the devices it covers, old and new) as a pandas DataFrame.

    ``overrides``: bounds, critics, negatives, batch_sizes, devices, seeds (lists), steps or
    epochs (numbers), batch_seeds (bool) and precision, replacing the preset's values.
    ``executor``: a name in EXECUTORS; ``executor_options``: fields of ``Options``, over the
    preset's [slurm] table.
    """
    from .interface import check_keys
    from .plan import plan_sweep, upgrade_row
    from .presets import Preset, load_preset
    from .results import load_rows, to_frame

    preset = task if isinstance(task, Preset) else load_preset(task)
    given = dict(executor_options or {})
    check_keys(given, OPTION_KEYS, "executor options")
    opts = Options(executor, **{**preset.slurm, **given})
    plan = plan_sweep(preset, quick=quick, overrides=overrides, out=out, force=force,
                      here=opts.executor in ("inline", "local"))
    run_plan(plan, opts, data_dir=data_dir, threads=threads, progress=progress, force=force)
    ids = {s.run_id for s in plan.specs}
    return to_frame([r for r in map(upgrade_row, load_rows(plan.out_dir)) if r["run_id"] in ids])


def _main(argv: list[str]) -> int:
    """A worker process of the local executor: ``python -m mibench.executors ORDER.json``."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        n = work(WorkOrder.load(argv[0]))
    except ConfigError as exc:
        print(f"mibench worker: error: {exc}", flush=True)
        return 2
    print(f"mibench worker: trained {n} runs", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))


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
    plan_path = out / PLAN_FILE
    lines = []
    if plan_path.is_file():
        plan = json.loads(plan_path.read_text())
        ids = plan["planned"]
        done = sum(rows.get(i, {}).get("status") in FINISHED for i in ids)
        failed = sum(rows.get(i, {}).get("status") == "error" for i in ids)
        busy = sum(i in running for i in ids)
        lines.append(f"{out}: sweep {plan['sweep_id']} of preset {plan['preset']} ({plan['executor']}, "
                     f"planned {plan['created']})")
        lines.append(f"  planned {len(ids)}   done {done}   failed {failed}   running {busy}   "
                     f"waiting {len(ids) - done - failed - busy}")
    else:
        lines.append(f"{out}: no sweep planned here yet")
    lines.append(f"  rows in the folder: {len(rows)} ({sum(r['status'] in FINISHED for r in rows.values())} "
                 f"finished), {pending} not merged yet")
    for run_id, worker in sorted(running.items()):
        lines.append(f"  running {run_id} on {worker}")
    return "\n".join(lines)
