"""Contracts every registered entry must meet, for mibench's tests and for plugins'.

    from mibench.testing import check_bound, check_task
    check_bound(MyBound)                       # raises AssertionError naming what is wrong
    check_task("my_family", {"dim": 2})
    check_sample_estimator(MyEstimator)        # a SampleEstimator subclass
    check_critic("my_critic"); check_encoder("my_encoder")
    check_library("my_library", bound="infonce")
    check_executor("my_executor", tmp_path)     # runs a small sweep through it

One per registry: bounds, task families, sample estimators, critics, encoders, other
libraries, executors. The test suite
runs each over every registered entry (tests/test_contracts.py), so a new entry, built in or
from a plugin, is checked without writing a test for it.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from .bounds import BOUNDS, Bound
from .distributions import TASK_FAMILIES, TaskFamily
from .estimators import EstimatorSpec
from .interface import ConfigError, FiniteTrainingSet, HasChosenMI, HasEntropyY, NeedsData, Task
from .libraries import LIBRARIES, LibraryError
from .nets import CRITICS, ENCODERS, candidate_indices
from .sample import SAMPLE_ESTIMATORS, SampleEstimator

TRUTH_METHODS = ("analytic", "by_construction", "monte_carlo")
KINDS = ("lower", "upper", "neither")


def _gen(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _check_draw(task: Task, n: int = 16) -> None:
    x, y = task.sample(n, generator=_gen(0, task.device))
    assert tuple(x.shape) == (n, *task.x_shape), f"x has shape {tuple(x.shape)}, declared {task.x_shape}"
    assert tuple(y.shape) == (n, *task.y_shape), f"y has shape {tuple(y.shape)}, declared {task.y_shape}"
    assert x.is_floating_point() and y.is_floating_point(), "samples must be floating point"
    assert torch.isfinite(x).all() and torch.isfinite(y).all(), "samples must be finite"
    again = task.sample(n, generator=_gen(0, task.device))
    assert torch.equal(x, again[0]) and torch.equal(y, again[1]), "the same seeded generator must give the same draw"
    other = task.sample(n, generator=_gen(1, task.device))
    assert not torch.equal(x, other[0]), "another seed must give another draw"


def _check_truth(task: Task) -> float:
    truth = task.ground_truth()
    assert math.isfinite(truth.mi) and truth.mi >= 0, f"true MI must be finite and >= 0, got {truth.mi}"
    assert truth.method in TRUTH_METHODS, f"truth method {truth.method!r} not in {TRUTH_METHODS}"
    assert truth.stderr >= 0 and (truth.stderr == 0 or truth.method == "monte_carlo"), \
        f"stderr must be >= 0, and > 0 only for a Monte Carlo truth; got {truth.stderr}"
    return truth.mi


def check_task(family: str | TaskFamily, params: dict[str, Any] | None = None, *,
               data_dir: str | None = None) -> Task:
    """Build a task of ``family`` (from ``params``, default the family's ``example``) and check
    the task contract: declared shapes match the draws; the same seeded generator gives the same
    draw; the truth is finite and >= 0 for the task and its held-out split; and each optional
    capability it declares works (H(y), a chosen MI round trip, a finite training-set size,
    loading data). Returns the task."""
    fam = TASK_FAMILIES[family] if isinstance(family, str) else family
    params = dict(fam.example if params is None else params)
    assert set(params) <= set(fam.parameters()), f"{fam.name}: parameters {sorted(params)} not all declared"
    task = fam.build(params, data_dir=data_dir)
    assert isinstance(task, Task), f"{fam.name}: {type(task).__name__} does not implement the Task protocol"
    assert isinstance(task.name, str) and task.name, f"{fam.name}: a task needs a name"
    for shape in (task.x_shape, task.y_shape):
        assert isinstance(shape, tuple) and all(isinstance(d, int) and d > 0 for d in shape), \
            f"{fam.name}: shapes must be tuples of positive ints, got {shape!r}"
    if isinstance(task, NeedsData):
        task.load()
    _check_truth(task)
    _check_draw(task)
    heldout = task.heldout()
    assert (heldout.x_shape, heldout.y_shape) == (task.x_shape, task.y_shape), "held-out split changes the shapes"
    _check_truth(heldout)
    _check_draw(heldout)
    if isinstance(task, HasEntropyY):
        h = task.entropy_y()
        assert h is None or math.isfinite(h), f"{fam.name}: entropy_y must be None or finite, got {h}"
    if issubclass(fam.cls, HasChosenMI):
        for mi in (0.25, 2.0):
            at = fam.build(fam.params_with_mi(params, mi), data_dir=data_dir)
            assert math.isclose(at.ground_truth().mi, mi, rel_tol=1e-6, abs_tol=1e-9), \
                f"{fam.name}: params_with_mi({mi}) gives a task of MI {at.ground_truth().mi}"
    if issubclass(fam.cls, FiniteTrainingSet):
        size = fam.train_size(params)
        assert isinstance(size, int) and size > 0, f"{fam.name}: train_size must be a positive int, got {size!r}"
    return task


def _scores(batch: int, k: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(batch, k + 1, generator=g)
    s[:, 0] += 1.0                                     # positives scored a little higher
    return s


def check_bound(cls: type[Bound], *, entropy_y: float = 1.0) -> Bound:
    """Check the bound contract on a random (B, K + 1) score matrix: the declared attributes
    are well formed; the defaults of its options pass their own validation; estimate and loss
    are finite scalars and the loss has a gradient; the aux head, if any, gives one value per
    pair; and a bound declared batchable gives under ``torch.vmap`` what it gives alone.
    Returns the bound built with default options."""
    assert issubclass(cls, Bound), f"{cls!r} is not a mibench.bounds.Bound"
    assert cls.name and cls.name in BOUNDS and BOUNDS[cls.name] is cls, f"{cls.name!r} is not registered as itself"
    assert isinstance(cls.label, str) and cls.label, f"{cls.name}: a display label is required"
    assert cls.kind in KINDS, f"{cls.name}: kind {cls.kind!r} not in {KINDS}"
    defaults = cls.check_options({})
    assert set(defaults) == set(cls.options), f"{cls.name}: check_options drops options"

    def make() -> Bound:
        return cls(entropy_y=entropy_y, **defaults) if cls.needs_entropy_y else cls(**defaults)

    bound = make()
    batch, k, dim = 16, 7, 3
    cols = torch.arange(batch)[:, None].add(torch.arange(k + 1)[None, :]) % batch
    fx, fy = torch.randn(batch, dim), torch.randn(batch, dim)
    head = cls.aux_head(dim, dim, (8,))
    aux = None if head is None else head(fx, fy, cols)
    assert aux is None or tuple(aux.shape) == (batch,), f"{cls.name}: aux head must give shape ({batch},)"
    scores = _scores(batch, k).requires_grad_(True)
    value, loss = bound.estimate(scores, aux), bound.loss(scores, aux)
    assert value.shape == () and loss.shape == (), f"{cls.name}: estimate and loss must be scalars"
    assert torch.isfinite(value) and torch.isfinite(loss), f"{cls.name}: non-finite on ordinary scores"
    loss.backward()
    assert scores.grad is not None and torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0, \
        f"{cls.name}: the loss gives no gradient to the scores"
    if cls.batchable:
        stacked = torch.stack([_scores(batch, k, seed) for seed in (1, 2)])
        a = None if aux is None else aux.detach()
        mapped = torch.vmap(lambda s: make().loss(s, a))(stacked)
        alone = torch.stack([make().loss(s, a) for s in stacked])
        assert torch.allclose(mapped, alone, atol=1e-5), f"{cls.name}: declared batchable, but vmap changes its loss"
    return bound


# --------------------------------------------------------------------------------------------
# Sample estimators, critics, encoders, libraries


def _gaussian_sample(n: int, dim: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n pairs of correlated Gaussians (correlation 0.8 per coordinate): (n, dim) each."""
    task = TASK_FAMILIES["gaussian"].build({"dim": dim, "mi": 0.5 * dim})
    return task.sample(n, generator=_gen(seed, task.device))


def check_sample_estimator(cls: type[SampleEstimator], options: dict[str, Any] | None = None) -> float:
    """Check the sample-estimator contract with ``options`` (default: ``cls.example``): it is
    registered as itself with a label and a library; every option is declared with a ``Param``
    and ``check_options`` fills in all of them and refuses an unknown one; on 256 pairs of
    correlated Gaussians (one dimension a side) the estimate is a finite float, the same for
    the same sample and seed. Returns the estimate [nats]."""
    assert isinstance(cls, type) and issubclass(cls, SampleEstimator), f"{cls!r} is not a SampleEstimator"
    assert cls.name and cls.name in SAMPLE_ESTIMATORS and SAMPLE_ESTIMATORS[cls.name] is cls, \
        f"{cls.name!r} is not registered as itself"
    assert isinstance(cls.label, str) and cls.label, f"{cls.name}: a display label is required"
    assert isinstance(cls.library, str) and cls.library, f"{cls.name}: a library name is required"
    given = dict(cls.example if options is None else options)
    filled = cls.check_options(given)
    assert set(filled) == set(cls.options), f"{cls.name}: check_options must return every declared option"
    try:
        cls.check_options({**given, "no_such_option": 1})
    except ConfigError:
        pass
    else:
        raise AssertionError(f"{cls.name}: an unknown option must be refused")
    estimator = cls(**given)
    name, library = estimator.display()
    assert isinstance(name, str) and name and isinstance(library, str) and library, \
        f"{cls.name}: display() must give (label, library), got {(name, library)!r}"
    shown = estimator.shown_options()
    assert isinstance(shown, dict) and set(shown) <= set(cls.options), \
        f"{cls.name}: shown_options() must be a dict of declared options, got {shown!r}"
    x, y = _gaussian_sample(256, 1)
    value = estimator.estimate(x, y, seed=0)
    assert isinstance(value, float) and math.isfinite(value), f"{cls.name}: the estimate must be a finite float, got {value!r}"
    again = cls(**given).estimate(x.clone(), y.clone(), seed=0)
    assert again == value, f"{cls.name}: the same sample and seed gave {value} and then {again}"
    return value


def _pair_scores(critic: torch.nn.Module, fx: torch.Tensor, fy: torch.Tensor, k: int,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    cols = candidate_indices(len(fx), k, generator, fx.device)
    return critic(fx, fy, cols), cols


def check_critic(name: str, dx: int = 3, dy: int = 2) -> torch.nn.Module:
    """Check the critic contract: ``CRITICS[name](dx, dy, hidden, embed_dim, temperature)`` scores
    pairs, ``critic(fx (B, dx), fy (B, dy), cols (B, K + 1)) -> (B, K + 1)`` finite, with a
    gradient for its parameters; a pair's score depends on that pair alone (the same whatever
    the other pairs, the batch order, the rest of the batch or K); and the score at [i, k]
    is that of (x_i, y_cols[i, k]): changing x_0 moves row 0 alone, changing y_0 moves the
    entries where cols is 0 alone. Returns the critic."""
    assert name in CRITICS, f"{name!r} is not a registered critic"
    torch.manual_seed(0)
    critic = CRITICS[name](dx, dy, (8, 4), 4, 1.0)
    assert isinstance(critic, torch.nn.Module), f"critic {name!r}: not a torch module"
    batch = 12
    fx, fy = torch.randn(batch, dx), torch.randn(batch, dy)
    full, cols = _pair_scores(critic, fx, fy, batch - 1)
    assert tuple(full.shape) == (batch, batch), f"critic {name!r}: scores of shape {tuple(full.shape)}, not (B, K + 1)"
    assert torch.isfinite(full).all(), f"critic {name!r}: non-finite scores"
    matrix = torch.empty(batch, batch).scatter_(1, cols, full.detach())      # matrix[i, j]: (x_i, y_j)
    some, cols_k = _pair_scores(critic, fx, fy, 3, torch.Generator().manual_seed(1))
    assert torch.allclose(some, matrix.gather(1, cols_k), atol=1e-5), \
        f"critic {name!r}: a pair's score changes with K (the other pairs scored beside it)"
    perm = torch.randperm(batch, generator=torch.Generator().manual_seed(2))
    permuted, cols_p = _pair_scores(critic, fx[perm], fy[perm], batch - 1)
    assert torch.allclose(permuted, matrix[perm][:, perm].gather(1, cols_p), atol=1e-5), \
        f"critic {name!r}: a pair's score changes with the order of the batch"
    half, cols_h = _pair_scores(critic, fx[:6], fy[:6], 5)
    assert torch.allclose(half, matrix[:6, :6].gather(1, cols_h), atol=1e-5), \
        f"critic {name!r}: a pair's score changes with the rest of the batch"
    for side in ("x", "y"):
        moved_x, moved_y = fx.clone(), fy.clone()
        (moved_x if side == "x" else moved_y)[0] += 3.0         # item 0 of one side only
        changed = (_pair_scores(critic, moved_x, moved_y, batch - 1)[0] - full).abs().detach() > 1e-6
        allowed = (torch.arange(batch)[:, None] == 0).expand_as(cols) if side == "x" else cols == 0
        assert not (changed & ~allowed).any() and changed.any(), \
            f"critic {name!r}: changing {side}_0 moves scores of other pairs: the score at [i, k] must be " \
            f"that of (x_i, y_cols[i, k])"
    params = [p for p in critic.parameters() if p.requires_grad]
    if params:
        full.sum().backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), \
            f"critic {name!r}: the scores give no gradient to its parameters"
    return critic


def check_encoder(name: str, shape: tuple[int, ...] = (1, 28, 28)) -> torch.nn.Module:
    """Check the encoder contract: ``ENCODERS[name](shape, embed_dim=8, hidden=(16,))`` returns
    (module, out_dim) with the module mapping (B, *shape) -> (B, out_dim), finite, each item's
    features its own (the same alone as in a batch, in eval mode). Returns the module."""
    assert name in ENCODERS, f"{name!r} is not a registered encoder"
    torch.manual_seed(0)
    built = ENCODERS[name](tuple(shape), embed_dim=8, hidden=(16,))
    assert isinstance(built, tuple) and len(built) == 2, f"encoder {name!r}: must return (module, out_dim)"
    module, out_dim = built
    assert isinstance(module, torch.nn.Module) and isinstance(out_dim, int) and out_dim > 0, \
        f"encoder {name!r}: must return (module, positive int), got {built!r}"
    module.eval()
    x = torch.rand(5, *shape, generator=_gen(0, torch.device("cpu")))
    with torch.no_grad():
        features = module(x)
        assert tuple(features.shape) == (5, out_dim), \
            f"encoder {name!r}: features of shape {tuple(features.shape)}, declared (B, {out_dim})"
        assert torch.isfinite(features).all(), f"encoder {name!r}: non-finite features"
        assert torch.allclose(module(x[2:3]), features[2:3], atol=1e-5), \
            f"encoder {name!r}: an item's features depend on the rest of the batch"
    return module


def check_library(name: str, bound: str) -> torch.nn.Module:
    """Check another library's adapter (``LIBRARIES[name]``, building its ``bound``) on a
    two-dimensional Gaussian task: the module it builds gives a finite scalar loss with a
    gradient, ``forward(x, y, cols, with_value=True) -> (loss, value)`` with a finite 0-d value,
    and ``estimate(x, y, K, generator)`` a finite 0-d estimate that draws from ``generator``
    exactly what mibench's own estimate draws (so later batches are the same for both); the
    same seed builds the same parameters; an unknown bound is a LibraryError. Returns the module."""
    assert name in LIBRARIES, f"{name!r} is not a registered library"
    task = TASK_FAMILIES["gaussian"].build({"dim": 2, "mi": 1.0})
    spec = EstimatorSpec(bound=bound, critic="joint", hidden=(16,), library=name)
    module = LIBRARIES[name](spec, task, seed=0)
    assert isinstance(module, torch.nn.Module), f"library {name!r}: must build a torch module"
    again = LIBRARIES[name](spec, task, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(module.parameters(), again.parameters())), \
        f"library {name!r}: the same seed must build the same parameters"
    x, y = task.sample(32, generator=_gen(0, task.device))
    cols = candidate_indices(32, 31, None, x.device)
    loss, value = module(x, y, cols, with_value=True)
    assert loss.shape == () and torch.isfinite(loss), f"library {name!r}: the loss must be a finite scalar"
    assert value.shape == () and torch.isfinite(value) and not value.requires_grad, \
        f"library {name!r}: the value must be a finite 0-d tensor without a gradient"
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters()), \
        f"library {name!r}: the loss gives no gradient to its parameters"
    ours, theirs = _gen(5, x.device), _gen(5, x.device)
    estimate = module.estimate(x, y, 7, theirs)
    candidate_indices(32, 7, ours, x.device)
    assert estimate.shape == () and torch.isfinite(estimate), f"library {name!r}: the estimate must be a finite 0-d tensor"
    assert torch.equal(ours.get_state(), theirs.get_state()), \
        f"library {name!r}: estimate must draw from the generator what mibench's candidate_indices draws"
    try:
        LIBRARIES[name](EstimatorSpec(bound="no_such_bound", library=name), task, seed=0)
    except LibraryError:
        pass
    else:
        raise AssertionError(f"library {name!r}: an unknown bound must raise LibraryError")
    return module


_EXECUTOR_CHECK_PRESET = """
name = "executor_check"
[task]
family = "gaussian"
dim = 2
mi = 0.5
[estimator]
hidden = [8]
[train]
steps = 20
batch_size = 16
log_every = 10
[eval]
batches = 2
[[grid]]
bounds = ["infonce", "nwj"]
seeds = [0, 1]
"""


def check_executor(name: str, folder: str | os.PathLike, options: dict[str, Any] | None = None) -> None:
    """Check the executor registered as ``name`` (``EXECUTORS[name]``): it declares ``here`` (a
    bool), ``check``, ``describe`` (a str) and ``execute``; a small sweep (a Gaussian task, two
    bounds, two seeds: four runs of 20 steps in two groups) executed by it into
    ``folder/executor`` finishes every planned run exactly once, with the estimates the
    ``inline`` executor gives in ``folder/inline``, and running it again trains nothing.
    ``options``: more ``Options`` fields for it (``workers``, ``partition``, ...)."""
    from .executors import EXECUTORS, Executor, Options, run_plan
    from .layout import Folder
    from .plan import plan_sweep
    from .presets import load_preset
    from .results import load_rows, read_jsonl

    assert name in EXECUTORS, f"{name!r} is not a registered executor"
    executor = EXECUTORS[name]
    assert isinstance(executor, Executor), f"executor {name!r}: needs here, check, describe and execute"
    assert isinstance(executor.here, bool), f"executor {name!r}: here must be a bool"
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    (root / "executor_check.toml").write_text(_EXECUTOR_CHECK_PRESET)
    preset = load_preset(str(root / "executor_check.toml"))
    estimates = {}
    for key, who, opts in [("inline", "inline", Options("inline")), ("executor", name, Options(name, **(options or {})))]:
        out = root / key
        plan = plan_sweep(preset, out=out, here=EXECUTORS[who].here)
        assert isinstance(EXECUTORS[who].describe(plan, opts), str), f"executor {who!r}: describe must return a str"
        run_plan(plan, opts, progress=False)
        rows = [r for r in read_jsonl(Folder(out).runs) if isinstance(r, dict)]
        seen = Counter(r["run_id"] for r in rows)
        planned = {s.run_id for s in plan.specs}
        assert set(seen) == planned, (f"executor {who!r}: {len(planned - set(seen))} of {len(planned)} planned "
                                      "runs not finished")
        twice = [i for i, n in seen.items() if n > 1]
        assert not twice, f"executor {who!r}: {len(twice)} runs trained more than once"
        estimates[key] = {r["run_id"]: r["mi_estimate"] for r in load_rows(out)}
    assert estimates["executor"] == estimates["inline"], \
        f"executor {name!r}: its estimates differ from those the inline executor gives"
    again = plan_sweep(preset, out=root / "executor", here=executor.here)
    assert not again.todo, f"executor {name!r}: a second sweep finds {again.n_todo} runs still to do"
