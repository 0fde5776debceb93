"""Executing a plan: each run group is built, trained, evaluated and turned into rows, top to
bottom, and the rows go to the results folder as they finish.

    sweep(task)  =  plan_sweep(task)  ->  execute(plan)  ->  load the sweep's rows

``run_group`` never raises for a failing run: a row's status is "ok", "diverged" (a NaN or
infinite held-out estimate) or "error" (with the error). Tasks are built once per sweep and
their data sets read and moved to the device once (``Session``); a missing or broken data set
is one ConfigError before the first run.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from . import __version__
from .bounds import BOUNDS
from .cpu import default_threads
from .distributions import TASK_FAMILIES
from .estimators import TransformedEstimator, estimator_for
from .interface import ConfigError, HasLabels, NeedsData, Task, level_of_step
from .plan import Plan, RunSpec, plan_sweep, upgrade_row
from .results import RUNS_FILE, TRACES_FILE, RunRow, append_jsonl, git_commit, load_rows, to_frame
from .train import FitResult, evaluate, fit, fit_batched

log = logging.getLogger(__name__)


@dataclass
class Session:
    """What the runs of one sweep share: where data and outputs live, and the tasks built so far
    (a task holds its data set on its device, so each is built once)."""

    data_dir: str | None = None
    out_dir: Path | None = None
    progress: bool = False
    _tasks: dict[tuple, Task] = field(default_factory=dict)

    def task(self, family: str, params: Mapping[str, Any], device: str) -> Task:
        key = (family, repr(sorted(params.items())), device)
        if key not in self._tasks:
            self._tasks[key] = TASK_FAMILIES[family].build(dict(params), device=device, data_dir=self.data_dir)
        return self._tasks[key]

    def levels(self, spec: RunSpec) -> list[Task]:
        """The tasks trained on: one per staircase level, else the task itself."""
        return [self.task(spec.family, p, spec.device) for p in spec.level_params()]

    def load_data(self, specs: list[RunSpec]) -> None:
        """Read every data set the runs need now: a missing or broken one is one ConfigError
        (DataNotFoundError) before any training."""
        for spec in specs:
            levels = self.levels(spec)
            for task in [*levels, levels[-1].heldout()]:
                if isinstance(task, NeedsData):
                    task.load()


# --------------------------------------------------------------------------------------------
# One group of runs: build -> train -> evaluate -> row


@dataclass
class Built:
    levels: list[Task]
    heldout: Task
    estimators: list[TransformedEstimator]
    generators: list[torch.Generator]


def build(specs: list[RunSpec], session: Session) -> Built:
    """Tasks, estimators (initial parameters from each run's seed) and data generators."""
    spec = specs[0]
    levels = session.levels(spec)
    device = torch.device(spec.device)
    estimators = [estimator_for(s.estimator, levels[0], seed=s.seed).to(device) for s in specs]
    generators = [torch.Generator(device=device).manual_seed(s.seed) for s in specs]
    return Built(levels, levels[-1].heldout(), estimators, generators)


def train(specs: list[RunSpec], built: Built, progress: bool = False) -> list[FitResult]:
    """Train the group: one model with ``fit``, or its seeds as one batched model."""
    spec, levels = specs[0], built.levels
    common = dict(task_at=lambda step: levels[level_of_step(step, spec.steps, len(levels))],
                  steps=spec.steps, batch_size=spec.batch_size, lr=spec.lr, n_negatives=spec.n_negatives,
                  log_every=spec.log_every, progress=progress, precision=spec.precision,
                  desc=f"{spec.estimator.bound} K={spec.n_negatives} {spec.device}"
                       + (f" x{len(specs)} seeds" if spec.batch_seeds else ""))
    if spec.batch_seeds:
        return fit_batched(built.estimators, levels[0], generators=built.generators, **common)
    return [fit(built.estimators[0], levels[0], generator=built.generators[0], **common)]


def evaluate_run(spec: RunSpec, estimator: TransformedEstimator, heldout: Task) -> tuple[float, float]:
    """The held-out estimate: mean and batch-to-batch sd (nats) over ``eval_batches`` batches."""
    generator = torch.Generator(device=torch.device(spec.device)).manual_seed(spec.seed + 1_000_003)
    return evaluate(estimator, heldout, batches=spec.eval_batches, batch_size=spec.eval_batch_size,
                    n_negatives=spec.estimator.n_negatives(spec.eval_batch_size), generator=generator)


def save_outputs(spec: RunSpec, estimator: TransformedEstimator, heldout: Task, out_dir: Path) -> None:
    """With ``save_model``: the weights (DIR/models/RUN_ID.pt) and, for tasks with labelled
    items, the 2-d PCA of the x encoder's embeddings of 2000 fixed held-out items
    (DIR/embeddings/RUN_ID.csv: pc1, pc2, label), which the embedding figure draws."""
    (out_dir / "models").mkdir(parents=True, exist_ok=True)
    torch.save({"spec": spec.to_dict(), "state_dict": estimator.state_dict()}, out_dir / "models" / f"{spec.run_id}.pt")
    if isinstance(heldout, HasLabels):
        import pandas as pd

        x, labels = heldout.labelled_sample(2000, seed=0)
        estimator.eval()
        device = next(estimator.parameters()).device
        with torch.no_grad():
            z = torch.cat([estimator.encoder_x(chunk.to(device)).cpu() for chunk in x.split(500)]).double()
        estimator.train()
        z = z - z.mean(0, keepdim=True)
        _, _, v = torch.linalg.svd(z, full_matrices=False)
        pcs = (z @ v[:2].T).numpy()
        (out_dir / "embeddings").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"pc1": pcs[:, 0], "pc2": pcs[:, 1], "label": labels.numpy()}).to_csv(
            out_dir / "embeddings" / f"{spec.run_id}.csv", index=False, float_format="%.17g")


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


def make_row(spec: RunSpec, *, wall_s: float, measured: Mapping[str, Any]) -> RunRow:
    """The one place a row is made: the spec's fields, then what the run measured (or its error)."""
    est, bound = spec.estimator, BOUNDS[spec.estimator.bound]
    return RunRow(
        run_id=spec.run_id, task=spec.preset, grid=spec.grid, grids=list(spec.grids), family=spec.family,
        task_params=dict(spec.task_params), bound=est.bound, bound_kind=bound.kind,
        critic=bound.critic_name(est.critic), encoder=est.encoder, shared_encoder=est.shared,
        n_negatives=spec.n_negatives, batch_size=spec.batch_size, device=spec.device, seed=spec.seed,
        steps=spec.steps, epochs=spec.epochs, lr=spec.lr, staircase=list(spec.staircase),
        precision=spec.precision, spec=spec.to_dict(), wall_s=wall_s, threads=torch.get_num_threads(),
        versions=_versions(), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"), git_commit=git_commit(),
        **measured)


def run_group(specs: list[RunSpec], session: Session) -> list[tuple[RunRow, dict]]:
    """Build, train and evaluate runs that differ only in their seed (one run, unless they ask
    for ``batch_seeds``). Returns a (row, trace) per run; never raises for a failing run."""
    device = torch.device(specs[0].device)
    t0 = time.perf_counter()
    traces = [{"run_id": s.run_id, "step": [], "estimate": [], "mi_true": []} for s in specs]
    try:
        built = build(specs, session)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fits = train(specs, built, session.progress)
        truth, truth_train = built.heldout.ground_truth(), built.levels[-1].ground_truth()
        measured = []
        for spec, est, fitted, trace in zip(specs, built.estimators, fits, traces):
            mean, std = evaluate_run(spec, est, built.heldout)
            if spec.save_model and session.out_dir is not None:
                save_outputs(spec, est, built.heldout, session.out_dir)
            trace.update(step=[s for s, _, _ in fitted.trace], estimate=[v for _, v, _ in fitted.trace],
                         mi_true=[t for _, _, t in fitted.trace])
            finite = math.isfinite(mean) and math.isfinite(std)
            measured.append(dict(
                status="ok" if finite else "diverged",
                error=None if finite else "non-finite estimate on held-out batches",
                mi_true=truth.mi, mi_true_train=truth_train.mi, truth_method=truth.method,
                task_name=built.levels[-1].name, mi_estimate=mean, mi_std=std,
                pairs_per_s=fitted.pairs_per_s, steps_per_s=fitted.steps_per_s, train_s=fitted.train_s,
                batched_models=len(specs), peak_mem_mb=_peak_mem_mb(device)))
    except ConfigError:
        raise
    except Exception as exc:          # a failing run is a row, not a crash of the sweep
        log.warning("run %s failed: %s", ", ".join(s.run_id for s in specs), exc)
        failed = dict(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=4))
        measured = [failed] * len(specs)
    wall_s = (time.perf_counter() - t0) / len(specs)
    return [(make_row(s, wall_s=wall_s, measured=m), t) for s, m, t in zip(specs, measured, traces)]


# --------------------------------------------------------------------------------------------
# A whole plan


def execute(plan: Plan, *, data_dir: str | None = None, threads: int | None = None,
            progress: bool = True) -> None:
    """Run every group of the plan in this process, appending each finished run to the plan's
    results folder (its trace first: a row means "finished")."""
    for device, n in plan.absent.items():
        log.warning("device %s not available here; skipping its %d runs", device, n)
    if plan.n_done:
        log.warning("%d of %d runs already in %s; running the other %d (--force redoes them)",
                    plan.n_done, len(plan.specs), plan.out_dir / RUNS_FILE, plan.n_todo)
    if not plan.todo:
        return
    session = Session(data_dir, plan.out_dir, progress)
    session.load_data([g[0] for g in plan.todo])
    torch.set_num_threads(threads or default_threads())
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=plan.n_todo, desc=plan.preset.name, unit="run", dynamic_ncols=True, disable=None)
    for group in plan.todo:
        for row, trace in run_group(group, session):
            append_jsonl(plan.out_dir / TRACES_FILE, trace)
            append_jsonl(plan.out_dir / RUNS_FILE, row.to_dict())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(last=f"{row.bound} {row.mi_estimate or math.nan:.3f}/{row.mi_true or math.nan:.3f}")
    if bar is not None:
        bar.close()


def sweep(task: str = "gaussian", *, quick: bool = False, out: str | os.PathLike | None = None,
          force: bool = False, data_dir: str | None = None, threads: int | None = None,
          progress: bool = True, overrides: Mapping[str, Any] | None = None):
    """Plan a preset's sweep, run what ``out`` does not hold yet, and return the sweep's rows
    (those of its runs on the devices present, old and new) as a pandas DataFrame.

    ``overrides``: bounds, critics, negatives, batch_sizes, devices, seeds (lists), steps or
    epochs (numbers), batch_seeds (bool) and precision, replacing the preset's values.
    """
    plan = plan_sweep(task, quick=quick, overrides=overrides, out=out, force=force)
    execute(plan, data_dir=data_dir, threads=threads, progress=progress)
    ids = {s.run_id for s in plan.specs}
    return to_frame([r for r in map(upgrade_row, load_rows(plan.out_dir)) if r["run_id"] in ids])
