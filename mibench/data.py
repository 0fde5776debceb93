"""Where image data sets come from: resolve the data root, load splits as whole tensors."""

from __future__ import annotations

import functools
import logging
import os
import shutil
from pathlib import Path

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


def split_files(dataset: str, train: bool, root: Path) -> list[Path]:
    """The two raw files of a split in torchvision's layout: images, then labels."""
    raw = root / _torchvision_class(dataset).__name__ / "raw"
    prefix = "train" if train else "t10k"
    return [raw / f"{prefix}-images-idx3-ubyte", raw / f"{prefix}-labels-idx1-ubyte"]


def _diagnose(files: list[Path], exc: Exception) -> str:
    """Which of a split's files is broken, and how, in a few words."""
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for path, read, ndim in ((files[0], read_image_file, 3), (files[1], read_label_file, 1)):
        try:
            t = read(str(path))
            if t.ndim != ndim:
                raise ValueError(f"{t.ndim} dimensions, expected {ndim}")
        except Exception as err:      # truncated, empty or not an IDX file at all
            what = str(err) or "its header does not match its length"
            size = path.stat().st_size
            return (f"{path} cannot be read as an IDX {'image' if ndim == 3 else 'label'} file ({what}; "
                    f"{size:,} bytes); delete or replace it")
    return f"{files[0].parent}: the files do not form a data set ({type(exc).__name__}: {exc}); replace them"


def load_split(dataset: str, train: bool, data_dir: str | os.PathLike | None = None) -> tuple[Tensor, Tensor]:
    """One split as whole tensors: images (N, 28, 28) uint8 and labels (N,) int64, on the CPU.

    Reads torchvision's layout (ROOT/MNIST/raw/*-ubyte) with torchvision's IDX readers; the
    other split's files need not be there. If the split's files are not under the resolved
    root, torchvision downloads the data set there; offline, raises DataNotFoundError and
    removes the folders the failed download made. Files that are there but broken (truncated,
    empty, not IDX, images and labels of different lengths) raise DataNotFoundError naming the
    file; nothing is downloaded over them.
    """
    if dataset not in DATASETS:
        raise DataNotFoundError(f"unknown dataset {dataset!r}; allowed: {', '.join(DATASETS)}")
    return _load_split(dataset, train, resolve_data_dir(data_dir))


@functools.lru_cache(maxsize=8)
def _load_split(dataset: str, train: bool, root: Path) -> tuple[Tensor, Tensor]:
    cls = _torchvision_class(dataset)
    files = split_files(dataset, train, root)
    if all(f.is_file() for f in files):
        # Read the split's two files directly, as torchvision's class does: the class itself
        # refuses (asking for a download) unless the files of *both* splits are present.
        from torchvision.datasets.mnist import read_image_file, read_label_file

        try:
            images, labels = read_image_file(str(files[0])), read_label_file(str(files[1])).long()
        except Exception as exc:
            raise DataNotFoundError(_diagnose(files, exc)) from None
    else:
        log.info("%s not found under %s; downloading", cls.__name__, root)
        raw = files[0].parent
        made = next((p for p in [*reversed(raw.parents), raw] if not p.exists()), None)   # what the download makes
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception as exc:  # no network, read-only root, server down, ...
            if made is not None:           # leave no empty (or half-downloaded) folder behind
                shutil.rmtree(made, ignore_errors=True)
            raise DataNotFoundError(
                f"{cls.__name__} not found under {root} and the download failed ({type(exc).__name__}); "
                f"put torchvision's files in {root / cls.__name__ / 'raw'} or point --data-dir / "
                f"${ENV_VAR} at a folder that has {cls.__name__}/raw/"
            ) from None
        images, labels = ds.data, ds.targets.long()
    if images.ndim != 3 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise DataNotFoundError(f"{files[0].parent}: {images.shape[0]} images but {labels.shape[0]} labels "
                                f"in the {'train' if train else 'test'} split; replace the files")
    if labels.min() < 0 or labels.max() > 9:
        raise DataNotFoundError(f"{files[1]}: labels outside 0..9; replace the file")
    return images, labels
