"""The BMI benchmark's tasks (Czyz et al., "Beyond Normal", NeurIPS 2023) in mibench: every id of
BMI's first suite builds with BMI's shapes, and its truth agrees with an independent route:
numerical integration (1-d tasks), a Monte Carlo mean of log p(x, y) - log p(x) - log p(y) from
scipy's densities on our draws (Gaussian and Student-t tasks), or, for transformed tasks, the
base's draws recovered through the inverse maps and a rank statistic left unchanged.

BMI's repository states no table of per-task truths (its README prints one rounded value
without its output), so the published numbers checked are its closed forms: the additive-noise
formula and the Student-t correction, recomputed here with scipy.
"""

import math

import numpy as np
import pytest
import torch

from conftest import gen
from mibench.distributions import TASK_FAMILIES, build_task, mixtures
from mibench.distributions.bmi import V1_NAMES, V1_TASKS, BivariateNormal, mixture_icdf
from mibench.distributions.transforms import MAPS, TransformedTask
from mibench.interface import ConfigError
from mibench.testing import check_task

NEW_FAMILIES = ["bivariate_normal", "bmi_multinormal_dense", "bmi_multinormal_sparse", "student_t",
                "additive_uniform", "bimodal", "transformed", "bmi"]

# BMI's task_list.py, in its order: (id, dim_x, dim_y)
SPARSE = "multinormal-sparse-{d}-{d}-2-2.0"
BMI_V1 = [("1v1-normal-0.75", 1, 1), ("normal_cdf-1v1-normal-0.75", 1, 1), ("1v1-additive-0.1", 1, 1),
          ("1v1-additive-0.75", 1, 1), ("1v1-bimodal-0.75", 1, 1), ("wiggly-1v1-normal-0.75", 1, 1),
          ("half_cube-1v1-normal-0.75", 1, 1), ("student-identity-1-1-1", 1, 1),
          ("asinh-student-identity-1-1-1", 1, 1), ("swissroll_x-normal_cdf-1v1-normal-0.75", 2, 1),
          *[(f"multinormal-dense-{d}-{d}-0.5", d, d) for d in (2, 3, 5, 25, 50)],
          *[(SPARSE.format(d=d), d, d) for d in (2, 3, 5, 25)],
          *[(f"student-identity-{d}-{d}-{df}", d, d) for d, df in ((2, 1), (2, 2), (3, 2), (3, 3), (5, 2), (5, 3))],
          *[(pre + SPARSE.format(d=d), d, d) for pre in ("normal_cdf-", "half_cube-", "spiral-", "spiral-normal_cdf-")
            for d in (3, 5, 25)],
          *[(f"asinh-student-identity-{d}-{d}-{df}", d, d) for d, df in ((2, 1), (3, 2), (5, 2))]]


def bmi(name: str, **kw):
    return build_task("bmi", {"name": name, **kw})


def base_of(task):
    while isinstance(task, TransformedTask):
        task = task.base
    return task


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_every_new_family_meets_the_contract(family):
    check_task(family)


def test_the_first_suite_is_bmis_forty_tasks_in_bmis_order():
    assert V1_NAMES == [name for name, _, _ in BMI_V1] and len(V1_NAMES) == 40


@pytest.mark.parametrize("name,dim_x,dim_y", BMI_V1)
def test_task_builds_with_bmis_id_shapes_and_a_finite_truth(name, dim_x, dim_y):
    task = bmi(name)
    assert task.name == name
    assert (task.x_shape, task.y_shape) == ((dim_x,), (dim_y,))
    x, y = task.sample(64, generator=gen(0))
    assert x.shape == (64, dim_x) and y.shape == (64, dim_y) and x.dtype == torch.float32
    truth = task.ground_truth()
    assert math.isfinite(truth.mi) and truth.mi >= 0 and truth.method == "analytic"
    if isinstance(task, TransformedTask):     # the base's truth, carried over exactly
        assert truth.mi == base_of(task).ground_truth().mi


# ------------------------------------------------------------------------------------------
# Covariances as BMI builds them, recomputed here from its definitions


def dense_cov(d: int, c: float = 0.5) -> np.ndarray:
    return np.eye(2 * d) * (1 - c) + c


def sparse_cov(d: int, k: int = 2, s: float = 2.0) -> np.ndarray:
    """BMI's latent-variable model (alpha = beta = 0, lambda = eta = s, epsilon = 1): x_i, y_i get
    their own unit noise, pairs i < k share a latent s Z_i, the others get their own s V_i;
    the covariance A A^T of the mixing matrix A, normalised to correlations."""
    a = np.zeros((2 * d, 2 * d + k + 2 * (d - k)))
    a[:, :2 * d] = np.eye(2 * d)
    for i in range(k):
        a[i, 2 * d + i] = a[d + i, 2 * d + i] = s
    col = 2 * d + k
    for i in list(range(k, d)) + list(range(d + k, 2 * d)):
        a[i, col] = s
        col += 1
    cov = a @ a.T
    sd = np.sqrt(np.diag(cov))
    return cov / np.outer(sd, sd)


def gaussian_mi(cov: np.ndarray, dx: int) -> float:
    ld = lambda m: np.linalg.slogdet(m)[1]
    return 0.5 * (ld(cov[:dx, :dx]) + ld(cov[dx:, dx:]) - ld(cov))


GAUSSIAN = {"1v1-normal-0.75": np.array([[1, 0.75], [0.75, 1]]),
            **{f"multinormal-dense-{d}-{d}-0.5": dense_cov(d) for d in (2, 3, 5, 25, 50)},
            **{SPARSE.format(d=d): sparse_cov(d) for d in (2, 3, 5, 25)}}
STUDENT = {f"student-identity-{d}-{d}-{df}": (d, df) for d, df in ((1, 1), (2, 1), (2, 2), (3, 2), (3, 3), (5, 2), (5, 3))}


def within_3_se(values: np.ndarray, truth: float) -> tuple[float, float]:
    mean, se = values.mean(), values.std(ddof=1) / math.sqrt(len(values))
    assert abs(mean - truth) < 3 * se, f"Monte Carlo {mean:.4f} +- {se:.4f} vs truth {truth:.4f}"
    return mean, se


@pytest.mark.parametrize("name", list(GAUSSIAN))
def test_gaussian_truth_matches_monte_carlo_log_density_ratio(name):
    """Draws from our sampler; densities from scipy with BMI's covariance; within 3 standard errors."""
    stats = pytest.importorskip("scipy.stats")
    cov, task = GAUSSIAN[name], bmi(name)
    d = task.x_shape[0]
    assert task.ground_truth().mi == pytest.approx(gaussian_mi(cov, d), rel=1e-9)
    n = 100_000 if d < 25 else 40_000
    x, y = (t.double().numpy() for t in task.sample(n, generator=gen(1)))
    mvn = stats.multivariate_normal.logpdf
    ratio = mvn(np.hstack([x, y]), cov=cov) - mvn(x, cov=cov[:d, :d]) - mvn(y, cov=cov[d:, d:])
    within_3_se(ratio, task.ground_truth().mi)


def bmi_student_correction(d: int, df: float) -> float:
    """BMI's SplitStudentT.mi_correction_function (entropies of eq. 7 of Arellano-Valle et al.)."""
    special = pytest.importorskip("scipy.special")

    def h(k):
        s = 0.5 * (df + k)
        return (special.gammaln(0.5 * df) - special.gammaln(s) + 0.5 * k * np.log(df * np.pi)
                + s * (special.digamma(s) - special.digamma(0.5 * df)))
    return h(d) + h(d) - h(2 * d)


@pytest.mark.parametrize("name", list(STUDENT))
def test_student_truth_matches_bmis_formula_and_monte_carlo(name):
    stats = pytest.importorskip("scipy.stats")
    (d, df), task = STUDENT[name], bmi(name)
    truth = task.ground_truth().mi
    assert truth == pytest.approx(bmi_student_correction(d, df), rel=1e-10)   # identity: no Gaussian part
    x, y = (t.double().numpy() for t in task.sample(100_000, generator=gen(2)))
    mvt = stats.multivariate_t.logpdf
    ratio = (mvt(np.hstack([x, y]), shape=np.eye(2 * d), df=df) - mvt(x, shape=np.eye(d), df=df)
             - mvt(y, shape=np.eye(d), df=df))
    within_3_se(ratio, truth)


def test_student_1x1_truth_matches_numerical_integration():
    """df = 1: integrate p log(p / (p_x p_y)) over the plane, mapped onto a square by tan."""
    integrate = pytest.importorskip("scipy.integrate")

    def f(b, a):
        x, y = math.tan(a), math.tan(b)
        p = (1 + x * x + y * y) ** -1.5 / (2 * math.pi)            # bivariate t, df = 1
        ratio = p * math.pi**2 * (1 + x * x) * (1 + y * y)         # over two Cauchy densities
        return p * math.log(ratio) / (math.cos(a) ** 2 * math.cos(b) ** 2)
    h = math.pi / 2
    value, _ = integrate.dblquad(f, -h, h, -h, h, epsabs=1e-8, epsrel=1e-8)
    assert bmi("student-identity-1-1-1").ground_truth().mi == pytest.approx(value, abs=1e-6)
    assert value == pytest.approx(math.log(8 * math.pi) - 3, abs=1e-6)        # the closed form by hand


@pytest.mark.parametrize("eps", [0.1, 0.75])
def test_additive_noise_truth_matches_numerical_integration_and_bmis_formula(eps):
    """I = H(Y) - ln(2 eps), H(Y) integrated numerically over Y's (convolution) density."""
    integrate = pytest.importorskip("scipy.integrate")
    task = bmi(f"1v1-additive-{eps}")

    def p(y):
        return (min(1.0, y + eps) - max(0.0, y - eps)) / (2 * eps)
    h_y, _ = integrate.quad(lambda y: -p(y) * math.log(p(y)) if p(y) > 0 else 0.0, -eps, 1 + eps,
                            points=sorted({-eps, eps, 1 - eps, 1 + eps, 1.0, 0.0}), limit=200)
    assert task.ground_truth().mi == pytest.approx(h_y - math.log(2 * eps), abs=1e-8)
    assert task.entropy_y() == pytest.approx(h_y, abs=1e-8)
    bmi_formula = 0.25 / eps if eps > 0.5 else eps - math.log(2 * eps)      # AdditiveUniformSampler
    assert task.ground_truth().mi == pytest.approx(bmi_formula, rel=1e-12)
    stats = pytest.importorskip("scipy.stats")
    x, y = (t.double().numpy()[:, 0] for t in task.sample(200_000, generator=gen(3)))
    assert stats.kstest(x, "uniform").pvalue > 0.01                            # x ~ U(0, 1)
    assert stats.kstest(y - x, "uniform", args=(-eps, 2 * eps)).pvalue > 0.01   # noise ~ U(-eps, eps)
    assert abs(np.corrcoef(x, y - x)[0, 1]) < 0.01                              # ... independent of x


# BMI's bimodal marginals (bimodal_gaussians.py): (weight, mean) of unit-sd normals
BIMODAL_X = ((0.3, 0.0), (0.7, 5.0))
BIMODAL_Y = ((0.5, -1.0), (0.5, 3.0))


def test_bimodal_truth_matches_integration_in_bimodal_coordinates():
    """p(x, y) = c(F_x(x), F_y(y)) f_x(x) f_y(y) with c the Gaussian copula density: integrate
    p log c on a fine grid (scipy densities), and compare to the normal's MI."""
    stats = pytest.importorskip("scipy.stats")
    task, r = bmi("1v1-bimodal-0.75"), 0.75

    def marg(mixture, t):
        cdf = sum(w * stats.norm.cdf(t - m) for w, m in mixture)
        return np.clip(cdf, 1e-300, 1 - 1e-16), sum(w * stats.norm.pdf(t - m) for w, m in mixture)
    xs, ys = np.linspace(-7, 12, 1501), np.linspace(-8, 10, 1501)
    (fx, px), (fy, py) = marg(BIMODAL_X, xs), marg(BIMODAL_Y, ys)
    zx, zy = stats.norm.ppf(fx)[:, None], stats.norm.ppf(fy)[None, :]
    log_c = -0.5 * np.log(1 - r * r) - (r * r * (zx**2 + zy**2) - 2 * r * zx * zy) / (2 * (1 - r * r))
    p = np.exp(log_c) * px[:, None] * py[None, :]
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    assert p.sum() * dx * dy == pytest.approx(1.0, abs=1e-4)
    assert (p * log_c).sum() * dx * dy == pytest.approx(task.ground_truth().mi, abs=1e-3)


def test_bimodal_draws_have_the_mixture_marginals_and_the_normals_correlation():
    """The inverse CDF by bisection agrees with scipy's root finding; mapping draws back to normal
    scores gives correlation 0.75 (plug-in MI within 0.01 nats) and a KS test does not reject."""
    optimize = pytest.importorskip("scipy.optimize")
    stats = pytest.importorskip("scipy.stats")
    u = torch.tensor([1e-6, 0.05, 0.3, 0.31, 0.5, 0.9, 1 - 1e-6], dtype=torch.float64)
    for mixture in (BIMODAL_X, BIMODAL_Y):
        def gap(t, v, mixture=mixture):
            return sum(w * stats.norm.cdf(t - m) for w, m in mixture) - v
        roots = [optimize.brentq(gap, -10, 10, args=(v,), xtol=1e-13) for v in u.tolist()]
        assert mixture_icdf(u, mixture).numpy() == pytest.approx(np.array(roots), abs=1e-9)
    x, y = (t.double().numpy()[:, 0] for t in bmi("1v1-bimodal-0.75").sample(100_000, generator=gen(4)))
    fx = sum(w * stats.norm.cdf(x - m) for w, m in BIMODAL_X)
    fy = sum(w * stats.norm.cdf(y - m) for w, m in BIMODAL_Y)
    assert stats.kstest(fx, "uniform").pvalue > 0.01 and stats.kstest(fy, "uniform").pvalue > 0.01
    r = np.corrcoef(stats.norm.ppf(fx), stats.norm.ppf(fy))[0, 1]
    assert -0.5 * math.log(1 - r * r) == pytest.approx(-0.5 * math.log(1 - 0.75**2), abs=0.01)


# ------------------------------------------------------------------------------------------
# Transforms: the base's draws come back, and BMI's maps are what they should be

TRANSFORMED = [name for name in V1_NAMES if isinstance(V1_TASKS[name](), TransformedTask)]


def normal_scores_mi(x: np.ndarray, y: np.ndarray) -> float:
    """A plug-in Gaussian-copula MI from ranks: unchanged by increasing coordinate-wise maps."""
    z = np.hstack([x, y]).argsort(0).argsort(0)
    z = np.sqrt(2) * torch.special.erfinv(torch.tensor((z + 0.5) / len(z) * 2 - 1)).numpy()
    return gaussian_mi(np.corrcoef(z.T), x.shape[1])


def through(task, x, y, inverse=False):
    """The maps of every level of a (nested) transformed task, applied or undone."""
    inner = task.base if isinstance(task.base, TransformedTask) else None
    if inverse:
        x, y = task.inverse(x, y)
        return through(inner, x, y, True) if inner else (x, y)
    if inner:
        x, y = through(inner, x, y)
    return task.transform(x, y)


@pytest.mark.parametrize("name", TRANSFORMED)
def test_transformed_draws_are_the_base_draws_mapped_and_map_back(name):
    """Draws = maps(base draws) (to float32 rounding); in float64 the inverse maps give the base
    draws back (so the maps are injective on them); increasing maps leave the ranks, hence a
    rank-based plug-in MI, unchanged."""
    task = bmi(name)
    x0, y0 = (t.double() for t in base_of(task).sample(4000, generator=gen(5)))
    x, y = task.sample(4000, generator=gen(5))
    fx, fy = through(task, x0, y0)
    assert torch.allclose(x.double(), fx, rtol=1e-4, atol=1e-5) and torch.allclose(y.double(), fy, rtol=1e-4, atol=1e-5)
    bx, by = through(task, fx, fy, inverse=True)
    assert torch.allclose(bx, x0, rtol=1e-8, atol=1e-8) and torch.allclose(by, y0, rtol=1e-8, atol=1e-8)
    if all(n in ("normal_cdf", "half_cube", "asinh", "wiggly") for n in task.x_names):   # increasing maps
        assert normal_scores_mi(fx.numpy(), fy.numpy()) == pytest.approx(normal_scores_mi(x0.numpy(), y0.numpy()), abs=1e-12)


def test_spiral_is_bmis_matrix_exponential_rotation():
    """x -> expm(speed ||x||^2 A) x with A the so(n) generator of plane (0, 1) on x, (1, 2) on y,
    speed 1 / dim (BMI's transform_spiral_task), computed with scipy's expm."""
    linalg = pytest.importorskip("scipy.linalg")
    task = bmi(SPARSE.format(d=3).join(["spiral-", ""]))
    x0, y0 = (t.double() for t in task.base.sample(5, generator=gen(6)))
    x, y = task.transform(x0, y0)
    for side, (t0, t, (i, j)) in {"x": (x0, x, (0, 1)), "y": (y0, y, (1, 2))}.items():
        a = np.zeros((3, 3))
        a[i, j], a[j, i] = -1.0, 1.0
        for v, w in zip(t0.numpy(), t.numpy()):
            assert w == pytest.approx(linalg.expm(a * (v @ v) / 3) @ v, abs=1e-12), side


def test_swissroll_and_wiggly_are_bmis_formulas():
    u = torch.linspace(0.01, 0.99, 7, dtype=torch.float64)[:, None]
    roll = MAPS["swissroll"]("x", (1,), (0.0, 1.0)).forward(u).numpy()
    t = 1.5 * np.pi * (1 + 2 * u.numpy()[:, 0])
    assert roll == pytest.approx(np.stack([t * np.cos(t), t * np.sin(t)], 1) / 21.0, abs=1e-12)
    s = np.linspace(-4, 4, 9)
    wx = s + 0.4 * np.sin(s) + 0.2 * np.sin(1.7 * s + 1) + 0.03 * np.sin(3.3 * s - 2.5)
    wy = s - 0.4 * np.sin(0.4 * s) + 0.17 * np.sin(1.3 * s + 3.5) + 0.02 * np.sin(4.3 * s - 2.5)
    for side, want in (("x", wx), ("y", wy)):
        got = MAPS["wiggly"](side, (1,), None).forward(torch.tensor(s))
        assert got.numpy() == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize("name", ["swissroll_x-normal_cdf-1v1-normal-0.75", "asinh-student-identity-2-2-1",
                                  SPARSE.format(d=5)])
def test_rescale_standardises_like_bmi_and_keeps_the_truth(name):
    """BMI's second suite: mean 0 and sd 1 per coordinate (its own test's tolerance, 0.03)."""
    task = bmi(name, rescale=True)
    assert task.name == f"rescale-{name}" and task.ground_truth().mi == bmi(name).ground_truth().mi
    x, y = task.sample(50_000, generator=gen(7))
    xy = torch.cat([x, y], 1)
    assert xy.mean(0).abs().max() < 0.03 and (xy.std(0) - 1).abs().max() < 0.03
    x0, y0 = task.base.sample(1000, generator=gen(8))
    assert torch.allclose(task.inverse(*task.transform(x0, y0))[0], x0, atol=1e-5)


def test_bmi_family_finds_second_suite_ids_from_mixtures(monkeypatch):
    monkeypatch.setattr(mixtures, "V2_TASKS", {"1v1-test-only": lambda device="cpu": BivariateNormal(0.5, device)},
                        raising=False)
    assert build_task("bmi", {"name": "1v1-test-only"}).ground_truth().mi == pytest.approx(-0.5 * math.log(0.75))


@pytest.mark.parametrize("family,params,match", [
    ("student_t", {"df": -1}, r"^student_t: df must be > 0"),
    ("student_t", {"df": 0}, r"^student_t: df must be > 0"),
    ("student_t", {"dim_x": 1, "dim_y": 1, "dispersion": [[1, 2], [2, 1]]}, r"^student_t: dispersion must be positive definite"),
    ("bmi_multinormal_dense", {"dim_x": 2, "dim_y": 2, "off_diag": -0.5}, r"^bmi_multinormal_dense: off_diag must lie in"),
    ("bmi_multinormal_dense", {"dim_x": 2, "dim_y": 2, "off_diag": 1.0}, r"^bmi_multinormal_dense: off_diag"),
    ("bmi_multinormal_dense", {"dim_x": 0}, r"^bmi_multinormal_dense: dim_x must be an integer >= 1, got 0"),
    ("bmi_multinormal_sparse", {"dim_x": 1, "dim_y": 3}, r"^bmi_multinormal_sparse: n_interacting must be"),
    ("bivariate_normal", {"correlation": 1.0}, r"^bivariate_normal: correlation must lie in \(-1, 1\)"),
    ("bimodal", {"correlation": -1.5}, r"correlation must lie in \(-1, 1\)"),
    ("additive_uniform", {"epsilon": 0}, r"^additive_uniform: epsilon must be > 0"),
    ("additive_uniform", {"epsilon": -0.1}, r"^additive_uniform: epsilon must be > 0"),
    ("transformed", {"base": {"family": "bivariate_normal"}, "x": "spiral"},
     r"^spiral: needs at least 2 dims on the x side \(a vector\), got 1$"),
    ("transformed", {"base": {"family": "bmi_multinormal_sparse", "dim_x": 2, "dim_y": 2}, "y": "spiral"},
     r"^spiral: needs at least 3 dims on the y side"),
    ("transformed", {"base": {"family": "bmi_multinormal_dense", "dim_x": 2, "dim_y": 2}, "x": ["normal_cdf", "swissroll"]},
     r"^swissroll: needs a 1-d x side, got shape \(2,\)"),
    ("transformed", {"base": {"family": "bivariate_normal"}, "x": "swissroll"}, r"^swissroll: needs x values >= -0.5"),
    ("transformed", {"base": {"family": "bivariate_normal"}, "y": "cube"}, r"^transformed: unknown y transform 'cube'"),
    ("transformed", {"base": "bivariate_normal"}, r"^transformed: base must be a table"),
    ("bmi", {"name": "1v1-normal-0.7"}, r"^bmi: unknown BMI task '1v1-normal-0.7'; did you mean '1v1-normal-0.75'"),
    ("bmi", {"name": "1v1-normal-0.75", "rescale": "yes"}, r"^bmi: rescale must be true or false"),
])
def test_bad_input_is_a_one_line_config_error_naming_the_parameter(family, params, match):
    with pytest.raises(ConfigError, match=match) as info:
        build_task(family, params)
    assert "\n" not in str(info.value)


def test_chosen_mi_round_trips_for_sparse_and_bivariate_normals():
    for family, params in (("bmi_multinormal_sparse", {"dim_x": 5, "dim_y": 5, "n_interacting": 3}),
                           ("bivariate_normal", {})):
        fam = TASK_FAMILIES[family]
        assert fam.build(fam.params_with_mi(params, 1.7)).ground_truth().mi == pytest.approx(1.7, rel=1e-9)
    # BMI's default strength 2.0 gives r = 0.8 per pair
    assert bmi(SPARSE.format(d=2)).ground_truth().mi == pytest.approx(-math.log(1 - 0.64), rel=1e-12)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("rescale", [False, True])
def test_every_first_suite_task_samples_on_the_gpu(rescale):
    for name in V1_NAMES:
        task = build_task("bmi", {"name": name, "rescale": rescale}, device="cuda")
        g = torch.Generator(device="cuda").manual_seed(0)
        x, y = task.sample(256, generator=g)
        assert x.is_cuda and y.is_cuda and x.shape == (256, *task.x_shape) and y.shape == (256, *task.y_shape)
        assert torch.isfinite(x).all() and torch.isfinite(y).all(), name


def test_truths_agree_with_bmis_own_package():
    """BMI's ``mutual_information`` of each of its 53 tasks, from its package in its own
    environment (scripts/bmi_truths.py saved them): analytic truths agree to 1e-6 nats, Monte
    Carlo ones within 4 of mibench's standard errors (BMI's own estimate has an error too)."""
    import json
    from pathlib import Path

    from mibench.distributions import TASK_FAMILIES

    saved = Path(__file__).resolve().parents[1] / "results" / "reference" / "bmi_truths.json"
    theirs = json.loads(saved.read_text())["mutual_information"]
    assert len(theirs) == 53
    for name, value in theirs.items():
        truth = TASK_FAMILIES["bmi"].build({"name": name}).ground_truth()
        if truth.method == "monte_carlo":
            assert abs(truth.mi - value) < 4 * truth.stderr, (name, truth.mi, truth.stderr, value)
        else:
            assert truth.mi == pytest.approx(value, abs=1e-6), name
