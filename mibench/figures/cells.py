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
from .style import (LOG_K, TRUTH, _compact, _encodings, _legend, _logk_handle, _new_figure, _ok, _ordered,
                    _styled, _truth_handle, bound_colors, bound_label)

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# 3. Bias and sd vs true MI


@_styled
def fig_bias_sd(summary: pd.DataFrame, *, sd: str = "within_sd", height: float = 3.3):
    """Bias and spread [nats] vs true MI [nats], one line per bound, line style per critic.

    summary: ``stats.summarize`` (or ``stats.staircase_summary``) rows: bound, critic,
        mi_true, bias, optional bias_ci_low / bias_ci_high (drawn as error bars) and the sd
        column ``sd``: "within_sd" (batch-to-batch sd of the held-out estimate, Song & Ermon
        2020; the default) or "sd" (across seeds).
    Top: bias, with zero bias (the truth) dashed and, when every row has one K, the InfoNCE
    limit ln(K + 1) − I dotted. Bottom: the sd. An axis whose values pass ten times the
    largest truth is drawn symmetric-log.
    """
    rows = summary[np.isfinite(pd.to_numeric(summary["bias"], errors="coerce"))]
    if "n_negatives" in rows and rows["n_negatives"].nunique() > 1:     # one K: the most common one
        rows = rows[rows["n_negatives"] == rows["n_negatives"].mode().max()]
    per_line = rows.groupby(["bound", "critic"])["mi_true"].nunique()
    keep = per_line[per_line >= 2].index
    rows = rows.set_index(["bound", "critic"]).loc[lambda d: d.index.isin(keep)].reset_index()
    if rows.empty:
        raise ValueError("fig_bias_sd: no bound/critic with estimates at two or more true MI values")
    bounds, critics, colors, styles = _encodings(rows)
    fig, (ax_b, ax_s) = _new_figure(height, nrows=2)
    for (bound, critic), d in rows.groupby(["bound", "critic"]):
        by_mi = d.groupby("mi_true")
        d = by_mi.mean(numeric_only=True)
        for ci in ("bias_ci_low", "bias_ci_high"):      # no bar where a merged cell has no interval
            if ci in d:
                d[ci] = by_mi[ci].agg(lambda v: v.mean(skipna=False))
        d = d.reset_index().sort_values("mi_true")
        ls, marker = styles[critic]
        kw = dict(color=colors[bound], ls=ls, marker=marker, markersize=3)
        yerr = None
        if {"bias_ci_low", "bias_ci_high"} <= set(d) and d["bias_ci_low"].notna().any():
            yerr = np.vstack([d["bias"] - d["bias_ci_low"], d["bias_ci_high"] - d["bias"]])
        ax_b.errorbar(d["mi_true"], d["bias"], yerr=yerr, elinewidth=0.7, capsize=1.5, **kw)
        ax_s.plot(d["mi_true"], d[sd], **kw)
    mis = np.array(sorted(set(rows["mi_true"])))
    ax_b.axhline(0.0, **TRUTH)
    extra = [(_truth_handle()[0], "zero bias (truth)")]
    ks = sorted(set(rows["n_negatives"])) if "n_negatives" in rows else []
    if len(ks) == 1:
        grid = np.linspace(mis.min(), mis.max(), 100)
        ax_b.plot(grid, np.minimum(math.log(ks[0] + 1) - grid, 0.0), **LOG_K)
        extra.append((_logk_handle()[0], f"ln(K+1) − MI, K = {ks[0]}"))
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
    _legend(fig, bounds, critics, extra=extra, ncol=3)
    return fig


# --------------------------------------------------------------------------------------------
# 4. Estimate vs number of negatives


@_styled
def fig_negatives(runs: pd.DataFrame, *, height: float = 2.6):
    """Held-out estimate [nats] vs K negatives per positive (log axis), one line per
    (bound, critic, budget), mean ± sd over runs (seeds and devices), with ln(K + 1) dotted
    and the truth dashed.

    runs: run rows; a line needs ok runs at two or more K with the same bound, critic, steps,
    batch size and truth.
    """
    ok = _ok(runs)
    ok = ok[~ok.index.isin(staircase_runs(ok).index) & np.isfinite(ok["mi_estimate"])]
    ok = ok.assign(_mi=ok["mi_true"].round(6))
    line_keys = ["bound", "critic", "steps", "batch_size", "_mi"]
    agg = ok.groupby([*line_keys, "n_negatives"], as_index=False)["mi_estimate"].agg(["mean", "std"])
    n_k = agg.groupby(line_keys)["n_negatives"].transform("nunique")
    agg = agg[n_k >= 2]
    if agg.empty:
        raise ValueError("fig_negatives: no bound with estimates at two or more K")
    bounds, critics, colors, styles = _encodings(agg)
    many_budgets = agg["steps"].nunique() > 1
    fig, (ax,) = _new_figure(height)
    for (bound, critic, steps, _, _), d in agg.groupby(line_keys, sort=False):
        ls, marker = styles[critic]
        ax.errorbar(d["n_negatives"], d["mean"], yerr=d["std"].fillna(0), color=colors[bound], ls=ls,
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
    if many_budgets:
        log.info("fig_negatives: lines at different training budgets (%s steps)", sorted(set(agg["steps"])))
    title = [f"{critics[0]} critic"] if len(critics) == 1 else []
    if not many_budgets:
        title.append(f"{int(agg['steps'].iloc[0]):,} training steps")
    ax.set_title(", ".join(title), loc="left", pad=2)
    _legend(fig, bounds, critics, extra=[_truth_handle(), _logk_handle()])
    return fig


# --------------------------------------------------------------------------------------------
# 5. Throughput


@_styled
def fig_throughput(runs: pd.DataFrame, *, bar_height: float = 0.2):
    """Training throughput [pairs/s], median over runs, one bar per device for each bound (and
    critic / K when those vary); a log axis when the fastest is over 20x the slowest.
    runs: run rows with pairs_per_s."""
    ok = _ok(runs)
    ok = ok[np.isfinite(pd.to_numeric(ok.get("pairs_per_s"), errors="coerce"))]
    if ok.empty:
        raise ValueError("fig_throughput: no runs with a throughput")
    multi_c = ok["critic"].nunique() > 1
    multi_k = ok["n_negatives"].nunique() > 1
    order_b = _ordered(ok["bound"])

    def label(r) -> str:
        parts = [bound_label(r["bound"])]
        if multi_c:
            parts.append(str(r["critic"]))
        if multi_k:
            parts.append(f"K={r['n_negatives']}")
        return ", ".join(parts)

    ok = ok.assign(_label=ok.apply(label, axis=1),
                   _order=ok["bound"].map(order_b.index))
    agg = ok.groupby(["_label", "device"], as_index=False).agg(pairs_per_s=("pairs_per_s", "median"),
                                                              _order=("_order", "first"),
                                                              critic=("critic", "first"),
                                                              k=("n_negatives", "first"))
    labels = agg.sort_values(["_order", "critic", "k"])["_label"].drop_duplicates().tolist()
    devices = sorted(set(agg["device"]), key=lambda d: (d != "cpu", d))
    n_bars = len(labels)
    fig, (ax,) = _new_figure(0.9 + n_bars * bar_height * max(1, len(devices)) * 0.75)
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
    ax.xaxis.set_major_formatter(FuncFormatter(_compact))
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
    if len(devices) > 1:
        handles, texts = ax.get_legend_handles_labels()
        ax.get_legend().remove()
        fig.legend(handles, [f"device: {t}" for t in texts], loc="outside upper center", ncol=len(devices))
    else:
        ax.set_title(f"device: {devices[0]}", loc="left", pad=2)
    return fig


# --------------------------------------------------------------------------------------------
# 6. Embedding of a trained image encoder


@_styled
def fig_embedding(emb: pd.DataFrame, *, run: dict | pd.Series | None = None, class_name: str = "digit",
                  height: float = 3.0):
    """Scatter of the first two principal components of the embeddings, coloured by class.

    emb: (pc1, pc2, label): the 2-d PCA of the trained x encoder's embeddings of a fixed
        sample of test images and their classes, as a run with ``save_model`` writes it to
        ``DIR/embeddings/<run_id>.csv``. run: the run's row, to state the held-out estimate
        against the true MI [nats] in the title.
    """
    fig, (ax,) = _new_figure(height)
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


@_styled
def fig_truth(summary: pd.DataFrame, *, row_height: float = 0.28):
    """Held-out estimate [nats] against the truth, one row per task (the task parameters that
    vary between cells, e.g. BMI's task id), rows ordered by true MI: the truth a black bar, each
    bound a coloured marker (line style per critic) with its 95 % bootstrap interval of the bias
    when there are several seeds.

    summary: ``stats.summarize`` rows; needs three or more tasks with estimates.
    """
    from ..tables import _varying_params

    rows = summary[np.isfinite(pd.to_numeric(summary["mean"], errors="coerce"))].copy()
    labels = _varying_params(rows)
    if labels is None or labels.nunique() < 3:
        raise ValueError("fig_truth: fewer than three tasks with estimates")
    rows["_task"] = labels
    order = rows.groupby("_task")["mi_true"].first().sort_values().index.tolist()
    bounds, critics, colors, styles = _encodings(rows)
    fig, (ax,) = _new_figure(0.9 + row_height * len(order))
    pos = {t: i for i, t in enumerate(order)}
    lines = sorted(rows.groupby(["bound", "critic"]).groups, key=lambda bc: (bounds.index(bc[0]), bc[1]))
    for j, (bound, critic) in enumerate(lines):
        d = rows[(rows["bound"] == bound) & (rows["critic"] == critic)]
        y = d["_task"].map(pos) + 0.12 * (j - (len(lines) - 1) / 2)        # dodge the markers
        xerr = None
        if d["bias_ci_low"].notna().any():
            xerr = np.vstack([d["bias"] - d["bias_ci_low"], d["bias_ci_high"] - d["bias"]])
        ax.errorbar(d["mean"], y, xerr=xerr, ls="none", marker=styles[critic][1], color=colors[bound],
                    markersize=3.5, elinewidth=0.7, capsize=1.5)
    truth = rows.groupby("_task")["mi_true"].first()
    ax.scatter(truth[order], range(len(order)), marker="|", s=90, color=TRUTH["color"], zorder=4, linewidths=1.4)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order)
    ax.set_ylim(-0.6, len(order) - 0.4)
    ax.set_xlabel("mutual information [nats]")
    ax.grid(axis="y", visible=False)
    truth_handle = Line2D([], [], ls="none", marker="|", markersize=9, color=TRUTH["color"], markeredgewidth=1.4)
    _legend(fig, bounds, critics, extra=[(truth_handle, "true MI")])
    return fig


# --------------------------------------------------------------------------------------------
# 7. Every estimator against the truth, a panel per task family


@_styled
def fig_estimate_vs_truth(summary: pd.DataFrame, *, panel_height: float = 2.3):
    """Held-out estimate against the true MI [nats], one panel per task family, every
    estimator (bounds of each library, sample estimators) a colour and marker, with its 95 %
    bootstrap interval over seeds. The markers of one task are spread sideways around its true
    MI, and a black segment across them marks the truth (the grey diagonal is y = x).

    summary: ``stats.summarize`` rows with a ``family`` column; needs estimates of two or more
    estimators.
    """
    rows = summary[np.isfinite(pd.to_numeric(summary["mean"], errors="coerce"))].copy()
    if rows.empty or rows.groupby(["bound", "critic"], dropna=False).ngroups < 2:
        raise ValueError("fig_estimate_vs_truth: fewer than two estimators with estimates")
    rows["family"] = rows["family"].fillna("") if "family" in rows else ""
    families = sorted(rows["family"].unique())
    bounds, critics, colors, styles = _encodings(rows)
    fig, axes = _new_figure(0.8 + panel_height * len(families), nrows=len(families), sharex=False)
    lines = sorted(rows.groupby(["bound", "critic"]).groups, key=lambda bc: (bounds.index(bc[0]), str(bc[1])))
    for ax, family in zip(axes, families):
        d_family = rows[rows["family"] == family]
        lo, hi = float(d_family["mi_true"].min()), float(d_family["mi_true"].max())
        span = max(hi - lo, 0.5 * max(hi, 1.0))
        step = 0.6 * span / max(len(lines), 1) / (3 if hi > lo else 1)
        for j, (bound, critic) in enumerate(lines):
            d = d_family[(d_family["bound"] == bound) & (d_family["critic"] == critic)]
            if d.empty:
                continue
            x = d["mi_true"] + step * (j - (len(lines) - 1) / 2)
            yerr = None
            if d["bias_ci_low"].notna().any():
                yerr = np.vstack([d["bias"] - d["bias_ci_low"], d["bias_ci_high"] - d["bias"]])
            ax.errorbar(x, d["mean"], yerr=yerr, ls="none", marker=styles[critic][1], color=colors[bound],
                        markersize=3.5, elinewidth=0.7, capsize=1.5)
        edge = [lo - 0.6 * span, hi + 0.6 * span]
        if hi > lo:
            ax.plot(edge, edge, color="0.75", lw=0.8, zorder=0)
        half = step * len(lines) / 2 + step
        for t in d_family["mi_true"].unique():          # the truth of each task across its markers
            ax.plot([t - half, t + half], [t, t], **TRUTH)
        ax.set_xlim(*edge)
        ax.set_title(family, fontsize="small")
        ax.set_xlabel("true MI [nats]")
        ax.set_ylabel("estimate [nats]")
    _legend(fig, bounds, critics, extra=[_truth_handle()])
    return fig
