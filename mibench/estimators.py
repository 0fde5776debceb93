"""Transformed MI estimators: encoders f_x, f_y in front of a critic and a bound, from a plain spec."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor, nn

from .bounds import BOUNDS, Bound, bound_options
from .interface import ConfigError, HasEntropyY, check_keys
from .nets import CRITICS, ENCODERS, SHUFFLED, ConditionalGaussian, candidate_indices, permuted_columns

INITS = ("default", "concat")      # EstimatorSpec.init
_GLOBAL_RNG = threading.Lock()     # torch's global RNG, seeded by build_estimator


@dataclass(frozen=True)
class EstimatorSpec:
    """What to build. Every field is a plain value so a spec can come from a TOML table.

    bound: a name in BOUNDS. Its options (tau for SMILE, alpha for alpha_infonce, ema_rate for
        MINE, ...: ``Bound.options``) sit in the same table; ``options`` keeps those of this
        bound, defaults filled in, and options of other bounds are dropped, so one table serves
        a grid over bounds.
    critic: a name in CRITICS (discriminative bounds; generative bounds use a conditional Gaussian).
    hidden: hidden layer sizes of the critic (or of q(y|x)).
    critic_dim: output size of each side of a separable critic.
    encoder, encoder_hidden, embed_dim: the transform in front of the critic, for x and y.
    shared: one encoder module for both x and y (the seed's setting; needs equal input shapes).
    init: "default" (torch's initialisation of every layer) or, for the joint critic, "concat":
        its split first layer drawn as one layer on the concatenated [x, y] (BMI's critic;
        ``JointCritic.init_as_concatenated``).
    negatives: K negatives per positive, 1..B-1, drawn from the batch's other items; "all"
        (= B - 1); or "shuffled": one negative per positive, the y of an independent draw of
        the task (a second batch drawn beside the paired one, as BMI's and Belghazi et al.'s
        MINE pair x with shuffled y), and in evaluation the y of a uniform random permutation of
        the batch (BMI's MINE on its test half). Discriminative bounds of mibench only. On a
        fixed sample drawn epoch by epoch the second draw is the epoch's next batch, so an
        epoch lasts half as many steps.
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
    init: str = "default"
    options: tuple[tuple[str, float], ...] = ()
    library: str = "mibench"

    # The run-kind seam (``mibench.runspec.RunEstimator``): a neural run is trained by mibench's
    # loop; its identity holds the training budget and the evaluation (RUN_FIELDS).
    kind: ClassVar[str] = "neural"
    RUN_FIELDS: ClassVar[tuple[str, ...]] = ("batch_size", "steps", "lr", "device", "seed", "eval_batches",
                                             "eval_batch_size", "staircase")

    def __post_init__(self):
        if not isinstance(self.library, str) or not self.library:
            raise ConfigError(f"estimator: library must be a name, got {self.library!r}")
        for key in ("bound", "critic", "encoder"):
            if not isinstance(getattr(self, key), str):
                raise ConfigError(f"estimator: {key} must be a name, got {getattr(self, key)!r}")
        for key in ("hidden", "encoder_hidden"):
            value = getattr(self, key)
            if not isinstance(value, (list, tuple)) or not all(isinstance(h, int) and not isinstance(h, bool)
                                                               and h > 0 for h in value):
                raise ConfigError(f"estimator: {key} must be a list of positive integers, got {value!r}")
        if self.init not in INITS:
            raise ConfigError(f"estimator: init must be one of {', '.join(INITS)}, got {self.init!r}")
        if self.init != "default" and self.library != "mibench":
            raise ConfigError(f"estimator: init = {self.init!r} is mibench's joint critic's; library "
                              f"{self.library!r} takes its own initialisation")
        if self.negatives == SHUFFLED and self.library != "mibench":
            raise ConfigError(f"estimator: negatives = {SHUFFLED!r} is mibench's own sampling; library "
                              f"{self.library!r} takes a positive integer or 'all'")
        if self.library != "mibench":
            # another library's bound, by that library's name for it: checked when the run
            # builds it (mibench.libraries), so an unknown name is that run's error row. Its
            # options carry mibench's names: a bound mibench also has keeps only its own.
            options = dict(self.options)
            if self.bound in BOUNDS:
                options = BOUNDS[self.bound].check_options({k: v for k, v in options.items()
                                                            if k in BOUNDS[self.bound].options})
            object.__setattr__(self, "options", tuple(sorted(options.items())))
            for key in ("hidden", "encoder_hidden"):
                object.__setattr__(self, key, tuple(getattr(self, key)))
            return
        if self.bound not in BOUNDS:
            raise ConfigError(BOUNDS.unknown_message(self.bound))
        if self.critic not in CRITICS:
            raise ConfigError(CRITICS.unknown_message(self.critic))
        if self.encoder not in ENCODERS:
            raise ConfigError(ENCODERS.unknown_message(self.encoder))
        for key in ("hidden", "encoder_hidden"):
            object.__setattr__(self, key, tuple(getattr(self, key)))
        if self.init == "concat" and (self.critic != "joint" or BOUNDS[self.bound].generative):
            raise ConfigError(f"estimator: init = 'concat' draws the joint critic's first layer; "
                              f"critic {BOUNDS[self.bound].critic_name(self.critic)!r} has none")
        neg = self.negatives
        if not (neg in ("all", SHUFFLED) or (isinstance(neg, int) and not isinstance(neg, bool) and neg >= 1)):
            raise ConfigError(f"estimator: negatives must be a positive integer, 'all' or {SHUFFLED!r}, got {neg!r}")
        if neg == SHUFFLED and BOUNDS[self.bound].generative:
            raise ConfigError(f"estimator: negatives = {SHUFFLED!r} needs a critic's scores; bound {self.bound!r} "
                              "scores log q(y | x) over the batch's x (use a positive integer or 'all')")
        for key in ("critic_dim", "embed_dim"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise ConfigError(f"estimator: {key} must be a positive integer, got {value!r}")
        if not isinstance(self.shared, bool):
            raise ConfigError(f"estimator: shared must be true or false, got {self.shared!r}")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            raise ConfigError(f"estimator: temperature must be > 0, got {self.temperature!r}")
        bound_cls = BOUNDS[self.bound]
        given = {k: v for k, v in dict(self.options).items() if k in bound_cls.options}
        object.__setattr__(self, "options", tuple(sorted(bound_cls.check_options(given).items())))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EstimatorSpec":
        """Build from a dict / TOML table; unknown keys are errors that list the allowed ones."""
        fields = [f.name for f in dataclasses.fields(cls) if f.name != "options"]
        options = bound_options()
        check_keys(d, [*fields, *options], "estimator")
        return cls(**{k: v for k, v in d.items() if k in fields},
                   options=tuple((k, v) for k, v in d.items() if k in options))

    def to_dict(self) -> dict[str, Any]:
        """A plain table that ``from_dict`` reads back: the bound's options sit beside the rest."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "options"}
        if self.library == "mibench":       # the default stays out, so run ids predating it hold
            del d["library"]
        if self.init == "default":          # likewise
            del d["init"]
        d.update(self.stated_options())
        d["hidden"], d["encoder_hidden"] = list(self.hidden), list(self.encoder_hidden)
        return d

    def stated_options(self) -> dict[str, float]:
        """The bound's options as rows and run ids state them: a ``late`` option at its default
        is left out (``bounds.Option``), so rows recorded before it was added keep their ids."""
        known = BOUNDS[self.bound].options if self.bound in BOUNDS else {}
        return {k: v for k, v in self.options
                if not (k in known and known[k].late and v == known[k].default)}

    @property
    def is_mibench(self) -> bool:
        """Built by mibench's registries (else by another library's adapter, ``mibench.libraries``)."""
        return self.library == "mibench"

    def identity(self, batch_size: int) -> dict[str, Any]:
        """The estimator's part of a run's identity: K as a number ("all" and B - 1 train alike)
        and the critic by what the bound really uses (a generative bound ignores the name)."""
        est = self.to_dict()
        est["negatives"] = SHUFFLED if self.shuffled else self.n_negatives(batch_size)
        if self.is_mibench:
            est["critic"] = BOUNDS[self.bound].critic_name(self.critic)
        return est

    def row_columns(self, run) -> dict[str, Any]:
        """The columns of a run's row that this spec and the run's budget decide (``run``: a
        ``mibench.runspec.RunSpec``). Another library's bound has no kind mibench knows."""
        kind, critic = (BOUNDS[self.bound].kind, BOUNDS[self.bound].critic_name(self.critic)) if self.is_mibench \
            else ("library", self.critic)
        return dict(bound=self.bound, bound_kind=kind, critic=critic, encoder=self.encoder, shared_encoder=self.shared,
                    n_negatives=run.n_negatives, batch_size=run.batch_size, steps=run.steps, epochs=run.epochs,
                    lr=run.lr, staircase=list(run.staircase), precision=run.precision,
                    bound_options=self.stated_options(), library=self.library)

    @property
    def checked_when_planned(self) -> bool:
        """Planning builds mibench's estimators (on the meta device), so a ConfigError when a run
        builds one is a bug that would fail every run alike; another library's spec is checked
        only when its run builds it, and its errors are that run's row."""
        return self.is_mibench

    @property
    def batchable(self) -> bool:
        """Whether its seeds can train as one batched model (``batch_seeds``)."""
        return self.is_mibench and BOUNDS[self.bound].batchable

    @property
    def saves_models(self) -> bool:
        """Whether ``save_model`` can save it (weights and encoder embeddings of mibench's modules)."""
        return self.is_mibench

    @property
    def shuffled(self) -> bool:
        """One negative per positive from an independent draw (``negatives = "shuffled"``)."""
        return self.negatives == SHUFFLED

    def n_negatives(self, batch_size: int) -> int:
        """K for a batch of ``batch_size``; raises if it cannot be met."""
        k = batch_size - 1 if self.negatives == "all" else 1 if self.shuffled else int(self.negatives)
        if not 1 <= k <= batch_size - 1:
            raise ConfigError(f"negatives = {self.negatives!r} needs a batch of at least {k + 1}, got {batch_size}")
        return k


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
        options = dict(spec.options)
        if bound_cls.needs_entropy_y:
            options["entropy_y"] = entropy_y
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

        if bound_cls.generative:
            if spec.encoder != "identity":
                raise ConfigError(f"bound {spec.bound!r} models q(y|x) over raw y; use encoder = 'identity'")
            self.critic = ConditionalGaussian(dx, dy, spec.hidden)
        else:
            self.critic = CRITICS[spec.critic](dx, dy, spec.hidden, spec.critic_dim, spec.temperature)
        if spec.init == "concat":
            self.critic.init_as_concatenated()
        self.aux_head: nn.Module | None = bound_cls.aux_head(dx, dy, spec.hidden)

    def scores(self, x: Tensor, y: Tensor, n_negatives: int,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """x: (B, *x_shape), y: (B, *y_shape) -> scores (B, K + 1), aux (B,) or None. With
        ``negatives = "shuffled"`` (K = 1) the negative of row i is y_{pi(i)}, pi a uniform random
        permutation of the batch."""
        if self.spec.shuffled:
            return self.scores_at(x, y, permuted_columns(x.shape[0], generator, x.device))
        return self.scores_at(x, y, candidate_indices(x.shape[0], n_negatives, generator, x.device))

    def scores_at(self, x: Tensor, y: Tensor, cols: Tensor) -> tuple[Tensor, Tensor | None]:
        """``scores`` for given candidate indices cols: (B, K + 1) (see ``nets.candidate_indices``)."""
        fx, fy = self.encoder_x(x), self.encoder_y(y)
        scores = self.critic(fx, fy, cols)
        aux = None if self.aux_head is None else self.aux_head(fx, fy, cols)
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

    def ceiling(self, n_negatives: int) -> float:
        """The most its bound can report with K negatives (nats; inf for most bounds). A module
        another library builds may say the same; the runner takes inf where it does not."""
        return self.bound.ceiling(n_negatives)

    @torch.no_grad()
    def estimate(self, x: Tensor, y: Tensor, n_negatives: int, generator: torch.Generator | None = None) -> Tensor:
        """The bound's value on one batch, nats (0-d tensor, not synchronised to the host)."""
        return self.bound.estimate(*self.scores(x, y, n_negatives, generator))


def build_estimator(spec: EstimatorSpec | Mapping[str, Any], x_shape: tuple[int, ...],
                    y_shape: tuple[int, ...], entropy_y: float | None = None, *,
                    seed: int | None = None) -> TransformedEstimator:
    """A fresh estimator (new parameters, new bound state) from a spec or a plain dict.

    With ``seed``, the initial parameters depend on the seed alone: they are drawn under a
    forked global RNG seeded with it, so neither earlier draws nor this build disturb anything
    else; a lock keeps builds in other threads of the process (an executor of threads) from
    seeding that RNG in between. Without it they come from the global RNG as it stands.
    """
    if not isinstance(spec, EstimatorSpec):
        spec = EstimatorSpec.from_dict(spec)
    if seed is None:
        return TransformedEstimator(spec, x_shape, y_shape, entropy_y)
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):     # one seeded build at a time per process
        torch.manual_seed(seed)
        return TransformedEstimator(spec, x_shape, y_shape, entropy_y)


def estimator_for(spec: EstimatorSpec, task, *, seed: int | None = None) -> TransformedEstimator:
    """``build_estimator`` for a task: its input shapes, and H(y) when the bound needs it.
    A spec of another library is built by that library's adapter (``mibench.libraries``)."""
    if spec.library != "mibench":
        from .libraries import build_library_estimator

        return build_library_estimator(spec, task, seed=seed)
    entropy_y = task.entropy_y() if BOUNDS[spec.bound].needs_entropy_y and isinstance(task, HasEntropyY) else None
    return build_estimator(spec, task.x_shape, task.y_shape, entropy_y, seed=seed)


__all__ = ["EstimatorSpec", "TransformedEstimator", "build_estimator", "estimator_for"]
