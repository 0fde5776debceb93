"""Host-side speed settings: the allocator thresholds must take effect, and step aside when asked."""

import math
import os
import platform
import subprocess
import sys
import textwrap

import pytest

from mibench.cpu import default_threads

# Run in a fresh interpreter: the thresholds are process-wide and set once. The probe frees a
# 16 MiB tensor and allocates another; glibc reports bytes held in mmapped blocks (hblkhd).
PROBE = textwrap.dedent("""
    import ctypes, sys, torch
    from mibench.cpu import keep_freed_buffers

    class Mallinfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                    "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = Mallinfo2
    kept = keep_freed_buffers()
    t = torch.ones(4 * 2**20)          # 16 MiB
    mapped = libc.mallinfo2().hblkhd
    del t
    t = torch.ones(4 * 2**20)
    print(kept, mapped >= 16 * 2**20, keep_freed_buffers() == kept)
""")


def _probe(**env) -> list[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "MIBENCH_MALLOC"}
    out = subprocess.run([sys.executable, "-c", PROBE], env={**full, **env}, capture_output=True,
                         text=True, check=True)
    return out.stdout.split()


glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc
@pytest.mark.slow
def test_large_buffers_come_from_the_heap():
    kept, mapped, idempotent = _probe()
    assert kept == "True" and idempotent == "True"
    assert mapped == "False"           # the 16 MiB tensor did not get its own mapping


@glibc
@pytest.mark.slow
def test_default_allocator_maps_large_buffers():
    # the control: without the thresholds the same tensor is mmapped, so the probe can fail
    kept, mapped, _ = _probe(MIBENCH_MALLOC="default")
    assert kept == "False" and mapped == "True"


@glibc
@pytest.mark.slow
def test_users_malloc_settings_win():
    kept, _, _ = _probe(MALLOC_MMAP_THRESHOLD_="65536")
    assert kept == "False"


def test_default_threads_is_small_on_small_machines():
    n = default_threads()
    assert 1 <= n <= 8
    if (os.cpu_count() or 1) <= 2:
        assert n == 1


def test_the_matmul_peak_is_a_rate_of_the_products_it_times():
    """2 n^3 FLOPs over the best of the timed products: a short run gives a positive, finite
    rate, and a machine's float32 products run at well above 0.1 GFLOP/s."""
    from mibench.cpu import matmul_peak_gflops

    peak = matmul_peak_gflops(seconds=0.05, n=256)
    assert math.isfinite(peak) and peak > 0.1
