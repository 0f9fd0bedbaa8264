"""Every numbered notebook, executed by nbval under the smoke profile with parameters injected.

nbval does not inject papermill parameters: each notebook is converted by jupytext, parameterised with
papermill (which adds the "injected-parameters" cell after the tagged one) and run by
``pytest --nbval-lax`` in a subprocess, whose exit code and pass count are checked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from regexplain import pipeline, results
from regexplain.runs import MODELS, NETWORKS

NOTEBOOKS = pipeline.notebook_sources()


@pytest.fixture(scope="session")
def smoke_dirs(tmp_path_factory):
    """Smoke-profile data, the three models and their decompositions, in seconds."""
    root = tmp_path_factory.mktemp("smoke")
    dirs = {"data": root / "data", "runs": root / "runs", "figures": root / "figures"}
    pipeline.prepare("smoke", dirs["data"], dirs["runs"], log=lambda _msg: None)
    return dirs


def parameterised_copy(src: Path, out: Path, params: dict) -> Path:
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    pipeline.to_ipynb(src, out)
    nb = parameterize_notebook(load_notebook_node(str(out)), params)  # loader adds the metadata papermill needs
    nbformat.write(nb, out)
    return out


def run_under_nbval(src: Path, dirs: dict, workdir: Path) -> None:
    """Execute notebook ``src`` with the smoke parameters under ``pytest --nbval-lax`` in a subprocess; its
    results land in ``dirs["figures"]``."""
    params = pipeline.notebook_parameters("smoke", dirs["data"], dirs["runs"], dirs["figures"])
    nb = parameterised_copy(src, workdir / f"{src.stem}.ipynb", params)
    env = {**os.environ, "MPLBACKEND": pipeline.INLINE_BACKEND}   # as in the main job: figures inline
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbval-lax", "-p", "no:cacheprovider",
                           "--nbval-cell-timeout=300", str(nb)], cwd=workdir, env=env, capture_output=True,
                          text=True, timeout=600)
    tail = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0, tail
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 3, tail
    assert (dirs["figures"] / f"results_{src.stem}.json").is_file()


@pytest.mark.notebook
@pytest.mark.slow
@pytest.mark.parametrize("src", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_under_nbval(src, smoke_dirs, tmp_path):
    run_under_nbval(src, smoke_dirs, tmp_path)


@pytest.fixture(scope="session")
def notebooks_ran(smoke_dirs, tmp_path_factory):
    """``smoke_dirs`` once every numbered notebook has run into its figures folder: the runs of
    :func:`test_notebook_runs_under_nbval` when they came first in this session, else run here, in order
    (so ``-k`` or another test order never turns the tests below into skips)."""
    for src in NOTEBOOKS:
        if not (smoke_dirs["figures"] / f"results_{src.stem}.json").is_file():
            run_under_nbval(src, smoke_dirs, tmp_path_factory.mktemp(f"nb_{src.stem}"))
    return smoke_dirs


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_figures_exist(notebooks_ran):
    """Every notebook ran: the paper's figures and explorers are there."""
    figs = notebooks_ran["figures"]
    for name in ("fig2_lung_components.png", "fig3_lambda_sweep.png", "fig3_lambda_sweep_sigma.png",
                 "fig4_hippocampus_components.png", "fig5_case_study.png", "fig6_lung_components_more.png",
                 "fig7_hippocampus_components_1-8.png", "fig8_skip_ablation.png", "explorer_lung.html",
                 "fig4b_hippocampus_component1_arrows_grid_jacobian.png",
                 "explorer_hippocampus.html", "explained_variance.png", "loss_curves.png", "quantitative.png",
                 "basis_comparison.png"):
        assert (figs / name).stat().st_size > 1000, name


@pytest.mark.notebook
@pytest.mark.slow
def test_results_md_renders_the_rows_the_notebooks_wrote(notebooks_ran):
    """RESULTS.md from the JSON of the real smoke notebook runs: the summary shows the Dice and
    explained-variance rows beside the paper once, the details every other table, each row once."""
    figs = notebooks_ran["figures"]
    res = results.write_results(figs, "smoke")
    md = (figs / "RESULTS.md").read_text()
    rows = lambda nb, table: json.loads((figs / f"results_{nb}.json").read_text())["rows"][table]  # noqa: E731
    lung = next(r for r in rows("02_train", "dice") if r["model"] == "lung_noskip")
    assert (f"| Dice, lung, no skip (before → after) | {lung['dice_before']:.2f} → **{lung['dice_after']:.2f}** "
            f"(folding {lung['folding_pct']:.3f} %) | 0.74 → 0.90 |") in md
    ev = next(r for r in rows("03_decompose", "explained_variance") if r["model"] == "hippocampus_noskip")
    assert (f"| explained variance, hippocampus, no skip: all K / first 4 | {ev['total']:.2f} (K = {ev['K']}) / "
            f"**{ev['first4']:.2f}** | 0.93 (K = 32) / 0.62 |") in md
    assert md.index("## At a glance") < md.index("## Details") and "make study" in md
    assert "Registration Dice, beside the paper" not in md      # in the summary only
    strength = rows("07_quantitative", "selectivity_by_strength")
    assert {r["model"] for r in strength} == {"hippocampus_noskip", "hippocampus_skip"}
    assert results.table_markdown("selectivity_by_strength", strength[:1]).splitlines()[-1] in md
    case = res["rows"]["case_study"]   # notebook 06 repeats notebook 05's model: each row once
    assert len(case) == len({(r["model"], r["transform"]) for r in case}) == 6
    for r in case:
        assert results.table_markdown("case_study", [r]).splitlines()[-1] in md
    assert json.loads((figs / "results.json").read_text())["paper"]["dice"]["lung_noskip"]["after"] == 0.90


#: Timing fields: the only entries of a run's metrics that may differ between two identical runs.
TIMINGS = {"wall_seconds", "seconds_per_step"}


@pytest.mark.notebook
@pytest.mark.slow
def test_same_seed_same_results_md_and_metrics(notebooks_ran, tmp_path):
    """Reproducible by construction: a second smoke main job with the same seed (and thread count) writes a
    byte-identical RESULTS.md and the same training metrics as the notebook runs."""
    smoke_dirs = notebooks_ran
    figs = smoke_dirs["figures"]
    results.write_results(figs, "smoke")
    first = (figs / "RESULTS.md").read_bytes()
    again = {k: tmp_path / k for k in ("data", "runs", "figures")}
    pipeline.reproduce("smoke", again["figures"], again["data"], again["runs"], log=lambda _msg: None)
    assert (again["figures"] / "RESULTS.md").read_bytes() == first
    runs = sorted(p.parent.relative_to(smoke_dirs["runs"]) for p in smoke_dirs["runs"].rglob("metrics.json"))
    assert {str(r) for r in runs} == {f"smoke/{name}" for name in (*MODELS, *NETWORKS)}   # notebook 09 trains its own
    for rel in runs:
        a, b = (json.loads((d / rel / "metrics.json").read_text()) for d in (smoke_dirs["runs"], again["runs"]))
        assert {k: v for k, v in a.items() if k not in TIMINGS} == {k: v for k, v in b.items() if k not in TIMINGS}
        assert a["steps"] == b["steps"] > 0


@pytest.mark.notebook
@pytest.mark.slow
def test_cross_seed_matching_from_a_seed_study(smoke_dirs, tmp_path):
    """Notebook 08 and `regexplain match` on two smoke seeds laid out like the seed study's runs."""
    from regexplain import runs
    from regexplain.cli import main

    study = tmp_path / "study"
    for seed in (0, 1):
        cfg = runs.model_config("smoke", "hippocampus_noskip", smoke_dirs["data"], seed)
        runs.ensure_trained(cfg, study / "pose" / "runs" / f"noskip_seed{seed}")
    rds = sorted(str(p) for p in (study / "pose" / "runs").iterdir())
    before = {str(p): p.stat().st_mtime_ns for rd in rds for p in Path(rd).rglob("*")}
    assert main(["match", "--runs", *rds, "--out", str(tmp_path / "m"), "--null", "3"]) == 0
    assert {str(p): p.stat().st_mtime_ns for rd in rds for p in Path(rd).rglob("*")} == before  # inputs untouched
    got = json.loads((tmp_path / "m" / "match.json").read_text())
    assert len(got["components"]) == got["runs"][0]["n_components"] and len(got["pairs"]) == 1
    assert all(0 <= c["similarity"] <= 1 + 1e-9 for c in got["components"])
    assert (tmp_path / "m" / "component1.png").stat().st_size > 1000
    figs = tmp_path / "figures"
    params = {**pipeline.notebook_parameters("smoke", smoke_dirs["data"], smoke_dirs["runs"], figs),
              "STUDY_DIR": str(study), "REGIME": "pose"}   # the runs above are laid out as a pose study
    pipeline.execute_notebook(pipeline.NOTEBOOK_DIR / "08_bases_and_seeds.py", tmp_path / "nb", params, timeout=600)
    rows = json.loads((figs / "results_08_bases_and_seeds.json").read_text())["rows"]
    assert [r["component"] for r in rows["cross_seed"]] == list(range(1, len(rows["cross_seed"]) + 1))
    # the notebook's similarities are the CLI's (same runs, mask, seed; the null differs in draws)
    assert rows["cross_seed"][0]["similarity"] == pytest.approx(got["components"][0]["similarity"], abs=1e-6)
    assert (figs / "cross_seed_component1.png").stat().st_size > 1000
    assert {r["basis"] for r in rows["basis_comparison"]} >= {"pca", "ica", "random_orthonormal"}


@pytest.mark.notebook
@pytest.mark.slow
def test_notebook_04_without_a_lung_model_draws_the_hippocampus_and_says_what_to_run(smoke_dirs, tmp_path):
    """Issue 23: the hippocampus model is opened first; a missing lung model is a printed instruction, not
    a stop before any hippocampus picture."""
    import shutil

    import papermill

    runs = tmp_path / "runs"
    shutil.copytree(smoke_dirs["runs"], runs)
    shutil.rmtree(runs / "smoke" / "lung_noskip")
    params = {**pipeline.notebook_parameters("smoke", smoke_dirs["data"], runs, tmp_path / "figures"),
              "INTERACTIVE": False}
    src = pipeline.to_ipynb(pipeline.NOTEBOOK_DIR / "04_lambda_sweeps.py", tmp_path / "04.ipynb")
    out = papermill.execute_notebook(str(src), str(tmp_path / "04_out.ipynb"), parameters=params,
                                     kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    text = "".join(o.get("text", "") for c in out.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "No lung model" in text and "regexplain train --profile smoke --dataset lung" in text
    assert "hippocampus_noskip: the trained decoder's D(0) moves the structure by" in text
    figures = tmp_path / "figures"
    assert (figures / "fig4_hippocampus_components.png").is_file() and (figures / "explorer_hippocampus.html").is_file()
    assert not (figures / "fig2_lung_components.png").exists()
