"""Training (``fit``, and ``fit_batched`` for several same-shaped models at once) and held-out
evaluation (``evaluate``). Fixed samples and their evaluation are in ``mibench.finite``, the
training protocol's stopping rule in ``mibench.protocol``."""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch

from .cpu import keep_freed_buffers
from .estimators import TransformedEstimator
from .interface import PRECISIONS, ConfigError, Task
from .nets import appended_columns, candidate_indices
from .protocol import EarlyStopping

log = logging.getLogger(__name__)
# torch's private fused Adam kernel; FusedAdam falls back to torch.optim when it is missing or
# its signature has changed.
_FUSED_ADAM = getattr(torch, "_fused_adam_", None)


@dataclass
class FitResult:
    """What a training run measured.

    trace: (step, training-batch estimate in nats, true MI at that step) every ``log_every``
        steps; the truth moves only in staircase schedules.
    steps: the steps actually trained (fewer than asked when early stopping stopped it).
    heldout: (steps trained, held-out estimate, its batch-to-batch sd) at each evaluation of
        the training protocol (every ``eval_every`` steps; empty without one).
    best_step: the evaluation with the highest held-out estimate by ``EarlyStopping``'s rule
        (None without evaluations); ``best`` is the (step, estimate, sd) recorded there.
    pairs_per_s, steps_per_s: after the warm-up steps, wall clock, device synchronised, the
        held-out evaluations left out.
    """

    trace: list[tuple[int, float, float]] = field(default_factory=list)
    steps: int = 0
    heldout: list[tuple[int, float, float]] = field(default_factory=list)
    best_step: int | None = None
    pairs_per_s: float = math.nan
    steps_per_s: float = math.nan
    train_s: float = 0.0

    @property
    def best(self) -> tuple[int, float, float] | None:
        return next((h for h in self.heldout if h[0] == self.best_step), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class FusedAdam:
    """Adam over a fixed list of parameters as one call of torch's fused Adam kernel per step.

    The update is torch.optim.Adam(fused=True)'s, bit for bit (tested), with the same defaults
    (betas 0.9, 0.999, eps 1e-8, no weight decay). What it leaves out is torch.optim's per-step
    Python bookkeeping (hooks, grouping by device and dtype, state lookups), which cost 20-35 %
    of a small critic's CPU step. Parameters whose gradient is None are skipped, as torch.optim
    skips them.
    """

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, (self.beta1, self.beta2), self.eps = float(lr), betas, float(eps)
        self.exp_avg = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]
        self._fallback: torch.optim.Optimizer | None = None

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        if self._fallback is not None:
            self._fallback.step()
            return
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        pick = lambda xs: [xs[i] for i in live]  # noqa: E731
        params, steps = pick(self.params), pick(self.steps)
        torch._foreach_add_(steps, 1)                 # the kernel reads the step count after the increment
        try:
            _FUSED_ADAM(params, [p.grad for p in params], pick(self.exp_avg), pick(self.exp_avg_sq), [],
                               steps, lr=self.lr, beta1=self.beta1, beta2=self.beta2,
                               weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
        except (TypeError, RuntimeError) as exc:          # the private call changed
            torch._foreach_sub_(steps, 1)
            log.warning("torch._fused_adam_ failed (%s); using torch.optim.Adam(fused=True)", exc)
            self._fallback = self._torch_adam()
            self._fallback.step()

    def _torch_adam(self) -> torch.optim.Optimizer:
        """torch.optim.Adam(fused=True) over the same parameters, carrying the state so far."""
        opt = torch.optim.Adam(self.params, lr=self.lr, betas=(self.beta1, self.beta2), eps=self.eps, fused=True)
        for p, step, m, v in zip(self.params, self.steps, self.exp_avg, self.exp_avg_sq):
            if step.item() > 0:
                opt.state[p] = {"step": step.clone(), "exp_avg": m, "exp_avg_sq": v}
        return opt


def make_optimizer(params: Iterable[torch.Tensor], lr: float, device: torch.device):
    """Adam with the fused kernel: ``FusedAdam`` on the CPU (where it is tested against
    torch.optim), torch.optim.Adam(fused=True) on CUDA, plain torch.optim.Adam elsewhere.
    All have ``zero_grad(set_to_none=True)`` and ``step()``."""
    if device.type == "cpu":
        return FusedAdam(params, lr)
    return torch.optim.Adam(params, lr=lr, fused=True if device.type == "cuda" else None)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """A context manager, entered once per step, for the forward pass's precision.

    "bf16" runs the forward under ``torch.autocast``: matmuls and convolutions in bfloat16,
    parameters and optimizer state in float32. The scores are cast back to float32 before the
    bound (``TransformedEstimator.scores_at``), so the bound, the loss and the estimate are
    float32 either way. Held-out evaluation always runs in float32.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


StepFn = Callable[[Task, bool], "torch.Tensor | None"]
# monitor(steps trained) -> a (held-out estimate, its sd) per model, in nats
Monitor = Callable[[int], Sequence[tuple[float, float]]]


def _train_loop(step_fn: StepFn, device: torch.device, n_models: int, task: Task, *, steps: int,
                batch_size: int, task_at: Callable[[int], Task] | None, log_every: int, warmup: int,
                progress: bool, desc: str, monitor: Monitor | None = None, eval_every: int | None = None,
                patience: int | None = None, on_stop: Callable[[int], None] | None = None) -> list[FitResult]:
    """Calls ``step_fn(task, want_value)`` up to ``steps`` times and does the bookkeeping: the
    trace (one host sync every ``log_every`` steps, when step_fn returns the (n_models,)
    estimates), the progress bar and the timing after ``warmup`` steps.

    The training protocol: with ``monitor`` and ``eval_every``, after every ``eval_every``-th
    step (counted from 1) ``monitor(steps trained)`` gives each model's held-out estimate, which
    goes into its ``heldout`` record and its ``EarlyStopping(patience)``. A model that stops is
    done: ``on_stop(i)`` is called (batched models keep its weights of that step), it records
    nothing more, and the loop ends when every model has stopped.
    """
    if device.type == "cpu":
        keep_freed_buffers()        # large activations reused between steps, not remapped
    results = [FitResult() for _ in range(n_models)]
    stoppers = [EarlyStopping(patience) for _ in range(n_models)]
    live = list(range(n_models))
    monitor_s = 0.0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=steps, desc=desc, leave=False, dynamic_ncols=True, disable=None)
    t_start = None
    done = 0
    for step in range(steps):
        if step == min(warmup, steps - 1):
            _sync(device)
            t_start, step_start = time.perf_counter(), step
        current = task_at(step) if task_at else task
        log_now = step % log_every == 0 or step == steps - 1
        values = step_fn(current, log_now)
        done = step + 1
        if log_now:
            truth = current.ground_truth().mi
            values = values.tolist()                              # the only host sync
            for i in live:
                results[i].trace.append((step, values[i], truth))
            if bar is not None:
                bar.set_postfix(mi=f"{values[0]:.3f}", true=f"{truth:.3f}")
        if bar is not None:
            bar.update(1)
        if monitor is not None and eval_every and done % eval_every == 0:
            t_eval = time.perf_counter()
            heldout = monitor(done)
            for i in list(live):
                mean, sd = heldout[i]
                results[i].heldout.append((done, mean, sd))
                if stoppers[i].update(done, mean):
                    results[i].steps = done
                    live.remove(i)
                    if on_stop is not None:
                        on_stop(i)
            if t_start is not None:
                monitor_s += time.perf_counter() - t_eval
            if not live:
                break
    _sync(device)
    for i, result in enumerate(results):
        result.best_step = stoppers[i].best_step
        if i in live:
            result.steps = done
        if t_start is not None:
            result.train_s = time.perf_counter() - t_start - monitor_s
            result.steps_per_s = (done - step_start) / result.train_s if result.train_s > 0 else math.nan
            result.pairs_per_s = result.steps_per_s * batch_size * n_models
    if bar is not None:
        bar.close()
    return results


def draw_batch(task: Task, batch_size: int, n_negatives: int, generator: torch.Generator,
               device: torch.device, shuffled: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A training batch: x, y and the candidate columns (``nets.candidate_indices``). With
    ``shuffled`` (``negatives = "shuffled"``) y has 2B rows: the batch's own, then those of a
    second, independent draw of the task, whose item i is row i's one negative."""
    x, y = task.sample(batch_size, generator=generator)
    if shuffled:
        _, y_other = task.sample(batch_size, generator=generator)
        return x, torch.cat([y, y_other]), appended_columns(batch_size, device)
    return x, y, candidate_indices(batch_size, n_negatives, generator, device)


def _shuffled(estimator: torch.nn.Module) -> bool:
    spec = getattr(estimator, "spec", None)
    return bool(getattr(spec, "shuffled", False))


def fit(estimator: TransformedEstimator, task: Task, *, steps: int, batch_size: int, lr: float,
        n_negatives: int, generator: torch.Generator, task_at: Callable[[int], Task] | None = None,
        log_every: int = 20, warmup: int = 10, progress: bool = False, desc: str = "",
        precision: str = "fp32", monitor: Monitor | None = None, eval_every: int | None = None,
        patience: int | None = None) -> FitResult:
    """Train ``estimator`` with Adam on fresh batches of ``task`` for ``steps`` steps.

    ``task_at(step)``, when given, replaces ``task`` step by step (the staircase protocol).
    ``precision``: "fp32", or "bf16" for a bfloat16 forward pass (see ``autocast``).
    Nothing leaves the device on a step except every ``log_every`` steps, when the batch's
    estimate is read back for the trace and the progress bar. ``monitor``, ``eval_every`` and
    ``patience``: held-out evaluations and early stopping (see ``_train_loop``); ``monitor``
    draws nothing from ``generator``, so evaluating changes no training step.
    """
    device = next(estimator.parameters()).device
    opt = make_optimizer(estimator.parameters(), lr, device)
    estimator.train()
    amp = autocast(device, precision)                   # entered once per step
    shuffled = _shuffled(estimator)

    def step_fn(current: Task, want_value: bool) -> torch.Tensor | None:
        x, y, cols = draw_batch(current, batch_size, n_negatives, generator, device, shuffled)
        with amp:
            loss, value = estimator(x, y, cols, with_value=True) if want_value else (estimator(x, y, cols), None)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return None if value is None else value[None]

    return _train_loop(step_fn, device, 1, task, steps=steps, batch_size=batch_size, task_at=task_at,
                       log_every=log_every, warmup=warmup, progress=progress, desc=desc, monitor=monitor,
                       eval_every=eval_every, patience=patience)[0]


def fit_batched(estimators: list[TransformedEstimator], task: Task, *, steps: int, batch_size: int,
                lr: float, n_negatives: int, generators: list[torch.Generator],
                task_at: Callable[[int], Task] | None = None, log_every: int = 20, warmup: int = 10,
                progress: bool = False, desc: str = "", precision: str = "fp32", monitor: Monitor | None = None,
                eval_every: int | None = None, patience: int | None = None) -> list[FitResult]:
    """Train several estimators of one architecture (typically one per seed) as one batched
    model: parameters stacked with ``torch.func.stack_module_state`` and the training step
    mapped over them with ``vmap``, so each step is one set of larger kernels instead of S
    small ones (small critics leave a GPU mostly idle).

    Model i draws its batches and negatives from ``generators[i]`` in the same order as ``fit``,
    and Adam is elementwise, so each model trains as it would alone, up to floating-point
    rounding. The trained weights are written back into ``estimators``. Each result's
    ``pairs_per_s`` is the throughput summed over the S models.

    With early stopping, a model that stops keeps the weights of its stopping step: the batched
    step goes on updating its slice while others train, and what is written back into its
    estimator is the copy taken when it stopped. ``monitor`` sees the current weights in
    ``estimators`` (written back before each evaluation).
    """
    from torch.func import functional_call, stack_module_state

    if len(estimators) != len(generators):
        raise ValueError("fit_batched needs one generator per estimator")
    for e in estimators:
        if not e.bound.batchable:
            raise ConfigError(f"bound {e.bound.name!r} cannot train as a batched model; "
                              "run it with batch_seeds = false")
    device = next(estimators[0].parameters()).device
    params, buffers = stack_module_state(estimators)
    template = copy.deepcopy(estimators[0]).to("meta")
    def mapped(with_value: bool):
        return torch.vmap(lambda p, b, x, y, c: functional_call(template, (p, b), (x, y, c),
                                                                {"with_value": with_value}))

    loss_only, loss_and_value = mapped(False), mapped(True)   # the estimate only on log steps
    opt = make_optimizer(params.values(), lr, device)
    amp = autocast(device, precision)
    shuffled = _shuffled(estimators[0])

    def step_fn(current: Task, want_value: bool) -> torch.Tensor | None:
        xs, ys, cols = [], [], []
        for g in generators:
            x, y, c = draw_batch(current, batch_size, n_negatives, g, device, shuffled)
            xs.append(x)
            ys.append(y)
            cols.append(c)
        inputs = (params, buffers, torch.stack(xs), torch.stack(ys), torch.stack(cols))
        with amp:
            losses, values = loss_and_value(*inputs) if want_value else (loss_only(*inputs), None)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()          # models share no parameters: each gets its own gradient
        opt.step()
        return values

    stopped_at: dict[int, dict[str, torch.Tensor]] = {}      # model -> its weights when it stopped

    @torch.no_grad()
    def write_back() -> None:
        for name, stacked in params.items():
            for i, est in enumerate(estimators):
                est.get_parameter(name).copy_(stopped_at[i][name] if i in stopped_at else stacked[i])

    def current_monitor(step: int) -> Sequence[tuple[float, float]]:
        write_back()
        return monitor(step)

    def on_stop(i: int) -> None:
        stopped_at[i] = {name: stacked[i].detach().clone() for name, stacked in params.items()}

    results = _train_loop(step_fn, device, len(estimators), task, steps=steps, batch_size=batch_size,
                          task_at=task_at, log_every=log_every, warmup=warmup, progress=progress, desc=desc,
                          monitor=current_monitor if monitor is not None else None, eval_every=eval_every,
                          patience=patience, on_stop=on_stop)
    write_back()
    return results


@torch.no_grad()
def evaluate(estimator: TransformedEstimator, task: Task, *, batches: int, batch_size: int,
             n_negatives: int, generator: torch.Generator) -> tuple[float, float]:
    """The bound on ``batches`` fresh held-out batches: (mean, standard deviation) in nats.

    The standard deviation is the batch-to-batch spread of the estimate at the end of training.
    """
    estimator.eval()
    values = torch.stack([
        estimator.estimate(*task.sample(batch_size, generator=generator), n_negatives, generator)
        for _ in range(batches)
    ]).double()
    estimator.train()
    std = values.std().item() if batches > 1 else 0.0
    return values.mean().item(), std
