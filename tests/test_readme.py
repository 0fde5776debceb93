"""The README's generated tables are the committed results' own (scripts/readme_tables.py)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_tables_match_the_committed_results(capsys):
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count("<!-- generated: ") >= 2                    # the staircase tables, at least
    assert _load().main(["--check"]) == 0, capsys.readouterr().out


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
    assert rt.main(["--check", "--readme", str(readme)]) == 1
    assert capsys.readouterr().out.count("is stale") == 2
    assert rt.main(["--readme", str(readme)]) == 0
    text = readme.read_text()
    first = text.split("<!-- end generated -->")[0]
    assert "old" not in first and "caption" not in text
    assert [line.split("|")[2].strip() for line in first.splitlines() if line.startswith("| ")][1:] == ["y", "x", "z"]
    assert text.endswith("| a      | z         |  3.00 |\n<!-- end generated -->\n") and "rest\n" in text
    assert rt.main(["--check", "--readme", str(readme)]) == 0


def test_a_missing_table_or_column_is_one_line_and_exit_2(tmp_path, capsys):
    rt = _load()
    (tmp_path / "t.md").write_text(TABLE)
    readme = tmp_path / "README.md"
    for block, message in (("nowhere.md", "nowhere.md"), ("t.md rows critic=joint", "no column 'critic'; columns: grid")):
        readme.write_text(f"<!-- generated: {block} -->\n<!-- end generated -->\n")
        before = readme.read_text()
        assert rt.main(["--readme", str(readme)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
        assert readme.read_text() == before                       # nothing half-written


def test_columns_are_picked_in_the_order_given_and_keep_their_alignment(tmp_path):
    rt = _load()
    (tmp_path / "t.md").write_text(TABLE)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- generated: t.md rows grid=a columns I = 2; estimator -->\n<!-- end generated -->\n")
    assert rt.main(["--readme", str(readme)]) == 0
    assert readme.read_text().splitlines()[1:5] == [
        "| I = 2 | estimator |",
        "|------:|:----------|",
        "|  1.00 | x         |",
        "|  3.00 | z         |",
    ]
