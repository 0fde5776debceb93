"""Transformed MI estimators: encoders f_x, f_y in front of a critic and a bound, from a plain spec."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from .bounds import BOUNDS, Bound
from .interface import ConfigError
from .nets import CRITICS, ENCODERS, ConditionalGaussian, JointCritic, MarginalGaussian, candidate_indices


@dataclass(frozen=True)
class EstimatorSpec:
    """What to build. Every field is a plain value so a spec can come from a TOML table.

    bound: a name in BOUNDS; tau (SMILE), alpha (alpha_infonce), ema_rate (MINE) are its options
        and are ignored by bounds that do not take them.
    critic: a name in CRITICS (discriminative bounds; generative bounds use a conditional Gaussian).
    hidden: hidden layer sizes of the critic (or of q(y|x)).
    critic_dim: output size of each side of a separable critic.
    encoder, encoder_hidden, embed_dim: the transform in front of the critic, for x and y.
    shared: one encoder module for both x and y (the seed's setting; needs equal input shapes).
    negatives: K negatives per positive, 1..B-1, or "all" (= B - 1).
    """

    bound: str = "infonce"
    critic: str = "separable"
    hidden: tuple[int, ...] = (256,)
    critic_dim: int = 32
    temperature: float = 1.0
    encoder: str = "identity"
    encoder_hidden: tuple[int, ...] = (128,)
    embed_dim: int | None = None
    shared: bool = False
    negatives: int | str = "all"
    tau: float = 5.0
    alpha: float = 0.5
    ema_rate: float = 0.01

    def __post_init__(self):
        if self.bound not in BOUNDS:
            raise ConfigError(BOUNDS.unknown_message(self.bound))
        if self.critic not in CRITICS:
            raise ConfigError(CRITICS.unknown_message(self.critic))
        if self.encoder not in ENCODERS:
            raise ConfigError(ENCODERS.unknown_message(self.encoder))
        for key in ("hidden", "encoder_hidden"):
            value = getattr(self, key)
            if isinstance(value, int) or not all(isinstance(h, int) and h > 0 for h in value):
                raise ConfigError(f"estimator: {key} must be a list of positive integers, got {value!r}")
            object.__setattr__(self, key, tuple(value))
        neg = self.negatives
        if not (neg == "all" or (isinstance(neg, int) and not isinstance(neg, bool) and neg >= 1)):
            raise ConfigError(f"estimator: negatives must be a positive integer or 'all', got {neg!r}")
        if self.embed_dim is not None and not (isinstance(self.embed_dim, int) and self.embed_dim > 0):
            raise ConfigError(f"estimator: embed_dim must be a positive integer, got {self.embed_dim!r}")
        if not isinstance(self.shared, bool):
            raise ConfigError(f"estimator: shared must be true or false, got {self.shared!r}")
        if not self.temperature > 0:
            raise ConfigError(f"estimator: temperature must be > 0, got {self.temperature!r}")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EstimatorSpec":
        """Build from a dict / TOML table; unknown keys are errors that list the allowed ones."""
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise ConfigError(f"estimator: unknown key {unknown[0]!r}; allowed: {', '.join(allowed)}")
        return cls(**d)

    def n_negatives(self, batch_size: int) -> int:
        """K for a batch of ``batch_size``; raises if it cannot be met."""
        k = batch_size - 1 if self.negatives == "all" else int(self.negatives)
        if not 1 <= k <= batch_size - 1:
            raise ConfigError(f"negatives = {self.negatives!r} needs a batch of at least {k + 1}, got {batch_size}")
        return k

    def bound_options(self) -> dict[str, Any]:
        return {"smile": {"tau": self.tau}, "alpha_infonce": {"alpha": self.alpha},
                "mine": {"ema_rate": self.ema_rate}}.get(self.bound, {})


class TransformedEstimator(nn.Module):
    """encoders -> critic -> score matrix -> bound.

    ``scores(x, y)`` returns the (B, K + 1) score matrix and the bound's aux tensor;
    ``loss`` and ``estimate`` apply the bound to them.
    """

    def __init__(self, spec: EstimatorSpec, x_shape: tuple[int, ...], y_shape: tuple[int, ...],
                 entropy_y: float | None = None):
        super().__init__()
        self.spec = spec
        bound_cls = BOUNDS[spec.bound]
        options = spec.bound_options()
        if bound_cls.name == "ba":
            options = {"entropy_y": entropy_y}
        self.bound: Bound = bound_cls(**options)

        enc_options = {"embed_dim": spec.embed_dim, "hidden": spec.encoder_hidden}
        if spec.shared:
            if tuple(x_shape) != tuple(y_shape):
                raise ConfigError(f"shared = true needs x and y of one shape, got {tuple(x_shape)} and {tuple(y_shape)}")
            self.encoder_x, dx = ENCODERS[spec.encoder](tuple(x_shape), **enc_options)
            self.encoder_y, dy = self.encoder_x, dx
        else:
            self.encoder_x, dx = ENCODERS[spec.encoder](tuple(x_shape), **enc_options)
            self.encoder_y, dy = ENCODERS[spec.encoder](tuple(y_shape), **enc_options)

        if self.bound.generative:
            if spec.encoder != "identity":
                raise ConfigError(f"bound {spec.bound!r} models q(y|x) over raw y; use encoder = 'identity'")
            self.critic = ConditionalGaussian(dx, dy, spec.hidden)
        else:
            self.critic = CRITICS[spec.critic](dx, dy, spec.hidden, spec.critic_dim, spec.temperature)
        # Auxiliary heads some bounds need: FLO's u(x, y) and DoE's marginal q(y).
        self.aux_head: nn.Module | None = None
        if spec.bound == "flo":
            self.aux_head = JointCritic(dx, dy, spec.hidden)
        elif spec.bound == "doe":
            self.aux_head = MarginalGaussian(dy)

    def scores(self, x: Tensor, y: Tensor, n_negatives: int,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """x: (B, *x_shape), y: (B, *y_shape) -> scores (B, K + 1), aux (B,) or None."""
        return self.scores_at(x, y, candidate_indices(x.shape[0], n_negatives, generator, x.device))

    def scores_at(self, x: Tensor, y: Tensor, cols: Tensor) -> tuple[Tensor, Tensor | None]:
        """``scores`` for given candidate indices cols: (B, K + 1) (see ``nets.candidate_indices``)."""
        fx, fy = self.encoder_x(x), self.encoder_y(y)
        scores = self.critic(fx, fy, cols)
        aux = None
        if isinstance(self.aux_head, JointCritic):
            aux = self.aux_head(fx, fy, cols[:, :1]).squeeze(1)
        elif self.aux_head is not None:
            aux = self.aux_head(fy)
        if scores.dtype in (torch.bfloat16, torch.float16):     # the forward ran under autocast:
            scores = scores.float()                             # the bound works in float32
            aux = None if aux is None else aux.float()
        return scores, aux

    def forward(self, x: Tensor, y: Tensor, cols: Tensor, with_value: bool = False):
        """The training loss for given candidate indices, and with ``with_value`` also the
        detached estimate in nats: the pure function of parameters and inputs that batched
        training maps over models."""
        scores, aux = self.scores_at(x, y, cols)
        loss = self.bound.loss(scores, aux)
        if not with_value:
            return loss
        return loss, self.bound.estimate(scores.detach(), None if aux is None else aux.detach())

    def loss(self, x: Tensor, y: Tensor, n_negatives: int, generator: torch.Generator | None = None) -> Tensor:
        return self.bound.loss(*self.scores(x, y, n_negatives, generator))

    @torch.no_grad()
    def estimate(self, x: Tensor, y: Tensor, n_negatives: int, generator: torch.Generator | None = None) -> Tensor:
        """The bound's value on one batch, nats (0-d tensor, not synchronised to the host)."""
        return self.bound.estimate(*self.scores(x, y, n_negatives, generator))


def build_estimator(spec: EstimatorSpec | Mapping[str, Any], x_shape: tuple[int, ...],
                    y_shape: tuple[int, ...], entropy_y: float | None = None) -> TransformedEstimator:
    """A fresh estimator (new parameters, new bound state) from a spec or a plain dict."""
    if not isinstance(spec, EstimatorSpec):
        spec = EstimatorSpec.from_dict(spec)
    return TransformedEstimator(spec, x_shape, y_shape, entropy_y)


def entropy_y_of(task) -> float | None:
    """H(y) of a task when it provides one (needed by the BA bound), else None."""
    fn = getattr(task, "entropy_y", None)
    try:
        return fn() if fn else None
    except ConfigError:
        return None


__all__ = ["EstimatorSpec", "TransformedEstimator", "build_estimator", "entropy_y_of"]
