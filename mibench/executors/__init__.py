"""Executors: who runs a plan's run groups, and where.

Every executor hands the same ``WorkOrder`` (the groups to run, the results folder) to the same
``work`` function; only the processes differ:

* ``inline``: in this process (the default);
* ``local``: N worker processes on this machine (default: one per core of the CPU affinity),
  one torch thread each (``mibench.executors.local``);
* ``slurm``: submitit job arrays on a SLURM cluster, short runs chunked into jobs of about
  ``job_minutes``; ``submitit-local`` and ``submitit-debug`` run the same jobs as local
  processes or in this process (``mibench.executors.cluster``).

SIGTERM, or SIGINT, stops a sweep cleanly (``stop_on_signals``): claims are released, local
workers stopped, and the runs finished so far merged.

Workers claim each group before training it (``mibench.store``), so any number of workers and
drivers can share a folder: a run is trained once, and a worker that dies leaves its claim to be
taken over. Each finished run is a record of its own until a merge moves it into runs.jsonl.

The package's floors, each importing only those below it: ``signals``, then ``base`` (the
``Executor`` protocol, the ``EXECUTORS`` registry, ``Options``), ``worker`` (``WorkOrder``,
``work``) and ``costs``, then ``local`` and ``cluster`` side by side, then this module (the
public ``run_plan``, ``sweep``, ``status``), which registers the built-in executors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Mapping

from ..interface import ConfigError
from ..layout import Folder
from .base import EXECUTORS, OPTION_KEYS, Executor, Options
from .cluster import Cluster
from .local import Inline, Local
from .signals import Stopped, stop_on_signals
from .worker import WorkOrder, work

__all__ = ["EXECUTORS", "Executor", "OPTION_KEYS", "Options", "Stopped", "WorkOrder", "read_plan", "run_plan",
           "status", "stop_on_signals", "sweep", "work"]

log = logging.getLogger(__name__)

EXECUTORS.register("inline", Inline())
EXECUTORS.register("local", Local())
EXECUTORS.register("slurm", Cluster("slurm"))
EXECUTORS.register("submitit-local", Cluster("local"))
EXECUTORS.register("submitit-debug", Cluster("debug"))


def run_plan(plan, opts: Options, *, data_dir: str | None = None, threads: int | None = None,
             progress: bool = True, force: bool = False) -> str | None:
    """Hand the plan's groups to the executor, after checking that the folder can be written.
    With ``opts.wait`` (the default) it returns when every run is finished and merged. Returns
    the sweep id (None for a dry run). SIGTERM or SIGINT stop the sweep (``Stopped``): workers
    are stopped, claims released, and the runs finished so far merged."""
    from ..atomic import write_durable
    from ..store import Store, StoreError

    executor = EXECUTORS[opts.executor]
    for device, n in plan.absent.items():
        log.warning("device %s not available here; skipping its %d runs", device, n)
    if plan.n_done:
        log.warning("%d of %d runs already in %s; running the other %d (--force redoes them)",
                    plan.n_done, len(plan.specs), plan.out_dir, plan.n_todo)
    if opts.dry_run:
        print(f"{plan.preset.name}: {len(plan.specs)} runs planned, {plan.n_done} already in {plan.out_dir}, "
              f"{plan.n_todo} to run in {len(plan.todo)} groups ({opts.executor})")
        text = executor.describe(plan, opts)
        if text:
            print(text)
        return None
    if plan.todo and executor.here:
        from ..runner import Workspace

        Workspace(data_dir).load_data([g[0] for g in plan.todo])     # a data problem: one line, nothing written
    executor.check(plan, opts)                # a submission that cannot go through: one line, nothing written
    store = Store(plan.out_dir)
    store.check_writable()
    sweep_id = uuid.uuid4().hex[:12]
    write_durable(Folder(plan.out_dir).plan, json.dumps({
        "sweep_id": sweep_id, "preset": plan.preset.name, "executor": opts.executor,
        "planned": [s.run_id for s in plan.specs], "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}), StoreError)
    store.merge()
    if not plan.todo:
        return sweep_id
    order = WorkOrder(str(plan.out_dir), [[s.to_dict() for s in g] for g in plan.todo], sweep_id, force,
                      data_dir, threads, progress and executor.here)
    try:
        with stop_on_signals():
            executor.execute(order, opts, plan.out_dir)
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
    from ..interface import check_keys
    from ..plan import plan_sweep
    from ..presets import Preset, load_preset
    from ..results import iter_rows, load_rows, to_frame
    from ..runspec import upgrade_row

    preset = task if isinstance(task, Preset) else load_preset(task)
    given = dict(executor_options or {})
    check_keys(given, OPTION_KEYS, "executor options")
    opts = Options(executor, **{**preset.slurm, **given})
    plan = plan_sweep(preset, quick=quick, overrides=overrides, out=out, force=force,
                      here=EXECUTORS[opts.executor].here)
    sweep_id = run_plan(plan, opts, data_dir=data_dir, threads=threads, progress=progress, force=force)
    ids = {s.run_id for s in plan.specs}
    rows = [r for r in map(upgrade_row, load_rows(plan.out_dir)) if r["run_id"] in ids]
    if force and sweep_id:               # a forced run shows what it did now, an error included
        this = {r["run_id"]: r for r in iter_rows(plan.out_dir) if r.get("sweep_id") == sweep_id}
        rows = [this.get(r["run_id"], r) for r in rows]
    return to_frame(rows)


def read_plan(out_dir: str | os.PathLike) -> dict[str, Any] | None:
    """DIR/plan.json (the last sweep planned there), or None when there is none; one that is not
    a plan (does not parse, wrong-typed or missing fields) is reported and read as none."""
    path = Folder(out_dir).plan
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
    from ..results import FINISHED, load_rows, pending_records
    from ..runspec import upgrade_row
    from ..store import Store

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
        lines.append(f"{out}: no sweep planned here " + ("(plan.json is not a plan)" if Folder(out).plan.exists() else "yet"))
    lines.append(f"  rows in the folder: {len(rows)} ({sum(r['status'] in FINISHED for r in rows.values())} "
                 f"finished), {pending} not merged yet")
    for run_id, worker in sorted(running.items()):
        lines.append(f"  running {run_id} on {worker}")
    return "\n".join(lines)
