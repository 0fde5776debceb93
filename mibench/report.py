"""The report of one results folder: its runs loaded once, each summary computed once, the
tables written (``mibench.tables``) and the figures drawn from the same frames
(``mibench.figures``).

Statistics: ``mibench.stats``; tables: ``mibench.tables``; figures: ``mibench.figures``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from .figures import make_figures
from .interface import ConfigError
from .results import RUNS_FILE, load_results, load_traces
from .stats import staircase_summary, summarize
from .tables import to_markdown, write_tables

#: DIR/embeddings/<run_id>.csv: columns pc1, pc2 (the 2-d PCA of a trained x encoder's
#: embeddings of a fixed sample of test images, embedding units) and label (int class),
#: written with the run by ``save_model`` runs of image tasks.
EMBEDDINGS_DIR = "embeddings"


def load_embeddings(results_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The folder's embedding files, run_id (the file stem) -> DataFrame (pc1, pc2, label),
    in file-name order; {} when there are none."""
    return {path.stem: pd.read_csv(path) for path in sorted((Path(results_dir) / EMBEDDINGS_DIR).glob("*.csv"))}


def make_report(results_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Tables and figures of one results folder.

    Reads DIR/runs.jsonl, DIR/traces.jsonl and DIR/embeddings/*.csv once; writes
    OUT/summary.{csv,md,tex} (``stats.summarize``), OUT/staircase.{csv,md,tex} when the folder
    has staircase runs (``stats.staircase_summary``), and OUT/figures/*.{png,pdf}
    (``figures.make_figures``, drawn from the same frames). ``out_dir`` defaults to the results
    folder. Raises ConfigError when the folder has no recorded runs.

    Returns {"summary": DataFrame, "markdown": str, "tables": [paths], "figures": [paths]}.
    """
    results_dir = Path(results_dir)
    if not (results_dir / RUNS_FILE).is_file():
        raise ConfigError(f"{results_dir}: no {RUNS_FILE} here; `mibench run --out {results_dir}` records runs there")
    runs = load_results(results_dir)
    if runs.empty:
        raise ConfigError(f"{results_dir / RUNS_FILE}: no runs recorded yet")
    traces = load_traces(results_dir)
    out = Path(out_dir) if out_dir else results_dir

    summary = summarize(runs)
    stair = staircase_summary(traces, runs)
    tables = write_tables(summary, out, "summary")
    if not stair.empty:
        tables += write_tables(stair, out, "staircase",
                               caption="staircase: traced estimate over the last half of each level")
    figures = make_figures(out / "figures", runs=runs, traces=traces, summary=summary, staircase=stair,
                           embeddings=load_embeddings(results_dir))
    return {"summary": summary, "markdown": to_markdown(summary), "tables": tables, "figures": figures}
