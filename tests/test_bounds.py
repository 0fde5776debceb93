"""Each bound's batch value, with the optimal critic plugged in, against its known limit.

Scores come from the task's true log density ratio (plus the constant each bound needs), so no
training is involved; the batch is large (B = 2048 positives, K = 255 negatives each) and the
seed fixed. Tolerances are stated per test.
"""

import math

import pytest
import torch

from conftest import gen
from mibench import bounds as B
from mibench.distributions import CorrelatedGaussian
from mibench.nets import candidate_indices


def optimal_scores(task, batch, k, seed=0, shift=0.0):
    g = gen(seed)
    x, y = task.sample(batch, generator=g)
    cols = candidate_indices(batch, k, g, x.device)
    return task.log_ratio(x[:, None, :], y[cols]) + shift


def conditional_log_q(task, batch, k, seed=0):
    """log q(y_i | x_cols[i,k]) with q the true conditional p(y | x) of a Gaussian task."""
    g = gen(seed)
    x, y = task.sample(batch, generator=g)
    cols = candidate_indices(batch, k, g, x.device)
    var = 1 - task.rho**2
    diff = y[:, None, :] - task.rho * x[cols]
    return -0.5 * (diff.pow(2) / var + math.log(2 * math.pi * var)).sum(-1), y


LOW = CorrelatedGaussian(5, mi=1.0)
TOL = 0.06  # nats; the Monte Carlo spread of these estimators at B = 2048 is about 0.02


@pytest.mark.parametrize("name,bound,shift", [
    ("nwj", B.NWJ(), 1.0),
    ("dv", B.DV(), 0.0),
    ("dv_shifted", B.DV(), 3.0),          # DV is invariant to a constant shift of the critic
    ("mine", B.MINE(), 0.0),
    ("js", B.JS(), 0.0),                   # reports NWJ on f + 1
    ("smile_inf", B.SMILE(tau=math.inf), 0.0),
    ("tuba", B.TUBA(), 0.0),               # baseline starts at a = 1
    ("alpha0", B.AlphaInfoNCE(alpha=0.0), 0.0),
])
def test_bound_with_optimal_critic_reaches_the_truth(name, bound, shift):
    scores = optimal_scores(LOW, 2048, 255, shift=shift)
    assert bound.estimate(scores).item() == pytest.approx(LOW.mi, abs=TOL)


def test_estimate_converges_as_the_batch_grows():
    """The spread over seeds of NWJ shrinks with the batch (about 1/sqrt(B * K))."""
    def spread(batch):
        values = [B.nwj(optimal_scores(LOW, batch, min(63, batch - 1), seed=s) + 1).item() for s in range(8)]
        return torch.tensor(values).std().item()
    assert spread(2048) < 0.5 * spread(64)


def test_flo_with_optimal_u():
    scores = optimal_scores(LOW, 2048, 255)
    assert B.FLO().estimate(scores, aux=-scores[:, 0]).item() == pytest.approx(LOW.mi, abs=TOL)


def test_smile_clipping_cuts_the_variance_at_high_mi():
    """Song & Ermon's point: clipping trades bias for a much smaller spread across batches."""
    high = CorrelatedGaussian(20, mi=10.0)
    batches = [optimal_scores(high, 256, 63, seed=s) for s in range(8)]
    def spread(tau):
        return torch.tensor([B.SMILE(tau=tau).estimate(s).item() for s in batches]).std().item()
    assert spread(1.0) < 0.5 * spread(math.inf)


def test_infonce_reaches_truth_at_low_mi():
    task = CorrelatedGaussian(2, mi=0.5)
    scores = optimal_scores(task, 2048, 1023)
    assert B.infonce(scores).item() == pytest.approx(0.5, abs=0.03)


def test_infonce_is_capped_by_log_k_plus_one_at_high_mi():
    task = CorrelatedGaussian(20, mi=10.0)
    for k in (7, 63):
        value = B.infonce(optimal_scores(task, 1024, k)).item()
        assert math.log(k + 1) - 0.3 < value <= math.log(k + 1) + 1e-6


def test_alpha_infonce_at_alpha_one_is_infonce_over_k_candidates():
    scores = optimal_scores(LOW, 1024, 31)
    interpolated = B.AlphaInfoNCE(alpha=1.0).estimate(scores).item()
    # the positive term sees y_i and K - 1 negatives: InfoNCE over K = 31 candidates
    assert interpolated == pytest.approx(B.infonce(scores[:, :31]).item(), abs=1e-5)


def test_generative_bounds_with_the_true_conditional():
    log_q, y = conditional_log_q(LOW, 2048, 255)
    entropy_y = LOW.entropy_y()
    assert B.BA(entropy_y).estimate(log_q).item() == pytest.approx(LOW.mi, abs=TOL)
    # L1Out is an upper bound that tightens as K grows
    assert B.L1Out().estimate(log_q).item() == pytest.approx(LOW.mi, abs=TOL)
    # CLUB with the true conditional: d * rho^2 / (1 - rho^2) per Cheng et al.'s Gaussian case
    rho2 = LOW.rho**2
    assert B.CLUB().estimate(log_q).item() == pytest.approx(5 * rho2 / (1 - rho2), abs=0.05)
    # DoE with the true marginal N(0, I)
    log_marg = -0.5 * (y.pow(2) + math.log(2 * math.pi)).sum(-1)
    assert B.DoE().estimate(log_q, aux=log_marg).item() == pytest.approx(LOW.mi, abs=TOL)


def test_scores_without_negatives_are_rejected():
    with pytest.raises(ValueError, match=r"\(B, K \+ 1\) with K >= 1"):
        B.nwj(torch.zeros(4, 1))
