"""The main job (``regexplain reproduce``): data -> three models -> decompositions -> notebooks -> results.

Stages, each printed with its wall time:

1. data: synthesise phantoms where ``cfg.data.root`` holds no dataset (a real MSD / lung set is used
   as found);
2. train the three models of the paper (hippocampus without / with skip connections, lung without),
   reusing a finished run and resuming an unfinished one;
3. fit the PCA of each model's latent space (cached beside the checkpoint);
4. execute ``notebooks/01..07`` with papermill, parameters injected, into ``figures/notebooks/``; a
   failing notebook stops the run with its name and the failing cell;
5. merge the notebooks' ``results_*.json`` into ``figures/results.json`` and ``figures/RESULTS.md``.

Notebooks import the helpers here (:func:`model_config`, :func:`load_run`) so they open exactly what the
pipeline trained.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regexplain.config import Config, load_config
from regexplain.errors import RegexplainError
from regexplain.io import write_json, write_text

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

#: run name -> (dataset, skip connections)
MODELS: dict[str, tuple[str, bool]] = {
    "hippocampus_noskip": ("hippocampus", False),
    "hippocampus_skip": ("hippocampus", True),
    "lung_noskip": ("lung", False),
}

#: The paper's numbers (Estienne et al. 2021, sections 3.3 and 4).
PAPER = {
    "dice": {"hippocampus_noskip": {"before": 0.59, "after": 0.76},
             "hippocampus_skip": {"before": 0.59, "after": 0.85},
             "lung_noskip": {"before": 0.74, "after": 0.90},
             "lung_skip": {"before": 0.74, "after": 0.92}},
    "explained_variance": {"lung_noskip": {"K32": 0.95, "first4": 0.42},
                           "hippocampus_noskip": {"K32": 0.93, "first4": 0.62}},
}


#: Notebooks that score components against ground-truth factors (phantoms only).
FACTOR_NOTEBOOKS = ("07_quantitative",)


class NotebookError(RegexplainError, RuntimeError):
    """A notebook of the main job failed; the message names the notebook and the cell."""


# ------------------------------------------------------------------------------------------ configs

def _data_root(cfg_root: str, data_dir: str | Path) -> Path:
    """Profile roots are written relative to ``data/``; move them under ``data_dir``."""
    p = Path(cfg_root)
    rel = p.relative_to("data") if p.parts and p.parts[0] == "data" else p
    return Path(data_dir) / rel if not p.is_absolute() else p


def repo_path(p: str | Path) -> Path:
    """Relative paths in notebook parameters mean the repository root, wherever Jupyter was started."""
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


def notebook_setup(interactive: bool, *dirs: str | Path) -> tuple[Path, ...]:
    """What every notebook does after its parameters cell: its directory parameters resolved against the
    repository root (:func:`repo_path`). It never chooses a matplotlib backend: Jupyter's inline backend
    shows the figures, in JupyterLab and in the batch run alike (:func:`execute_notebook`).
    ``interactive`` (the notebooks' ``INTERACTIVE``) is accepted for the notebooks' widget cells."""
    return tuple(repo_path(d) for d in dirs)


#: The backend a batch-run kernel uses: headless, and it writes every figure into the executed notebook
#: (a forced Agg, e.g. the Makefile's MPLBACKEND, would leave the executed notebooks without images).
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


@contextlib.contextmanager
def kernel_env(**values: str):
    """Environment variables for the kernels started inside the block, restored afterwards: the inline
    backend (:data:`INLINE_BACKEND`) and no debugger notice about frozen modules, in the main job."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def model_config(profile: str, name: str, data_dir: str | Path = "data", seed: int | None = None) -> Config:
    """The config of one of the three :data:`MODELS` under ``profile``, data root under ``data_dir``."""
    if name not in MODELS:
        raise RegexplainError(f"unknown model {name!r}; expected one of {sorted(MODELS)}")
    dataset, skip = MODELS[name]
    base = load_config(profile, dataset)
    over: dict[str, Any] = {"model": {"skip_connections": skip},
                            "data": {"root": str(_data_root(base.data.root, data_dir))}}
    if seed is not None:
        over["train"] = {"seed": int(seed)}
    return load_config(profile, dataset, over)


def run_dir(runs_dir: str | Path, profile: str, name: str) -> Path:
    return Path(runs_dir) / profile / name


# --------------------------------------------------------------------------------------------- data

def dataset_present(root: str | Path) -> bool:
    """A dataset is there when its root holds any NIfTI volume (MSD or lung layout)."""
    root = Path(root)
    return root.is_dir() and next(root.rglob("*.nii.gz"), None) is not None


def ensure_data(cfg: Config, *, progress: bool = False) -> str:
    """Synthesise the dataset of ``cfg`` unless its root already holds one; returns what happened.

    Synthesis itself (shapes: the 64^3 MSD patch, the paper's lung shape) belongs to
    :func:`regexplain.data.pairs.ensure_data`; preprocessing then crops and resamples as for real data.
    """
    from regexplain.data.pairs import ensure_data as synthesise_if_missing

    root = Path(cfg.data.root)
    if dataset_present(root):
        return f"found {root}"
    synthesise_if_missing(cfg.data, progress=progress)
    return f"synthesised {cfg.data.n_subjects} {cfg.data.dataset} phantoms into {root}"


# ------------------------------------------------------------------------------------------ training

def run_finished(rd: str | Path) -> bool:
    """``train`` writes ``metrics.json`` only after its last step."""
    rd = Path(rd)
    return (rd / "checkpoint.pt").is_file() and (rd / "metrics.json").is_file()


def ensure_trained(cfg: Config, rd: str | Path, *, force: bool = False, progress: bool = False) -> str:
    """Train into ``rd`` unless a finished run is there; resume an unfinished one."""
    from regexplain.train import train

    rd = Path(rd)
    if force and rd.exists():
        shutil.rmtree(rd)
    if run_finished(rd):
        return f"reused {rd}"
    resume = (rd / "checkpoint.pt").is_file()
    m = train(cfg, rd, resume=resume, progress=progress)
    return (f"{'resumed' if resume else 'trained'} {rd}: {m.get('steps')} steps, Dice "
            f"{m.get('dice_before', float('nan')):.3f} -> {m.get('dice_after', float('nan')):.3f}")


# ------------------------------------------------------------------------------------ decomposition

def ensure_decomposition(rd: str | Path, *, data=None, force: bool = False):
    """PCA of the training latents of the model in ``rd``, cached in ``rd/decomposition``.

    ``K = min(cfg.latent.n_components, n_train - 1)``; training-set coefficients are stored as
    ``extra["train_coeffs"]``.
    """
    from regexplain.checkpoint import load_model
    from regexplain.data.pairs import load_splits
    from regexplain.latent import Decomposition, encode_volumes

    rd = Path(rd)
    out = rd / "decomposition"
    ckpt = rd / "checkpoint.pt"
    if not force and (out / "decomposition.npz").is_file() \
            and (out / "decomposition.npz").stat().st_mtime >= ckpt.stat().st_mtime:
        return Decomposition.load(out)
    model, cfg = load_model(rd, device="cpu")
    train_set, _ = data if data is not None else load_splits(cfg.data)
    z = encode_volumes(model, train_set.images)
    k = min(cfg.latent.n_components, z.shape[0] - 1)
    dec = Decomposition.fit(z, k, latent_shape=model.latent_shape(cfg.data.shape),
                            meta={"checkpoint": str(ckpt.absolute()), "data": str(Path(cfg.data.root).absolute())})
    dec.extra["train_coeffs"] = dec.project(z).astype("float32")
    dec.save(out)
    return dec


@dataclass
class Run:
    """One trained model with its data and decomposition, as notebooks use it."""
    name: str
    model: Any
    cfg: Config
    train: Any
    val: Any
    decomposition: Any
    run_dir: Path


def load_run(profile: str, name: str, runs_dir: str | Path = "runs", data_dir: str | Path = "data") -> Run:
    """Open a model trained by :func:`reproduce` (CPU, eval mode) with its splits and decomposition."""
    from regexplain.checkpoint import load_model
    from regexplain.data.pairs import load_splits

    rd = run_dir(runs_dir, profile, name)
    if not run_finished(rd):
        raise RegexplainError(f"{rd}: no finished training run; run `regexplain reproduce --profile {profile}`")
    model, _ = load_model(rd, device="cpu")
    model.eval()
    cfg = model_config(profile, name, data_dir)  # data paths from this machine, not the checkpoint's
    data = load_splits(cfg.data)
    dec = ensure_decomposition(rd, data=data)
    return Run(name, model, cfg, data[0], data[1], dec, rd)


# ----------------------------------------------------------------------------------------- notebooks

def notebook_sources(notebook_dir: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The numbered py:percent notebooks, in order."""
    return sorted(Path(notebook_dir).glob("[0-9][0-9]_*.py"))


def notebook_parameters(profile: str, data_dir, runs_dir, figures_dir, seed: int = 0) -> dict[str, Any]:
    return {"PROFILE": profile, "DATA_DIR": str(Path(data_dir).resolve()),
            "RUNS_DIR": str(Path(runs_dir).resolve()), "FIGURES_DIR": str(Path(figures_dir).resolve()),
            "SEED": int(seed), "INTERACTIVE": False}


def to_ipynb(source: Path, out: Path) -> Path:
    """jupytext py:percent -> .ipynb with a python3 kernelspec (papermill needs one)."""
    import jupytext

    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    jupytext.write(nb, out)
    return out


#: The kernel of an executed notebook logs errors only: its loopback-TCP notice would print a warning wall
#: on ``make reproduce``'s console for every notebook.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


def execute_notebook(source: Path, out_dir: Path, parameters: dict[str, Any], *, timeout: int = 1800) -> Path:
    """Run one notebook with papermill; :class:`NotebookError` names the notebook and the failing cell."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{source.stem}.ipynb"
    with tempfile.TemporaryDirectory() as tmp:
        nb = to_ipynb(source, Path(tmp) / f"{source.stem}.ipynb")
        try:
            with kernel_env(MPLBACKEND=INLINE_BACKEND, PYDEVD_DISABLE_FILE_VALIDATION="1"):
                pm.execute_notebook(str(nb), str(output), parameters=parameters, kernel_name="python3",
                                    cwd=str(REPO_ROOT), progress_bar=False, execution_timeout=timeout,
                                    extra_arguments=KERNEL_ARGS)
        except PapermillExecutionError as e:
            raise NotebookError(f"notebook {source.name} failed in cell {e.cell_index} (execution count "
                                f"{e.exec_count}): {e.ename}: {e.evalue} -- executed copy: {output}") from e
    return output


# ------------------------------------------------------------------------------------------- results

def merge_results(figures_dir: str | Path) -> dict[str, Any]:
    """Merge every ``results_*.json`` a notebook wrote into one dict keyed by notebook stem."""
    figures_dir = Path(figures_dir)
    merged: dict[str, Any] = {"paper": PAPER}
    for p in sorted(figures_dir.glob("results_*.json")):
        merged[p.stem.removeprefix("results_")] = json.loads(p.read_text())
    studies = {p.stem.removeprefix("study_"): json.loads(p.read_text())
               for p in sorted(figures_dir.glob("study_*.json"))}
    if studies:
        merged["study"] = studies
    return merged


def _f(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, (int, float)) else "–"


def markdown_table(rows: Sequence[dict[str, Any]], digits: int = 3) -> str:
    """A list of same-keyed dicts as a Markdown table (notebooks display it without pandas)."""
    if not rows:
        return ""
    keys = list(rows[0])
    cell = lambda v: _f(v, digits) if isinstance(v, float) else str(v)  # noqa: E731
    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(out)


def _md_section(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], note: str = "") -> list[str]:
    """Lines of one RESULTS.md section: a title, an optional note, a table of pre-formatted cells."""
    if not rows:
        return []
    lines = [f"## {title}", ""] + ([note, ""] if note else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows] + [""]


def results_markdown(results: dict[str, Any], profile: str) -> str:
    """``RESULTS.md``: every table beside the paper's values."""
    from regexplain.summary import summary_lines

    lines = [f"# Results ({profile} profile)", "",
             "Generated by `regexplain reproduce`; paper values from Estienne et al. 2021.", ""]
    lines += summary_lines(results) + ["## Details", ""]
    # Dice and explained variance are in the summary above: each table once
    # Fig 8 repeats Fig 5's model beside the skip model: each (model, transform) row once
    case = {(model, t): s for key in ("05_case_study", "06_skip_ablation")
            for model, per in results.get(key, {}).get("summary", {}).items() for t, s in per.items()}
    lines += _md_section("Case study (Fig 5) and skip ablation (Fig 8)",
                         ["model", "transform", "top component", "top / second median", "components above 2x median"],
                         [[model, t, str(s.get("top")), _f(s.get("ratio")), str(s.get("n_active"))]
                          for (model, t), s in case.items()],
                         "Paper: one component stands out for rotation and translation, two for scaling; "
                         "many with skip connections.")
    q = results.get("07_quantitative", {}).get("scores", {})
    lines += _md_section("Beyond the paper: interpretability scores (observed vs null)",
                         ["model", "score", "observed", "null mean", "null 95 %"],
                         [[model, k, *_score_cells(v)] for model, scores in q.items() for k, v in scores.items()
                          if isinstance(v, (dict, int, float))])
    lines += _strength_lines(results.get("07_quantitative", {}))
    return "\n".join(lines) + "\n"


def _score_cells(v: dict[str, Any] | float) -> list[str]:
    if isinstance(v, dict):
        return [_f(v.get("observed"), 3), _f(v.get("null_mean"), 3), _f(v.get("null_p95"), 3)]
    return [_f(v, 3), "–", "–"]


def _strength_lines(quantitative: dict[str, Any]) -> list[str]:
    """RESULTS.md rows of the case-study selectivity against the transforms' strength (notebook 07)."""
    sweeps = {name: quantitative.get(key, {}).get("latent", {}).get("selectivity_by_strength")
              for name, key in (("hippocampus_noskip", "report"), ("hippocampus_skip", "report_skip"))}
    rows = []
    for model, sweep in ((k, v) for k, v in sweeps.items() if v):
        for t, per in sweep.items():
            if t == "strengths":
                continue
            for st, r in zip(sweep["strengths"], per, strict=True):
                m, p = r["mean_top_share"], r["top_share"]
                rows.append([model, t, _f(st), f"{_f(m['observed'])} ({r['mean_top_component'] + 1})",
                             _f(m["null_p95"]), _f(p["observed"]), _f(p["null_p95"]), _f(r["coherence"])])
    return _md_section("Case-study selectivity against the transform's strength (1 = the paper's)",
                       ["model", "transform", "strength", "mean response (component)", "null 95 %", "per subject",
                        "null 95 %", "coherence"], rows,
                       "Standardised responses z = Δa / σ. Mean response: top share of the average z over subjects "
                       "(its component); per subject: median top share; coherence: share of the per-subject energy "
                       "along the average direction. Null: random bases of matched variances (95th percentile).")


def case_summary(median_abs) -> dict[str, Any]:
    """Headline of one transform's box plots (:func:`regexplain.study.readout_from_medians`): the top
    component (1-based), its ratio to the second median, the components above twice the median."""
    from regexplain.study import readout_from_medians

    return readout_from_medians(median_abs)


def write_results(figures_dir: str | Path, profile: str) -> dict[str, Any]:
    results = merge_results(figures_dir)
    write_json(Path(figures_dir) / "results.json", results)
    write_text(Path(figures_dir) / "RESULTS.md", results_markdown(results, profile))
    return results


# ------------------------------------------------------------------------------------------ the job

def _stage(label: str, fn: Callable[[], Any], log: Callable[[str], None], *, hold: bool = True) -> Any:
    """Run one stage and log one line for it: what it did and its wall time.

    What the stage itself prints (per-step training lines, reading bars, library warnings) is held back and
    shown only when the stage fails, so a batch console reads one line per stage. On a terminal a
    transient ``[label] ...`` says which stage is running until its line replaces it.
    """
    import io
    import sys
    import warnings

    t0 = time.perf_counter()
    live = sys.stdout.isatty()
    if live:
        sys.stdout.write(f"[{label}] ...\r")
        sys.stdout.flush()
    held = io.StringIO()
    try:
        with contextlib.ExitStack() as stack:
            if hold:  # ``hold=False``: the caller asked for progress bars
                for cm in (contextlib.redirect_stdout(held), contextlib.redirect_stderr(held),
                           warnings.catch_warnings()):
                    stack.enter_context(cm)
                warnings.simplefilter("default")  # shown once each, into ``held``
            out = fn()
    except BaseException:
        if live:
            sys.stdout.write("\x1b[2K")  # clear the transient line
        sys.stderr.write(held.getvalue()[-4000:])
        raise
    if live:
        sys.stdout.write("\x1b[2K")
    log(f"[{label}] {out if isinstance(out, str) else 'done'} ({time.perf_counter() - t0:.1f} s)")
    return out


def prepare(profile: str = "quick", data_dir: str | Path = "data", runs_dir: str | Path = "runs", *,
            force: bool = False, seed: int = 0, models: Sequence[str] = tuple(MODELS),
            log: Callable[[str], None] = print, progress: bool = False) -> None:
    """Stages 1-3: data, training, decompositions (what the notebook tests need before running)."""
    cfgs = {name: model_config(profile, name, data_dir, seed) for name in models}
    for ds in dict.fromkeys(c.data.dataset for c in cfgs.values()):
        cfg = next(c for c in cfgs.values() if c.data.dataset == ds)
        _stage(f"data {ds}", lambda cfg=cfg: ensure_data(cfg, progress=progress), log, hold=not progress)
    for name, cfg in cfgs.items():
        rd = run_dir(runs_dir, profile, name)
        _stage(f"train {name}", lambda cfg=cfg, rd=rd: ensure_trained(cfg, rd, force=force, progress=progress),
               log, hold=not progress)
        _stage(f"decompose {name}", lambda rd=rd: f"K = {ensure_decomposition(rd).n_components}", log)


def _check_request(profile: str, notebooks: Sequence[str] | None, *dirs: str | Path) -> None:
    """Refuse what would fail (or be silently ignored) only after an hour of training: an unknown
    profile, a ``--notebooks`` prefix that matches no notebook, an output folder that cannot be written."""
    from regexplain.errors import UsageError
    from regexplain.io import check_writable

    load_config(profile)
    stems = [src.stem for src in notebook_sources()]
    unknown = [n for n in notebooks or () if not any(stem.startswith(n) for stem in stems)]
    if unknown:
        raise UsageError(f"--notebooks {' '.join(unknown)}: no such notebook; available: {' '.join(stems)}")
    for d in dirs:
        check_writable(d)


def reproduce(profile: str = "quick", figures_dir: str | Path = "figures", data_dir: str | Path = "data",
              runs_dir: str | Path = "runs", force: bool = False, *, seed: int = 0,
              notebooks: Sequence[str] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The main job. ``notebooks`` restricts stage 4 to stems or prefixes (e.g. ``["01", "04"]``)."""
    t0 = time.perf_counter()
    figures_dir = Path(figures_dir)
    _check_request(profile, notebooks, figures_dir, data_dir, runs_dir)
    prepare(profile, data_dir, runs_dir, force=force, seed=seed, log=log)
    params = notebook_parameters(profile, data_dir, runs_dir, figures_dir, seed)
    hip_root = Path(model_config(profile, "hippocampus_noskip", data_dir).data.root)
    needs_factors = not (hip_root / "factors.csv").is_file()
    for src in notebook_sources():
        if notebooks and not any(src.stem.startswith(n) for n in notebooks):
            continue
        if src.stem in FACTOR_NOTEBOOKS and needs_factors:
            log(f"[notebook {src.stem}] skipped: the hippocampus data record no generating factors "
                "(real data); the beyond-paper scores need phantoms")
            continue
        _stage(f"notebook {src.stem}", lambda src=src: str(execute_notebook(src, figures_dir / "notebooks",
                                                                             params)), log)
    results = _stage("results", lambda: write_results(figures_dir, profile), log)
    log(f"[reproduce] finished in {time.perf_counter() - t0:.1f} s; see {figures_dir / 'RESULTS.md'}")
    return results
