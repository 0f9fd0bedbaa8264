"""The run folder a training writes into: who may write there, and what a failed start leaves behind.

* A lock (``fcntl.flock`` on ``RUN/.regexplain.lock``) is held for the whole training, so two trainings
  into one folder cannot mix their logs and checkpoints: the second one stops with a message. The lock
  file stays after the run; its presence also marks the folder as one that regexplain made.
* A new training needs a folder that is absent, empty, or a regexplain run that died before its first
  checkpoint. A folder holding anyone else's files is refused, never cleaned.
* Temp files of atomic writes (``.checkpoint.pt.*.tmp``...) left by a killed run are removed once the
  lock is held (no live writer can own them then).
* When a new training fails before its first checkpoint, what it wrote is removed again (and the folder,
  if it created it): a failed ``train`` leaves no ``config.yaml`` behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

from regexplain.errors import CheckpointError, OutputError, RunInUseError
from regexplain.io import deferred_signals

LOCK_NAME = ".regexplain.lock"
CHECKPOINT_NAME = "checkpoint.pt"
RUN_FILES = (CHECKPOINT_NAME, "config.yaml", "log.jsonl", "metrics.json")



def stale_temp_files(run_dir: Path) -> list[Path]:
    """Temp files of :func:`regexplain.io.atomic_path` for the run's own files."""
    return sorted(p for name in RUN_FILES for p in run_dir.glob(f".{name}.*.tmp"))


def _check_new_run(run_dir: Path) -> None:
    if (run_dir / CHECKPOINT_NAME).exists():
        raise FileExistsError(f"{run_dir}: already holds a checkpoint; pass resume=True (--resume) to "
                              "continue it, or choose another output directory")
    if (run_dir / LOCK_NAME).exists():
        return  # a regexplain run that stopped before its first checkpoint: its files are replaced
    other = sorted(p.name for p in run_dir.iterdir() if p not in stale_temp_files(run_dir))
    if other:
        shown = ", ".join(other[:5]) + (f" (+{len(other) - 5} more)" if len(other) > 5 else "")
        raise OutputError(f"{run_dir}: is not empty and not a regexplain run folder (holds {shown}); "
                          "train into a new or empty folder (nothing there is deleted)")


def _lock(run_dir: Path):
    fh = open(run_dir / LOCK_NAME, "a+")  # noqa: SIM115 - held open for the whole training
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise RunInUseError(f"{run_dir}: another training is writing into this folder (it holds "
                            f"{run_dir / LOCK_NAME}); wait for it to finish or choose another --out") from None
    return fh


@contextlib.contextmanager
def run_folder(run_dir: str | Path, *, resume: bool) -> Iterator[Path]:
    """Check, lock and tidy ``run_dir`` for one training (see the module docstring); yield it.

    Raises:
        FileExistsError: a new training into a folder that holds a checkpoint.
        OutputError: ``run_dir`` is a file, or a folder with files regexplain did not write.
        CheckpointError: ``resume`` without ``RUN/checkpoint.pt``.
        RunInUseError: another training holds the lock.
    """
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(f"{run_dir}: exists and is not a folder")
    if resume and not (run_dir / CHECKPOINT_NAME).is_file():
        raise CheckpointError(f"{run_dir / CHECKPOINT_NAME}: no such checkpoint to resume")
    if not resume and run_dir.is_dir():
        _check_new_run(run_dir)
    created = run_dir
    while not created.parent.exists():
        created = created.parent
    created = None if run_dir.exists() else created
    with contextlib.ExitStack() as hold:
        # a Ctrl-C / SIGTERM between making the folder and entering the ``try`` below would skip its clean-up:
        # held back until inside it
        hold.enter_context(deferred_signals())
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = _lock(run_dir)  # on failure the folder belongs to the training that holds the lock: left alone
        held = hold.pop_all()
    try:
        held.close()   # a signal that arrived meanwhile is raised here, where the clean-up sees it
        for p in stale_temp_files(run_dir):
            p.unlink(missing_ok=True)
        if not resume:
            _check_new_run(run_dir)  # again under the lock: the folder may have changed meanwhile
        yield run_dir
    except BaseException:
        if not resume and not (run_dir / CHECKPOINT_NAME).exists():
            for name in (*RUN_FILES, LOCK_NAME):
                (run_dir / name).unlink(missing_ok=True)
            if created is not None:
                shutil.rmtree(created, ignore_errors=True)
        raise
    finally:
        fh.close()  # releases the lock
