"""benchmarks/render_docs.py: the committed docs hold exactly the tables the JSON renders to,
and the tables follow the JSON (a changed number changes the table; a hand edit is caught)."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from testkit import ROOT, load_benchmark


@pytest.fixture(scope="module")
def rd():
    return load_benchmark("render_docs")


@pytest.fixture
def copy(rd, tmp_path):
    """The docs and every file a table reads, copied into a scratch repository root."""
    for rel in {src for _, srcs in rd.TABLES.values() for src in srcs}:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, tmp_path / rel)
    for doc in rd.doc_files(ROOT):
        rel = doc.relative_to(ROOT)
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(doc, tmp_path / rel)
    return tmp_path


def _table(text: str, name: str) -> str:
    return re.search(rf"<!-- table:{name} -->\n(.*?)<!-- /table:{name} -->", text, re.S).group(1)


def test_committed_docs_match_the_json(rd, capsys):
    assert rd.main(["--check"]) == 0, capsys.readouterr().out


def test_every_table_has_a_marker_and_renders_rows(rd):
    docs = "".join(p.read_text() for p in rd.doc_files(ROOT))
    for name, (render, sources) in rd.TABLES.items():
        assert f"<!-- table:{name} -->" in docs and f"<!-- /table:{name} -->" in docs, name
        lines = render(ROOT).splitlines()
        assert len(lines) >= 3 and lines[1].startswith("|---"), name
        assert all(line.count("|") == lines[0].count("|") for line in lines), name
        assert sources and all((ROOT / s).is_file() for s in sources), name


def test_a_hand_edited_number_fails_the_check(rd, copy, capsys):
    doc = copy / "docs" / "results.md"
    text = doc.read_text()
    table = _table(text, "step-budget")
    assert "2,712" in table
    doc.write_text(text.replace(table, table.replace("2,712", "2,713", 1)))
    assert rd.main(["--check", "--root", str(copy)]) == 1
    out = capsys.readouterr().out
    assert "docs/results.md: table 'step-budget' differs" in out and "step_budget/results.json" in out
    assert rd.main(["--root", str(copy)]) == 0  # rendering puts the number back
    assert _table(doc.read_text(), "step-budget") == table
    assert rd.main(["--check", "--root", str(copy)]) == 0


def test_a_changed_json_value_changes_the_rendered_table(rd, copy, capsys):
    path = copy / "benchmarks" / "results" / "classifier_kd" / "results.json"
    res = json.loads(path.read_text())
    before = rd.TABLES["classifier-kd"][0](copy)
    assert "93.96" in before
    res["teacher"]["test_acc"] = 0.5
    path.write_text(json.dumps(res))
    after = rd.TABLES["classifier-kd"][0](copy)
    assert "93.96" not in after and "| 50.00 |" in after
    assert rd.main(["--check", "--root", str(copy)]) == 1
    assert "table 'classifier-kd' differs" in capsys.readouterr().out
    rd.main(["--root", str(copy)])
    assert "| 50.00 |" in _table((copy / "docs" / "classifier-kd.md").read_text(), "classifier-kd")
    # only the table changed: the prose around it is the committed one
    committed = (ROOT / "docs" / "classifier-kd.md").read_text()
    rendered = (copy / "docs" / "classifier-kd.md").read_text()
    assert rendered.replace(_table(rendered, "classifier-kd"), "") == committed.replace(
        _table(committed, "classifier-kd"), ""
    )


def test_a_changed_seed_changes_a_mean_and_its_spread(rd, copy):
    path = copy / "benchmarks" / "results" / "step_budget" / "results.json"
    res = json.loads(path.read_text())
    row = next(r for r in res["rows"] if r["width"] == 0.25 and "perc0" in r["recipe"])
    row["fid_mean"], row["fid_std"], row["fids"] = 2.0, 0.5, [1.5, 2.0, 2.5]
    path.write_text(json.dumps(res))
    assert "2.00 ± 0.50 (1.50, 2.00, 2.50)" in rd.TABLES["step-budget"][0](copy)


def test_an_unknown_table_name_is_refused(rd):
    with pytest.raises(SystemExit, match="unknown table 'nope'"):
        rd.render_text("<!-- table:nope -->\nx\n<!-- /table:nope -->\n", ROOT, "x.md")


def test_formatting_helpers(rd):
    assert [rd.sig(v) for v in (9.997, 0.0613198, 66.313, 285.56, 1311.2)] == ["10.0", "0.0613", "66.3", "286",
                                                                               "1,311"]  # fmt: skip
    assert rd.pm(13.294, 1.01) == "13.3 ± 1.0" and rd.pm(6.2, None) == "6.20"
    assert rd.si(3754401) == "3.75 M" and rd.si(434793) == "435 k" and rd.frac(0.125) == "1/8"
    assert rd.x_spread({"median": 7.46, "min": 7.241, "max": 10.376}) == "7.46× (7.24–10.38)"


def test_docs_cite_no_file_outside_the_repository():
    for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = p.read_text()
        assert "FACTS.md" not in text, p
        for link in re.findall(r"\]\(([^)#]+)", text):
            if not link.startswith("http"):
                assert (p.parent / link).exists(), (p.name, link)


def test_a_capped_recipe_is_shown_only_where_its_cap_binds(rd, copy):
    """At budgets where every cell of the capped candidate is its uncapped twin's run, the recipe tables show the twin's
    row alone; where the cap binds (a run of its own), the row is there."""
    res = json.loads((ROOT / "benchmarks/results/recipes/results.json").read_text())
    cap = next(r for r, o in res["recipes"].items() if o.get("adv_max_steps"))
    text = rd.t_recipes(ROOT, "c10")
    assert any(r["recipe"] == cap and r["budget"] == "c10" for r in res["rows"]) and f"| {cap} |" not in text
    path = copy / "benchmarks/results/recipes/results.json"
    for c in res["cells"].values():
        if c["recipe"] == cap:
            c["same_run_as"] = None
    path.write_text(json.dumps(res))
    assert f"| {cap} |" in rd.t_recipes(copy, "c10")
