"""Contract tests over every registry entry, spec validation, and short training runs."""

import math

import pytest
import torch

from conftest import gen
from mibench.bounds import BOUNDS
from mibench.distributions import CorrelatedGaussian
from mibench.estimators import EstimatorSpec, build_estimator
from mibench.interface import ConfigError
from mibench.nets import CRITICS, ENCODERS, candidate_indices
from mibench.train import evaluate, fit

TASK = CorrelatedGaussian(3, mi=0.5)
CASES = [(b, c) for b in BOUNDS for c in CRITICS if not BOUNDS[b].generative or c == "separable"]


def row_constant(est) -> set[str]:
    """Parameters whose gradient is zero up to rounding for the bound: InfoNCE normalises each
    row and FLO sees only f(x, y'_k) - f(x, y), so both ignore a constant added to a row (the
    joint critic's output bias; the last bias of a separable critic's y side, which adds
    g(x_i) . b to row i); DV ignores a constant added to every score (the joint critic's output
    bias), and so does MINE on its first step, where its moving average starts at the batch's
    own E_q[e^f]. Whether rounding leaves such a gradient at exactly 0 depends on the draw."""
    names = [n for n, _ in est.critic.named_parameters() if n.endswith("bias")]
    prefixes = {"infonce": ("rest.", "h."), "flo": ("rest.", "h."), "dv": ("rest.",),
                "mine": ("rest.",)}.get(est.bound.name)
    if not prefixes:
        return set()
    return {f"critic.{n}" for n in [n for n in names if n.startswith(prefixes)][-1:]}


@pytest.mark.parametrize("bound,critic", CASES, ids=[f"{b}-{c}" for b, c in CASES])
def test_contract(bound, critic):
    """Shapes, finite values, and gradients reaching every trainable parameter."""
    generative = BOUNDS[bound].generative
    spec = {"bound": bound, "critic": critic, "hidden": [16], "negatives": 7,
            "encoder": "identity" if generative else "mlp", "encoder_hidden": [8], "embed_dim": 4}
    est = build_estimator(spec, (3,), (3,), entropy_y=TASK.entropy_y())
    x, y = TASK.sample(32, generator=gen(0))
    scores, aux = est.scores(x, y, 7, gen(1))
    assert scores.shape == (32, 8)
    assert (aux is None) == (BOUNDS[bound].aux_head(3, 3, (4,)) is None) and (aux is None or aux.shape == (32,))
    loss = est.bound.loss(scores, aux)
    value = est.bound.estimate(scores, aux)
    assert loss.shape == value.shape == () and torch.isfinite(loss) and torch.isfinite(value)
    loss.backward()
    params = dict(est.named_parameters())
    assert params, "estimator has no parameters"
    assert all(p.grad is not None for p in params.values())
    missing = [n for n, p in params.items() if not torch.any(p.grad != 0) and n not in row_constant(est)]
    assert not missing, f"no gradient reached {missing}"
    if not generative:
        assert any(n.startswith("encoder_x") for n in params)


@pytest.mark.parametrize("encoder", list(ENCODERS))
def test_encoders_map_images_to_features(encoder):
    spec = {"bound": "infonce", "critic": "separable", "encoder": encoder, "shared": True, "embed_dim": 16}
    est = build_estimator(spec, (1, 28, 28), (1, 28, 28))
    assert est.encoder_x is est.encoder_y
    x = torch.rand(8, 1, 28, 28, generator=gen(0))
    scores, _ = est.scores(x, x, 7)
    assert scores.shape == (8, 8)


def test_seed_conv_encoder_layout():
    est = build_estimator({"bound": "smile", "critic": "joint", "hidden": [64, 32], "encoder": "conv",
                           "embed_dim": 16, "shared": True}, (1, 28, 28), (1, 28, 28))
    convs = [m for m in est.encoder_x if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (1, 16, (3, 3), (1, 1)), (16, 32, (5, 5), (3, 3)), (32, 128, (8, 8), (1, 1))]
    assert est.encoder_x[-1].out_features == 16


def test_negatives_never_include_the_positive():
    for k in (1, 5, 63):
        cols = candidate_indices(64, k, gen(k), torch.device("cpu"))
        assert torch.equal(cols[:, 0], torch.arange(64))
        assert not (cols[:, 1:] == torch.arange(64)[:, None]).any()
        assert all(len(set(row.tolist())) == k + 1 for row in cols)


def test_negatives_spec():
    assert EstimatorSpec(negatives="all").n_negatives(128) == 127
    assert EstimatorSpec(negatives=32).n_negatives(128) == 32
    with pytest.raises(ConfigError, match="needs a batch of at least 129"):
        EstimatorSpec(negatives=128).n_negatives(128)
    assert EstimatorSpec(negatives="shuffled").n_negatives(128) == 1
    for bad in (0, -1, "some", 2.5, True):
        with pytest.raises(ConfigError, match="negatives must be a positive integer, 'all' or 'shuffled'"):
            EstimatorSpec(negatives=bad)


@pytest.mark.parametrize("spec,match", [
    ({"bound": "infonse"}, "unknown bound 'infonse'; did you mean 'infonce'"),
    ({"critic": "jointt"}, "unknown critic 'jointt'; did you mean 'joint'"),
    ({"encoder": "cnn"}, "unknown encoder 'cnn'"),
    ({"hiden": [64]}, "unknown key 'hiden'; allowed: alpha, bound, critic"),
    ({"hidden": 64}, "hidden must be a list of positive integers"),
    ({"bound": "smile", "tau": -1.0}, r"smile: tau must be > 0 \(inf allowed\), got -1.0"),
    ({"bound": "smile", "tau": "5"}, "smile: tau must be > 0"),
    ({"bound": "alpha_infonce", "alpha": 1.5}, r"alpha_infonce: alpha must be in \[0, 1\], got 1.5"),
    ({"bound": "mine", "ema_rate": 0.0}, r"mine: ema_rate must be in \(0, 1\]"),
])
def test_bad_specs_are_named(spec, match):
    with pytest.raises(ConfigError, match=match):
        EstimatorSpec.from_dict(spec)


def test_generative_bound_needs_raw_y_and_ba_needs_entropy():
    with pytest.raises(ConfigError, match="use encoder = 'identity'"):
        build_estimator({"bound": "club", "encoder": "mlp"}, (3,), (3,))
    with pytest.raises(ConfigError, match="ba needs the entropy of y"):
        build_estimator({"bound": "ba"}, (3,), (3,))


# ----------------------------------------------------------------------------- training

TRAIN_TASK = CorrelatedGaussian(5, mi=1.0)
LOWER = [b for b, cls in BOUNDS.items() if cls.kind == "lower"]


def train(bound, steps=500, critic="separable"):
    torch.manual_seed(0)
    g = gen(0)
    est = build_estimator({"bound": bound, "critic": critic, "hidden": [64]}, (5,), (5,),
                          entropy_y=TRAIN_TASK.entropy_y())
    fit(est, TRAIN_TASK, steps=steps, batch_size=128, lr=1e-3, n_negatives=127, generator=g)
    return evaluate(est, TRAIN_TASK, batches=20, batch_size=128, n_negatives=127, generator=gen(99))[0]


# FLO learns a second network u(x, y) that chases the critic; it needs twice the steps.
STEPS = {"flo": 1000}


@pytest.mark.slow
@pytest.mark.parametrize("bound", LOWER)
def test_lower_bound_trains_close_to_truth(bound):
    """d = 5, I = 1 nat, 500 steps of batch 128 (about 2 s): held-out estimate within 0.15 nats."""
    value = train(bound, steps=STEPS.get(bound, 500))
    assert value == pytest.approx(TRAIN_TASK.mi, abs=0.15)


@pytest.mark.slow
def test_upper_bounds_stay_above_truth_after_training():
    assert train("club") > TRAIN_TASK.mi
    assert train("l1out") == pytest.approx(TRAIN_TASK.mi, abs=0.15)


def test_training_is_deterministic_for_a_seed():
    assert train("smile", steps=50) == train("smile", steps=50)


def test_fit_reports_throughput_and_trace():
    est = build_estimator({"bound": "infonce", "hidden": [16]}, (5,), (5,))
    res = fit(est, TRAIN_TASK, steps=30, batch_size=32, lr=1e-3, n_negatives=31, generator=gen(0),
              log_every=10, warmup=5)
    assert [s for s, _, _ in res.trace] == [0, 10, 20, 29]
    assert all(math.isfinite(v) and t == TRAIN_TASK.mi for _, v, t in res.trace)
    assert res.pairs_per_s == pytest.approx(32 * res.steps_per_s) and res.steps_per_s > 0


@pytest.mark.parametrize("k", [2, 9])   # the gather path (K + 1 <= B / 2) and the broadcast path
def test_joint_critic_scores_each_candidate_pair(k):
    from mibench.nets import JointCritic

    torch.manual_seed(0)
    critic = JointCritic(5, 5, [16, 8])
    x, y = torch.randn(10, 5), torch.randn(10, 5)
    cols = candidate_indices(10, k, gen(1), torch.device("cpu"))
    expected = torch.stack([critic.rest(critic.in_x(x[i]) + critic.in_y(y[cols[i]])).squeeze(-1)
                            for i in range(10)])
    assert torch.allclose(critic(x, y, cols), expected, atol=1e-6)


def _seeded(spec, seed, shape=(5,)):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_estimator(spec, shape, shape, entropy_y=TRAIN_TASK.entropy_y())


@pytest.mark.parametrize("spec", [
    {"bound": "smile", "critic": "separable", "hidden": [32]},
    {"bound": "flo", "critic": "joint", "hidden": [16], "encoder": "mlp", "embed_dim": 4, "shared": True},
    {"bound": "tuba", "critic": "bilinear"},
])
def test_batched_training_matches_training_each_model_alone(spec):
    """vmap over stacked parameters: same batches, same updates, up to rounding that training
    amplifies a little: estimates within 2e-3 nats after 40 steps; weights within 10 Adam steps
    (Adam's normalised step turns rounding on a near-zero gradient into a step of size lr)."""
    from mibench.train import fit_batched

    kw = dict(steps=40, batch_size=32, lr=1e-3, n_negatives=15, log_every=10)
    alone = []
    for seed in (0, 1, 2):
        est = _seeded(spec, seed)
        alone.append((est, fit(est, TRAIN_TASK, generator=gen(seed), **kw)))
    together = [_seeded(spec, seed) for seed in (0, 1, 2)]
    results = fit_batched(together, TRAIN_TASK, generators=[gen(s) for s in (0, 1, 2)], **kw)
    for (est, res), est_b, res_b in zip(alone, together, results):
        assert [s for s, _, _ in res_b.trace] == [s for s, _, _ in res.trace]
        assert [v for _, v, _ in res_b.trace] == pytest.approx([v for _, v, _ in res.trace], abs=2e-3)
        for (name, p), p_b in zip(est.named_parameters(), est_b.parameters()):
            assert torch.allclose(p, p_b, atol=10 * kw["lr"]), name
    assert results[0].pairs_per_s == pytest.approx(3 * 32 * results[0].steps_per_s)


def test_mine_cannot_be_batched():
    from mibench.interface import ConfigError
    from mibench.train import fit_batched

    with pytest.raises(ConfigError, match="mine"):
        fit_batched([_seeded({"bound": "mine"}, 0)], TRAIN_TASK, steps=1, batch_size=8, lr=1e-3,
                    n_negatives=3, generators=[gen(0)])


@pytest.mark.slow
def test_bf16_forward_trains_close_to_truth_with_a_float32_bound():
    """precision="bf16": the critic really runs in bfloat16 under autocast, the scores reach the
    bound as float32, and SMILE still lands within 0.15 nats of I = 1 after 500 steps."""
    torch.manual_seed(0)
    est = build_estimator({"bound": "smile", "critic": "joint", "hidden": [64]}, (5,), (5,))
    seen = []
    est.critic.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    fit(est, TRAIN_TASK, steps=500, batch_size=128, lr=1e-3, n_negatives=127, generator=gen(0),
        precision="bf16")
    assert set(seen) == {torch.bfloat16}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        scores, _ = est.scores(*TRAIN_TASK.sample(8, generator=gen(1)), 7, gen(1))
    assert scores.dtype == torch.float32
    seen.clear()
    value = evaluate(est, TRAIN_TASK, batches=20, batch_size=128, n_negatives=127, generator=gen(99))[0]
    assert set(seen) == {torch.float32}                    # held-out evaluation stays float32
    assert value == pytest.approx(TRAIN_TASK.mi, abs=0.15)


def test_bf16_forward_under_batched_seeds():
    from mibench.train import fit_batched

    spec = {"bound": "smile", "critic": "joint", "hidden": [16]}
    ests = [_seeded(spec, s) for s in (0, 1)]
    results = fit_batched(ests, TRAIN_TASK, steps=20, batch_size=32, lr=1e-3, n_negatives=7,
                          generators=[gen(0), gen(1)], log_every=10, precision="bf16")
    assert all(math.isfinite(v) for r in results for _, v, _ in r.trace)
    assert not torch.equal(ests[0].critic.in_x.weight, _seeded(spec, 0).critic.in_x.weight)


def test_unknown_precision_is_named():
    est = build_estimator({"bound": "smile"}, (5,), (5,))
    with pytest.raises(ConfigError, match="precision must be one of fp32, bf16, got 'fp16'"):
        fit(est, TRAIN_TASK, steps=1, batch_size=8, lr=1e-3, n_negatives=7, generator=gen(0),
            precision="fp16")


def test_fused_adam_matches_torch_adam_bit_for_bit():
    """make_optimizer's FusedAdam is torch.optim.Adam(fused=True) without the bookkeeping: the
    same parameters after 30 steps, exactly, including a parameter that gets no gradient."""
    from mibench.train import FusedAdam

    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1),
                                torch.nn.Linear(3, 3)) for _ in range(2)]      # the last one is unused
    nets[1].load_state_dict(nets[0].state_dict())
    start = nets[0][0].weight.detach().clone()
    opts = [torch.optim.Adam(nets[0].parameters(), lr=1e-2, fused=True), FusedAdam(nets[1].parameters(), lr=1e-2)]
    for _ in range(30):
        x = torch.randn(32, 5)
        for net, opt in zip(nets, opts):
            opt.zero_grad(set_to_none=True)
            net[:3](x).pow(2).mean().backward()
            opt.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        assert torch.equal(a, b)
    assert not torch.equal(nets[0][0].weight, start)                   # it did train


def test_bound_options_of_other_bounds_are_dropped_from_a_spec():
    """One [estimator] table serves a grid over bounds: tau reaches SMILE only."""
    smile = EstimatorSpec.from_dict({"bound": "smile", "tau": 2.0, "alpha": 0.3})
    infonce = EstimatorSpec.from_dict({"bound": "infonce", "tau": 2.0, "alpha": 0.3})
    assert dict(smile.options) == {"tau": 2.0} and infonce.options == ()
    assert EstimatorSpec.from_dict(smile.to_dict()) == smile
    assert build_estimator(smile, (3,), (3,)).bound.tau == 2.0


def test_fused_adam_falls_back_to_torch_optim_when_the_kernel_call_fails(monkeypatch):
    """A newer torch may change the private kernel: the update continues as
    torch.optim.Adam(fused=True) from the state so far, with the same result."""
    import mibench.train as T

    torch.manual_seed(0)
    nets = [torch.nn.Linear(5, 3) for _ in range(2)]
    nets[1].load_state_dict(nets[0].state_dict())
    opts = [torch.optim.Adam(nets[0].parameters(), lr=1e-2, fused=True), T.FusedAdam(nets[1].parameters(), lr=1e-2)]
    for step in range(10):
        if step == 4:
            def changed(*args, **kwargs):
                raise TypeError("_fused_adam_() got an unexpected keyword argument 'beta1'")
            monkeypatch.setattr(T, "_FUSED_ADAM", changed)
        x = torch.randn(8, 5)
        for net, opt in zip(nets, opts):
            opt.zero_grad(set_to_none=True)
            net(x).pow(2).mean().backward()
            opt.step()
    assert opts[1]._fallback is not None
    assert all(torch.equal(a, b) for a, b in zip(nets[0].parameters(), nets[1].parameters()))


def test_all_negatives_indices_are_made_once_and_never_written():
    """K = B - 1 needs no randomness: the (B, B) indices are cached per size and device, so they
    must be the cyclic shifts every time, and training through them must leave them so."""
    batch = 48
    want = (torch.arange(batch)[:, None] + torch.arange(batch)[None, :]) % batch
    cols = candidate_indices(batch, batch - 1, None, torch.device("cpu"))
    assert torch.equal(cols, want) and candidate_indices(batch, batch - 1, gen(3), "cpu") is cols
    for bound, critic in (("infonce", "joint"), ("nwj", "separable"), ("smile", "bilinear"), ("mine", "joint")):
        est = build_estimator({"bound": bound, "critic": critic, "hidden": [8]}, (3,), (3,), seed=0)
        x, y = torch.randn(batch, 3), torch.randn(batch, 3)
        est.loss(x, y, batch - 1).backward()
        est.estimate(x, y, batch - 1)
    assert torch.equal(candidate_indices(batch, batch - 1, None, torch.device("cpu")), want)


def test_init_concat_draws_the_joint_first_layer_as_one_layer_on_x_and_y():
    """init = "concat": W_x, W_y and the bias from U(+-1/sqrt(dx + dy)) (one Linear on [x, y], BMI's
    critic), the later layers as by default; the default init draws W_x with 1/sqrt(dx). At its
    default the field stays out of the spec's table (run ids recorded before it hold); it is
    refused where there is no joint first layer."""
    concat = build_estimator({"bound": "infonce", "critic": "joint", "hidden": [16, 8], "init": "concat"},
                             (5,), (25,), seed=0).critic
    default = build_estimator({"bound": "infonce", "critic": "joint", "hidden": [16, 8]}, (5,), (25,), seed=0).critic
    bound = 1 / math.sqrt(30)
    for t in (concat.in_x.weight, concat.in_y.weight, concat.in_x.bias):
        assert t.abs().max() <= bound and t.abs().max() > 0.8 * bound
    assert default.in_x.weight.abs().max() > 2 * bound            # 1/sqrt(5) = 0.447
    for a, b in zip(concat.rest.parameters(), default.rest.parameters()):
        assert torch.equal(a, b)
    assert "init" not in EstimatorSpec.from_dict({"bound": "infonce"}).to_dict()
    assert EstimatorSpec.from_dict({"bound": "infonce", "critic": "joint", "init": "concat"}).to_dict()["init"] == "concat"
    with pytest.raises(ConfigError, match="init must be one of default, concat"):
        EstimatorSpec(init="bmi")
    with pytest.raises(ConfigError, match="init = 'concat' draws the joint critic's first layer"):
        EstimatorSpec(critic="separable", init="concat")


def test_seeded_builds_in_concurrent_threads_draw_what_they_draw_alone():
    """build_estimator(seed=s) seeds torch's global RNG (under a fork): builds racing in threads
    of one process (an executor of threads) must not draw from each other's seed."""
    import threading

    spec = {"bound": "infonce", "critic": "joint", "hidden": [64, 64]}
    alone = {s: build_estimator(spec, (5,), (5,), seed=s).state_dict() for s in range(8)}
    built = {}

    def build(s):
        for _ in range(20):
            built.setdefault(s, []).append(build_estimator(spec, (5,), (5,), seed=s).state_dict())

    threads = [threading.Thread(target=build, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for s, states in built.items():
        for state in states:
            assert all(torch.equal(state[k], alone[s][k]) for k in state), f"seed {s} drew another seed's numbers"
