"""The report's page, OUT/index.html (mibench.html): what it holds, read as HTML, and how it
behaves in headless Chromium (tests/browser.py's ``check_page``), on a real small sweep, with
pages broken on purpose to show that each check catches what it checks."""

import re
import shutil
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from browser import BrowserMissing, check_page, launch, sync_playwright
from mibench import figures as F
from mibench.cli import main
from mibench.figures import figure_note
from mibench.html import MAX_FAILED, PAGE
from mibench.report import make_report
from mibench.results import append_jsonl

ESTIMATORS = (("infonce", "mibench", "neural"), ("smile", "mibench", "neural"), ("ksg", "<lib> & co", "sample"))
HOSTILE = "<script>alert('x')</script> & more"


def synthetic_rows(n_tasks: int = 3, seeds: int = 3, fail_every: int = 0, copies: int = 1) -> list[dict]:
    """Run rows as a sweep records them, without training: ``n_tasks`` BMI-like tasks (the second
    with a Monte Carlo truth), the estimators of ESTIMATORS on each (the last of another library,
    named with HTML's special characters) on ``copies`` devices, ``seeds`` seeds; every
    ``fail_every``-th run an error whose message is markup."""
    rows, n = [], 0
    for t in range(n_tasks):
        truth = 0.2 + 0.1 * t
        for bound, library, kind in ESTIMATORS:
            for copy in range(copies):
                for seed in range(seeds):
                    n += 1
                    failed = fail_every and n % fail_every == 0
                    rows.append(dict(
                        run_id=f"run{n:06d}", task="synthetic", grid="g", grids=["g"], family="bmi",
                        task_params={"name": f"task-{t}"}, bound=bound, bound_kind="lower", library=library,
                        estimator_kind=kind, critic="joint" if kind == "neural" else None, encoder="identity",
                        n_negatives=63, batch_size=64, device=f"dev{copy}", seed=seed, steps=100,
                        precision="fp32", status="error" if failed else "ok",
                        error=f"RuntimeError: {HOSTILE}" if failed else None, staircase=[],
                        mi_true=truth, truth_method="monte_carlo" if t == 1 else "analytic",
                        mi_estimate=None if failed else truth - 0.05 * (1 + len(bound) % 3) + 0.01 * seed,
                        mi_std=0.01, pairs_per_s=1000.0 + seed, steps_per_s=10.0, wall_s=1.5 + seed,
                        versions={"mibench": "0.1.0", "python": "3.11.7", "torch": "2.4.0"},
                        git_commit="abc123", worker="hostA:42", threads=1,
                        finished_at=f"2026-01-0{1 + seed}T00:00:00+0000"))
    return rows


def write_runs(folder: Path, rows: list[dict]) -> Path:
    for r in rows:
        append_jsonl(folder / "runs.jsonl", r)
    return folder


class _Links(HTMLParser):
    """Every href and src of a page, every id, and the tags seen."""

    def __init__(self):
        super().__init__()
        self.refs, self.ids, self.tags = [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        self.refs += [(tag, attrs[k]) for k in ("href", "src") if k in attrs]
        if "id" in attrs:
            self.ids.add(attrs["id"])


def parsed(page: Path) -> _Links:
    links = _Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    folder = write_runs(tmp_path_factory.mktemp("synthetic") / "results", synthetic_rows(fail_every=7))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F.style, "FORMATS", ("png",))
        result = make_report(folder)
    return folder, result


def test_page_holds_the_leaderboard_tables_figures_tasks_and_provenance(synthetic_report):
    folder, result = synthetic_report
    page = folder / PAGE
    assert result["page"] == page and page.is_file()
    text = page.read_text(encoding="utf-8")
    for section in ("leaderboard", "tables", "figures", "tasks", "provenance"):
        assert f'<section id="{section}">' in text, section
    # the leaderboard: every ranked estimator with its mean rank, bias, sd, MSE and seconds per run
    ranking = result["ranking"]
    assert ranking is not None
    for name, rank in zip(ranking.table["estimator"], ranking.table["mean_rank"]):
        assert f'<td>{escape(name)}</td><td class="num">{rank:.2f}</td>' in text, name
    for header in ("mean |bias| [nats]", "mean sd [nats]", "mean MSE [nats²]", "median s per run"):
        assert f"<th>{header}</th>" in text
    # the summary: a row per cell, each with the attributes the filters read
    summary_rows = re.findall(r'<tr data-family="bmi" data-estimator="[^"]*" data-library="[^"]*" '
                              r'data-critic="[^"]*" data-device="[^"]*">', text)
    assert len(summary_rows) == len(result["summary"])
    # the tasks: one section each, a row per cell, the failed runs with their reasons
    assert text.count('<details class="task"') == 3
    assert len(re.findall(r'<tr [^>]*data-task="task-\d"', text)) == len(result["summary"])
    n_failed = int(result["summary"]["n_failed"].sum())
    assert n_failed > 0 and text.count("RuntimeError: ") == n_failed
    assert "a Monte Carlo value" in text
    # every figure the report drew, under a heading from FIGURE_NOTES
    pngs = [p for p in result["figures"] if p.suffix == ".png"]
    assert pngs and "A figure of this report." not in text
    for png in pngs:
        assert f'src="figures/{png.name}"' in text and f"<h3>{escape(figure_note(png.stem)[0])}</h3>" in text
    # provenance: versions, commit, host, the command, the dates, the CSV files
    for fact in ("mibench 0.1.0, python 3.11.7, torch 2.4.0 (27 runs)", "abc123 (27 runs)", "hostA (27 runs)",
                 f"mibench report {folder}", "2026-01-01T00:00:00+0000 to 2026-01-03T00:00:00+0000",
                 'href="summary.csv"', 'href="runs.jsonl"'):
        assert fact in text, fact


def test_page_is_self_contained_and_its_links_resolve(synthetic_report):
    folder, _ = synthetic_report
    links = parsed(folder / PAGE)
    assert links.tags.count("script") == 1 and links.tags.count("style") == 1    # both inline
    assert not [ref for tag, ref in links.refs if tag in ("script", "link")]
    refs = [ref for _, ref in links.refs]
    assert any(r.endswith(".csv") for r in refs) and any(r.endswith(".png") for r in refs)
    for ref in refs:
        url = urlparse(ref)
        assert not url.scheme and not ref.startswith("//"), ref                     # nothing from the network
        if url.path:
            assert (folder / unquote(url.path)).is_file(), ref
        else:
            assert url.fragment in links.ids, ref


def test_names_and_messages_are_escaped(synthetic_report):
    folder, _ = synthetic_report
    text = (folder / PAGE).read_text(encoding="utf-8")
    assert "<script>alert" not in text and "<lib>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in text
    assert "ksg (&lt;lib&gt; &amp; co)" in text


def test_failed_runs_are_listed_up_to_a_limit_and_counted_beyond(tmp_path, monkeypatch):
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    rows = synthetic_rows(n_tasks=2, seeds=MAX_FAILED + 5)
    for r in rows:
        if r["task_params"]["name"] == "task-0" and r["bound"] == "smile":
            r.update(status="error", error="ValueError: bad\nsecond line", mi_estimate=None)
    folder = write_runs(tmp_path / "results", rows)
    make_report(folder)
    text = (folder / PAGE).read_text(encoding="utf-8")
    assert text.count("ValueError: bad") == MAX_FAILED and "second line" not in text
    assert "… and 5 more (runs.jsonl holds them all)" in text
    assert f"{MAX_FAILED + 5} failed run(s) and why" in text


def test_truth_shows_its_standard_error_or_says_it_is_not_recorded(tmp_path, monkeypatch):
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    rows = synthetic_rows(n_tasks=2, seeds=2)
    folder = write_runs(tmp_path / "old", rows)
    make_report(folder)
    assert "its standard error is not recorded in these runs" in (folder / PAGE).read_text(encoding="utf-8")
    for r in rows:
        r["mi_true_stderr"] = 0.0031 if r["truth_method"] == "monte_carlo" else 0.0
    folder = write_runs(tmp_path / "new", rows)
    make_report(folder)
    text = (folder / PAGE).read_text(encoding="utf-8")
    assert "true MI 0.3000 nats ± 0.0031 (a Monte Carlo value ± its standard error)" in text
    assert "not recorded" not in text.split('id="provenance"')[0]


def test_the_page_names_the_commit_as_the_report_began(tmp_path, monkeypatch):
    """The page's commit is read before the report writes its files (which, in a checkout whose
    results folder is committed, would make the commit look edited): the commit as it was then."""
    import mibench.html
    import mibench.report

    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    monkeypatch.setattr(mibench.report, "git_commit", lambda: "0123abc")
    monkeypatch.setattr(mibench.html, "git_commit", lambda: "0123abc-dirty")
    folder = write_runs(tmp_path / "results", synthetic_rows(n_tasks=2, seeds=2))
    make_report(folder)
    text = (folder / PAGE).read_text(encoding="utf-8")
    assert "git commit 0123abc," in text and "0123abc-dirty" not in text


def test_a_large_folder_gives_a_row_per_cell_not_per_run(tmp_path, monkeypatch):
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    rows = synthetic_rows(n_tasks=20, seeds=10, copies=2, fail_every=50)       # 1,200 runs, 120 cells
    result = make_report(write_runs(tmp_path / "results", rows))
    text = result["page"].read_text(encoding="utf-8")
    cells = len(result["summary"])
    assert cells == 120
    # the leaderboard, the summary and the task tables: a row per estimator or cell, never per run
    assert text.count("<tr") <= 2 * cells + 2 * 20 + 30
    ok_ids = [r["run_id"] for r in rows if r["status"] == "ok"]
    assert not any(run_id in text for run_id in ok_ids[::37])
    assert 'class="task" id="task-1">' in text             # 20 tasks: each starts closed


def test_report_command_names_the_page(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    folder = write_runs(tmp_path / "results", synthetic_rows(n_tasks=2, seeds=2))
    assert main(["report", str(folder), "--units", "bits"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"all of them on one page: {folder / PAGE}")
    text = (folder / PAGE).read_text(encoding="utf-8")
    assert f"mibench report {folder} --units bits" in text and "true MI [bits]" in text


def test_a_pooled_report_names_its_folders_and_links_only_files_beside_it(tmp_path, monkeypatch):
    monkeypatch.setattr(F.style, "FORMATS", ("png",))
    rows = synthetic_rows(n_tasks=2, seeds=2)
    a = write_runs(tmp_path / "a", [r for r in rows if r["bound"] != "ksg"])
    b = write_runs(tmp_path / "b", [r for r in rows if r["bound"] == "ksg"])
    page = make_report([a, b], tmp_path / "out")["page"]
    text = page.read_text(encoding="utf-8")
    assert f"<code>mibench report {a} {b} --out {tmp_path / 'out'}</code>" in text
    assert f"<code>{a / 'runs.jsonl'}</code> · <code>{b / 'runs.jsonl'}</code>" in text     # named, not linked
    links = parsed(page)
    assert all((page.parent / unquote(urlparse(ref).path)).is_file() for _, ref in links.refs if urlparse(ref).path)
    make_report(a, a)                                    # OUT is the folder: no --out in the command
    assert f"<code>mibench report {a}</code>" in (a / PAGE).read_text(encoding="utf-8")


def test_every_figure_the_report_draws_has_a_heading_and_a_sentence():
    names = ("training_joint", "staircase", "staircase_transform-cubic", "bias_sd", "bias_sd_staircase",
             "bias_sd_staircase_transform-cubic", "truth", "estimate_vs_truth", "heatmap", "negatives", "throughput",
             "embedding", "embedding_seed1", "cd_diagram")
    notes = {name: figure_note(name) for name in names}
    assert all(heading != name and sentence.endswith(".") and sentence != "A figure of this report."
               for name, (heading, sentence) in notes.items())
    assert notes["bias_sd_staircase_transform-cubic"][0] == "Bias and spread at each staircase level (transform-cubic)"
    assert notes["training_joint"][0] == "Training curves (joint)"
    assert figure_note("new_figure") == ("new_figure", "A figure of this report.")


# --------------------------------------------------------------------------------------------
# In a browser: Debian's Chromium through Playwright


# A real sweep in seconds: two bounds trained 20 steps, two sample estimators, an external program
# named with markup that answers, and one that fails (its runs are error rows with the reason).
TINY_PAGE_PRESET = """
name = "tiny_page"
[task]
family = "bmi"
rescale = true
[estimator]
critic = "joint"
hidden = [16]
negatives = "all"
[train]
n_samples = 256
steps = 20
batch_size = 64
lr = 0.01
log_every = 5
[eval]
n_samples = 256
batch_size = 256

[[grid]]
name = "neural"
bounds = ["infonce", "smile"]
seeds = [0, 1]
task = { name = ["1v1-normal-0.75", "1v1-AI", "multinormal-dense-5-5-0.5"] }

[[grid]]
name = "classical"
estimators = ["ksg", "cca"]
n_samples = 400
seeds = [0, 1]
task = { name = ["1v1-normal-0.75", "1v1-AI", "multinormal-dense-5-5-0.5"] }

[[grid]]
name = "programs"
estimators = ["external"]
command = "{python} -c \\"print(0.25)\\" {x} {y}"
label = "<b>const</b> & co"
library = "elsewhere"
n_samples = 200
seeds = [0, 1]
task = { name = ["1v1-normal-0.75", "1v1-AI", "multinormal-dense-5-5-0.5"] }

[[grid]]
name = "broken"
estimators = ["external"]
command = "{python} -c \\"import sys; sys.exit('no <estimate> here')\\" {x} {y}"
label = "broken"
library = "elsewhere"
n_samples = 200
seeds = [0]
task = { name = ["1v1-normal-0.75", "1v1-AI"] }
"""


@pytest.fixture(scope="module")
def browser_or_reason():
    """Debian's Chromium through Playwright, or why there is none (BrowserMissing's message)."""
    try:
        with sync_playwright() as p:
            browser = launch(p)
            yield browser
            browser.close()
    except BrowserMissing as exc:
        yield str(exc)


def need(browser_or_reason):
    """The browser; the test that has none fails here, saying what is missing."""
    if isinstance(browser_or_reason, str):
        pytest.fail(browser_or_reason)
    return browser_or_reason


@pytest.fixture(scope="module")
def sweep_page(tmp_path_factory):
    """OUT/index.html of `mibench run` on TINY_PAGE_PRESET then `mibench report`."""
    root = tmp_path_factory.mktemp("sweep")
    preset, out = root / "tiny_page.toml", root / "results"
    preset.write_text(TINY_PAGE_PRESET)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(F.style, "FORMATS", ("png",))
        assert main(["run", "--task", str(preset), "--out", str(out), "--no-progress"]) == 1   # the broken runs
        assert main(["report", str(out)]) == 0
    return out / PAGE


@pytest.mark.browser
@pytest.mark.slow
def test_the_report_page_of_a_sweep_passes_every_check(sweep_page, browser_or_reason, tmp_path):
    chromium = need(browser_or_reason)
    seen = {}
    shot = tmp_path / "page.png"
    assert check_page(sweep_page, screenshot=shot, browser=chromium, seen=seen) == []
    figures = len(list((sweep_page.parent / "figures").glob("*.png")))
    assert figures >= 5 and seen["images"] == figures
    assert seen["links"] > 20 and seen["sorted tables"] >= 4 and seen["filters"] >= 4
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 50_000


@pytest.mark.browser
@pytest.mark.slow
def test_the_page_shows_failures_and_names_as_text(sweep_page, browser_or_reason):
    chromium = need(browser_or_reason)
    page = chromium.new_page()
    try:
        page.goto(sweep_page.as_uri())
        failed = page.locator("details.task summary.fail")
        assert failed.count() == 2                            # the two tasks the broken program ran on
        failed.first.click()
        assert "no <estimate> here" in page.locator("details.task details").first.inner_text()
        assert "<b>const</b> & co (elsewhere)" in page.locator("#ranking-table").inner_text()
        # a filter by estimator leaves that estimator's rows in the summary and in every task
        page.select_option('select[data-filter="estimator"]', "ksg")
        shown = page.locator("tr[data-estimator]:not([hidden])")
        assert shown.count() == 2 * 3 and set(shown.evaluate_all("rs => rs.map(r => r.dataset.estimator)")) == {"ksg"}
        assert page.inner_text("#shown") == f"6 of {page.locator('tr[data-estimator]').count()} rows shown"
    finally:
        page.close()


def _delete_a_figure(folder: Path, text: str) -> str:
    (folder / "figures" / "bias_sd.png").unlink()
    return text


# Each way of breaking the page, and what check_page must then say.
BROKEN = {
    "missing image": (_delete_a_figure, "image: figures/bias_sd.png did not load"),
    "sort that does not reorder": (lambda folder, text: text.replace("body.appendChild(rows[j]);", "void rows[j];"),
                                   "sort: clicking header"),
    "filter that hides nothing": (lambda folder, text: text.replace("r.hidden = !ok;", ""), "filter: "),
    "script error": (lambda folder, text: text.replace('"use strict";', '"use strict"; undefinedName();'),
                     "script error: undefinedName is not defined"),
    "link to a missing file": (lambda folder, text: text.replace('href="summary.csv"', 'href="gone.csv"'),
                               "link: gone.csv -> no such file"),
    "anchor to no element": (lambda folder, text: text.replace('href="#tasks"', 'href="#nowhere"'),
                             "link: anchor #nowhere names no element"),
    "link to the network": (lambda folder, text: text.replace("<main>", '<main><a href="https://example.org/">x</a>'),
                            "link: https://example.org/ leaves the machine"),
}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.parametrize("how", list(BROKEN))
def test_the_checker_reports_a_page_broken_on_purpose(how, sweep_page, browser_or_reason, tmp_path):
    chromium = need(browser_or_reason)
    folder = tmp_path / "copy"
    shutil.copytree(sweep_page.parent, folder)
    breaker, expected = BROKEN[how]
    page = folder / PAGE
    text = page.read_text(encoding="utf-8")
    broken = breaker(folder, text)
    assert broken != text or how == "missing image"           # the page did change
    page.write_text(broken, encoding="utf-8")
    problems = check_page(page, browser=chromium)
    assert any(expected in p for p in problems), problems


def test_a_missing_browser_is_a_failure_with_its_reason(monkeypatch):
    import browser

    monkeypatch.setattr(browser, "CHROMIUM", "/nonexistent/chromium")
    with pytest.raises(BrowserMissing, match="apt-get install -y chromium"):
        browser.launch(None)
