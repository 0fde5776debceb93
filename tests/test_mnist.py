"""Paired MNIST on the real data: pairing, marginals, truth, determinism; strips of k digits
and their encoder."""

import hashlib
import math

import pytest
import torch

from conftest import gen
from mibench.data import load_split
from mibench.distributions import TASK_FAMILIES, PairedImages
from mibench.distributions.mnist import (CLASS_COUNTS, PairedFashionMNIST, PairedMNIST, channel_mi,
                                         label_entropy)
from mibench.estimators import build_estimator
from mibench.interface import ConfigError
from mibench.nets import ENCODERS


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


# --------------------------------------------------------------------------- strips of k digits

def _digest(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# sample(128) and pair_indices(128) of the one-digit sampler as it was before strips of k
# digits existed (computed from that code): committed results depend on these draws.
K1_DRAWS = [
    (("mnist", "train", 1.0, 0), "6c713bb748fb4eef", "4c51b0fb3a18cbfd"),
    (("mnist", "train", 0.5, 1), "264671ce2d390131", "1526ba0969a76462"),
    (("mnist", "test", 0.3, 2), "0dd4555849329c77", "d412e84491f2c2ea"),
    (("fashion_mnist", "train", 1.0, 3), "a91a9669de924c3c", "8198920e8ccb7fec"),
]


@pytest.mark.parametrize("case", K1_DRAWS, ids=lambda c: "-".join(map(str, c[0])))
def test_one_digit_draws_are_unchanged(case):
    (dataset, split, keep, seed), images_digest, indices_digest = case
    task = PairedImages(dataset, split, keep)
    assert task.x_shape == task.y_shape == (1, 28, 28)
    x, y = task.sample(128, generator=gen(seed))
    i, j = task.pair_indices(128, gen(seed))
    assert i.shape == j.shape == (128,)
    assert (_digest(x, y), _digest(i, j)) == (images_digest, indices_digest)


def test_class_counts_table_matches_the_files():
    for (dataset, split), counts in CLASS_COUNTS.items():
        _, labels = load_split(dataset, split == "train")
        assert torch.bincount(labels).tolist() == list(counts), (dataset, split)


def test_strips_lay_the_paired_images_side_by_side():
    task = PairedImages("mnist", "test", k=3)
    assert task.x_shape == task.y_shape == (1, 28, 84)
    x, y = task.sample(64, generator=gen(7))
    i, j = task.pair_indices(64, gen(7))
    assert x.shape == y.shape == (64, 1, 28, 84) and x.dtype == torch.float32
    assert i.shape == j.shape == (64, 3)
    for q in range(3):
        assert torch.equal(x[..., 28 * q: 28 * (q + 1)], task.images[i[:, q]])
        assert torch.equal(y[..., 28 * q: 28 * (q + 1)], task.images[j[:, q]])


def test_every_position_shares_its_label_when_keep_is_one():
    task = PairedImages("mnist", "test", k=4)
    i, j = task.pair_indices(50_000, gen(8))
    li, lj = task.labels[i], task.labels[j]
    assert torch.equal(li, lj)
    # the positions are independent draws: two positions agree about as often as chance says
    chance = (task.prior**2).sum().item()
    for a, b in ((0, 1), (1, 3)):
        assert (li[:, a] == li[:, b]).double().mean().item() == pytest.approx(chance, abs=0.01)


def _plugin_mi(a: torch.Tensor, b: torch.Tensor) -> float:
    """Plug-in MI (nats) of two label vectors, from their empirical joint table."""
    joint = torch.bincount(a * 10 + b, minlength=100).double().view(10, 10)
    joint /= joint.sum()
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    mask = joint > 0
    return float((joint[mask] * (joint[mask] / outer[mask]).log()).sum())


@pytest.mark.parametrize("keep", [1.0, 0.6])
def test_truth_is_k_times_the_label_channel_against_a_count(keep):
    """The truth k I(L; L') against the empirical label tables of 200k draws, position by position;
    labels of different positions (and of x at one position, y at another) carry nothing."""
    k = 3
    task = PairedImages("mnist", "test", keep, k=k)
    i, j = task.pair_indices(200_000, gen(9))
    li, lj = task.labels[i], task.labels[j]
    per_position = [_plugin_mi(li[:, q], lj[:, q]) for q in range(k)]
    assert task.ground_truth().mi == pytest.approx(k * channel_mi(task.prior, keep), rel=1e-12)
    for mi in per_position:
        assert mi == pytest.approx(task.ground_truth().mi / k, abs=0.01)
    assert sum(per_position) == pytest.approx(task.ground_truth().mi, abs=0.02)
    assert _plugin_mi(li[:, 0], lj[:, 1]) < 0.002 and _plugin_mi(li[:, 0], li[:, 2]) < 0.002
    agree = (li == lj).double().mean().item()
    assert agree == pytest.approx(keep + (1 - keep) * (task.prior**2).sum().item(), abs=0.005)


def test_k_digit_truths(mnist_train):
    h_train = mnist_train.ground_truth().mi
    for k in (2, 5):
        strip = PairedImages("mnist", "train", k=k)
        assert strip.ground_truth().mi == pytest.approx(k * h_train, rel=1e-12)
        assert f"k={k}" in strip.ground_truth().note and strip.ground_truth().method == "by_construction"
        held = strip.heldout()
        assert held.k == k and held.x_shape == (1, 28, 28 * k)
        assert held.ground_truth().mi == pytest.approx(k * mnist_train.heldout().ground_truth().mi, rel=1e-12)
    assert PairedImages("mnist", "train", k=5).ground_truth().mi == pytest.approx(11.5058, abs=1e-4)
    assert PairedImages("fashion_mnist", "test", k=5).ground_truth().mi == pytest.approx(5 * math.log(10), rel=1e-12)
    assert PairedImages.train_size({"k": 5}) == 12_000 and PairedImages.train_size({"split": "test"}) == 10_000


def test_params_with_mi_keeps_a_given_k_and_moves_keep():
    fam = TASK_FAMILIES["paired_mnist"]
    assert fam.cls is PairedMNIST and TASK_FAMILIES["paired_fashion_mnist"].cls is PairedFashionMNIST
    keeps = []
    for mi in (0.0, 0.5, 2.0, 4.0, 4.6):
        p = fam.params_with_mi({"split": "train", "k": 2}, mi)
        assert p["k"] == 2 and p["split"] == "train"
        task = fam.build(p)
        assert task.x_shape == (1, 28, 56)
        assert task.ground_truth().mi == pytest.approx(mi, rel=1e-9, abs=1e-12)
        keeps.append(p["keep"])
    assert keeps == sorted(keeps) and keeps[0] == 0.0
    with pytest.raises(ConfigError, match=r"at most k H\(labels\) = 4\.6023 nats with k = 2.*k >= 3"):
        fam.params_with_mi({"k": 2}, 5.0)


def test_params_with_mi_without_k_means_one_digit(tmp_path):
    """A staircase's levels must share x's width, so k is never chosen per level: without k it
    is 1, and a level above H(labels) is a planning error naming the k that would carry it."""
    from mibench.plan import expand
    from mibench.presets import load_preset

    mnist, fashion = TASK_FAMILIES["paired_mnist"], TASK_FAMILIES["paired_fashion_mnist"]
    for mi in (0.0, 1.0, 2.3):
        p = mnist.params_with_mi({}, mi)
        assert p["k"] == 1
        assert mnist.build(p).ground_truth().mi == pytest.approx(mi, rel=1e-9, abs=1e-12)
    with pytest.raises(ConfigError, match=r"at most k H\(labels\) = 2\.3012 nats with k = 1, got 10; give k >= 5"):
        mnist.params_with_mi({}, 10.0)
    # the label prior is the family's own: H(MNIST test labels) < 2.302 < ln 10
    with pytest.raises(ConfigError, match="give k >= 2"):
        mnist.params_with_mi({"split": "test"}, 2.302)
    p = fashion.params_with_mi({"split": "test"}, 2.302)
    assert fashion.build(p).ground_truth().mi == pytest.approx(2.302, rel=1e-9)
    # through the planner: one line before any run
    path = tmp_path / "s.toml"
    path.write_text('[task]\nfamily = "paired_mnist"\n[train]\nsteps = 10\nstaircase = [1.0, 4.0]\n')
    with pytest.raises(ConfigError, match=r"with k = 1, got 4; give k >= 2 digits"):
        expand(load_preset(str(path)))


def test_image_staircase_keeps_the_width_and_steps_the_truth():
    from mibench.plan import expand
    from mibench.presets import load_preset

    for name in ("mnist_staircase", "fashion_mnist_staircase"):
        spec = expand(load_preset(name))[0]
        levels = spec.level_params()
        assert [p["k"] for p in levels] == [5] * 5
        tasks = [TASK_FAMILIES[spec.family].build(p) for p in levels]
        assert {t.x_shape for t in tasks} == {(1, 28, 140)}
        truths = [t.ground_truth().mi for t in tasks]
        assert truths == pytest.approx([2.0, 4.0, 6.0, 8.0, 10.0], rel=1e-9)


@pytest.mark.parametrize("params, message", [
    ({"k": 0}, r"k \(digits side by side\) must be an integer >= 1, got 0"),
    ({"k": 2.0}, r"must be an integer >= 1, got 2\.0"),
    ({"k": True}, r"must be an integer >= 1, got True"),
    ({"k": "3"}, r"must be an integer >= 1, got '3'"),
    ({"keep": 1.5}, r"keep must lie in \[0, 1\], got 1\.5"),
    ({"keep": -0.1}, r"keep must lie in \[0, 1\]"),
    ({"keep": "all"}, r"keep must be a number"),
])
def test_bad_parameters_are_one_line_errors(params, message):
    with pytest.raises(ConfigError, match=message) as err:
        TASK_FAMILIES["paired_mnist"].build(params)
    assert "\n" not in str(err.value)


def test_bad_mi_levels_are_one_line_errors():
    fam = TASK_FAMILIES["paired_mnist"]
    for params, mi, message in (({}, -1.0, "finite number >= 0"), ({}, float("inf"), "finite number >= 0"),
                                ({"k": 0}, 1.0, "integer >= 1"), ({}, "2", "must be a number")):
        with pytest.raises(ConfigError, match=message):
            fam.params_with_mi(params, mi)


def test_labelled_sample_of_strips():
    task = PairedImages("mnist", "test", k=3)
    x, labels = task.labelled_sample(50, seed=1)
    assert x.shape == (50, 1, 28, 84) and labels.shape == (50,) and 0 <= x.min() and x.max() <= 1
    again, _ = task.labelled_sample(50, seed=1)
    assert torch.equal(x, again)
    images, all_labels = load_split("mnist", False)
    first = images.float().div(255).reshape(len(images), -1)
    hit = (first[None, :, :] == x[:, 0, :, :28].reshape(50, 1, -1)).all(-1)      # (50, 10000)
    assert hit.any(1).all() and torch.equal(all_labels[hit.float().argmax(1)], labels)


# --------------------------------------------------------------------------- the strip encoder

def test_conv_strip_encoder_maps_strips_and_trains_one_step():
    net, out = ENCODERS["conv_strip"]((1, 28, 140), embed_dim=24)
    assert out == 24
    x = torch.rand(6, 1, 28, 140, generator=gen(10))
    assert net(x).shape == (6, 24)
    # position-aware: swapping two digits changes the features
    swapped = torch.cat([x[..., 28:56], x[..., :28], x[..., 56:]], dim=-1)
    assert not torch.allclose(net(x), net(swapped))
    # one shared trunk: as many weights as the seed conv net apart from the final Linear
    conv, _ = ENCODERS["conv"]((1, 28, 28), embed_dim=24)
    n_params = sum(p.numel() for p in net.parameters())
    assert n_params == sum(p.numel() for p in conv.parameters()) + 4 * 128 * 24

    task = PairedImages("mnist", "test", k=5)
    est = build_estimator({"bound": "smile", "critic": "joint", "hidden": [32], "encoder": "conv_strip",
                           "embed_dim": 16, "shared": True}, task.x_shape, task.y_shape, seed=0)
    xb, yb = task.sample(16, generator=gen(11))
    before = [p.detach().clone() for p in est.parameters()]
    opt = torch.optim.Adam(est.parameters(), lr=1e-3)
    loss = est.loss(xb, yb, 15, gen(12))
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, est.parameters()))
    assert torch.isfinite(est.estimate(xb, yb, 15, gen(13)))


@pytest.mark.parametrize("shape", [(1, 28, 30), (3, 28, 56), (1, 27, 56), (784,)])
def test_conv_strip_rejects_other_shapes(shape):
    with pytest.raises(ConfigError, match=r"encoder 'conv_strip' takes \(1, 28, 28k\) strips"):
        ENCODERS["conv_strip"](shape)
