"""BMI's mixture tasks: the contract, the sampler against the densities, the Monte Carlo truth
against routes that do not share its code (scipy quadrature of reduced problems, another seed),
and the truth cache."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import gen
from mibench.distributions import TASK_FAMILIES, mixtures
from mibench.interface import ConfigError
from mibench.testing import check_task


@pytest.fixture(autouse=True)
def _fresh_cache(tmp_path, monkeypatch):
    """Every test computes its truths afresh, into a cache folder of its own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    mixtures.cached_truth.cache_clear()
    yield
    mixtures.cached_truth.cache_clear()


# BMI's workflows/benchmark/v2/config.py: the 13 mixture tasks, as their ids, with (dim x, dim y)
V2_IDS = {
    "1v1-X-0.9": (1, 1), "1v1-AI": (1, 1), "2v1-waves-12-5.0-3.0": (2, 1), "2v1-galaxy-0.5-3.0": (2, 1),
    "3v1-concentric_gaussians-5": (3, 1), "5v1-concentric_gaussians-5": (5, 1),
    "3v1-concentric_gaussians-10": (3, 1), "5v1-concentric_gaussians-10": (5, 1),
    "25v1-concentric_gaussians-5": (25, 1),
    "mult-sparse-w-inliers-5-5-2-2.0-0.2": (5, 5), "mult-sparse-w-inliers-25-25-2-2.0-0.2": (25, 25),
    "mult-sparse-w-inliers-5-5-2-2.0-0.5": (5, 5), "mult-sparse-w-inliers-25-25-2-2.0-0.5": (25, 25),
}


@pytest.mark.parametrize("family", [f.name for f in mixtures.FAMILIES])
def test_each_family_meets_the_task_contract(family):
    assert family in TASK_FAMILIES
    task = check_task(family)
    assert task.ground_truth().method == "monte_carlo" and task.ground_truth().stderr > 0


def test_v2_tasks_are_bmis_ids_with_bmis_dimensions():
    assert list(mixtures.V2_TASKS) == list(V2_IDS)
    for task_id, (dx, dy) in V2_IDS.items():
        task = mixtures.V2_TASKS[task_id](device="cpu")
        assert (task.bmi_id, task.x_shape, task.y_shape) == (task_id, (dx,), (dy,))


@pytest.mark.parametrize("family, params, named", [
    ("bmi_x", {"gaussian_correlation": 1.0}, "gaussian_correlation"),
    ("bmi_waves", {"n_components": 0}, "n_components"),
    ("bmi_waves", {"wave_amplitude": float("nan")}, "wave_amplitude"),
    ("bmi_galaxy", {"speed": "fast"}, "speed"),
    ("concentric_gaussians", {"dim_x": 3, "n_components": 0}, "n_components"),
    ("concentric_gaussians", {"dim_x": 0}, "dim_x"),
    ("concentric_gaussians", {"dim_x": 2.5}, "dim_x"),
    ("sparse_gaussian_inliers", {"dim_x": 5, "dim_y": 5, "inlier_fraction": 1.0}, "inlier_fraction"),
    ("sparse_gaussian_inliers", {"dim_x": 5, "dim_y": 5, "inlier_fraction": -0.1}, "inlier_fraction"),
    ("sparse_gaussian_inliers", {"dim_x": 5, "dim_y": 0}, "dim_y"),
    ("sparse_gaussian_inliers", {"dim_x": 1, "dim_y": 5}, "n_interacting"),
    ("bmi_ai", {"truth_samples": 10}, "truth_samples"),
])
def test_a_bad_parameter_is_one_line_naming_it(family, params, named):
    with pytest.raises(ConfigError, match=named) as err:
        TASK_FAMILIES[family].build(params)
    assert "\n" not in str(err.value) and "must" in str(err.value)


# ------------------------------------------------------------------------------------------
# The sampler draws from the density the truth uses


@pytest.mark.parametrize("task_id", list(V2_IDS))
def test_the_density_ratio_integrates_to_one_under_the_product_of_marginals(task_id):
    """E over x, y drawn independently (from two joint draws) of p(x, y) / (p(x) p(y)) is 1
    exactly when the sampler's marginals are the densities' marginals and the joint integrates
    to 1."""
    task = mixtures.V2_TASKS[task_id](device="cpu")
    n = 40_000
    x, _ = task.sample(n, generator=gen(1))
    _, y = task.sample(n, generator=gen(2))
    ratio = task.log_ratio(x, y).double().exp()
    se = ratio.std().item() / math.sqrt(n)
    assert abs(ratio.mean().item() - 1) < max(4 * se, 0.01), (ratio.mean().item(), se)


def _mixture_moments(task):
    w, means, covs = (t.double() for t in task._components())
    mean = (w[:, None] * means).sum(0)
    second = (w[:, None, None] * (covs + means[:, :, None] * means[:, None, :])).sum(0)
    return mean, second - mean[:, None] * mean[None, :]


@pytest.mark.parametrize("task_id", ["1v1-X-0.9", "1v1-AI", "5v1-concentric_gaussians-10",
                                     "mult-sparse-w-inliers-5-5-2-2.0-0.2"])
def test_draws_have_the_mixtures_mean_and_covariance(task_id):
    task = mixtures.V2_TASKS[task_id](device="cpu")
    n = 100_000
    xy = torch.cat(task.sample(n, generator=gen(3)), 1).double()
    mean, cov = _mixture_moments(task)
    centred = xy - mean
    assert ((xy.mean(0) - mean).abs() < 5 * xy.std(0) / math.sqrt(n) + 1e-6).all()
    products = centred[:, :, None] * centred[:, None, :]
    se = products.std(0) / math.sqrt(n)
    assert ((products.mean(0) - cov).abs() < 5 * se + 1e-6).all()


def _chi2_quantile(dof: int, z: float = 3.719) -> float:
    """The chi-square quantile at the normal quantile z (3.719: 0.9999), by Wilson-Hilferty."""
    a = 2 / (9 * dof)
    return dof * (1 - a + z * math.sqrt(a)) ** 3


def _chi_square_on_grid(points, density, lo, hi, bins=12, fine=10):
    """Observed counts of 2-d points in a bins x bins grid over [lo, hi] against counts from the
    density integrated numerically (a fine midpoint grid in each cell); returns the statistic,
    the degrees of freedom and the density's mass inside the grid."""
    n = len(points)
    edges = [np.linspace(lo[i], hi[i], bins + 1) for i in (0, 1)]
    observed, _, _ = np.histogram2d(points[:, 0], points[:, 1], bins=edges)
    steps = [(hi[i] - lo[i]) / (bins * fine) for i in (0, 1)]
    mids = [lo[i] + steps[i] * (np.arange(bins * fine) + 0.5) for i in (0, 1)]
    gx, gy = np.meshgrid(*mids, indexing="ij")
    p = density(np.stack([gx.ravel(), gy.ravel()], -1)).reshape(gx.shape) * steps[0] * steps[1]
    expected = n * p.reshape(bins, fine, bins, fine).sum((1, 3))
    use = expected > 20
    stat = ((observed[use] - expected[use]) ** 2 / expected[use]).sum()
    return stat, use.sum() - 1, p.sum()


@pytest.mark.parametrize("task_id, lo, hi", [
    ("2v1-galaxy-0.5-3.0", (-4.5, -4.5), (4.5, 4.5)),
    ("2v1-waves-12-5.0-3.0", (-1.6, -1.6), (1.6, 1.6)),
])
def test_bent_x_has_the_density_with_its_jacobian(task_id, lo, hi):
    """x after the map (spiral, sine shear + scaling): a histogram of draws against the density
    log p(x) that the truth uses, which carries the inverse map and log|det J|."""
    task = mixtures.V2_TASKS[task_id](device="cpu")
    x, _ = task.sample(200_000, generator=gen(4))
    back, _ = task._inverse_x(x.double())
    assert torch.allclose(task._forward_x(back), x.double(), atol=1e-4)

    def density(points):
        pts = torch.as_tensor(points)
        return task._mixture(torch.device("cpu"), torch.float64).log_prob(task._inverse_x(pts)[0], "x") \
            .sub(torch.as_tensor(task._inverse_x(pts)[1])).exp().numpy()

    stat, dof, mass = _chi_square_on_grid(x.double().numpy(), density, lo, hi)
    inside = ((x[:, 0] > lo[0]) & (x[:, 0] < hi[0]) & (x[:, 1] > lo[1]) & (x[:, 1] < hi[1])).double().mean()
    assert abs(mass - inside.item()) < 0.005, (mass, inside.item())
    assert stat < _chi2_quantile(dof), (stat, dof)


@pytest.mark.parametrize("task_id, lo, hi", [
    ("1v1-X-0.9", (-3.5, -3.5), (3.5, 3.5)),
    ("1v1-AI", (-1.8, -1.5), (1.6, 1.5)),
])
def test_one_by_one_draws_have_the_joint_density(task_id, lo, hi):
    task = mixtures.V2_TASKS[task_id](device="cpu")
    x, y = task.sample(200_000, generator=gen(5))
    xy = torch.cat([x, y], 1).double().numpy()

    def density(points):
        pts = torch.as_tensor(points)
        return task.log_densities(pts[:, :1], pts[:, 1:])[0].exp().numpy()

    stat, dof, _ = _chi_square_on_grid(xy, density, lo, hi, fine=20)
    assert stat < _chi2_quantile(dof), (stat, dof)


def test_the_optimal_critic_broadcasts_over_pairs():
    task = mixtures.V2_TASKS["2v1-galaxy-0.5-3.0"](device="cpu")
    x, y = task.sample(5, generator=gen(6))
    scores = task.log_ratio(x[:, None], y[None, :])
    assert scores.shape == (5, 5) and scores.dtype == x.dtype
    assert torch.allclose(scores.diagonal(), task.log_ratio(x, y))


# ------------------------------------------------------------------------------------------
# The truth against routes that share none of its code
#
# Each v2 task reduces to a problem of at most two dimensions (or a 4-d Gaussian expectation)
# with the same MI, integrated here with scipy:
#   X, AI: the 2-d joint itself.
#   Waves: the map of x is a diffeomorphism, and x_2 ~ N(0, 1) in every component, independent
#     of (x_1, y): I = I(x_1; y), a 2-d mixture of N(1.5 k, 0.1) x N(1.5 (k mod 4), 0.1).
#   Galaxy: likewise I = I(u; y) with u = (x_1 + x_2) / sqrt 2 (the orthogonal direction is
#     N(0, 1) in both components): N(+-1.5 sqrt 2, 1) x N(+-1.5, 1).
#   Concentric: y's components (sd 0.01, 1 apart) do not overlap, so y gives the component i,
#     and x depends on i only through r = |x| ~ i chi_d: I = I(r; i), a 1-d integral.
#   Inliers: the coordinates past n_interacting are N(0, 1) and independent of everything in
#     both components, so I = E log((1 - f) r(x1, y1) r(x2, y2) + f) with r the 2-d normal's
#     density ratio: Gauss-Hermite over the signal and the independent component.


def _grid_mi(ws, means, covs, xs, ys):
    from scipy import integrate, stats
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    pts = np.stack([gx, gy], -1)
    lp = np.logaddexp.reduce([math.log(w) + stats.multivariate_normal(m, c).logpdf(pts)
                              for w, m, c in zip(ws, means, covs)], axis=0)
    lx = np.logaddexp.reduce([math.log(w) + stats.norm(m[0], math.sqrt(c[0][0])).logpdf(xs)
                              for w, m, c in zip(ws, means, covs)], axis=0)
    ly = np.logaddexp.reduce([math.log(w) + stats.norm(m[1], math.sqrt(c[1][1])).logpdf(ys)
                              for w, m, c in zip(ws, means, covs)], axis=0)
    f = np.exp(lp) * (lp - lx[:, None] - ly[None, :])
    return integrate.simpson(integrate.simpson(f, x=ys, axis=1), x=xs)


def _quadrature_x():
    r = 0.9
    grid = np.linspace(-8, 8, 801)
    return _grid_mi([0.5, 0.5], [[0, 0], [0, 0]], [[[1, -r], [-r, 1]], [[1, r], [r, 1]]], grid, grid)


def _quadrature_ai():
    c = math.sqrt(0.04 * 0.2) * 0.95
    means = [[1, 0], [1, 1], [1, -1], [-0.8, -0.2], [-1.2, 0], [-0.4, 0]]
    covs = [[[0.01, 0], [0, 0.2]], [[0.05, 0], [0, 0.001]], [[0.05, 0], [0, 0.001]],
            [[0.03, 0], [0, 0.001]], [[0.04, c], [c, 0.2]], [[0.04, -c], [-c, 0.2]]]
    return _grid_mi([1 / 6] * 6, means, covs, np.linspace(-2.5, 2.2, 941), np.linspace(-2.5, 2.5, 1251))


def _quadrature_waves():
    k = 12
    return _grid_mi([1 / k] * k, [[1.5 * i, 1.5 * (i % 4)] for i in range(k)], [np.eye(2) * 0.1] * k,
                    np.linspace(-3, 20, 1151), np.linspace(-3, 7.5, 526))


def _quadrature_galaxy():
    h, grid = 1.5, np.linspace(-10, 10, 801)
    return _grid_mi([0.5, 0.5], [[-h * math.sqrt(2), -h], [h * math.sqrt(2), h]], [np.eye(2)] * 2, grid, grid)


def _quadrature_concentric(dim_x, n):
    from scipy import integrate, stats

    def integrand(r):
        pc = np.array([stats.chi(dim_x, scale=i).pdf(r) for i in range(1, n + 1)])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(pc > 0, pc * np.log(pc / pc.mean(0)), 0.0).mean(0)
    return integrate.quad(integrand, 0, n * (math.sqrt(dim_x) + 10), limit=500)[0]


def _quadrature_inliers(f, rho=0.8, nodes=40):
    from scipy import stats

    z, w = np.polynomial.hermite_e.hermegauss(nodes)
    a, b = (t.ravel() for t in np.meshgrid(z, z, indexing="ij"))
    weights = np.outer(w, w).ravel() / w.sum() ** 2
    pair = stats.multivariate_normal([0, 0], [[1, rho], [rho, 1]])

    def log_r(x, y):
        return pair.logpdf(np.stack([x, y], -1)) - stats.norm.logpdf(x) - stats.norm.logpdf(y)

    def expect(lr):
        return weights @ np.logaddexp(math.log(1 - f) + lr[:, None] + lr[None, :], math.log(f)) @ weights
    return (1 - f) * expect(log_r(a, rho * a + math.sqrt(1 - rho**2) * b)) + f * expect(log_r(a, b))


QUADRATURE = {
    "1v1-X-0.9": _quadrature_x, "1v1-AI": _quadrature_ai,
    "2v1-waves-12-5.0-3.0": _quadrature_waves, "2v1-galaxy-0.5-3.0": _quadrature_galaxy,
    **{f"{d}v1-concentric_gaussians-{n}": (lambda d=d, n=n: _quadrature_concentric(d, n))
       for d, n in [(3, 5), (5, 5), (3, 10), (5, 10), (25, 5)]},
    **{f"mult-sparse-w-inliers-{d}-{d}-2-2.0-{f}": (lambda f=f: _quadrature_inliers(f))
       for d in (5, 25) for f in (0.2, 0.5)},
}


@pytest.mark.parametrize("task_id", list(V2_IDS))
def test_full_truth_agrees_with_quadrature(task_id):
    """The truth as the benchmark uses it (default N, fixed seed) within 3 standard errors of
    a quadrature of an equivalent low-dimensional problem."""
    truth = mixtures.V2_TASKS[task_id](device="cpu").ground_truth()
    assert truth.stderr < 0.005 and f"N={mixtures.TRUTH_SAMPLES}" in truth.note
    exact = QUADRATURE[task_id]()
    assert abs(truth.mi - exact) < 3 * truth.stderr, (truth.mi, truth.stderr, exact)


def test_the_quadratures_are_converged():
    """Halving the grids (or nodes) moves the quadratures by far less than a standard error."""
    c = math.sqrt(0.04 * 0.2) * 0.95
    coarse_ai = _grid_mi([1 / 6] * 6, [[1, 0], [1, 1], [1, -1], [-0.8, -0.2], [-1.2, 0], [-0.4, 0]],
                         [[[0.01, 0], [0, 0.2]], [[0.05, 0], [0, 0.001]], [[0.05, 0], [0, 0.001]],
                          [[0.03, 0], [0, 0.001]], [[0.04, c], [c, 0.2]], [[0.04, -c], [-c, 0.2]]],
                         np.linspace(-2.5, 2.2, 471), np.linspace(-2.5, 2.5, 626))
    assert abs(coarse_ai - _quadrature_ai()) < 2e-4
    assert abs(_quadrature_inliers(0.2, nodes=24) - _quadrature_inliers(0.2)) < 2e-4


@pytest.mark.parametrize("task_id", ["2v1-galaxy-0.5-3.0", "mult-sparse-w-inliers-25-25-2-2.0-0.5"])
def test_another_seed_and_n_agree_within_three_standard_errors(task_id):
    truth = mixtures.V2_TASKS[task_id](device="cpu").ground_truth()
    task = mixtures.V2_TASKS[task_id](device="cpu", truth_samples=60_000)
    mi, se = mixtures.monte_carlo_mi(task, 60_000, seed=7)
    assert abs(mi - truth.mi) < 3 * math.hypot(se, truth.stderr), (mi, se, truth)


def test_the_25_dim_inliers_have_the_5_dim_inliers_mi():
    """Coordinates past the interacting pairs carry no information: the two truths differ by
    no more than their Monte Carlo noise (a check on the 50-d densities)."""
    small = mixtures.V2_TASKS["mult-sparse-w-inliers-5-5-2-2.0-0.2"](device="cpu").ground_truth()
    large = mixtures.V2_TASKS["mult-sparse-w-inliers-25-25-2-2.0-0.2"](device="cpu").ground_truth()
    assert abs(small.mi - large.mi) < 3 * math.hypot(small.stderr, large.stderr)


# ------------------------------------------------------------------------------------------
# The truth cache


def _fail(*args, **kwargs):
    raise AssertionError("the truth was recomputed")


def _cache_files(tmp_path):
    return sorted((tmp_path / "cache" / "mibench" / "truth").glob("*.json"))


def test_the_truth_is_computed_once_and_then_read_from_disk(tmp_path, monkeypatch):
    first = mixtures.GalaxyTask(truth_samples=5000).ground_truth()
    (path,) = _cache_files(tmp_path)
    assert json.loads(path.read_text())["mi"] == first.mi
    monkeypatch.setattr(mixtures, "monte_carlo_mi", _fail)
    assert mixtures.GalaxyTask(truth_samples=5000).ground_truth() == first      # in-process cache
    mixtures.cached_truth.cache_clear()
    assert mixtures.GalaxyTask(truth_samples=5000).ground_truth() == first      # from the file
    with pytest.raises(AssertionError, match="recomputed"):                       # N is in the key
        mixtures.GalaxyTask(truth_samples=6000).ground_truth()
    with pytest.raises(AssertionError, match="recomputed"):                       # so are the parameters
        mixtures.GalaxyTask(speed=0.25, truth_samples=5000).ground_truth()


@pytest.mark.parametrize("content", ["{not json", "", '{"mi": "nan", "stderr": 0.1, "key": null}', "[1, 2]"])
def test_a_corrupt_cache_file_is_recomputed(tmp_path, content):
    first = mixtures.XTask(truth_samples=5000).ground_truth()
    (path,) = _cache_files(tmp_path)
    path.write_text(content)
    mixtures.cached_truth.cache_clear()
    assert mixtures.XTask(truth_samples=5000).ground_truth() == first
    assert json.loads(path.read_text())["mi"] == first.mi                        # and rewritten


def test_an_unwritable_cache_does_not_fail_the_task(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    truth = mixtures.AITask(truth_samples=5000).ground_truth()
    assert math.isfinite(truth.mi) and truth.stderr > 0
