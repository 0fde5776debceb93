"""Run one spec (``run_one``) or a whole preset sweep (``sweep``), resumably, one row per run."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Mapping

import torch

from . import __version__
from .bounds import BOUNDS
from .cpu import default_threads
from .distributions import build_task
from .estimators import build_estimator, entropy_y_of
from .interface import ConfigError, Task
from .presets import RunSpec, expand, load_preset
from .results import RUNS_FILE, TRACES_FILE, append_jsonl, load_results, load_rows
from .train import evaluate, fit, fit_batched

log = logging.getLogger(__name__)

FINISHED = ("ok", "diverged")   # statuses a resumed sweep does not redo; "error" runs are retried


def device_available(device: str) -> bool:
    kind = torch.device(device).type
    if kind == "cuda":
        index = torch.device(device).index or 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    if kind == "mps":
        return torch.backends.mps.is_available()
    return True


def _versions() -> dict[str, str]:
    import numpy

    return {"mibench": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    if sys.platform.startswith("linux"):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # process peak RSS
    return math.nan


def _base_row(spec: RunSpec) -> dict[str, Any]:
    est = spec.estimator
    return {
        "run_id": spec.run_id, "task": spec.preset, "grid": spec.grid, "family": spec.family,
        "task_params": dict(spec.task_params), "bound": est.bound, "bound_kind": BOUNDS[est.bound].kind,
        "critic": "conditional_gaussian" if BOUNDS[est.bound].generative else est.critic,
        "encoder": est.encoder, "shared_encoder": est.shared, "n_negatives": spec.n_negatives,
        "batch_size": spec.batch_size, "device": spec.device, "seed": spec.seed, "steps": spec.steps,
        "epochs": spec.epochs, "lr": spec.lr, "staircase": list(spec.staircase),
        "precision": spec.precision,
        "spec": spec.to_dict(),
    }


def make_tasks(spec: RunSpec, data_dir: str | None) -> tuple[Task, list[Task]]:
    """The training task (a list of them, one per level, for the staircase) and the task to evaluate on."""
    params = dict(spec.task_params)
    if spec.staircase:                     # the levels set the MI; start at the first one
        params.pop("rho", None)
        params["mi"] = spec.staircase[0]
    base = build_task(spec.family, params, device=spec.device, data_dir=data_dir)
    levels = [base.with_mi(m) for m in spec.staircase] if spec.staircase else [base]
    return levels[-1].heldout(), levels


def run_one(spec: RunSpec, *, data_dir: str | None = None, progress: bool = False,
            model_dir: Path | None = None) -> tuple[dict, dict]:
    """Train and evaluate one spec. Returns (row, trace); see ``run_group``."""
    return run_group([spec], data_dir=data_dir, progress=progress, model_dir=model_dir)[0]


def run_group(specs: list[RunSpec], *, data_dir: str | None = None, progress: bool = False,
              model_dir: Path | None = None) -> list[tuple[dict, dict]]:
    """Train and evaluate specs that differ only in their seed: one by one with ``fit``, or,
    when they ask for ``batch_seeds``, together as one batched model (``fit_batched``).

    Returns a (row, trace) per spec and never raises for a failing run: a row's status is
    "ok", "diverged" (a NaN or infinite estimate) or "error" (with the error). With
    ``save_model``, the trained weights go to ``model_dir/<run_id>.pt``.
    """
    spec = specs[0]
    rows = [_base_row(s) for s in specs]
    traces: list[dict[str, Any]] = [{"run_id": s.run_id, "step": [], "estimate": [], "mi_true": []}
                                    for s in specs]
    t0 = time.perf_counter()
    device = torch.device(spec.device)
    try:
        heldout, levels = make_tasks(spec, data_dir)
        truth = heldout.ground_truth()
        x, y = levels[0].sample(2, generator=torch.Generator(device=device).manual_seed(0))
        estimators = []
        for s in specs:
            with torch.random.fork_rng(devices=[]):            # parameter init from the run's seed
                torch.manual_seed(s.seed)
                estimators.append(build_estimator(s.estimator, tuple(x.shape[1:]), tuple(y.shape[1:]),
                                                  entropy_y_of(levels[0])).to(device))
        gens = [torch.Generator(device=device).manual_seed(s.seed) for s in specs]
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        per_level = math.ceil(spec.steps / len(levels))
        common = dict(task_at=lambda step: levels[min(step // per_level, len(levels) - 1)],
                      steps=spec.steps, batch_size=spec.batch_size, lr=spec.lr,
                      n_negatives=spec.n_negatives, log_every=spec.log_every, progress=progress,
                      precision=spec.precision,
                      desc=f"{spec.estimator.bound} K={spec.n_negatives} {spec.device}"
                           + (f" x{len(specs)} seeds" if spec.batch_seeds else ""))
        if spec.batch_seeds:
            results = fit_batched(estimators, levels[0], generators=gens, **common)
        else:
            results = [fit(estimators[0], levels[0], generator=gens[0], **common)]
        k_eval = spec.estimator.n_negatives(spec.eval_batch_size)
        for s, est, result, row, trace in zip(specs, estimators, results, rows, traces):
            eval_gen = torch.Generator(device=device).manual_seed(s.seed + 1_000_003)
            mean, std = evaluate(est, heldout, batches=s.eval_batches, batch_size=s.eval_batch_size,
                                 n_negatives=k_eval, generator=eval_gen)
            if s.save_model and model_dir is not None:
                model_dir.mkdir(parents=True, exist_ok=True)
                torch.save({"spec": s.to_dict(), "state_dict": est.state_dict()}, model_dir / f"{s.run_id}.pt")
            trace.update(step=[st for st, _, _ in result.trace], estimate=[v for _, v, _ in result.trace],
                         mi_true=[t for _, _, t in result.trace])
            finite = math.isfinite(mean) and math.isfinite(std)
            row.update(mi_true=truth.mi, mi_true_train=levels[-1].ground_truth().mi,
                       truth_method=truth.method, task_name=levels[-1].name,
                       mi_estimate=mean, mi_std=std, status="ok" if finite else "diverged",
                       error=None if finite else "non-finite estimate on held-out batches",
                       pairs_per_s=result.pairs_per_s, steps_per_s=result.steps_per_s,
                       train_s=result.train_s, batched_models=len(specs), peak_mem_mb=_peak_mem_mb(device))
    except ConfigError:
        raise
    except Exception as exc:          # a failing run is a row, not a crash of the sweep
        log.warning("run %s failed: %s", ", ".join(s.run_id for s in specs), exc)
        for row in rows:
            row.update(status="error", error=f"{type(exc).__name__}: {exc}",
                       traceback=traceback.format_exc(limit=4))
    for row in rows:
        row.update(wall_s=(time.perf_counter() - t0) / len(specs), threads=torch.get_num_threads(),
                   versions=_versions(), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    return list(zip(rows, traces))


def _groups(specs: list[RunSpec]) -> list[list[RunSpec]]:
    """Runs to train together: specs with batch_seeds that differ only in seed share a group."""
    groups: dict[Any, list[RunSpec]] = {}
    for s in specs:
        key = dataclasses.replace(s, seed=0) if s.batch_seeds else s.run_id
        groups.setdefault(key, []).append(s)
    return list(groups.values())


def sweep(task: str = "gaussian", *, quick: bool = False, out: str | os.PathLike | None = None,
          force: bool = False, data_dir: str | None = None, threads: int | None = None,
          progress: bool = True, overrides: Mapping[str, Any] | None = None):
    """Run every spec of a preset that ``out`` does not hold yet; return this sweep's rows.

    ``overrides``: bounds, critics, negatives, batch_sizes, devices, seeds (lists), steps or
    epochs (numbers) and batch_seeds (bool) replacing the preset's values. Returns a pandas
    DataFrame.
    """
    preset = load_preset(task)
    specs = expand(preset, quick=quick, overrides=overrides)
    missing = sorted({s.device for s in specs if not device_available(s.device)})
    if missing:
        log.warning("device %s not available here; skipping its %d runs", ", ".join(missing),
                    sum(s.device in missing for s in specs))
        specs = [s for s in specs if s.device not in missing]
    out_dir = Path(out) if out else Path("results") / preset.name
    done = set() if force else {r["run_id"] for r in load_rows(out_dir) if r.get("status") in FINISHED}
    todo = [s for s in specs if s.run_id not in done]
    if len(todo) < len(specs):
        log.warning("%d of %d runs already in %s; running the other %d (--force redoes them)",
                    len(specs) - len(todo), len(specs), out_dir / RUNS_FILE, len(todo))
    torch.set_num_threads(threads or default_threads())

    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=f"{preset.name}", unit="run", dynamic_ncols=True, disable=None)
    for group in _groups(todo):
        for row, trace in run_group(group, data_dir=data_dir, progress=progress, model_dir=out_dir / "models"):
            append_jsonl(out_dir / TRACES_FILE, trace)      # trace first: a row means "finished"
            append_jsonl(out_dir / RUNS_FILE, row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(last=f"{row['bound']} {row.get('mi_estimate', math.nan):.3f}"
                                     f"/{row.get('mi_true', math.nan):.3f}")
    if bar is not None:
        bar.close()
    df = load_results(out_dir)
    ids = {s.run_id for s in specs}
    return df[df["run_id"].isin(ids)].reset_index(drop=True) if len(df) else df
