"""What both sides use: problem sizes, the Gaussian configurations and timing helpers.

Imported in torch-mist's environment too: nothing here imports mibench, and torch only inside
functions.
"""

from __future__ import annotations

import math
import time

BATCH = 128                  # the Gaussian problems' batch (the MNIST cell's comes from its preset)
N_FIXED_BATCHES = 4          # model-only loops cycle through these (see the script's docstring)
GAUSS_DIM, GAUSS_MI = 20, 4.0

# Gaussian configurations: mibench spec, torch-mist factory call (name, kwargs), label.
GAUSS_CONFIGS = {
    "infonce_sep": (
        {"bound": "infonce", "critic": "separable", "hidden": [], "critic_dim": 128, "negatives": "all"},
        ("infonce", {"hidden_dims": [128], "critic_type": "separable"}),
        "InfoNCE, separable [128], all negatives",
    ),
    "infonce_sep_wide": (
        {"bound": "infonce", "critic": "separable", "hidden": [128], "critic_dim": 128, "negatives": "all"},
        None,
        "InfoNCE, separable, mibench hidden [128] + projection 128 (mibench only)",
    ),
    "smile_joint_all": (
        {"bound": "smile", "tau": 5.0, "critic": "joint", "hidden": [128], "negatives": "all"},
        ("smile", {"hidden_dims": [128], "critic_type": "joint", "neg_samples": -1, "tau": 5.0}),
        "SMILE, joint [128], all (127) negatives",
    ),
    "smile_joint_32": (
        {"bound": "smile", "tau": 5.0, "critic": "joint", "hidden": [128], "negatives": 32},
        ("smile", {"hidden_dims": [128], "critic_type": "joint", "neg_samples": 32, "tau": 5.0}),
        "SMILE, joint [128], 32 negatives",
    ),
}


def fixed_rate(step, batches, steps: int, warmup: int) -> float:
    """Steps per second of ``step(x, y)`` over ``steps`` steps after ``warmup``, cycling batches."""
    n = len(batches)
    for i in range(warmup):
        step(*batches[i % n])
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[(warmup + i) % n])
    return steps / (time.perf_counter() - t0)


def gaussian_pair(n: int, generator, dim: int = GAUSS_DIM, mi: float = GAUSS_MI):
    """n draws of x ~ N(0, I), y = rho x + sqrt(1 - rho^2) eps with I(x; y) = mi nats."""
    import torch

    rho = math.sqrt(1.0 - math.exp(-2.0 * mi / dim))
    x = torch.randn(n, dim, generator=generator)
    y = rho * x + math.sqrt(1.0 - rho * rho) * torch.randn(n, dim, generator=generator)
    return x, y
