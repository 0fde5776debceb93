"""The SLURM executor through submitit: job arrays, short runs packed into jobs of minutes.

``submitit-local`` and ``submitit-debug`` run the same jobs as local processes or in this
process, which is how the SLURM path is tested without a cluster (tests/test_slurm.py runs it
against a real single-node SLURM).

* Before anything is written to the results folder, ``check_submission`` asks ``sbatch
  --test-only`` whether the cluster would take the job array: a missing ``sbatch``, an unknown
  partition or more memory than a node has is one line and nothing written.
* Each job runs ``work`` on its chunk. On SLURM's time-limit or preemption signal (USR2),
  submitit checkpoints it and requeues the job with the same chunk: its finished runs are
  skipped, so the requeued job trains only the rest. SIGTERM (scancel) stops it at once.
* The driver waits on the jobs' result files and on ``squeue``, never on ``sacct``: clusters
  without an accounting database (sacct fails) work the same, and a job that ends without a
  result (cancelled, timed out, its node failed) is reported instead of waited on forever.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..interface import ConfigError
from ..layout import Folder
from .base import Options
from .costs import chunk, estimate_seconds
from .signals import Stopped, stop_on_signals
from .worker import WorkOrder, work

log = logging.getLogger(__name__)

POLL_S = 2.0                # the driver looks for the jobs' result files this often
SQUEUE_MAX_S = 60.0         # ... and asks squeue at least this often
RESULT_GRACE_S = 10.0       # a job gone from the queue without a result file is lost after this
SBATCH_TIMEOUT_S = 60.0
# squeue states of a job that will not run again (absent from squeue counts as ended too)
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL",
         "DEADLINE", "OUT_OF_MEMORY"}


def submitit_executor(order: WorkOrder, opts: Options, out_dir: Path, cluster: str = "slurm"):
    """A submitit AutoExecutor for the order, its parameters set from ``opts``; ``cluster`` is
    submitit's: "slurm", "local" or "debug"."""
    import submitit

    executor = submitit.AutoExecutor(folder=Folder(out_dir).submitit / "%j", cluster=cluster)
    params: dict[str, Any] = {"timeout_min": int(opts.time_min), "cpus_per_task": int(opts.cpus),
                              "name": f"mibench-{order.sweep_id[:8]}"}
    if cluster == "slurm":
        params.update(slurm_array_parallelism=opts.array_parallelism)
        if opts.partition:
            params["slurm_partition"] = opts.partition
        if opts.gpus:
            params["gpus_per_node"] = int(opts.gpus)
        if opts.mem_gb:
            params["mem_gb"] = float(opts.mem_gb)
        params.update({f"slurm_{k}" if not k.startswith("slurm_") else k: v for k, v in opts.extra.items()})
    executor.update_parameters(**params)
    return executor


def sbatch_script(opts: Options, out_dir: Path, n_jobs: int) -> str:
    """The sbatch script submitit writes for an array of ``n_jobs`` jobs with these options."""
    from submitit.slurm.slurm import _make_sbatch_string

    params: dict[str, Any] = {"time": int(opts.time_min), "cpus_per_task": int(opts.cpus),
                              "array_parallelism": opts.array_parallelism, "map_count": n_jobs,
                              "job_name": "mibench", "partition": opts.partition,
                              "gpus_per_node": int(opts.gpus) or None,
                              "mem": f"{opts.mem_gb:g}GB" if opts.mem_gb else None, **opts.extra}
    command = f"{sys.executable} -u -m submitit.core._submit {Folder(out_dir).submitit / '%j'}"
    return _make_sbatch_string(command=command, folder=Folder(out_dir).submitit / "%j",
                               **{k: v for k, v in params.items() if v is not None})


def check_submission(plan, opts: Options) -> None:
    """Ask ``sbatch --test-only`` whether the cluster takes the plan's job array; a missing
    ``sbatch`` or a refusal (unknown partition, more memory or CPUs than a node has) raises a
    ConfigError of one line. Writes nothing."""
    if shutil.which("sbatch") is None:
        raise ConfigError("--executor slurm needs SLURM's sbatch, which is not on PATH (run on the "
                          "cluster's login node, or use --executor local)")
    groups = [[s.to_dict() for s in g] for g in plan.todo]
    n_jobs = len(chunk(groups, estimate_seconds(plan.out_dir), opts.job_minutes * 60))
    asked = (f"partition {opts.partition or '(default)'}, {opts.cpus} CPU(s), {opts.gpus} GPU(s), "
             f"{f'{opts.mem_gb:g} GB' if opts.mem_gb else 'default memory'}, {opts.time_min} min, "
             f"{n_jobs} job{'s' if n_jobs != 1 else ''}")
    try:
        res = subprocess.run(["sbatch", "--test-only"], input=sbatch_script(opts, plan.out_dir, n_jobs),
                             capture_output=True, text=True, timeout=SBATCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"sbatch --test-only did not answer within {SBATCH_TIMEOUT_S:g} s: is the SLURM "
                          "controller up? (`sinfo`)") from None
    if res.returncode != 0:
        lines = [ln.strip().removeprefix("sbatch: error: ") for ln in res.stderr.splitlines() if ln.strip()]
        why = "; ".join(dict.fromkeys(lines)) or f"exit status {res.returncode}"
        raise ConfigError(f"sbatch refuses the job array ({asked}): {why}")


class Worker:
    """What each SLURM job runs: ``work(order)``. Checkpointable: on the time-limit or
    preemption signal submitit requeues the job with the same order (``checkpoint``), whose
    finished runs the requeued job skips. SIGTERM (scancel; SLURM's kill at a time limit or a
    preemption), which submitit would ignore until the SIGKILL that follows, stops the job at
    once (in a SLURM job): the run in training is dropped and its claim released, so a resume
    can take it over without waiting for the claim to go stale; no result is written, so the
    driver sees the job end without one (or, requeued, start again)."""

    def __call__(self, order: WorkOrder) -> int:
        if os.environ.get("SUBMITIT_EXECUTOR") != "slurm":     # submitit-local, submitit-debug
            return work(order)
        try:
            with stop_on_signals():
                return work(order)
        except Stopped as exc:
            log.warning("%s; its finished runs are saved, the others are left to a requeue or a resume", exc)
            raise SystemExit(128 + exc.signum) from None

    def checkpoint(self, order: WorkOrder):
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self, order)


def queue_states(job_ids: list[str]) -> dict[str, str] | None:
    """``{"ARRAY_TASK": STATE}`` for the array tasks of ``job_ids`` that slurmctld still knows
    (``squeue --array``, finished ones included); {} when it knows none of them; None when squeue
    does not answer."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    try:
        res = subprocess.run(["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T",
                              "--jobs", ",".join(arrays)], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0:
        return {} if "Invalid job id" in res.stderr else None
    return dict(line.strip().split("|", 1) for line in res.stdout.splitlines() if "|" in line)


def wait_for(jobs: list) -> list[str]:
    """Wait until every job has a result file or has left the queue without one; returns one
    line per job that failed or ended without a result. Result files are looked at every
    ``POLL_S``, squeue less often as the wait grows (up to every ``SQUEUE_MAX_S``); a job is
    taken as ended when two queries at least ``RESULT_GRACE_S`` apart find it ended."""
    pending = {job.job_id: job for job in jobs}
    ended_at: dict[str, float] = {}
    lost: list[str] = []
    start = next_query = time.time()
    answered = True
    while pending:
        for job_id in [j for j, job in pending.items() if job.paths.result_pickle.exists()]:
            del pending[job_id]
        now = time.time()
        if pending and now >= next_query:
            next_query = now + min(SQUEUE_MAX_S, max(POLL_S, (now - start) / 4))
            states = queue_states(list(pending))
            if states is None and answered:
                log.warning("squeue does not answer; waiting on the jobs' result files only")
            answered = states is not None
            for job_id in list(pending) if states is not None else []:
                state = states.get(job_id, "gone from the queue")
                if state not in ENDED and job_id in states:
                    ended_at.pop(job_id, None)          # queued or running (again, if requeued)
                elif now - ended_at.setdefault(job_id, now) >= RESULT_GRACE_S \
                        and not pending[job_id].paths.result_pickle.exists():
                    lost.append(f"job {job_id} ended ({state}) without finishing its runs")
                    del pending[job_id]
        if pending:
            time.sleep(POLL_S)
    return failures([job for job in jobs if job.paths.result_pickle.exists()]) + lost


def failures(jobs: list) -> list[str]:
    """Waits for each job's result; one line per job whose work raised."""
    errors = []
    for job in jobs:
        try:
            job.result()
        except Exception as exc:                  # a failed job: its runs stay unfinished
            errors.append(f"job {job.job_id}: {str(exc).strip().splitlines()[-1] if str(exc) else exc}")
    return errors


def submit(order: WorkOrder, opts: Options, out_dir: Path, cluster: str = "slurm") -> None:
    """Submit the order as a job array (packed into chunks of about ``opts.job_minutes``) to
    submitit's ``cluster`` and, with ``opts.wait``, wait for the jobs; a failed job leaves its
    runs unfinished."""
    chunks = chunk(order.groups, estimate_seconds(out_dir), opts.job_minutes * 60)
    orders = [WorkOrder(order.out_dir, c, order.sweep_id, order.force, order.data_dir,
                        order.threads or opts.cpus, False) for c in chunks]
    executor = submitit_executor(order, opts, out_dir, cluster)
    try:
        jobs = executor.map_array(Worker(), orders)
    except Exception as exc:                      # sbatch refused after its test: submitit's multi-line error
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        raise ConfigError(f"submitting the job array failed: {lines[-1] if lines else type(exc).__name__}") from None
    array = jobs[0].job_id.split("_")[0] if cluster == "slurm" and jobs else ""
    print(f"submitted {len(jobs)} jobs ({opts.executor}{f' array {array}' if array else ''}; "
          f"{sum(map(len, order.groups))} runs in "
          f"chunks of about {opts.job_minutes:g} minutes); logs in {Folder(out_dir).submitit}")
    if not opts.wait:
        if array:
            print(f"`mibench status {out_dir}` follows them; `scancel {array}` cancels them")
        return
    if cluster == "slurm":
        log.info("waiting for %d SLURM jobs: their result files and squeue (not sacct); "
                 "`mibench status %s` shows the runs", len(jobs), out_dir)
        errors = wait_for(jobs)
    else:
        errors = failures(jobs)
    if errors:
        raise ConfigError(f"{len(errors)} of {len(jobs)} jobs failed, their unfinished runs are left for "
                          f"`mibench run` again; {errors[0]}")


class Cluster:
    """The ``slurm`` executor (submitit's cluster "slurm") and its stand-ins ``submitit-local``
    (cluster "local": the same jobs as local processes) and ``submitit-debug`` ("debug": in
    this process)."""

    here = False            # the jobs load their data where they run

    def __init__(self, submitit: str):
        self.submitit = submitit

    def check(self, plan, opts: Options) -> None:
        if plan.todo and self.submitit == "slurm":
            check_submission(plan, opts)      # no sbatch, or it refuses the array: one line, nothing written

    def describe(self, plan, opts: Options) -> str:
        if not plan.todo or self.submitit != "slurm":
            return ""
        groups = [[s.to_dict() for s in g] for g in plan.todo]
        n = len(chunk(groups, estimate_seconds(plan.out_dir), opts.job_minutes * 60))
        return (f"{n} SLURM jobs of about {opts.job_minutes:g} minutes; the sbatch script:\n\n"
                + sbatch_script(opts, plan.out_dir, n))

    def execute(self, order: WorkOrder, opts: Options, out_dir: Path) -> None:
        submit(order, opts, out_dir, self.submitit)
