"""Paired image tasks: x and y are two images whose labels are linked, truth known exactly."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..data import DATASETS, load_split
from ..interface import ConfigError, GroundTruth


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


class PairedImages:
    """x uniform over the images of a split; y an image of the same label, uniform in its class.

    With ``keep`` < 1, y's label is kept with probability ``keep`` and otherwise y is a
    uniformly random image of the split (a symmetric channel on labels).

    Truth: every image of MNIST and Fashion-MNIST is distinct, so the label is a function of the
    image and I(x; y) = I(label_x; label_y); with keep = 1 that is H(labels) of the split
    (2.3012 nats on MNIST's 60k training split, exactly ln 10 on Fashion-MNIST).

    The split lives on ``device`` as one float tensor (n, 1, 28, 28) in [0, 1]; a batch is
    index arithmetic on per-class index tables, O(1) per pair.
    """

    def __init__(self, dataset: str = "mnist", split: str = "train", keep: float = 1.0,
                 data_dir: str | None = None, device: str | torch.device = "cpu"):
        if dataset not in DATASETS:
            raise ConfigError(f"paired images: unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
        if split not in ("train", "test"):
            raise ConfigError(f"paired images: split must be 'train' or 'test', got {split!r}")
        if not 0.0 <= float(keep) <= 1.0:
            raise ConfigError(f"paired images: keep must lie in [0, 1], got {keep!r}")
        self.dataset, self.split, self.keep, self.data_dir = dataset, split, float(keep), data_dir
        self.device = torch.device(device)
        self.family = "paired_" + dataset
        self.name = f"paired_{dataset}-{split}" + ("" if keep == 1 else f"-keep{keep:g}")

        images, labels = load_split(dataset, split == "train", data_dir)
        self.n_images = labels.numel()
        self.labels = labels.to(self.device)
        self.images = images.to(self.device, torch.float32).div_(255).unsqueeze(1)
        counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
        self.prior = counts.double() / self.n_images
        # by_class lists image indices grouped by label; class c occupies
        # by_class[starts[c] : starts[c] + counts[c]].
        self.by_class = torch.argsort(labels, stable=True).to(self.device)
        self.starts = (torch.cumsum(counts, 0) - counts).to(self.device)
        self.counts = counts.to(self.device)

    def ground_truth(self) -> GroundTruth:
        mi = channel_mi(self.prior, self.keep)
        what = "H(labels)" if self.keep == 1 else f"I(L; L') of a symmetric label channel, keep={self.keep:g}"
        note = f"{what} of the {self.n_images} {self.split} images (ln 10 = {math.log(10):.4f})"
        return GroundTruth(mi, "by_construction", note=note)

    def pair_indices(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Indices (i, j) of n pairs: i uniform over the split, j per the label channel."""
        dev = self.device
        i = torch.randint(self.n_images, (n,), generator=generator, device=dev)
        c = self.labels[i]
        u = torch.rand(n, generator=generator, device=dev)
        n_c = self.counts[c]
        j = self.by_class[self.starts[c] + torch.minimum((u * n_c).long(), n_c - 1)]
        if self.keep < 1:
            redraw = torch.rand(n, generator=generator, device=dev) >= self.keep
            j = torch.where(redraw, torch.randint(self.n_images, (n,), generator=generator, device=dev), j)
        return i, j

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        i, j = self.pair_indices(n, generator)
        return self.images[i], self.images[j]

    def heldout(self) -> "PairedImages":
        """Pairs from the test split (scored against the test split's own truth)."""
        if self.split == "test":
            return self
        return PairedImages(self.dataset, "test", self.keep, self.data_dir, self.device)
