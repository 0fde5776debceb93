"""Contracts every task family and bound must meet, for mibench's tests and for plugins'.

    from mibench.testing import check_bound, check_task
    check_bound(MyBound)                       # raises AssertionError naming what is wrong
    check_task("my_family", {"dim": 2})

The test suite runs both over every registered entry (tests/test_contracts.py), so a new bound
or family, built in or from a plugin, is checked without writing a test for it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .bounds import BOUNDS, Bound
from .distributions import TASK_FAMILIES, TaskFamily
from .interface import FiniteTrainingSet, HasChosenMI, HasEntropyY, NeedsData, Task

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
