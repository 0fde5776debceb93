"""The figures: ratios between series, the summary table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

DB_HEAP = "d/b'"


def ratios(name: str, res: dict) -> dict:
    med = {k: v["median"] for k, v in res["series"].items()}
    if name == "mnist":
        return {"c/a": med["c"] / med["a"], "d/c": med["d"] / med["c"],
                "b/a": med["b"] / med["a"], "d/b": med["d"] / med["b"], DB_HEAP: med["d"] / med["b_heap"]}
    out = {}
    if "torch_mist" in med:
        out["mibench/torch-mist plain"] = med["mibench"] / med["torch_mist"]
        out["mibench/torch-mist train_mi_estimator"] = med["mibench"] / med["torch_mist_util"]
        out["mibench/torch-mist plain, same allocator"] = med["mibench"] / med["torch_mist_heap"]
    return out


def roofline(res: dict, flops_per_step: float, peak_gflops: float, batch: int) -> dict:
    """The seed cell's arithmetic rate against the matmul peak: FLOPs per step (FlopCounterMode:
    its matrix products and convolutions, forward and backward) times steps per second, for
    mibench's fit (c) and its model-only step (d)."""
    out = {"flops_per_step": flops_per_step, "peak_gflops": peak_gflops}
    for key in ("c", "d"):
        rate = res["series"][key]["median"] / batch * flops_per_step / 1e9
        out[f"{key} GFLOP/s"] = rate
        out[f"{key} % roofline"] = 100 * rate / peak_gflops
    return out


def summary(results: dict) -> None:
    print("\n" + "=" * 100)
    for name, res in results.items():
        print(res["title"])
        for key, s in res["series"].items():
            spread = f"[{s['min']:.1f} .. {s['max']:.1f}]" if len(s["runs"]) > 1 else ""
            print(f"  {s['label']:<48} {s['median']:10.1f} {res['unit']:<8} {spread}  N={s['steps']}")
        rs = res.get("ratios", {})
        if name == "mnist":
            print(f"  c/a = {rs['c/a']:.2f} (target >= 2)   d/c = {rs['d/c']:.2f} (target <= 1.15)"
                  f"   b/a = {rs['b/a']:.2f}   d/b = {rs['d/b']:.2f}   d/b' = {rs[DB_HEAP]:.2f}")
            roof = res.get("roofline")
            if roof:
                print(f"  mibench's step: {roof['flops_per_step'] / 1e6:.0f} MFLOP (matrix products and "
                      f"convolutions, forward and backward); (c) {roof['c GFLOP/s']:.1f} GFLOP/s = "
                      f"{roof['c % roofline']:.0f} % and (d) {roof['d % roofline']:.0f} % of the matmul peak "
                      f"{roof['peak_gflops']:.1f} GFLOP/s (torch.mm 1024 x 1024, one thread)")
        elif rs:
            print("  " + "   ".join(f"{k} = {v:.2f}" for k, v in rs.items()))
    print("=" * 100)


def save_json(path: str, results: dict, *, versions: dict, batch_size: int, seed_cell: dict, args) -> None:
    """Every measurement, the medians, the ratios, the versions and how the run was set up."""
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "batch_size": batch_size, "seed_cell": seed_cell, "repeats": args.repeats,
            "seconds": args.seconds, "quick": args.quick, "versions": versions}
    Path(path).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"saved {path}")
