"""Micro-benchmarks (pytest-benchmark) of the hot small functions: the bounds on a (128, 128)
score matrix, the negatives' indices and the two samplers at batch 128.

Under ``--benchmark-disable`` (as CI runs pytest) each runs once as a plain test; measure with
``python -m pytest tests/test_microbench.py --benchmark-only``. Each also checks its result.
"""

import math

import pytest
import torch

from conftest import gen
from mibench import bounds as B
from mibench.distributions import CorrelatedGaussian
from mibench.nets import candidate_indices

BATCH = 128


@pytest.fixture
def scores():
    """(B, K + 1) = (128, 128): a positive column and 127 negatives, positives scored higher."""
    s = torch.randn(BATCH, BATCH, generator=gen(0))
    s[:, 0] += 2.0
    return s


@pytest.mark.parametrize("fn", [B.infonce, B.nwj, B.dv, B.js_loss, B.SMILE(tau=5.0).estimate],
                         ids=["infonce", "nwj", "dv", "js_loss", "smile"])
def test_bound_on_score_matrix(benchmark, scores, fn):
    value = benchmark(fn, scores)
    assert value.shape == () and torch.isfinite(value)
    if fn is B.infonce:
        assert value <= math.log(BATCH) + 1e-5


def test_candidate_indices(benchmark):
    g = gen(0)
    cols = benchmark(candidate_indices, BATCH, 32, g, torch.device("cpu"))
    assert cols.shape == (BATCH, 33)
    assert torch.equal(cols[:, 0], torch.arange(BATCH))
    assert not (cols[:, 1:] == torch.arange(BATCH)[:, None]).any()


def test_gaussian_sampler(benchmark):
    task = CorrelatedGaussian(20, mi=4.0)
    g = gen(0)
    x, y = benchmark(lambda: task.sample(BATCH, generator=g))
    assert x.shape == y.shape == (BATCH, 20)
    assert torch.isfinite(x).all() and torch.isfinite(y).all()


def test_paired_mnist_sampler(benchmark, mnist_train):
    g = gen(0)
    x, y = benchmark(lambda: mnist_train.sample(BATCH, generator=g))
    assert x.shape == y.shape == (BATCH, 1, 28, 28)
    assert x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    # every pair shares its label (keep = 1): check it through the indices of the same draw
    i, j = mnist_train.pair_indices(BATCH, gen(1))
    assert torch.equal(mnist_train.labels[i], mnist_train.labels[j])
