"""Figures over cells: one point or bar per (bound, critic, ...) summary.

- ``fig_bias_sd``: bias and sd vs true MI, one line per bound, line style per critic.
- ``fig_negatives``: estimate vs number of negatives K (log axis), ln(K + 1) and the truth.
- ``fig_throughput``: pairs/s by bound and device (horizontal bars, log axis).
- ``fig_embedding``: 2-d PCA of a trained image encoder's embeddings, coloured by class.
- ``fig_truth``: the estimate against the truth, one row per task.
- ``fig_estimate_vs_truth``: every estimator against the truth, a panel per task family.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..stats import staircase_runs
from .lines import LINE, keep_lines, natural, per_cell, pooled_note, with_lines
from .style import (LOG_K, TRUTH, compact, encodings, add_legend, logk_handle, new_figure, finished_runs, bound_order,
                    styled, truth_marker, bound_colors, bound_label)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# 3. Bias and sd vs true MI


@styled
def fig_bias_sd(summary: pd.DataFrame, *, sd: str = "within_sd", height: float = 3.3):
    """Bias and spread [nats] vs true MI [nats], one line per bound, line style per critic;
    every point a cell of the summary (never a mean of cells).

    summary: ``stats.summarize`` (or ``stats.staircase_summary``) rows: bound, critic,
        mi_true, bias, optional bias_ci_low / bias_ci_high (drawn as error bars) and the sd
        column ``sd``: "within_sd" (batch-to-batch sd of the held-out estimate, Song & Ermon
        2020; the default) or "sd" (across seeds).
    Cells of one bound and critic that differ in another key (steps, K, the preset, ...) are
    lines of their own, named in the legend by what differs ("InfoNCE, steps=20":
    ``lines.line_labels``); tasks along the truth axis (BMI's) are points of one line. A line
    needs cells at two or more true MIs.
    Top: bias, with zero bias (the truth) dashed and, when every row has one K, the InfoNCE
    limit ln(K + 1) − I dotted. Bottom: the sd. An axis whose values pass ten times the
    largest truth is drawn symmetric-log.
    """
    rows = summary[np.isfinite(pd.to_numeric(summary["bias"], errors="coerce"))]
    rows = keep_lines(rows, along="mi_true")
    if rows.empty:
        raise ValueError("fig_bias_sd: no bound/critic with estimates at two or more true MI values")
    lines, critics, colors, styles = encodings(rows)
    fig, (ax_b, ax_s) = new_figure(height, nrows=2)
    for (bound, critic, label), d in rows.groupby(["bound", "critic", LINE]):
        d = d.sort_values(["mi_true", "task_params"] if "task_params" in d else "mi_true", kind="stable")
        ls, marker = styles[critic]
        kw = dict(color=colors[(bound, label)], ls=ls, marker=marker, markersize=3)
        yerr = None
        if {"bias_ci_low", "bias_ci_high"} <= set(d) and d["bias_ci_low"].notna().any():
            yerr = np.vstack([d["bias"] - d["bias_ci_low"], d["bias_ci_high"] - d["bias"]])
        ax_b.errorbar(d["mi_true"], d["bias"], yerr=yerr, elinewidth=0.7, capsize=1.5, **kw)
        ax_s.plot(d["mi_true"], d[sd], **kw)
    mis = np.array(sorted(set(rows["mi_true"])))
    ax_b.axhline(0.0, **TRUTH)
    extra = [(truth_marker()[0], "zero bias (truth)")]
    ks = sorted(set(rows["n_negatives"])) if "n_negatives" in rows else []
    if len(ks) == 1:
        grid = np.linspace(mis.min(), mis.max(), 100)
        ax_b.plot(grid, np.minimum(math.log(ks[0] + 1) - grid, 0.0), **LOG_K)
        extra.append((logk_handle()[0], f"ln(K+1) − MI, K = {ks[0]}"))
    ax_b.set_ylabel("bias [nats]")
    ax_s.set_ylabel(("within-run sd" if sd == "within_sd" else "sd over seeds") + " [nats]")
    ax_s.set_xlabel("true MI [nats]")
    ax_s.set_xticks(mis)
    ax_s.set_ylim(bottom=0)
    # A bound that blew up (bias of thousands of nats) would flatten every other line: past
    # ten times the largest truth, both axes turn symmetric-log (linear within +-1 nat).
    for ax, col in ((ax_b, "bias"), (ax_s, sd)):
        values = np.abs(pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float))
        if (values[np.isfinite(values)] > 10 * mis.max()).any():
            ax.set_yscale("symlog", linthresh=1.0)
    if len(critics) == 1:
        ax_b.set_title(f"{critics[0]} critic", loc="left", pad=2)
    add_legend(fig, lines, critics, extra=extra, ncol=3)
    return fig


# --------------------------------------------------------------------------------------------
# 4. Estimate vs number of negatives


@styled
def fig_negatives(runs: pd.DataFrame, *, height: float = 2.6):
    """Held-out estimate [nats] vs K negatives per positive (log axis), one line per bound and
    critic, each point a cell: mean ± sd over its runs (seeds), with ln(K + 1) dotted and the
    truth dashed.

    runs: run rows; a line needs ok runs at two or more K. Cells of one bound and critic that
    differ in another key (steps, batch size, the truth, the device, ...) are lines of their own,
    named in the legend by what differs (``lines.line_labels``).
    """
    ok = finished_runs(runs)
    ok = ok[~ok.index.isin(staircase_runs(ok).index) & np.isfinite(ok["mi_estimate"])]
    agg = per_cell(ok.assign(_mi=ok["mi_true"].round(6)), "mi_estimate")
    agg = keep_lines(agg, along="n_negatives")
    if agg.empty:
        raise ValueError("fig_negatives: no bound with estimates at two or more K")
    lines, critics, colors, styles = encodings(agg)
    steps = sorted(set(agg["steps"]))
    fig, (ax,) = new_figure(height)
    for (bound, critic, label), d in agg.groupby(["bound", "critic", LINE], sort=True):
        d = d.sort_values("n_negatives", kind="stable")
        ls, marker = styles[critic]
        ax.errorbar(d["n_negatives"], d["mean"], yerr=d["std"].fillna(0), color=colors[(bound, label)], ls=ls,
                    marker=marker, elinewidth=0.7, capsize=1.5)
    ks = np.array(sorted(set(agg["n_negatives"])))
    grid = np.geomspace(ks.min(), ks.max(), 200)
    ax.plot(grid, np.log(grid + 1), **LOG_K)
    for mi in sorted(set(agg["_mi"])):
        ax.axhline(float(mi), **TRUTH)
    ax.set_xscale("log")
    ax.set_xticks(ks)
    ax.set_xticklabels([str(int(k)) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("negatives per positive K (log scale)")
    ax.set_ylabel("held-out estimate [nats]")
    title = [f"{critics[0]} critic"] if len(critics) == 1 else []
    if len(steps) == 1:                  # else the legend names each line's steps
        title.append(f"{int(steps[0]):,} training steps")
    ax.set_title(", ".join(title), loc="left", pad=2)
    add_legend(fig, lines, critics, extra=[truth_marker(), logk_handle()])
    return fig


# --------------------------------------------------------------------------------------------
# 5. Throughput


@styled
def fig_throughput(runs: pd.DataFrame, *, bar_height: float = 0.2):
    """Training throughput [pairs/s], median over runs, one bar per device for each bound (and
    critic / K when those vary); a log axis when the fastest is over 20x the slowest.
    runs: run rows with pairs_per_s.

    A bar pools the seeds of a cell and, on purpose, the tasks it was measured on (the true MIs
    of a sweep, BMI's tasks, and the grids that name them): the title says so when it does.
    Cells that differ in another key (steps, batch size, ...) are bars of their own, named by
    what differs (``lines.line_labels``)."""
    ok = finished_runs(runs)
    ok = ok[np.isfinite(pd.to_numeric(ok.get("pairs_per_s"), errors="coerce"))]
    if ok.empty:
        raise ValueError("fig_throughput: no runs with a throughput")
    multi_c = ok["critic"].nunique() > 1
    multi_k = ok["n_negatives"].nunique() > 1
    order_b = bound_order(ok["bound"])
    pooled = ("grid", "task_params")          # the tasks (and the sweeps that name them) a bar pools
    ok = with_lines(ok, encoded=("bound", "critic", "n_negatives", "device"), pooled=pooled)

    def label(r) -> str:
        parts = [bound_label(r["bound"])]
        if multi_c:
            parts.append(str(r["critic"]))
        if multi_k:
            parts.append(f"K={r['n_negatives']}")
        if r[LINE]:
            parts.append(r[LINE])
        return ", ".join(parts)

    ok = ok.assign(_label=ok.apply(label, axis=1),
                   _order=ok["bound"].map(order_b.index))
    note = pooled_note(ok, ["_label", "device"], pooled)
    agg = ok.groupby(["_label", "device"], as_index=False).agg(pairs_per_s=("pairs_per_s", "median"),
                                                              _order=("_order", "first"),
                                                              critic=("critic", "first"),
                                                              k=("n_negatives", "first"))
    agg["_natural"] = agg["_label"].map(sorted(set(agg["_label"]), key=natural).index)
    labels = agg.sort_values(["_order", "critic", "k", "_natural"], kind="stable")["_label"].drop_duplicates().tolist()
    devices = sorted(set(agg["device"]), key=lambda d: (d != "cpu", d))
    n_bars = len(labels)
    fig, (ax,) = new_figure(0.9 + n_bars * bar_height * max(1, len(devices)) * 0.75)
    sns.barplot(data=agg, y="_label", x="pairs_per_s", hue="device", order=labels, hue_order=devices,
                orient="h", ax=ax, palette=sns.color_palette("gray", len(devices) + 1)[:len(devices)]
                if len(devices) > 1 else ["0.45"], legend=len(devices) > 1)
    lo, hi = agg["pairs_per_s"].min(), agg["pairs_per_s"].max()
    log_axis = hi > 20 * lo
    if log_axis:                          # CPU vs GPU, separable vs joint: orders of magnitude
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlim(lo / 2, hi * 2.5)
    else:
        ax.set_xlim(0, hi * 1.18)
    ax.xaxis.set_major_formatter(FuncFormatter(compact))
    for container in ax.containers:
        ax.bar_label(container, labels=[f"{v:,.0f}" for v in container.datavalues], padding=1.5,
                     fontsize=5.5)
    ax.set_ylabel("")
    ax.set_xlabel("training throughput [pairs/s" + (", log scale]" if log_axis else "]"))
    ax.grid(axis="y", visible=False)
    colors = bound_colors(order_b)
    for tick in ax.get_yticklabels():      # colour the bound names as in the other figures
        name = tick.get_text().split(",")[0]
        match = [b for b in order_b if bound_label(b) == name]
        if match:
            tick.set_color(colors[match[0]])
    if note:                              # what a bar pools besides a cell's seeds, under the axis
        fig.supxlabel(f"bars: median over seeds, {note}", x=0.02, ha="left", fontsize=6.5)
    if len(devices) > 1:
        handles, texts = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        fig.legend(handles, [f"device: {t}" for t in texts], loc="outside upper center", ncol=len(devices))
    else:
        ax.set_title(f"device: {devices[0]}", loc="left", pad=2)
    return fig


# --------------------------------------------------------------------------------------------
# 6. Embedding of a trained image encoder


@styled
def fig_embedding(emb: pd.DataFrame, *, run: dict | pd.Series | None = None, class_name: str = "digit",
                  height: float = 3.0):
    """Scatter of the first two principal components of the embeddings, coloured by class.

    emb: (pc1, pc2, label): the 2-d PCA of the trained x encoder's embeddings of a fixed
        sample of test images and their classes, as a run with ``save_model`` writes it to
        ``DIR/embeddings/<run_id>.csv``. run: the run's row, to state the held-out estimate
        against the true MI [nats] in the title.
    """
    fig, (ax,) = new_figure(height)
    labels = sorted(set(emb["label"]))
    sns.scatterplot(data=emb, x="pc1", y="pc2", hue="label", hue_order=labels,
                    palette=sns.color_palette("tab10", len(labels)), s=4, linewidth=0, alpha=0.8,
                    ax=ax, legend=False, rasterized=True)
    for lab in labels:               # label each cluster at its median
        d = emb[emb["label"] == lab]
        ax.annotate(str(lab), (d["pc1"].median(), d["pc2"].median()), fontsize=7.5, weight="bold",
                    ha="center", va="center", color="black",
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.7))
    ax.set_xlabel("principal component 1 [embedding units]")
    ax.set_ylabel("principal component 2")
    ax.set_aspect("equal", adjustable="datalim")
    palette = sns.color_palette("tab10", len(labels))
    handles = [Line2D([], [], ls="none", marker="o", color=palette[i], markersize=3.5) for i in range(len(labels))]
    fig.legend(handles, [str(lab) for lab in labels], title=class_name, loc="outside right center",
               handletextpad=0.1, labelspacing=0.3)
    if run is not None:
        title = (f"{bound_label(run['bound'])}, {run['critic']} critic, K = {run['n_negatives']}: "
                 f"{run['mi_estimate']:.2f} nats\n(true MI {run['mi_true']:.3f} nats)")
        ax.set_title(title, loc="left", pad=3)
    return fig


# --------------------------------------------------------------------------------------------
# 7. Estimate against truth, task by task


@styled
def fig_truth(summary: pd.DataFrame, *, row_height: float = 0.28):
    """Held-out estimate [nats] against the truth, one row per task (the task parameters that
    vary between cells, e.g. BMI's task id), rows ordered by true MI: the truth a black bar, each
    bound a coloured marker (line style per critic) with its 95 % bootstrap interval of the bias
    when there are several seeds.

    summary: ``stats.summarize`` rows; needs three or more tasks with estimates.
    """
    from ..tables import varying_params

    rows = summary[np.isfinite(pd.to_numeric(summary["mean"], errors="coerce"))].copy()
    labels = varying_params(rows)
    if labels is None or labels.nunique() < 3:
        raise ValueError("fig_truth: fewer than three tasks with estimates")
    rows["_task"] = labels
    rows = with_lines(rows, encoded=("bound", "critic", "task_params"))
    order = rows.groupby("_task")["mi_true"].first().sort_values().index.tolist()
    lines, critics, colors, styles = encodings(rows)
    fig, (ax,) = new_figure(0.9 + row_height * len(order))
    pos = {t: i for i, t in enumerate(order)}
    markers = sorted(rows.groupby(["bound", "critic", LINE]).groups,
                     key=lambda bcl: (lines.index((bcl[0], bcl[2])), bcl[1]))
    for j, (bound, critic, label) in enumerate(markers):
        d = rows[(rows["bound"] == bound) & (rows["critic"] == critic) & (rows[LINE] == label)]
        y = d["_task"].map(pos) + 0.12 * (j - (len(markers) - 1) / 2)        # dodge the markers
        xerr = None
        if d["bias_ci_low"].notna().any():
            xerr = np.vstack([d["bias"] - d["bias_ci_low"], d["bias_ci_high"] - d["bias"]])
        ax.errorbar(d["mean"], y, xerr=xerr, ls="none", marker=styles[critic][1], color=colors[(bound, label)],
                    markersize=3.5, elinewidth=0.7, capsize=1.5)
    truth = rows.groupby("_task")["mi_true"].first()
    ax.scatter(truth[order], range(len(order)), marker="|", s=90, color=TRUTH["color"], zorder=4, linewidths=1.4)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel("mutual information [nats]")
    ax.grid(axis="y", visible=False)
    truth_handle = Line2D([], [], ls="none", marker="|", markersize=9, color=TRUTH["color"], markeredgewidth=1.4)
    add_legend(fig, lines, critics, extra=[(truth_handle, "true MI")])
    return fig


# --------------------------------------------------------------------------------------------
# 7. Every estimator against the truth, a panel per task family


#: At most this many distinct true MIs in a panel are drawn as groups, estimators side by side
#: (``_truth_groups``); more, and every marker sits at its exact truth on a continuous axis.
TRUTH_GROUPS = 8
#: The width of a group's band: its markers and its truth segment (groups are one apart).
BAND = 0.8


def _truth_labels(truths: list[float]) -> list[str]:
    """Tick labels of the truths: two decimals ("1.00"), more where two would read the same."""
    for digits in range(2, 7):
        labels = [f"{t:.{digits}f}" for t in truths]
        if len(set(labels)) == len(labels):
            return labels
    return labels


def _truth_groups(rows: pd.DataFrame, markers: list) -> tuple[list[float], dict]:
    """The distinct truths of a panel's rows (rounded to 1e-6, ascending) and the x of every
    (truth, estimator) present: group i spans i ± BAND / 2, the estimators at that truth side
    by side within it, in ``markers`` (legend) order."""
    truths = sorted(rows["_truth"].unique())
    present = rows.groupby("_truth")["_marker"].agg(set)
    x = {}
    for i, t in enumerate(truths):
        here = [m for m in markers if m in present[t]]
        for k, m in enumerate(here):
            x[(t, m)] = i + BAND * ((k + 0.5) / len(here) - 0.5)
    return truths, x


@styled
def fig_estimate_vs_truth(summary: pd.DataFrame, *, panel_height: float = 2.3):
    """Held-out estimate against the true MI [nats], one panel per task family, every
    estimator (bounds of each library, sample estimators) a colour and marker, with its 95 %
    bootstrap interval over seeds.

    The x axis is categorical in a panel of at most ``TRUTH_GROUPS`` distinct truths: a group
    per true MI, its tick labelled with that truth, the estimators with a cell at it side by
    side within the group, and the truth a dashed segment across the group. Positions inside a
    group say nothing about the truth, and no tick lies between groups. A panel with more
    truths draws each (hollow) marker at its exact truth on a continuous axis, a short dashed
    segment at each truth and the diagonal y = x in grey.

    summary: ``stats.summarize`` rows with a ``family`` column; needs estimates of two or more
    estimators. Cells of one estimator that differ in another key (steps, the preset, ...) are
    estimators of their own, named in the legend by what differs (``lines.line_labels``); the
    tasks of one estimator at one truth (BMI's) are markers of its place in the group, and the
    group's tick says how many ("1.02" over "2 tasks").
    """
    rows = summary[np.isfinite(pd.to_numeric(summary["mean"], errors="coerce"))].copy()
    rows = with_lines(rows, along="mi_true")
    if rows.empty or rows.groupby(["bound", "critic", LINE], dropna=False).ngroups < 2:
        raise ValueError("fig_estimate_vs_truth: fewer than two estimators with estimates")
    rows["family"] = rows["family"].fillna("") if "family" in rows else ""
    rows["_truth"] = rows["mi_true"].astype(float).round(6)
    rows["_marker"] = list(zip(rows["bound"], rows["critic"], rows[LINE]))
    families = sorted(rows["family"].unique())
    lines, critics, colors, styles = encodings(rows)
    fig, axes = new_figure(0.8 + panel_height * len(families), nrows=len(families), sharex=False)
    markers = sorted(rows.groupby(["bound", "critic", LINE]).groups,
                     key=lambda bcl: (lines.index((bcl[0], bcl[2])), str(bcl[1])))
    for ax, family in zip(axes, families):
        d_family = rows[rows["family"] == family]
        truths, at = _truth_groups(d_family, markers)
        grouped = len(truths) <= TRUTH_GROUPS
        for m in markers:
            d = d_family[d_family["_marker"] == m]
            if d.empty:
                continue
            bound, critic, label = m
            x = [at[(t, m)] for t in d["_truth"]] if grouped else d["mi_true"]
            yerr = None
            if d["bias_ci_low"].notna().any():
                yerr = np.vstack([d["bias"] - d["bias_ci_low"], d["bias_ci_high"] - d["bias"]])
            face = {} if grouped else {"markerfacecolor": "none", "markeredgewidth": 0.9}
            ax.errorbar(x, d["mean"], yerr=yerr, ls="none", marker=styles[critic][1],
                        color=colors[(bound, label)], markersize=3.5 if grouped else 4, elinewidth=0.7,
                        capsize=1.5, **face)
        if grouped:
            for i, t in enumerate(truths):              # the truth across its group, under its markers
                ax.plot([i - BAND / 2, i + BAND / 2], [t, t], **{**TRUTH, "zorder": 1.5})
            for i in range(1, len(truths)):             # where one group ends and the next begins
                ax.axvline(i - 0.5, color="0.85", lw=0.6, zorder=0)
            tasks = d_family.groupby(["_truth", "_marker"]).size().groupby(level=0).max()
            ax.set_xticks(range(len(truths)), [text + (f"\n{tasks[t]} tasks" if tasks[t] > 1 else "")
                                               for t, text in zip(truths, _truth_labels(truths))])
            ax.set_xlim(-0.5, len(truths) - 0.5)
            ax.grid(axis="x", visible=False)
            ax.minorticks_off()
            ax.set_xlabel("true MI [nats]; estimators side by side at each truth")
        else:
            lo, hi = truths[0], truths[-1]
            edge = [lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)]
            ax.plot(edge, edge, color="0.75", lw=0.8, zorder=0)
            half = 0.02 * (edge[1] - edge[0])
            for t in truths:                            # a short segment at each truth
                ax.plot([t - half, t + half], [t, t], **TRUTH)
            ax.set_xlim(*edge)
            ax.set_xlabel("true MI [nats]")
        ax.set_title(family, fontsize="small")
        ax.set_ylabel("estimate [nats]")
    add_legend(fig, lines, critics, extra=[truth_marker()])
    return fig
