"""torch-mist's estimators (version 0.2.17) trained by mibench's loop.

``build(spec, task, seed=...)`` makes torch-mist's estimator named by ``spec.bound`` with
torch-mist's own factory function and wraps it in the interface ``mibench.train.fit`` drives.
The run gets the same batches, batch size, number of negatives, seed, optimiser and budget as a
mibench run of the spec, and a critic of the same architecture, so two rows differ in the
implementation of the bound and the critic. Only identity encoders (inputs flattened) and the
"separable" and "joint" critics are supported.

Names (spec.bound -> torch-mist function in ``torch_mist.estimators``):

=========  ==============  ==================================================
mibench    torch-mist      options taken from the spec (mibench's defaults)
=========  ==============  ==================================================
infonce    ``infonce``     -
nwj        ``nwj``         -
js         ``js``          -
smile      ``smile``       tau -> tau (5.0)
mine       ``mine``        ema_rate -> gamma = 1 - ema_rate (0.01, so 0.99)
=========  ==============  ==================================================

torch-mist 0.2.17 has no DV estimator (its MINE reports DV). Its tuba, alpha_tuba, flo and the
generative estimators (ba, club, l1out, doe) are not offered: their networks or baselines are
not mibench's (a learned baseline network a(x) instead of a scalar, critics sharing layers, a
conditional flow for q(y|x)), so a row would not isolate the bound. Options of other bounds in
the spec are ignored, as mibench ignores them. A spec's options use mibench's names and
defaults, so one table means the same setting in both libraries; torch-mist's own default for
MINE (gamma = 0.9, i.e. a rate of 0.1) is used only if the spec says ema_rate = 0.1.

Critic (``torch_mist.critic.factories.critic_nn``):

* separable: ``critic_type="separable", hidden_dims=hidden, k_dim=critic_dim,
  temperature=temperature``: f(x, y) = f_x(x) . f_y(y) / temperature, f_x and f_y each a
  pyro ``DenseNN`` (Linear layers with ReLU between, ``nn.Linear`` when ``hidden`` is empty)
  through ``hidden`` to ``critic_dim``: mibench's ``SeparableCritic``. The layers are made in
  mibench's order (x side, then y side) with torch's default initialisation, so the same seed
  gives the same initial weights as mibench's critic. (torch-mist also builds a second, unused
  y network after them: it draws from the RNG but is not part of the model.)
* joint: ``critic_type="joint", hidden_dims=hidden``: one ``DenseNN`` on cat([x, y]) through
  ``hidden`` to one score. mibench's ``JointCritic`` computes the same function class (its first
  layer is split into W_x x + b + W_y y), but initialises that layer differently: torch-mist's
  Linear(dx + dy, h) draws weights and bias from U(+-1/sqrt(dx + dy)), mibench's from
  U(+-1/sqrt(dx)) for x and U(+-1/sqrt(dy)) for y (no bias on the y part). A joint critic needs
  a hidden layer, as in mibench.

Negatives. torch-mist ignores the candidate indices mibench draws (``cols``): it draws its own
with ``DiscriminativeMIEstimator.sample_negatives`` from an ``EmpiricalDistribution`` holding
the batch's y, whose ``sample`` is ``torch_mist.utils.indexing.select_k_others``: the M
negatives of row i are y_(i+1), ..., y_(i+M) (indices mod N), the same fixed cyclic offsets
1..M in every batch, without a random generator. mibench's ``candidate_indices`` draws K
distinct offsets from 1..B-1 per batch with the run's generator. The spec's K maps to
torch-mist's ``neg_samples`` per call (so the training and evaluation batch sizes may differ):

* K = B - 1 ("all"): ``neg_samples = -1`` (every other item of the batch, the positive
  excluded), except for InfoNCE, where ``neg_samples = 0`` (all N items, the positive
  included), which is exactly InfoNCE over mibench's K + 1 = B candidates. The negative sets
  are then the same as mibench's; only the order differs.
* K < B - 1: ``neg_samples = K``: offsets 1..K instead of K random ones. On i.i.d. batches
  both are samples of p(x)p(y). For InfoNCE the positive is then not among the candidates (see
  below).

The adapter still draws mibench's ``cols`` in ``estimate`` (``fit`` draws them anyway) and
throws them away, so the stream of training and held-out batches is the one a mibench run
of the spec sees.

How each bound differs from ``mibench/bounds.py`` (torch-mist 0.2.17 source; "value" is
``MIEstimator.mutual_information``, the mean over rows of ``log_ratio``, and "loss" is
``MIEstimator.loss``, the mean of ``batch_loss``; for the baseline estimators
``BaselineDiscriminativeMIEstimator._approx_log_partition`` gives log Z_i =
mean_m[exp(f_mi - b_i) + b_i - 1] and ``batch_loss`` is -(f_ii - log Z_i)):

* infonce (``estimators/discriminative/implementations/infonce.py``, ``InfoNCE``, baseline
  ``BatchLogMeanExp("first")``): value and loss are f_ii - logmeanexp of row i's candidates,
  averaged: the same as mibench for K = B - 1. For K < B - 1 the candidates are the K
  negatives only, so the value is not capped at ln(K + 1) and is not a lower bound; mibench's
  candidates are the positive and K negatives.
* nwj (``NWJ``, ``ConstantBaseline(1.0)``): value mean f_ii - mean exp(f_neg - 1), loss its
  negative: the same as mibench.
* js (``JS``): value with ``ConstantBaseline(0.0)``, mean f_ii + 1 - mean exp(f_neg), which is
  mibench's NWJ on f + 1. Loss ``JS.batch_loss``: mean_i[softplus(-f_ii) + mean_m
  softplus(f_mi)], mibench's ``js_loss``, except that it scores ``critic(x_, y_)`` without
  removing the diagonal: with a separable critic and all negatives (``neg_samples = -1``) the
  negative term averages over all B columns, the positive pair among them; mibench averages
  over the B - 1 others. With a joint critic or K < B - 1 it is mibench's.
* smile (``SMILE``, subclass of ``JS``): loss ``JS.batch_loss`` (the same remark on the
  diagonal). Value with ``BatchLogMeanExp("all")`` on clamp(f_neg, -tau, tau): mean f_ii -
  logmeanexp over all B M clamped negative scores, the positives not clamped: the same as
  mibench.
* mine (``MINE``): value with ``BatchLogMeanExp("all")``: mean f_ii - logmeanexp over all
  negative scores (the positives excluded): mibench's DV estimate. The loss swaps in
  ``ExponentialMovingAverage(gamma)`` (``torch_mist/baseline/base.py``): m = mean exp(f_neg)
  over the batch, detached and clamped to [1e-4, 1e4]; ema = m on the first call, then
  gamma ema + (1 - gamma) m (in training mode only); loss = -mean f_ii + mean exp(f_neg)/ema
  + log ema - 1, whose gradient is mibench's MINE gradient (mibench's loss, -mean f_ii +
  mean exp(f_neg)/ema, lacks the constant log ema - 1, so the loss values differ). mibench
  keeps the same average in log space, without the clamp. The average is a plain attribute,
  not a buffer, so it is not in the state dict.

With precision = "bf16", mibench casts the scores to float32 before its bound; torch-mist's
bound runs in whatever dtype autocast gives its operations.

Caching. torch-mist memoises ``sample_negatives`` and ``unnormalized_log_ratio``
(``torch_mist.utils.caching.cached_method``), keyed on the values of (x, y) by ``torch.equal``,
and drops the memo only in a backward hook that fires when the estimator is called as a module,
which this adapter does not do. A later call on equal inputs would get the earlier forward's
tensors, computed with the earlier parameters and with its graph already freed by
``backward``. The adapter empties those memos before and after each ``forward`` and
``estimate``, so within one call the loss and the value share the negatives and the positive
scores, and nothing carries over between calls.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..bounds import BOUNDS
from ..nets import candidate_indices
from . import LibraryError

NAMES = ("infonce", "nwj", "js", "mine", "smile")
CRITIC_TYPES = ("separable", "joint")
INSTALL = "pip install 'mibench[torch-mist]'"


def _import_torch_mist():
    try:
        from torch_mist import estimators
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "torch_mist":
            raise LibraryError(f"torch-mist is not installed: {INSTALL}") from exc
        raise LibraryError(f"torch-mist cannot be imported ({exc}): {INSTALL}") from exc
    except ImportError as exc:
        raise LibraryError(f"torch-mist cannot be imported ({exc}): {INSTALL}") from exc
    return estimators


def _bound_kwargs(name: str, options: dict[str, Any]) -> dict[str, float]:
    """torch-mist's keyword arguments for the bound's options, from mibench's names and defaults."""
    if name == "smile":
        return {"tau": BOUNDS["smile"].check_options({k: v for k, v in options.items() if k == "tau"})["tau"]}
    if name == "mine":
        rate = BOUNDS["mine"].check_options({k: v for k, v in options.items() if k == "ema_rate"})["ema_rate"]
        return {"gamma": 1.0 - rate}
    return {}


def _critic_kwargs(spec) -> dict[str, Any]:
    hidden = spec.hidden
    if isinstance(hidden, (int, str)) or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0
                                                 for h in hidden):
        raise LibraryError(f"torch-mist: hidden must be a list of positive integers, got {hidden!r}")
    if spec.critic == "separable":
        dim = spec.critic_dim
        if isinstance(dim, bool) or not (isinstance(dim, int) and dim > 0):
            raise LibraryError(f"torch-mist: critic_dim must be a positive integer, got {dim!r}")
        return {"critic_type": "separable", "hidden_dims": list(hidden), "k_dim": dim,
                "temperature": float(spec.temperature)}
    if spec.critic == "joint":
        if not hidden:
            raise LibraryError("torch-mist: critic 'joint' needs at least one hidden layer")
        return {"critic_type": "joint", "hidden_dims": list(hidden)}
    raise LibraryError(f"torch-mist: unknown critic {spec.critic!r}; supported: {', '.join(CRITIC_TYPES)}")


class TorchMistEstimator(nn.Module):
    """A torch-mist estimator behind mibench's training interface.

    ``forward(x, y, cols, with_value)`` -> loss, or (loss, value) with the value detached;
    ``estimate(x, y, n_negatives, generator)`` -> the value on a batch, nats. ``cols`` only
    gives the number of negatives: torch-mist draws its own (see the module docstring).
    """

    def __init__(self, spec, name: str, estimator: nn.Module):
        super().__init__()
        self.spec, self.name = spec, name
        self.mist = estimator

    def extra_repr(self) -> str:
        return f"library='torch-mist', bound={self.name!r}"

    def _neg_samples(self, batch: int, k: int) -> int:
        """torch-mist's ``neg_samples`` for K negatives per positive in a batch of ``batch``."""
        if not 1 <= k <= batch - 1:
            raise ValueError(f"negatives must be 1..{batch - 1} for a batch of {batch}, got {k}")
        if k < batch - 1:
            return k
        return 0 if self.name == "infonce" else -1

    def _clear_memos(self) -> None:
        for module in self.mist.modules():
            memo = module.__dict__.get("__cache")
            if memo:
                memo.clear()

    @staticmethod
    def _flat(t: Tensor) -> Tensor:
        return t.reshape(t.shape[0], -1)

    def forward(self, x: Tensor, y: Tensor, cols: Tensor, with_value: bool = False):
        """The training loss on a batch (K = cols.shape[1] - 1), and with ``with_value`` also
        torch-mist's estimate on the same batch and negatives (0-d, detached)."""
        self.mist.neg_samples = self._neg_samples(x.shape[0], cols.shape[1] - 1)
        x, y = self._flat(x), self._flat(y)
        self._clear_memos()
        try:
            loss = self.mist.loss(x, y)
            if not with_value:
                return loss
            with torch.no_grad():
                value = self.mist.mutual_information(x, y).detach()
            return loss, value
        finally:
            self._clear_memos()

    def loss(self, x: Tensor, y: Tensor, n_negatives: int, generator: torch.Generator | None = None) -> Tensor:
        cols = candidate_indices(x.shape[0], n_negatives, generator, x.device)
        return self(x, y, cols)

    @torch.no_grad()
    def estimate(self, x: Tensor, y: Tensor, n_negatives: int, generator: torch.Generator | None = None) -> Tensor:
        """torch-mist's estimate on one batch, nats (0-d tensor). Draws mibench's candidate
        indices from ``generator`` as mibench's estimate does, so later batches stay the same."""
        candidate_indices(x.shape[0], n_negatives, generator, x.device)
        self.mist.neg_samples = self._neg_samples(x.shape[0], n_negatives)
        x, y = self._flat(x), self._flat(y)
        self._clear_memos()
        try:
            return self.mist.mutual_information(x, y).detach()
        finally:
            self._clear_memos()


def build(spec, task, *, seed: int | None = None) -> TorchMistEstimator:
    """torch-mist's estimator ``spec.bound`` for ``task``'s input shapes, wrapped for ``fit``.

    With ``seed``, the parameters are drawn under a forked global RNG seeded with it (as
    ``mibench.estimators.build_estimator`` does), so they depend on the seed alone.
    """
    if spec.bound not in NAMES:
        raise LibraryError(f"torch-mist has no bound {spec.bound!r} here; supported: {', '.join(NAMES)}")
    if spec.encoder != "identity":
        raise LibraryError(f"torch-mist runs take encoder = 'identity' only, got {spec.encoder!r}")
    critic = _critic_kwargs(spec)
    bound = _bound_kwargs(spec.bound, dict(spec.options))
    factories = _import_torch_mist()
    factory = getattr(factories, spec.bound)
    x_dim, y_dim = math.prod(task.x_shape), math.prod(task.y_shape)
    k = "all" if spec.negatives == "all" else int(spec.negatives)
    # the setting for the spec's K; each call sets it again for the batch it gets
    neg_samples = (0 if spec.bound == "infonce" else -1) if k == "all" else k

    def make() -> nn.Module:
        return factory(x_dim=x_dim, y_dim=y_dim, neg_samples=neg_samples, **critic, **bound)

    if seed is None:
        estimator = make()
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            estimator = make()
    return TorchMistEstimator(spec, spec.bound, estimator)


__all__ = ["NAMES", "TorchMistEstimator", "build"]
