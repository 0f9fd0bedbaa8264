"""RESULTS.md's one-screen summary: measured beside the paper, claims with baselines or the study's verdicts."""

from __future__ import annotations

from regexplain.runs import PAPER
from regexplain.summary import STUDY_HINT, summary_lines


def _case(model, top, ratio, n):
    return {"model": model, "transform": "rotation", "top": top, "ratio": ratio, "n_active": n}


def _score(run, observed, null_p95, **fields):
    """A `scores` row as notebook 07 saves it (report.report_score_rows): selected by its fields, never by
    its label."""
    return {"model": f"{run} latent PCA", "run": run, "section": "latent", "score": "a label nobody parses",
            "family": "selectivity", "transform": "rotation", "variant": "top share", "observed": observed,
            "null_p95": null_p95, **fields}


RESULTS = {
    "paper": PAPER,
    "rows": {"case_study": [_case("hippocampus_noskip", 2, 3.0, 1), _case("hippocampus_skip", 5, 1.1, 4)],
             "scores": [_score("hippocampus_noskip", 0.8, 0.4), _score("hippocampus_skip", 0.3, 0.45),
                        # other variants, sections and families are not the summary's selectivity baseline
                        _score("hippocampus_noskip", 0.1, 0.9, variant="mean response"),
                        _score("hippocampus_noskip", 0.2, 0.9, section="fields"),
                        _score("hippocampus_skip", 0.1, 0.9, family="SAP")]},
}


def test_claims_without_a_study_show_this_run_and_how_to_get_a_verdict():
    md = "\n".join(summary_lines(RESULTS))
    assert STUDY_HINT in md
    assert "| Fig 5: one component stands out per transform (rotation, translation; two for scaling) | " \
           "rotation: component 2, 3.0× the next | rotation: top share 0.80 vs null 95 % 0.40 |" in md
    assert "rotation 1 / 4 | rotation: top share 0.80 / 0.30 (null 95 % 0.40 / 0.45) |" in md


def test_claims_without_notebook_07_name_the_missing_baseline():
    res = {**RESULTS, "rows": {"case_study": RESULTS["rows"]["case_study"]}}
    md = "\n".join(summary_lines(res))
    assert md.count("random-basis null: run notebook 07 (phantoms)") == 2


def test_a_study_replaces_the_single_run_rows_with_its_verdicts():
    row = {"claim": "Fig 8: no skip more selective than skip under rotation (ratio difference)",
           "measured": {"mean": 0.61, "lo": 0.55, "hi": 0.66, "n": 3}, "baseline": {"zero": 0.0},
           "verdict": "supported", "rule": "interval above the baseline"}
    study = {"msd_like": {"verdicts": [row], "seeds": [0, 1, 2], "profile": "quick"}}
    md = "\n".join(summary_lines({**RESULTS, "study": study}))
    assert STUDY_HINT not in md and "this run, one seed" not in md
    assert "msd_like phantoms, 3 seeds, quick profile" in md
    assert "| Fig 8: no skip more selective than skip under rotation (ratio difference) | 0.61 [0.55, 0.66] (3)" in md
    assert "**supported** | – | interval above the baseline |" in md        # no leave-one-out record: "–"
    fragile = {**row, "without_seed": {"0": "supported", "1": "inconclusive", "2": "supported"}, "fragile": True}
    md = "\n".join(summary_lines({**RESULTS, "study": {"msd_like": {**study["msd_like"], "verdicts": [fragile]}}}))
    assert "**supported** | *fragile*: without seed 1 → inconclusive |" in md


def test_empty_results_still_render():
    assert summary_lines({})[0] == "## At a glance"
