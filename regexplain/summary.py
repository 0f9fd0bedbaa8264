"""The one-screen summary that opens ``RESULTS.md``: does the paper hold here?

Three blocks, each row measured here beside the paper:

* registration Dice (before → after) per model;
* explained variance of the latent PCA (all K / first four);
* each claim of the paper with the measured answer and its baseline. With a seed study in the results
  (``results["study"]``: regime -> :mod:`regexplain.analysis.study`'s record, merged from ``figures/study_*.json``),
  the rows are its verdicts; without one, this run's single-seed read-outs are shown with their
  random-basis nulls, and a line says how to get a verdict.

It reads the merged tables of :mod:`regexplain.results` (``results["rows"]``: dice, explained_variance,
case_study, scores), never a notebook's own keys.

Pure: the merged results dict in, Markdown lines out; every number comes from the results.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: The paper's claims, in its words (Estienne et al. 2021, sections 4.1 and 4.2).
CLAIMS = {
    "fig5": "Fig 5: one component stands out per transform (rotation, translation; two for scaling)",
    "fig8": "Fig 8: without skip connections the latent space is more selective than with them",
}
STUDY_HINT = ("No seed study in this folder yet, and one run cannot rule on a claim: `make study` (or `regexplain "
              "study`) trains 5 seeds per architecture on the calibrated and the pose phantoms (hours on 2 cores; "
              "`--executor local --jobs 2` runs two trainings at once; resumable) and its verdicts replace the rows "
              "below at the next `make reproduce`.")
MODEL_NAMES = {"hippocampus_noskip": "hippocampus, no skip", "hippocampus_skip": "hippocampus, skip",
               "lung_noskip": "lung, no skip"}


def _f(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else "–"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    from regexplain.results import markdown_table

    return markdown_table(header, rows).splitlines()


def _rows(results: Mapping[str, Any], table: str, **match: Any) -> list[Mapping[str, Any]]:
    """Rows of one merged table (:mod:`regexplain.results`) whose fields equal ``match``."""
    return [r for r in results.get("rows", {}).get(table, []) if all(r.get(k) == v for k, v in match.items())]


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """Markdown lines of the summary (empty blocks are left out)."""
    paper = results.get("paper", {})
    rows = []
    for d in _rows(results, "dice"):
        name = d.get("model")
        p = paper.get("dice", {}).get(name, {})
        rows.append([f"Dice, {MODEL_NAMES.get(name, name)} (before → after)",
                     f"{_f(d.get('dice_before'))} → **{_f(d.get('dice_after'))}**"
                     + (f" (folding {_f(d['folding_pct'], 3)} %)" if d.get("folding_pct") is not None else ""),
                     f"{_f(p.get('before'))} → {_f(p.get('after'))}"])
    for e in _rows(results, "explained_variance"):
        name = e.get("model")
        p = paper.get("explained_variance", {}).get(name, {})
        rows.append([f"explained variance, {MODEL_NAMES.get(name, name)}: all K / first 4",
                     f"{_f(e.get('total'))} (K = {e.get('K', '–')}) / **{_f(e.get('first4'))}**",
                     f"{_f(p.get('K32'))} (K = 32) / {_f(p.get('first4'))}" if p else "–"])
    lines = ["## At a glance", ""] + _model_lines(results)
    if rows:
        lines += _table(["", "measured here", "paper"], rows) + [""]
    return lines + _claim_lines(results)


def _model_lines(results: Mapping[str, Any]) -> list[str]:
    """Which models the numbers come from: trained by this job, or the shipped pretrained ones (the notebooks
    record ``models``: name -> ``Run.origin``)."""
    origins: dict[str, str] = {}
    for saved in results.values():
        if isinstance(saved, Mapping) and isinstance(saved.get("models"), Mapping):
            origins.update(saved["models"])
    if not origins:
        return []
    text = {name: ("trained by this job" if o == "trained" else "the shipped pretrained model "
                   + o.split()[-1] + " (regexplain/weights/manifest.json)") for name, o in origins.items()}
    return ["Models: " + "; ".join(f"{MODEL_NAMES.get(n, n)}: {t}" for n, t in sorted(text.items())) + ".", ""]


def _claim_lines(results: Mapping[str, Any]) -> list[str]:
    studies = results.get("study") or {}
    if studies:  # regime -> the seed study's record (regexplain.analysis.study): its verdicts are the claims' rows
        from regexplain.analysis.study import runs_markdown, verdict_markdown

        lines = []
        for regime, st in studies.items():
            title = f"The paper's claims: {regime} phantoms, {len(st['seeds'])} seeds, {st['profile']} profile"
            lines += verdict_markdown(st["verdicts"], title).splitlines() + [""]
            if st.get("runs"):   # studies written before the runs table have none
                lines += runs_markdown(st["runs"]).splitlines() + [""]
        return lines
    rows = [r for r in (_fig5_row(results), _fig8_row(results)) if r]
    lines = ["### The paper's claims (this run, one seed)", "", STUDY_HINT, ""]
    if rows:
        lines += _table(["claim", "measured here", "baseline"], rows) + [""]
    return lines


def _selectivity(results, run: str) -> dict[str, Mapping[str, Any]]:
    """transform -> {observed, null_p95} of the per-subject top share of ``run``'s latent PCA (notebook 07)."""
    return {r["transform"]: r for r in _rows(results, "scores", run=run, section="latent", family="selectivity",
                                             variant="top share")}


def _case(results, model: str) -> dict[str, Mapping[str, Any]]:
    return {r["transform"]: r for r in _rows(results, "case_study", model=model)}


def _fig5_row(results) -> list[str] | None:
    case = _case(results, "hippocampus_noskip")
    if not case:
        return None
    measured = "; ".join(f"{t}: component {s.get('top')}, {_f(s.get('ratio'), 1)}× the next"
                         for t, s in case.items())
    sel = _selectivity(results, "hippocampus_noskip")
    baseline = "; ".join(f"{t}: top share {_f(v.get('observed'))} vs null 95 % {_f(v.get('null_p95'))}"
                         for t, v in sel.items()) or "random-basis null: run notebook 07 (phantoms)"
    return [CLAIMS["fig5"], measured, baseline]


def _fig8_row(results) -> list[str] | None:
    noskip, skip = _case(results, "hippocampus_noskip"), _case(results, "hippocampus_skip")
    if not (noskip and skip):
        return None
    measured = "components above 2× the median, no skip / skip: " + "; ".join(
        f"{t} {noskip[t].get('n_active')} / {skip[t].get('n_active')}" for t in noskip if t in skip)
    a, b = _selectivity(results, "hippocampus_noskip"), _selectivity(results, "hippocampus_skip")
    baseline = "; ".join(f"{t}: top share {_f(a[t].get('observed'))} / {_f(b[t].get('observed'))} "
                         f"(null 95 % {_f(a[t].get('null_p95'))} / {_f(b[t].get('null_p95'))})"
                         for t in a if t in b) or "random-basis null: run notebook 07 (phantoms)"
    return [CLAIMS["fig8"], measured, baseline]
