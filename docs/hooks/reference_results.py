"""MkDocs hook: put the committed reference results (results/reference/) into the documentation site.

The reference results live outside docs/, so that the pages read the same on a repository host
(where ``../results/reference/...`` from a page in docs/ is the committed file) and in the built
site. This hook

- adds every figure (``results/reference/*/figures/*.png``) and every report page
  (``results/reference/*/index.html``, with the files it links to in its folder) to the site
  under the same path, ``results/reference/...``;
- rewrites a page's links that lead to ``../results/reference/...`` so that they lead to that
  copy (a link to a file that is not there stays as written, and ``mkdocs build --strict``
  fails on it);
- replaces the line ``<!-- report pages -->`` with a table of the reference folders and their
  report pages, naming those that have none yet;
- wraps each generated table (``<!-- generated: ... -->``, scripts/readme_tables.py) in a
  ``div.generated-table``, whose cells docs/stylesheets/extra.css keeps on one line.
"""

from __future__ import annotations

import posixpath
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

from mkdocs.structure.files import File, Files

REFERENCE = "results/reference"
FIGURES = ("*/figures/*.png", "*/figures/*.svg")
LINK = re.compile(r"(\]\()([^)\s]+)")
MARKER = "<!-- report pages -->"
GENERATED = re.compile(r"(<!-- generated: .*? -->\n)(.*?)(<!-- end generated -->)", re.S)


class _Asset(File):
    """A file copied into the site as it is, whatever its extension (a report's summary.md too)."""

    def is_documentation_page(self) -> bool:
        return False


class _Targets(HTMLParser):
    """The relative ``href`` and ``src`` targets of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                parts = urlsplit(value)
                if not parts.scheme and not parts.netloc and parts.path:
                    self.targets.add(parts.path)


def _repo(config) -> Path:
    return Path(config.config_file_path).resolve().parent


def _report_files(folder: Path, repo: Path) -> list[str]:
    """``folder/index.html`` and the files in ``folder`` it links to, as paths relative to ``repo``."""
    page = folder / "index.html"
    parser = _Targets()
    parser.feed(page.read_text(encoding="utf-8", errors="replace"))
    found = [page]
    for target in sorted(parser.targets):
        path = (folder / target).resolve()
        if path.is_file() and path.is_relative_to(folder.resolve()):
            found.append(path)
    return [p.resolve().relative_to(repo).as_posix() for p in found]


def on_files(files: Files, config) -> Files:
    repo = _repo(config)
    reference = repo / REFERENCE
    wanted: list[str] = []
    for pattern in FIGURES:
        wanted += [p.relative_to(repo).as_posix() for p in sorted(reference.glob(pattern))]
    for page in sorted(reference.glob("*/index.html")):
        wanted += _report_files(page.parent, repo)
    for uri in dict.fromkeys(wanted):
        if uri not in files.src_uris:
            files.append(_Asset(uri, str(repo), config.site_dir, config.use_directory_urls, dest_uri=uri))
    return files


def _rewrite(match: re.Match, page_dir: str) -> str:
    target = match[2]
    joined = posixpath.normpath(posixpath.join(page_dir, target))
    if not joined.startswith("../" + REFERENCE + "/"):
        return match[0]
    return match[1] + posixpath.relpath(joined[3:], page_dir or ".")


def _report_table(repo: Path, page_url: str) -> str:
    """The table that replaces MARKER on the page at ``page_url`` (its address in the site)."""
    base = page_url.rstrip("/") if page_url.endswith("/") else posixpath.dirname(page_url)
    rows = ["| results folder | report page |", "|---|---|"]
    for folder in sorted(p for p in (repo / REFERENCE).iterdir() if (p / "runs.jsonl").is_file()):
        uri = f"{REFERENCE}/{folder.name}/index.html"
        if (folder / "index.html").is_file():
            # raw HTML, which MkDocs leaves as it is: ".../index.html" opens from a file:// site too
            cell = f'<a href="{posixpath.relpath(uri, base or ".")}">{folder.name}/index.html</a>'
        else:
            cell = "none yet (`mibench figures` writes it)"
        rows.append(f"| `{REFERENCE}/{folder.name}` | {cell} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    page_dir = posixpath.dirname(page.file.src_uri)
    markdown = LINK.sub(lambda m: _rewrite(m, page_dir), markdown)
    markdown = GENERATED.sub(r'\1<div class="generated-table" markdown>\n\n\2\n</div>\n\3', markdown)
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, _report_table(_repo(config), page.url))
    return markdown
