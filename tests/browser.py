"""Check a web page as a reader would, in headless Chromium: ``check_page(path)`` lists what is
wrong with it.

It opens the file in Debian's Chromium (``CHROMIUM``, driven by Playwright; Playwright's own
browser downloads are never used) and reports, one line each: console errors and uncaught
script errors; requests that leave the machine (a page must work offline) or fail; images that
did not load; links to local files that do not exist, anchors that name no element, and links
to the network; sortable tables (``table.sortable``) whose header, clicked, does not sort the
rows by that column; and filters (``[data-filter]`` controls over rows with data-* attributes)
that do not hide the rows they should. Usable on any page: checks that find nothing to check
pass, and ``seen`` counts what was checked.

    python tests/browser.py PAGE.html [SCREENSHOT.png]   # prints problems and load times
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

CHROMIUM = "/usr/bin/chromium"
_NUMBER = re.compile(r"^[+\-\u2212]?\d[\d,]*(\.\d+)?(e[+\-]?\d+)?(?=$|[\s,\]\u00b1%])", re.I)
_MISSING = ("", "\u2013")
_NO_MATCH = "no row holds this text \u00a7"


class BrowserMissing(RuntimeError):
    """Chromium or Playwright is not installed: the reason, and how to install it."""


def launch(playwright: Any) -> Any:
    """Debian's Chromium, headless, through ``playwright``; BrowserMissing when it is absent."""
    if not Path(CHROMIUM).is_file():
        raise BrowserMissing(f"no Chromium at {CHROMIUM}: install Debian's package (apt-get install -y chromium)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright as start
    except ImportError:
        raise BrowserMissing("Playwright for Python is not installed (pip install playwright; its browser "
                             f"downloads are not needed: the checks use {CHROMIUM})") from None
    return start()


def _number(text: str) -> float | None:
    match = _NUMBER.match(text.lstrip("["))
    return float(match.group(0).replace(",", "").replace("\u2212", "-")) if match else None


def _sorted(keys: list[float], descending: bool) -> bool:
    pairs = zip(keys, keys[1:])
    return all(b <= a for a, b in pairs) if descending else all(a <= b for a, b in pairs)


_COLUMN = "([t, i]) => Array.from(document.querySelectorAll('table.sortable')[t].tBodies[0].rows)" \
          ".map(r => r.cells[i] ? r.cells[i].textContent.trim() : '')"


def _check_sorting(page: Any, problems: list[str], seen: dict[str, int], max_tables: int) -> None:
    """Per sortable table (the first ``max_tables``): the first numeric column not already in
    ascending order, clicked once (ascending) and again (descending)."""
    from playwright.sync_api import Error as PlaywrightError

    count = page.evaluate("document.querySelectorAll('table.sortable').length")
    for t in range(min(count, max_tables)):
        heads = page.locator("table.sortable").nth(t).locator("thead th")
        for i in range(heads.count()):
            texts = page.evaluate(_COLUMN, [t, i])
            keys = [_number(x) for x in texts if x not in _MISSING]
            if len(keys) < 2 or None in keys or _sorted(keys, False):
                continue
            name = heads.nth(i).inner_text().strip()
            for descending in (False, True):
                try:
                    heads.nth(i).click(timeout=5000)   # a real click: the header must be reachable
                except PlaywrightError as exc:
                    problems.append(f"sort: header {name!r} of table {t + 1} cannot be clicked: {exc}")
                    break
                after = [_number(x) for x in page.evaluate(_COLUMN, [t, i]) if x not in _MISSING]
                if not _sorted(after, descending):
                    problems.append(f"sort: clicking header {name!r} of table {t + 1} does not sort its rows "
                                    f"{'descending' if descending else 'ascending'}")
                    break
            seen["sorted tables"] += 1
            break


_ROWS = "(key) => Array.from(document.querySelectorAll('tr[data-' + key + ']')).map(r => " \
        "[r.dataset[key], !!r.closest('[hidden]') || getComputedStyle(r).display === 'none'])"


def _check_filters(page: Any, problems: list[str], seen: dict[str, int]) -> None:
    """Each select filter set to a value that some rows lack hides those rows and shows the
    others; the text filter, given text no row holds, hides every row and, cleared, none."""
    for control in page.locator("select[data-filter]").all():
        key = control.get_attribute("data-filter")
        values = [v for v in control.locator("option").evaluate_all("os => os.map(o => o.value)") if v]
        if len(values) < 2:
            continue
        control.select_option(values[-1])
        rows = page.evaluate(_ROWS, key)
        wrong = [v for v, hidden in rows if hidden == (v == values[-1])]
        if wrong or not rows:
            problems.append(f"filter: {key} = {values[-1]!r} leaves {len(wrong)} of {len(rows)} rows shown or "
                            "hidden wrongly")
        control.select_option("")
        seen["filters"] += 1
    for control in page.locator("input[data-filter]").all():
        key = "estimator"       # the rows every filter applies to carry data-estimator
        control.fill(_NO_MATCH)
        if not all(hidden for _, hidden in page.evaluate(_ROWS, key)):
            problems.append("filter: text no row holds leaves rows shown")
        control.fill("")
        if any(hidden for _, hidden in page.evaluate(_ROWS, key)):
            problems.append("filter: rows stay hidden once the text filter is cleared")
        seen["filters"] += 1


def _check_links(page: Any, path: Path, problems: list[str], seen: dict[str, int], allow_network: bool) -> None:
    links = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    for href in links:
        seen["links"] += 1
        url = urlparse(href)
        if url.scheme in ("http", "https") or href.startswith("//"):
            if allow_network:
                seen["links out"] = seen.get("links out", 0) + 1
            else:
                problems.append(f"link: {href} leaves the machine")
        elif url.scheme in ("mailto", "data"):
            continue
        elif not url.path:
            if not page.evaluate("(id) => !!document.getElementById(id)", unquote(url.fragment)):
                problems.append(f"link: anchor {href} names no element")
        elif not (path.parent / unquote(url.path)).exists():
            problems.append(f"link: {href} -> no such file {path.parent / unquote(url.path)}")


def check_page(path: str | Path, *, screenshot: str | Path | None = None, browser: Any = None,
               seen: dict[str, int] | None = None, allow_network: bool = False, max_tables: int = 30,
               timings: dict[str, float] | None = None, links_out: bool = False) -> list[str]:
    """The problems of the page at ``path`` (a local HTML file), one line each; [] when it
    passes. ``screenshot``: where to save a full-page PNG (taken before the checks click
    anything). ``browser``: a Playwright browser to reuse (else Chromium is launched, or
    BrowserMissing raised). ``seen`` (filled in): how many images, links, sortable tables and
    filters were checked. ``timings`` (filled in): seconds to the DOMContentLoaded and load
    events, and for the whole navigation. ``links_out``: links to the network are allowed (a
    documentation page citing a project's site) and counted in ``seen["links out"]``; requests
    to the network still are problems."""
    path = Path(path).resolve()
    seen = seen if seen is not None else {}
    seen.update({"images": 0, "links": 0, "sorted tables": 0, "filters": 0})
    if browser is None:
        with sync_playwright() as p:
            chromium = launch(p)
            try:
                return check_page(path, screenshot=screenshot, browser=chromium, seen=seen,
                                  allow_network=allow_network, max_tables=max_tables, timings=timings,
                                  links_out=links_out)
            finally:
                chromium.close()
    problems: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"script error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("request", lambda r: None if r.url.startswith(("file:", "data:", "about:")) or allow_network
            else problems.append(f"network request: {r.url}"))
    try:
        start = time.perf_counter()
        page.goto(path.as_uri(), wait_until="load")
        if timings is not None:
            timings["navigation_s"] = time.perf_counter() - start
            timings.update(page.evaluate("(() => { const t = performance.getEntriesByType('navigation')[0]; "
                                         "return {dom_content_loaded_s: t.domContentLoadedEventEnd / 1000, "
                                         "load_s: t.loadEventEnd / 1000}; })()"))
        if screenshot is not None:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        for src, width in page.evaluate("Array.from(document.images).map(i => [i.getAttribute('src'), "
                                        "i.complete ? i.naturalWidth : 0])"):
            seen["images"] += 1
            if not width:
                problems.append(f"image: {src} did not load")
        _check_links(page, path, problems, seen, allow_network or links_out)
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")
        _check_sorting(page, problems, seen, max_tables)
        _check_filters(page, problems, seen)
    finally:
        page.close()
    return problems


if __name__ == "__main__":
    found: dict[str, int] = {}
    times: dict[str, float] = {}
    lines = check_page(sys.argv[1], screenshot=sys.argv[2] if len(sys.argv) > 2 else None, seen=found, timings=times)
    print("\n".join(lines) or "no problems")
    print("checked:", ", ".join(f"{n} {k}" for k, n in found.items()))
    print("timings:", ", ".join(f"{k} {v:.2f}" for k, v in times.items()))
    sys.exit(1 if lines else 0)
