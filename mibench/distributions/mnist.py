"""Paired image tasks: x and y are images (or strips of k images) whose labels are linked, truth
known exactly."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch
from torch import Tensor

from ..data import DATASETS, load_split, resolve_data_dir
from ..interface import ConfigError, GroundTruth, number


def label_entropy(labels: Tensor) -> float:
    """H(labels) in nats, of the empirical label distribution."""
    p = torch.bincount(labels).double() / labels.numel()
    p = p[p > 0]
    return float(-(p * p.log()).sum())


def channel_mi(prior: Tensor, keep: float) -> float:
    """I(L; L') in nats when L ~ prior and L' = L with prob. ``keep``, else a fresh draw from prior."""
    prior = prior.double()
    k = prior.numel()
    cond = keep * torch.eye(k, dtype=torch.float64) + (1 - keep) * prior[None, :]  # P(L'=j | L=i)
    joint = prior[:, None] * cond
    marg = prior[None, :]
    mask = joint > 0
    return float((joint[mask] * (cond[mask] / marg.expand_as(cond)[mask]).log()).sum())


# Class counts of the standard files (a test checks them against the data), so that MI levels
# can be planned from parameters alone, without reading a split.
CLASS_COUNTS = {
    ("mnist", "train"): (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    ("mnist", "test"): (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
    ("fashion_mnist", "train"): (6000,) * 10,
    ("fashion_mnist", "test"): (1000,) * 10,
}


def keep_for_mi(prior: Tensor, mi: float) -> float:
    """The ``keep`` whose label channel carries ``mi`` nats (0 <= mi <= H(prior)): bisection on
    ``channel_mi``, which grows monotonically from 0 at keep = 0 to H(prior) at keep = 1."""
    if mi <= 0:
        return 0.0
    if mi >= channel_mi(prior, 1.0):
        return 1.0
    lo, hi = 0.0, 1.0
    while hi - lo > 1e-15:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if channel_mi(prior, mid) < mi else (lo, mid)
    return 0.5 * (lo + hi)


def side_by_side(tiles: Tensor) -> Tensor:
    """(n, k, 28, 28) images -> (n, 1, 28, 28 k) strips, position q in columns 28 q .. 28 q + 27."""
    n, k = tiles.shape[:2]
    return tiles.transpose(1, 2).reshape(n, 1, 28, 28 * k)


class _Split:
    """One split on one device: float images (n, 1, 28, 28) in [0, 1], labels, and the
    per-class index tables (class c occupies by_class[starts[c] : starts[c] + counts[c]])."""

    def __init__(self, images: Tensor, labels: Tensor, device: torch.device):
        counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
        self.n_images = labels.numel()
        self.prior = counts.double() / self.n_images
        self.labels = labels.to(device)
        self.images = images.to(device, torch.float32).div_(255).unsqueeze(1)
        self.by_class = torch.argsort(labels, stable=True).to(device)
        self.starts = (torch.cumsum(counts, 0) - counts).to(device)
        self.counts = counts.to(device)


@functools.lru_cache(maxsize=4)
def _split_on(dataset: str, split: str, root: Path, device: torch.device) -> _Split:
    """A split loaded and moved to the device once per process, whatever the number of runs."""
    return _Split(*load_split(dataset, split == "train", root), device)


class PairedImages:
    """x uniform over the images of a split; y an image of the same label, uniform in its class.

    With ``keep`` < 1, y's label is kept with probability ``keep`` and otherwise y is a
    uniformly random image of the split (a symmetric channel on labels).

    With ``k`` > 1 digits, x is k independent such images side by side, shape (1, 28, 28k), and
    y the k images paired with them position by position, each position through the same label
    channel independently.

    Truth: every image of MNIST and Fashion-MNIST is distinct, so the label is a function of the
    image and I(x; y) = k I(label_x; label_y); with keep = 1 that is k H(labels) of the split
    (2.3012 nats per digit on MNIST's 60k training split, exactly ln 10 on Fashion-MNIST).

    Constructing one only checks the parameters; the split is read on first use (or ``load()``)
    and lives on ``device`` as one float tensor (n, 1, 28, 28) in [0, 1], shared by every task
    of that split and device in the process. A batch is index arithmetic on per-class index
    tables, O(1) per pair: the n k digits are drawn as one flat vector, gathered, and laid side
    by side with one reshape.
    """

    SPLIT_SIZES = {"train": 60_000, "test": 10_000}     # the same for MNIST and Fashion-MNIST
    DATASET = "mnist"     # whose label prior ``params_with_mi`` plans with when params name none

    @staticmethod
    def on(dataset: str) -> type[PairedImages]:
        """The subclass bound to one data set (a family's class: its ``params_with_mi`` gets
        the family's parameters, which do not name the data set)."""
        return {"mnist": PairedMNIST, "fashion_mnist": PairedFashionMNIST}[dataset]

    def __init__(self, dataset: str = "mnist", split: str = "train", keep: float = 1.0,
                 data_dir: str | None = None, device: str | torch.device = "cpu", *, k: int = 1):
        if dataset not in DATASETS:
            raise ConfigError(f"paired images: unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
        if split not in self.SPLIT_SIZES:
            raise ConfigError(f"paired images: split must be 'train' or 'test', got {split!r}")
        if not 0.0 <= number(keep, "paired images: keep") <= 1.0:
            raise ConfigError(f"paired images: keep must lie in [0, 1], got {keep!r}")
        _check_k(k)
        self.dataset, self.split, self.keep, self.data_dir = dataset, split, float(keep), data_dir
        self.k = k
        self.x_shape = self.y_shape = (1, 28, 28 * k)
        self.root = resolve_data_dir(data_dir)
        self.device = torch.device(device)
        self.family = "paired_" + dataset
        self.name = (f"paired_{dataset}-{split}" + ("" if keep == 1 else f"-keep{keep:g}")
                     + ("" if k == 1 else f"-k{k}"))

    @classmethod
    def train_size(cls, params: dict) -> int:
        """Pairs per epoch: an epoch shows each image of the split about once as a digit of x."""
        k = params.get("k", 1)
        _check_k(k)
        return cls.SPLIT_SIZES[params.get("split", "train")] // k

    @classmethod
    def params_with_mi(cls, params: dict, mi: float) -> dict:
        """``params`` with ``keep`` set so that the truth is ``mi`` nats; ``k`` is never changed.

        The rule: x's width is 28 k, and a staircase trains one model through all its levels, so
        the levels may only move ``keep``. ``k`` is the one ``params`` give (1 when they give
        none), and an ``mi`` above k H(labels) is a ConfigError naming that maximum and the k
        that would carry ``mi``. (Choosing k per level would plan levels of different widths,
        which the model cannot take.) H(labels) is that of the split named by ``split``, from
        the class counts of the standard files in ``CLASS_COUNTS``: no data is read.
        """
        mi = number(mi, "paired images: mi")
        if not 0 <= mi < math.inf:
            raise ConfigError(f"paired images: MI must be a finite number >= 0 nats, got {mi:g}")
        split = params.get("split", "train")
        if split not in cls.SPLIT_SIZES:
            raise ConfigError(f"paired images: split must be 'train' or 'test', got {split!r}")
        dataset = params.get("dataset", cls.DATASET)
        if (dataset, split) not in CLASS_COUNTS:
            raise ConfigError(f"paired images: unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
        counts = torch.tensor(CLASS_COUNTS[(dataset, split)], dtype=torch.float64)
        prior = counts / counts.sum()
        h = channel_mi(prior, 1.0)
        k = params.get("k", 1)
        _check_k(k)
        if mi > k * h * (1 + 1e-12):
            raise ConfigError(f"paired images: MI at most k H(labels) = {k * h:.4f} nats with k = {k}, "
                              f"got {mi:g}; give k >= {math.ceil(mi / h - 1e-12)} digits for it")
        return {**params, "k": k, "keep": keep_for_mi(prior, mi / k)}

    def load(self) -> None:
        self._data

    @functools.cached_property
    def _data(self) -> _Split:
        return _split_on(self.dataset, self.split, self.root, self.device)

    # The split's tensors, read on first use.
    n_images = property(lambda self: self._data.n_images)
    labels = property(lambda self: self._data.labels)
    images = property(lambda self: self._data.images)
    prior = property(lambda self: self._data.prior)
    by_class = property(lambda self: self._data.by_class)
    starts = property(lambda self: self._data.starts)
    counts = property(lambda self: self._data.counts)

    def ground_truth(self) -> GroundTruth:
        mi = self.k * channel_mi(self.prior, self.keep)
        what = "H(labels)" if self.keep == 1 else f"I(L; L') of a symmetric label channel, keep={self.keep:g}"
        if self.k > 1:
            what = f"k={self.k} digits x {what}"
        note = f"{what} of the {self.n_images} {self.split} images (ln 10 = {math.log(10):.4f})"
        return GroundTruth(mi, "by_construction", note=note)

    def pair_indices(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Indices (i, j) of n pairs: i uniform over the split, j per the label channel; each
        (n,) when k = 1, else (n, k), position by position (all n k digits drawn at once)."""
        dev, data, m = self.device, self._data, n * self.k
        i = torch.randint(data.n_images, (m,), generator=generator, device=dev)
        c = data.labels[i]
        u = torch.rand(m, generator=generator, device=dev)
        n_c = data.counts[c]
        j = data.by_class[data.starts[c] + torch.minimum((u * n_c).long(), n_c - 1)]
        if self.keep < 1:
            redraw = torch.rand(m, generator=generator, device=dev) >= self.keep
            j = torch.where(redraw, torch.randint(data.n_images, (m,), generator=generator, device=dev), j)
        if self.k > 1:
            i, j = i.view(n, self.k), j.view(n, self.k)
        return i, j

    def strips(self, idx: Tensor) -> Tensor:
        """Images of the split side by side: (n, k) indices -> (n, 1, 28, 28 k)."""
        return side_by_side(self._data.images[idx.reshape(-1)].view(*idx.shape, 28, 28))

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        i, j = self.pair_indices(n, generator)
        if self.k > 1:
            return self.strips(i), self.strips(j)
        images = self._data.images
        return images[i], images[j]

    def heldout(self) -> "PairedImages":
        """Pairs from the test split (scored against the test split's own truth)."""
        if self.split == "test":
            return self
        return type(self)(self.dataset, "test", self.keep, self.data_dir, self.device, k=self.k)

    def labelled_sample(self, n: int = 2000, seed: int = 0) -> tuple[Tensor, Tensor]:
        """n fixed test x's (seeded, on the CPU) and their labels: single images when k = 1;
        for k > 1, strips of k random test images labelled by their first digit."""
        images, labels = load_split(self.dataset, False, self.root)
        g = torch.Generator().manual_seed(seed)
        if self.k == 1:
            pick = torch.randperm(len(labels), generator=g)[:n]
            return images[pick].float().div(255).unsqueeze(1), labels[pick]
        pick = torch.randint(len(labels), (n, self.k), generator=g)
        strips = side_by_side(images[pick.reshape(-1)].view(n, self.k, 28, 28))
        return strips.float().div(255), labels[pick[:, 0]]


class PairedMNIST(PairedImages):
    """Paired images of MNIST (the ``paired_mnist`` family's class)."""

    DATASET = "mnist"


class PairedFashionMNIST(PairedImages):
    """Paired images of Fashion-MNIST (the ``paired_fashion_mnist`` family's class)."""

    DATASET = "fashion_mnist"


def _check_k(k: object) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"paired images: k (digits side by side) must be an integer >= 1, got {k!r}")
