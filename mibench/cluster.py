"""The SLURM executor through submitit: job arrays, short runs packed into jobs of minutes.

``submitit-local`` and ``submitit-debug`` run the same jobs as local processes or in this
process, which is how the SLURM path is tested without a cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .executors import Options, WorkOrder, work
from .interface import ConfigError

# Training speed assumed for packing jobs when the folder has no finished run to go by.
DEFAULT_STEPS_PER_S = {"cpu": 100.0, "cuda": 400.0, "mps": 200.0}


def chunk(groups: list[list[dict[str, Any]]], seconds_of, budget_s: float) -> list[list[list[dict]]]:
    """Groups packed in order into chunks of at most ``budget_s`` estimated seconds (a group
    longer than that is a chunk of its own)."""
    chunks, current, used = [], [], 0.0
    for g in groups:
        cost = seconds_of(g)
        if current and used + cost > budget_s:
            chunks.append(current)
            current, used = [], 0.0
        current.append(g)
        used += cost
    if current:
        chunks.append(current)
    return chunks


DEFAULT_SAMPLE_S = 5.0      # seconds assumed for one sample estimator's estimate


def _positive(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    return float(value) if ok else None


def estimate_seconds(out_dir: Path):
    """Seconds a group will take, plus 10 s to start: its steps at the median steps/s the
    folder's finished runs of the same critic and device reached, else ``DEFAULT_STEPS_PER_S``;
    for a sample estimator, the median wall time of the folder's finished runs of the same
    estimator, else ``DEFAULT_SAMPLE_S``, per run."""
    from .results import load_rows

    known: dict[tuple, list[float]] = {}
    for r in load_rows(out_dir):
        if r.get("status") != "ok":
            continue
        if r.get("estimator_kind") == "sample":
            est = r["spec"].get("estimator") if isinstance(r.get("spec"), dict) else None
            name = est.get("name") if isinstance(est, dict) else None
            key, value = ("sample", name, r.get("device")), _positive(r.get("wall_s"))
        else:
            key, value = ("neural", r.get("critic"), r.get("device")), _positive(r.get("steps_per_s"))
        if value is not None and all(isinstance(k, str) for k in key):
            known.setdefault(key, []).append(value)

    def median(key: tuple) -> float | None:
        values = sorted(known.get(key, []))
        return values[len(values) // 2] if values else None

    def seconds(group: list[dict[str, Any]]) -> float:
        s = group[0]
        est = s["estimator"]
        if est.get("kind") == "sample":
            return 10.0 + len(group) * (median(("sample", est["name"], s["device"])) or DEFAULT_SAMPLE_S)
        rate = median(("neural", est["critic"], s["device"])) or DEFAULT_STEPS_PER_S.get(s["device"].split(":")[0], 100.0)
        return 10.0 + s["steps"] * (1 if s.get("batch_seeds") else len(group)) / rate
    return seconds


def submitit_executor(order: WorkOrder, opts: Options, out_dir: Path):
    """A submitit AutoExecutor for the order, its parameters set from ``opts``."""
    import submitit

    cluster = {"slurm": None, "submitit-local": "local", "submitit-debug": "debug"}[opts.executor]
    executor = submitit.AutoExecutor(folder=out_dir / "submitit" / "%j", cluster=cluster)
    params: dict[str, Any] = {"timeout_min": int(opts.time_min), "cpus_per_task": int(opts.cpus),
                              "name": f"mibench-{order.sweep_id[:8]}"}
    if opts.executor == "slurm":
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
    command = f"{sys.executable} -u -m submitit.core._submit {out_dir / 'submitit' / '%j'}"
    return _make_sbatch_string(command=command, folder=out_dir / "submitit" / "%j",
                               **{k: v for k, v in params.items() if v is not None})


def submit(order: WorkOrder, opts: Options, out_dir: Path) -> None:
    """Submit the order as a job array (packed into chunks of about ``opts.job_minutes``) and,
    with ``opts.wait``, wait for the jobs; a failed job leaves its runs unfinished."""
    chunks = chunk(order.groups, estimate_seconds(out_dir), opts.job_minutes * 60)
    orders = [WorkOrder(order.out_dir, c, order.sweep_id, order.force, order.data_dir,
                        order.threads or opts.cpus, False) for c in chunks]
    executor = submitit_executor(order, opts, out_dir)
    jobs = executor.map_array(work, orders)
    print(f"submitted {len(jobs)} jobs ({opts.executor}; {sum(map(len, order.groups))} runs in "
          f"chunks of about {opts.job_minutes:g} minutes); logs in {out_dir / 'submitit'}")
    if not opts.wait:
        return
    errors = []
    for job in jobs:
        try:
            job.result()
        except Exception as exc:                  # a failed job: its runs stay unfinished
            errors.append(f"job {job.job_id}: {str(exc).strip().splitlines()[-1] if str(exc) else exc}")
    if errors:
        raise ConfigError(f"{len(errors)} of {len(jobs)} jobs failed; {errors[0]}")
