"""Networks: encoders (raw input -> feature vector) and critics (feature pairs -> score matrix).

A critic takes features fx: (B, dx), fy: (B, dy) and candidate indices ``cols``: (B, K + 1)
with ``cols[i, 0] = i`` and ``cols[i, 1:]`` the K negatives of row i; it returns scores
(B, K + 1) with ``scores[i, k] = f(x_i, y_{cols[i, k]})``. All candidates are scored in one
batched call: a matmul for separable/bilinear critics, one stacked MLP pass for joint critics.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from .interface import ConfigError
from .pairmlp import kernel_pays, kernel_skip_reason, pair_mlp
from .registry import Registry


def relu() -> nn.ReLU:
    """In-place ReLU: every ReLU here follows a layer whose output nothing else reads, so
    overwriting it saves a pass over memory (a fifth of the joint critic's step at K = B - 1)."""
    return nn.ReLU(inplace=True)


def mlp(sizes: Sequence[int], activation: Callable[[], nn.Module] = relu) -> nn.Sequential:
    """Linear layers through ``sizes`` with an activation between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- encoders
# An encoder builder takes the input shape (without batch) and options and returns
# (module mapping (B, *shape) -> (B, out_dim), out_dim).

EncoderBuilder = Callable[..., tuple[nn.Module, int]]
ENCODERS: Registry[EncoderBuilder] = Registry("encoder", entry_points="mibench.encoders")


@ENCODERS.add("identity")
def identity_encoder(shape: tuple[int, ...], embed_dim: int | None = None,
                     hidden: Sequence[int] = ()) -> tuple[nn.Module, int]:
    """Flattens the input; no parameters."""
    return nn.Flatten(), math.prod(shape)


@ENCODERS.add("mlp")
def mlp_encoder(shape: tuple[int, ...], embed_dim: int | None = None,
                hidden: Sequence[int] = (128,)) -> tuple[nn.Module, int]:
    """Flatten, then an MLP with ReLUs to ``embed_dim`` features (default 16)."""
    out = embed_dim or 16
    return nn.Sequential(nn.Flatten(), mlp([math.prod(shape), *hidden, out])), out


@ENCODERS.add("conv")
def conv_encoder(shape: tuple[int, ...], embed_dim: int | None = None,
                 hidden: Sequence[int] = ()) -> tuple[nn.Module, int]:
    """The seed's conv net for (1, 28, 28) images: three convolutions, then Linear(128, z).

    Conv(1,16,3)-ReLU-Conv(16,32,5,stride 3)-ReLU-Conv(32,128,8)-ReLU-Flatten-Linear(128, z),
    as in torch-mist's paired-MNIST example; z = embed_dim (default 16).
    """
    if tuple(shape) != (1, 28, 28):
        raise ConfigError(f"encoder 'conv' takes (1, 28, 28) images, got inputs of shape {tuple(shape)}")
    out = embed_dim or 16
    net = ChannelsLast(
        nn.Conv2d(1, 16, 3), relu(),                   # 26 x 26
        nn.Conv2d(16, 32, 5, stride=3), relu(),        # 8 x 8
        nn.Conv2d(32, 128, 8), relu(),                 # 1 x 1
        nn.Flatten(), nn.Linear(128, out),
    )
    return net.to(memory_format=torch.channels_last), out


class ChannelsLast(nn.Sequential):
    """A Sequential that feeds its convolutions channels-last (NHWC) tensors: on CPU (oneDNN)
    that avoids a layout conversion per convolution and made the seed encoder's training step
    about 1.3x faster; on GPU it is the layout tensor cores want. Results are unchanged."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.contiguous(memory_format=torch.channels_last))


@ENCODERS.add("conv_strip")
def conv_strip_encoder(shape: tuple[int, ...], embed_dim: int | None = None,
                       hidden: Sequence[int] = ()) -> tuple[nn.Module, int]:
    """The seed's conv net on each digit of a (1, 28, 28k) strip, features concatenated, Linear to z.

    One conv trunk, shared by the k positions (Conv(1,16,3)-ReLU-Conv(16,32,5,stride 3)-ReLU-
    Conv(32,128,8)-ReLU, as in ``conv``), sees the k 28 x 28 tiles as one batch; the k
    128-feature vectors are concatenated in position order (so the encoder knows which digit
    stood where) and Linear(128 k, z) maps them to z = embed_dim (default 16) features. For
    k = 1 it is the ``conv`` architecture.
    """
    if len(shape) != 3 or tuple(shape[:2]) != (1, 28) or shape[2] % 28 or shape[2] < 28:
        raise ConfigError(f"encoder 'conv_strip' takes (1, 28, 28k) strips of 28 x 28 images, "
                          f"got inputs of shape {tuple(shape)}")
    out, k = embed_dim or 16, shape[2] // 28
    trunk = ChannelsLast(
        nn.Conv2d(1, 16, 3), relu(),                   # 26 x 26
        nn.Conv2d(16, 32, 5, stride=3), relu(),        # 8 x 8
        nn.Conv2d(32, 128, 8), relu(),                 # 1 x 1
        nn.Flatten(),
    )
    return DigitStrip(trunk.to(memory_format=torch.channels_last), nn.Linear(128 * k, out), k), out


class DigitStrip(nn.Module):
    """``digit`` applied to each 28-pixel-wide tile of (B, C, 28, 28k) strips, as one batch of
    B k images; the k feature vectors are concatenated in order and mapped by ``head``."""

    def __init__(self, digit: nn.Module, head: nn.Module, k: int):
        super().__init__()
        self.digit, self.head, self.k = digit, head, k

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape[:2]
        tiles = x.reshape(b, c, 28, self.k, 28).permute(0, 3, 1, 2, 4).reshape(b * self.k, c, 28, 28)
        return self.head(self.digit(tiles).reshape(b, -1))


# --------------------------------------------------------------------------- critics

def take_rows(t: Tensor, cols: Tensor) -> Tensor:
    """t[cols] for a (B, K + 1) index: (B, K + 1, *t.shape[1:]). ``index_select`` copies whole
    rows, and its backward is an index_add; on CPU both run 2-3x faster than advanced
    indexing, whose backward is an accumulating index_put."""
    return t.index_select(0, cols.reshape(-1)).view(*cols.shape, *t.shape[1:])


class SeparableCritic(nn.Module):
    """f(x, y) = g(x)^T h(y) / temperature with MLPs g, h: the whole batch is one matmul."""

    def __init__(self, dx: int, dy: int, hidden: Sequence[int] = (256,), embed_dim: int = 32,
                 temperature: float = 1.0):
        super().__init__()
        self.g = mlp([dx, *hidden, embed_dim])
        self.h = mlp([dy, *hidden, embed_dim])
        self.temperature = temperature

    def forward(self, fx: Tensor, fy: Tensor, cols: Tensor) -> Tensor:
        full = self.g(fx) @ self.h(fy).T / self.temperature         # (B, B)
        return full.gather(1, cols)


class BilinearCritic(nn.Module):
    """f(x, y) = x^T W y."""

    def __init__(self, dx: int, dy: int, hidden: Sequence[int] = (), embed_dim: int = 0,
                 temperature: float = 1.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dx, dy) / math.sqrt(dx * dy))
        self.temperature = temperature

    def forward(self, fx: Tensor, fy: Tensor, cols: Tensor) -> Tensor:
        return ((fx @ self.weight) @ fy.T / self.temperature).gather(1, cols)


class JointCritic(nn.Module):
    """f(x, y) = MLP([x, y]) on every (x, y) pair.

    The first layer is split as W_x x + W_y y, so each x and y is multiplied once and the
    B * (K + 1) pairs only meet at the sum. On the CPU, for the MLP shapes where it was measured
    to pay (``pairmlp.kernel_pays``), the rest of the MLP runs in a fused kernel that never stores
    a pair tensor (``pairmlp.pair_mlp``; same scores and gradients up to float32 rounding);
    otherwise (other devices, autocast, vmap, ``MIBENCH_PAIR_KERNEL=0``) in torch ops.
    """

    def __init__(self, dx: int, dy: int, hidden: Sequence[int] = (256,), embed_dim: int = 0,
                 temperature: float = 1.0):
        super().__init__()
        if not hidden:
            raise ConfigError("critic 'joint' needs at least one hidden layer")
        self.in_x = nn.Linear(dx, hidden[0])
        self.in_y = nn.Linear(dy, hidden[0], bias=False)
        self.rest = nn.Sequential(relu(), mlp([*hidden, 1]))     # applied to a fresh pair sum
        self.fused = {all_pairs: kernel_pays(hidden, all_pairs) for all_pairs in (False, True)}

    @torch.no_grad()
    def init_as_concatenated(self) -> None:
        """Redraw the split first layer as a single Linear(dx + dy, H) on the concatenated
        [x, y] would be drawn: weights and bias from U(-1/sqrt(dx + dy), 1/sqrt(dx + dy)), the
        default of torch's and of Equinox's Linear for such a layer (BMI's critic). The split
        layer's own default draws W_x and the bias with 1/sqrt(dx) and W_y with 1/sqrt(dy), a
        wider start."""
        bound = 1 / math.sqrt(self.in_x.in_features + self.in_y.in_features)
        for t in (self.in_x.weight, self.in_y.weight, self.in_x.bias):
            t.uniform_(-bound, bound)

    def forward(self, fx: Tensor, fy: Tensor, cols: Tensor) -> Tensor:
        a = self.in_x(fx)                                 # (B, H)
        c = self.in_y(fy)                                 # (B, H)
        all_pairs = 2 * cols.shape[1] > cols.shape[0]
        if self.fused[all_pairs]:
            linears = self.rest[1][0::2]                  # read now: functional_call swaps them
            weights, biases = [m.weight for m in linears], [m.bias for m in linears]
            if kernel_skip_reason(a, c, [*weights, *biases]) is None:
                if cols.shape[1] == cols.shape[0] == c.shape[0] and cols is _all_shifts(c.shape[0], cols.device):
                    return pair_mlp(a, c, None, weights, biases, shifted=True)     # K = B - 1
                if all_pairs:
                    return pair_mlp(a, c, None, weights, biases).gather(1, cols)
                return pair_mlp(a, c, cols, weights, biases)
        if all_pairs:
            # Most of the batch is scored: broadcasting all B x B pairs and picking the columns
            # afterwards avoids the scatter that the backward of a (B, K + 1, H) gather needs.
            return self.rest(a[:, None, :] + c[None, :, :]).squeeze(-1).gather(1, cols)
        pairs = a[:, None, :] + take_rows(c, cols)         # (B, K + 1, H)
        return self.rest(pairs).squeeze(-1)


class ConditionalGaussian(nn.Module):
    """q(y | x) = N(mu(x), diag(exp(logvar(x)))) with an MLP; scores are log q(y_i | x_cols[i,k])."""

    def __init__(self, dx: int, dy: int, hidden: Sequence[int] = (256,), embed_dim: int = 0,
                 temperature: float = 1.0):
        super().__init__()
        self.net = mlp([dx, *hidden, 2 * dy])

    def forward(self, fx: Tensor, fy: Tensor, cols: Tensor) -> Tensor:
        mu, logvar = self.net(fx).chunk(2, dim=-1)                     # (B, dy) each
        diff = fy[:, None, :] - take_rows(mu, cols)                    # (B, K + 1, dy)
        lv = take_rows(logvar, cols)
        return -0.5 * (diff.pow(2) * torch.exp(-lv) + lv + math.log(2 * math.pi)).sum(-1)


# --------------------------------------------------------------------------- auxiliary heads
# A bound's auxiliary head (``Bound.aux_head``) maps (fx, fy, cols) to one value per pair: (B,).


class PositivePairScore(JointCritic):
    """u(x_i, y_i): a joint critic scored on the positive pairs only (FLO's second network)."""

    def forward(self, fx: Tensor, fy: Tensor, cols: Tensor) -> Tensor:
        return super().forward(fx, fy, cols[:, :1]).squeeze(1)


class MarginalGaussian(nn.Module):
    """q(y) = N(mu, diag(exp(logvar))) with learned mu, logvar; returns log q(y_i): (B,)."""

    def __init__(self, dy: int):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(dy))
        self.logvar = nn.Parameter(torch.zeros(dy))

    def forward(self, fx: Tensor, fy: Tensor, cols: Tensor | None = None) -> Tensor:
        d = fy - self.mu
        return -0.5 * (d.pow(2) * torch.exp(-self.logvar) + self.logvar + math.log(2 * math.pi)).sum(-1)


CRITICS: Registry[type[nn.Module]] = Registry("critic", entry_points="mibench.critics")
CRITICS.register("separable", SeparableCritic)
CRITICS.register("joint", JointCritic)
CRITICS.register("bilinear", BilinearCritic)


@functools.lru_cache(maxsize=4)
def _all_shifts(batch: int, device: torch.device) -> Tensor:
    """cols for K = B - 1: the same every batch, so made once per size and device (building it is
    an (B, B) index computation: at B = 2,500, what BMI's held-out evaluation scores, it took
    about as long as the critic itself). Read only: callers index with it, never write to it."""
    return (torch.arange(batch, device=device)[:, None] + torch.arange(batch, device=device)[None, :]) % batch


# negatives = "shuffled": one negative per positive, the y of an independent draw (training) or of
# a random permutation of the batch (evaluation). See ``EstimatorSpec.negatives``.
SHUFFLED = "shuffled"


def permuted_columns(batch: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """cols (B, 2) with cols[i] = [i, pi(i)], pi a uniform random permutation of the batch drawn
    from ``generator`` (pi may fix some i, as a shuffle of the batch does): what BMI's MINE
    scores its test half on."""
    perm = torch.randperm(batch, generator=generator, device=device)
    return torch.stack([torch.arange(batch, device=device), perm], dim=1)


@functools.lru_cache(maxsize=4)
def appended_columns(batch: int, device: torch.device) -> Tensor:
    """cols (B, 2) with cols[i] = [i, B + i]: row i's negative is item i of a second, independent
    batch of y appended to the first (training with ``negatives = "shuffled"``). Read only."""
    rows = torch.arange(batch, device=device)
    return torch.stack([rows, rows + batch], dim=1)


def candidate_indices(batch: int, n_negatives: int, generator: torch.Generator | None,
                      device: torch.device) -> Tensor:
    """cols: (B, K + 1) with cols[i, 0] = i and K distinct negatives j != i in cols[i, 1:].

    Negatives are cyclic shifts: row i takes i + s for K distinct offsets s in 1..B-1 drawn
    once per batch (all offsets when K = B - 1, no randomness needed). Each row's negatives are
    a uniform K-subset of the other items; the cost is O(B K) index arithmetic on the device.
    """
    if not 1 <= n_negatives <= batch - 1:
        raise ConfigError(f"negatives must be 1..batch_size-1 = {batch - 1} (or 'all'), got {n_negatives}")
    if n_negatives == batch - 1:
        return _all_shifts(batch, torch.device(device))
    else:
        perm = torch.randperm(batch - 1, generator=generator, device=device)[:n_negatives] + 1
        shifts = torch.cat([torch.zeros(1, dtype=perm.dtype, device=device), perm])
    return (torch.arange(batch, device=device)[:, None] + shifts[None, :]) % batch
