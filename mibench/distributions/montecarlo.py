"""Pieces for tasks whose truth is a Monte Carlo mean: a Gaussian mixture with exact
log-densities, and the on-disk cache of computed truths ($XDG_CACHE_HOME/mibench/truth, else
~/.cache/mibench/truth), keyed by a hash of the task's class, parameters, N, seed and version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

TRUTH_VERSION = 1          # bump when the truth's computation changes: old cache files are then ignored
_LOG_2PI = math.log(2 * math.pi)


class GaussianMixture:
    """Weights (K,), means (K, D), covariances (K, D, D); x is the first ``dim_x`` coordinates.
    Components of weight 0 are dropped. Tensors live on ``device`` in ``dtype``."""

    def __init__(self, weights: Tensor, means: Tensor, covs: Tensor, dim_x: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float64):
        w, mu, cov = (torch.as_tensor(t, dtype=torch.float64) for t in (weights, means, covs))
        keep = w > 0
        w, mu, cov = w[keep] / w[keep].sum(), mu[keep], cov[keep]
        self.dim_x, self.dim = dim_x, mu.shape[1]
        chol = torch.linalg.cholesky(cov)               # factors in float64, then cast
        self.weights = w.to(device, dtype)
        self.means = mu.to(device, dtype)
        self.chol = chol.to(device, dtype)
        # (mean, inverse Cholesky factor, log normaliser + log weight) of each block
        self._blocks = {}
        for name, sl in (("joint", slice(None)), ("x", slice(0, dim_x)), ("y", slice(dim_x, None))):
            c = torch.linalg.cholesky(cov[:, sl, sl])
            eye = torch.eye(c.shape[-1], dtype=torch.float64).expand_as(c)
            inv = torch.linalg.solve_triangular(c, eye, upper=False)
            d = c.shape[-1]
            const = w.log() - torch.diagonal(c, dim1=-2, dim2=-1).log().sum(-1) - 0.5 * d * _LOG_2PI
            self._blocks[name] = (mu[:, sl].to(device, dtype), inv.to(device, dtype), const.to(device, dtype))

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """n draws of (x, y), shape (n, D): one categorical draw of the components, one normal
        draw, each row scaled by its component's Cholesky factor."""
        dev, dt = self.means.device, self.means.dtype
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, self.dim, generator=generator, device=dev, dtype=dt)
        if self.weights.numel() == 1:
            return self.means[0] + eps @ self.chol[0].T
        scaled = torch.einsum("kij,nj->nki", self.chol, eps)           # every component's scaling
        pick = comp[:, None, None].expand(n, 1, self.dim)
        return self.means[comp] + scaled.gather(1, pick).squeeze(1)

    def log_prob(self, v: Tensor, block: str = "joint") -> Tensor:
        """log density of v: (n, d) under the joint (block "joint") or a marginal ("x", "y")."""
        mean, inv, const = self._blocks[block]
        z = torch.einsum("kij,nkj->nki", inv, v[:, None, :] - mean)
        return torch.logsumexp(const - 0.5 * z.pow(2).sum(-1), dim=-1)


def truth_cache_dir() -> Path:
    """$XDG_CACHE_HOME/mibench/truth, else ~/.cache/mibench/truth."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mibench" / "truth"


def cache_key(cls_name: str, params: tuple, n: int, seed: int) -> tuple[dict, str]:
    key = {"class": cls_name, "params": dict(params), "n": n, "seed": seed, "version": TRUTH_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return key, digest


def read_cached(path: Path, key: dict) -> tuple[float, float, float] | None:
    """(mi, stderr, seconds) from a cache file, or None when it is absent, unreadable, or not a
    valid truth for ``key``."""
    try:
        record = json.loads(path.read_text())
        mi, stderr = float(record["mi"]), float(record["stderr"])
        seconds = float(record.get("seconds", 0.0))
        if record["key"] != key or not (math.isfinite(mi) and math.isfinite(stderr) and stderr >= 0):
            return None
        return mi, stderr, seconds
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the unreadable truth cache %s (%s); recomputing", path, exc)
        return None


def write_cached(path: Path, record: dict) -> None:
    from ..atomic import failing_as, write_durable
    from ..interface import ConfigError

    try:
        with failing_as(path.parent):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_durable(path, json.dumps(record, indent=1, sort_keys=True))
    except ConfigError as exc:
        log.warning("%s; the truth is kept in memory only", exc)


