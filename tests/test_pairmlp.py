"""The fused pair-MLP kernel of the joint critic (mibench.pairmlp) against the torch ops it
replaces: scores and every gradient, the fallbacks, and training with it."""

import logging

import pytest
import torch
from torch import nn

import mibench.nets
import mibench.pairmlp as pairmlp
from conftest import gen
from mibench.distributions import CorrelatedGaussian
from mibench.estimators import build_estimator
from mibench.nets import JointCritic, candidate_indices, mlp
from mibench.pairmlp import kernel_pays, kernel_skip_reason, pair_mlp

SHAPES = [(16, 8), (10, 5), (32,), (16, 8, 4)]
SIZES = [7, 64, 256]


def torch_pairs(a, c, cols, weights, biases):
    """The torch-op computation the kernel replaces (JointCritic's own, layer by layer)."""
    h = torch.relu(a[:, None, :] + (c[None, :, :] if cols is None else c[cols]))
    for i, (w, b) in enumerate(zip(weights, biases)):
        h = nn.functional.linear(h, w, b)
        if i < len(weights) - 1:
            h = torch.relu(h)
    return h.squeeze(-1)


def problem(hidden, batch, k, dtype, seed=0):
    """a, c, cols (None for all pairs), weights, biases, upstream gradient: all leaves."""
    g = gen(seed)
    net = mlp([*hidden, 1])
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[-1] ** 0.5)
    layers = [m for m in net if isinstance(m, nn.Linear)]
    weights = [m.weight.detach().to(dtype).requires_grad_() for m in layers]
    biases = [m.bias.detach().to(dtype).requires_grad_() for m in layers]
    a = torch.randn(batch, hidden[0], generator=g, dtype=dtype).requires_grad_()
    c = torch.randn(batch, hidden[0], generator=g, dtype=dtype).requires_grad_()
    cols = None if k is None else candidate_indices(batch, k, g, torch.device("cpu"))
    upstream = torch.randn(batch, batch if k is None else k + 1, generator=g, dtype=dtype)
    return a, c, cols, weights, biases, upstream


def scores_and_grads(fn, a, c, cols, weights, biases, upstream):
    scores = fn(a, c, cols, weights, biases)
    return [scores.detach(), *torch.autograd.grad(scores, [a, c, *weights, *biases], upstream)]


def cast(args, dtype):
    """``problem``'s tensors in another floating dtype, as leaves."""
    a, c, cols, weights, biases, upstream = args
    to = lambda t: t.detach().to(dtype).requires_grad_(t.requires_grad)  # noqa: E731
    return to(a), to(c), cols, [to(w) for w in weights], [to(b) for b in biases], to(upstream)


@pytest.mark.parametrize("hidden", SHAPES, ids=str)
@pytest.mark.parametrize("batch", SIZES)
@pytest.mark.parametrize("k", [None, 3], ids=["all", "K3"])
def test_float64_is_the_torch_computation(hidden, batch, k):
    """In float64 the kernel and torch agree to 1e-12 relative: the same arithmetic, in another order."""
    args = problem(hidden, batch, k, torch.float64)
    for got, want in zip(scores_and_grads(pair_mlp, *args), scores_and_grads(torch_pairs, *args)):
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12 * want.abs().max().item())


@pytest.mark.parametrize("hidden", SHAPES, ids=str)
@pytest.mark.parametrize("batch", SIZES)
@pytest.mark.parametrize("k", [None, 3], ids=["all", "K3"])
def test_float32_matches_torch_to_rounding(hidden, batch, k):
    """float32 scores equal torch's to rtol 1e-5, atol 1e-6. Gradients are sums over up to 65,536
    pairs: compared with the float64 truth, the kernel's are within 1e-5 of the largest entry
    (measured: at most 2e-6; torch's own float32 ones: up to 8e-6)."""
    args = problem(hidden, batch, k, torch.float32)
    truth = scores_and_grads(torch_pairs, *cast(args, torch.float64))
    got = scores_and_grads(pair_mlp, *args)
    want = scores_and_grads(torch_pairs, *args)
    assert torch.allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    for g, t in zip(got[1:], truth[1:]):
        assert g.dtype == torch.float32
        assert torch.allclose(g.double(), t, rtol=1e-5, atol=1e-5 * t.abs().max().item())


def shifted_kernel(a, c, cols, weights, biases):
    return pair_mlp(a, c, None, weights, biases, shifted=True)


def gathered_torch(a, c, cols, weights, biases):
    """All pairs in torch ops, then the columns of K = B - 1 (row i: i, i + 1, ... mod B)."""
    return torch_pairs(a, c, None, weights, biases).gather(1, candidate_indices(len(a), len(a) - 1, None, a.device))


@pytest.mark.parametrize("hidden", SHAPES, ids=str)
@pytest.mark.parametrize("batch", SIZES)
def test_the_shifted_layout_is_the_gathered_one(hidden, batch):
    """``shifted`` writes (and reads the gradient of) row i's scores rotated by i: the positive
    in column 0, as ``candidate_indices`` orders K = B - 1. In float64 it is torch's all pairs
    gathered by those columns, scores and gradients, to 1e-12; with two threads, the same."""
    args = problem(hidden, batch, None, torch.float64)
    want = scores_and_grads(gathered_torch, *args)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        for got, w in zip(scores_and_grads(shifted_kernel, *args), want):
            assert torch.allclose(got, w, rtol=1e-12, atol=1e-12 * w.abs().max().item())
    natural = pair_mlp(*args[:5]).detach()                # the kernel's own (B, B) layout
    rows = torch.arange(batch)[:, None]
    assert torch.equal(shifted_kernel(*args[:5]).detach(), natural[rows, (rows + torch.arange(batch)) % batch])
    with pytest.raises(ValueError, match="shifted needs all pairs of equal batches"):
        pair_mlp(args[0], args[1][:-1], None, args[3], args[4], shifted=True)


def test_gradcheck():
    a, c, cols, weights, biases, _ = problem((4, 3), 5, None, torch.float64)
    assert torch.autograd.gradcheck(lambda *t: pair_mlp(t[0], t[1], None, t[2:4], t[4:]),
                                    (a, c, *weights, *biases))
    a, c, cols, weights, biases, _ = problem((4, 3), 5, 2, torch.float64)
    assert torch.autograd.gradcheck(lambda *t: pair_mlp(t[0], t[1], cols, t[2:4], t[4:]),
                                    (a, c, *weights, *biases))
    a, c, cols, weights, biases, _ = problem((4, 3), 5, None, torch.float64)
    assert torch.autograd.gradcheck(lambda *t: pair_mlp(t[0], t[1], None, t[2:4], t[4:], shifted=True),
                                    (a, c, *weights, *biases))


@pytest.mark.parametrize("k", [None, 127], ids=["all", "K127"])
def test_threads_split_the_work_and_agree(k):
    """With 2 torch threads the pairs (65,536 or 32,768) are cut in two chunks, one per thread,
    whose sums are added at the end."""
    args = problem((16, 8), 256, k, torch.float32)
    one = scores_and_grads(pair_mlp, *args)
    torch.set_num_threads(2)
    two = scores_and_grads(pair_mlp, *args)
    for x, y in zip(one, two):
        assert torch.allclose(x, y, rtol=1e-5, atol=1e-5 * x.abs().max().item())


def test_unequal_batches_and_bad_input():
    a, c, _, weights, biases, _ = problem((6, 3), 9, None, torch.float64)
    c5 = c[:5]
    assert torch.allclose(pair_mlp(a, c5, None, weights, biases), torch_pairs(a, c5, None, weights, biases))
    with pytest.raises(IndexError, match="outside 0..8"):
        pair_mlp(a, c, torch.full((9, 2), 9), weights, biases)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        pair_mlp(a, c, None, weights[:1], biases[:1])           # output width 3, not 1


def critic_and_batch(hidden, batch=64, dim=3):
    torch.manual_seed(0)
    critic = JointCritic(dim, dim, hidden)
    g = gen(1)
    return critic, torch.randn(batch, dim, generator=g), torch.randn(batch, dim, generator=g)


def count_kernel_calls(monkeypatch) -> list:
    calls = []

    def counted(*args, **kwargs):
        calls.append(1)
        return pair_mlp(*args, **kwargs)

    monkeypatch.setattr(mibench.nets, "pair_mlp", counted)
    return calls


@pytest.mark.parametrize("k", [63, 7], ids=["all", "K7"])
def test_joint_critic_uses_the_kernel_and_matches_its_torch_path(monkeypatch, k):
    critic, fx, fy = critic_and_batch((16, 8))
    cols = candidate_indices(64, k, gen(2), torch.device("cpu"))
    upstream = torch.randn(64, k + 1, generator=gen(3))

    def scores_and_grads():
        scores = critic(fx, fy, cols)
        return [scores.detach(), *torch.autograd.grad(scores, list(critic.parameters()), upstream)]

    calls = count_kernel_calls(monkeypatch)
    fused = scores_and_grads()
    assert calls
    monkeypatch.setenv(pairmlp.ENV, "0")
    plain = scores_and_grads()
    assert len(calls) == 1
    for x, y in zip(fused, plain):
        assert torch.allclose(x, y, rtol=1e-5, atol=1e-5 * y.abs().max().item())


def test_disabled_or_unsupported_takes_the_torch_path(monkeypatch, caplog):
    critic, fx, fy = critic_and_batch((16, 8))
    cols = candidate_indices(64, 63, None, torch.device("cpu"))
    calls = count_kernel_calls(monkeypatch)
    caplog.set_level(logging.INFO, logger="mibench.pairmlp")
    monkeypatch.setattr(pairmlp, "_logged", set())
    monkeypatch.setenv(pairmlp.ENV, "0")
    critic(fx, fy, cols)
    critic(fx, fy, cols)
    assert [r.getMessage() for r in caplog.records] == [f"joint critic: plain torch path: {pairmlp.ENV}=0"]
    monkeypatch.delenv(pairmlp.ENV)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert critic(fx, fy, cols).dtype == torch.bfloat16         # autocast: torch ops in bfloat16
    critic.double()(fx.double(), fy.double(), cols)                # float64 is supported
    assert len(calls) == 1
    wide = JointCritic(3, 3, (256, 256))                           # too much compute per pair
    assert not wide.fused[True] and not kernel_pays((64, 32), False) and kernel_pays((16, 8), False)
    wide(fx, fy, cols)
    assert len(calls) == 1
    a = torch.zeros(4, 2, dtype=torch.float16)
    assert "dtype" in kernel_skip_reason(a, a, [])


def test_a_failed_build_falls_back_once(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(pairmlp, "_lib", [])
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    monkeypatch.setenv("CXX", "no-such-compiler")
    critic, fx, fy = critic_and_batch((16, 8))
    cols = candidate_indices(64, 63, None, torch.device("cpu"))
    calls = count_kernel_calls(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="mibench.pairmlp"):
        got = critic(fx, fy, cols)
        critic(fx, fy, cols)
    assert [r.getMessage() for r in caplog.records] == [
        "joint critic: the pair-MLP kernel could not be built (no C++ compiler ('no-such-compiler' not "
        "found)); using torch ops"]
    assert not calls
    monkeypatch.setenv(pairmlp.ENV, "0")
    assert torch.equal(got, critic(fx, fy, cols))


def test_batched_training_takes_the_torch_path_under_vmap(monkeypatch):
    """fit_batched maps the step over stacked models with vmap: the kernel cannot see batched
    tensors, so the critic computes with torch ops there, and the models train as they do alone."""
    from mibench.train import fit, fit_batched

    spec = {"bound": "infonce", "critic": "joint", "hidden": [16, 8]}
    task = CorrelatedGaussian(2, mi=0.5)
    kw = dict(steps=20, batch_size=32, lr=1e-3, n_negatives=31, log_every=5)
    calls = count_kernel_calls(monkeypatch)
    together = [build_estimator(spec, (2,), (2,), seed=s) for s in (0, 1)]
    batched = fit_batched(together, task, generators=[gen(s) for s in (0, 1)], **kw)
    assert not calls
    for seed, res_b in zip((0, 1), batched):
        res = fit(build_estimator(spec, (2,), (2,), seed=seed), task, generator=gen(seed), **kw)
        assert [v for _, v, _ in res_b.trace] == pytest.approx([v for _, v, _ in res.trace], abs=2e-3)
    assert calls


def test_training_with_the_kernel_stays_close_to_torch_ops(monkeypatch):
    """Same seed, 300 steps of InfoNCE with a (16, 8) critic on all 63 negatives: the summation
    order differs and training amplifies float32 rounding, but the trace stays within 1e-3 nats
    of training with torch ops (measured: 3e-7)."""
    from mibench.train import fit

    spec = {"bound": "infonce", "critic": "joint", "hidden": [16, 8]}
    task = CorrelatedGaussian(2, mi=1.0)
    kw = dict(steps=300, batch_size=64, lr=1e-3, n_negatives=63, log_every=50)
    calls = count_kernel_calls(monkeypatch)
    fused = fit(build_estimator(spec, (2,), (2,), seed=0), task, generator=gen(0), **kw)
    assert len(calls) == 300
    monkeypatch.setenv(pairmlp.ENV, "0")
    plain = fit(build_estimator(spec, (2,), (2,), seed=0), task, generator=gen(0), **kw)
    assert len(calls) == 300
    assert [v for _, v, _ in fused.trace] == pytest.approx([v for _, v, _ in plain.trace], abs=1e-3)
    assert fused.trace[-1][1] > 0.5
