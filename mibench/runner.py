"""One run group, top to bottom: build -> train -> evaluate -> rows.

``run_group`` never raises for a failing run: a row's status is "ok", "diverged" (a held-out
estimate no estimator can report: see ``divergence``) or "error" (with the error). A
``Workspace`` holds what the runs of one worker share: tasks are built once, so each data set
is read and moved to its device once, and ``load_data`` reads them all before the first run.
Who runs which group, and where, is ``mibench.executors``'s job.
"""

from __future__ import annotations

import logging
import math
import platform
import sys
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from . import __version__
from .distributions import TASK_FAMILIES
from .estimators import TransformedEstimator, estimator_for
from .interface import ConfigError, HasLabels, NeedsData, Task, level_of_step
from .runspec import RunSpec
from .layout import Folder
from .results import RunRow, git_commit
from .sample import run_sample
from .store import worker_name
from .finite import FiniteSample, evaluate_sample, standardize_together
from .train import FitResult, evaluate, fit, fit_batched

log = logging.getLogger(__name__)


@dataclass
class Workspace:
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
    levels: list[Task]              # trained on: a level per staircase step, or a FiniteSample
    heldout: Task                   # evaluated on: a task, or a FiniteSample of it
    estimators: list[TransformedEstimator]
    generators: list[torch.Generator]


# Seed offsets of the generators a run uses besides its training one, so that no two draw alike
# (all under presets.SEED_OFFSETS_BELOW, which bounds the seeds a plan accepts).
EVAL_SEED, TRAIN_EVAL_SEED, SAMPLE_SEED, HELDOUT_SAMPLE_SEED = 1_000_003, 2_000_003, 3_000_017, 4_000_037

# A finite estimate is still a divergence when it is above what its bound can report (beyond the
# float32 rounding of the scores, CEILING_SLACK nats), or more than BLOW_UP times the task's scale
# max(|truth|, ln(K + 1), 1 nat) either way: a critic whose scores have blown up (lr = 1e6 gives
# -6e23 nats), or a program that printed 1e308. The largest estimates of working runs in the
# reference results (DV with a joint critic at 10 nats, 1.2e6 nats) are a blow-up of the bound
# itself that docs/reference-results.md reports, and stay below it.
CEILING_SLACK = 1e-3
BLOW_UP = 1e6


def divergence(mean: float, std: float = 0.0, *, truth: float, k: int | None = None, ceiling: float = math.inf,
               what: str = "held-out estimate") -> str | None:
    """Why an estimate (nats; ``std`` its batch-to-batch sd) is not one an estimator can report,
    in a few words, or None when it is: non-finite, above ``ceiling`` (the bound's most with K =
    ``k`` negatives) or beyond BLOW_UP times the task's scale."""
    if not (math.isfinite(mean) and math.isfinite(std)):
        return f"non-finite {what}"
    if mean > ceiling + CEILING_SLACK:
        return f"{what} {mean:.6g} nats is above {ceiling:.6g}, the most this bound can report with K = {k}"
    scale = max(abs(truth) if math.isfinite(truth) else 0.0, math.log(k + 1) if k else 0.0, 1.0)
    if max(abs(mean), std) > BLOW_UP * scale:
        spread = f" (sd {std:.3g})" if std else ""
        of = "the truth, ln(K + 1) and 1 nat" if k else "the truth and 1 nat"
        return (f"{what} {mean:.3g} nats{spread} is beyond {BLOW_UP:.0e} times the task's scale of {scale:.3g} "
                f"nats (the largest of {of}): a numerical blow-up")
    return None


def build(specs: list[RunSpec], workspace: Workspace) -> Built:
    """Tasks, estimators (initial parameters from each run's seed) and data generators; with
    ``n_samples``, the fixed training and held-out samples (drawn from the run's seed), and with
    ``standardize`` both standardised with the statistics of their union (BMI's estimators
    standardise their whole sample, then split it into training and test halves)."""
    spec = specs[0]
    levels = workspace.levels(spec)
    heldout = levels[-1].heldout()
    device = torch.device(spec.device)

    def gen(offset: int) -> torch.Generator:
        return torch.Generator(device=device).manual_seed(spec.seed + offset)

    if spec.n_samples is not None:
        levels = [FiniteSample(levels[0], spec.n_samples, gen(SAMPLE_SEED), draw=spec.batches)]
    if spec.eval_n_samples is not None:
        heldout = FiniteSample(heldout, spec.eval_n_samples, gen(HELDOUT_SAMPLE_SEED))
    if spec.standardize:
        standardize_together(levels[0], heldout)
    estimators = [estimator_for(s.estimator, levels[0], seed=s.seed).to(device) for s in specs]
    generators = [torch.Generator(device=device).manual_seed(s.seed) for s in specs]
    return Built(levels, heldout, estimators, generators)


def train(specs: list[RunSpec], built: Built, progress: bool = False) -> list[FitResult]:
    """Train the group: one model with ``fit``, or its seeds as one batched model. With
    ``eval_every``, each run's held-out estimate (``evaluate_run``) is taken every
    ``eval_every`` steps, for early stopping and the best estimate."""
    spec, levels = specs[0], built.levels

    def monitor(step: int) -> list[tuple[float, float]]:
        return [evaluate_run(s, est, built.heldout) for s, est in zip(specs, built.estimators)]

    common = dict(task_at=lambda step: levels[level_of_step(step, spec.steps, len(levels))],
                  steps=spec.steps, batch_size=spec.batch_size, lr=spec.lr, n_negatives=spec.n_negatives,
                  log_every=spec.log_every, progress=progress, precision=spec.precision,
                  monitor=monitor if spec.eval_every else None, eval_every=spec.eval_every, patience=spec.patience,
                  desc=f"{spec.estimator.bound} K={spec.n_negatives} {spec.device}"
                       + (f" x{len(specs)} seeds" if spec.batch_seeds else ""))
    if spec.batch_seeds:
        return fit_batched(built.estimators, levels[0], generators=built.generators, **common)
    return [fit(built.estimators[0], levels[0], generator=built.generators[0], **common)]


def evaluate_run(spec: RunSpec, estimator: TransformedEstimator, task: Task,
                 seed_offset: int = EVAL_SEED) -> tuple[float, float]:
    """The estimate on ``task``: mean and batch-to-batch sd (nats) over ``eval_batches`` fresh
    batches, or over a fixed sample in consecutive batches. The generator is seeded afresh on
    each call, so the protocol's evaluations during training and the final one see the same
    held-out data."""
    generator = torch.Generator(device=torch.device(spec.device)).manual_seed(spec.seed + seed_offset)
    k = spec.estimator.n_negatives(spec.eval_batch_size)
    if isinstance(task, FiniteSample):
        return evaluate_sample(estimator, task, batch_size=spec.eval_batch_size, n_negatives=k, generator=generator)
    return evaluate(estimator, task, batches=spec.eval_batches, batch_size=spec.eval_batch_size,
                    n_negatives=k, generator=generator)


def final_estimate(spec: RunSpec, estimator: TransformedEstimator, heldout: Task,
                   fitted: FitResult) -> tuple[float, float]:
    """The held-out estimate after training. When the training protocol's last evaluation was
    at the last step trained (always so under early stopping), the weights are those it saw and
    ``evaluate_run`` seeds its generator afresh, so that evaluation is this one: it is reused
    instead of computed again (on BMI's suites, one evaluation of 2,500 x 2,500 pairs in five
    to fifteen)."""
    if fitted.heldout and fitted.heldout[-1][0] == fitted.steps:
        _, mean, std = fitted.heldout[-1]
        return mean, std
    return evaluate_run(spec, estimator, heldout)


def save_outputs(spec: RunSpec, estimator: TransformedEstimator, heldout: Task, out_dir: Path) -> None:
    """With ``save_model``: the weights (DIR/models/RUN_ID.pt) and, for tasks with labelled
    items, the 2-d PCA of the x encoder's embeddings of 2000 fixed held-out items
    (DIR/embeddings/RUN_ID.csv: pc1, pc2, label), which the embedding figure draws."""
    folder = Folder(out_dir)
    folder.model(spec.run_id).parent.mkdir(parents=True, exist_ok=True)
    torch.save({"spec": spec.to_dict(), "state_dict": estimator.state_dict()}, folder.model(spec.run_id))
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
        folder.embedding(spec.run_id).parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"pc1": pcs[:, 0], "pc2": pcs[:, 1], "label": labels.numpy()}).to_csv(
            folder.embedding(spec.run_id), index=False, float_format="%.17g")


def _versions() -> dict[str, str]:
    import numpy

    return {"mibench": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


def _reset_peak_mem(device: torch.device) -> None:
    """Start a run's memory peak: the GPU's allocator peak, or on Linux the process's resident
    peak (VmHWM, reset through /proc/self/clear_refs), so each run reports its own peak."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif sys.platform.startswith("linux"):
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def _peak_mem_mb(device: torch.device) -> float:
    """The peak since ``_reset_peak_mem``: allocated GPU memory, or resident memory (which
    includes what the process held before the run, e.g. a data set already loaded)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    if sys.platform.startswith("linux"):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # process peak RSS
    return math.nan


def make_row(spec: RunSpec, *, wall_s: float, measured: Mapping[str, Any], sweep_id: str | None = None) -> RunRow:
    """The one place a row is made: the run's fields, the columns its estimator spec fills
    (``row_columns``: a sample estimator's leaves the training columns empty), then what the run
    measured (or its error)."""
    common = dict(
        run_id=spec.run_id, task=spec.preset, grid=spec.grid, grids=list(spec.grids), family=spec.family,
        task_params=dict(spec.task_params), device=spec.device, seed=spec.seed, spec=spec.to_dict(), wall_s=wall_s,
        threads=torch.get_num_threads(), versions=_versions(), finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        git_commit=git_commit(), record_id=uuid.uuid4().hex[:16], worker=worker_name(), sweep_id=sweep_id)
    return RunRow(**common, **spec.estimator.row_columns(spec), **measured)


def run_sample_estimator(spec: RunSpec, workspace: Workspace, sweep_id: str | None = None) -> tuple[RunRow, dict]:
    """One sample estimator's run: ``n_samples`` pairs drawn from the task with the run's seed,
    one timed estimate. Any failure (an unknown name, a bad option, an estimator that raises,
    an external program that fails) is the row's error."""
    t0 = time.perf_counter()
    trace = {"run_id": spec.run_id, "step": [], "estimate": [], "mi_true": []}
    try:
        task = workspace.task(spec.family, dict(spec.task_params), spec.device)
        if isinstance(task, NeedsData):
            task.load()
        truth = task.ground_truth()
        generator = torch.Generator(device=torch.device(spec.device)).manual_seed(spec.seed + SAMPLE_SEED)
        got = run_sample(spec.estimator, task, n=spec.n_samples, seed=spec.seed, generator=generator)
        why = divergence(got["mi_estimate"], truth=truth.mi, what="estimate")
        measured = dict(status="ok" if why is None else "diverged", error=why,
                        mi_true=truth.mi, mi_true_train=truth.mi, truth_method=truth.method,
                        mi_true_stderr=truth.stderr, task_name=task.name,
                        mi_estimate=got["mi_estimate"], n_samples=spec.n_samples, estimate_s=got["estimate_s"],
                        pairs_per_s=got["pairs_per_s"])
    except Exception as exc:          # every failure of a sample estimator is its row
        log.warning("run %s (%s) failed: %s", spec.run_id, spec.estimator.name, exc)
        measured = dict(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=4),
                        n_samples=spec.n_samples)
    return make_row(spec, wall_s=time.perf_counter() - t0, measured=measured, sweep_id=sweep_id), trace


def run_group(specs: list[RunSpec], workspace: Workspace, sweep_id: str | None = None) -> list[tuple[RunRow, dict]]:
    """Run a group (``mibench.plan.groups``: one run, or the seeds of one configuration that
    train together) with the runner of its kind. Returns a (row, trace) per run; never raises
    for a failing run."""
    return RUNNERS[specs[0].estimator.kind](specs, workspace, sweep_id)


def run_sample_group(specs: list[RunSpec], workspace: Workspace, sweep_id: str | None = None) -> list[tuple[RunRow, dict]]:
    """Sample estimators' runs, one after another (``run_sample_estimator``)."""
    return [run_sample_estimator(s, workspace, sweep_id) for s in specs]


def run_trained_group(specs: list[RunSpec], workspace: Workspace, sweep_id: str | None = None) -> list[tuple[RunRow, dict]]:
    """Build, train and evaluate runs that differ only in their seed (one run, unless they ask
    for ``batch_seeds``)."""
    device = torch.device(specs[0].device)
    t0 = time.perf_counter()
    traces = [{"run_id": s.run_id, "step": [], "estimate": [], "mi_true": []} for s in specs]
    try:
        built = build(specs, workspace)
        _reset_peak_mem(device)
        fits = train(specs, built, workspace.progress)
        truth, truth_train = built.heldout.ground_truth(), built.levels[-1].ground_truth()
        measured = []
        for spec, est, fitted, trace in zip(specs, built.estimators, fits, traces):
            final, final_std = final_estimate(spec, est, built.heldout, fitted)
            best = fitted.best
            mean, std = (best[1], best[2]) if spec.report == "best" and best is not None else (final, final_std)
            # the same estimate on what it trained on: its fixed sample, or fresh training draws
            train_mean, train_std = evaluate_run(spec, est, built.levels[-1], TRAIN_EVAL_SEED)
            if spec.save_model and workspace.out_dir is not None and spec.estimator.saves_models:
                save_outputs(spec, est, built.heldout, workspace.out_dir)
            trace.update(step=[s for s, _, _ in fitted.trace], estimate=[v for _, v, _ in fitted.trace],
                         mi_true=[t for _, _, t in fitted.trace])
            if spec.eval_every:         # the held-out estimate after each eval_every steps
                trace.update(heldout_step=[s for s, _, _ in fitted.heldout],
                             heldout_estimate=[v for _, v, _ in fitted.heldout])
            k = spec.estimator.n_negatives(spec.eval_batch_size)
            ceiling = est.ceiling(k) if hasattr(est, "ceiling") else math.inf
            why = divergence(mean, std, truth=truth.mi, k=k, ceiling=ceiling)
            measured.append(dict(
                status="ok" if why is None else "diverged", error=why,
                mi_true=truth.mi, mi_true_train=truth_train.mi, truth_method=truth.method, mi_true_stderr=truth.stderr,
                task_name=built.levels[-1].name, mi_estimate=mean, mi_std=std,
                mi_estimate_train=train_mean, mi_std_train=train_std, n_samples=spec.n_samples,
                pairs_per_s=fitted.pairs_per_s, steps_per_s=fitted.steps_per_s, train_s=fitted.train_s,
                batched_models=len(specs), peak_mem_mb=_peak_mem_mb(device),
                mi_estimate_final=final, mi_estimate_best=best[1] if best else None,
                best_step=fitted.best_step, steps_trained=fitted.steps))
    except Exception as exc:          # a failing run is a row, not a crash of the sweep
        if isinstance(exc, ConfigError) and specs[0].estimator.checked_when_planned:
            raise                     # a bad setting planning missed: stop before more runs fail alike
        log.warning("run %s failed: %s", ", ".join(s.run_id for s in specs), exc)
        failed = dict(status="error", error=f"{type(exc).__name__}: {exc}", traceback=traceback.format_exc(limit=4))
        measured = [failed] * len(specs)
    wall_s = (time.perf_counter() - t0) / len(specs)
    return [(make_row(s, wall_s=wall_s, measured=m, sweep_id=sweep_id), t) for s, m, t in zip(specs, measured, traces)]


#: The runner of each kind of run (``RunEstimator.kind``): a new kind adds its spec and its runner here.
RUNNERS = {"neural": run_trained_group, "sample": run_sample_group}
