"""Paper figures from run rows, traces and summaries. Drawing only: nothing here reads a
results folder or computes a summary; ``mibench.report.make_report`` loads the runs and
summarizes them once, then hands the frames to ``make_figures``.

Every figure function takes DataFrames and returns a ``matplotlib.figure.Figure`` one column
wide (``WIDTH`` = 3.4 in); none touches pyplot's global state, so they work under any
backend and in tests (files are rendered with Agg). The true MI is always drawn (black,
dashed), MI axes are in nats, and the legend names the bounds and critics.

- ``curves``: ``fig_training`` (estimate vs training step per bound, the held-out estimate as
  a marker) and ``fig_staircase`` (traced estimates while the truth steps up, ln(K + 1) dotted).
- ``cells``: ``fig_bias_sd`` (bias and sd vs true MI), ``fig_negatives`` (estimate vs K, log
  axis), ``fig_throughput`` (pairs/s by bound and device) and ``fig_embedding`` (2-d PCA of a
  trained image encoder's embeddings, coloured by class), ``fig_truth`` (the estimate
  against the truth, one row per task: BMI's suites) and ``fig_estimate_vs_truth`` (every
  estimator, of every library and kind, against the truth, a panel per task family).
- ``heatmap``: ``fig_heatmap`` (task × estimator, log(estimate / truth) and the estimate: BMI's
  heatmap), drawn from the frame of the BMI-style table (``mibench.bmi_table``).
- ``style``: the rc style, a colour per bound, a line style per critic, legends, ``save_figure``.
- ``lines``: which line each row is on (``line_labels``): a figure draws exactly the cells of the
  tables, one point per cell, and cells that its colours, styles, panels and axes would merge
  are lines of their own, named in the legend by what differs ("InfoNCE, steps=20").
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd
from matplotlib.text import Text

from ..stats import cells_of, staircase_runs, with_library
from . import style
from .cells import fig_bias_sd, fig_embedding, fig_estimate_vs_truth, fig_negatives, fig_throughput, fig_truth
from .curves import fig_staircase, fig_training
from .heatmap import fig_heatmap
from .lines import line_labels, params_of
from .style import (CRITIC_STYLES, DPI, LOG_K, STYLE, TRUTH, WIDTH, slug, bound_colors, bound_label,
                    critic_style, save_figure)

__all__ = ["fig_training", "fig_staircase", "fig_bias_sd", "fig_negatives", "fig_throughput", "fig_embedding",
           "fig_truth", "fig_estimate_vs_truth", "fig_heatmap", "line_labels",
           "make_figures", "save_figure", "FIGURE_NOTES", "figure_note", "bound_label", "bound_colors",
           "critic_style", "style", "WIDTH", "DPI", "STYLE", "CRITIC_STYLES", "TRUTH", "LOG_K"]

log = logging.getLogger(__name__)

#: What each figure ``make_figures`` (or the report's ranking) draws shows, by the start of its
#: file name: (prefix, heading, one sentence). The report's page (``mibench.html``) titles them so.
FIGURE_NOTES = (
    ("cd_diagram", "Critical-difference diagram",
     "Each estimator at its mean rank over the tasks (1 = the smallest |bias|); a thick bar joins estimators "
     "whose mean ranks differ by less than the critical difference CD (Nemenyi test, α = 0.05)."),
    ("training", "Training curves",
     "The estimate on training batches against the training step, a line per estimator (mean over seeds), "
     "with the held-out estimate as a marker at the last step and the true MI dashed."),
    ("staircase", "Staircase training curves",
     "The training estimate while the true MI (dashed) steps up during training, a panel per critic, "
     "with InfoNCE's ceiling ln(K + 1) dotted."),
    ("bias_sd_staircase", "Bias and spread at each staircase level",
     "Top: the bias of the estimate averaged over the last half of each level against that level's true MI; "
     "bottom: its spread."),
    ("bias_sd", "Bias and spread against the true MI",
     "Top: each estimator's bias (mean estimate − true MI) with its 95% bootstrap interval, zero dashed; "
     "bottom: the within-run sd of the held-out estimate."),
    ("truth", "Estimates against the truth, per task",
     "A row per task in order of true MI (black bar): each estimator's mean held-out estimate with its "
     "95% bootstrap interval over seeds."),
    ("estimate_vs_truth", "Every estimator against the truth",
     "A panel per task family: each estimator's mean held-out estimate (95% bootstrap interval over seeds) "
     "grouped by true MI, the truth dashed."),
    ("heatmap", "Heatmap of estimate / truth (BMI's)",
     "A row per task and a column per estimator: the colour is log(estimate / true MI), blue below the truth "
     "and red above, and the number is the mean estimate; the last column is the truth."),
    ("negatives", "Estimate against the number of negatives",
     "The held-out estimate against the number of negatives K (log axis), with the truth dashed and "
     "ln(K + 1), InfoNCE's ceiling, dotted."),
    ("throughput", "Throughput",
     "Training pairs per second (median over runs) per estimator and device; a sample estimator's bar is "
     "its sample size over the seconds of its one estimate."),
    ("embedding", "Embeddings of a trained encoder",
     "A trained image encoder's embeddings of held-out images in their first two principal components, "
     "coloured by class."),
)


def figure_note(name: str) -> tuple[str, str]:
    """A figure's heading and one sentence on what it shows, by its file name ("training_joint"
    -> "Training curves (joint)", ...); the name itself and a plain sentence for a name that no
    entry of ``FIGURE_NOTES`` starts."""
    for prefix, heading, sentence in FIGURE_NOTES:
        if name.startswith(prefix):
            suffix = name[len(prefix):].strip("_")
            return heading + (f" ({suffix})" if suffix else ""), sentence
    return name, "A figure of this report."


def _estimator_lines(frame: pd.DataFrame) -> pd.DataFrame:
    """One line (colour) per estimator: a bound trained with several option values (SMILE at
    tau = 1, 5, inf) becomes "SMILE (tau=1)", ...; another library's estimator is named with its
    library ("InfoNCE (LIBRARY)"), so it never shares a colour with mibench's own; a sample
    estimator, which has no critic, gets the critic "none"."""
    if frame.empty or "bound" not in frame:
        return frame
    frame = frame.copy()
    if "options" in frame:
        opts = frame["options"].fillna("")
        several = opts.groupby(frame["bound"]).nunique()
        split = frame["bound"].map(lambda b: several.get(b, 0) > 1)
        frame.loc[split, "bound"] = [f"{bound_label(b)} ({o})" for b, o in zip(frame["bound"][split], opts[split])]
    if "library" in frame:
        other = frame["library"].notna() & (frame["library"] != "mibench")
        frame.loc[other, "bound"] = [with_library(bound_label(b), lb)
                                     for b, lb in zip(frame["bound"][other], frame["library"][other])]
    if "critic" in frame:
        frame["critic"] = frame["critic"].astype(object).where(frame["critic"].notna(), "none")
    return frame


def _by_task_variant(frame: pd.DataFrame, stem: str, order: pd.DataFrame | None = None
                     ) -> list[tuple[str, pd.DataFrame]]:
    """The rows split by their task parameters (the staircase's variants, e.g. a cubic y): the
    first variant is named ``stem``, the others ``stem_<parameter>-<value>`` by what differs.
    Variants come in the order they first appear in ``order`` (default: ``frame``), so a
    summary's figures are named as its runs' are."""
    if frame.empty or "task_params" not in frame:
        return [(stem, frame)]
    def variant(rows: pd.DataFrame) -> pd.Series:
        return rows["task_params"].map(lambda p: json.dumps(params_of(p), sort_keys=True, default=str))

    keys = variant(frame)
    seen = variant(order) if order is not None and "task_params" in order else keys
    every = list(dict.fromkeys([*seen, *keys]))
    first = json.loads(every[0])
    variants = [k for k in every if (keys == k).any()]
    out = []
    for key in variants:
        p = json.loads(key)
        differs = [f"{k}-{p.get(k)}" for k in sorted(set(p) | set(first)) if p.get(k) != first.get(k)]
        out.append((stem if not differs else f"{stem}_{slug('_'.join(differs))}", frame[keys == key]))
    return out


def make_figures(out_dir: str | os.PathLike, *, runs: pd.DataFrame, traces: pd.DataFrame,
                 summary: pd.DataFrame, staircase: pd.DataFrame,
                 embeddings: Mapping[str, pd.DataFrame] | None = None, units: str = "nats",
                 tasks: pd.DataFrame | None = None) -> list[Path]:
    """Every figure the given frames support, as PNG and PDF in ``out_dir``; figures without
    data are skipped. Returns the files written (and logs which figures were made and which
    skipped).

    runs: every run row (``load_results``); traces: their traces (``load_traces``);
    summary: ``stats.summarize(runs)`` of every run (the bias/sd figure takes the rows of the
    cells without staircase runs); staircase: ``stats.staircase_summary(traces, runs)``;
    embeddings: run_id -> (pc1, pc2, label) frame, one embedding figure each, named
    ``embedding`` (``embedding_<device>`` when runs on several devices have one) for the lowest
    seed and ``..._seed<N>`` for the other seeds; units: the units the frames are in ("nats", or "bits" from
    ``stats.in_units``), written on the axes; tasks: the frame of the BMI-style table
    (``bmi_table.bmi_table``), drawn as the ``heatmap``, or None for no heatmap.
    """
    if runs.empty:
        log.info("no runs: no figures")
        return []
    runs, summary, staircase = (_estimator_lines(f) for f in (runs, summary, staircase))
    stair = staircase_runs(runs)
    plain = runs[~runs.index.isin(stair.index)]
    plain_summary = summary[~cells_of(summary, stair)]
    jobs: list[tuple[str, Callable[[], Any]]] = []
    for grid, d in plain.groupby("grid", sort=False):
        jobs.append((f"training_{slug(grid)}" if grid else "training", lambda d=d: fig_training(traces, d)))
    for name, d in _by_task_variant(stair, "staircase"):     # a panel per critic in each
        jobs.append((name, lambda d=d: fig_staircase(traces, d)))
    jobs.append(("bias_sd", lambda: fig_bias_sd(plain_summary)))
    jobs.append(("truth", lambda: fig_truth(plain_summary)))
    jobs.append(("estimate_vs_truth", lambda: fig_estimate_vs_truth(plain_summary)))
    if tasks is not None:
        jobs.append(("heatmap", lambda: fig_heatmap(tasks)))
    for name, d in _by_task_variant(staircase, "bias_sd_staircase", order=stair):    # one per variant
        jobs.append((name, lambda d=d: fig_bias_sd(d)))
    jobs.append(("negatives", lambda: fig_negatives(runs)))
    jobs.append(("throughput", lambda: fig_throughput(runs)))
    embeddings = dict(embeddings or {})
    by_id = runs.drop_duplicates("run_id", keep="last").set_index("run_id")
    known = {r: by_id.loc[r] for r in embeddings if r in by_id.index}
    devices = {run["device"] for run in known.values()}
    # the lowest seed of each device first: it gets the plain name, the other seeds a suffix
    order = sorted(embeddings, key=lambda r: (r not in known, str(known[r]["device"]) if r in known else "",
                                              int(known[r]["seed"]) if r in known else 0, r))
    for run_id in order:
        emb, run = embeddings[run_id], known.get(run_id)
        name = "embedding" if run is None or len(devices) == 1 else f"embedding_{slug(run['device'])}"
        if name in {j[0] for j in jobs}:
            name = f"{name}_seed{int(run['seed'])}" if run is not None else f"embedding_{slug(run_id)}"
            if name in {j[0] for j in jobs}:
                name = f"embedding_{slug(run_id)}"
        cls = "digit" if run is not None and run.get("family") == "paired_mnist" else "class"
        jobs.append((name, lambda emb=emb, run=run, cls=cls: fig_embedding(emb, run=run, class_name=cls)))

    written: list[Path] = []
    made, skipped = [], []
    for name, build in jobs:
        try:
            fig = build()
        except (ValueError, KeyError) as exc:
            skipped.append(f"{name} ({exc})")
            continue
        if units != "nats":                  # the frames are converted; the labels follow
            for text in fig.findobj(Text):
                text.set_text(text.get_text().replace("nats", units))
        written += save_figure(fig, out_dir, name)
        made.append(name)
    log.info("figures made in %s: %s", out_dir, ", ".join(made) or "none")
    if skipped:
        log.info("figures skipped: %s", "; ".join(skipped))
    return written
