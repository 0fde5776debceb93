"""The documentation site (mkdocs.yml, docs/) builds with --strict, with the reference results in it.

The hook docs/hooks/reference_results.py puts the committed figures and report pages of
results/reference/ into the site; the tests build the real site, and a small site in tmp_path
whose results folders hold a report page, to check what the hook copies, links and refuses.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOK = ROOT / "docs" / "hooks" / "reference_results.py"

pytestmark = pytest.mark.slow


def _build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config),
                           "--site-dir", str(site)], capture_output=True, text=True, env=env)
    assert "No module named mkdocs" not in done.stderr, "mkdocs is missing: pip install -e '.[docs]'"
    return done


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The real site, built with --strict."""
    site = tmp_path_factory.mktemp("docs") / "site"
    done = _build(ROOT / "mkdocs.yml", site)
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def test_the_site_builds_strictly_with_the_figures_and_the_api_reference(site):
    page = site / "reference-results" / "index.html"
    html = page.read_text(encoding="utf-8")
    images = [part.split('"')[0] for part in html.split('<img alt="')[1:] for part in [part.split('src="')[1]]]
    assert len(images) >= 8
    assert all((page.parent / src).is_file() for src in images), images
    assert (site / "results/reference/gaussian_staircase/figures/staircase.png").is_file()
    api = (site / "api" / "estimators" / "index.html").read_text(encoding="utf-8")
    assert "mibench.bounds" in api and "mibench.sample" in api
    assert html.count("<table>") >= 6                         # the generated tables, rendered


@pytest.mark.browser
def test_every_page_of_the_site_loads_in_a_browser_with_no_broken_link_or_image(site):
    """Every page of the built site, and every report page it carries, opened from disk in
    headless Chromium (tests/browser.py): no console or script error, no request leaving the
    machine, every image loaded, every local link and anchor resolving. Links out to other
    projects' sites are allowed on the documentation pages (not on report pages)."""
    from browser import BrowserMissing, check_page, launch, sync_playwright

    pages = sorted(site.rglob("index.html"))
    reports = [p for p in pages if "results" in p.relative_to(site).parts]
    assert len(pages) >= 15 and len(reports) >= 6, [str(p.relative_to(site)) for p in pages]
    problems, seen = {}, {"images": 0, "links": 0}
    try:
        with sync_playwright() as p:
            chromium = launch(p)
            try:
                for page in pages:
                    counts: dict[str, int] = {}
                    found = check_page(page, browser=chromium, seen=counts, max_tables=2, links_out=page not in reports)
                    if found:
                        problems[str(page.relative_to(site))] = found
                    seen = {k: seen[k] + counts[k] for k in seen}
            finally:
                chromium.close()
    except BrowserMissing as exc:
        pytest.fail(str(exc))
    assert problems == {}
    assert seen["images"] >= 30 and seen["links"] >= 300, seen


def _project(tmp_path: Path, page: str) -> Path:
    """A site in tmp_path using the hook: ``page`` as its front page, a page docs/sub/pages.md
    listing the report pages, a reference folder ``a`` that has a report page and one, ``b``,
    that has none."""
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "index.md").write_text(page, encoding="utf-8")
    (tmp_path / "docs" / "sub" / "pages.md").write_text("# Report pages\n\n<!-- report pages -->\n")
    a = tmp_path / "results" / "reference" / "a"
    (a / "figures").mkdir(parents=True)
    (a / "runs.jsonl").write_text("{}\n")
    (a / "figures" / "f.png").write_bytes(b"png")
    (a / "summary.md").write_text("| a |\n|---|\n| 1 |\n")
    (a / "index.html").write_text('<a href="summary.md">table</a><img src="figures/f.png">'
                                  '<a href="https://example.org/x">out</a><a href="../../../secret.txt">up</a>')
    (tmp_path / "secret.txt").write_text("not for the site")
    (tmp_path / "results" / "reference" / "b").mkdir()
    (tmp_path / "results" / "reference" / "b" / "runs.jsonl").write_text("{}\n")
    config = tmp_path / "mkdocs.yml"
    config.write_text(f"site_name: t\nhooks:\n  - {HOOK}\n")
    return config


def test_report_pages_and_figures_of_the_results_folders_are_carried_into_the_site(tmp_path):
    config = _project(tmp_path, "# t\n\n![f](../results/reference/a/figures/f.png)\n")
    done = _build(config, tmp_path / "site")
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "site" / "results" / "reference" / "a"
    assert (out / "index.html").is_file() and (out / "figures" / "f.png").read_bytes() == b"png"
    assert (out / "summary.md").read_text() == "| a |\n|---|\n| 1 |\n"        # copied, not rendered
    assert not (tmp_path / "site" / "secret.txt").exists()                   # nothing from outside the folder
    html = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert 'src="results/reference/a/figures/f.png"' in html
    listing = (tmp_path / "site" / "sub" / "pages" / "index.html").read_text(encoding="utf-8")
    assert 'href="../../results/reference/a/index.html"' in listing            # from the page's address
    assert "none yet" in listing.split("results/reference/b")[1]


def test_a_link_to_a_missing_result_fails_the_strict_build(tmp_path):
    config = _project(tmp_path, "# t\n\n![f](../results/reference/a/figures/missing.png)\n")
    done = _build(config, tmp_path / "site")
    assert done.returncode != 0 and "missing.png" in done.stdout + done.stderr
