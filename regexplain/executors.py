"""Where a batch of independent trainings runs: in this process one after another, side by side in local
processes, or as SLURM jobs through submitit.

An executor is a callable ``runner(jobs) -> messages`` over :class:`TrainingJob`s (one run folder each).
Every job goes through :func:`train_job`, i.e. :func:`regexplain.runs.ensure_trained`: a finished run is
reused, an unfinished one resumed from its checkpoint, so a study stopped anywhere (or a cluster job
killed at its time limit) is continued by running the same command again, in the same folder layout.

* :func:`sequential` is what ``regexplain study`` did before: each training with its profile's own
  processes and threads.
* :func:`local_processes` runs ``jobs`` trainings at once, each a single process of ``threads`` threads
  (default 1: on 2 cores two trainings side by side beat one training on two threads). A job's config
  records the threads it ran with; threads change float rounding, not the data a run sees.
* :func:`submitit_jobs` submits one SLURM array (``cluster="slurm"``), or runs submitit's ``local`` /
  ``debug`` executors (the tests); logs go to ``folder``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from regexplain.errors import TrainingError, UsageError
from regexplain.registration.parallel import main_not_rerun

Runner = Callable[[Sequence["TrainingJob"]], list[str]]


@dataclass(frozen=True)
class TrainingJob:
    """One training: its full config (``Config.to_dict()``, picklable for any executor) and run folder."""
    config: dict[str, Any]
    run_dir: str


def job_for(cfg, run_dir: str | Path) -> TrainingJob:
    """The :class:`TrainingJob` of a :class:`~regexplain.config.Config` and its run folder."""
    return TrainingJob(cfg.to_dict(), str(run_dir))


def train_job(job: TrainingJob) -> str:
    """Train, resume or reuse one job's run (module-level: executors pickle it by name)."""
    from regexplain import runs
    from regexplain.config import config_from_dict

    cfg = config_from_dict(job.config, source=f"{job.run_dir} (study job)")
    return runs.ensure_trained(cfg, job.run_dir, progress=False)


def _raise_failures(jobs: Sequence[TrainingJob], errors: dict[int, BaseException]) -> None:
    if errors:
        lines = [f"{jobs[i].run_dir}: {type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1]}"
                 for i, e in sorted(errors.items())]
        raise TrainingError(f"{len(errors)} of {len(jobs)} training(s) failed (the others are finished; run the "
                            "same command again to resume): " + "; ".join(lines))


def sequential() -> Runner:
    """Each job in this process, one after another, with its own config's processes and threads."""
    def run(jobs: Sequence[TrainingJob]) -> list[str]:
        return [train_job(j) for j in jobs]
    return run


def local_processes(jobs: int, threads: int = 1) -> Runner:
    """``jobs`` trainings at once in spawned processes, each one process of ``threads`` threads.

    Raises:
        UsageError: ``jobs`` or ``threads`` below 1.
    """
    if jobs < 1 or threads < 1:
        raise UsageError(f"--jobs and --threads must be >= 1, got {jobs} and {threads}")

    def run(todo: Sequence[TrainingJob]) -> list[str]:
        import multiprocessing as mp
        import os
        from concurrent.futures import ProcessPoolExecutor

        todo = [dataclasses.replace(j, config={**j.config, "train": {**j.config["train"], "threads": threads,
                                                                   "processes": 1}}) for j in todo]
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")     # inherited by the workers as OpenMP loads
        workers = min(jobs, max(len(todo), 1))
        with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn")) as ex:
            with main_not_rerun():         # the workers start here; they need nothing from the caller's script
                futures = [ex.submit(train_job, j) for j in todo]
            return _gather(todo, futures)
    return run


def _gather(todo, handles) -> list[str]:
    """Every job's result in order; the failed ones named together once all have finished."""
    out: dict[int, str] = {}
    errors: dict[int, BaseException] = {}
    for i, h in enumerate(handles):
        try:
            out[i] = h.result()
        except Exception as e:  # noqa: BLE001 - reported with its run folder
            errors[i] = e
    _raise_failures(todo, errors)
    return [out[i] for i in range(len(todo))]


def submitit_jobs(folder: str | Path, *, cluster: str | None = "slurm", partition: str | None = None,
                  gpus: int = 0, time_min: int = 240, cpus: int = 2, extra: dict[str, Any] | None = None) -> Runner:
    """The jobs as one submitit job array: SLURM (``cluster="slurm"``; ``None`` lets submitit pick), or
    submitit's ``"local"`` / ``"debug"`` executors. Waits for every job.

    Args:
        folder: submitit's logs and pickles (``%j`` job ids are added by submitit).
        partition, gpus, time_min, cpus: ``--partition``, GPUs per job, wall-time limit in minutes, CPUs per
            job (SLURM only; the local executors ignore them).
        extra: more ``AutoExecutor.update_parameters`` (e.g. ``{"slurm_account": "x"}``).
    Raises:
        UsageError: submitit is not installed (``pip install regexplain[cluster]``).
    """
    try:
        import submitit
    except ImportError as e:
        raise UsageError("--executor slurm needs submitit: pip install -e '.[cluster]'") from e

    def run(todo: Sequence[TrainingJob]) -> list[str]:
        if not todo:
            return []
        try:
            ex = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
        except RuntimeError as e:       # e.g. 'Could not detect "srun"' away from a SLURM cluster
            raise UsageError(f"--executor slurm: {e} (run the study on the cluster's login node, or use "
                             "--executor local)") from e
        params: dict[str, Any] = {"timeout_min": int(time_min), "cpus_per_task": int(cpus), "name": "regexplain"}
        if gpus:
            params["gpus_per_node"] = int(gpus)
        if partition:
            params["slurm_partition"] = partition
        ex.update_parameters(**params, **(extra or {}))
        return _gather(todo, ex.map_array(train_job, list(todo)))
    return run
