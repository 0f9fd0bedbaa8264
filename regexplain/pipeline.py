"""The main job (``regexplain reproduce``): data -> three models -> decompositions -> notebooks -> results.

Stages, each printed with its wall time:

1. data: synthesise phantoms where ``cfg.data.root`` holds no dataset (a real MSD / lung set is used
   as found);
2. train the three models of the paper (hippocampus without / with skip connections, lung without),
   reusing a finished run and resuming an unfinished one;
3. fit the PCA of each model's latent space (cached beside the checkpoint);
4. execute ``notebooks/01..08`` with papermill, parameters injected, into ``figures/notebooks/``; a
   failing notebook stops the run with its name and the failing cell;
5. merge the notebooks' ``results_*.json`` into ``figures/results.json`` and ``figures/RESULTS.md``.

Notebooks open what the pipeline trained with :func:`regexplain.runs.load_run` and save their numbers with
:func:`regexplain.results.save_results`; this module holds the notebook helpers, the papermill runner and
the job itself.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from regexplain.config import load_config
from regexplain.errors import Interrupted, NotebookError
from regexplain.interrupts import raise_if_interrupted
from regexplain.results import write_results
from regexplain.runs import MODELS, ensure_data, ensure_decomposition, ensure_trained, model_config, run_dir

REPO_ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"

#: Notebooks that score components against ground-truth factors (phantoms only).
FACTOR_NOTEBOOKS = ("07_quantitative", "08_bases_and_seeds")



# ----------------------------------------------------------------------------------------- notebooks

def repo_path(p: str | Path) -> Path:
    """Relative paths in notebook parameters mean the repository root, wherever Jupyter was started."""
    p = Path(p)
    return p if p.is_absolute() else REPO_ROOT / p


def notebook_setup(*dirs: str | Path) -> tuple[Path, ...]:
    """What every notebook does after its parameters cell: its directory parameters resolved against the
    repository root (:func:`repo_path`). It never chooses a matplotlib backend: Jupyter's inline backend
    shows the figures, in JupyterLab and in the batch run alike (:func:`execute_notebook`)."""
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


def _quiet_shutdown_kernel_manager():
    """jupyter_client's ``AsyncKernelManager`` without the SIGINT it sends first when shutting a kernel down.

    papermill shuts each kernel down right after the reply to its last request (``kernel_info``). The reply
    leaves before the kernel's handler has returned, and ipykernel turns SIGINT into KeyboardInterrupt
    only while a handler runs; so the shutdown's SIGINT could land in that window and the kernel logged
    ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel.`` on the main job's console (seen with
    notebook 05). The interrupt is not needed to stop a kernel: the shutdown request goes over the
    control channel, which ipykernel serves in its own thread even while a cell runs, and the manager
    still terminates and kills a kernel that does not stop in time. Interrupts asked for outside a
    shutdown (papermill's ``interrupt_on_timeout``) are sent as before."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietShutdownKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if self.shutting_down:
                return
            await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


def execute_notebook(source: Path, out_dir: Path, parameters: dict[str, Any], *, timeout: int = 1800) -> Path:
    """Run one notebook with papermill; :class:`NotebookError` names the notebook and the failing cell.

    The executed copy appears whole or not at all (papermill writes it after every cell: into a temp file
    here, renamed once the run ends, so an interruption leaves no half-run notebook)."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / f"{source.stem}.ipynb"
    # beside the output (one file system for the rename), named *.ipynb as papermill expects
    with tempfile.TemporaryDirectory() as tmp, \
            tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{source.stem}.", suffix=".tmp") as part:
        nb = to_ipynb(source, Path(tmp) / f"{source.stem}.ipynb")
        partial = Path(part) / output.name
        try:
            with kernel_env(MPLBACKEND=INLINE_BACKEND, PYDEVD_DISABLE_FILE_VALIDATION="1"):
                pm.execute_notebook(str(nb), str(partial), parameters=parameters, kernel_name="python3",
                                    cwd=str(REPO_ROOT), progress_bar=False, execution_timeout=timeout,
                                    extra_arguments=KERNEL_ARGS,
                                    kernel_manager_class=_quiet_shutdown_kernel_manager())
            os.replace(partial, output)
        except PapermillExecutionError as e:
            os.replace(partial, output)   # the failing run's copy is kept: it shows the failing cell
            raise NotebookError(f"notebook {source.name} failed in cell {e.cell_index} (execution count "
                                f"{e.exec_count}): {e.ename}: {e.evalue} -- executed copy: {output}") from e
    return output


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

    raise_if_interrupted()   # a Ctrl-C a library swallowed in the stage before (regexplain/interrupts.py)
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
    except BaseException as e:
        if live:
            sys.stdout.write("\x1b[2K")  # clear the transient line
        if not isinstance(e, (KeyboardInterrupt, Interrupted)):  # an interruption is one line (cli.py)
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
