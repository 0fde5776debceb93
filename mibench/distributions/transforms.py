"""Injective maps that leave mutual information unchanged, and ``TransformedTask``, which applies
them to the x and/or y of any task (the transforms of the BMI benchmark, Czyz et al. 2023).

I(f(X); g(Y)) = I(X; Y) for injective measurable f and g, so a transformed task keeps its
base's truth exactly. Each map has an inverse (``TransformedTask.inverse``), which the tests use
to get the base's draws back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ..interface import ConfigError, GroundTruth


def bisect_increasing(f: Callable[[Tensor], Tensor], target: Tensor, lo: Tensor, hi: Tensor, steps: int = 48) -> Tensor:
    """Solve f(t) = target for an increasing f on [lo, hi], elementwise, by bisection (a fixed
    number of vectorised steps, whatever the batch size)."""
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        below = f(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


class Map:
    """An injective map of one side's values (batch first). Subclasses set ``name`` and define
    ``forward`` and ``inverse``; the constructor checks the shape it needs and says what comes out."""

    name = ""
    needs_fit = False       # rescale: set from the base's draws before first use

    def __init__(self, side: str, shape: tuple[int, ...], bounds: tuple[float, float] | None) -> None:
        """side: "x" or "y"; shape: one value's; bounds: (lo, hi) each coordinate lies in, or None."""
        self.side, self.shape = side, shape
        self.out_shape: tuple[int, ...] = shape
        self.out_bounds = None

    def _needs_vector(self, least: int) -> int:
        if len(self.shape) != 1 or self.shape[0] < least:
            got = self.shape[0] if len(self.shape) == 1 else f"shape {self.shape}"
            raise ConfigError(f"{self.name}: needs at least {least} dims on the {self.side} side "
                              f"(a vector), got {got}")
        return self.shape[0]

    def forward(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def inverse(self, t: Tensor) -> Tensor:
        raise NotImplementedError


class _Monotone(Map):
    """An increasing elementwise map: bounded values stay bounded (by the images of the ends)."""

    def __init__(self, side, shape, bounds):
        super().__init__(side, shape, bounds)
        if bounds is not None:
            self.out_bounds = tuple(self.scalar(b) for b in bounds)

    def scalar(self, v: float) -> float:
        return float(self.forward(torch.tensor(v, dtype=torch.float64)))


class NormalCDF(_Monotone):
    """t -> Phi(t), the standard normal CDF, coordinate-wise: values in (0, 1)."""

    name = "normal_cdf"

    def __init__(self, side, shape, bounds):
        super().__init__(side, shape, bounds)
        self.out_bounds = self.out_bounds or (0.0, 1.0)

    def forward(self, t):
        return torch.special.ndtr(t)

    def inverse(self, t):
        return torch.special.ndtri(t)


class HalfCube(_Monotone):
    """t -> t sqrt(|t|), a signed t^(3/2)."""

    name = "half_cube"

    def forward(self, t):
        return t * t.abs().sqrt()

    def inverse(self, t):
        return t.sign() * t.abs().pow(2.0 / 3.0)


class Asinh(_Monotone):
    """t -> asinh(t): lightens heavy tails."""

    name = "asinh"

    def forward(self, t):
        return torch.asinh(t)

    def inverse(self, t):
        return torch.sinh(t)


# BMI's wiggly maps, one per side: (amplitude, frequency, phase) of the sines added to t. Their
# derivatives stay >= 0.16 (x) and >= 0.53 (y), so both are increasing.
WIGGLES = {"x": ((0.4, 1.0, 0.0), (0.2, 1.7, 1.0), (0.03, 3.3, -2.5)),
           "y": ((-0.4, 0.4, 0.0), (0.17, 1.3, 3.5), (0.02, 4.3, -2.5))}


class Wiggly(_Monotone):
    """t -> t + sum_k a_k sin(w_k t + c_k), with BMI's constants for the x and for the y side."""

    name = "wiggly"

    def forward(self, t):
        return t + sum(a * torch.sin(w * t + c) for a, w, c in WIGGLES[self.side])

    def inverse(self, t):
        reach = sum(abs(a) for a, _, _ in WIGGLES[self.side])     # |forward(t) - t| <= reach
        s = t.double()
        return bisect_increasing(self.forward, s, s - reach, s + reach, steps=60).to(t.dtype)


SPIRAL_PLANES = {"x": (0, 1), "y": (1, 2)}     # BMI's so(n) generators: plane (0, 1) on x, (1, 2) on y


class Spiral(Map):
    """t -> R(||t||^2 v) t: a rotation in one coordinate plane by an angle proportional to the
    squared norm, which the rotation keeps (so the inverse rotates back by the same angle).
    As BMI's ``transform_spiral_task``: plane (0, 1) on x, plane (1, 2) on y, speed 1 / dim."""

    name = "spiral"

    def __init__(self, side, shape, bounds, speed: float = 1.0):
        super().__init__(side, shape, bounds)
        self.i, self.j = SPIRAL_PLANES[side]
        self.speed = speed / self._needs_vector(self.j + 1)

    def _rotate(self, t: Tensor, sign: float) -> Tensor:
        angle = sign * self.speed * t.pow(2).sum(-1)
        cos, sin = torch.cos(angle), torch.sin(angle)
        a, b = t[:, self.i], t[:, self.j]
        out = t.clone()
        out[:, self.i], out[:, self.j] = cos * a - sin * b, sin * a + cos * b
        return out

    def forward(self, t):
        return self._rotate(t, 1.0)

    def inverse(self, t):
        return self._rotate(t, -1.0)


class SwissRoll(Map):
    """A 1-d t in [0, 1] -> (r cos r, r sin r) / 21 with r = 1.5 pi (1 + 2 t), as BMI's
    ``swissroll2d``: a 2-d embedding, injective because the radius r / 21 grows with t. It
    needs values t >= -1/2 (so r >= 0): BMI applies it to a uniform variable (normal_cdf first)."""

    name = "swissroll"

    def __init__(self, side, shape, bounds):
        super().__init__(side, shape, bounds)
        if shape != (1,):
            raise ConfigError(f"swissroll: needs a 1-d {side} side, got shape {shape}")
        if bounds is None or bounds[0] < -0.5:
            raise ConfigError(f"swissroll: needs {side} values >= -0.5 to be injective (apply normal_cdf "
                              f"first), got {'unbounded values' if bounds is None else f'values in {bounds}'}")
        self.out_shape = (2,)

    def forward(self, t):
        r = 1.5 * math.pi * (1.0 + 2.0 * t[:, 0])
        return torch.stack([r * torch.cos(r), r * torch.sin(r)], dim=1) / 21.0

    def inverse(self, t):
        r = 21.0 * t.norm(dim=1, keepdim=True)
        return (r / (1.5 * math.pi) - 1.0) / 2.0


class Rescale(Map):
    """t -> (t - m) / s coordinate-wise. BMI's ``transform_rescale`` standardises each drawn
    sample by its own mean and sd (scikit-learn's ``scale``); here m and s are fixed once, from
    FIT_DRAWS draws of the base with seed 0, so the map is one affine bijection: the MI is
    exactly the base's, and the draws have mean ~0 and sd ~1 as in BMI."""

    name = "rescale"
    needs_fit = True

    def __init__(self, side, shape, bounds):
        super().__init__(side, shape, bounds)
        self.mean: Tensor | None = None
        self.scale: Tensor | None = None

    def fit(self, total: Tensor, total_sq: Tensor, n: int) -> None:
        mean = total / n
        sd = (total_sq / n - mean * mean).clamp_min(0).sqrt()
        self.mean, self.scale = mean.float(), torch.where(sd > 0, sd, torch.ones_like(sd)).float()

    def forward(self, t):
        return (t - self.mean.to(t.dtype)) / self.scale.to(t.dtype)

    def inverse(self, t):
        return t * self.scale.to(t.dtype) + self.mean.to(t.dtype)


MAPS: dict[str, type[Map]] = {m.name: m for m in (NormalCDF, HalfCube, Asinh, Wiggly, Spiral, SwissRoll, Rescale)}
FIT_DRAWS, FIT_CHUNK = 1 << 17, 1 << 14


def _names(value: object, side: str) -> list[str]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) for n in names):
        raise ConfigError(f"transformed: {side} must be a transform name or a list of them, got {value!r}")
    for n in names:
        if n not in MAPS and n != "none":
            raise ConfigError(f"transformed: unknown {side} transform {n!r}; allowed: none, {', '.join(MAPS)}")
    return [n for n in names if n != "none"]


def _chain(side: str, names: list[str], shape: tuple[int, ...], bounds) -> list[Map]:
    maps = []
    for n in names:
        maps.append(MAPS[n](side, shape, bounds))
        shape, bounds = maps[-1].out_shape, maps[-1].out_bounds
    return maps


class TransformedTask:
    """x = f(x0), y = g(y0) for (x0, y0) drawn from ``base`` and chains f, g of the injective maps
    in MAPS (applied in the order given): I(x; y) is the base's, carried over exactly."""

    family = "transformed"

    def __init__(self, base, x: str | Sequence[str] = (), y: str | Sequence[str] = ()):
        self.base, self.device = base, base.device
        self.x_names, self.y_names = _names(x, "x"), _names(y, "y")
        self.x_maps = _chain("x", self.x_names, tuple(base.x_shape), getattr(base, "x_bounds", None))
        self.y_maps = _chain("y", self.y_names, tuple(base.y_shape), getattr(base, "y_bounds", None))
        self.x_shape = self.x_maps[-1].out_shape if self.x_maps else tuple(base.x_shape)
        self.y_shape = self.y_maps[-1].out_shape if self.y_maps else tuple(base.y_shape)
        self.x_bounds = self.x_maps[-1].out_bounds if self.x_maps else getattr(base, "x_bounds", None)
        self.y_bounds = self.y_maps[-1].out_bounds if self.y_maps else getattr(base, "y_bounds", None)
        if hasattr(base, "load"):
            self.load = base.load
        if self.x_names == self.y_names:        # BMI's ids: "spiral-normal_cdf-multinormal-..."
            name = base.name
            for n in self.x_names:
                name = f"{n}-{name}"
        else:                                   # one side only ("swissroll_x-...") or two chains
            parts = [f"{'+'.join(ns)}_{s}" for s, ns in (("x", self.x_names), ("y", self.y_names)) if ns]
            name = "-".join([*parts, base.name])
        self.name = name

    def describe(self) -> str:
        """The maps, innermost first: "normal_cdf on x and y, then swissroll on x"."""
        if self.x_names == self.y_names:
            mine = ", then ".join(f"{n} on x and y" for n in self.x_names)
        else:
            mine = " and ".join(f"{'+'.join(ns)} on {s}" for s, ns in (("x", self.x_names), ("y", self.y_names)) if ns)
        inner = self.base.describe() if isinstance(self.base, TransformedTask) else ""
        return ", then ".join(p for p in (inner, mine) if p) or "no map"

    def ground_truth(self) -> GroundTruth:
        base = self.base
        while isinstance(base, TransformedTask):
            base = base.base
        t = base.ground_truth()
        note = f"{t.note}; unchanged by the injective maps {self.describe()}".lstrip("; ")
        return GroundTruth(t.mi, t.method, t.stderr, note)

    def _fit(self) -> None:
        """Fix the maps that are set from data (rescale) from draws of the base with seed 0."""
        for side in ("x", "y"):
            maps = self.x_maps if side == "x" else self.y_maps
            for k, m in enumerate(maps):
                if not m.needs_fit or m.mean is not None:
                    continue
                gen = torch.Generator(device=self.device).manual_seed(0)
                total = total_sq = 0.0
                for _ in range(FIT_DRAWS // FIT_CHUNK):
                    t = self.base.sample(FIT_CHUNK, generator=gen)[0 if side == "x" else 1]
                    for prev in maps[:k]:
                        t = prev.forward(t)
                    t = t.double()
                    total, total_sq = total + t.sum(0), total_sq + t.pow(2).sum(0)
                m.fit(total, total_sq, FIT_DRAWS)

    def transform(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The maps applied to base draws x: (n, *base.x_shape), y: (n, *base.y_shape)."""
        self._fit()
        for m in self.x_maps:
            x = m.forward(x)
        for m in self.y_maps:
            y = m.forward(y)
        return x, y

    def inverse(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """The base's draws back from this task's draws."""
        self._fit()
        for m in reversed(self.x_maps):
            x = m.inverse(x)
        for m in reversed(self.y_maps):
            y = m.inverse(y)
        return x, y

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        return self.transform(*self.base.sample(n, generator=generator))

    def heldout(self) -> TransformedTask:
        other = self.base.heldout()
        if other is self.base:
            return self
        task = TransformedTask(other, self.x_names, self.y_names)
        task.x_maps, task.y_maps = self.x_maps, self.y_maps     # rescale stays fitted on training draws
        return task

    def entropy_y(self) -> float | None:
        """H(y): the base's when y is not transformed, else None (not computed here)."""
        if self.y_maps or not hasattr(self.base, "entropy_y"):
            return None
        return self.base.entropy_y()


def transformed(base: dict | None = None, x: str | list[str] = "none", y: str | list[str] = "none",
                device: str | torch.device = "cpu") -> TransformedTask:
    """The ``transformed`` family: ``base`` is a task table (``family`` and its parameters)."""
    from . import TASK_FAMILIES

    if not isinstance(base, dict) or not isinstance(base.get("family"), str):
        raise ConfigError(f"transformed: base must be a table with a 'family' key and that family's "
                          f"parameters, got {base!r}")
    params = {k: v for k, v in base.items() if k != "family"}
    return TransformedTask(TASK_FAMILIES[base["family"]].build(params, device=device), x, y)
