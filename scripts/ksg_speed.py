#!/usr/bin/env python3
"""KSG's speed against the sample size: one estimate (k = 3) on n = 1,000, 10,000 and 100,000
pairs of a 5+5-dimensional Gaussian with I = 1 nat, on the CPU (scipy's k-d tree) and, when a
GPU is present, on it (exact batched distances in torch, float64).

    python scripts/ksg_speed.py                           # prints a table
    python scripts/ksg_speed.py --json results/reference/speed/ksg_cpu.json
    python scripts/ksg_speed.py --sizes 1000,10000 --devices cpu

Each size is timed once after a warm-up call on 1,000 pairs (the first call of either path
pays for imports and, on a GPU, CUDA's start-up); wall time by time.perf_counter, with the
device synchronised. The estimate is printed beside the time, so a fast wrong path shows.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from mibench.baselines import ksg
from mibench.distributions import CorrelatedGaussian

DIM, MI, K = 5, 1.0, 3


def measure(n: int, device: str) -> dict:
    task = CorrelatedGaussian(DIM, mi=MI)
    x, y = task.sample(n, generator=torch.Generator().manual_seed(0))
    if device != "cpu":
        x, y = x.to(device), y.to(device)
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    value = ksg(x, y, k=K, device=None if device == "cpu" else device)
    if device != "cpu":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    return {"n": n, "device": device, "seconds": seconds, "pairs_per_s": n / seconds, "estimate": value,
            "mi_true": task.ground_truth().mi}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000", help="comma-separated sample sizes")
    parser.add_argument("--devices", default="cpu,cuda", help="comma-separated; absent ones are skipped")
    parser.add_argument("--json", help="also write the measurements here")
    args = parser.parse_args(argv)
    devices = [d for d in args.devices.split(",") if d == "cpu" or torch.cuda.is_available()]
    rows = []
    for device in devices:
        measure(1000, device)                                  # warm-up
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(measure(n, device))
            r = rows[-1]
            print(f"{device:5s} n = {n:>7,d}: {r['seconds']:8.3f} s  ({r['pairs_per_s']:>10,.0f} pairs/s)  "
                  f"estimate {r['estimate']:.4f} (true {r['mi_true']:.4f})", flush=True)
    if args.json:
        meta = {"python": platform.python_version(), "torch": torch.__version__, "machine": platform.machine(),
                "cpu_count": torch.get_num_threads(), "gpu": torch.cuda.get_device_name() if "cuda" in devices else None}
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "dim": DIM, "mi": MI, "k": K, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
