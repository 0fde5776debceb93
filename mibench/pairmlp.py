"""A fused CPU kernel for the joint critic's pair MLP: scores[i, j] = MLP(relu(a_i + c_j)).

``JointCritic`` sums a = in_x(fx) and c = in_y(fy) over every scored pair and runs the rest of
its MLP on the (B, K + 1, H) sum. With a small MLP that step is memory-bound: each layer writes
and re-reads a pair tensor larger than the cache (4 MiB per layer at B = 256, H = 16). The
kernel (pairmlp.cpp beside this file) runs tiles of 64 pairs with AVX-512 (32 with AVX2, 16
with neither) through the whole MLP in vector registers and recomputes each tile in the
backward pass, so no pair tensor is ever stored.

The library is compiled on first use with the system's C++ compiler (``$CXX``, else ``c++``;
about a second, no torch headers, no ninja) into torch's extension cache
(``$TORCH_EXTENSIONS_DIR``, else ``~/.cache/torch_extensions``), one file per source, flags and
instruction set, written atomically so that concurrent processes may race to build it. When it
cannot be built, or ``MIBENCH_PAIR_KERNEL=0``, or the tensors are not plain float32 / float64
CPU tensors outside autocast and torch.func transforms, ``kernel_skip_reason`` says why (logged
once) and the caller keeps its torch path.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("pairmlp.cpp")
ENV = "MIBENCH_PAIR_KERNEL"
_DTYPES = {torch.float32: "f32", torch.float64: "f64"}
_lib: list = []                  # [ctypes.CDLL or None] once loading was tried
_logged: set[str] = set()


def _flags() -> tuple[str, list[str]]:
    """(instruction-set tag, compiler flags): plain -O3 (no -ffast-math: sums keep their order),
    with the widest vectors torch found on this CPU: AVX-512, else AVX2 + FMA, else the
    compiler's baseline. On an AMD EPYC with AVX-512 (one thread, BMI's (16, 8) critic at
    B = 256, all pairs) the AVX-512 build ran the forward in 141 us against AVX2's 248 and the
    backward in 497 us against 763 (medians of 200, the builds alternating in one process).
    The tag is part of the file name, so a cache shared by machines keeps one build per kind.
    The vector width sets the tile and so the order of the per-lane sums: estimates differ
    between builds by rounding."""
    flags = ["-O3", "-std=c++17", "-shared", "-fPIC", "-pthread", "-fno-strict-aliasing"]
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return "base", flags
    capability = torch.backends.cpu.get_cpu_capability()
    if capability == "AVX512":
        return "avx512", [*flags, "-mavx512f", "-mavx2", "-mfma"]
    if capability == "AVX2":
        return "avx2", [*flags, "-mavx2", "-mfma"]
    return "base", flags


def _cache_dir() -> Path:
    """Where torch's own JIT extensions go, under a folder of this module's."""
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or \
        os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch_extensions")
    return Path(root) / "mibench_pairmlp"


def _build() -> Path:
    """The compiled library's path, building it if this source, compiler and flags have none yet."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"no C++ compiler ({compiler!r} not found)")
    tag, flags = _flags()
    source = SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join([compiler, *flags]).encode()).hexdigest()[:16]
    target = _cache_dir() / f"pairmlp_{tag}_{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        done = subprocess.run([compiler, *flags, "-x", "c++", "-", "-o", tmp], input=source,
                              capture_output=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{compiler} failed: {done.stderr.decode(errors='replace').strip()[-500:]}")
        os.chmod(tmp, 0o755)          # mkstemp's 0600 would keep a shared cache's other users out
        os.replace(tmp, target)       # atomic: a concurrent build of the same key writes the same bytes
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for suffix in _DTYPES.values():
        fwd, bwd = getattr(lib, f"pairmlp_forward_{suffix}"), getattr(lib, f"pairmlp_backward_{suffix}")
        fwd.argtypes = [p, p, i64, i64, p, i64, i32, i32, p, p, p, p, i32]
        bwd.argtypes = [p, p, i64, i64, p, i64, i32, i32, p, p, p, p, p, p, p, p, i32]
        fwd.restype = bwd.restype = i32
    return lib


def library() -> ctypes.CDLL | None:
    """The kernel library, built on first use; None (logged once) when it cannot be had."""
    if not _lib:
        try:
            _lib.append(_declare(ctypes.CDLL(str(_build()))))
        except (OSError, RuntimeError, subprocess.SubprocessError, AttributeError) as exc:
            _lib.append(None)
            log.warning("joint critic: the pair-MLP kernel could not be built (%s); using torch ops", exc)
    return _lib[0]


def _log_once(why: str) -> None:
    if why not in _logged:
        _logged.add(why)
        log.info("joint critic: plain torch path: %s", why)


_is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)


def _wrapped(t: Tensor) -> bool:
    """True for a tensor inside a torch.func transform (vmap's batched tensors, grad's wrappers),
    whose memory a C function cannot read; every tensor counts as one if torch cannot tell."""
    return _is_wrapped is None or _is_wrapped(t)


def kernel_skip_reason(a: Tensor, c: Tensor, params: Sequence[Tensor]) -> str | None:
    """None when ``pair_mlp`` can run on these tensors, else why not (also logged once)."""
    why = _skip_reason(a, c, params)
    if why is not None:
        _log_once(why)
    return why


def _skip_reason(a: Tensor, c: Tensor, params: Sequence[Tensor]) -> str | None:
    if os.environ.get(ENV, "1").strip() in ("0", "false", "no", "off"):
        return f"{ENV}={os.environ[ENV]}"
    tensors = (a, c, *params)
    if any(t.device.type != "cpu" for t in tensors):
        return "not on the CPU"
    if a.dtype not in _DTYPES or any(t.dtype != a.dtype for t in tensors):
        return f"dtype {a.dtype} (the kernel takes float32 or float64 throughout)"
    if _cpu_autocast():
        return "CPU autocast is on"
    if any(_wrapped(t) for t in tensors):
        return "inside a torch.func transform (vmap)"
    if torch.compiler.is_compiling():
        return "under torch.compile"
    if library() is None:
        return "the kernel could not be built"
    return None


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:                               # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled()


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _pointers(ts: Sequence[Tensor]):
    return (ctypes.c_void_p * len(ts))(*[t.data_ptr() for t in ts])


def _net(a: Tensor, c: Tensor, cols: Tensor | None, shifted: bool, weights: Sequence[Tensor]):
    """The arguments both entry points share, the pair layout and the unit counts."""
    dims = torch.tensor([a.shape[1], *[w.shape[0] for w in weights]], dtype=torch.int64)
    ncols = c.shape[0] if cols is None else cols.shape[1]
    return (a.data_ptr(), c.data_ptr(), a.shape[0], c.shape[0], _ptr(cols), ncols, int(shifted), len(weights),
            dims.data_ptr()), dims, ncols


class _PairMLP(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, c, cols, shifted, *params):
        weights, biases = params[0::2], params[1::2]
        lib, suffix = library(), _DTYPES[a.dtype]
        args, dims, ncols = _net(a, c, cols, shifted, weights)
        out = a.new_empty(a.shape[0], ncols)
        err = getattr(lib, f"pairmlp_forward_{suffix}")(*args, _pointers(weights), _pointers(biases),
                                                         out.data_ptr(), torch.get_num_threads())
        if err:
            raise IndexError(f"pair_mlp: a column index is outside 0..{c.shape[0] - 1}")
        ctx.save_for_backward(a, c, cols, *params)
        ctx.shifted = shifted
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, c, cols, *params = ctx.saved_tensors
        weights, biases = params[0::2], params[1::2]
        lib, suffix = library(), _DTYPES[a.dtype]
        args, dims, ncols = _net(a, c, cols, ctx.shifted, weights)
        grad = grad.contiguous()
        ga, gc = torch.zeros_like(a), torch.zeros_like(c)
        gw, gb = [torch.empty_like(w) for w in weights], [torch.empty_like(b) for b in biases]
        getattr(lib, f"pairmlp_backward_{suffix}")(*args, _pointers(weights), _pointers(biases), grad.data_ptr(),
                                                   ga.data_ptr(), gc.data_ptr(), _pointers(gw), _pointers(gb),
                                                   torch.get_num_threads())
        gparams = [g for pair in zip(gw, gb) for g in pair]
        return (ga, gc, None, None, *gparams)


def pair_mlp(a: Tensor, c: Tensor, cols: Tensor | None, weights: Sequence[Tensor],
             biases: Sequence[Tensor], shifted: bool = False) -> Tensor:
    """scores[i, k] = MLP(relu(a_i + c_{cols[i, k]})), or with ``cols`` None all pairs (B_a, B_c).

    a: (B_a, H0), c: (B_c, H0); the MLP is Linear(weights[l], biases[l]) with a ReLU between
    layers and one output unit; cols: (B_a, K + 1) int64 column indices. ``shifted`` (all pairs,
    B_a = B_c = B): scores[i, k] = MLP(relu(a_i + c_{(i + k) % B})), the layout of
    ``nets.candidate_indices`` for K = B - 1 (the positive first), written directly instead of
    gathered from the (B, B) scores. Differentiable in a, c, the weights and the biases (once:
    the backward itself is not). Check ``kernel_skip_reason`` first.
    """
    _check_shapes(a, c, cols, weights, biases)
    if shifted and (cols is not None or a.shape[0] != c.shape[0]):
        raise ValueError(f"pair_mlp: shifted needs all pairs of equal batches, got cols "
                         f"{None if cols is None else tuple(cols.shape)}, a {tuple(a.shape)}, c {tuple(c.shape)}")
    cols = None if cols is None else cols.to(torch.int64).contiguous()
    params = [t.contiguous() for pair in zip(weights, biases) for t in pair]
    return _PairMLP.apply(a.contiguous(), c.contiguous(), cols, bool(shifted), *params)


def _check_shapes(a: Tensor, c: Tensor, cols: Tensor | None, weights: Sequence[Tensor],
                  biases: Sequence[Tensor]) -> None:
    """The C code trusts its sizes: anything inconsistent is refused here."""
    width = a.shape[1] if a.dim() == 2 else -1
    ok = a.dim() == 2 and c.dim() == 2 and c.shape[1] == width and len(weights) == len(biases) >= 1
    ok = ok and (cols is None or (cols.dim() == 2 and cols.shape[0] == a.shape[0]))
    for w, b in zip(weights, biases):
        ok = ok and w.dim() == 2 and w.shape[1] == width and tuple(b.shape) == (w.shape[0],)
        width = w.shape[0] if w.dim() == 2 else -1
    if not (ok and width == 1):
        raise ValueError(f"pair_mlp: inconsistent shapes: a {tuple(a.shape)}, c {tuple(c.shape)}, cols "
                         f"{None if cols is None else tuple(cols.shape)}, weights "
                         f"{[tuple(w.shape) for w in weights]}, biases {[tuple(b.shape) for b in biases]}")


# Multiply-adds per pair between hidden layers up to which the kernel pays, for all pairs (B x B,
# then gathered) and for given columns (B x (K + 1)). See ``kernel_pays``.
MAX_HIDDEN_MACS = {True: 8192, False: 1024}


def kernel_pays(hidden: Sequence[int], all_pairs: bool) -> bool:
    """Whether a joint critic with these hidden sizes should use the kernel where it can run.

    What decides is the multiply-adds per pair between hidden layers, the sum of hidden[l-1] *
    hidden[l]: the kernel does them at about half a matmul's speed, while what it saves is memory
    traffic, which grows with the widths and the number of pairs. Training steps per second,
    kernel over torch ops (InfoNCE, one thread, the two alternating in one process, median of 5):

    - all pairs: (16, 8) B = 256: 2.5x; [256] B = 128: 3.8x, B = 64: 1.8x; [64, 32] B = 128:
      1.4x; [128, 64]: 1.14x; [128, 128]: 1.06x; [256, 256]: 0.78x.
    - given columns (the pair tensor is smaller, and the kernel gathers c row by row): (16, 8)
      B = 256, K = 3: 1.12x, K = 64: 1.44x; B = 128, K = 32: [32, 16] 1.06x, [32, 32] 1.03x,
      [64, 32] 0.92x, [64, 64] 0.99x.
    """
    macs = sum(h0 * h1 for h0, h1 in zip(hidden[:-1], hidden[1:]))
    return macs <= MAX_HIDDEN_MACS[all_pairs]
