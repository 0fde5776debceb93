"""Analytic truths of the Gaussian families against independent computations."""

import math

import numpy as np
import pytest
import torch

from conftest import gen
from mibench.distributions import CorrelatedGaussian, JointGaussian, build_task
from mibench.interface import ConfigError


@pytest.mark.parametrize("dim,mi", [(1, 0.5), (5, 1.0), (20, 10.0)])
def test_rho_and_mi_round_trip(dim, mi):
    task = CorrelatedGaussian(dim, mi=mi)
    assert task.ground_truth().mi == pytest.approx(mi, rel=1e-12)
    assert CorrelatedGaussian(dim, rho=task.rho).mi == pytest.approx(mi, rel=1e-12)


def test_closed_form_matches_determinant_formula():
    """-(d/2) ln(1 - rho^2) against 1/2 ln(det Sxx det Syy / det S) computed with numpy."""
    d, rho = 4, 0.7
    s = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])
    _, logdet = np.linalg.slogdet(s)
    assert CorrelatedGaussian(d, rho=rho).mi == pytest.approx(-0.5 * logdet, rel=1e-12)
    assert JointGaussian(s.tolist(), d).ground_truth().mi == pytest.approx(-0.5 * logdet, rel=1e-9)


def test_general_covariance_matches_canonical_correlations():
    """I = -1/2 sum ln(1 - c_k^2) over the canonical correlations c_k (an independent route)."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    s = a @ a.T + 5 * np.eye(5)
    dx = 2
    sxx, syy, sxy = s[:dx, :dx], s[dx:, dx:], s[:dx, dx:]
    wx = np.linalg.inv(np.linalg.cholesky(sxx))
    wy = np.linalg.inv(np.linalg.cholesky(syy))
    c = np.linalg.svd(wx @ sxy @ wy.T, compute_uv=False)
    expected = -0.5 * np.log1p(-(c**2)).sum()
    assert JointGaussian(s.tolist(), dx).ground_truth().mi == pytest.approx(expected, rel=1e-9)


def test_one_dimensional_plug_in_estimate_matches_truth():
    """With 400k samples, -1/2 ln(1 - r^2) from the sample correlation is within 0.005 nats."""
    task = CorrelatedGaussian(1, mi=0.8)
    x, y = task.sample(400_000, generator=gen(1))
    r = np.corrcoef(x[:, 0].numpy(), y[:, 0].numpy())[0, 1]
    assert -0.5 * math.log(1 - r * r) == pytest.approx(0.8, abs=0.005)


def test_empirical_correlation_matches_rho():
    task = CorrelatedGaussian(8, rho=0.6)
    x, y = task.sample(200_000, generator=gen(2))
    r = ((x - x.mean(0)) * (y - y.mean(0))).mean(0) / (x.std(0) * y.std(0))
    assert torch.allclose(r, torch.full((8,), 0.6), atol=0.005)


@pytest.mark.parametrize("transform", ["none", "cubic", "asinh"])
def test_log_ratio_is_the_density_ratio(transform):
    """E_p[log r] = I and E_{p(x)p(y)}[r] = 1 for the task's own log_ratio (Monte Carlo, 200k)."""
    task = CorrelatedGaussian(3, mi=1.0, transform=transform)
    x, y = task.sample(200_000, generator=gen(3))
    assert task.log_ratio(x, y).mean().item() == pytest.approx(1.0, abs=0.01)
    shuffled = y[torch.randperm(len(y), generator=gen(4))]
    assert torch.exp(task.log_ratio(x, shuffled)).mean().item() == pytest.approx(1.0, abs=0.02)


def test_joint_gaussian_log_ratio_agrees_with_correlated_family():
    d, rho = 3, 0.5
    s = np.block([[np.eye(d), rho * np.eye(d)], [rho * np.eye(d), np.eye(d)]])
    a, b = CorrelatedGaussian(d, rho=rho), JointGaussian(s.tolist(), d)
    x, y = a.sample(100, generator=gen(5))
    assert torch.allclose(a.log_ratio(x, y), b.log_ratio(x, y), atol=1e-4)


def test_same_seed_same_batch():
    task = CorrelatedGaussian(4, mi=2.0)
    a, b = task.sample(64, generator=gen(7)), task.sample(64, generator=gen(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize("params,match", [
    ({"dim": 2}, "exactly one of rho"),
    ({"dim": 2, "rho": 1.0}, r"rho must lie in \(-1, 1\)"),
    ({"dim": 0, "mi": 1.0}, "dim must be a positive integer"),
    ({"dim": 2, "mi": 1.0, "transform": "cube"}, "unknown transform 'cube'"),
    ({"dim": 2, "mi": 1.0, "sigma": 3}, "unknown key 'sigma'; allowed: dim, mi, rho, transform"),
])
def test_bad_parameters_are_named(params, match):
    with pytest.raises(ConfigError, match=match):
        build_task("gaussian", params)


def test_non_positive_definite_covariance_is_rejected():
    with pytest.raises(ConfigError, match="positive definite"):
        JointGaussian([[1.0, 2.0], [2.0, 1.0]], 1)
