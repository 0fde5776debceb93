"""Figures over training: the traced estimate against the step.

- ``fig_training``: estimate vs training step per bound, the held-out estimate as a marker.
- ``fig_staircase``: traced estimates while the truth steps up, with ln(K + 1) dotted.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..interface import level_of_step
from ..stats import staircase_runs
from .lines import LINE, params_of, with_lines
from .style import (LOG_K, LOGK_LABEL, TRUTH, auto_window, encodings, fmt_mi, add_legend, logk_handle,
                    new_figure, finished_runs, smooth_series, styled, test_marker, truth_marker, fit_ylim)

# --------------------------------------------------------------------------------------------
# 1. Estimate vs training step


@styled
def fig_training(traces: pd.DataFrame, runs: pd.DataFrame, *, smooth: int | None = None,
                 panel_height: float = 1.3):
    """Estimate [nats] vs training step, one line per (bound, critic), one panel per task
    (true MI) and K.

    traces: (run_id, step, estimate, mi_true) from ``load_traces``; the estimate is the
        training-batch value, smoothed with a centred rolling mean of ``smooth`` trace points
        (default: 1/25 of a run's points) and averaged over the runs (seeds) of a line, with a
        ±1 sd band when there are several; the raw mean is drawn faintly behind.
    runs: run rows; non-staircase rows with status "ok" are drawn. The held-out estimate
        (``mi_estimate``, mean ± sd over the line's runs) is the marker at the last step; the
        truth (``mi_true``) is the dashed line.
    A line is one cell: runs of one bound and critic that differ in another key (steps, the
    device, ...) are lines of their own, named in the legend by what differs
    (``lines.line_labels``); tasks of equal truth get panels of their own, titled by task.
    """
    runs = finished_runs(runs)
    runs = runs[~runs.index.isin(staircase_runs(runs).index)]
    runs = runs[runs["run_id"].isin(set(traces["run_id"]))]
    if runs.empty:
        raise ValueError("fig_training: no finished non-staircase runs with traces")
    params = runs["task_params"].map(lambda p: json.dumps(params_of(p), sort_keys=True, default=str)) \
        if "task_params" in runs else pd.Series("", index=runs.index)
    runs = runs.assign(_mi=runs["mi_true"].round(6), _task=params)
    keys = list(zip(runs["_mi"], runs["n_negatives"], runs["_task"]))
    panels = sorted(set(keys))
    runs = with_lines(runs.assign(_panel=[panels.index(key) for key in keys]), encoded=("bound", "critic", "_panel"))
    multi_k = len({k for _, k, _ in panels}) > 1
    shared = pd.Series([(m, k) for m, k, _ in panels]).value_counts()       # tasks of one truth and K
    fig, axes = new_figure(panel_height * len(panels) + 0.55, nrows=len(panels))
    lines, critics, colors, styles = encodings(runs)
    meta = runs.set_index("run_id")
    data = traces[traces["run_id"].isin(meta.index)].reset_index(drop=True)
    data = data.join(meta[["bound", "critic", LINE, "_panel"]], on="run_id")
    x_end = float(runs["steps"].max())
    data["smooth"] = data.groupby("run_id", group_keys=False)["estimate"].apply(
        lambda s: smooth_series(s, smooth or auto_window(len(s))))
    for panel, (ax, (mi, k, task)) in enumerate(zip(axes, panels)):
        sel = data[data["_panel"] == panel]
        shown = []
        drawn = sorted(sel.groupby(["bound", "critic", LINE]).groups,
                       key=lambda bcl: (lines.index((bcl[0], bcl[2])), bcl[1]))
        for i, (bound, critic, label) in enumerate(drawn):
            d = sel[(sel["bound"] == bound) & (sel["critic"] == critic) & (sel[LINE] == label)]
            g = d.groupby("step")
            mean, raw, sd = g["smooth"].mean(), g["estimate"].mean(), g["smooth"].std()
            ls, marker = styles[critic]
            color = colors[(bound, label)]
            ax.plot(raw.index, raw.values, color=color, lw=0.4, alpha=0.2)
            ax.plot(mean.index, mean.values, color=color, ls=ls)
            if sd.notna().any():
                ax.fill_between(sd.index, mean - sd, mean + sd, color=color, alpha=0.15, lw=0)
            shown.append(mean.values)
            cell = runs[(runs["_panel"] == panel) & (runs["bound"] == bound) & (runs["critic"] == critic)
                        & (runs[LINE] == label)]
            x = cell["steps"].max() + 0.012 * x_end * (i - (len(drawn) - 1) / 2)  # dodge the markers
            y = cell["mi_estimate"].mean()
            yerr = cell["mi_estimate"].std() if len(cell) > 1 else None
            ax.errorbar([x], [y], yerr=None if yerr is None else [yerr], marker=marker, ls="none",
                        color=color, markeredgecolor="black", markeredgewidth=0.6, markersize=4.5,
                        elinewidth=0.8, capsize=1.5, zorder=5, clip_on=False)
            shown.append(np.array([y]))
        ax.axhline(float(mi), **TRUTH)
        fit_ylim(ax, np.concatenate(shown) if shown else np.array([]), [float(mi)])
        ax.set_ylabel("estimate [nats]")
        if len(panels) > 1:
            which = _task_text(task, [t for m, kk, t in panels if (m, kk) == (mi, k)]) if shared[(mi, k)] > 1 else ""
            ax.set_title(f"true MI = {fmt_mi(mi)} nats" + (f", K = {k}" if multi_k else "")
                         + (f", {which}" if which else ""), loc="left", pad=2)
    axes[-1].set_xlabel("training step")
    for ax in axes:
        ax.set_xlim(left=0)
    extra = [truth_marker(), test_marker()]
    add_legend(fig, lines, critics, extra=extra)
    if len(panels) == 1:
        axes[0].set_title(f"true MI = {fmt_mi(panels[0][0])} nats, K = {panels[0][1]}"
                          + (f", {critics[0]} critic" if len(critics) == 1 else ""), loc="left", pad=2)
    return fig


def _task_text(task: str, others: list[str]) -> str:
    """The task parameters of ``task`` (JSON) that differ among ``others`` (the tasks sharing its
    panel title), as "name" or "key=value"."""
    params, every = json.loads(task), [json.loads(t) for t in others]
    vary = [k for k in sorted({k for p in every for k in p}) if len({json.dumps(p.get(k)) for p in every}) > 1]
    return ", ".join(str(params.get(k)) if k == "name" else f"{k}={params.get(k)}" for k in vary)


# --------------------------------------------------------------------------------------------
# 2. Staircase


@styled
def fig_staircase(traces: pd.DataFrame, runs: pd.DataFrame, *, smooth: int | None = None,
                  panel_height: float = 1.7):
    """Traced training estimates [nats] while the true MI steps up (Poole et al. 2019, fig. 2):
    one panel per critic, one colour per bound, the stepped truth dashed and ln(K + 1), the
    InfoNCE ceiling, dotted. Runs of one bound and critic that differ in another cell key or in
    their schedule (steps, K, levels, ...) are lines of their own, named in the legend by what
    differs (``lines.line_labels``).

    traces: (run_id, step, estimate, mi_true); runs: rows with a non-empty ``staircase`` (others
    are ignored). Each run is smoothed within each level with a centred rolling mean of
    ``smooth`` points (default 1/10 of a level's points) and averaged over seeds; the raw
    trace is drawn faintly behind.
    """
    runs = finished_runs(staircase_runs(runs))
    runs = runs[runs["run_id"].isin(set(traces["run_id"]))]
    if runs.empty:
        raise ValueError("fig_staircase: no finished staircase runs with traces")
    runs = with_lines(runs)
    lines, critics, colors, _ = encodings(runs)
    fig, axes = new_figure(panel_height * len(critics) + 0.55, nrows=len(critics))
    meta = runs.set_index("run_id")
    data = traces[traces["run_id"].isin(meta.index)].reset_index(drop=True)
    data = data.join(meta[["bound", "critic", LINE, "steps", "staircase"]], on="run_id")
    data["level"] = [int(level_of_step(s, n, len(levels))) for s, n, levels in
                     zip(data["step"], data["steps"], data["staircase"])]
    n_levels = data.groupby("run_id")["level"].max() + 1
    per_level = data.groupby("run_id").size() / n_levels
    data["smooth"] = data.groupby(["run_id", "level"], group_keys=False)["estimate"].apply(
        lambda s: smooth_series(s, smooth or auto_window(int(per_level[s.name[0]]), per=10)))
    ks = sorted(set(runs["n_negatives"]))
    for ax, critic in zip(axes, critics):
        sel = data[data["critic"] == critic]
        shown = []
        for bound, label in lines:
            d = sel[(sel["bound"] == bound) & (sel[LINE] == label)]
            if d.empty:
                continue
            g = d.groupby("step")
            ax.plot(g["estimate"].mean(), color=colors[(bound, label)], lw=0.3, alpha=0.12)
            mean = g["smooth"].mean()
            ax.plot(mean, color=colors[(bound, label)], lw=1.1)
            shown.append(mean.to_numpy())
        # the stepped truth, from the trace (the truth each step trained on), one per schedule
        schedules = data["steps"].astype(str) + data["staircase"].map(str)
        truths = [t.groupby("step")["mi_true"].first() for _, t in data.groupby(schedules, sort=False)]
        for truth in truths:
            ax.plot(truth.index, truth.values, drawstyle="steps-post", **TRUTH)
        for k in ks:
            ax.axhline(math.log(k + 1), **LOG_K)
        top = [max(float(t.max()) for t in truths)] + [math.log(k + 1) for k in ks]
        fit_ylim(ax, np.concatenate(shown) if shown else np.array([]), top)
        ax.set_ylabel("estimate [nats]")
        if len(critics) > 1:
            ax.set_title(f"{critic} critic", loc="left", pad=2)
        ax.set_xlim(0, data["step"].max())
    axes[-1].set_xlabel("training step")
    k_text = LOGK_LABEL if len(ks) != 1 else f"ln(K+1), K = {ks[0]}"
    add_legend(fig, lines, [], extra=[(truth_marker()[0], "true MI (stepped)"), (logk_handle()[0], k_text)])
    return fig
