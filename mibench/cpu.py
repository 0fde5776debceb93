"""Host facts and settings that decide CPU training speed: the cores this process may use,
torch's thread count, how freed activation buffers are returned to the operating system, and the
matrix-product peak that speed figures are measured against.

Why the allocator matters. torch's CPU tensors come straight from ``malloc``. glibc serves a
request above its mmap threshold (128 KiB to start, raised only as such blocks are freed) with a
fresh ``mmap`` and unmaps it on free, so a training step whose activations are megabytes (the
joint critic's (B, K + 1, H) pair tensor is 8 MiB at B = 128, K = 127, H = 128) maps new pages,
has the kernel zero-fill them on first touch and unmaps them again, every step, for every large
intermediate. Raising the mmap and trim thresholds once keeps those buffers in the heap, where
the next step reuses them. Results do not change; the process keeps its peak heap instead of
handing it back between steps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys
import time

log = logging.getLogger(__name__)

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# Blocks up to the mmap threshold come from the heap. Some glibc versions refuse a threshold
# above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit), so that is the fallback. TRIM_THRESHOLD: how much
# free memory the heap keeps before it returns any to the operating system.
MMAP_THRESHOLDS = (256 * 2**20, 32 * 2**20)
TRIM_THRESHOLD = 1 * 2**30
_ENV_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")

_state: dict[str, bool] = {}


def available_cores() -> int:
    """Cores this process may use: SLURM's allocation, else the CPU affinity, else cpu_count."""
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def matmul_peak_gflops(seconds: float = 2.0, n: int = 1024) -> float:
    """The float32 matrix-product peak of this thread (torch's threads as set), GFLOP/s: the
    best of repeated n x n ``torch.mm`` over about ``seconds`` (at least 3), 2 n^3 FLOPs each.
    The roofline the speed scripts state their fractions against."""
    import torch

    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=out)                                 # first call: the library's set-up
    best, end, count = float("inf"), time.perf_counter() + seconds, 0
    while count < 3 or time.perf_counter() < end:
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
        count += 1
    return 2 * n**3 / best / 1e9


def default_threads() -> int:
    """One torch thread per run on small machines (2 threads on a shared 2-core box can be an
    order of magnitude slower than 1), half the cores on larger ones, at most 8. Cores are those
    this process may use (SLURM's allocation, the CPU affinity), not the machine's."""
    cores = available_cores()
    return 1 if cores <= 2 else min(8, cores // 2)


def keep_freed_buffers() -> bool:
    """Raise glibc's mmap and trim thresholds once per process so that large tensors freed at the
    end of a training step are reused by the next one instead of being unmapped and mapped anew.

    Returns whether the thresholds are in effect. Does nothing (and returns False) off glibc,
    when ``MIBENCH_MALLOC=default`` is set, or when the user set glibc's own ``MALLOC_*_``
    variables (their choice wins).
    """
    if "done" in _state:
        return _state["done"]
    _state["done"] = False
    if not sys.platform.startswith("linux") or os.environ.get("MIBENCH_MALLOC", "") == "default":
        return False
    if any(v in os.environ for v in _ENV_VARS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):        # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = (any(mallopt(_M_MMAP_THRESHOLD, t) == 1 for t in MMAP_THRESHOLDS)
          and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1)
    if not ok:
        log.debug("mallopt refused the thresholds; keeping the C library's defaults")
    _state["done"] = ok
    return ok
