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

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .interface import ConfigError
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


class Bound(nn.Module):
    """Base class. Subclasses set ``name``, ``kind`` and ``generative`` and define ``estimate``."""

    name: str = ""
    kind: str = "lower"          # "lower" | "upper" | "neither"
    generative: bool = False     # scores are log q(y | x) of a learned conditional Gaussian
    needs_aux: bool = False      # expects the aux tensor described in the module docstring

    def estimate(self, scores: Tensor, aux: Tensor | None = None) -> Tensor:
        raise NotImplementedError

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

    name = "nwj"

    def estimate(self, scores, aux=None):
        return nwj(scores)


class DV(Bound):
    """Donsker-Varadhan bound, trained and reported as is (biased gradient through the log)."""

    name = "dv"

    def estimate(self, scores, aux=None):
        return dv(scores)


class MINE(Bound):
    """MINE (Belghazi et al. 2018): reports DV; trains with a moving-average-corrected gradient.

    The gradient of log E_q[e^f] is debiased by a moving average of E_q[e^f] in the denominator.
    """

    name = "mine"

    def __init__(self, ema_rate: float = 0.01):
        super().__init__()
        if not 0 < ema_rate <= 1:
            raise ConfigError(f"mine: ema_rate must lie in (0, 1], got {ema_rate!r}")
        self.ema_rate = ema_rate
        self.register_buffer("log_ema", torch.tensor(float("nan")))
        self._started = False

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

    name = "infonce"

    def estimate(self, scores, aux=None):
        return infonce(scores)


class JS(Bound):
    """JS: trains with the Jensen-Shannon objective, reports NWJ on f + 1 (Poole et al. 2019).

    The JS-optimal critic is log p/q, which NWJ needs shifted by one.
    """

    name = "js"

    def estimate(self, scores, aux=None):
        return nwj(scores + 1)

    def loss(self, scores, aux=None):
        return js_loss(scores)


class SMILE(Bound):
    """SMILE (Song & Ermon 2020): trains with JS, reports DV with negatives clipped to [-tau, tau].

    tau = inf gives plain DV on a JS-trained critic.
    """

    name = "smile"

    def __init__(self, tau: float = 5.0):
        super().__init__()
        if not float(tau) > 0:
            raise ConfigError(f"smile: tau must be > 0 (inf allowed), got {tau!r}")
        self.tau = float(tau)

    def estimate(self, scores, aux=None):
        pos, neg = _split(scores)
        return pos.mean() - logmeanexp(neg.clamp(-self.tau, self.tau))

    def loss(self, scores, aux=None):
        return js_loss(scores)


class TUBA(Bound):
    """TUBA (Poole et al. 2019): unnormalised Barber-Agakov with a learned scalar baseline.

    1 + E_p[f - log a] - E_q[exp(f - log a)]; NWJ is the case log a = 1.
    """

    name = "tuba"

    def __init__(self):
        super().__init__()
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

    name = "alpha_infonce"

    def __init__(self, alpha: float = 0.5):
        super().__init__()
        if not 0.0 <= float(alpha) <= 1.0:
            raise ConfigError(f"alpha_infonce: alpha must lie in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)
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


class FLO(Bound):
    """FLO (Guo et al. 2022): Fenchel-Legendre bound with a learned u(x, y) head.

    1 - E_p[u + exp(-u) * mean_k exp(f(x, y'_k) - f(x, y))], u passed as ``aux``.
    Tight at f = log p/q + c, u = -f + c.
    """

    name = "flo"
    needs_aux = True

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

    name = "ba"

    def __init__(self, entropy_y: float | None = None):
        super().__init__()
        if entropy_y is None:
            raise ConfigError("ba needs the entropy of y, which this task does not provide")
        self.entropy_y = float(entropy_y)

    def estimate(self, scores, aux=None):
        return self.entropy_y + scores[:, 0].mean()


class CLUB(_Generative):
    """CLUB (Cheng et al. 2020): E_p[log q(y|x)] - E_{p(x)p(y)}[log q(y|x)]."""

    name = "club"
    kind = "upper"

    def estimate(self, scores, aux=None):
        pos, neg = _split(scores)
        return pos.mean() - neg.mean()


class L1Out(_Generative):
    """L1Out (Poole et al. 2019): E[log q(y_i|x_i) - log mean_{j != i} q(y_i|x_j)]."""

    name = "l1out"
    kind = "upper"

    def estimate(self, scores, aux=None):
        pos, neg = _split(scores)
        return (pos - logmeanexp(neg, 1)).mean()


class DoE(_Generative):
    """DoE (McAllester & Stratos 2020): difference of learned entropies, not a bound.

    E[log q(y|x)] - E[log q(y)], both densities learned; aux = log q(y_i) from the marginal.
    """

    name = "doe"
    kind = "neither"
    needs_aux = True

    def estimate(self, scores, aux=None):
        if aux is None:
            raise ValueError("doe needs aux = log q(y_i) of shape (B,)")
        return scores[:, 0].mean() - aux.mean()

    def loss(self, scores, aux=None):
        return -scores[:, 0].mean() - aux.mean()


BOUNDS: Registry[type[Bound]] = Registry("bound")
for _cls in (NWJ, MINE, DV, InfoNCE, JS, SMILE, TUBA, AlphaInfoNCE, FLO, BA, CLUB, L1Out, DoE):
    BOUNDS.register(_cls.name, _cls)
