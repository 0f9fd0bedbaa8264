"""Result tables: defined once (:data:`TABLES`), written by the notebooks as rows, rendered once.

A notebook saves its numbers with :func:`save_results` (``FIGURES/results_<notebook>.json``): a ``rows``
mapping, table name -> list of row dicts keyed by the table's column keys, beside anything else it keeps
for later (raw reports). It shows the same table with :func:`table_markdown`. :func:`write_results` merges
every notebook's rows per table (a later notebook's row replaces an earlier one with the same
:attr:`Table.key`) and the seed studies (``study_<regime>.json``) into ``results.json``, and renders
``RESULTS.md``: the one-screen summary (:mod:`regexplain.summary`), then every table marked for the details.
A new table is one :data:`TABLES` entry plus the rows a notebook saves.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regexplain.io import write_json, write_text


@dataclass(frozen=True)
class Column:
    """One column: the row key it shows, its header, its decimals (floats only), and optionally a second
    key shown in brackets after the value (``0.50 (1)``: a score and the component it was found on), or a
    ``fmt`` that writes the cell from the whole row (an interval, a verdict in bold)."""
    key: str
    header: str
    digits: int = 2
    paren: str | None = None
    fmt: Callable[[Mapping[str, Any]], str] | None = None

    def render(self, row: Mapping[str, Any]) -> str:
        if self.fmt is not None:
            return self.fmt(row)
        text = cell(row.get(self.key), self.digits)
        return f"{text} ({cell(row[self.paren])})" if self.paren and row.get(self.paren) is not None else text


@dataclass(frozen=True)
class Table:
    """A result table. ``key``: the columns identifying a row (the last row saved with a key wins);
    ``details``: rendered in RESULTS.md's details (the summary already shows tables with ``False``)."""
    title: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    note: str = ""
    details: bool = True


def _cols(*specs: tuple) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in specs)


def number(x: Any) -> str:
    """Two decimals for a finite number, ``–`` otherwise (a missing baseline, an empty interval)."""
    return f"{x:.2f}" if isinstance(x, (int, float)) and math.isfinite(x) else "–"


def _interval(r: Mapping[str, Any]) -> str:
    m = r["measured"]
    return f"{number(m['mean'])} [{number(m['lo'])}, {number(m['hi'])}] ({m['n']})"


def _readout_cell(r: Mapping[str, Any]) -> str:
    """``r 3.1 (2.4) · t 1.2 (3.0) · s ...``: each case-study transform's read-out (``readout_<transform>``)
    with its null's 95th percentile (``readout_<transform>_null``)."""
    return " · ".join(f"{t[0]} {number(r[f'readout_{t}'])} ({number(r.get(f'readout_{t}_null'))})"
                      for t in ("rotation", "translation", "scaling") if r.get(f"readout_{t}") is not None)


def _stability(r: Mapping[str, Any]) -> str:
    """The verdict with each seed left out (:func:`regexplain.analysis.study.leave_one_out`), ``–`` without one."""
    alt = r.get("without_seed")
    if not alt:
        return "–"
    changed = [f"seed {s} → {v}" for s, v in alt.items() if v != r["verdict"]]
    return f"*fragile*: without {'; '.join(changed)}" if changed else f"stable ({len(alt)} of {len(alt)})"


#: the seed study's tables (:mod:`regexplain.analysis.study`), rendered in STUDY_<regime>.md and RESULTS.md's summary
STUDY_TABLES: dict[str, Table] = {
    "verdicts": Table("The paper's claims over seeds", (
        Column("claim", "claim"),
        Column("measured", "measured, mean [95 % interval] (n seeds)", fmt=_interval),
        Column("baseline", "baseline", fmt=lambda r: ", ".join(f"{k} {number(v)}" for k, v in r["baseline"].items())),
        Column("verdict", "verdict", fmt=lambda r: f"**{r['verdict']}**"),
        Column("without_seed", "verdict with each seed left out", fmt=_stability),
        Column("rule", "rule")), key=("claim",), details=False),
    "study_runs": Table("The seed study's runs", (
        Column("arch", "architecture"), Column("seed", "seed"),
        Column("dice_after", "validation Dice before → after",
               fmt=lambda r: f"{r['dice_before']:.3f} → {r['dice_after']:.3f}"),
        Column("folding_pct", "folding (% of voxels)", fmt=lambda r: number(r["folding_pct"])),
        Column("steps", "steps")), key=("arch", "seed"), details=False),
}


TABLES: dict[str, Table] = {
    "dice": Table("Registration Dice, beside the paper",
                  _cols(("model", "model"), ("steps", "steps"), ("dice_before", "dice before"),
                        ("dice_after", "dice after"), ("paper_before", "paper before"),
                        ("paper_after", "paper after"), ("folding_pct", "folding %", 3), ("minutes", "minutes", 1)),
                  key=("model",), details=False),
    "baseline": Table("Against a trivial baseline, per axis",
                      _cols(("model", "model"), ("dice_before", "dice before"),
                            ("dice_centroid_baseline", "centroid translation baseline"), ("dice_after", "dice after"),
                            ("recovery_x", "recovery x"), ("recovery_y", "recovery y"), ("recovery_z", "recovery z")),
                      key=("model",),
                      note="The baseline translates the moving label by the difference of the label centroids; "
                           "recovery: slope of the label-centroid offset the model recovers against the true one "
                           "along each axis (1 all of it, 0 none; `regexplain evaluate` prints both)."),
    "baseline_real": Table("On real anatomy: models trained on phantoms, scored on real T1 crops",
                           _cols(("model", "model"), ("dice_before", "dice before"),
                                 ("dice_centroid_baseline", "centroid translation baseline"),
                                 ("dice_after", "dice after"), ("recovery_x", "recovery x"),
                                 ("recovery_y", "recovery y"), ("recovery_z", "recovery z")),
                           key=("model",),
                           note="The real-anatomy check (`regexplain data real`, benchmarks/real_anatomy.py): "
                                "hippocampus crops of the T1 templates that packages ship (Colin27, MNI152 2009a, "
                                "MNI152 6th generation; AAL labels), random offsets and rotations, never trained on. "
                                "Columns as in the baseline table."),
    "explained_variance": Table("Explained variance of the latent PCA, beside the paper",
                                _cols(("model", "model"), ("K", "K"), ("total", "all K"), ("first4", "first 4"),
                                      ("paper_K32", "paper K=32"), ("paper_first4", "paper first 4")),
                                key=("model",), details=False),
    "case_study": Table("Case study (Fig 5) and skip ablation (Fig 8)",
                        _cols(("model", "model"), ("transform", "transform"), ("top", "top component"),
                              ("ratio", "top / second median"), ("n_active", "components above 2x median")),
                        key=("model", "transform"),
                        note="Paper: one component stands out for rotation and translation, two for scaling; "
                             "many with skip connections."),
    "scores": Table("Beyond the paper: interpretability scores (observed vs null)",
                    _cols(("model", "model"), ("score", "score"), ("observed", "observed", 3),
                          ("null_mean", "null mean", 3), ("null_p95", "null 95 %", 3), ("p_value", "p", 3)),
                    key=("model", "score")),
    "selectivity_by_strength": Table(
        "Case-study selectivity against the transform's strength (1 = the paper's)",
        _cols(("model", "model"), ("transform", "transform"), ("strength", "strength"),
              ("mean_response", "mean response (component)", 2, "mean_component"), ("mean_null_p95", "null 95 %"),
              ("per_subject", "per subject"), ("per_subject_null_p95", "null 95 %"), ("coherence", "coherence")),
        key=("model", "transform", "strength"),
        note="Standardised responses z = Δa / σ. Mean response: top share of the average z over subjects "
             "(its component); per subject: median top share; coherence: share of the per-subject energy "
             "along the average direction. Null: random bases of matched variances (95th percentile)."),
    "basis_comparison": Table("Beyond the paper: which basis explains the latent space best",
                              _cols(("basis", "basis"), ("score", "score"), ("observed", "observed", 3),
                                    ("null_mean", "null mean", 3), ("null_p95", "null 95 %", 3)),
                              key=("basis", "score")),
    "basis_winners": Table("Beyond the paper: the best basis per score",
                           _cols(("score", "score"), ("best", "best basis"), ("observed", "observed", 3),
                                 ("beats_null", "above its null's 95 %"), ("pca", "PCA (the paper's)", 3),
                                 ("bound", "supervised (upper bound)", 3)),
                           key=("score",),
                           note="The random orthonormal basis (the null) and the supervised directions (fitted on "
                                "the very factors scored, an upper bound) are left out of the contest; every "
                                "basis' own null is in the table above."),
    "networks": Table(
        "The paper's method on other networks (notebook 09)", (
            Column("network", "network"), Column("parameters", "parameters"),
            Column("dice_after", "Dice before → after",
                   fmt=lambda r: f"{number(r['dice_before'])} → {number(r['dice_after'])}"),
            Column("explained_K", "explained variance K / first 4",
                   fmt=lambda r: f"{number(r['explained_K'])} / {number(r['explained_first4'])} (K = {r['K']})"),
            Column("readout", "Fig 5 top / second: rotation · translation · scaling (null 95 %)",
                   fmt=lambda r: _readout_cell(r)),
            Column("bottleneck_share", "bottleneck share (untrained)",
                   fmt=lambda r: f"{number(r['bottleneck_share'])} ({number(r['bottleneck_share_untrained'])})"),
            Column("skip_share", "skip share")),
        key=("network",),
        note="Bottleneck share: 1 - Σ|u - u_b|² / Σ|u|² over validation pairs, u the pair's deformation and u_b "
             "the one its code gives along the K components with the skip features of the identity pair "
             "(docs/your_network.md); skip share: the same for the skip features alone. Untrained: the same "
             "architecture with fresh weights and its own PCA."),
    "cross_seed": Table("Beyond the paper: the same transformation across trainings",
                        _cols(("model", "model"), ("component", "component"), ("similarity", "matched cosine", 3),
                              ("null_p95", "random-basis null 95 %", 3)),
                        key=("model", "component")),
}


# ------------------------------------------------------------------------------------------ formatting

def cell(value: Any, digits: int = 2) -> str:
    """A float with ``digits`` decimals, ``–`` for a missing value, yes / no for a bool, else ``str``."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Pre-formatted cells as a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def table_markdown(name: str, rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of table ``name`` (:data:`TABLES` or :data:`STUDY_TABLES`) as Markdown, as a notebook displays
    them."""
    t = TABLES[name] if name in TABLES else STUDY_TABLES[name]
    return markdown_table([c.header for c in t.columns],
                          ([c.render(r) for c in t.columns] for r in rows))


def records_markdown(rows: Sequence[Mapping[str, Any]], digits: int = 3) -> str:
    """Same-keyed dicts as a Markdown table, every value shown (``None`` too): the notebooks' own tables
    that RESULTS.md does not show."""
    if not rows:
        return ""
    keys = list(rows[0])
    show = lambda v: f"{v:.{digits}f}" if isinstance(v, float) else str(v)  # noqa: E731
    return markdown_table(keys, ([show(r.get(k)) for k in keys] for r in rows))


# -------------------------------------------------------------------------------------- saving, merging

def save_results(figures_dir: str | Path, notebook: str, rows: Mapping[str, Sequence[Mapping[str, Any]]],
                 texts: Mapping[str, str] | None = None, **extra: Any) -> Path:
    """Write ``FIGURES/results_<notebook>.json`` (atomically): ``{"rows": rows, "texts": texts, **extra}``;
    ``texts``: table name -> a written reading that RESULTS.md shows below that table.

    Raises:
        KeyError: a table name that :data:`TABLES` does not define.
    """
    unknown = (set(rows) | set(texts or {})) - set(TABLES)
    if unknown:
        raise KeyError(f"unknown result table(s) {sorted(unknown)}; define them in regexplain.results.TABLES")
    path = Path(figures_dir) / f"results_{notebook}.json"
    write_json(path, {"rows": {k: list(v) for k, v in rows.items()}, "texts": dict(texts or {}), **extra})
    return path


def merge_rows(per_notebook: Iterable[Mapping[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Table name -> rows over the notebooks, in order; a row whose :attr:`Table.key` was seen replaces
    the earlier one in place."""
    merged: dict[str, dict[tuple, dict[str, Any]]] = {}
    for nb in per_notebook:
        for name, rows in (nb.get("rows") or {}).items():
            key = TABLES[name].key if name in TABLES else ()
            table = merged.setdefault(name, {})
            for i, r in enumerate(rows):
                table[tuple(r.get(k) for k in key) if key else (len(table) + i,)] = r
    return {name: list(t.values()) for name, t in merged.items()}


def merge_results(figures_dir: str | Path) -> dict[str, Any]:
    """Every ``results_*.json`` (by notebook stem), their merged ``rows``, the paper's numbers, and the
    seed studies (``study_<regime>.json``) under ``study``."""
    from regexplain.runs import PAPER

    figures_dir = Path(figures_dir)
    merged: dict[str, Any] = {"paper": PAPER}
    for p in sorted(figures_dir.glob("results_*.json")):
        merged[p.stem.removeprefix("results_")] = json.loads(p.read_text())
    notebooks = [v for k, v in merged.items() if k != "paper"]
    merged["rows"] = merge_rows(notebooks)
    merged["texts"] = {k: t for nb in notebooks for k, t in (nb.get("texts") or {}).items()}
    studies = {p.stem.removeprefix("study_"): json.loads(p.read_text())
               for p in sorted(figures_dir.glob("study_*.json"))}
    if studies:
        merged["study"] = studies
    return merged


# ------------------------------------------------------------------------------------------- rendering

def results_markdown(results: Mapping[str, Any], profile: str) -> str:
    """``RESULTS.md``: the summary, then each table of :data:`TABLES` marked ``details`` that has rows."""
    from regexplain.summary import summary_lines

    lines = [f"# Results ({profile} profile)", "",
             "Generated by `regexplain reproduce`; paper values from Estienne et al. 2021.", ""]
    lines += summary_lines(results) + ["## Details", ""]
    rows = results.get("rows", {})
    for name, t in TABLES.items():
        if t.details and rows.get(name):
            lines += [f"## {t.title}", ""] + ([t.note, ""] if t.note else [])
            lines += [table_markdown(name, rows[name]), ""]
            if results.get("texts", {}).get(name):
                lines += [results["texts"][name], ""]
    return "\n".join(lines) + "\n"


def write_results(figures_dir: str | Path, profile: str) -> dict[str, Any]:
    """Merge (:func:`merge_results`) and write ``results.json`` and ``RESULTS.md`` into ``figures_dir``."""
    results = merge_results(figures_dir)
    write_json(Path(figures_dir) / "results.json", results)
    write_text(Path(figures_dir) / "RESULTS.md", results_markdown(results, profile))
    return results
