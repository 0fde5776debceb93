#!/usr/bin/env python3
"""Training throughput of mibench on one device: the figures for results/reference/speed/.

Not part of the test suite. One run measures, on --device (default cuda):

  seed     the seed paired-MNIST cell of tasks/paired_mnist.toml (shared conv encoder, SMILE
           tau 5, joint critic [64, 32], 32 negatives, batch 128), fp32 and bf16 autocast;
  gauss    20-d Gaussian, I = 4 nats, batch 128: InfoNCE separable (Linear(20, 128) per side,
           all negatives), SMILE joint [128] with all and with 32 negatives; fp32 and bf16;
           and SMILE joint [128], all negatives, at batch 1024;
  batched  SMILE joint [128], 32 negatives, batch 128, S = 1, 4, 16, 64 seeds trained as one
           batched model (``fit_batched``): pairs/s summed over the S models.

Every figure is ``fit``'s own timing (device synchronised, after its warm-up steps), the
median of --repeats runs. Usage:

    python scripts/device_speed.py --data-dir DATA --json results/reference/speed/h200.json
    python scripts/device_speed.py --device cpu --quick      # a smoke check of the script

With --quick every run is a few steps; the figures are then meaningless.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time

import torch

from mibench.distributions import CorrelatedGaussian, PairedImages
from mibench.estimators import build_estimator
from mibench.presets import load_preset
from mibench.train import fit, fit_batched

SEED_PRESET = "paired_mnist"     # the seed cell is this preset's [estimator], at its batch size
GAUSS = {
    "infonce_sep_all": {"bound": "infonce", "critic": "separable", "hidden": [], "critic_dim": 128,
                        "negatives": "all"},
    "smile_joint_all": {"bound": "smile", "tau": 5.0, "critic": "joint", "hidden": [128], "negatives": "all"},
    "smile_joint_32": {"bound": "smile", "tau": 5.0, "critic": "joint", "hidden": [128], "negatives": 32},
}
BATCHED_SPEC = GAUSS["smile_joint_32"]


def measure(spec: dict, task, *, batch: int, steps: int, warmup: int, device: torch.device,
            precision: str = "fp32", seeds: int = 1) -> dict:
    x, y = task.sample(2, generator=torch.Generator(device=device).manual_seed(0))
    shapes = tuple(x.shape[1:]), tuple(y.shape[1:])
    ests = []
    for s in range(seeds):
        torch.manual_seed(s)
        ests.append(build_estimator(spec, *shapes).to(device))
    k = ests[0].spec.n_negatives(batch)
    gens = [torch.Generator(device=device).manual_seed(s) for s in range(seeds)]
    common = dict(steps=warmup + steps, batch_size=batch, lr=5e-4, n_negatives=k, warmup=warmup,
                  log_every=100, precision=precision)
    if seeds == 1:
        res = fit(ests[0], task, generator=gens[0], **common)
    else:
        res = fit_batched(ests, task, generators=gens, **common)[0]
    return {"pairs_per_s": res.pairs_per_s, "steps_per_s": res.steps_per_s,
            "estimate": res.trace[-1][1], "truth": res.trace[-1][2]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--data-dir", help="MNIST root (torchvision layout); else as mibench resolves it")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a few steps per run: checks the script, not speed")
    p.add_argument("--only", choices=["seed", "gauss", "batched"], action="append",
                   help="run only these groups (repeatable)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    p.add_argument("--json", metavar="OUT", help="save every figure to this JSON file")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("device_speed: --device cuda but torch sees no GPU; use --device cpu")
    groups = args.only or ["seed", "gauss", "batched"]
    steps, warmup = (3, 2) if args.quick else (300, 30)
    precisions = ["fp32", "bf16"]

    cases = []        # (group, name, spec, task factory, batch, precision, seeds, steps)
    if "seed" in groups:
        seed = load_preset(SEED_PRESET)
        mnist = PairedImages("mnist", "train", data_dir=args.data_dir, device=device)
        for prec in precisions:
            cases.append(("seed", "seed_mnist_cell", seed.estimator, mnist, seed.train["batch_size"], prec, 1,
                          steps))
    if "gauss" in groups:
        gauss = CorrelatedGaussian(20, mi=4.0, device=device)
        for name, spec in GAUSS.items():
            for prec in precisions:
                cases.append(("gauss", name, spec, gauss, 128, prec, 1, steps))
        cases.append(("gauss", "smile_joint_all_b1024", GAUSS["smile_joint_all"], gauss, 1024, "fp32", 1,
                      max(3, steps // 3)))
    if "batched" in groups:
        gauss = CorrelatedGaussian(20, mi=4.0, device=device)
        for s in (1, 4, 16, 64):
            cases.append(("batched", f"smile_joint_32_x{s}", BATCHED_SPEC, gauss, 128, "fp32", s, steps))

    rows = []
    for group, name, spec, task, batch, prec, seeds, n in cases:
        runs = [measure(spec, task, batch=batch, steps=n, warmup=warmup, device=device, precision=prec,
                        seeds=seeds) for _ in range(args.repeats)]
        row = {"group": group, "case": name, "batch": batch, "precision": prec, "seeds": seeds,
               "steps": n, "pairs_per_s": statistics.median(r["pairs_per_s"] for r in runs),
               "steps_per_s": statistics.median(r["steps_per_s"] for r in runs),
               "runs": runs}
        rows.append(row)
        print(f"{group:8} {name:24} B={batch:<5} {prec:5} S={seeds:<3} "
              f"{row['pairs_per_s']:>12,.0f} pairs/s {row['steps_per_s']:>10,.1f} steps/s", flush=True)

    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "torch": torch.__version__, "python": platform.python_version(), "threads": args.threads,
            "repeats": args.repeats, "quick": args.quick}
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=2)
            f.write("\n")
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
