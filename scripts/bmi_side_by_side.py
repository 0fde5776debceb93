#!/usr/bin/env python3
"""mibench's estimators beside BMI's own package, per task: mean ± sd over seeds and the z of the
difference of the two means.

    python scripts/bmi_side_by_side.py results/reference/bmi_v2

reads the folder's runs (the ``bmi_v2`` preset runs both sides on the same tasks and samples:
its grids ``bmi_v2`` and ``classical`` for mibench, ``bmi_*`` for BMI's package) and writes
``side_by_side.csv`` and ``side_by_side.md`` into it. For each pair (``PAIRS``) and task with
runs on both sides, z = (mean_mibench - mean_bmi) / sqrt(sd_mibench² / n_mibench + sd_bmi² /
n_bmi) (sd over seeds, ddof 1); a cell is "within 3 SE" when |z| <= 3. With three seeds on one
side that standard error is itself uncertain, so z is Welch's t: each cell also gets Welch's
degrees of freedom, the two-sided p of its z, and the chance that |z| > 3 when both sides have
the same mean (P3); the count line adds the sum of P3 over an estimator's cells, the number
of cells expected beyond 3 SE by chance alone. Two sides whose every
seed agrees to the last digits (KSG, CCA: the same computation on the same samples) have sd of
the difference near zero and a z that means nothing; those cells are marked by the largest
same-seed difference instead. The last lines count the cells within 3 SE per estimator.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import pandas as pd
from scipy import stats

from mibench.atomic import write_text
from mibench.bmi_table import task_params_dict
from mibench.results import load_results
from mibench.tables import markdown_table, write_csv

# (mibench's bound or sample estimator, the grid it ran in) -> BMI's label in the same folder
PAIRS = {("infonce", "bmi_v2"): "InfoNCE (BMI)", ("nwj", "bmi_v2"): "NWJ (BMI)", ("mine", "mine"): "MINE (BMI)",
         ("dv", "bmi_v2"): "DV (BMI)", ("ksg", "classical"): "KSG (BMI)", ("cca", "classical"): "CCA (BMI)"}
SAME_SEED_EXACT = 1e-4      # nats: same-seed estimates this close are one computation done twice


def _cells(runs: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    ok = runs[mask & (runs["status"] == "ok")]
    return ok.groupby("task")["mi_estimate"].agg(["mean", "std", "count"])


def side_by_side(runs: pd.DataFrame) -> pd.DataFrame:
    """A row per (estimator pair, task) with runs on both sides."""
    runs = runs.assign(task=[task_params_dict(p).get("name", str(p)) for p in runs["task_params"]])
    grids = runs["grids"].map(lambda g: set(g) if isinstance(g, list) else {runs["grid"]})
    out = []
    for (bound, grid), label in PAIRS.items():
        mine_mask = (runs["bound"] == bound) & (runs["library"] == "mibench") & grids.map(lambda g: grid in g)
        theirs_mask = runs["bound"] == label
        ours, theirs = _cells(runs, mine_mask), _cells(runs, theirs_mask)
        for task in ours.index.intersection(theirs.index):
            a, b = ours.loc[task], theirs.loc[task]
            se = math.sqrt((a["std"] ** 2 / a["count"] if a["count"] > 1 else 0) +
                           (b["std"] ** 2 / b["count"] if b["count"] > 1 else 0))
            both = runs[(mine_mask | theirs_mask) & (runs["task"] == task) & (runs["status"] == "ok")]
            same_seed = both.pivot_table(index="seed", columns=mine_mask[both.index].map({True: "m", False: "b"}),
                                         values="mi_estimate").dropna()
            gap = float((same_seed["m"] - same_seed["b"]).abs().max()) if len(same_seed) and \
                {"m", "b"} <= set(same_seed.columns) else math.nan
            exact = math.isfinite(gap) and gap <= SAME_SEED_EXACT
            z = (a["mean"] - b["mean"]) / se if se > 0 else math.nan
            df = welch_df(a["std"], a["count"], b["std"], b["count"])
            out.append({"estimator": bound, "task": task, "truth": float(runs.loc[theirs_mask & (runs["task"] == task),
                                                                               "mi_true"].iloc[0]),
                        "mibench mean": a["mean"], "mibench sd": a["std"], "mibench seeds": int(a["count"]),
                        "BMI mean": b["mean"], "BMI sd": b["std"], "BMI seeds": int(b["count"]),
                        "z": z, "welch df": df,
                        "p": float(2 * stats.t.sf(abs(z), df)) if math.isfinite(z) and math.isfinite(df) else math.nan,
                        "P3": float(2 * stats.t.sf(3.0, df)) if math.isfinite(df) and not exact else 0.0,
                        "same-seed max diff": gap,
                        "within 3 SE": bool(exact or (math.isfinite(z) and abs(z) <= 3))})
    return pd.DataFrame(out)


def welch_df(sd_a: float, n_a: int, sd_b: float, n_b: int) -> float:
    """Welch-Satterthwaite degrees of freedom of the difference of two means."""
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    denominator = (va ** 2 / (n_a - 1) if n_a > 1 else 0) + (vb ** 2 / (n_b - 1) if n_b > 1 else 0)
    return (va + vb) ** 2 / denominator if denominator > 0 else math.nan


def _display(table: pd.DataFrame) -> pd.DataFrame:
    def pm(m: float, s: float) -> str:
        return f"{m:.3f} ± {s:.3f}" if math.isfinite(s) else f"{m:.3f}"

    return pd.DataFrame({
        "estimator": table["estimator"], "task": table["task"], "true MI": table["truth"].map(lambda v: f"{v:.3f}"),
        "mibench": [pm(m, s) for m, s in zip(table["mibench mean"], table["mibench sd"])],
        "BMI": [pm(m, s) for m, s in zip(table["BMI mean"], table["BMI sd"])],
        "seeds": [f"{a} / {b}" for a, b in zip(table["mibench seeds"], table["BMI seeds"])],
        "z": [("same seeds agree to %.1e" % g) if math.isfinite(g) and g <= SAME_SEED_EXACT else
              ("–" if not math.isfinite(z) else f"{z:+.2f}") for z, g in zip(table["z"], table["same-seed max diff"])],
        "Welch df": table["welch df"].map(lambda v: f"{v:.1f}" if math.isfinite(v) else "–"),
        "p": table["p"].map(lambda v: f"{v:.3f}" if math.isfinite(v) else "–"),
        "": table["within 3 SE"].map(lambda w: "" if w else "beyond 3 SE")})


def counts(table: pd.DataFrame) -> str:
    """ "infonce 24 of 26 (1.9 beyond by chance), ..." per estimator, in PAIRS order: the cells
    within 3 SE, and the sum of P3 (the cells expected beyond 3 SE when the means are equal)."""
    parts = []
    for bound, _ in PAIRS:
        mine = table[table["estimator"] == bound]
        if len(mine):
            parts.append(f"{bound} {int(mine['within 3 SE'].sum())} of {len(mine)} "
                         f"({mine['P3'].sum():.1f} beyond by chance)")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    args = parser.parse_args(argv)
    runs = load_results(args.folder)
    if runs.empty:
        print(f"{args.folder}: no runs", file=sys.stderr)
        return 2
    table = side_by_side(runs)
    if table.empty:
        print(f"{args.folder}: no task has runs of both mibench and BMI's package", file=sys.stderr)
        return 2
    write_csv(table, args.folder / "side_by_side.csv")
    note = ("mean ± sd over seeds (nats); z of the difference of the means (Welch's t, its degrees of freedom "
            "and two-sided p); seeds: mibench / BMI. "
            f"Within 3 standard errors: {counts(table)}")
    write_text(args.folder / "side_by_side.md", markdown_table(_display(table), {}, note))
    print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
