"""Paired MNIST on the real data: pairing, marginals, truth, determinism."""

import math

import pytest
import torch

from conftest import gen
from mibench.data import load_split
from mibench.distributions import PairedImages
from mibench.distributions.mnist import channel_mi, label_entropy


def test_truth_is_label_entropy_of_each_split(mnist_train):
    assert mnist_train.n_images == 60_000
    assert mnist_train.ground_truth().mi == pytest.approx(2.3012, abs=5e-5)
    assert mnist_train.heldout().ground_truth().mi == pytest.approx(2.3008, abs=5e-5)
    assert mnist_train.ground_truth().mi < math.log(10)


def test_all_images_are_distinct_so_label_is_a_function_of_the_image():
    """The truth I = H(labels) needs every image of the split to be distinct."""
    for train in (True, False):
        images, _ = load_split("mnist", train)
        flat = images.reshape(len(images), -1)
        assert torch.unique(flat, dim=0).shape[0] == len(images)


def test_every_pair_shares_its_label(mnist_train):
    i, j = mnist_train.pair_indices(200_000, gen(0))
    assert torch.equal(mnist_train.labels[i], mnist_train.labels[j])
    x, y = mnist_train.sample(256, generator=gen(1))
    assert x.shape == y.shape == (256, 1, 28, 28) and x.dtype == torch.float32
    assert 0.0 <= x.min() and x.max() <= 1.0


def test_x_is_uniform_over_images_and_y_uniform_within_class(mnist_train):
    n = 600_000  # 10 draws per image on average
    i, j = mnist_train.pair_indices(n, gen(2))
    for idx in (i, j):
        counts = torch.bincount(idx, minlength=60_000).double()
        # Poisson(10) per image: mean 10, variance 10; a non-uniform sampler moves either.
        assert counts.mean().item() == pytest.approx(10.0, rel=1e-9)
        assert counts.var().item() == pytest.approx(10.0, rel=0.05)
    # within one class, y hits the class's images evenly
    c0 = mnist_train.by_class[mnist_train.starts[0]: mnist_train.starts[0] + mnist_train.counts[0]]
    hits = torch.bincount(j, minlength=60_000)[c0].double()
    assert hits.var().item() == pytest.approx(hits.mean().item(), rel=0.1)


def test_same_seed_gives_the_same_batch(mnist_train):
    a = mnist_train.sample(128, generator=gen(3))
    b = mnist_train.sample(128, generator=gen(3))
    c = mnist_train.sample(128, generator=gen(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_label_channel_truth_and_sampling():
    task = PairedImages("mnist", "test", keep=0.5)
    prior = task.prior
    i, j = task.pair_indices(400_000, gen(5))
    agree = (task.labels[i] == task.labels[j]).double().mean().item()
    assert agree == pytest.approx(0.5 + 0.5 * (prior**2).sum().item(), abs=0.003)
    assert 0 < task.ground_truth().mi < label_entropy(task.labels)
    assert channel_mi(prior, 1.0) == pytest.approx(label_entropy(task.labels), rel=1e-12)
    assert channel_mi(prior, 0.0) == pytest.approx(0.0, abs=1e-12)


def test_fashion_mnist_is_exactly_ln10():
    task = PairedImages("fashion_mnist", "train")
    assert task.ground_truth().mi == pytest.approx(math.log(10), rel=1e-12)
