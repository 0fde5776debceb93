"""Gaussian task families whose mutual information has a closed form."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..interface import ConfigError, GroundTruth, number

# Invertible elementwise maps applied to y. They leave I(X; Y) unchanged, but make the joint
# non-Gaussian, so a critic cannot rely on linear structure. name -> (forward, inverse)
TRANSFORMS = {
    "none": (lambda t: t, lambda t: t),
    "cubic": (lambda t: t**3, lambda t: torch.sign(t) * t.abs().pow(1 / 3)),
    "asinh": (torch.asinh, torch.sinh),
}


# The most MI per coordinate a float32 sample can carry: y = rho x + sqrt(1 - rho^2) eps, and the
# noise's scale sqrt(1 - rho^2) = exp(-mi / dim) reaches float32's relative precision 2^-23 at
# 23 ln 2 nats; beyond it y is x rounded, whatever rho says. (rho itself rounds to 1 in float64
# a little further on, at about 18.4 nats per coordinate.)
MAX_MI_PER_DIM = 23 * math.log(2)


def chosen_mi(mi: object, pairs: int, where: str) -> float:
    """A chosen MI (nats, spread over ``pairs`` correlated coordinate pairs) checked: a finite
    number >= 0 and at most MAX_MI_PER_DIM per pair, else a ConfigError saying so."""
    v = number(mi, f"{where}: mi")
    if not 0.0 <= v <= MAX_MI_PER_DIM * pairs:
        raise ConfigError(f"{where}: mi must be a number of nats from 0 to {MAX_MI_PER_DIM * pairs:.4g} (23 ln 2 = "
                          f"{MAX_MI_PER_DIM:.2f} per correlated pair, where the noise sqrt(1 - rho^2) = exp(-mi / "
                          f"pairs) falls to float32's precision 2^-23), got {mi!r}")
    return v


def rho_for_mi(mi: float, dim: int) -> float:
    """The per-coordinate correlation that gives ``dim`` independent pairs a total MI of ``mi`` nats."""
    return math.sqrt(1.0 - math.exp(-2.0 * mi / dim))


def mi_for_rho(rho: float, dim: int) -> float:
    """I = -(dim/2) ln(1 - rho^2), nats."""
    return -0.5 * dim * math.log1p(-rho * rho)


class CorrelatedGaussian:
    """x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) eps with eps ~ N(0, I_d) (Poole et al. 2019).

    Give either ``rho`` or the target ``mi`` (nats). ``transform`` is an invertible map applied
    to y coordinate-wise; it does not change the MI.
    """

    family = "gaussian"

    def __init__(self, dim: int = 20, rho: float | None = None, mi: float | None = None,
                 transform: str = "none", device: str | torch.device = "cpu"):
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ConfigError(f"gaussian: dim must be a positive integer, got {dim!r}")
        if (rho is None) == (mi is None):
            raise ConfigError("gaussian: give exactly one of rho (in (-1, 1)) or mi (nats, >= 0)")
        if rho is not None and not -1.0 < number(rho, "gaussian: rho") < 1.0:
            raise ConfigError(f"gaussian: rho must lie in (-1, 1), got {rho!r}")
        if mi is not None and not 0.0 <= number(mi, "gaussian: mi") < math.inf:
            raise ConfigError(f"gaussian: mi must be a finite number of nats >= 0, got {mi!r}")
        if transform not in TRANSFORMS:
            raise ConfigError(f"gaussian: unknown transform {transform!r}; allowed: {', '.join(TRANSFORMS)}")
        self.dim = dim
        self.rho = float(rho) if rho is not None else rho_for_mi(float(mi), dim)
        if self.rho ** 2 >= 1.0 or self.mi > MAX_MI_PER_DIM * dim:
            given = f"mi = {mi!r} nats" if mi is not None else f"rho = {rho!r} (I = {self.mi:.4g} nats)"
            raise ConfigError(f"gaussian: {given} is more than float32 samples of dim = {dim} can carry: at most "
                              f"23 ln 2 = {MAX_MI_PER_DIM:.2f} nats per coordinate ({MAX_MI_PER_DIM * dim:.4g} "
                              "nats here), where the noise sqrt(1 - rho^2) = exp(-mi / dim) falls to float32's "
                              "precision 2^-23")
        self.transform = transform
        self.device = torch.device(device)
        self.x_shape = self.y_shape = (dim,)
        self.name = f"gaussian-d{dim}-mi{self.mi:.3g}" + ("" if transform == "none" else f"-{transform}")

    @classmethod
    def params_with_mi(cls, params: dict, mi: float) -> dict:
        """The same family at another MI level (the staircase protocol steps through these)."""
        return {**{k: v for k, v in params.items() if k not in ("rho", "mi")}, "mi": mi}

    @property
    def mi(self) -> float:
        return mi_for_rho(self.rho, self.dim)

    def ground_truth(self) -> GroundTruth:
        return GroundTruth(self.mi, "analytic", note=f"-(d/2) ln(1 - rho^2), d={self.dim}, rho={self.rho:.6g}")

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x = torch.randn(n, self.dim, generator=generator, device=self.device)
        eps = torch.randn(n, self.dim, generator=generator, device=self.device)
        y = self.rho * x + math.sqrt(1.0 - self.rho**2) * eps
        return x, TRANSFORMS[self.transform][0](y)

    def heldout(self) -> "CorrelatedGaussian":
        return self

    def log_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y) / (p(x) p(y)), the optimal critic, for broadcastable x: (..., d), y: (..., d)."""
        y = TRANSFORMS[self.transform][1](y)
        r2 = self.rho**2
        quad = (y - self.rho * x).pow(2) / (1 - r2) - y.pow(2)
        return -0.5 * (quad.sum(-1) + self.dim * math.log1p(-r2))

    def entropy_y(self) -> float | None:
        """Differential entropy of y in nats; None under a transform (not computed here)."""
        if self.transform != "none":
            return None
        return 0.5 * self.dim * math.log(2 * math.pi * math.e)


class JointGaussian:
    """(x, y) ~ N(0, cov) with a general joint covariance; x is the first ``dim_x`` coordinates.

    I = 1/2 ln(det S_xx det S_yy / det S).
    """

    family = "gaussian_cov"

    def __init__(self, cov: list[list[float]], dim_x: int, device: str | torch.device = "cpu"):
        try:
            cov_t = torch.as_tensor(cov, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ConfigError(f"gaussian_cov: cov must be a square matrix of numbers, got {cov!r}") from None
        if isinstance(dim_x, bool) or not isinstance(dim_x, int):
            raise ConfigError(f"gaussian_cov: dim_x must be an integer, got {dim_x!r}")
        if cov_t.ndim != 2 or cov_t.shape[0] != cov_t.shape[1]:
            raise ConfigError(f"gaussian_cov: cov must be a square matrix, got shape {tuple(cov_t.shape)}")
        if not 0 < dim_x < cov_t.shape[0]:
            raise ConfigError(f"gaussian_cov: dim_x must be in 1..{cov_t.shape[0] - 1}, got {dim_x!r}")
        if not torch.allclose(cov_t, cov_t.T):
            raise ConfigError("gaussian_cov: cov must be symmetric")
        chol, info = torch.linalg.cholesky_ex(cov_t)
        if info != 0:
            raise ConfigError("gaussian_cov: cov must be positive definite")
        self.cov, self.dim_x, self.device = cov_t, dim_x, torch.device(device)
        self.x_shape, self.y_shape = (dim_x,), (cov_t.shape[0] - dim_x,)
        self._chol = chol.to(self.device, torch.float32)
        self.name = f"gaussian_cov-{dim_x}x{cov_t.shape[0] - dim_x}-mi{self.ground_truth().mi:.3g}"

    def ground_truth(self) -> GroundTruth:
        s, k = self.cov, self.dim_x
        mi = 0.5 * (torch.logdet(s[:k, :k]) + torch.logdet(s[k:, k:]) - torch.logdet(s)).item()
        return GroundTruth(mi, "analytic", note="1/2 ln(det Sxx det Syy / det S)")

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        z = torch.randn(n, self.cov.shape[0], generator=generator, device=self.device) @ self._chol.T
        return z[:, : self.dim_x], z[:, self.dim_x:]

    def heldout(self) -> "JointGaussian":
        return self

    def log_ratio(self, x: Tensor, y: Tensor) -> Tensor:
        """log p(x, y) / (p(x) p(y)) for broadcastable x: (..., dim_x), y: (..., dim_y)."""
        k = self.dim_x
        lead = torch.broadcast_shapes(x.shape[:-1], y.shape[:-1])
        xy = torch.cat([x.expand(*lead, x.shape[-1]), y.expand(*lead, y.shape[-1])], -1).double()
        s = self.cov.to(xy.device)
        def logpdf(v: Tensor, cov: Tensor) -> Tensor:
            return -0.5 * (v @ torch.linalg.inv(cov) * v).sum(-1) - 0.5 * torch.logdet(cov)
        out = logpdf(xy, s) - logpdf(xy[..., :k], s[:k, :k]) - logpdf(xy[..., k:], s[k:, k:])
        return out.float()
