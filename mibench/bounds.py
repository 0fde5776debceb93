"""MI bounds as functions of a score matrix: the value each reports and the loss it trains on.

Every bound reads ``scores`` of shape (B, K + 1):

* discriminative bounds: ``scores[i, 0] = f(x_i, y_i)`` (a positive pair) and
  ``scores[i, k] = f(x_i, y_j)`` for K negatives j != i;
* generative bounds: ``scores[i, 0] = log q(y_i | x_i)`` and ``scores[i, k] = log q(y_i | x_j)``
  for K other x's j != i (a conditional density is naturally compared across conditions).

``estimate`` returns nats (a 0-d tensor); ``loss`` is what training minimises. They differ where
the literature trains one objective and reports another (JS, SMILE, MINE, the generative bounds).
A few bounds take an auxiliary per-pair tensor ``aux`` of shape (B,): FLO's u(x_i, y_i) and DoE's
log q(y_i). Bounds are modules so the ones with learned baselines or running averages keep them;
make a fresh one per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .interface import ConfigError
from .nets import MarginalGaussian, PositivePairScore
from .registry import Registry


def logmeanexp(t: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """log(mean(exp(t))) over ``dim`` (all elements when None), computed stably."""
    if dim is None:
        t, dim = t.reshape(-1), 0
    n = math.prod(t.shape[d] for d in ((dim,) if isinstance(dim, int) else dim))
    return torch.logsumexp(t, dim) - math.log(n)


def _split(scores: Tensor) -> tuple[Tensor, Tensor]:
    if scores.ndim != 2 or scores.shape[1] < 2:
        raise ValueError(f"scores must have shape (B, K + 1) with K >= 1, got {tuple(scores.shape)}")
    return scores[:, 0], scores[:, 1:]


@dataclass(frozen=True)
class Option:
    """A numeric option of a bound: its default, the test a value must pass, and the allowed
    range in words (for the error message). ``late``: added after runs of the bound were
    recorded; at its default it stays out of a spec's table and so out of run ids, which keep
    naming the runs recorded before it."""

    default: float
    valid: Callable[[float], bool]
    allowed: str
    late: bool = False


class Bound(nn.Module):
    """Base class: a bound and everything particular to it.

    A subclass declares, as class attributes:

    * ``name`` (the registry key), ``label`` (how tables and figures show it) and ``kind``
      ("lower", "upper" or "neither");
    * ``options``: its numeric options with defaults and validation (``Option``), taken as
      keyword arguments of ``__init__`` and set in a spec's table (``tau = 5.0``);
    * ``generative``: scores are log q(y | x) of a learned conditional Gaussian, not a critic's;
    * ``needs_entropy_y``: ``__init__`` takes ``entropy_y``, H(y) in nats, from the task;
    * ``batchable``: whether several seeds can train as one vmapped model (false for bounds that
      update state in place during the loss);
    * ``aux_head(dx, dy, hidden)``: the extra network whose per-pair output reaches
      ``estimate`` and ``loss`` as ``aux`` (None for most bounds);

    and defines ``estimate`` (and ``loss`` when it trains on something else), and ``ceiling``
    when its value cannot exceed some level (InfoNCE: ln(K + 1)).
    """

    name: str = ""
    label: str = ""
    kind: str = "lower"          # "lower" | "upper" | "neither"
    options: dict[str, Option] = {}
    generative: bool = False
    needs_entropy_y: bool = False
    batchable: bool = True

    def __init__(self, **options: float):
        super().__init__()
        for key, value in self.check_options(options).items():
            setattr(self, key, value)

    @classmethod
    def check_options(cls, given: Mapping[str, Any]) -> dict[str, float]:
        """The bound's options with defaults filled in; a ConfigError names a bad one."""
        unknown = sorted(set(given) - set(cls.options))
        if unknown:
            allowed = ", ".join(cls.options) or "none"
            raise ConfigError(f"{cls.name}: unknown option {unknown[0]!r}; allowed: {allowed}")
        out = {}
        for key, opt in cls.options.items():
            value = given.get(key, opt.default)
            if value in ("inf", "-inf"):             # an infinity as rows store it (JSON has none)
                value = float(value)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not (ok and opt.valid(float(value))):
                raise ConfigError(f"{cls.name}: {key} must be {opt.allowed}, got {value!r}")
            out[key] = float(value)
        return out

    @classmethod
    def critic_name(cls, requested: str) -> str:
        """The critic a run of this bound really uses, for its row."""
        return "conditional_gaussian" if cls.generative else requested

    @staticmethod
    def aux_head(dx: int, dy: int, hidden: Sequence[int]) -> nn.Module | None:
        """The auxiliary network, mapping (fx, fy, cols) to (B,), or None."""
        return None

    def estimate(self, scores: Tensor, aux: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def ceiling(self, n_negatives: int) -> float:
        """The most ``estimate`` can return with K = ``n_negatives`` negatives per positive,
        whatever the scores (math.inf when nothing caps it). An estimate above it (beyond float
        rounding) is a numerical failure, which the runner records as a divergence."""
        return math.inf

    def loss(self, scores: Tensor, aux: Tensor | None = None) -> Tensor:
        """Default: maximise the reported bound."""
        return -self.estimate(scores, aux)


# --------------------------------------------------------------------------- score-based, lower

def nwj(scores: Tensor) -> Tensor:
    """Nguyen-Wainwright-Jordan: E_p[f] - E_q[exp(f - 1)]. Tight at f = log p/q + 1."""
    pos, neg = _split(scores)
    return pos.mean() - torch.exp(neg - 1).mean()


def dv(scores: Tensor) -> Tensor:
    """Donsker-Varadhan: E_p[f] - log E_q[exp f]. Tight at f = log p/q + any constant."""
    pos, neg = _split(scores)
    return pos.mean() - logmeanexp(neg)


def infonce(scores: Tensor) -> Tensor:
    """InfoNCE / CPC: E[log(exp f_ii / mean over the K + 1 candidates)]; at most ln(K + 1)."""
    return (scores[:, 0] - torch.logsumexp(scores, 1)).mean() + math.log(scores.shape[1])


def js_loss(scores: Tensor) -> Tensor:
    """The negated Jensen-Shannon (f-GAN) objective: E_p[softplus(-f)] + E_q[softplus(f)]."""
    pos, neg = _split(scores)
    return F.softplus(-pos).mean() + F.softplus(neg).mean()


class NWJ(Bound):
    """Nguyen-Wainwright-Jordan (f-divergence) bound, trained and reported as is."""

    name, label = "nwj", "NWJ"

    def estimate(self, scores, aux=None):
        return nwj(scores)


class DV(Bound):
    """Donsker-Varadhan bound, trained and reported as is (biased gradient through the log)."""

    name, label = "dv", "DV"

    def estimate(self, scores, aux=None):
        return dv(scores)


class MINE(Bound):
    """MINE (Belghazi et al. 2018): reports DV; trains with a moving-average-corrected gradient.

    The gradient of log E_q[e^f] is debiased by a moving average of E_q[e^f] in the denominator,
    updated with the batch's mean at rate ``ema_rate`` before it is used. ``ema_from_zero`` = 0
    starts the average at the first batch's mean; 1 starts it at zero without a bias correction,
    as BMI's MINE does (benchmark-mi's ``mine_training``: its log-denominator starts at -inf), so
    the first steps' negative-term gradients are up to 1 / ema_rate times larger.
    """

    name, label = "mine", "MINE"
    options = {"ema_rate": Option(0.01, lambda r: 0 < r <= 1, "in (0, 1]"),
               "ema_from_zero": Option(0.0, lambda v: v in (0.0, 1.0), "0 or 1", late=True)}
    batchable = False            # the moving average is updated in place inside the loss

    def __init__(self, **options: float):
        super().__init__(**options)
        self.register_buffer("log_ema", torch.tensor(-math.inf if self.ema_from_zero else float("nan")))
        self._started = bool(self.ema_from_zero)

    def estimate(self, scores, aux=None):
        return dv(scores)

    def loss(self, scores, aux=None):
        pos, neg = _split(scores)
        log_m = logmeanexp(neg)
        with torch.no_grad():
            if self._started:
                r = self.ema_rate
                self.log_ema.copy_(torch.logaddexp(self.log_ema + math.log1p(-r), log_m + math.log(r)))
            else:
                self.log_ema.copy_(log_m)
                self._started = True
        # d/dθ of exp(log_m - log_ema) is (∇ E_q e^f) / ema: the MINE gradient of log E_q e^f.
        return -(pos.mean() - torch.exp(log_m - self.log_ema))


class InfoNCE(Bound):
    """InfoNCE (van den Oord et al. 2018): low variance, at most ln(K + 1)."""

    name, label = "infonce", "InfoNCE"

    def estimate(self, scores, aux=None):
        return infonce(scores)

    def ceiling(self, n_negatives):
        return math.log(n_negatives + 1)


class JS(Bound):
    """JS: trains with the Jensen-Shannon objective, reports NWJ on f + 1 (Poole et al. 2019).

    The JS-optimal critic is log p/q, which NWJ needs shifted by one.
    """

    name, label = "js", "JS"

    def estimate(self, scores, aux=None):
        return nwj(scores + 1)

    def loss(self, scores, aux=None):
        return js_loss(scores)


class SMILE(Bound):
    """SMILE (Song & Ermon 2020): trains with JS, reports DV with negatives clipped to [-tau, tau].

    tau = inf gives plain DV on a JS-trained critic.
    """

    name, label = "smile", "SMILE"
    options = {"tau": Option(5.0, lambda t: t > 0, "> 0 (inf allowed)")}

    def estimate(self, scores, aux=None):
        pos, neg = _split(scores)
        return pos.mean() - logmeanexp(neg.clamp(-self.tau, self.tau))

    def loss(self, scores, aux=None):
        return js_loss(scores)


class TUBA(Bound):
    """TUBA (Poole et al. 2019): unnormalised Barber-Agakov with a learned scalar baseline.

    1 + E_p[f - log a] - E_q[exp(f - log a)]; NWJ is the case log a = 1.
    """

    name, label = "tuba", "TUBA"

    def __init__(self, **options: float):
        super().__init__(**options)
        self.log_a = nn.Parameter(torch.zeros(()))

    def estimate(self, scores, aux=None):
        pos, neg = _split(scores)
        return 1 + (pos - self.log_a).mean() - torch.exp(neg - self.log_a).mean()


class AlphaInfoNCE(Bound):
    """Interpolated alpha-InfoNCE/TUBA (Poole et al. 2019): InfoNCE at alpha = 1, TUBA at 0.

    The normaliser of row i is alpha * m_i + (1 - alpha) * a, with m_i the mean of exp(f) over
    a set of K candidate y's and a a learned scalar baseline. The positive term uses the set
    {y_i} + K - 1 negatives; the negative term uses the K negatives of row i, which are all
    independent of x_i, and averages over each of them as numerator. With K equal-sized sets
    the bound is valid for every alpha, and at alpha = 1 the negative term is exactly 1 so the
    value is InfoNCE over K candidates (at most ln K).
    """

    name, label = "alpha_infonce", "α-InfoNCE"
    options = {"alpha": Option(0.5, lambda a: 0.0 <= a <= 1.0, "in [0, 1]")}

    def __init__(self, **options: float):
        super().__init__(**options)
        self.log_a = nn.Parameter(torch.zeros(()))

    def _log_norm(self, candidates: Tensor) -> Tensor:
        log_alpha = math.log(self.alpha) if self.alpha > 0 else -math.inf
        log_rest = math.log1p(-self.alpha) if self.alpha < 1 else -math.inf
        return torch.logaddexp(logmeanexp(candidates, 1) + log_alpha, self.log_a + log_rest)

    def estimate(self, scores, aux=None):
        pos, neg = _split(scores)
        k = neg.shape[1]
        positive_set = scores[:, :k]                     # y_i and K - 1 negatives
        first = (pos - self._log_norm(positive_set)).mean()
        second = torch.exp(neg - self._log_norm(neg)[:, None]).mean()
        return 1 + first - second

    def ceiling(self, n_negatives):
        return math.log(n_negatives) if self.alpha == 1 else math.inf      # InfoNCE over K candidates


class FLO(Bound):
    """FLO (Guo et al. 2022): Fenchel-Legendre bound with a learned u(x, y) head.

    1 - E_p[u + exp(-u) * mean_k exp(f(x, y'_k) - f(x, y))], u passed as ``aux``.
    Tight at f = log p/q + c, u = -f + c.
    """

    name, label = "flo", "FLO"

    @staticmethod
    def aux_head(dx, dy, hidden):
        return PositivePairScore(dx, dy, hidden)

    def estimate(self, scores, aux=None):
        if aux is None:
            raise ValueError("flo needs aux = u(x_i, y_i) of shape (B,)")
        pos, neg = _split(scores)
        inner = torch.exp(neg - pos[:, None] - aux[:, None]).mean(1)
        return 1 - (aux + inner).mean()


# --------------------------------------------------------------------------- generative bounds

class _Generative(Bound):
    """scores are log q(y_i | x_j); q is trained by maximum likelihood on the positive pairs."""

    generative = True

    def loss(self, scores, aux=None):
        return -scores[:, 0].mean()


class BA(_Generative):
    """Barber-Agakov: H(y) + E_p[log q(y | x)]; H(y) comes from the task."""

    name, label = "ba", "BA"
    needs_entropy_y = True

    def __init__(self, entropy_y: float | None = None, **options: float):
        super().__init__(**options)
        if entropy_y is None:
            raise ConfigError("ba needs the entropy of y, which this task does not provide")
        self.entropy_y = float(entropy_y)

    def estimate(self, scores, aux=None):
        return self.entropy_y + scores[:, 0].mean()


class CLUB(_Generative):
    """CLUB (Cheng et al. 2020): E_p[log q(y|x)] - E_{p(x)p(y)}[log q(y|x)]."""

    name, label = "club", "CLUB"
    kind = "upper"

    def estimate(self, scores, aux=None):
        pos, neg = _split(scores)
        return pos.mean() - neg.mean()


class L1Out(_Generative):
    """L1Out (Poole et al. 2019): E[log q(y_i|x_i) - log mean_{j != i} q(y_i|x_j)]."""

    name, label = "l1out", "L1Out"
    kind = "upper"

    def estimate(self, scores, aux=None):
        pos, neg = _split(scores)
        return (pos - logmeanexp(neg, 1)).mean()


class DoE(_Generative):
    """DoE (McAllester & Stratos 2020): difference of learned entropies, not a bound.

    E[log q(y|x)] - E[log q(y)], both densities learned; aux = log q(y_i) from the marginal.
    """

    name, label = "doe", "DoE"
    kind = "neither"

    @staticmethod
    def aux_head(dx, dy, hidden):
        return MarginalGaussian(dy)

    def estimate(self, scores, aux=None):
        if aux is None:
            raise ValueError("doe needs aux = log q(y_i) of shape (B,)")
        return scores[:, 0].mean() - aux.mean()

    def loss(self, scores, aux=None):
        return -scores[:, 0].mean() - aux.mean()


# Registration order is display order (tables, figures, `mibench list`): the common bounds first.
BOUNDS: Registry[type[Bound]] = Registry("bound", entry_points="mibench.bounds")
for _cls in (InfoNCE, SMILE, NWJ, JS, MINE, DV, TUBA, AlphaInfoNCE, FLO, BA, CLUB, L1Out, DoE):
    BOUNDS.register(_cls.name, _cls)


def bound_options() -> set[str]:
    """Every option name some registered bound takes: the keys a spec table may set for them."""
    return {key for cls in BOUNDS.values() for key in cls.options}
