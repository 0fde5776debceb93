"""negatives = "shuffled" (one negative per positive, from an independent draw) and MINE's
``ema_from_zero``: BMI's MINE in mibench's terms (benchmark-mi's ``mine_training``)."""

import math

import pytest
import torch

from conftest import gen
from mibench import bounds as B
from mibench.distributions import build_task
from mibench.estimators import EstimatorSpec, build_estimator
from mibench.finite import FiniteSample, evaluate_sample, standardize_together
from mibench.interface import ConfigError
from mibench.runspec import RunSpec
from mibench.train import draw_batch, fit

MINE_BMI = {"bound": "mine", "critic": "joint", "hidden": [16, 8], "negatives": "shuffled", "ema_rate": 0.1,
            "ema_from_zero": 1}


def test_a_training_batch_appends_an_independent_draw_of_y():
    """x, y of the batch, then the y of a second draw from the same generator; row i's negative
    is item i of that second draw."""
    task = build_task("gaussian", {"dim": 3, "mi": 1.0})
    x, y, cols = draw_batch(task, 16, 1, gen(4), torch.device("cpu"), shuffled=True)
    g = gen(4)
    x1, y1 = task.sample(16, generator=g)
    _, y2 = task.sample(16, generator=g)
    assert torch.equal(x, x1) and torch.equal(y, torch.cat([y1, y2]))
    assert torch.equal(cols, torch.stack([torch.arange(16), torch.arange(16, 32)], dim=1))
    # Without shuffled: the batch alone and the in-batch candidates, as before.
    x, y, cols = draw_batch(task, 16, 15, gen(4), torch.device("cpu"))
    assert torch.equal(y, y1) and cols.shape == (16, 16)


def test_evaluation_pairs_x_with_a_random_permutation_of_the_batch():
    """The estimate is DV on scores [f(x_i, y_i), f(x_i, y_pi(i))], pi = randperm(B) from the
    evaluation's generator: BMI's MINE on its test half."""
    est = build_estimator(MINE_BMI, (3,), (3,), seed=0)
    x, y = build_task("gaussian", {"dim": 3, "mi": 1.0}).sample(64, generator=gen(1))
    got = est.estimate(x, y, 1, gen(7))
    perm = torch.randperm(64, generator=gen(7))
    cols = torch.stack([torch.arange(64), perm], dim=1)
    with torch.no_grad():
        scores, _ = est.scores_at(x, y, cols)
    assert got == pytest.approx(B.dv(scores).item(), abs=1e-6)
    assert got != pytest.approx(est.estimate(x, y, 1, gen(8)).item(), abs=1e-6)      # the draw matters


@pytest.mark.parametrize("from_zero", [0, 1])
def test_mine_moving_average_start(from_zero):
    """The gradient of MINE's negative term is (gradient of mean e^f) / average. Starting from
    zero without a bias correction (BMI), the first step's average is ema_rate times the batch's
    mean, so that gradient is 1 / ema_rate times the plain log-mean-exp gradient; starting at the
    first batch's mean, it is the plain one. The second step follows the same recursion."""
    r = 0.1
    bound = B.MINE(ema_rate=r, ema_from_zero=from_zero)
    first = {}
    for step, seed in enumerate((0, 1)):
        scores = torch.randn(32, 9, generator=gen(seed)).requires_grad_()
        bound.loss(scores).backward()
        neg = scores.detach()[:, 1:]
        log_m = torch.logsumexp(neg.flatten(), 0) - math.log(neg.numel())
        plain = torch.softmax(neg.flatten(), 0).reshape(neg.shape)       # d log-mean-exp / d neg
        if step == 0:
            log_ema = log_m + math.log(r) if from_zero else log_m
            first["log_ema"] = log_ema
        else:
            log_ema = torch.logaddexp(first["log_ema"] + math.log1p(-r), log_m + math.log(r))
        factor = torch.exp(log_m - log_ema)
        assert bound.log_ema.item() == pytest.approx(log_ema.item(), abs=1e-6)
        assert torch.allclose(scores.grad[:, 1:], factor * plain, atol=1e-7)
        assert torch.allclose(scores.grad[:, 0], torch.full((32,), -1 / 32))
    if from_zero:
        assert factor.item() > 1.5                   # still well above the plain gradient at step 2


def test_spec_rules_and_run_identity():
    """"shuffled" has its own run id (not K = 1's); ema_from_zero at its default stays out of the
    spec's table and of run ids (MINE's ids recorded before it hold); the sampling is refused where
    it has no meaning."""
    def run_id(est: dict) -> str:
        return RunSpec(preset="p", grids=("g",), family="gaussian", task_params=(("dim", 3), ("mi", 1.0)),
                       estimator=EstimatorSpec.from_dict(est), device="cpu", seed=0, batch_size=64, steps=10,
                       lr=1e-3).run_id

    assert run_id({**MINE_BMI, "negatives": 1}) != run_id(MINE_BMI)
    plain = {"bound": "mine", "ema_rate": 0.1}
    assert "ema_from_zero" not in EstimatorSpec.from_dict(plain).to_dict()
    assert run_id(plain) == run_id({**plain, "ema_from_zero": 0})
    assert run_id(plain) != run_id({**plain, "ema_from_zero": 1})
    with pytest.raises(ConfigError, match="ema_from_zero must be 0 or 1"):
        EstimatorSpec.from_dict({**plain, "ema_from_zero": 0.5})
    with pytest.raises(ConfigError, match="negatives = 'shuffled' needs a critic's scores"):
        EstimatorSpec.from_dict({"bound": "ba", "negatives": "shuffled"})
    with pytest.raises(ConfigError, match="negatives = 'shuffled' is mibench's own sampling"):
        EstimatorSpec.from_dict({"bound": "infonce", "negatives": "shuffled", "library": "torch-mist"})


def test_bmi_mine_trains_close_to_the_truth():
    """BMI's MINE (shuffled negatives, moving average from zero, joint (16, 8) critic, Adam at
    0.1, batches of 256 from a fixed training half of 2,500) on multinormal-dense-5-5-0.5
    (I = 0.593 nats), 1,500 steps, estimated on the held-out half of 2,500 with one permutation:
    within 0.15 nats of the truth (measured: 0.520)."""
    task = build_task("bmi_multinormal_dense", {"dim_x": 5, "dim_y": 5, "off_diag": 0.5})
    train = FiniteSample(task, 2500, gen(0), draw="independent")
    test = FiniteSample(task, 2500, gen(1))
    standardize_together(train, test)
    est = build_estimator(MINE_BMI, (5,), (5,), seed=0)
    fit(est, train, steps=1500, batch_size=256, lr=0.1, n_negatives=1, generator=gen(2), log_every=500)
    value, _ = evaluate_sample(est, test, batch_size=2500, n_negatives=1, generator=gen(3))
    assert value == pytest.approx(task.ground_truth().mi, abs=0.15)


def test_the_command_line_takes_shuffled_as_a_negatives_axis(tmp_path, capsys):
    """`--negatives shuffled,all` plans both samplings; a misspelt value is argparse's one line."""
    from mibench.cli import main

    assert main(["run", "--task", "gaussian", "--bounds", "mine", "--negatives", "shuffled,all", "--seeds", "0",
                 "--dry-run", "--out", str(tmp_path / "out")]) == 0
    assert "20 runs planned" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["run", "--task", "gaussian", "--negatives", "shufled", "--dry-run", "--out", str(tmp_path / "o2")])
    assert stop.value.code == 2 and "expected a comma-separated list, got 'shufled'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "o2").exists()
