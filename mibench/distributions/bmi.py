"""The distributions of the BMI benchmark (Czyz et al., "Beyond Normal", NeurIPS 2023), with
their exact truths, and the ``bmi`` family, which builds any task of its suites by BMI's id.

Each class follows BMI's definitions (covariances, defaults, ids); names are BMI's task ids, so
a transformed task's name is BMI's id too ("spiral-multinormal-sparse-3-3-2-2.0").
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from ..interface import ConfigError, GroundTruth, Task, number
from ..registry import unknown_name
from .family import TaskFamily
from .gaussian import JointGaussian, chosen_mi
from .transforms import TransformedTask, bisect_increasing, transformed


def _dim(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def _finite(value: object, what: str) -> float:
    v = number(value, what)
    if not math.isfinite(v):
        raise ConfigError(f"{what} must be finite, got {value!r}")
    return v


def _covariance(cov: object, n: int, what: str) -> Tensor:
    """``cov`` as an (n, n) float64 tensor, checked symmetric and positive definite."""
    try:
        s = torch.as_tensor(cov, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{what} must be a square matrix of numbers, got {cov!r}") from None
    if tuple(s.shape) != (n, n):
        raise ConfigError(f"{what} must have shape ({n}, {n}) (dim_x + dim_y), got {tuple(s.shape)}")
    if not torch.allclose(s, s.T):
        raise ConfigError(f"{what} must be symmetric")
    if torch.linalg.cholesky_ex(s).info != 0:
        raise ConfigError(f"{what} must be positive definite")
    return s


class SplitNormal(JointGaussian):
    """(x, y) ~ N(0, S), x the first dim_x coordinates; I = 1/2 ln(det Sxx det Syy / det S)."""

    def __init__(self, cov: Tensor, dim_x: int, name: str, device: str | torch.device = "cpu"):
        super().__init__(cov, dim_x, device)
        self.name = name

    def entropy_y(self) -> float:
        """H(y) = 1/2 ln((2 pi e)^d det Syy), nats."""
        syy = self.cov[self.dim_x:, self.dim_x:]
        return 0.5 * (syy.shape[0] * math.log(2 * math.pi * math.e) + torch.logdet(syy).item())


class BivariateNormal(SplitNormal):
    """BMI's ``1v1-normal-<c>``: x, y standard normal with correlation c; I = -1/2 ln(1 - c^2)."""

    family = "bivariate_normal"

    def __init__(self, correlation: float = 0.75, device: str | torch.device = "cpu"):
        c = number(correlation, "bivariate_normal: correlation")
        if not -1.0 < c < 1.0:
            raise ConfigError(f"bivariate_normal: correlation must lie in (-1, 1), got {correlation!r}")
        self.correlation = c
        super().__init__(torch.tensor([[1.0, c], [c, 1.0]], dtype=torch.float64), 1, f"1v1-normal-{c}", device)

    @classmethod
    def params_with_mi(cls, params: dict, mi: float) -> dict:
        mi = chosen_mi(mi, 1, "bivariate_normal")
        return {**params, "correlation": math.sqrt(-math.expm1(-2.0 * mi))}

    def ground_truth(self) -> GroundTruth:
        c = self.correlation
        return GroundTruth(-0.5 * math.log1p(-c * c), "analytic", note=f"-1/2 ln(1 - c^2), c={c:g}")


class MultinormalDense(SplitNormal):
    """BMI's ``multinormal-dense``: unit variances and every other correlation (within x, within
    y and between them) equal to ``off_diag``: S = (1 - c) I + c 11^T."""

    family = "bmi_multinormal_dense"

    def __init__(self, dim_x: int = 2, dim_y: int = 2, off_diag: float = 0.5, device: str | torch.device = "cpu"):
        dx, dy = _dim(dim_x, "bmi_multinormal_dense: dim_x"), _dim(dim_y, "bmi_multinormal_dense: dim_y")
        c, n = number(off_diag, "bmi_multinormal_dense: off_diag"), dx + dy
        if not -1.0 / (n - 1) < c < 1.0:
            raise ConfigError(f"bmi_multinormal_dense: off_diag must lie in (-1/(dim_x + dim_y - 1), 1) = "
                              f"({-1.0 / (n - 1):.4g}, 1) for a positive-definite covariance, got {off_diag!r}")
        cov = torch.eye(n, dtype=torch.float64) * (1.0 - c) + c
        super().__init__(cov, dx, f"multinormal-dense-{dx}-{dy}-{c}", device)


def sparse_correlation(dim_x: int, dim_y: int, n_interacting: int, strength: float) -> Tensor:
    """BMI's sparse (latent-variable) matrix with alpha = beta = 0, lambda = eta = strength,
    epsilon = 1, normalised to correlations: every variance 1 + s^2, Cov(X_i, Y_i) = s^2 for
    i < n_interacting, so Cor(X_i, Y_i) = s^2 / (1 + s^2) and all other correlations are 0."""
    s2 = strength * strength
    cov = torch.eye(dim_x + dim_y, dtype=torch.float64)
    idx = torch.arange(n_interacting)
    cov[idx, dim_x + idx] = cov[dim_x + idx, idx] = s2 / (1.0 + s2)
    return cov


class MultinormalSparse(SplitNormal):
    """BMI's ``multinormal-sparse`` (``task_multinormal_2pair`` with n_interacting = 2): the first
    n_interacting coordinates of x and y paired with correlation s^2 / (1 + s^2), the rest
    independent; I = -(n/2) ln(1 - (s^2 / (1 + s^2))^2)."""

    family = "bmi_multinormal_sparse"

    def __init__(self, dim_x: int = 2, dim_y: int = 2, n_interacting: int = 2, strength: float = 2.0,
                 device: str | torch.device = "cpu"):
        where = "bmi_multinormal_sparse"
        dx, dy = _dim(dim_x, f"{where}: dim_x"), _dim(dim_y, f"{where}: dim_y")
        k = n_interacting
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= min(dx, dy):
            raise ConfigError(f"{where}: n_interacting must be an integer in 0..min(dim_x, dim_y) = "
                              f"0..{min(dx, dy)}, got {n_interacting!r}")
        s = float(_finite(strength, f"{where}: strength"))
        self.n_interacting, self.strength = k, s
        super().__init__(sparse_correlation(dx, dy, k, s), dx, f"multinormal-sparse-{dx}-{dy}-{k}-{s}", device)

    @classmethod
    def params_with_mi(cls, params: dict, mi: float) -> dict:
        """The strength giving ``mi`` nats over the n_interacting pairs."""
        k = params.get("n_interacting", 2)
        if not isinstance(k, int) or k < 1:
            raise ConfigError(f"bmi_multinormal_sparse: a chosen MI needs n_interacting >= 1, got {k!r}")
        mi = chosen_mi(mi, k, "bmi_multinormal_sparse")
        c = math.sqrt(-math.expm1(-2.0 * mi / k))          # the pair correlation s^2 / (1 + s^2)
        return {**params, "strength": math.sqrt(c / (1.0 - c))}


def student_entropy(k: int, df: float) -> float:
    """Differential entropy of a k-dim Student-t with identity dispersion (Arellano-Valle,
    Contreras-Reyes & Genton 2013, eq. 7), nats."""
    h = 0.5 * (df + k)
    return (math.lgamma(0.5 * df) - math.lgamma(h) + 0.5 * k * math.log(df * math.pi)
            + h * (torch.special.digamma(torch.tensor(h, dtype=torch.float64))
                   - torch.special.digamma(torch.tensor(0.5 * df, dtype=torch.float64))).item())


class SplitStudentT:
    """(x, y) ~ multivariate Student-t(0, D, df), drawn as N(0, D) / sqrt(chi2_df / df). BMI's
    ``student-identity`` has D = I. I = I_normal(D) + h(dim_x) + h(dim_y) - h(dim_x + dim_y),
    with h the entropy of a standard Student-t of that dimension, as BMI's SplitStudentT computes it."""

    family = "student_t"

    def __init__(self, dim_x: int = 1, dim_y: int = 1, df: float = 1, dispersion: list | None = None,
                 device: str | torch.device = "cpu"):
        dx, dy = _dim(dim_x, "student_t: dim_x"), _dim(dim_y, "student_t: dim_y")
        nu = number(df, "student_t: df")
        if not 0 < nu < math.inf:
            raise ConfigError(f"student_t: df must be > 0 and finite, got {df!r}")
        identity = dispersion is None
        disp = torch.eye(dx + dy, dtype=torch.float64) if identity else \
            _covariance(dispersion, dx + dy, "student_t: dispersion")
        self.df, self.dim_x, self.dispersion, self.device = nu, dx, disp, torch.device(device)
        self.x_shape, self.y_shape = (dx,), (dy,)
        self._normal = JointGaussian(disp, dx, self.device)
        label = f"{int(nu)}" if nu.is_integer() else f"{nu}"
        self.name = f"student-{'identity' if identity else 'dispersion'}-{dx}-{dy}-{label}"

    def mi_correction(self) -> float:
        dx, dy, nu = self.x_shape[0], self.y_shape[0], self.df
        return student_entropy(dx, nu) + student_entropy(dy, nu) - student_entropy(dx + dy, nu)

    def ground_truth(self) -> GroundTruth:
        gauss = self._normal.ground_truth().mi
        return GroundTruth(gauss + self.mi_correction(), "analytic",
                           note=f"Gaussian part {gauss:.6g} + Student-t correction (digamma, log-gamma), df={self.df:g}")

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        z = torch.randn(n, self.dispersion.shape[0], generator=generator, device=self.device) @ self._normal._chol.T
        shape = torch.full((n, 1), 0.5 * self.df, dtype=torch.float64, device=self.device)
        chi2 = 2.0 * torch._standard_gamma(shape, generator=generator)        # chi-squared with df
        xy = z * torch.sqrt(self.df / chi2).float()
        return xy[:, : self.dim_x], xy[:, self.dim_x:]

    def heldout(self) -> SplitStudentT:
        return self

    def entropy_y(self) -> float:
        """H(y): a Student-t of dimension dim_y with dispersion D_yy, nats."""
        dyy = self.dispersion[self.dim_x:, self.dim_x:]
        return student_entropy(self.y_shape[0], self.df) + 0.5 * torch.logdet(dyy).item()


class AdditiveUniform:
    """BMI's ``1v1-additive-<eps>``: x ~ U(0, 1), y = x + U(-eps, eps). H(y | x) = ln(2 eps) and
    y's density is a trapezoid, so I = eps - ln(2 eps) for eps <= 1/2, 1 / (4 eps) above."""

    family = "additive_uniform"

    def __init__(self, epsilon: float = 0.1, device: str | torch.device = "cpu"):
        eps = number(epsilon, "additive_uniform: epsilon")
        if not 0 < eps < math.inf:
            raise ConfigError(f"additive_uniform: epsilon must be > 0 and finite, got {epsilon!r}")
        self.epsilon, self.device = eps, torch.device(device)
        self.x_shape = self.y_shape = (1,)
        self.x_bounds, self.y_bounds = (0.0, 1.0), (-eps, 1.0 + eps)
        self.name = f"1v1-additive-{eps}"

    def ground_truth(self) -> GroundTruth:
        e = self.epsilon
        mi = 0.25 / e if e > 0.5 else e - math.log(2 * e)
        return GroundTruth(mi, "analytic", note=f"eps - ln(2 eps) if eps <= 1/2 else 1/(4 eps); eps={e:g}")

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        u = torch.rand(n, 2, generator=generator, device=self.device)
        x = u[:, :1]
        return x, x + self.epsilon * (2.0 * u[:, 1:] - 1.0)

    def heldout(self) -> AdditiveUniform:
        return self

    def entropy_y(self) -> float:
        e = self.epsilon
        return e if e <= 0.5 else 0.25 / e + math.log(2 * e)


# The two-Gaussian mixtures (weights, means; unit sds) whose inverse CDFs BMI's bimodal task uses.
BIMODAL_X = ((0.3, 0.0), (0.7, 5.0))
BIMODAL_Y = ((0.5, -1.0), (0.5, 3.0))


def mixture_icdf(u: Tensor, mixture) -> Tensor:
    """The inverse CDF of a unit-sd Gaussian mixture on [-10, 10] (as in BMI): 10 bisection
    steps bracket the root to 0.02, then Newton steps (kept inside the bracket) converge to
    float64 precision; 14 vectorised passes instead of 56 of pure bisection."""
    def cdf(t: Tensor) -> Tensor:
        return sum(w * torch.special.ndtr(t - m) for w, m in mixture)

    def pdf(t: Tensor) -> Tensor:
        return sum(w * torch.exp(-0.5 * (t - m) ** 2) for w, m in mixture) / math.sqrt(2 * math.pi)

    lo, hi = torch.full_like(u, -10.0), torch.full_like(u, 10.0)
    t = bisect_increasing(cdf, u, lo, hi, steps=10)
    for _ in range(4):
        t = (t - (cdf(t) - u) / pdf(t).clamp_min(1e-300)).clamp(-10.0, 10.0)
    return t


class BimodalGaussians:
    """BMI's ``1v1-bimodal-<c>``: a bivariate normal of correlation c pushed to uniforms by the
    normal CDF and then through the inverse CDFs of 0.3 N(0, 1) + 0.7 N(5, 1) (x) and
    0.5 N(-1, 1) + 0.5 N(3, 1) (y): increasing maps, so I = -1/2 ln(1 - c^2)."""

    family = "bimodal"

    def __init__(self, correlation: float = 0.75, device: str | torch.device = "cpu"):
        self.normal = BivariateNormal(correlation, device=device)
        self.correlation, self.device = self.normal.correlation, self.normal.device
        self.x_shape = self.y_shape = (1,)
        self.name = f"1v1-bimodal-{self.correlation}"

    def ground_truth(self) -> GroundTruth:
        t = self.normal.ground_truth()
        return GroundTruth(t.mi, t.method, note=f"{t.note}; unchanged by the increasing maps to bimodal marginals")

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        x, y = self.normal.sample(n, generator=generator)
        to = x.dtype
        x = mixture_icdf(torch.special.ndtr(x.double()), BIMODAL_X)
        y = mixture_icdf(torch.special.ndtr(y.double()), BIMODAL_Y)
        return x.to(to), y.to(to)

    def heldout(self) -> BimodalGaussians:
        return self


# ------------------------------------------------------------------------------------------
# BMI's first suite (``bmi.benchmark.task_list``): id -> builder(device), in BMI's order


def _t(base: Callable[..., Task], *names: str) -> Callable[..., Task]:
    """A builder of ``base`` with BMI's transforms applied (innermost first) to both x and y."""
    def build(device: str | torch.device = "cpu") -> Task:
        task = base(device=device)
        for n in names:
            task = TransformedTask(task, n, n)
        return task
    return build


def _swissroll(device: str | torch.device = "cpu") -> Task:
    return TransformedTask(_t(_normal75, "normal_cdf")(device), x="swissroll")


def _normal75(device: str | torch.device = "cpu") -> Task:
    return BivariateNormal(0.75, device)


def _dense(d: int) -> Callable[..., Task]:
    return lambda device="cpu": MultinormalDense(d, d, 0.5, device)


def _sparse(d: int) -> Callable[..., Task]:
    return lambda device="cpu": MultinormalSparse(d, d, 2, 2.0, device)


def _student(d: int, df: int) -> Callable[..., Task]:
    return lambda device="cpu": SplitStudentT(d, d, df, device=device)


V1_TASKS: dict[str, Callable[..., Task]] = {
    # one-dimensional
    "1v1-normal-0.75": _normal75,
    "normal_cdf-1v1-normal-0.75": _t(_normal75, "normal_cdf"),
    "1v1-additive-0.1": lambda device="cpu": AdditiveUniform(0.1, device),
    "1v1-additive-0.75": lambda device="cpu": AdditiveUniform(0.75, device),
    "1v1-bimodal-0.75": lambda device="cpu": BimodalGaussians(0.75, device),
    "wiggly-1v1-normal-0.75": _t(_normal75, "wiggly"),
    "half_cube-1v1-normal-0.75": _t(_normal75, "half_cube"),
    "student-identity-1-1-1": _student(1, 1),
    "asinh-student-identity-1-1-1": _t(_student(1, 1), "asinh"),
    # embeddings
    "swissroll_x-normal_cdf-1v1-normal-0.75": _swissroll,
    # multinormal
    **{f"multinormal-dense-{d}-{d}-0.5": _dense(d) for d in (2, 3, 5, 25, 50)},
    **{f"multinormal-sparse-{d}-{d}-2-2.0": _sparse(d) for d in (2, 3, 5, 25)},
    # Student-t
    **{f"student-identity-{d}-{d}-{df}": _student(d, df) for d, df in ((2, 1), (2, 2), (3, 2), (3, 3), (5, 2), (5, 3))},
    # transformed
    **{f"{pre}multinormal-sparse-{d}-{d}-2-2.0": _t(_sparse(d), *names)
       for pre, names in (("normal_cdf-", ("normal_cdf",)), ("half_cube-", ("half_cube",)), ("spiral-", ("spiral",)),
                          ("spiral-normal_cdf-", ("normal_cdf", "spiral")))
       for d in (3, 5, 25)},
    **{f"asinh-student-identity-{d}-{d}-{df}": _t(_student(d, df), "asinh") for d, df in ((2, 1), (3, 2), (5, 2))},
}
V1_NAMES: list[str] = list(V1_TASKS)


def suite_tasks() -> dict[str, Callable[..., Task]]:
    """Every BMI id the ``bmi`` family builds: the first suite's, then the second suite's others
    (``mixtures.V2_TASKS``, where that module defines it: id -> builder taking ``device``)."""
    from . import mixtures

    v2 = getattr(mixtures, "V2_TASKS", {})
    return {**V1_TASKS, **{k: f for k, f in v2.items() if k not in V1_TASKS}}


class BMISuite:
    """The ``bmi`` family's class: a task of BMI's suites by id, built by ``bmi_task`` (of the
    class its id names). It declares no optional capability, as not every task has each."""


def bmi_task(name: str | None = None, rescale: bool = False, device: str | torch.device = "cpu") -> Task:
    """The BMI task with id ``name``; with ``rescale``, standardised by one fixed affine map per
    task (see ``transforms.Rescale``). BMI's own rescaling standardises each drawn sample by its
    own mean and sd: that is a property of a run's sample, not of the task, and is the [train]
    option ``standardize = true`` (with ``n_samples``), which works for every task family;
    ``rescale = "sample"`` says so."""
    tasks = suite_tasks()
    if not isinstance(name, str):
        raise ConfigError(f"bmi: name must be a BMI task id such as {V1_NAMES[0]!r}, got {name!r}")
    if name not in tasks:
        raise ConfigError("bmi: " + unknown_name("BMI task", name, tasks, "Known ids"))
    if rescale == "sample":
        raise ConfigError('bmi: rescale = "sample" (each sample standardised by its own mean and sd, BMI\'s) is '
                          "the [train] option standardize = true (with n_samples); here rescale is true or false")
    if not isinstance(rescale, bool):
        raise ConfigError(f"bmi: rescale must be true or false, got {rescale!r}")
    task = tasks[name](device=device)
    return TransformedTask(task, "rescale", "rescale") if rescale else task


FAMILIES: list[TaskFamily] = [
    TaskFamily("bivariate_normal", BivariateNormal, "I = -1/2 ln(1 - c^2)",
               "BMI's 1v1-normal: x, y standard normal, correlation c; params correlation (default 0.75)",
               example={"correlation": 0.75}),
    TaskFamily("bmi_multinormal_dense", MultinormalDense, "I = 1/2 ln(det Sxx det Syy / det S)",
               "BMI's multinormal-dense: unit variances, all correlations off_diag (0.5); params dim_x, dim_y, off_diag",
               example={"dim_x": 2, "dim_y": 3, "off_diag": 0.5}),
    TaskFamily("bmi_multinormal_sparse", MultinormalSparse, "I = -(n/2) ln(1 - r^2), r = s^2 / (1 + s^2)",
               "BMI's multinormal-sparse (2-pair): n_interacting pairs of correlation r; params dim_x, dim_y, "
               "n_interacting (2), strength s (2.0)", example={"dim_x": 3, "dim_y": 3}),
    TaskFamily("student_t", SplitStudentT, "I = I_normal(D) + h(dx) + h(dy) - h(dx + dy) (Student-t entropies)",
               "BMI's student-identity: (x, y) multivariate Student-t; params dim_x, dim_y, df, dispersion (identity)",
               example={"dim_x": 2, "dim_y": 2, "df": 2}),
    TaskFamily("additive_uniform", AdditiveUniform, "I = eps - ln(2 eps) (eps <= 1/2), 1/(4 eps) (eps > 1/2)",
               "BMI's 1v1-additive: x ~ U(0, 1), y = x + U(-eps, eps); params epsilon",
               example={"epsilon": 0.1}),
    TaskFamily("bimodal", BimodalGaussians, "I = -1/2 ln(1 - c^2) (a bivariate normal, monotone maps)",
               "BMI's 1v1-bimodal: a correlated normal pair mapped to two-Gaussian-mixture marginals; params correlation",
               example={"correlation": 0.75}),
    TaskFamily("transformed", TransformedTask, "the base task's I (injective maps keep it)",
               "x, y of a base task through normal_cdf, half_cube, asinh, wiggly, spiral, swissroll or rescale; "
               "params base (a task table), x, y (a name or list)",
               example={"base": {"family": "bmi_multinormal_sparse", "dim_x": 3, "dim_y": 3},
                                "x": ["normal_cdf", "spiral"], "y": "half_cube"},
               make=transformed),
    TaskFamily("bmi", BMISuite, "BMI's truth for the task (analytic for the first suite)",
               f"any of BMI's suite tasks by id ({len(V1_NAMES)} of the first suite, e.g. "
               f"{V1_NAMES[-1]}); params name, rescale", example={"name": "1v1-bimodal-0.75"},
               make=bmi_task),
]
