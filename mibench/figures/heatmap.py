"""The heatmap of a leaderboard: task × estimator, BMI's figure (Czyż et al., NeurIPS 2023).

``fig_heatmap(wide)`` draws the frame of ``mibench.bmi_table.bmi_table``, the one the BMI-style
table prints, so that the figure shows exactly the cells of that table and no others.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib import colormaps

from ..tables import MISSING
from .style import WIDTH, new_figure, styled

#: The colour scale: log(estimate / truth) clipped to [-CLIP, CLIP], red above the truth, blue
#: below, white on it (BMI's RdBu_r from -1 to 1).
CLIP = 1.0
CMAP = "RdBu_r"
NO_COLOUR = "0.82"     # a cell with no usable run, or no colour (a truth of 0)
TRUTH_COLUMN = "true MI"
_CELL_W, _CELL_H = 0.3, 0.16      # inches
_FONT = 5.0


@styled
def fig_heatmap(wide: pd.DataFrame):
    """Task × estimator, BMI's heatmap: a row per task in the table's order (the preset's), a
    column per estimator as the table labels it, and a last column with the truth. A cell's
    colour is its mean log(estimate / truth) over the runs used ("LABEL log ratio"), clipped to
    [−1, 1] on a diverging scale centred at 0 (red: above the truth); it is annotated with the
    mean estimate to one decimal, as BMI prints it. A cell whose runs all failed or were
    dropped by the fail filter is grey and marked "–"; an estimator with no cell on a task
    leaves it grey and empty. The truth column is white, annotated with the truth.

    wide: ``bmi_table.bmi_table`` (its ``attrs["estimators"]`` name the columns). Raises
    ValueError when no cell has a usable run.
    """
    estimators = list(wide.attrs.get("estimators", []))
    runs = np.array([wide[f"{e} runs"].to_numpy(dtype=float) for e in estimators]).T.reshape(len(wide), -1)
    if not (runs > 0).any():
        raise ValueError("fig_heatmap: no cell with a usable run")
    means = np.array([wide[f"{e} mean"].to_numpy(dtype=float) for e in estimators]).T.reshape(runs.shape)
    ratios = np.array([wide[f"{e} log ratio"].to_numpy(dtype=float) for e in estimators]).T.reshape(runs.shape)
    colour = np.where(runs > 0, np.clip(ratios, -CLIP, CLIP), np.nan)
    colour = np.column_stack([colour, np.zeros(len(wide))])            # the truth: on the truth
    n_tasks, n_cols = colour.shape

    width = max(WIDTH, 1.9 + _CELL_W * n_cols + 0.5)
    fig, (ax,) = new_figure(1.4 + _CELL_H * n_tasks, sharex=False)
    fig.set_figwidth(width)
    cmap = colormaps[CMAP].with_extremes(bad=NO_COLOUR)
    mesh = ax.pcolormesh(np.ma.masked_invalid(colour), cmap=cmap, vmin=-CLIP, vmax=CLIP,
                         edgecolors="white", linewidth=0.4)
    for i in range(n_tasks):
        for j in range(n_cols):
            if j == n_cols - 1:
                text = f"{wide['mi_true'].iloc[i]:.1f}"
            elif runs[i, j] > 0 and math.isfinite(means[i, j]):
                text = f"{means[i, j]:.1f}"
            elif runs[i, j] == 0:
                text = MISSING
            else:
                continue
            dark = math.isfinite(colour[i, j]) and abs(colour[i, j]) > 0.6
            ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=_FONT,
                    color="white" if dark else "black")
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_tasks, 0)                       # the first task at the top
    ax.set_xticks(np.arange(n_cols) + 0.5)
    ax.set_xticklabels([*estimators, TRUTH_COLUMN], rotation=90, fontsize=_FONT + 0.5)
    ax.set_yticks(np.arange(n_tasks) + 0.5)
    ax.set_yticklabels(list(wide["task"]), fontsize=_FONT + 0.5)
    ax.tick_params(length=0)
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    bar = fig.colorbar(mesh, ax=ax, location="top", shrink=0.6, aspect=30, pad=0.01, ticks=[-CLIP, 0, CLIP])
    bar.set_label("log(estimate / true MI), clipped to [−1, 1]", fontsize=_FONT + 0.5)
    bar.ax.tick_params(labelsize=_FONT + 0.5, length=2)
    bar.outline.set_linewidth(0.4)
    units = wide.attrs.get("units", "nats")
    note = f"cells: the mean estimate over seeds [{units}]; {MISSING}: no usable run"
    if np.isnan(runs).any():
        note += "; empty: not run"
    if wide.attrs.get("fail_filter") == "bmi":
        dropped = int(np.nansum([wide[f"{e} dropped"].to_numpy(dtype=float) for e in estimators]))
        note += f"; BMI's fail filter dropped {dropped} run{'s' if dropped != 1 else ''}"
    fig.supxlabel(note, fontsize=_FONT + 0.5)
    return fig
