"""Other libraries' estimators, trained by mibench's loop on the same data.

A spec with ``library = "torch-mist"`` (in a preset's [estimator] table or a grid) names that
library's bound by the library's own name; its adapter builds the library's estimator for the
task and wraps it in the interface ``mibench.train.fit`` drives (``forward(x, y, cols,
with_value)`` -> (loss, value), ``estimate(x, y, n_negatives, generator)``), so rows of the
two libraries differ only in the implementation. A library that is not registered or not
installed, or a name it does not know, fails that run (a row with status "error"), not the
sweep. Packages add libraries under the entry-point group ``mibench.libraries``: a callable
``build(spec, task, *, seed)`` returning such a module.
"""

from __future__ import annotations

from typing import Any, Callable

from ..registry import Registry, unknown_name


class LibraryError(RuntimeError):
    """A run of another library's estimator cannot be built: the library is unknown or not
    installed, or does not know the name."""


LIBRARIES = Registry[Callable[..., Any]]("library", "mibench.libraries")


def _torch_mist(spec, task, *, seed):
    from .torch_mist import build

    return build(spec, task, seed=seed)


LIBRARIES.register("torch-mist", _torch_mist)


def build_library_estimator(spec, task, *, seed: int | None = None):
    if spec.library not in LIBRARIES:
        raise LibraryError(unknown_name("library", spec.library, ["mibench", *LIBRARIES], "Known libraries"))
    return LIBRARIES[spec.library](spec, task, seed=seed)
