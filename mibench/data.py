"""Where image data sets come from: resolve the data root, load splits as whole tensors."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path

import torch
from torch import Tensor

from .interface import DataNotFoundError

log = logging.getLogger(__name__)

ENV_VAR = "MIBENCH_DATA_DIR"
DATASETS = ("mnist", "fashion_mnist")


def default_cache_dir() -> Path:
    """Per-user cache: $XDG_CACHE_HOME/mibench/data, else ~/.cache/mibench/data."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mibench" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, then $MIBENCH_DATA_DIR, then the per-user cache dir."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser()
    return default_cache_dir()


def _torchvision_class(dataset: str):
    from torchvision import datasets  # imported here: torchvision is slow to import

    return {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[dataset]


@functools.lru_cache(maxsize=8)
def load_split(dataset: str, train: bool, data_dir: str | None = None) -> tuple[Tensor, Tensor]:
    """One split as whole tensors: images (N, 28, 28) uint8 and labels (N,) int64, on the CPU.

    Reads torchvision's layout (ROOT/MNIST/raw/*-ubyte). If the files are not under the
    resolved root, torchvision downloads them there; offline, raises DataNotFoundError.
    """
    if dataset not in DATASETS:
        raise DataNotFoundError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    root = resolve_data_dir(data_dir)
    cls = _torchvision_class(dataset)
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError:
        log.info("%s not found under %s; downloading", cls.__name__, root)
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as exc:  # no network, read-only root, server down, ...
            raise DataNotFoundError(
                f"{cls.__name__} not found under {root} and the download failed ({type(exc).__name__}); "
                f"put torchvision's files in {root / cls.__name__ / 'raw'} or point --data-dir / "
                f"${ENV_VAR} at a folder that has {cls.__name__}/raw/"
            ) from None
    return ds.data, ds.targets.long()
