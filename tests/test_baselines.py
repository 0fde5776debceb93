"""The classical estimators of mibench.baselines against analytic MI, scikit-learn's KSG, each
other (kd-tree and torch paths), and their own invariances."""

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma

from mibench import baselines
from mibench.baselines import gaussian_cca, histogram, ksg, ksg_ensemble


def correlated_gaussian(n: int, d: int, mi: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x ~ N(0, I_d), y = rho x + sqrt(1 - rho^2) noise: d independent pairs sharing mi / d nats."""
    rho = math.sqrt(1 - math.exp(-2 * mi / d))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1 - rho**2) * rng.standard_normal((n, d))
    return x, y


def standardise(a: np.ndarray) -> np.ndarray:
    return (a - a.mean(axis=0)) / a.std(axis=0)


MI_RHO_08 = -0.5 * math.log(1 - 0.8**2)     # 0.511 nats, one pair with correlation 0.8


@pytest.mark.parametrize("k", [3, 5])
def test_ksg_matches_scikit_learn(k):
    """scikit-learn's mutual_info_regression is the same estimator after scaling by the std and
    adding noise of relative size 1e-10 (and clipping at 0, far below this MI). Measured: the
    two agree to 1e-15 on this draw; the tolerance leaves room for other versions' noise."""
    sklearn_fs = pytest.importorskip("sklearn.feature_selection")
    x, y = correlated_gaussian(2000, 1, MI_RHO_08, seed=1)
    x, y = standardise(x), standardise(y)
    ours = ksg(x, y, k=k)
    theirs = sklearn_fs.mutual_info_regression(x, y[:, 0], n_neighbors=k, random_state=0)[0]
    assert theirs > 0.3
    assert abs(ours - theirs) < 0.02


@pytest.mark.parametrize("d,mi,tol", [
    # d = 1, I = 0.511, n = 5000, k = 3: est - I over seeds 0..9 ran from -0.013 to +0.035.
    (1, MI_RHO_08, 0.05),
    # d = 5 + 5, I = 1, n = 5000, k = 3: KSG's known downward bias in higher dimension;
    # est - I over seeds 0..9 ran from -0.224 to -0.165 (mean -0.189).
    (5, 1.0, 0.25),
])
def test_ksg_correlated_gaussian(d, mi, tol):
    x, y = correlated_gaussian(5000, d, mi, seed=2)
    est = ksg(x, y, k=3)
    assert abs(est - mi) < tol


def test_ksg_near_zero_for_independent():
    # Measured over seeds 0..9 with n = 2000: |est| <= 0.034.
    rng = np.random.default_rng(3)
    assert abs(ksg(rng.standard_normal(2000), rng.standard_normal(2000))) < 0.05


def test_ksg_invariances():
    """Reordering the sample (one permutation of the rows of x and y together), permuting the
    coordinates of x or y, and swapping x with y leave the estimate unchanged."""
    x, y = correlated_gaussian(1000, 3, 1.0, seed=4)
    rng = np.random.default_rng(5)
    ref = ksg(x, y)
    rows = rng.permutation(1000)
    assert ksg(x[rows], y[rows]) == pytest.approx(ref, abs=1e-12)
    assert ksg(x[:, [2, 0, 1]], y[:, [1, 2, 0]]) == pytest.approx(ref, abs=1e-12)
    assert ksg(y, x) == pytest.approx(ref, abs=1e-12)
    # Pairing x with another row's y destroys the dependence: the estimate must move.
    assert abs(ksg(x, y[rows]) - ref) > 0.5


def test_ksg_torch_path_equals_kdtree(monkeypatch):
    """device="cpu" forces the torch path; a small block size makes it cross block boundaries."""
    x, y = correlated_gaussian(500, 3, 1.0, seed=6)
    x = x * np.array([1.0, 2.0, 0.5])           # unequal scales: the max-norm sees them
    kd = ksg(x, y, k=4)
    assert ksg(x, y, k=4, device="cpu") == pytest.approx(kd, abs=1e-9)
    monkeypatch.setattr(baselines, "TORCH_BLOCK_ROWS", 37)
    assert ksg(torch.from_numpy(x).float(), torch.from_numpy(y), k=4, device=torch.device("cpu")) \
        == pytest.approx(ksg(x.astype(np.float32), y, k=4), abs=1e-9)


def test_ksg_duplicates():
    """eps_i = 0 (k or more copies of z_i): no point is strictly closer, n_x = n_y = 0, on both
    paths, and without a crash."""
    z = np.zeros(4)
    expected = digamma(1) + digamma(4) - 2 * digamma(1)
    assert ksg(z, z, k=1) == pytest.approx(expected, abs=1e-12)
    assert ksg(z, z, k=1, device="cpu") == pytest.approx(expected, abs=1e-12)
    # Many ties: both paths still agree and give a finite value.
    x, y = correlated_gaussian(400, 2, 0.5, seed=7)
    x, y = np.round(x, 1), np.round(y, 1)
    kd = ksg(x, y, k=3)
    assert math.isfinite(kd)
    assert ksg(x, y, k=3, device="cpu") == pytest.approx(kd, abs=1e-9)


def test_ksg_rejects_bad_input():
    x, y = correlated_gaussian(10, 1, 0.5, seed=8)
    with pytest.raises(ValueError, match="same number of rows"):
        ksg(x, y[:9])
    with pytest.raises(ValueError, match="more than k"):
        ksg(x, y, k=10)
    with pytest.raises(ValueError, match="k must be"):
        ksg(x, y, k=0)


@pytest.mark.gpu
def test_ksg_cuda_equals_kdtree():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    x, y = correlated_gaussian(3000, 3, 1.0, seed=9)
    kd = ksg(x, y, k=3)
    assert ksg(x, y, k=3, device="cuda") == pytest.approx(kd, abs=1e-9)
    assert ksg(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda(), k=3) == pytest.approx(kd, abs=1e-9)


def test_ksg_ensemble_is_mean():
    x, y = correlated_gaussian(1000, 2, 1.0, seed=10)
    assert ksg_ensemble(x, y) == pytest.approx((ksg(x, y, k=5) + ksg(x, y, k=10)) / 2, abs=1e-12)
    assert ksg_ensemble(x, y, ks=(3,)) == pytest.approx(ksg(x, y, k=3), abs=1e-12)


def test_gaussian_cca_analytic():
    d_x = d_y = 5
    rng = np.random.default_rng(11)
    a = rng.standard_normal((d_x + d_y, d_x + d_y))
    cov = a @ a.T + 0.5 * np.eye(d_x + d_y)     # a random SPD joint covariance
    truth = 0.5 * (np.linalg.slogdet(cov[:d_x, :d_x])[1] + np.linalg.slogdet(cov[d_x:, d_x:])[1]
                   - np.linalg.slogdet(cov)[1])
    assert truth > 0.5
    z = rng.standard_normal((200_000, d_x + d_y)) @ np.linalg.cholesky(cov).T
    assert abs(gaussian_cca(z[:, :d_x], z[:, d_x:]) - truth) < 0.01


def test_gaussian_cca_equals_canonical_correlations():
    x, y = correlated_gaussian(2000, 3, 1.0, seed=12)
    y = y @ np.random.default_rng(13).standard_normal((3, 3))   # mix y: non-diagonal cross-cov
    xc, yc = x - x.mean(0), y - y.mean(0)
    wx = np.linalg.cholesky(np.linalg.inv(xc.T @ xc))
    wy = np.linalg.cholesky(np.linalg.inv(yc.T @ yc))
    rho = np.linalg.svd(wx.T @ xc.T @ yc @ wy, compute_uv=False)   # canonical correlations
    assert gaussian_cca(x, y) == pytest.approx(-0.5 * np.sum(np.log(1 - rho**2)), abs=1e-9)


def test_gaussian_cca_too_few_points():
    x, y = correlated_gaussian(10, 5, 1.0, seed=14)
    with pytest.raises(ValueError, match="N > dx \\+ dy"):
        gaussian_cca(x, y)
    gaussian_cca(*correlated_gaussian(11, 5, 1.0, seed=14))


def test_histogram_correlated_gaussian():
    # Measured over seeds 0..4: est - I from -0.016 to -0.010 (binning loses a little).
    x, y = correlated_gaussian(100_000, 1, MI_RHO_08, seed=15)
    assert abs(histogram(x, y, bins=32) - MI_RHO_08) < 0.05


def test_histogram_counts():
    """A case done by hand: x in two bins, y = x, so I = H(X) = log 2 for the plug-in; with
    Miller-Madow each of the three entropies gains (2 - 1) / (2N)."""
    x = np.array([0.0, 0.1, 0.9, 1.0])
    assert histogram(x, x, bins=2, correction="none") == pytest.approx(math.log(2), abs=1e-12)
    assert histogram(x, x, bins=2) == pytest.approx(math.log(2) + 1 / 8, abs=1e-12)
    # 2-d x and y: the grid has bins^4 cells, and I(X; X) = H(X) again.
    rng = np.random.default_rng(16)
    x2 = rng.integers(0, 3, size=(300, 2)).astype(float)
    _, counts = np.unique(x2, axis=0, return_counts=True)
    h = -np.sum(counts / 300 * np.log(counts / 300))
    assert histogram(x2, x2, bins=3, correction="none") == pytest.approx(h, abs=1e-12)


def test_histogram_rejects_bad_input():
    x, y = correlated_gaussian(100, 3, 0.5, seed=17)
    with pytest.raises(ValueError, match="1 or 2 dimensions each, got dx=3, dy=1"):
        histogram(x, y[:, 0])
    with pytest.raises(ValueError, match="correction"):
        histogram(x[:, 0], y[:, 0], correction="jackknife")
