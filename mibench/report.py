"""The report of a results folder, or of several pooled (``mibench.pool``): its runs loaded
once, each summary computed once, the tables written (``mibench.tables``, ``mibench.bmi_table``)
and the figures drawn from the same frames (``mibench.figures``), then the page that shows them
all (``mibench.html``).

Statistics: ``mibench.stats``; tables: ``mibench.tables``; figures: ``mibench.figures``; the page:
``mibench.html``.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import check_folder, make_folder, write_text
from .bmi_table import bmi_table, log_ratios, spans_tasks, write_bmi_table
from .figures import make_figures
from .html import write_page
from .interface import ConfigError
from .pool import check_out, check_poolable
from .layout import PENDING_DIR, RUNS_FILE, Folder
from .results import git_commit, load_results, load_traces
from .stats import FAIL_FILTERS, cells_of, estimator_labels, in_units, staircase_runs, staircase_summary, summarize
from .tables import to_markdown, write_csv, write_tables
from .wide_tables import MI_NOTE, STAIRCASE_NOTE, has_mi_levels, write_level_table, write_task_table

#: DIR/embeddings/<run_id>.csv: columns pc1, pc2 (the 2-d PCA of a trained x encoder's
#: embeddings of a fixed sample of test images, embedding units) and label (int class),
#: written with the run by ``save_model`` runs of image tasks.


def load_embeddings(results_dir: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """The folder's embedding files, run_id (the file stem) -> DataFrame (pc1, pc2, label),
    in file-name order; {} when there are none."""
    return {path.stem: pd.read_csv(path) for path in Folder(results_dir).embeddings()}


#: Columns that tell one estimator from another in the ranking, after its library and name.
def make_ranking(summary: pd.DataFrame, out: Path, figures_dir: Path) -> tuple[Any, list[Path]]:
    """Estimators ranked by |bias| over the tasks of a summary (mean rank, Friedman test,
    Nemenyi critical difference: ``mibench.ranking``), written as OUT/ranking.{md,csv} with the
    critical-difference diagram; (None, []) when fewer than 2 of them have values on 2 or more
    common tasks. One with values on fewer tasks than the best covered one is left out (and
    named in ranking.md)."""
    from .figures import save_figure
    from .figures.cd import fig_cd_diagram
    from .ranking import rank_table

    cells = summary[np.isfinite(pd.to_numeric(summary["bias"], errors="coerce"))].copy()
    if cells.empty:
        return None, []
    cells["estimator"] = estimator_labels(cells)
    cells["task_id"] = cells["task"].astype(str) + " " + cells["task_params"].astype(str)
    cells["absolute bias [nats]"] = cells["bias"].abs().round(6)     # closer than a micro-nat: a tie
    coverage = cells.groupby("estimator")["task_id"].nunique()
    left_out = sorted(coverage.index[coverage < coverage.max()])
    cells = cells[~cells["estimator"].isin(left_out)]
    if coverage.max() < 2 or cells["estimator"].nunique() < 2:
        return None, []
    result = rank_table(cells, estimator="estimator", task="task_id", value="absolute bias [nats]")
    make_folder(out)
    text = result.to_markdown()
    if left_out:
        text += f"\nLeft out (values on fewer tasks): {', '.join(left_out)}\n"
    paths = [write_text(out / "ranking.md", text), write_csv(result.table, out / "ranking.csv")]
    paths += save_figure(fig_cd_diagram(result), figures_dir, "cd_diagram")
    return result, paths


#: The table files ``make_report`` can write, by stem (each as .csv, .md and/or .tex).
TABLE_STEMS = ("summary", "staircase", "staircase_table", "mi_table", "task_table", "bmi_table", "ranking")


def stale_outputs(out_dir: str | os.PathLike, result: dict[str, Any]) -> list[Path]:
    """Files in OUT that look like ``make_report`` output (its table stems, anything under
    figures/) but that ``result``, the report just written there, did not make: left over from
    results or code that produced more (a grid since removed). The caller decides what to do."""
    out = Path(out_dir)
    made = {Path(p).resolve() for p in [*result["tables"], *result["figures"]]}
    candidates = [p for stem in TABLE_STEMS for p in out.glob(f"{stem}.*") if p.suffix in (".csv", ".md", ".tex")]
    candidates += [p for p in (out / "figures").glob("*") if p.is_file()]
    return sorted(p for p in candidates if p.resolve() not in made)


def _check_some_ok(runs: pd.DataFrame, results_dir: Path) -> None:
    """A ConfigError when no run of ``runs`` is "ok" (a table of dashes would say nothing): how
    many runs, their statuses, and the first error message."""
    status = runs["status"].astype(str)
    if (status == "ok").any():
        return
    counts = ", ".join(f"{n} {s}" for s, n in status.value_counts().sort_index().items())
    errors = runs["error"].dropna().astype(str) if "error" in runs else pd.Series(dtype=str)
    errors = errors[errors.str.strip() != ""]
    first = f"; the first error: {errors.iloc[0].strip().splitlines()[0]}" if len(errors) else ""
    raise ConfigError(f"{results_dir}: no run finished ok ({counts}), nothing to report{first}")


def load_folder(results_dir: str | os.PathLike) -> pd.DataFrame:
    """The runs of one results folder (``results.load_results``: merged and pending); a
    ConfigError when the folder does not exist, has no runs, or none finished ok."""
    results_dir = Path(results_dir)
    runs = load_results(results_dir)
    if runs.empty:
        if not results_dir.is_dir():
            raise ConfigError(f"{results_dir}: no such folder; `mibench run --out {results_dir}` records runs there")
        if not (results_dir / RUNS_FILE).is_file() and not (results_dir / PENDING_DIR).is_dir():
            raise ConfigError(f"{results_dir}: no {RUNS_FILE} (and no {PENDING_DIR}/ records) here; "
                              f"`mibench run --out {results_dir}` records runs there")
        raise ConfigError(f"{results_dir}: no runs recorded yet (in {RUNS_FILE} or {PENDING_DIR}/)")
    _check_some_ok(runs, results_dir)
    return runs


def report_command(folders: list[Path], out_dir: str | os.PathLike | None, units: str, fail_filter: str) -> str:
    """The ``mibench report`` command line that writes this report, as the page shows it."""
    elsewhere = out_dir and (len(folders) > 1 or Path(out_dir).resolve() != folders[0].resolve())
    parts = ["mibench", "report", *map(str, folders)] + (["--out", str(out_dir)] if elsewhere else [])
    parts += ["--units", units] if units != "nats" else []
    parts += ["--fail-filter", fail_filter] if fail_filter != "none" else []
    return shlex.join(parts)


def make_report(results_dir: str | os.PathLike | list[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                units: str = "nats", fail_filter: str = "none") -> dict[str, Any]:
    """Tables and figures of one results folder, or of several pooled.

    Reads DIR/runs.jsonl, DIR/traces.jsonl and DIR/embeddings/*.csv once; writes
    OUT/summary.{csv,md,tex} (``stats.summarize``), OUT/staircase.{csv,md,tex} when the folder
    has staircase runs (``stats.staircase_summary``, a row per cell and level) with the same as a
    paper table in OUT/staircase_table.{csv,md,tex} (``wide_tables.level_table``, a row per cell
    and a column per level), OUT/mi_table.{csv,md,tex} the same for the other cells when each
    estimator has one cell per true MI (``tables.has_mi_levels``), otherwise
    OUT/task_table.{csv,md,tex} when the cells span several tasks (``wide_tables.task_table``: a row
    per task, a column per estimator, "bias ± sd"), and OUT/figures/*.{png,pdf}
    (``figures.make_figures``, drawn from the same frames). ``out_dir`` defaults to the results
    folder. Reads the runs merged into runs.jsonl and those still pending (``results.load_results``).
    Raises ConfigError when the folder has no recorded runs, when none of them finished ok (the
    statuses and the first error named), and when a file cannot be written (OUT or OUT/figures
    a file, no space left, a read-only folder: ``mibench.atomic``; no file is left half-written).

    Also OUT/ranking.{md,csv} and figures/cd_diagram when two or more estimator cells have values
    on two or more tasks (``make_ranking``; ranked on |bias| in nats). ``units``: "nats" or "bits"
    for the tables and figures (rows stay in nats).

    Where the cells are tasks that differ in more than their MI (``bmi_table.spans_tasks``:
    BMI's suites), also OUT/bmi_table.{csv,md,tex} (BMI's v2 table: a row per task, "mean ± sd"
    per estimator in BMI's rounding) and figures/heatmap (BMI's heatmap of the same cells).
    ``fail_filter``: "none", or "bmi" to leave BMI's neural fails out of every statistic
    (``stats.bmi_fails``), counted per cell in the summary's ``n_dropped`` column.

    ``results_dir`` may be a list of folders: their runs are pooled into one report when
    ``pool.check_poolable`` finds them made the same way (a ConfigError naming what differs
    otherwise), written into ``out_dir``, which must then be given and lie outside all of them.

    Last, OUT/index.html (``mibench.html.write_page``): one self-contained page with the
    leaderboard, the tables (sortable, filterable), the figures, each task's results and the
    runs' provenance, linking the files beside it.

    Returns {"summary": DataFrame, "markdown": str, "tables": [paths], "figures": [paths],
    "ranking": RankResult or None, "page": the page's path}.
    """
    if fail_filter not in FAIL_FILTERS:
        raise ConfigError(f"unknown fail filter {fail_filter!r}; allowed: {', '.join(FAIL_FILTERS)}")
    commit = git_commit()          # read before the report's own files make the checkout look edited
    folders = [Path(results_dir)] if isinstance(results_dir, (str, os.PathLike)) else [Path(d) for d in results_dir]
    if not folders:
        raise ConfigError("no results folder given")
    if len(folders) > 1:
        check_out(folders, out_dir)
    each = [load_folder(folder) for folder in folders]
    if len(folders) > 1:
        check_poolable(folders, each)
    runs = pd.concat(each, ignore_index=True) if len(each) > 1 else each[0]
    out = Path(out_dir) if out_dir else folders[0]
    for folder in (out, out / "figures"):         # a file in the way: say so before writing anything
        check_folder(folder)
    traces = [load_traces(folder) for folder in folders]
    traces = pd.concat(traces, ignore_index=True) if len(traces) > 1 else traces[0]
    embeddings = {k: v for folder in folders for k, v in load_embeddings(folder).items()}

    summary = summarize(runs, fail_filter=fail_filter)
    stair = staircase_summary(traces, runs)
    plain = summary[~cells_of(summary, staircase_runs(runs))]
    ranking, ranking_files = make_ranking(plain, out, out / "figures")
    labels = estimator_labels(plain) if len(plain) else pd.Series(dtype=object)
    by_task = spans_tasks(plain) and not pd.DataFrame({"l": labels, "t": plain["task_params"]}).duplicated().any()
    ratios = log_ratios(runs, plain, fail_filter) if by_task else None
    if units != "nats":
        summary, plain, stair, runs, traces = (in_units(f, units) for f in (summary, plain, stair, runs, traces))
    tables = write_tables(summary, out, "summary")
    if not stair.empty:
        tables += write_tables(stair, out, "staircase",
                               caption="staircase: traced estimate over the last half of each level")
        tables += write_level_table(stair, out, "staircase_table", STAIRCASE_NOTE)
    if has_mi_levels(plain):
        tables += write_level_table(plain, out, "mi_table", MI_NOTE)
    elif plain["task_params"].nunique() > 1:
        if not pd.DataFrame({"l": labels, "t": plain["task_params"]}).duplicated().any():
            tables += write_task_table(plain, labels, out)
    wide = bmi_table(plain, labels, ratios) if by_task else None
    if wide is not None:
        tables += write_bmi_table(wide, out)
    figures = make_figures(out / "figures", runs=runs, traces=traces, summary=summary, staircase=stair,
                           embeddings=embeddings, units=units, tasks=wide)
    tables, figures = tables + ranking_files[:2], figures + ranking_files[2:]
    page = write_page(out, folders=folders, runs=runs, summary=summary, plain=plain, stair=stair, labels=labels,
                      wide=wide, ranking=ranking, tables=tables, figures=figures,
                      command=report_command(folders, out_dir, units, fail_filter), commit=commit)
    return {"summary": summary, "markdown": to_markdown(summary), "tables": tables, "figures": figures,
            "ranking": ranking, "page": page}
