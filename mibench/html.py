"""The report as one web page: OUT/index.html, self-contained (its CSS and script inline, no
network), beside the tables and figures it links to.

``write_page`` lays out what ``report.make_report`` computed: the leaderboard (estimators
ranked over the tasks, with bias, sd, MSE and seconds per run), the tables (sortable by a click
on a column header, filtered by task family, estimator, library, critic and device), every
figure under a heading that says what it shows, each task's truth and estimates with the
failed runs and their reasons, and where the runs came from. The page holds a row per cell,
never per run, so that a folder of 10,000 runs still opens in seconds.
"""

from __future__ import annotations

import html
import math
import os
import platform
import re
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

import numpy as np
import pandas as pd

from .atomic import write_text
from .bmi_table import BMI_NOTE, bmi_display, task_params_dict
from .figures import figure_note
from .layout import PAGE_FILE, Folder
from .results import git_commit
from .stats import CELL_KEYS, cell_ids, estimator_labels, with_library
from .tables import MISSING, display_table
from .wide_tables import MI_NOTE, STAIRCASE_NOTE, TASK_NOTE, level_display, level_table, task_display, task_table

PAGE = PAGE_FILE
MAX_FAILED = 20     # failed runs listed per task; the others are counted
OPEN_TASKS = 12     # with at most this many tasks, each task's section starts open
FILTERS = ("family", "estimator", "library", "critic", "device")
TALL = 25           # a table of more rows scrolls in a box of its own
#: The page's style and script, inlined into every page.
ASSETS = (Path(__file__).with_name("page.css"), Path(__file__).with_name("page.js"))


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: Any, digits: int = 3) -> str:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return MISSING
    return f"{v:.{digits}f}" if math.isfinite(v) else MISSING


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _filter_attrs(row: pd.Series, task: str = "") -> dict[str, str]:
    """The attributes the page's filters read: family, estimator (name and library), library,
    critic, device and, for a per-task row, the task's title."""
    attrs = {"family": _text(row.get("family")), "estimator": with_library(row.get("bound"), row.get("library")),
             "library": _text(row.get("library")) or "mibench", "critic": _text(row.get("critic")) or "none",
             "device": _text(row.get("device"))}
    return {**attrs, "task": task} if task else attrs


def _table(view: pd.DataFrame, *, attrs: list[dict[str, str]] | None = None, foot: int = 0, caption: str = "",
           table_id: str = "") -> str:
    """``view`` (every cell text) as a sortable table: numbers right-aligned, the last ``foot``
    rows in a footer that sorting leaves alone, ``attrs`` (one dict per row) as data-* attributes,
    ``caption`` (what every row shares) above it; a long one scrolls in a box of its own."""
    head = "".join(f"<th>{_esc(c)}</th>" for c in view.columns)
    rows = []
    for i, values in enumerate(view.itertuples(index=False, name=None)):
        data = "".join(f' data-{k}="{_esc(v)}"' for k, v in (attrs[i] if attrs and i < len(attrs) else {}).items())
        cells = "".join(f'<td class="num">{_esc(v)}</td>' if _is_number(v) else f"<td>{_esc(v)}</td>"
                        for v in values)
        rows.append(f"<tr{data}>{cells}</tr>")
    body, tail = rows[:len(rows) - foot], rows[len(rows) - foot:]
    cap = f'<p class="note">The same in every row: {_esc(caption)}</p>' if caption else ""
    ident = f' id="{_esc(table_id)}"' if table_id else ""
    box = "scroll tall" if len(rows) > TALL else "scroll"
    return (f'{cap}<div class="{box}"><table class="sortable"{ident}><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody>" + (f"<tfoot>{''.join(tail)}</tfoot>" if foot else "")
            + "</table></div>")


_NUMBER = re.compile(r"^[+\-\u2212]?\d[\d,]*(\.\d+)?(e[+\-]?\d+)?(?=$|[\s,\]\u00b1%])", re.I)


def _is_number(text: Any) -> bool:
    return bool(_NUMBER.match(str(text).lstrip("[")))


def _rel(path: Path, out: Path) -> str | None:
    """``path`` relative to OUT as a link target (URL-quoted), or None when it lies outside OUT."""
    rel = os.path.relpath(Path(path).resolve(), out.resolve())
    return None if rel.startswith("..") else quote(Path(rel).as_posix())


def _figure(path: Path, out: Path) -> str:
    heading, sentence = figure_note(path.stem)
    src = _rel(path, out)
    pdf = path.with_suffix(".pdf")
    more = f' (<a href="{_esc(_rel(pdf, out))}">PDF</a>)' if pdf.is_file() and _rel(pdf, out) else ""
    return (f'<figure id="fig-{_esc(path.stem)}"><h3>{_esc(heading)}</h3><p class="note">{_esc(sentence)}{more}</p>'
            f'<img src="{_esc(src)}" alt="{_esc(heading)}"></figure>')


def leaderboard(plain: pd.DataFrame, ranking: Any) -> pd.DataFrame:
    """A row per estimator (labelled as the ranking labels them) over the cells that have a
    bias: its mean rank (NaN when it is not ranked), tasks, runs, failed runs, and the mean
    over its tasks of bias, |bias|, sd and MSE, and the median seconds per run; best first
    (by mean rank, then mean |bias|)."""
    cells = plain[np.isfinite(pd.to_numeric(plain["bias"], errors="coerce"))] if len(plain) else plain
    if cells.empty:
        return pd.DataFrame()
    cells = cells.assign(estimator=estimator_labels(cells).values, abs_bias=cells["bias"].abs())
    by = cells.groupby("estimator", sort=False)
    board = pd.DataFrame({"tasks": by["task_params"].nunique(), "runs": by["n_runs"].sum(),
                          "failed": by["n_failed"].sum(), "bias": by["bias"].mean(), "abs_bias": by["abs_bias"].mean(),
                          "sd": by["sd"].mean(), "mse": by["mse"].mean(), "wall_s": by["wall_s"].median()})
    ranks = ranking.table.set_index("estimator")["mean_rank"] if ranking is not None else pd.Series(dtype=float)
    board.insert(0, "mean_rank", board.index.map(ranks).astype(float))
    return board.sort_values(["mean_rank", "abs_bias"], na_position="last").reset_index()


def _leaderboard_section(plain: pd.DataFrame, ranking: Any, tables: list[Path], figures: list[Path], out: Path,
                         units: str) -> str:
    board = leaderboard(plain, ranking)
    if board.empty:
        return '<p class="note">No cell outside a staircase has an estimate: nothing to rank.</p>'
    u = units
    view = pd.DataFrame({"estimator": board["estimator"],
                         "mean rank": board["mean_rank"].map(lambda v: _num(v, 2)),
                         f"mean |bias| [{u}]": board["abs_bias"].map(_num),
                         f"mean bias [{u}]": board["bias"].map(_num),
                         f"mean sd [{u}]": board["sd"].map(_num), f"mean MSE [{u}²]": board["mse"].map(_num),
                         "median s per run": board["wall_s"].map(lambda v: f"{v:.3g}" if np.isfinite(v) else MISSING),
                         "tasks": board["tasks"].map(str), "runs": board["runs"].map(str),
                         "failed": board["failed"].map(str)})
    note = ("Estimators ranked on each task by |bias| (1 = closest to the truth), their ranks averaged over the "
            "tasks. bias = mean held-out estimate − true MI; sd = its spread over seeds; MSE = mean squared "
            "error over seeds; each averaged over the estimator's tasks. ")
    note += (_esc(ranking.describe()) + "." if ranking is not None else
             "No ranking: it needs two or more estimators with values on the same two or more tasks (an estimator "
             "with values on fewer tasks than the best covered one is left out).")
    if ranking is not None and board["mean_rank"].isna().any():
        note += " Estimators without a mean rank have values on fewer tasks than the others."
    cd = [p for p in figures if p.stem == "cd_diagram" and p.suffix == ".png"]
    return (f'<p class="note">{note}</p>' + _file_links("ranking", tables, out) + _table(view, table_id="ranking-table")
            + "".join(_figure(p, out) for p in cd))


def _filter_bar(summary: pd.DataFrame) -> str:
    values = [_filter_attrs(row) for _, row in summary.iterrows()]
    parts = []
    for key in FILTERS:
        options = sorted({v[key] for v in values}, key=str.lower)
        opts = "".join(f'<option value="{_esc(o)}">{_esc(o or MISSING)}</option>' for o in options)
        parts.append(f'<label>{key} <select data-filter="{key}"><option value="">all</option>{opts}</select></label>')
    parts.append('<label>text <input data-filter="text" type="search" placeholder="filter rows"></label>'
                 '<span id="shown"></span>')
    return '<div class="filters">Filter the tables and tasks: ' + "".join(parts) + "</div>"


def _file_links(stem: str, tables: Iterable[Path], out: Path) -> str:
    links = [f'<a href="{_esc(_rel(p, out))}">{_esc(p.name)}</a>' for p in tables
             if p.stem == stem and _rel(p, out)]
    return f'<p class="note">Files: {" · ".join(links)}</p>' if links else ""


def _tables_section(summary: pd.DataFrame, stair: pd.DataFrame, plain: pd.DataFrame, labels: pd.Series,
                    wide: pd.DataFrame | None, tables: list[Path], out: Path) -> str:
    made = {p.stem for p in tables}
    units = summary.attrs.get("units", "nats")
    parts = ['<p class="note">Click a column header to sort by it (again to reverse); the filters at the top '
             "hide the rows of the summary tables and of the tasks below that do not match.</p>"]

    def cells(title: str, stem: str, frame: pd.DataFrame, note: str) -> None:
        if "family" not in frame:               # staircase rows: their preset's family
            frame = frame.assign(family=frame["task"].map(summary.drop_duplicates("task").set_index("task")["family"]))
        view, constant = display_table(frame)
        caption = ", ".join(f"{k} = {v}" for k, v in constant.items())
        attrs = [_filter_attrs(row) for _, row in frame.iterrows()]
        parts.append(f'<h3 id="table-{stem}">{_esc(title)}</h3><p class="note">{_esc(note)}</p>'
                     + _file_links(stem, tables, out) + _table(view, attrs=attrs, caption=caption))

    def paper(title: str, stem: str, view: pd.DataFrame, note: str, foot: int = 0) -> None:
        if stem in made:
            parts.append(f'<h3 id="table-{stem}">{_esc(title)}</h3><p class="note">{_esc(note)}</p>'
                         + _file_links(stem, tables, out) + _table(view, foot=foot))

    cells("Summary: a row per cell", "summary", summary,
          "A cell is one estimator's runs on one task (its seeds): the mean held-out estimate, its bias with a "
          "95% bootstrap interval, the sd over seeds, the MSE, and the median throughput and seconds per run.")
    if len(stair):
        cells("Staircase levels", "staircase", stair, "staircase: " + STAIRCASE_NOTE)
        if "staircase_table" in made:
            paper("Staircase table", "staircase_table", level_display(level_table(stair))[0],
                  f"estimates in {units}; {STAIRCASE_NOTE}")
    if "mi_table" in made:
        paper("Estimates by true MI", "mi_table", level_display(level_table(plain))[0],
              f"estimates in {units}; {MI_NOTE}")
    if "task_table" in made:
        paper("Bias by task", "task_table", task_display(task_table(plain, labels)), f"bias in {units}; {TASK_NOTE}",
              foot=2)
    if wide is not None and "bmi_table" in made:
        paper("BMI's table", "bmi_table", bmi_display(wide), f"estimates in {units}; {BMI_NOTE}")
    return "".join(parts)


def _task_title(params: Any, family: Any) -> str:
    p = task_params_dict(params)
    if "name" in p:
        return str(p["name"])
    return ", ".join(f"{k}={v}" for k, v in sorted(p.items())) or _text(family) or "task"


def _truth_text(cell: pd.Series, methods: set[str], units: str) -> str:
    text = f"true MI {_num(cell['mi_true'], 4)} {units}"
    stderr = float(cell.get("mi_true_stderr", math.nan)) if "mi_true_stderr" in cell else math.nan
    if "monte_carlo" in methods:
        if math.isfinite(stderr) and stderr > 0:
            return text + f" ± {_num(stderr, 4)} (a Monte Carlo value ± its standard error)"
        return text + " (a Monte Carlo value; its standard error is not recorded in these runs)"
    return text + (f" ({', '.join(sorted(m.replace('_', ' ') for m in methods))})" if methods else "")


def _failed_list(failed: pd.DataFrame) -> str:
    items = []
    for _, r in failed.head(MAX_FAILED).iterrows():
        error = str(r.get("error") or "").strip().splitlines()
        name = with_library(r.get("bound"), r.get("library"))
        items.append(f"<li><code>{_esc(r.get('run_id', '?'))}</code> {_esc(name)}, seed {_esc(_text(r.get('seed')))}: "
                     f"{_esc(r.get('status'))}"
                     + (f": {_esc(error[0][:300])}" if error else "") + "</li>")
    more = len(failed) - MAX_FAILED
    tail = f"<li>… and {more} more (runs.jsonl holds them all)</li>" if more > 0 else ""
    return (f'<details><summary class="fail">{len(failed)} failed run(s) and why</summary><ul>{"".join(items)}'
            f"{tail}</ul></details>")


def _tasks_section(summary: pd.DataFrame, runs: pd.DataFrame, units: str) -> str:
    if summary.empty:
        return ""
    frame = summary.assign(_label=estimator_labels(summary).values,
                           _title=[_task_title(p, f) for p, f in zip(summary["task_params"], summary["family"])])
    run_task = cell_ids(runs).map(lambda c: c[len(CELL_KEYS)]) if len(runs) else pd.Series(dtype=object)
    bad = runs[runs["status"] != "ok"] if len(runs) else runs
    order = frame.groupby("task_params", sort=False)["mi_true"].first().sort_values(kind="stable").index
    parts, index = [], []
    for i, params in enumerate(order):
        cells = frame[frame["task_params"] == params]
        cells = cells.iloc[np.argsort(cells["bias"].abs().fillna(np.inf).to_numpy(), kind="stable")]
        title = cells["_title"].iloc[0]
        mine = runs[run_task == params] if len(runs) else runs
        methods = {str(m) for m in mine.get("truth_method", pd.Series(dtype=object)).dropna()}
        used = cells["n_runs"] - cells["n_failed"] - (cells["n_dropped"] if "n_dropped" in cells else 0)
        low, high = cells["bias_ci_low"] + cells["mi_true"], cells["bias_ci_high"] + cells["mi_true"]
        view = pd.DataFrame({"estimator": cells["_label"], f"estimate [{units}]": cells["mean"].map(_num),
                             "95% interval": [MISSING if MISSING in (_num(a), _num(b)) else f"[{_num(a)}, {_num(b)}]"
                                              for a, b in zip(low, high)],
                             f"bias [{units}]": cells["bias"].map(_num), f"sd [{units}]": cells["sd"].map(_num),
                             "runs used": used.map(str), "failed": cells["n_failed"].map(str)})
        if "n_dropped" in cells:
            view["dropped by the fail filter"] = cells["n_dropped"].map(str)
        attrs = [_filter_attrs(row, title) for _, row in cells.iterrows()]
        failed = bad[bad.index.isin(mine.index)] if len(bad) else bad
        anchor = f"task-{i + 1}"
        index.append(f'<a href="#{anchor}">{_esc(title)}</a>')
        best = cells.iloc[0]
        closest = f"; closest: {best['_label']} (bias {best['bias']:+.3f})" if np.isfinite(best["bias"]) else ""
        summary_line = (f"<b>{_esc(title)}</b>: {_esc(_truth_text(best, methods, units))}; {len(cells)} "
                        f"estimator cell(s), {int(cells['n_runs'].sum())} runs"
                        + (f', <span class="fail">{len(failed)} failed</span>' if len(failed) else "")
                        + _esc(closest))
        parts.append(f'<details class="task" id="{anchor}"{" open" if len(order) <= OPEN_TASKS else ""}>'
                     f"<summary>{summary_line}</summary>" + _table(view, attrs=attrs)
                     + (_failed_list(failed) if len(failed) else "") + "</details>")
    note = ("Each task's truth and, per estimator (closest to the truth first), the mean held-out estimate over "
            "seeds with the 95% bootstrap interval of that mean (– with one seed), the runs it rests on, and the "
            "runs that failed with their reasons. Click a task's line to open or close it.")
    return f'<p class="note">{note}</p><p class="note">Tasks: {" · ".join(index)}</p>' + "".join(parts)


def _counted(values: Iterable[Any], missing: str = "not recorded") -> str:
    counts = Counter(missing if v is None or v == "" or (isinstance(v, float) and math.isnan(v)) else str(v)
                     for v in values)
    return "; ".join(f"{_esc(v)} ({n} runs)" for v, n in counts.most_common())


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _now() -> str:
    """UTC now, or SOURCE_DATE_EPOCH's time where it is set (reproducible pages)."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    stamp = int(epoch) if epoch.isdigit() else time.time()
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp))


def _provenance_section(runs: pd.DataFrame, folders: list[Path], tables: list[Path], out: Path, command: str,
                        commit: str | None) -> str:
    from . import __version__

    def col(name: str) -> list[Any]:
        return list(runs[name]) if name in runs else []

    versions = [", ".join(f"{k} {v}" for k, v in sorted(v.items())) if isinstance(v, dict) else None
                for v in col("versions")]
    hosts = [str(w).rsplit(":", 1)[0] if isinstance(w, str) else None for w in col("worker")]
    finished = sorted(str(v) for v in col("finished_at") if isinstance(v, str))
    data = [f'<a href="{_esc(_rel(p, out))}">{_esc(p.name)}</a>' if _rel(p, out) else f"<code>{_esc(p)}</code>"
            for folder in map(Folder, folders) for p in (folder.runs, folder.traces) if p.is_file()]
    csv = [f'<a href="{_esc(_rel(p, out))}">{_esc(p.name)}</a>' for p in tables
           if p.suffix == ".csv" and _rel(p, out)]
    items = [
        ("Command", f"<code>{_esc(command)}</code>"),
        ("Page written", f"{_esc(_now())} by mibench {_esc(__version__)}, git commit "
                         f"{_esc(commit or 'unknown')}, Python {_esc(platform.python_version())}, "
                         f"torch {_esc(_version('torch'))}"),
        ("Page written on", f"{_esc(platform.platform())}; CPU {_esc(_cpu())}, {os.cpu_count()} cores"),
        ("Runs finished", _esc(f"{finished[0]} to {finished[-1]}") if finished else "not recorded"),
        ("Runs made with", _counted(versions)),
        ("Git commit of the runs", _counted(col("git_commit"), "not recorded (an installed package)")),
        ("Runs trained on (host)", _counted(hosts) + " (the rows name the host, not its CPU)"),
        ("Devices", _counted(col("device"))), ("Torch threads per run", _counted(col("threads"))),
        ("Runs", " · ".join(data) or "not beside this page"),
        ("Tables (CSV)", " · ".join(csv)),
    ]
    return '<dl class="prov">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def page_html(*, out: Path, folders: list[Path], runs: pd.DataFrame, summary: pd.DataFrame, plain: pd.DataFrame,
              stair: pd.DataFrame, labels: pd.Series, wide: pd.DataFrame | None, ranking: Any, tables: list[Path],
              figures: list[Path], command: str, commit: str | None = None) -> str:
    """The page's HTML (see ``write_page``)."""
    units = summary.attrs.get("units", "nats")
    style, script = (path.read_text(encoding="utf-8") for path in ASSETS)
    name = ", ".join(f.name or str(f) for f in folders)
    n_bad = int((runs["status"] != "ok").sum()) if "status" in runs else 0
    n_est = len({with_library(b, lb) for b, lb in zip(summary["bound"], summary["library"])})
    lead = (f"{len(runs)} runs ({len(runs) - n_bad} ok, {n_bad} not ok) of {n_est} estimators on "
            f"{summary['task_params'].nunique()} tasks: {len(summary)} cells (a cell: one estimator's runs on one "
            f"task, over seeds). MI in {units}; the estimates are held-out estimates.")
    pngs = [p for p in figures if p.suffix == ".png" and p.stem != "cd_diagram"]
    sections = [
        ("leaderboard", "Leaderboard", _leaderboard_section(plain, ranking, tables, figures, out, units)),
        ("tables", "Tables", _tables_section(summary, stair, plain, labels, wide, tables, out)),
        ("figures", "Figures", f'<div class="figures">{"".join(_figure(p, out) for p in pngs)}</div>' if pngs
         else '<p class="note">No figures.</p>'),
        ("tasks", "Tasks", _tasks_section(summary, runs, units)),
        ("provenance", "Provenance", _provenance_section(runs, folders, tables, out, command,
                                                                     commit if commit is not None else git_commit())),
    ]
    nav = "".join(f'<a href="#{k}">{t}</a>' for k, t, _ in sections)
    body = "".join(f'<section id="{k}"><h2>{t}</h2>{html_}</section>' for k, t, html_ in sections)
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>mibench report: {_esc(name)}</title><style>{style}</style></head><body>"
            f'<header class="bar"><nav>{nav}</nav>{_filter_bar(summary)}</header><main>'
            f'<h1>mibench report: {_esc(name)}</h1><p class="note">{_esc(lead)}</p>{body}</main>'
            f"<script>{script}</script></body></html>\n")


def write_page(out: Path, **frames: Any) -> Path:
    """Write OUT/index.html (``page_html``; whole or not at all) and return its path.

    Keywords: folders (the results folders read), runs (their rows), summary (``summarize``:
    every cell), plain (the cells outside staircases), stair (``staircase_summary``), labels
    (``stats.estimator_labels`` of plain), wide (``bmi_table``, or None), ranking (a
    ``RankResult`` or None), tables and figures (the files written), command (the command that
    writes this report), commit (mibench's git commit as the report began; read now when not
    given). Frames in the report's units (``summary.attrs["units"]``)."""
    return write_text(Folder(out).page, page_html(out=Path(out), **frames))
