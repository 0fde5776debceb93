"""KSG's options (``metric``, ``standardize``, ``clip``): BMI's KSG-10 is one configuration of
mibench's KSG. Checked against a brute-force reading of the definition written out here
(every distance, no tree), and against the max-norm estimator it differs from."""

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma

from mibench.baselines import ksg, ksg_ensemble, standardized


def brute_force_ksg(x: np.ndarray, y: np.ndarray, k: int, norm: float) -> float:
    """KSG's first estimator straight from its definition: all N x N distances within x and
    within y in the given p-norm, the distance in z the larger one, eps_i the k-th smallest
    distance to another point, strict counts."""
    n = len(x)
    d_x = np.linalg.norm(x[:, None, :] - x[None, :, :], ord=norm, axis=-1)
    d_y = np.linalg.norm(y[:, None, :] - y[None, :, :], ord=norm, axis=-1)
    np.fill_diagonal(d_x, np.inf)
    np.fill_diagonal(d_y, np.inf)
    d_z = np.maximum(d_x, d_y)
    eps = np.sort(d_z, axis=1)[:, k - 1]
    n_x = (d_x < eps[:, None]).sum(1)
    n_y = (d_y < eps[:, None]).sum(1)
    return float(digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1)))


def dense_gaussian(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """x, y of d coordinates each, every pair of coordinates correlated (BMI's dense normal, up
    to scale); x's coordinates on scales 1..d so that standardising matters."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2 * d))
    cov = np.full((2 * d, 2 * d), 0.3) + 0.7 * np.eye(2 * d)
    z = z @ np.linalg.cholesky(cov).T
    return z[:, :d] * np.arange(1, d + 1), z[:, d:]


@pytest.mark.parametrize("metric,norm", [("euclidean", 2), ("max", np.inf)])
@pytest.mark.parametrize("d", [1, 5])
def test_ksg_metric_matches_the_definition(metric, norm, d):
    x, y = dense_gaussian(400, d, seed=d)
    expected = brute_force_ksg(x, y, 10, norm)
    assert ksg(x, y, k=10, metric=metric) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("metric,norm", [("euclidean", 2), ("max", np.inf)])
def test_ksg_metric_matches_the_definition_with_ties(metric, norm):
    """Data on a grid of quarters: many pairs at exactly equal distances and duplicate points,
    where the strict counts are decided by ties. Quarters keep every difference, square and sum
    exact in floating point, so any order of summation gives the same distances and the torch
    path (blocks of exact distances) must count as the definition does. (On decimal grids such
    as 0.1 the distances of mathematically tied pairs already differ in their last bit, by an
    amount that depends on the order of summation.)"""
    x, y = dense_gaussian(600, 3, seed=11)
    x, y = np.round(4 * x) / 4, np.round(4 * y) / 4
    expected = brute_force_ksg(x, y, 10, norm)
    assert ksg(x, y, k=10, metric=metric, device="cpu") == pytest.approx(expected, abs=1e-12)


def test_euclidean_and_max_norm_are_different_estimators():
    """At 25 + 25 standardised dimensions the two norms give estimates far apart (measured on
    this draw: 0.630 Euclidean, 0.523 max-norm), while at one dimension per side they coincide
    exactly."""
    x, y = dense_gaussian(1000, 25, seed=0)
    apart = ksg(x, y, k=10, metric="euclidean", standardize=True) - ksg(x, y, k=10, metric="max", standardize=True)
    assert apart > 0.05
    x1, y1 = dense_gaussian(500, 1, seed=0)
    assert ksg(x1, y1, k=10, metric="euclidean") == pytest.approx(ksg(x1, y1, k=10, metric="max"), abs=1e-12)


def test_standardize_is_the_z_score_of_each_coordinate():
    x, y = dense_gaussian(300, 3, seed=4)
    by_hand = ksg(standardized(x), standardized(y), k=10, metric="euclidean")
    assert ksg(x, y, k=10, metric="euclidean", standardize=True) == pytest.approx(by_hand, abs=1e-12)
    # and it makes the estimate blind to rescaling a coordinate, which the raw one is not
    scaled = x * np.array([1.0, 100.0, 0.01])
    assert ksg(scaled, y, k=10, metric="euclidean", standardize=True) == pytest.approx(by_hand, abs=1e-9)
    assert abs(ksg(scaled, y, k=10, metric="euclidean") - by_hand) > 0.05
    z = standardized(np.column_stack([x[:, 0], np.full(300, 7.0)]))
    assert z[:, 1].tolist() == [0.0] * 300 and abs(z[:, 0].std() - 1) < 1e-12


def test_clip_returns_zero_for_a_negative_estimate():
    rng = np.random.default_rng(0)
    seeds = [(rng.standard_normal((200, 2)), rng.standard_normal((200, 2))) for _ in range(10)]
    raw = [ksg(x, y, k=10, metric="euclidean") for x, y in seeds]
    assert min(raw) < 0                         # independent samples: some draws fall below 0
    clipped = [ksg(x, y, k=10, metric="euclidean", clip=True) for x, y in seeds]
    assert clipped == [max(0.0, r) for r in raw]


def test_ensemble_clips_each_k_before_the_mean():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((300, 2)), rng.standard_normal((300, 2))
    each = [max(0.0, ksg(x, y, k=k, metric="euclidean", standardize=True)) for k in (5, 10)]
    assert ksg_ensemble(x, y, ks=(5, 10), metric="euclidean", standardize=True, clip=True) \
        == pytest.approx(sum(each) / 2, abs=1e-12)


def test_euclidean_on_a_torch_device_matches_the_cpu_default():
    x, y = dense_gaussian(300, 4, seed=2)
    ref = ksg(x, y, k=5, metric="euclidean")
    assert ksg(torch.from_numpy(x), torch.from_numpy(y), k=5, metric="euclidean", device="cpu") \
        == pytest.approx(ref, abs=1e-12)


def test_unknown_metric_is_refused():
    x, y = dense_gaussian(50, 1, seed=0)
    with pytest.raises(ValueError, match="metric must be one of max, euclidean"):
        ksg(x, y, metric="manhattan")


def test_bmi_ksg10_on_a_gaussian_is_near_the_truth():
    """BMI's KSG-10 (Euclidean, standardised, clipped) on 5,000 points of a bivariate normal
    with correlation 0.75 (truth -1/2 ln(1 - 0.75^2) = 0.413 nats). Tolerance 0.05: KSG's
    seed spread at this size is about 0.01-0.02 nats."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(5000)
    y = 0.75 * x + math.sqrt(1 - 0.75**2) * rng.standard_normal(5000)
    truth = -0.5 * math.log(1 - 0.75**2)
    assert abs(ksg(x, y, k=10, metric="euclidean", standardize=True, clip=True) - truth) < 0.05


# BMI's own package (benchmark-mi 0.1.3, KSGEnsembleFirstEstimator, its defaults: standardised,
# Euclidean, clipped) on the draws dense_gaussian(n, d, seed=d) of this file, run in BMI's
# environment (scripts/bmi_env.py): neighborhoods (10,) and (5, 10).
BMI_KSG = {(1, 2000): (0.03623977333989359, 0.033675708468328125),
           (5, 2000): (0.259137724823999, 0.26652191857062846),
           (25, 1000): (0.6777546829485441, 0.6828167509272189)}


@pytest.mark.parametrize("d,n", sorted(BMI_KSG))
def test_bmi_ksg_is_one_configuration_of_mibench_ksg(d, n):
    x, y = dense_gaussian(n, d, seed=d)
    ksg10, ensemble = BMI_KSG[(d, n)]
    bmi = dict(metric="euclidean", standardize=True, clip=True)
    assert ksg(x, y, k=10, **bmi) == pytest.approx(ksg10, abs=1e-10)
    assert ksg_ensemble(x, y, ks=(5, 10), **bmi) == pytest.approx(ensemble, abs=1e-10)


def test_the_options_reach_a_sample_run_and_defaults_stay_out_of_its_cell():
    """In a preset, metric / standardize / clip sit beside k; a row names only the options that
    differ from the paper's estimator, so rows recorded before they existed stay one cell."""
    from mibench.sample import SAMPLE_ESTIMATORS, SampleSpec

    x, y = dense_gaussian(400, 3, seed=7)
    bmi = SampleSpec.from_dict({"name": "ksg", "k": 10, "metric": "euclidean", "standardize": True, "clip": True})
    est = bmi.build()
    assert est.estimate(torch.from_numpy(x), torch.from_numpy(y), seed=0) \
        == pytest.approx(ksg(x, y, k=10, metric="euclidean", standardize=True, clip=True), abs=1e-12)
    assert bmi.shown_options() == {"k": 10, "metric": "euclidean", "standardize": True, "clip": True}
    assert SampleSpec.from_dict({"name": "ksg", "k": 3}).shown_options() == {"k": 3}
    assert SampleSpec.from_dict({"name": "ksg_ensemble"}).shown_options() == {"ks": [5, 10]}
    with pytest.raises(Exception, match="metric must be max"):
        SAMPLE_ESTIMATORS["ksg"](metric="cosine")
