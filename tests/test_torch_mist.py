"""torch-mist's estimators behind mibench's loop (mibench/libraries/torch_mist.py).

Runs only where torch-mist is installed (pip install 'mibench[torch-mist]').
"""

import math

import pytest
import torch

pytest.importorskip("torch_mist")

from conftest import TINY_HEAD, gen

from mibench.distributions import TASK_FAMILIES
from mibench.estimators import EstimatorSpec, estimator_for
from mibench.executors import sweep
from mibench.libraries import LibraryError
from mibench.libraries.torch_mist import NAMES
from mibench.nets import candidate_indices
from mibench.train import evaluate, fit


@pytest.fixture(scope="module")
def task():
    return TASK_FAMILIES["gaussian"].build({"dim": 2, "mi": 0.5})


def spec(bound="infonce", library="torch-mist", **kw):
    kw = {"hidden": (16,), "critic_dim": 8, **kw}
    return EstimatorSpec(bound=bound, library=library, **kw)


@pytest.mark.parametrize("critic", ["separable", "joint"])
@pytest.mark.parametrize("negatives", ["all", 5])
@pytest.mark.parametrize("name", NAMES)
def test_each_name_trains_and_estimates(task, name, critic, negatives):
    est = estimator_for(spec(name, critic=critic, negatives=negatives), task, seed=0)
    g = gen(0)
    x, y = task.sample(32, generator=g)
    k = 31 if negatives == "all" else negatives
    cols = candidate_indices(32, k, g, x.device)
    loss, value = est(x, y, cols, with_value=True)
    assert loss.shape == () and value.shape == () and not value.requires_grad
    assert torch.isfinite(loss) and torch.isfinite(value)
    assert est(x, y, cols).shape == ()
    loss.backward()
    assert all(p.grad is not None for p in est.parameters())
    # the held-out estimate, also at another batch size than training's
    for b in (32, 48):
        x, y = task.sample(b, generator=g)
        e = est.estimate(x, y, b - 1 if negatives == "all" else k, g)
        assert e.shape == () and torch.isfinite(e)


def test_negatives_map_to_torch_mists_setting(task):
    g = gen(1)
    for name, all_setting in (("infonce", 0), ("nwj", -1), ("smile", -1)):
        est = estimator_for(spec(name), task, seed=0)
        x, y = task.sample(20, generator=g)
        est(x, y, candidate_indices(20, 19, g, x.device))
        assert est.mist.neg_samples == all_setting          # K = B - 1
        est(x, y, candidate_indices(20, 7, g, x.device))
        assert est.mist.neg_samples == 7


def test_estimate_draws_the_candidates_mibench_draws(task):
    """The held-out generator advances as in a mibench run, so later batches are the same."""
    mib = estimator_for(spec(library="mibench", negatives=5), task, seed=0)
    tm = estimator_for(spec(negatives=5), task, seed=0)
    g1, g2 = gen(2), gen(2)
    for _ in range(3):
        mib.estimate(*task.sample(16, generator=g1), 5, g1)
        tm.estimate(*task.sample(16, generator=g2), 5, g2)
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))


def test_same_seed_same_initial_parameters(task):
    for name in NAMES:
        for critic in ("separable", "joint"):
            a = estimator_for(spec(name, critic=critic), task, seed=3).state_dict()
            b = estimator_for(spec(name, critic=critic), task, seed=3).state_dict()
            c = estimator_for(spec(name, critic=critic), task, seed=4).state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
            assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
    # building under a seed leaves the global RNG alone
    torch.manual_seed(0)
    first = torch.rand(3)
    torch.manual_seed(0)
    estimator_for(spec(), task, seed=5)
    assert torch.equal(torch.rand(3), first)


def test_separable_critic_is_mibenchs_with_the_same_initial_weights(task):
    mib = estimator_for(spec(library="mibench"), task, seed=7)
    tm = estimator_for(spec(), task, seed=7)
    a, b = list(mib.critic.parameters()), list(tm.parameters())
    assert [p.shape for p in a] == [p.shape for p in b]
    assert all(torch.equal(p, q) for p, q in zip(a, b))


@pytest.mark.parametrize("name", NAMES)
def test_values_match_mibench_on_one_batch(task, name):
    """Separable critic, all negatives, equal weights: the estimates agree; so do the losses
    except JS/SMILE (torch-mist counts the positive among the B negatives of its JS loss) and
    MINE (a constant apart)."""
    mib = estimator_for(spec(name, library="mibench"), task, seed=1)
    tm = estimator_for(spec(name), task, seed=1)
    g = gen(3)
    x, y = task.sample(24, generator=g)
    cols = candidate_indices(24, 23, g, x.device)
    lm, vm = mib(x, y, cols, with_value=True)
    lt, vt = tm(x, y, cols, with_value=True)
    assert vt.item() == pytest.approx(vm.item(), abs=1e-5)
    if name in ("infonce", "nwj"):
        assert lt.item() == pytest.approx(lm.item(), abs=1e-5)
    if name in ("js", "smile"):
        s = mib.critic.g(x) @ mib.critic.h(y).T
        with_diagonal = torch.nn.functional.softplus(-s.diag()).mean() + torch.nn.functional.softplus(s).mean()
        assert lt.item() == pytest.approx(with_diagonal.item(), abs=1e-5)
        assert lt.item() != pytest.approx(lm.item(), abs=1e-5)


def test_no_stale_results_from_torch_mists_memo(task):
    """torch-mist memoises on the input values; the same batch after an update must be
    scored with the new parameters, and its graph must be a new one."""
    est = estimator_for(spec("smile"), task, seed=0)
    opt = torch.optim.SGD(est.parameters(), lr=0.5)
    g = gen(4)
    x, y = task.sample(32, generator=g)
    cols = candidate_indices(32, 31, g, x.device)
    losses, values = [], []
    for _ in range(2):
        loss, value = est(x, y, cols, with_value=True)
        opt.zero_grad()
        loss.backward()                     # would fail on a graph freed by the first backward
        opt.step()
        losses.append(loss.item())
        values.append(value.item())
    assert losses[0] != losses[1] and values[0] != values[1]
    # an estimate after training equals a fresh copy's estimate with the same weights
    fresh = estimator_for(spec("smile"), task, seed=0)
    fresh.load_state_dict(est.state_dict())
    assert est.estimate(x, y, 31).item() == pytest.approx(fresh.estimate(x, y, 31).item(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["infonce", "smile"])
def test_short_fit_moves_the_estimate_toward_the_truth(task, name):
    est = estimator_for(spec(name, hidden=(32,), critic_dim=16), task, seed=0)
    truth = task.ground_truth().mi                        # 0.5 nats
    before, _ = evaluate(est, task.heldout(), batches=20, batch_size=64, n_negatives=63, generator=gen(10))
    result = fit(est, task, steps=300, batch_size=64, lr=5e-3, n_negatives=63, generator=gen(0), log_every=50)
    after, _ = evaluate(est, task.heldout(), batches=20, batch_size=64, n_negatives=63, generator=gen(10))
    assert len(result.trace) == 7 and result.steps == 300
    assert abs(after - truth) < 0.15 and abs(after - truth) < abs(before - truth) - 0.2


def test_fit_is_reproducible_per_seed(task):
    def run(seed):
        est = estimator_for(spec("mine"), task, seed=seed)
        fit(est, task, steps=15, batch_size=16, lr=1e-2, n_negatives=15, generator=gen(seed), log_every=5)
        return est.estimate(*task.sample(16, generator=gen(9)), 15, gen(9)).item()

    assert run(0) == run(0) and run(0) != run(1)


@pytest.mark.parametrize("kw, message", [
    ({"bound": "dv"}, "supported: infonce, nwj, js, mine, smile"),
    ({"bound": "alpha_tuba"}, "supported: infonce, nwj, js, mine, smile"),
    ({"encoder": "mlp"}, "encoder = 'identity' only"),
    ({"critic": "bilinear"}, "supported: separable, joint"),
    ({"critic": "joint", "hidden": ()}, "at least one hidden layer"),
])
def test_unsupported_specs_raise_library_errors(task, kw, message):
    with pytest.raises(LibraryError, match=message):
        estimator_for(spec(**{"bound": "infonce", **kw}), task, seed=0)


def test_a_sweep_runs_torch_mist_beside_mibench(tmp_path):
    path = tmp_path / "tm.toml"
    path.write_text(TINY_HEAD.format(steps=20) + """
[[grid]]
name = "mibench"
bounds = ["smile"]

[[grid]]
name = "torch-mist"
library = "torch-mist"
bounds = ["smile"]
""")
    df = sweep(str(path), out=tmp_path / "out", progress=False)
    assert len(df) == 2 and (df["status"] == "ok").all(), df["error"].tolist()
    by = df.set_index("grid")
    assert by.loc["torch-mist", "library"] == "torch-mist"
    assert all(math.isfinite(v) for v in df["mi_estimate"])
    assert by.loc["torch-mist", "n_negatives"] == by.loc["mibench", "n_negatives"] == 31


@pytest.mark.parametrize("name", NAMES)
def test_the_adapter_meets_the_library_contract(name):
    from mibench.testing import check_library

    check_library("torch-mist", bound=name)
