"""The figures: FLOPs per step, the rows (medians, ratio, fraction of the roofline), the
Markdown table and the JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Sequence

COLUMNS = ["bound", "dims", "mibench steps/s", "BMI steps/s", "ratio", "MFLOP/step",
           "mibench % roofline", "BMI % roofline", "BMI compile s"]


def critic_flops(dx: int, dy: int, hidden: Sequence[int], *, n_x: int, n_y: int, n_pairs: int,
                 concat: bool = False) -> int:
    """FLOPs of one training step's critic: the forward and the backward pass of the joint
    critic f(x, y) = MLP([x, y]) (hidden layers ``hidden``, one output) on ``n_pairs`` pairs
    made of ``n_x`` distinct x rows and ``n_y`` distinct y rows.

    A multiply-add counts 2 FLOPs. The first layer is split, W [x; y] = W_x x + W_y y, so it
    multiplies each row once and the pairs meet in a sum. With h_1, ..., h_L = ``hidden``,
    h_{L+1} = 1 and P = ``n_pairs``:

        first layer on the rows, forward and weight gradient     4 h_1 (n_x dx + n_y dy)
        the pair sums a_i + c_j, forward, and the two
          reductions of their gradient (to the a and to the c)   3 P h_1
        each later layer k -> k + 1 on the P pairs: forward,
          gradient of its input, gradient of its weights         6 P h_k h_{k+1}
          its bias: added forward, gradient summed backward      2 P h_{k+1}

    Left out: the ReLUs (comparisons), the first layer's bias (once per x row) and the bound on
    the P scores (a few operations a score, under 1 %). For hidden (16, 8) and a batch of 256
    scored on all its 256 x 256 pairs: 57.97 MFLOP at 5 x 5, 59.44 MFLOP at 50 x 50.

    ``concat``: the arithmetic of the same scores with the first layer applied to every
    concatenated pair [x_i; y_j] (as BMI's critic computes them): 4 P h_1 (dx + dy) for its
    forward and weight gradient and 2 P h_1 for its bias, in place of the first two lines.
    """
    h = [*hidden, 1]
    later = sum(6 * n_pairs * a * b + 2 * n_pairs * b for a, b in zip(h[:-1], h[1:]))
    if concat:
        return 4 * n_pairs * h[0] * (dx + dy) + 2 * n_pairs * h[0] + later
    return 4 * h[0] * (n_x * dx + n_y * dy) + 3 * n_pairs * h[0] + later


def step_flops(bound: str, dims: int, hidden: Sequence[int], batch: int, library: str,
               concat: bool = False, shuffled: bool = False) -> int:
    """The critic's FLOPs per training step of ``library``: all batch x batch pairs, except
    BMI's MINE, which scores a batch and the y of a second, independent batch (2 x batch pairs,
    2 x batch y rows), and mibench's bounds with ``negatives = "shuffled"`` (``shuffled``),
    which do the same."""
    if (library == "bmi" and bound == "mine") or (library == "mibench" and shuffled):
        return critic_flops(dims, dims, hidden, n_x=batch, n_y=2 * batch, n_pairs=2 * batch, concat=concat)
    return critic_flops(dims, dims, hidden, n_x=batch, n_y=batch, n_pairs=batch * batch, concat=concat)


def _median(runs: list[dict], key: str) -> float | None:
    return statistics.median(r[key] for r in runs) if runs else None


def rows(runs: dict, cell: dict, peak_gflops: float) -> list[dict]:
    """One row per (bound, dims) from ``runs[(bound, dims)][library]`` (lists of measurements)."""
    hidden, batch = cell["hidden"], cell["batch_size"]
    out = []
    for (bound, dims), by_lib in runs.items():
        shuffled = cell.get("per_bound", {}).get(bound, {}).get("negatives") == "shuffled"
        row = {"bound": bound, "dims": dims, "shuffled": shuffled,
               "flops_per_step": step_flops(bound, dims, hidden, batch, "mibench", shuffled=shuffled)}
        for lib in ("mibench", "bmi"):
            measured = by_lib.get(lib, [])
            rate = _median(measured, "steps_per_s")
            flops = step_flops(bound, dims, hidden, batch, lib, shuffled=shuffled)
            row[lib] = {"runs": measured, "steps_per_s": rate, "first_s": _median(measured, "first_s"),
                        "flops_per_step": flops,
                        "roofline_pct": None if rate is None else 100 * flops * rate / (peak_gflops * 1e9)}
        # what BMI's critic computes: its first layer on every concatenated pair
        row["bmi"]["flops_per_step_concat"] = step_flops(bound, dims, hidden, batch, "bmi", concat=True)
        m, b = row["mibench"]["steps_per_s"], row["bmi"]["steps_per_s"]
        row["ratio"] = m / b if m and b else None
        out.append(row)
    return out


def _fmt(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def table(table_rows: list[dict]) -> str:
    """The Markdown table: one line per row, COLUMNS in order."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|---|" + "---:|" * (len(COLUMNS) - 2)]
    for r in table_rows:
        m, b = r["mibench"], r["bmi"]
        cells = [r["bound"], f"{r['dims']}x{r['dims']}", _fmt(m["steps_per_s"], 1), _fmt(b["steps_per_s"], 1),
                 _fmt(r["ratio"], 2), _fmt(r["flops_per_step"] / 1e6, 2), _fmt(m["roofline_pct"], 1),
                 _fmt(b["roofline_pct"], 1), _fmt(b["first_s"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(table_rows: list[dict], have_bmi: bool) -> list[str]:
    """What a reader of the table needs beside it."""
    out = ["MFLOP/step: the critic's forward and backward pass on all 256 x 256 pairs of a batch, first "
           "layer split (critic_flops in scripts/bmi_compare/report.py); % roofline: FLOPs/s against the "
           "matmul peak above."]
    if not have_bmi:
        out.append("BMI's columns are empty: its environment was not there (or --no-bmi).")
        return out
    mine = [r for r in table_rows if r["bound"] == "mine"]
    if mine:
        flops = [r["bmi"]["flops_per_step"] / 1e6 for r in mine]
        span = f"{min(flops):.2f}" + (f" to {max(flops):.2f}" if max(flops) > min(flops) else "")
        if all(r.get("shuffled") for r in mine):
            out.append(f"MINE: both libraries' steps score 2 x 256 pairs (a batch, and its x with the y of a "
                       f"second, independent batch: the preset's negatives = \"shuffled\"), {span} MFLOP; the "
                       "MFLOP/step column counts those on MINE's rows.")
        else:
            out.append(f"MINE: BMI's step scores 2 x 256 pairs (a batch, and its x with the y of a second, "
                       f"independent batch), {span} MFLOP; its % roofline counts those, and its ratio compares "
                       "steps of unequal work.")
    out.append("BMI compile s: the warm-up steps' cost beyond as many steady steps (JAX tracing and XLA "
               "compilation of the step, paid on every call of BMI's training loop).")
    return out


def save_json(path: str, table_rows: list[dict], *, meta: dict) -> None:
    """Every measurement, the medians, ratios, FLOPs, peaks, versions and settings."""
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(), **meta}
    Path(path).write_text(json.dumps({"meta": meta, "rows": table_rows}, indent=2) + "\n")
    print(f"saved {path}")
