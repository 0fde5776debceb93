"""Paper figures from run rows and traces, and the full report of a results folder.

Every figure function takes DataFrames and returns a ``matplotlib.figure.Figure`` one column
wide (``WIDTH`` = 3.4 in); none touches pyplot's global state, so they work under any
backend and in tests (files are rendered with Agg). The true MI is always drawn (black,
dashed), MI axes are in nats, and the legend names the bounds and critics.

- ``fig_training``: estimate vs training step per bound, the held-out estimate as a marker.
- ``fig_staircase``: traced estimates while the truth steps up, with ln(K + 1) dotted.
- ``fig_bias_sd``: bias and sd vs true MI, one line per bound, line style per critic.
- ``fig_negatives``: estimate vs number of negatives K (log axis), ln(K + 1) and the truth.
- ``fig_throughput``: pairs/s by bound and device (horizontal bars, log axis).
- ``fig_embedding``: 2-d PCA of a trained image encoder's embeddings, coloured by class.

``make_figures(results_dir, out_dir)`` draws whichever of these the folder's data supports;
``make_report`` adds the tables (``mibench.report``).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .interface import ConfigError
from .report import staircase_runs, staircase_summary, summarize, write_tables, to_markdown

log = logging.getLogger(__name__)

WIDTH = 3.4          # inches: one column of a two-column paper
DPI = 200
FORMATS = ("png", "pdf")
STYLE = {
    "font.size": 7.5, "axes.labelsize": 7.5, "axes.titlesize": 7.5, "xtick.labelsize": 6.5,
    "ytick.labelsize": 6.5, "legend.fontsize": 6.5, "legend.title_fontsize": 6.5,
    "legend.frameon": False, "legend.handlelength": 2.4, "lines.linewidth": 1.1,
    "lines.markersize": 3.5, "axes.linewidth": 0.6, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.linewidth": 0.4, "grid.alpha": 0.5,
    "xtick.major.width": 0.6, "ytick.major.width": 0.6, "pdf.fonttype": 42, "ps.fonttype": 42,
    "savefig.dpi": DPI,
}

BOUND_NAMES = {"infonce": "InfoNCE", "smile": "SMILE", "nwj": "NWJ", "js": "JS", "mine": "MINE",
               "dv": "DV", "tuba": "TUBA", "alpha_infonce": "α-InfoNCE", "flo": "FLO", "ba": "BA",
               "club": "CLUB", "l1out": "L1Out", "doe": "DoE"}
CRITIC_STYLES = {"separable": ("-", "o"), "joint": ("-.", "s"), "bilinear": ((0, (4, 1, 1, 1, 1, 1)), "^"),
                 "conditional_gaussian": ((0, (1, 1)), "D")}
TRUTH = {"color": "black", "linestyle": "--", "linewidth": 1.0, "zorder": 4}     # drawn over the estimates
LOG_K = {"color": "0.4", "linestyle": ":", "linewidth": 1.3, "zorder": 4}
TRUTH_LABEL = "true MI"
LOGK_LABEL = "ln(K+1)"
TEST_LABEL = "held-out estimate"


# --------------------------------------------------------------------------------------------
# Style helpers


def bound_label(name: str) -> str:
    return BOUND_NAMES.get(name, str(name))


def bound_colors(names: Iterable[str]) -> dict[str, Any]:
    """One colour per bound, the same in every figure (colour-blind-safe palette, fixed order)."""
    import seaborn as sns

    cb = sns.color_palette("colorblind", 10)
    # the five common bounds get five well-separated hues; grey (cb[7]) is left to ln(K+1)
    fixed = {"infonce": cb[0], "smile": cb[3], "nwj": cb[2], "js": cb[4], "mine": cb[5], "dv": cb[1],
             "tuba": cb[9], "alpha_infonce": cb[6], "flo": cb[8]}
    rest = [b for b in list(BOUND_NAMES) + sorted(set(names) - set(BOUND_NAMES)) if b not in fixed]
    dark = sns.color_palette("dark", 10)
    return {**fixed, **{name: dark[i % 10] for i, name in enumerate(rest)}}


def critic_style(name: str) -> tuple[Any, str]:
    """(line style, marker) of a critic."""
    return CRITIC_STYLES.get(name, ("--", "v"))


def _ordered(names: Iterable[str]) -> list[str]:
    order = list(BOUND_NAMES)
    return sorted(set(names), key=lambda n: (order.index(n) if n in order else len(order), str(n)))


def _new_figure(height: float, nrows: int = 1, ncols: int = 1, sharex: bool = True, **kw):
    """A constrained-layout Figure (no pyplot) and its axes as a flat list."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH, height), layout="constrained")
    FigureCanvasAgg(fig)          # render with Agg whatever pyplot's backend is
    axes = fig.subplots(nrows, ncols, sharex=sharex, squeeze=False, **kw)
    return fig, list(axes.ravel())


def _styled(fn):
    """Build the figure under STYLE (rc values are read when artists are created)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        import matplotlib as mpl

        with mpl.rc_context(STYLE):
            return fn(*args, **kwargs)

    return wrapper


def _legend(fig, bounds: Sequence[str], critics: Sequence[str], *, extra: Sequence[tuple[Any, str]] = (),
            ncol: int | None = None) -> None:
    """A figure legend above the axes: one entry per bound (colour), per critic (line style,
    when there is more than one) and the reference lines/markers in ``extra``."""
    from matplotlib.lines import Line2D

    colors = bound_colors(bounds)
    entries = [(Line2D([], [], color=colors[b], lw=1.6), bound_label(b)) for b in bounds]
    others = []
    if len(critics) > 1:
        for c in critics:
            ls, marker = critic_style(c)
            others.append((Line2D([], [], color="0.3", ls=ls, marker=marker, lw=1.1), f"{c} critic"))
    others += list(extra)
    ncol = ncol or min(4, len(entries) + len(others))
    renderer = fig.canvas.get_renderer()
    for n in range(ncol, 0, -1):        # as many columns as fit in the figure's width
        legend = fig.legend(*_by_rows(entries, others, n), loc="outside upper center", ncol=n,
                            columnspacing=1.0, handletextpad=0.5)
        if n == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            return
        legend.remove()


def _by_rows(entries: list, others: list, ncol: int) -> tuple[list, list]:
    """Handles and labels ordered so that a legend of ``ncol`` columns (which matplotlib fills
    column by column) reads by rows: the bounds first, the reference entries after them."""
    from matplotlib.lines import Line2D

    blank = (Line2D([], [], alpha=0), "")
    entries = list(entries)
    pad = -len(entries) % ncol
    if 0 < pad <= ncol // 2:            # start the reference entries on a row of their own
        entries += [blank] * pad
    entries += others
    entries += [blank] * (-len(entries) % ncol)
    rows = len(entries) // ncol
    entries = [entries[r * ncol + c] for c in range(ncol) for r in range(rows)]
    handles, labels = zip(*entries)
    return list(handles), list(labels)


def _critic_styles(critics: Sequence[str]) -> dict[str, tuple[Any, str]]:
    """Line style and marker per critic; all solid with round markers when there is only one."""
    if len(critics) == 1:
        return {critics[0]: ("-", "o")}
    return {c: critic_style(c) for c in critics}


def _encodings(frame: pd.DataFrame):
    """The bounds (in display order) and critics of ``frame`` with a colour per bound and a
    (line style, marker) per critic: the encoding every bound-by-critic figure shares."""
    bounds = _ordered(frame["bound"])
    critics = sorted(set(frame["critic"]))
    return bounds, critics, bound_colors(bounds), _critic_styles(critics)


def _truth_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], **TRUTH), TRUTH_LABEL


def _logk_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], **LOG_K), LOGK_LABEL


def _test_handle():
    from matplotlib.lines import Line2D

    return Line2D([], [], ls="none", marker="o", color="0.6", markeredgecolor="black",
                  markeredgewidth=0.6, markersize=4.5), TEST_LABEL


def _compact(value: float, _pos=None) -> str:
    """1500 -> "1.5k", 2e6 -> "2M": tick labels for a log throughput axis."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:g}{suffix}"
    return f"{value:g}"


def _smooth(values: pd.Series, window: int) -> pd.Series:
    return values.rolling(window, center=True, min_periods=1).mean() if window > 1 else values


def _auto_window(n_points: int, per: int = 25) -> int:
    return max(1, int(round(n_points / per)))


def _ylim(ax, values: np.ndarray, truths: Iterable[float]) -> None:
    """y limits that show the truths and the estimates, but no lower than -(top / 2 + 0.5)
    and no higher than 1.6 top + 1 (top = the largest truth): a diverging estimator (NWJ,
    MINE at high MI) runs off the edge rather than flattening every other line."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    t = [x for x in truths if np.isfinite(x)]
    top = max(t) if t else (float(np.max(v)) if v.size else 1.0)
    lo, hi = (float(v.min()), float(v.max())) if v.size else (0.0, top)
    lo = max(min(lo, 0.0), -0.5 * top - 0.5)
    hi = min(max(hi, top), 1.6 * top + 1.0)
    span = hi - lo
    ax.set_ylim(lo - 0.06 * span, hi + 0.08 * span)


def _ok(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"] if "status" in runs else runs


def _fmt_mi(v: float) -> str:
    return f"{v:.2f}" if abs(v - round(v)) > 1e-6 else f"{v:.0f}"


# --------------------------------------------------------------------------------------------
# 1. Estimate vs training step


@_styled
def fig_training(traces: pd.DataFrame, runs: pd.DataFrame, *, smooth: int | None = None,
                 panel_height: float = 1.3):
    """Estimate [nats] vs training step, one line per (bound, critic), one panel per (true MI, K).

    traces: (run_id, step, estimate, mi_true) from ``load_traces``; the estimate is the
        training-batch value, smoothed with a centred rolling mean of ``smooth`` trace points
        (default: 1/25 of a run's points) and averaged over the runs (seeds, devices) of a line,
        with a ±1 sd band when there are several; the raw mean is drawn faintly behind.
    runs: run rows; non-staircase rows with status "ok" are drawn. The held-out estimate
        (``mi_estimate``, mean ± sd over the line's runs) is the marker at the last step; the
        truth (``mi_true``) is the dashed line.
    """
    runs = _ok(runs)
    runs = runs[~runs.index.isin(staircase_runs(runs).index)]
    runs = runs[runs["run_id"].isin(set(traces["run_id"]))]
    if runs.empty:
        raise ValueError("fig_training: no finished non-staircase runs with traces")
    runs = runs.assign(_mi=runs["mi_true"].round(6))
    panels = sorted({(m, k) for m, k in zip(runs["_mi"], runs["n_negatives"])})
    multi_k = len({k for _, k in panels}) > 1
    fig, axes = _new_figure(panel_height * len(panels) + 0.55, nrows=len(panels))
    bounds, critics, colors, styles = _encodings(runs)
    meta = runs.set_index("run_id")
    data = traces[traces["run_id"].isin(meta.index)].reset_index(drop=True)
    data = data.join(meta[["bound", "critic", "_mi", "n_negatives"]], on="run_id")
    x_end = float(runs["steps"].max())
    data["smooth"] = data.groupby("run_id", group_keys=False)["estimate"].apply(
        lambda s: _smooth(s, smooth or _auto_window(len(s))))
    for ax, (mi, k) in zip(axes, panels):
        sel = data[(data["_mi"] == mi) & (data["n_negatives"] == k)]
        shown = []
        lines = sorted(sel.groupby(["bound", "critic"]).groups, key=lambda bc: (bounds.index(bc[0]), bc[1]))
        for i, (bound, critic) in enumerate(lines):
            d = sel[(sel["bound"] == bound) & (sel["critic"] == critic)]
            g = d.groupby("step")
            mean, raw, sd = g["smooth"].mean(), g["estimate"].mean(), g["smooth"].std()
            ls, marker = styles[critic]
            color = colors[bound]
            ax.plot(raw.index, raw.values, color=color, lw=0.4, alpha=0.2)
            ax.plot(mean.index, mean.values, color=color, ls=ls)
            if sd.notna().any():
                ax.fill_between(sd.index, mean - sd, mean + sd, color=color, alpha=0.15, lw=0)
            shown.append(mean.values)
            cell = runs[(runs["_mi"] == mi) & (runs["n_negatives"] == k) & (runs["bound"] == bound)
                        & (runs["critic"] == critic)]
            x = cell["steps"].max() + 0.012 * x_end * (i - (len(lines) - 1) / 2)  # dodge the markers
            y = cell["mi_estimate"].mean()
            yerr = cell["mi_estimate"].std() if len(cell) > 1 else None
            ax.errorbar([x], [y], yerr=None if yerr is None else [yerr], marker=marker, ls="none",
                        color=color, markeredgecolor="black", markeredgewidth=0.6, markersize=4.5,
                        elinewidth=0.8, capsize=1.5, zorder=5, clip_on=False)
            shown.append(np.array([y]))
        ax.axhline(float(mi), **TRUTH)
        _ylim(ax, np.concatenate(shown) if shown else np.array([]), [float(mi)])
        ax.set_ylabel("estimate [nats]")
        if len(panels) > 1:
            ax.set_title(f"true MI = {_fmt_mi(mi)} nats" + (f", K = {k}" if multi_k else ""),
                         loc="left", pad=2)
    axes[-1].set_xlabel("training step")
    for ax in axes:
        ax.set_xlim(left=0)
    extra = [_truth_handle(), _test_handle()]
    _legend(fig, bounds, critics, extra=extra)
    if len(panels) == 1:
        axes[0].set_title(f"true MI = {_fmt_mi(panels[0][0])} nats, K = {panels[0][1]}"
                          + (f", {critics[0]} critic" if len(critics) == 1 else ""), loc="left", pad=2)
    return fig


# --------------------------------------------------------------------------------------------
# 2. Staircase


@_styled
def fig_staircase(traces: pd.DataFrame, runs: pd.DataFrame, *, smooth: int | None = None,
                  panel_height: float = 1.7):
    """Traced training estimates [nats] while the true MI steps up (Poole et al. 2019, fig. 2):
    one panel per critic, one colour per bound, the stepped truth dashed and ln(K + 1), the
    InfoNCE ceiling, dotted.

    traces: (run_id, step, estimate, mi_true); runs: rows with a non-empty ``staircase`` (others
    are ignored). Each run is smoothed within each level with a centred rolling mean of
    ``smooth`` points (default 1/10 of a level's points) and averaged over seeds; the raw
    trace is drawn faintly behind.
    """
    from .report import level_of_step

    runs = _ok(staircase_runs(runs))
    runs = runs[runs["run_id"].isin(set(traces["run_id"]))]
    if runs.empty:
        raise ValueError("fig_staircase: no finished staircase runs with traces")
    critics = sorted(set(runs["critic"]))
    bounds = _ordered(runs["bound"])
    colors = bound_colors(bounds)
    fig, axes = _new_figure(panel_height * len(critics) + 0.55, nrows=len(critics))
    meta = runs.set_index("run_id")
    data = traces[traces["run_id"].isin(meta.index)].reset_index(drop=True)
    data = data.join(meta[["bound", "critic", "steps", "staircase"]], on="run_id")
    data["level"] = [int(level_of_step(s, n, len(levels))) for s, n, levels in
                     zip(data["step"], data["steps"], data["staircase"])]
    n_levels = data.groupby("run_id")["level"].max() + 1
    per_level = data.groupby("run_id").size() / n_levels
    data["smooth"] = data.groupby(["run_id", "level"], group_keys=False)["estimate"].apply(
        lambda s: _smooth(s, smooth or _auto_window(int(per_level[s.name[0]]), per=10)))
    ks = sorted(set(runs["n_negatives"]))
    for ax, critic in zip(axes, critics):
        sel = data[data["critic"] == critic]
        shown = []
        for bound in bounds:
            d = sel[sel["bound"] == bound]
            if d.empty:
                continue
            g = d.groupby("step")
            ax.plot(g["estimate"].mean(), color=colors[bound], lw=0.3, alpha=0.12)
            mean = g["smooth"].mean()
            ax.plot(mean, color=colors[bound], lw=1.1)
            shown.append(mean.to_numpy())
        # the stepped truth, from the trace (the truth each step trained on)
        truth = data.groupby("step")["mi_true"].first()
        ax.plot(truth.index, truth.values, drawstyle="steps-post", **TRUTH)
        for k in ks:
            ax.axhline(math.log(k + 1), **LOG_K)
        top = [float(truth.max())] + [math.log(k + 1) for k in ks]
        _ylim(ax, np.concatenate(shown) if shown else np.array([]), top)
        ax.set_ylabel("estimate [nats]")
        if len(critics) > 1:
            ax.set_title(f"{critic} critic", loc="left", pad=2)
        ax.set_xlim(0, data["step"].max())
    axes[-1].set_xlabel("training step")
    k_text = LOGK_LABEL if len(ks) != 1 else f"ln(K+1), K = {ks[0]}"
    _legend(fig, bounds, [], extra=[(_truth_handle()[0], "true MI (stepped)"), (_logk_handle()[0], k_text)])
    return fig


# --------------------------------------------------------------------------------------------
# 3. Bias and sd vs true MI


@_styled
def fig_bias_sd(summary: pd.DataFrame, *, sd: str = "within_sd", height: float = 3.3):
    """Bias and spread [nats] vs true MI [nats], one line per bound, line style per critic.

    summary: ``report.summarize`` (or ``report.staircase_summary``) rows: bound, critic,
        mi_true, bias, optional bias_ci_low / bias_ci_high (drawn as error bars) and the sd
        column ``sd``: "within_sd" (batch-to-batch sd of the held-out estimate, Song & Ermon
        2020; the default) or "sd" (across seeds).
    Top: bias, with zero bias (the truth) dashed and, when every row has one K, the InfoNCE
    limit ln(K + 1) − I dotted. Bottom: the sd.
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
        d = d.groupby("mi_true", as_index=False).mean(numeric_only=True).sort_values("mi_true")
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
    import seaborn as sns

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
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

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


def embed_images(model_path: str | os.PathLike, *, data_dir: str | None = None, n: int = 2000,
                 seed: int = 0) -> tuple[pd.DataFrame, dict]:
    """Embed ``n`` test images with a saved estimator's x encoder and project them onto their
    first two principal components.

    model_path: ``DIR/models/<run_id>.pt`` = {"spec": RunSpec.to_dict(), "state_dict": ...}
    from a run with ``save_model``. The images (a fixed random subset of the test split of the
    run's data set, scaled to [0, 1], shape (n, 1, 28, 28)) are embedded on the CPU.

    Returns (DataFrame with pc1, pc2 (embedding units) and label (int class), the spec dict).
    """
    import torch

    from .data import load_split
    from .estimators import EstimatorSpec, build_estimator

    blob = torch.load(model_path, map_location="cpu", weights_only=True)
    spec = blob["spec"]
    family = spec.get("family", "paired_mnist")
    if not family.startswith("paired_"):
        raise ValueError(f"{model_path}: family {family!r} has no images to embed")
    dataset = family.removeprefix("paired_")
    est = build_estimator(EstimatorSpec(**spec["estimator"]), (1, 28, 28), (1, 28, 28))
    est.load_state_dict(blob["state_dict"])
    est.eval()
    images, labels = load_split(dataset, False, data_dir)
    pick = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))[:n]
    x = images[pick].float().div(255).unsqueeze(1)
    with torch.no_grad():
        z = torch.cat([est.encoder_x(chunk) for chunk in x.split(500)]).double()   # (n, embed_dim)
    z = z - z.mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(z, full_matrices=False)
    pcs = (z @ v[:2].T).numpy()
    return pd.DataFrame({"pc1": pcs[:, 0], "pc2": pcs[:, 1], "label": labels[pick].numpy()}), spec


@_styled
def fig_embedding(emb: pd.DataFrame, *, run: dict | pd.Series | None = None, class_name: str = "digit",
                  height: float = 3.0):
    """Scatter of the first two principal components of the embeddings, coloured by class.

    emb: (pc1, pc2, label), e.g. from ``embed_images``. run: the run's row, to state the
    held-out estimate against the true MI [nats] in the title.
    """
    import seaborn as sns

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
    from matplotlib.lines import Line2D

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
# Files


def save_figure(fig, out_dir: str | os.PathLike, name: str) -> list[Path]:
    """Write ``fig`` as OUT/NAME.png (``DPI`` dots per inch) and OUT/NAME.pdf (TrueType fonts
    embedded), or the ``FORMATS`` given; returns the paths."""
    import matplotlib as mpl

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{ext}" for ext in FORMATS]
    with mpl.rc_context(STYLE):
        for p in paths:
            fig.savefig(p, dpi=DPI)
    return paths


def _slug(value: Any) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in str(value)) or "all"


def make_figures(results_dir: str | os.PathLike, out_dir: str | os.PathLike, *,
                 data_dir: str | None = None) -> list[Path]:
    """Every figure the folder's runs.jsonl / traces.jsonl / models/ support, as PNG and PDF
    in ``out_dir``; figures without data are skipped. Returns the files written (and logs
    which figures were made and which skipped)."""
    from .results import load_results, load_traces

    runs = load_results(results_dir)
    if runs.empty:
        log.info("no runs in %s: no figures", results_dir)
        return []
    traces = load_traces(results_dir)
    stair = staircase_runs(runs)
    plain = runs[~runs.index.isin(stair.index)]
    jobs: list[tuple[str, Any]] = []
    for grid, d in plain.groupby("grid", sort=False):
        jobs.append((f"training_{_slug(grid)}" if grid else "training", lambda d=d: fig_training(traces, d)))
    jobs.append(("staircase", lambda: fig_staircase(traces, runs)))
    jobs.append(("bias_sd", lambda: fig_bias_sd(summarize(plain))))
    jobs.append(("bias_sd_staircase", lambda: fig_bias_sd(staircase_summary(traces, runs))))
    jobs.append(("negatives", lambda: fig_negatives(runs)))
    jobs.append(("throughput", lambda: fig_throughput(runs)))
    models = sorted((Path(results_dir) / "models").glob("*.pt"))
    by_id = runs.set_index("run_id")
    for model in models:
        run = by_id.loc[model.stem] if model.stem in by_id.index else None
        name = "embedding" if len(models) == 1 or run is None else f"embedding_{_slug(run['device'])}"
        if name in {j[0] for j in jobs}:
            name = f"embedding_{model.stem}"
        jobs.append((name, lambda model=model, run=run: _embedding_figure(model, run, data_dir)))

    written: list[Path] = []
    made, skipped = [], []
    for name, build in jobs:
        try:
            fig = build()
        except (ValueError, KeyError) as exc:
            skipped.append(f"{name} ({exc})")
            continue
        except ConfigError as exc:             # e.g. the image data set is not available
            log.warning("figure %s skipped: %s", name, exc)
            skipped.append(f"{name} ({exc})")
            continue
        written += save_figure(fig, out_dir, name)
        made.append(name)
    log.info("figures made in %s: %s", out_dir, ", ".join(made) or "none")
    if skipped:
        log.info("figures skipped: %s", "; ".join(skipped))
    return written


def _embedding_figure(model: Path, run, data_dir: str | None):
    emb, spec = embed_images(model, data_dir=data_dir)
    cls = "digit" if spec.get("family") == "paired_mnist" else "class"
    return fig_embedding(emb, run=run, class_name=cls)


def make_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, *,
                data_dir: str | None = None) -> dict[str, Any]:
    """Tables and figures of one results folder.

    Writes OUT/summary.{csv,md,tex} (``report.summarize``), OUT/staircase.{csv,md,tex} when the
    folder has staircase runs, and OUT/figures/*.{png,pdf} (``make_figures``). ``out_dir``
    defaults to the results folder. Raises ConfigError when the folder has no recorded runs.

    Returns {"summary": DataFrame, "markdown": str, "tables": [paths], "figures": [paths]}.
    """
    from .results import RUNS_FILE, load_results, load_traces

    results_dir = Path(results_dir)
    if not (results_dir / RUNS_FILE).is_file():
        raise ConfigError(f"{results_dir}: no {RUNS_FILE} here; `mibench run --out {results_dir}` records runs there")
    runs = load_results(results_dir)
    if runs.empty:
        raise ConfigError(f"{results_dir / RUNS_FILE}: no runs recorded yet")
    out = Path(out_dir) if out_dir else results_dir
    summary = summarize(runs)
    tables = write_tables(summary, out, "summary")
    stair = staircase_summary(load_traces(results_dir), runs)
    if not stair.empty:
        tables += write_tables(stair, out, "staircase",
                               caption="staircase: traced estimate over the last half of each level")
    figures = make_figures(results_dir, out / "figures", data_dir=data_dir)
    return {"summary": summary, "markdown": to_markdown(summary), "tables": tables, "figures": figures}
