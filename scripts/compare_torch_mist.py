#!/usr/bin/env python3
"""Training speed of mibench and torch-mist 0.2.17, measured side by side in one run.

Not part of the test suite: a reproducible benchmark for comparing the two libraries on the
same problems, the same batch sizes and one torch thread each.

Usage (from a checkout, with a Python that has mibench installed):

    python scripts/compare_torch_mist.py                    # everything, 5 alternating repeats
    python scripts/compare_torch_mist.py --quick            # smoke check: a few steps, 1 repeat
    python scripts/compare_torch_mist.py --only mnist --repeats 7 --json out.json
    python scripts/compare_torch_mist.py --only gaussian --seconds 4

The first run creates a virtual environment for torch-mist (default
~/.cache/mibench-bench/torch-mist-0.2.17, see --venv) and pip-installs into it
``torch-mist==0.2.17 'numpy<2' 'pandas<3'`` plus the torch and torchvision versions that the
running Python has, so both libraries run on the same torch; later runs reuse it. Extra pip
options (an index URL, say) go in --pip-args.

How it measures. Each library runs in its own worker process (mibench in this Python,
torch-mist in its environment), both with ``torch.set_num_threads(1)`` and one thread for
OpenMP/MKL. The workers stay up for the whole run and only one computes at a time. For every
series the driver first runs a short probe, which also warms the worker up, and picks the
number of timed steps N so that a measurement lasts about --seconds; then it measures the series
of one comparison in turn (A, B, B, A, ... : the order flips every repeat), each time W warm-up
steps followed by N timed steps, and reports the median over --repeats.

What is compared.

Seed MNIST cell (batch 128; one conv encoder shared by x and y,
Conv2d(1,16,3)-ReLU-Conv2d(16,32,5,stride 3)-ReLU-Conv2d(32,128,8)-ReLU-Flatten-Linear(128,16);
SMILE tau 5; joint critic [64, 32]; 32 negatives), in pairs per second:
  (a) torch-mist, its training loop as its paired-MNIST example drives it: a per-item Dataset
      that finds a same-label partner with an O(N) search over the labels, a DataLoader with
      batch 128, shuffle and num_workers=0, the Adam optimizer torch-mist builds (one
      parameter group per tensor, lr 5e-4), its default PandasLogger logging the loss and the
      mutual information every step
      (``torch_mist.utils.train.model.train_epoch``, the loop ``train_mi_estimator`` runs; it
      is called directly so that the once-per-call setup, a pass over all 60,000 items that
      checks them for NaNs, is not paid on every repeat: it lies outside the timed steps
      anyway).
  (b) the same torch-mist estimator in a plain eager loop on pre-loaded batches:
      ``loss = estimator.loss(x, y); opt.zero_grad(); loss.backward(); opt.step()`` with
      torch.optim.Adam, the model-only limit of (a). It cycles through 4 fixed batches rather
      than one: torch-mist caches its intermediate results keyed on the input values, and a
      repeated batch would hand back the graph of the previous step.
  (c) mibench's ``fit`` on ``PairedImages("mnist", "train")`` with the seed spec.
  (d) mibench's model-only step on the same 4 fixed batches:
      ``loss = est.loss(x, y, 32, gen); opt.zero_grad(); loss.backward(); opt.step()`` with the
      optimizer ``fit`` builds.
  (b') (b) again in a torch-mist process started with glibc's malloc thresholds set the way
      mibench sets them (see "The allocator" below).
  Ratios: c/a (target >= 2), d/c (target <= 1.15: fit within 15% of its model-only limit),
  and for information b/a, d/b and d/b'.

20-d correlated Gaussian (I = 4 nats; batch 128), in steps per second:
  infonce_sep      InfoNCE, separable critic, all in-batch negatives. torch-mist:
                   ``infonce(x_dim=20, y_dim=20, hidden_dims=[128], critic_type="separable")``;
                   with no ``k_dim`` its separable critic uses the last entry of hidden_dims as
                   the projection size, so each side is a single Linear(20, 128). mibench
                   matches that network: hidden = [], critic_dim = 128.
  infonce_sep_wide mibench only: hidden = [128], critic_dim = 128, i.e. "[128]" read as a hidden
                   layer (one more Linear + ReLU per side than torch-mist's network).
  smile_joint_all  SMILE, joint critic [128], all negatives. torch-mist: ``smile(...,
                   hidden_dims=[128], critic_type="joint", neg_samples=-1)`` (B - 1 = 127
                   negatives, the positive excluded, as in mibench's negatives = "all").
  smile_joint_32   the same with 32 negatives (``neg_samples=32``; mibench negatives = 32).
  mibench runs ``fit`` on ``CorrelatedGaussian(20, mi=4)``. torch-mist runs two ways:
  "plain", a loop that draws a fresh batch and calls the estimator's ``loss`` with Adam, and
  "train_mi_estimator", its training utility on a data set of samples (per-item DataLoader,
  PandasLogger logging the loss and the mutual information every step). The ratio
  mibench / torch-mist is printed against both; the plain loop is the like-for-like one (like
  fit, it draws a fresh batch and takes one optimizer step, nothing else). A third torch-mist
  series runs the plain loop with the same allocator setting as mibench.

The allocator. mibench raises glibc's mmap and trim thresholds when it starts training
(``mibench.cpu.keep_freed_buffers``), so the megabyte-sized activations of one step reuse the
previous step's memory instead of being mapped and zero-filled afresh. torch-mist, like plain
PyTorch, runs with glibc's defaults. The "same allocator" series start torch-mist's worker with
MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ set to the same values, to show how much of
each ratio is that setting and how much is the rest of mibench's step.

--json OUT saves every measurement, the medians, the ratios and the versions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

# The implementation lives in the package next to this file (scripts/torch_mist_compare/): one
# module per job. The workers run this file too, torch-mist's in its own environment, so the
# package is found by this file's path, not through an installed distribution.
_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from torch_mist_compare.venv import DEFAULT_VENV  # noqa: E402
from torch_mist_compare.worker import SIDES  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Training speed of mibench and torch-mist side by side "
                                            "(see the module docstring).")
    p.add_argument("--quick", action="store_true",
                   help="a smoke check: 1 repeat of a few steps per series (3 on MNIST, 10 on the Gaussian), no probe")
    p.add_argument("--repeats", type=int, default=None, help="alternating repeats per series (default 5; 1 with --quick)")
    p.add_argument("--seconds", type=float, default=None,
                   help="target length of one timed measurement, which sets N (default 8)")
    p.add_argument("--only", choices=["mnist", "gaussian"], help="run one of the two comparisons")
    p.add_argument("--json", metavar="OUT", help="save the figures to this JSON file")
    p.add_argument("--data-dir", help="MNIST root in torchvision's layout (default: as mibench resolves it)")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help=f"torch-mist's environment (default {DEFAULT_VENV})")
    p.add_argument("--pip-args", default="", help="extra options for pip when creating that environment")
    # a worker process (torch_mist_compare.worker): its side and the seed MNIST cell as JSON
    p.add_argument("--worker", choices=list(SIDES), help=argparse.SUPPRESS)
    p.add_argument("--seed-cell", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        from torch_mist_compare.worker import serve

        if not args.seed_cell:
            p.error("--worker needs --seed-cell")
        serve(args.worker, args.data_dir, json.loads(args.seed_cell))
        return 0

    from torch_mist_compare.driver import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
