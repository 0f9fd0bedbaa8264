"""Result tables: defined once, saved as rows by the notebooks, merged and rendered into RESULTS.md."""

from __future__ import annotations

import json

import pytest

from regexplain import results


def test_records_markdown():
    t = results.records_markdown([{"a": 1, "b": 0.12345}, {"a": 2, "b": None}], 2)
    assert t.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.12 |", "| 2 | None |"]


def test_table_markdown_uses_the_one_definition():
    md = results.table_markdown("case_study", [{"model": "m", "transform": "rotation", "top": 2, "ratio": 3.0,
                                                "n_active": 1}])
    header = "| " + " | ".join(c.header for c in results.TABLES["case_study"].columns) + " |"
    assert md.splitlines() == [header, "|---|---|---|---|---|", "| m | rotation | 2 | 3.00 | 1 |"]
    row = {"model": "m", "transform": "t", "strength": 0.2, "mean_response": 0.5, "mean_component": 1}
    assert "| m | t | 0.20 | 0.50 (1) | – |" in results.table_markdown("selectivity_by_strength", [row])


def test_a_later_notebook_replaces_rows_with_the_same_key_and_keeps_the_others():
    a = {"rows": {"case_study": [{"model": "x", "transform": "rotation", "top": 1},
                                 {"model": "x", "transform": "scaling", "top": 4}]}}
    b = {"rows": {"case_study": [{"model": "x", "transform": "rotation", "top": 2},
                                 {"model": "y", "transform": "rotation", "top": 3}]}}
    merged = results.merge_rows([a, b])["case_study"]
    assert [(r["model"], r["transform"], r["top"]) for r in merged] == \
        [("x", "rotation", 2), ("x", "scaling", 4), ("y", "rotation", 3)]


def test_save_results_refuses_an_undefined_table(tmp_path):
    with pytest.raises(KeyError, match="TABLES"):
        results.save_results(tmp_path, "99_x", {"no_such_table": []})
    assert not list(tmp_path.iterdir())


def test_every_table_renders_once_in_the_details(tmp_path):
    rows = {"case_study": [{"model": "m", "transform": "rotation", "top": 2, "ratio": 3.0, "n_active": 1}],
            "scores": [{"model": "m", "score": "SAP", "observed": 0.5, "null_mean": 0.1, "null_p95": 0.2}],
            "dice": [{"model": "lung_noskip", "dice_before": 0.7, "dice_after": 0.88}]}
    results.save_results(tmp_path, "01_a", {"case_study": rows["case_study"]})
    results.save_results(tmp_path, "02_b", {"scores": rows["scores"], "dice": rows["dice"]}, extra=[1, 2])
    res = results.write_results(tmp_path, "quick")
    md = (tmp_path / "RESULTS.md").read_text()
    assert res["02_b"]["extra"] == [1, 2] and res["rows"]["dice"] == rows["dice"]
    assert md.count("## " + results.TABLES["case_study"].title) == 1 and "| m | SAP | 0.500 | 0.100 | 0.200 | – |" in md
    assert "Registration Dice, beside the paper" not in md      # shown in the summary, not a second time
    assert md.count("0.88") == 1
    assert json.loads((tmp_path / "results.json").read_text())["paper"]["dice"]["lung_noskip"]["after"] == 0.90


def test_a_written_reading_follows_its_table_and_bools_read_yes_no(tmp_path):
    rows = [{"score": "SAP", "best": "ica", "observed": 0.5, "beats_null": True, "pca": 0.3}]
    results.save_results(tmp_path, "08_x", {"basis_winners": rows}, texts={"basis_winners": "**ica** wins SAP."})
    md = results.results_markdown(results.merge_results(tmp_path), "quick")
    table = results.table_markdown("basis_winners", rows)
    assert "| SAP | ica | 0.500 | yes | 0.300 |" in table
    assert table + "\n\n**ica** wins SAP." in md
    with pytest.raises(KeyError, match="TABLES"):
        results.save_results(tmp_path, "08_y", {}, texts={"nope": "x"})
