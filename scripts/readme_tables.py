"""Copy generated tables into the documentation, so its numbers are the committed results' own.

A block in README.md or in a page of docs/ between

    <!-- generated: results/reference/FOLDER/TABLE.md -->
    <!-- end generated -->

is replaced by the Markdown table of that file (written by `mibench report` / `mibench
figures`), without its caption line. The path is relative to the repository's root, whichever
file holds the block. Two options may follow the path:

- `rows grid=separable,joint` keeps only the rows whose `grid` column is one of those values, in
  that order (any column of the table can be named);
- `columns grid; estimator; bias [nats]` keeps only those columns, in that order.

    python scripts/readme_tables.py           # rewrite the blocks in README.md and docs/**/*.md
    python scripts/readme_tables.py --check   # exit 1, naming the stale blocks, if any differs
    python scripts/readme_tables.py FILE ...  # only these files

tests/test_readme.py runs the check, so the documentation cannot drift from the results.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(?P<head><!-- generated: (?P<path>\S+)(?: rows (?P<column>[^=]+)=(?P<values>\S+))?"
                   r"(?: columns (?P<columns>.+?))? -->\n)"
                   r"(?P<body>.*?)"
                   r"(?P<end><!-- end generated -->)", re.S)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _index(path: Path, names: list[str], column: str) -> int:
    if column not in names:
        raise ValueError(f"{path}: no column {column!r}; columns: {', '.join(names)}")
    return names.index(column)


def table(path: Path, column: str | None = None, values: str | None = None, columns: str | None = None) -> str:
    """The Markdown table in ``path`` (its lines starting with "|"), with only the rows whose
    ``column`` is one of the comma-separated ``values`` when given, in the order of the values,
    and only the "; "-separated ``columns`` when given, in their order."""
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        raise ValueError(f"{path}: no Markdown table")
    head, rows = lines[:2], lines[2:]
    names = _cells(head[0])
    if column:
        at = _index(path, names, column)
        rows = [r for value in values.split(",") for r in rows if _cells(r)[at] == value]
    if not columns:
        return "\n".join(head + rows) + "\n"
    keep = [_index(path, names, c.strip()) for c in columns.split(";")]
    grid = [[_cells(line)[i] for i in keep] for line in [head[0], *rows]]
    rules = [_cells(head[1])[i] for i in keep]
    widths = [max(len(r[k]) for r in grid) for k in range(len(keep))]
    right = [rule.endswith(":") for rule in rules]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)) + " |"

    rule = "|" + "|".join((":" if rl.startswith(":") else "-") + "-" * w + (":" if r else "-")
                          for rl, w, r in zip(rules, widths, right)) + "|"
    return "\n".join([line(grid[0]), rule, *map(line, grid[1:])]) + "\n"


def render(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every generated block filled in, and the paths of the blocks that changed."""
    changed: list[str] = []

    def fill(m: re.Match) -> str:
        body = table(root / m["path"], m["column"], m["values"], m["columns"])
        if body != m["body"]:
            changed.append(m["path"] + (f" (rows {m['column']}={m['values']})" if m["column"] else ""))
        return m["head"] + body + m["end"]

    return BLOCK.sub(fill, text), changed


def documents(root: Path = ROOT) -> list[Path]:
    """The files whose blocks are filled by default: README.md and every page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", help="Markdown files to fill (default: README.md and docs/**/*.md)")
    parser.add_argument("--check", action="store_true", help="only report stale blocks (exit 1 if any)")
    parser.add_argument("--root", default=str(ROOT), help="the folder block paths are relative to "
                        "(default: the repository)")
    args = parser.parse_args(argv)
    root = Path(args.root)
    files = [Path(f) for f in args.files] or documents(root)
    updates: dict[Path, str] = {}
    stale: list[str] = []
    try:
        for path in files:
            new, changed = render(path.read_text(encoding="utf-8"), root)
            if changed:
                updates[path] = new
                stale += [f"{_shown(path, root)}: the table from {c} is stale; run python scripts/readme_tables.py"
                          for c in changed]
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.check:
        for line in stale:
            print(line)
        return 1 if stale else 0
    for path, new in updates.items():                    # every table was read: nothing half-written
        path.write_text(new, encoding="utf-8")
    print(f"{len(stale)} table(s) updated in {len(updates)} file(s)")
    return 0


def _shown(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
