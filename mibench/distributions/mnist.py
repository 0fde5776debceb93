"""Paired image tasks: x and y are two images whose labels are linked, truth known exactly."""

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

    Truth: every image of MNIST and Fashion-MNIST is distinct, so the label is a function of the
    image and I(x; y) = I(label_x; label_y); with keep = 1 that is H(labels) of the split
    (2.3012 nats on MNIST's 60k training split, exactly ln 10 on Fashion-MNIST).

    Constructing one only checks the parameters; the split is read on first use (or ``load()``)
    and lives on ``device`` as one float tensor (n, 1, 28, 28) in [0, 1], shared by every task
    of that split and device in the process. A batch is index arithmetic on per-class index
    tables, O(1) per pair.
    """

    x_shape = y_shape = (1, 28, 28)
    SPLIT_SIZES = {"train": 60_000, "test": 10_000}     # the same for MNIST and Fashion-MNIST

    def __init__(self, dataset: str = "mnist", split: str = "train", keep: float = 1.0,
                 data_dir: str | None = None, device: str | torch.device = "cpu"):
        if dataset not in DATASETS:
            raise ConfigError(f"paired images: unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
        if split not in self.SPLIT_SIZES:
            raise ConfigError(f"paired images: split must be 'train' or 'test', got {split!r}")
        if not 0.0 <= number(keep, "paired images: keep") <= 1.0:
            raise ConfigError(f"paired images: keep must lie in [0, 1], got {keep!r}")
        self.dataset, self.split, self.keep, self.data_dir = dataset, split, float(keep), data_dir
        self.root = resolve_data_dir(data_dir)
        self.device = torch.device(device)
        self.family = "paired_" + dataset
        self.name = f"paired_{dataset}-{split}" + ("" if keep == 1 else f"-keep{keep:g}")

    @classmethod
    def train_size(cls, params: dict) -> int:
        return cls.SPLIT_SIZES[params.get("split", "train")]

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
        mi = channel_mi(self.prior, self.keep)
        what = "H(labels)" if self.keep == 1 else f"I(L; L') of a symmetric label channel, keep={self.keep:g}"
        note = f"{what} of the {self.n_images} {self.split} images (ln 10 = {math.log(10):.4f})"
        return GroundTruth(mi, "by_construction", note=note)

    def pair_indices(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Indices (i, j) of n pairs: i uniform over the split, j per the label channel."""
        dev, data = self.device, self._data
        i = torch.randint(data.n_images, (n,), generator=generator, device=dev)
        c = data.labels[i]
        u = torch.rand(n, generator=generator, device=dev)
        n_c = data.counts[c]
        j = data.by_class[data.starts[c] + torch.minimum((u * n_c).long(), n_c - 1)]
        if self.keep < 1:
            redraw = torch.rand(n, generator=generator, device=dev) >= self.keep
            j = torch.where(redraw, torch.randint(data.n_images, (n,), generator=generator, device=dev), j)
        return i, j

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        i, j = self.pair_indices(n, generator)
        images = self._data.images
        return images[i], images[j]

    def heldout(self) -> "PairedImages":
        """Pairs from the test split (scored against the test split's own truth)."""
        if self.split == "test":
            return self
        return PairedImages(self.dataset, "test", self.keep, self.data_dir, self.device)

    def labelled_sample(self, n: int = 2000, seed: int = 0) -> tuple[Tensor, Tensor]:
        """n fixed test images (a seeded random subset, on the CPU) and their labels."""
        images, labels = load_split(self.dataset, False, self.root)
        pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
        return images[pick].float().div(255).unsqueeze(1), labels[pick]
