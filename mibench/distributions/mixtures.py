"""Mixture tasks of BMI's second benchmark (Czyż et al., "The Mixtures and the Neural Critics",
TMLR 2025): Gaussian mixtures, some bent by an invertible map of x, whose MI is a Monte Carlo
mean of the pointwise log-density ratio.

Each task is a Gaussian mixture over (x, y) (weights w_k, means m_k, covariances S_k); the
marginals of x and y are the mixtures of the components' marginal blocks with the same weights,
so log p(x, y), log p(x) and log p(y) are exact. Waves and Galaxy push x through a
diffeomorphism f; then log p(f(x), y) = log p(x, y) - log|det J_f(x)| and log p(f(x)) =
log p(x) - log|det J_f(x)|, so the Jacobian cancels in the ratio (the map acts on x alone).

The truth, I = E[log p(x, y) - log p(x) - log p(y)], is the mean over ``truth_samples`` draws
(float64, on the CPU, from a fixed seed), with its standard error sd / sqrt(N). It is computed
once per parameter set: cached in the process and on disk, as JSON under
``$XDG_CACHE_HOME/mibench/truth/`` (else ``~/.cache/mibench/truth/``). A cache file that cannot
be read or does not hold a valid truth for the same key is recomputed; a cache that cannot be
written is skipped.

``V2_TASKS`` maps BMI's task ids (as ``bmi.benchmark.Task.id`` gives them) to builders of the
13 mixture tasks of BMI's v2 benchmark. BMI's v2 workflow also standardises every sample it
hands to an estimator (per sample, per coordinate); that leaves the MI unchanged and is not done
here: the tasks draw from the distributions themselves.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..interface import ConfigError, GroundTruth, Task, number
from .family import TaskFamily
from .montecarlo import GaussianMixture, cache_key, read_cached, write_cached, truth_cache_dir

log = logging.getLogger(__name__)

TRUTH_SEED = 20250118      # the seed of the Monte Carlo truth
TRUTH_SAMPLES = 200_000    # default N: standard errors of 0.001-0.004 nats on BMI's v2 tasks
_CHUNK = 50_000            # draws per step of the truth (the draw depends on it: part of the version)
_LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------------------------------
# Parameter checks: one-line ConfigErrors naming the parameter and what is allowed


def _integer(value: object, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f">= {low}" if high is None else f"in {low}..{high}"
        raise ConfigError(f"{what} must be an integer {allowed}, got {value!r}")
    return int(value)


def _real(value: object, what: str, check: Callable[[float], bool] = math.isfinite,
          allowed: str = "a finite number") -> float:
    v = number(value, what)
    if not (math.isfinite(v) and check(v)):
        raise ConfigError(f"{what} must be {allowed}, got {value!r}")
    return v


# ------------------------------------------------------------------------------------------
# The truth: Monte Carlo, cached in the process and on disk (mibench.distributions.montecarlo)


def monte_carlo_mi(task: MixtureTask, n: int, seed: int) -> tuple[float, float]:
    """Mean and standard error of log p(x, y) - log p(x) - log p(y) over n draws of the task
    (float64, CPU, a generator seeded with ``seed``, in chunks of a fixed size)."""
    gen = torch.Generator().manual_seed(seed)
    mix = task._mixture(torch.device("cpu"), torch.float64)
    pmi = []
    for start in range(0, n, _CHUNK):
        xy = mix.sample(min(_CHUNK, n - start), gen)
        x, y = xy[:, : mix.dim_x], xy[:, mix.dim_x:]
        pmi.append(task._log_ratio_f64(task._forward_x(x), y))
    values = torch.cat(pmi)
    if not torch.isfinite(values).all():
        raise RuntimeError(f"{task.name}: non-finite log-density ratio in the Monte Carlo truth")
    return values.mean().item(), (values.std() / math.sqrt(n)).item()


@functools.cache
def cached_truth(cls: type, params: tuple, n: int, seed: int = TRUTH_SEED) -> tuple[float, float, float, bool]:
    """(mi, stderr, seconds it took, whether it came from disk) for the task ``cls(**params)``."""
    key, digest = cache_key(cls.__name__, params, n, seed)
    path = truth_cache_dir() / f"{cls.__name__}-{digest}.json"
    hit = read_cached(path, key)
    if hit is not None:
        return (*hit, True)
    start = time.perf_counter()
    mi, stderr = monte_carlo_mi(cls(**dict(params), truth_samples=n), n, seed)
    seconds = time.perf_counter() - start
    write_cached(path, {"key": key, "mi": mi, "stderr": stderr, "seconds": seconds})
    return mi, stderr, seconds, False


# ------------------------------------------------------------------------------------------
# The tasks


class MixtureTask:
    """A Gaussian mixture over (x, y), with x optionally pushed through a diffeomorphism.

    Subclasses set ``family``, ``params`` (the distribution's parameters, BMI's names),
    ``bmi_id``, ``dim_x``, ``dim_y`` and define ``_components()`` (weights, means, covariances
    as float64 tensors); a bent one overrides ``_forward_x`` and ``_inverse_x``.
    """

    family = ""
    params: dict[str, Any]
    bmi_id: str

    def _setup(self, dim_x: int, dim_y: int, truth_samples: object, device: str | torch.device) -> None:
        self.truth_samples = _integer(truth_samples, f"{self.family}: truth_samples", 1000)
        self.dim_x, self.dim_y = dim_x, dim_y
        self.x_shape, self.y_shape = (dim_x,), (dim_y,)
        self.device = torch.device(device)
        self.name = self.bmi_id
        self._mixtures: dict[tuple, GaussianMixture] = {}

    def _components(self) -> tuple[Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def _mixture(self, device: torch.device, dtype: torch.dtype) -> GaussianMixture:
        key = (device, dtype)
        if key not in self._mixtures:
            self._mixtures[key] = GaussianMixture(*self._components(), self.dim_x, device, dtype)
        return self._mixtures[key]

    # the map applied to x (identity here): forward, and inverse with log|det J_forward|
    def _forward_x(self, x: Tensor) -> Tensor:
        return x

    def _inverse_x(self, x: Tensor) -> tuple[Tensor, Tensor | float]:
        return x, 0.0

    # --- the Task protocol

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        xy = self._mixture(self.device, torch.float32).sample(n, generator)
        return self._forward_x(xy[:, : self.dim_x]), xy[:, self.dim_x:]

    def heldout(self) -> MixtureTask:
        return self

    def ground_truth(self) -> GroundTruth:
        mi, stderr, _, _ = cached_truth(type(self), tuple(sorted(self.params.items())),
                                        self.truth_samples, TRUTH_SEED)
        note = (f"Monte Carlo mean of log p(x,y) - log p(x) - log p(y) over N={self.truth_samples} "
                f"draws (seed {TRUTH_SEED}, float64); BMI task {self.bmi_id}")
        return GroundTruth(max(mi, 0.0), "monte_carlo", stderr, note)     # I >= 0: a tie at 0 can round below

    # --- densities

    def log_densities(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """log p(x, y), log p(x), log p(y) in float64 for x: (n, dim_x), y: (n, dim_y), points
        of the distribution ``sample`` draws from (Jacobian of the map of x included)."""
        mix = self._mixture(x.device, torch.float64)
        base, logdet = self._inverse_x(x.double())
        y = y.double()
        joint = mix.log_prob(torch.cat([base, y], -1), "joint") - logdet
        return joint, mix.log_prob(base, "x") - logdet, mix.log_prob(y, "y")

    def _log_ratio_f64(self, x: Tensor, y: Tensor) -> Tensor:
        joint, px, py = self.log_densities(x, y)
        return joint - px - py

    def log_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y) / (p(x) p(y)), the optimal critic, for broadcastable x: (..., dim_x),
        y: (..., dim_y); computed in float64, returned in x's dtype."""
        lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        xf = x.expand(*lead, self.dim_x).reshape(-1, self.dim_x)
        yf = y.expand(*lead, self.dim_y).reshape(-1, self.dim_y)
        return self._log_ratio_f64(xf, yf).reshape(lead).to(x.dtype)


class XTask(MixtureTask):
    """BMI's X (1 x 1): an equal mixture of two standard bivariate normals with correlations
    +rho and -rho (``gaussian_correlation``); both marginals are N(0, 1)."""

    family = "bmi_x"

    def __init__(self, gaussian_correlation: float = 0.9, truth_samples: int = TRUTH_SAMPLES,
                 device: str | torch.device = "cpu"):
        rho = _real(gaussian_correlation, "bmi_x: gaussian_correlation", lambda r: -1 < r < 1, "in (-1, 1)")
        self.params = {"gaussian_correlation": rho}
        self.bmi_id = f"1v1-X-{rho}"
        self._setup(1, 1, truth_samples, device)

    def _components(self):
        rho = self.params["gaussian_correlation"]
        covs = torch.tensor([[[1.0, -rho], [-rho, 1.0]], [[1.0, rho], [rho, 1.0]]], dtype=torch.float64)
        return torch.tensor([0.5, 0.5]), torch.zeros(2, 2), covs


class AITask(MixtureTask):
    """BMI's AI (1 x 1): six equally weighted bivariate normals drawing the letters A and I."""

    family = "bmi_ai"

    def __init__(self, truth_samples: int = TRUTH_SAMPLES, device: str | torch.device = "cpu"):
        self.params = {}
        self.bmi_id = "1v1-AI"
        self._setup(1, 1, truth_samples, device)

    def _components(self):
        var_x, corr, var_y = 0.04, 0.95, 0.2
        c = math.sqrt(var_x * var_y) * corr
        means = [[1.0, 0.0], [1.0, 1.0], [1.0, -1.0], [-0.8, -0.2], [-1.2, 0.0], [-0.4, 0.0]]
        covs = [[[0.01, 0.0], [0.0, 0.2]],       # the I: its stem and two serifs
                [[0.05, 0.0], [0.0, 0.001]],
                [[0.05, 0.0], [0.0, 0.001]],
                [[0.03, 0.0], [0.0, 0.001]],     # the A: its bar and two slanted legs
                [[var_x, c], [c, var_y]],
                [[var_x, -c], [-c, var_y]]]
        return torch.full((6,), 1 / 6), torch.tensor(means), torch.tensor(covs, dtype=torch.float64)


class WavesTask(MixtureTask):
    """BMI's Waves (2 x 1): ``n_components`` equally weighted normals with covariance
    diag(0.1, 1, 0.1) and means 1.5 (k, 0, k mod 4), k = 0 .. n-1; then x -> x + (a sin(f x_2), 0)
    and x -> (0.1 x_1 - 0.8, 0.5 x_2) (a = ``wave_amplitude``, f = ``wave_frequency``)."""

    family = "bmi_waves"

    def __init__(self, n_components: int = 12, wave_amplitude: float = 5.0, wave_frequency: float = 3.0,
                 truth_samples: int = TRUTH_SAMPLES, device: str | torch.device = "cpu"):
        k = _integer(n_components, "bmi_waves: n_components", 1)
        amp = _real(wave_amplitude, "bmi_waves: wave_amplitude")
        freq = _real(wave_frequency, "bmi_waves: wave_frequency")
        self.params = {"n_components": k, "wave_amplitude": amp, "wave_frequency": freq}
        self.bmi_id = f"2v1-waves-{k}-{amp}-{freq}"
        self._setup(2, 1, truth_samples, device)

    def _components(self):
        k = self.params["n_components"]
        means = torch.tensor([[1.5 * i, 0.0, 1.5 * (i % 4)] for i in range(k)], dtype=torch.float64)
        covs = torch.diag(torch.tensor([0.1, 1.0, 0.1], dtype=torch.float64)).expand(k, 3, 3)
        return torch.full((k,), 1 / k), means, covs

    def _forward_x(self, x):
        amp, freq = self.params["wave_amplitude"], self.params["wave_frequency"]
        u = x[:, 0] + amp * torch.sin(freq * x[:, 1])
        return torch.stack([0.1 * u - 0.8, 0.5 * x[:, 1]], -1)

    def _inverse_x(self, z):
        amp, freq = self.params["wave_amplitude"], self.params["wave_frequency"]
        x2 = z[:, 1] / 0.5
        x1 = (z[:, 0] + 0.8) / 0.1 - amp * torch.sin(freq * x2)
        return torch.stack([x1, x2], -1), math.log(0.1 * 0.5)      # the shear has determinant 1


class GalaxyTask(MixtureTask):
    """BMI's Galaxy (2 x 1): two equally weighted standard normals in 3-d at +-(d/2)(1, 1, 1)
    (d = ``distance``); x (the first two coordinates) is then spiralled, x -> R(s |x|^2) x
    with R(t) the rotation by angle t (s = ``speed``), a map of determinant 1."""

    family = "bmi_galaxy"

    def __init__(self, speed: float = 0.5, distance: float = 3.0, truth_samples: int = TRUTH_SAMPLES,
                 device: str | torch.device = "cpu"):
        s = _real(speed, "bmi_galaxy: speed")
        d = _real(distance, "bmi_galaxy: distance")
        self.params = {"speed": s, "distance": d}
        self.bmi_id = f"2v1-galaxy-{s}-{d}"
        self._setup(2, 1, truth_samples, device)

    def _components(self):
        h = self.params["distance"] / 2
        means = torch.tensor([[-h] * 3, [h] * 3], dtype=torch.float64)
        return torch.tensor([0.5, 0.5]), means, torch.eye(3, dtype=torch.float64).expand(2, 3, 3)

    def _rotate(self, x: Tensor, sign: float) -> Tensor:
        angle = sign * self.params["speed"] * x.pow(2).sum(-1)       # |x| is kept, so is the angle
        cos, sin = torch.cos(angle), torch.sin(angle)
        return torch.stack([cos * x[:, 0] - sin * x[:, 1], sin * x[:, 0] + cos * x[:, 1]], -1)

    def _forward_x(self, x):
        return self._rotate(x, 1.0)

    def _inverse_x(self, z):
        return self._rotate(z, -1.0), 0.0


class ConcentricGaussians(MixtureTask):
    """BMI's concentric multinormal (dim_x x 1): component i = 1 .. n (equal weights) has
    x ~ N(0, i^2 I) and y ~ N(i, 1e-4), independent within the component."""

    family = "concentric_gaussians"

    def __init__(self, dim_x: int, n_components: int = 3, truth_samples: int = TRUTH_SAMPLES,
                 device: str | torch.device = "cpu"):
        dx = _integer(dim_x, "concentric_gaussians: dim_x", 1)
        k = _integer(n_components, "concentric_gaussians: n_components", 1)
        self.params = {"dim_x": dx, "n_components": k}
        self.bmi_id = f"{dx}v1-concentric_gaussians-{k}"
        self._setup(dx, 1, truth_samples, device)

    def _components(self):
        dx, k = self.params["dim_x"], self.params["n_components"]
        i = torch.arange(1, k + 1, dtype=torch.float64)
        means = torch.zeros(k, dx + 1, dtype=torch.float64)
        means[:, -1] = i
        var = torch.cat([(i**2)[:, None].expand(k, dx), torch.full((k, 1), 1e-4, dtype=torch.float64)], 1)
        return torch.full((k,), 1 / k), means, torch.diag_embed(var)


def sparse_correlation(dim_x: int, dim_y: int, n_interacting: int, strength: float) -> Tensor:
    """The correlation matrix of BMI's sparse Gaussian latent-variable model (alpha = beta = 0,
    epsilon = 1, lambda = eta = ``strength``): unit variances, corr(x_i, y_i) =
    strength^2 / (1 + strength^2) for i < n_interacting, every other correlation 0."""
    cov = torch.zeros(dim_x + dim_y, dim_x + dim_y, dtype=torch.float64)
    cov.diagonal().fill_(1.0 + strength**2)        # epsilon^2 + (lambda^2 or eta^2)
    for i in range(n_interacting):
        cov[i, dim_x + i] = cov[dim_x + i, i] = strength**2
    sd = cov.diagonal().sqrt()
    return cov / (sd[:, None] * sd[None, :])


class SparseGaussianInliers(MixtureTask):
    """BMI's sparse multinormal with inliers (dim_x x dim_y): with probability
    1 - ``inlier_fraction``, (x, y) ~ N(0, C) with C the sparse correlation matrix
    (``n_interacting`` pairs x_i, y_i correlated by strength^2 / (1 + strength^2)); otherwise
    x and y are drawn independently from the same marginals."""

    family = "sparse_gaussian_inliers"

    def __init__(self, dim_x: int, dim_y: int, n_interacting: int = 2, strength: float = 2.0,
                 inlier_fraction: float = 0.2, truth_samples: int = TRUTH_SAMPLES,
                 device: str | torch.device = "cpu"):
        dx = _integer(dim_x, "sparse_gaussian_inliers: dim_x", 1)
        dy = _integer(dim_y, "sparse_gaussian_inliers: dim_y", 1)
        k = _integer(n_interacting, "sparse_gaussian_inliers: n_interacting", 0, min(dx, dy))
        s = _real(strength, "sparse_gaussian_inliers: strength")
        f = _real(inlier_fraction, "sparse_gaussian_inliers: inlier_fraction", lambda v: 0 <= v < 1, "in [0, 1)")
        self.params = {"dim_x": dx, "dim_y": dy, "n_interacting": k, "strength": s, "inlier_fraction": f}
        self.bmi_id = f"mult-sparse-w-inliers-{dx}-{dy}-{k}-{s}-{f}"
        self._setup(dx, dy, truth_samples, device)

    def _components(self):
        p = self.params
        signal = sparse_correlation(p["dim_x"], p["dim_y"], p["n_interacting"], p["strength"])
        noise = torch.block_diag(signal[: p["dim_x"], : p["dim_x"]], signal[p["dim_x"]:, p["dim_x"]:])
        dim = p["dim_x"] + p["dim_y"]
        weights = torch.tensor([1 - p["inlier_fraction"], p["inlier_fraction"]], dtype=torch.float64)
        return weights, torch.zeros(2, dim, dtype=torch.float64), torch.stack([signal, noise])


# ------------------------------------------------------------------------------------------
# BMI's v2 mixture tasks by id, and the families

_V2_PARAMS: list[tuple[type, dict[str, Any]]] = [
    (XTask, {}),
    (AITask, {}),
    (WavesTask, {}),
    (GalaxyTask, {}),
    (ConcentricGaussians, {"dim_x": 3, "n_components": 5}),
    (ConcentricGaussians, {"dim_x": 5, "n_components": 5}),
    (ConcentricGaussians, {"dim_x": 3, "n_components": 10}),
    (ConcentricGaussians, {"dim_x": 5, "n_components": 10}),
    (ConcentricGaussians, {"dim_x": 25, "n_components": 5}),
    (SparseGaussianInliers, {"dim_x": 5, "dim_y": 5, "inlier_fraction": 0.2}),
    (SparseGaussianInliers, {"dim_x": 25, "dim_y": 25, "inlier_fraction": 0.2}),
    (SparseGaussianInliers, {"dim_x": 5, "dim_y": 5, "inlier_fraction": 0.5}),
    (SparseGaussianInliers, {"dim_x": 25, "dim_y": 25, "inlier_fraction": 0.5}),
]

# BMI task id -> builder taking ``device=`` (and optionally ``truth_samples=``)
V2_TASKS: dict[str, Callable[..., Task]] = {
    cls(**params).bmi_id: functools.partial(cls, **params) for cls, params in _V2_PARAMS
}

_TRUTH = f"Monte Carlo mean of the log-density ratio (± standard error); N = truth_samples ({TRUTH_SAMPLES})"
_EXAMPLE_N = 20_000          # a quick truth for the contract tests

FAMILIES: list[TaskFamily] = [
    TaskFamily("bmi_x", XTask, _TRUTH,
               "BMI's X: equal mixture of 2-d normals with correlation +-rho, 1 x 1; params gaussian_correlation",
               example={"truth_samples": _EXAMPLE_N}),
    TaskFamily("bmi_ai", AITask, _TRUTH,
               "BMI's AI: six 2-d normals drawing the letters A and I, 1 x 1; no params but truth_samples",
               example={"truth_samples": _EXAMPLE_N}),
    TaskFamily("bmi_waves", WavesTask, _TRUTH,
               "BMI's Waves: 12 normals in 3-d, x bent by a sine shear, 2 x 1; "
               "params n_components, wave_amplitude, wave_frequency",
               example={"n_components": 4, "truth_samples": _EXAMPLE_N}),
    TaskFamily("bmi_galaxy", GalaxyTask, _TRUTH,
               "BMI's Galaxy: two normals in 3-d, x spiralled, 2 x 1; params speed, distance",
               example={"truth_samples": _EXAMPLE_N}),
    TaskFamily("concentric_gaussians", ConcentricGaussians, _TRUTH,
               "x ~ N(0, i^2 I), y ~ N(i, 1e-4), i uniform on 1..n; params dim_x, n_components",
               example={"dim_x": 3, "n_components": 3, "truth_samples": _EXAMPLE_N}),
    TaskFamily("sparse_gaussian_inliers", SparseGaussianInliers, _TRUTH,
               "sparse correlated normal, a fraction of pairs made independent; "
               "params dim_x, dim_y, n_interacting, strength, inlier_fraction",
               example={"dim_x": 3, "dim_y": 3, "inlier_fraction": 0.2, "truth_samples": _EXAMPLE_N}),
]

__all__ = ["FAMILIES", "V2_TASKS", "AITask", "ConcentricGaussians", "GalaxyTask", "GaussianMixture",
           "MixtureTask", "SparseGaussianInliers", "WavesTask", "XTask", "cached_truth", "monte_carlo_mi",
           "sparse_correlation", "truth_cache_dir"]
