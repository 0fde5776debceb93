"""The README and the documentation pages: their generated tables are the committed results' own
(scripts/readme_tables.py), the README's install commands come first, and its links lead to files."""

import importlib.util
import re
from pathlib import Path

from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")
COMMANDS = [
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && mibench run --task gaussian --quick",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest --benchmark-disable",
]


def _load():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_documentation_tables_match_the_committed_results(capsys):
    for page, least in (("reference-results.md", 5), ("reproduction.md", 2)):  # the staircases, at least
        assert (ROOT / "docs" / page).read_text(encoding="utf-8").count("<!-- generated: ") >= least, page
    assert _load().main(["--check"]) == 0, capsys.readouterr().out


def test_the_readme_opens_with_the_two_install_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = text.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [line for line in first.splitlines() if not line.startswith("#") and line.strip()] == COMMANDS


def _headings(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {slugify(line.lstrip("#").strip(), "-") for line in text.splitlines() if line.startswith("#")}


def test_every_link_of_the_readme_leads_to_a_file_and_section_there():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert sum(t.startswith("docs/") for t in targets) >= 5       # the README points into the docs
    missing = [t for t in targets if not (ROOT / t.split("#")[0]).is_file()]
    assert not missing, f"README links to files that are not there: {missing}"
    anchors = [t for t in targets if "#" in t]
    assert not [t for t in anchors if t.split("#")[1] not in _headings(ROOT / t.split("#")[0])], anchors


def test_a_stale_table_in_a_docs_page_is_found_by_default(tmp_path, capsys):
    rt = _load()
    (tmp_path / "t.md").write_text(TABLE)
    (tmp_path / "README.md").write_text("no blocks\n")
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    page = tmp_path / "docs" / "sub" / "page.md"
    page.write_text("<!-- generated: t.md -->\nold\n<!-- end generated -->\n")
    assert rt.main(["--check", "--root", str(tmp_path)]) == 1
    assert "docs/sub/page.md: the table from t.md is stale" in capsys.readouterr().out
    assert rt.main(["--root", str(tmp_path)]) == 0 and "old" not in page.read_text()
    assert rt.main(["--check", "--root", str(tmp_path)]) == 0


TABLE = """caption line

| grid   | estimator | I = 2 |
|:-------|:----------|------:|
| a      | x         |  1.00 |
| b      | y         |  2.00 |
| a      | z         |  3.00 |
"""


def test_blocks_are_filled_filtered_in_the_order_given_and_stale_ones_named(tmp_path, capsys):
    rt = _load()
    (tmp_path / "t.md").write_text(TABLE)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- generated: t.md rows grid=b,a -->\nold\n<!-- end generated -->\nrest\n"
                      "<!-- generated: t.md -->\n<!-- end generated -->\n")
    assert rt.main(["--check", "--root", str(tmp_path), str(readme)]) == 1
    assert capsys.readouterr().out.count("is stale") == 2
    assert rt.main(["--root", str(tmp_path), str(readme)]) == 0
    text = readme.read_text()
    first = text.split("<!-- end generated -->")[0]
    assert "old" not in first and "caption" not in text
    assert [line.split("|")[2].strip() for line in first.splitlines() if line.startswith("| ")][1:] == ["y", "x", "z"]
    assert text.endswith("| a      | z         |  3.00 |\n<!-- end generated -->\n") and "rest\n" in text
    assert rt.main(["--check", "--root", str(tmp_path), str(readme)]) == 0


def test_a_missing_table_or_column_is_one_line_and_exit_2(tmp_path, capsys):
    rt = _load()
    (tmp_path / "t.md").write_text(TABLE)
    readme = tmp_path / "README.md"
    for block, message in (("nowhere.md", "nowhere.md"), ("t.md rows critic=joint", "no column 'critic'; columns: grid")):
        readme.write_text(f"<!-- generated: {block} -->\n<!-- end generated -->\n")
        before = readme.read_text()
        assert rt.main(["--root", str(tmp_path), str(readme)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
        assert readme.read_text() == before                       # nothing half-written


def test_columns_are_picked_in_the_order_given_and_keep_their_alignment(tmp_path):
    rt = _load()
    (tmp_path / "t.md").write_text(TABLE)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- generated: t.md rows grid=a columns I = 2; estimator -->\n<!-- end generated -->\n")
    assert rt.main(["--root", str(tmp_path), str(readme)]) == 0
    assert readme.read_text().splitlines()[1:5] == [
        "| I = 2 | estimator |",
        "|------:|:----------|",
        "|  1.00 | x         |",
        "|  3.00 | z         |",
    ]
