"""Atomic writes: outputs appear complete or not at all (temp file / temp dir + rename)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as hold:
        hold.enter_context(deferred_signals())   # an interruption here would leave the temp file behind
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp)
        held = hold.pop_all()
    try:
        held.close()   # a signal that arrived meanwhile is raised here, where the temp file is removed
        yield tmp
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it to ``path`` only if the block succeeds.

    With ``overwrite`` an existing ``path`` is replaced (after the new content is complete).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as hold:
        hold.enter_context(deferred_signals())   # an interruption here would leave the temp folder behind
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        held = hold.pop_all()
    try:
        held.close()   # a signal that arrived meanwhile is raised here, where the temp folder is removed
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
        with deferred_signals():  # one step: never the old folder moved aside and the new one not yet in
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the block runs (a few writes that belong together, e.g. an
    array file and the JSON that describes it): a signal arriving meanwhile is noted and raised again once
    the block is done, so an interruption never leaves one file of a pair. (Handlers, not a signal mask:
    a mask covers one thread, and the kernel hands a process's signal to any thread, torch's included.)
    Outside the main thread the block simply runs."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if pending:
            signal.raise_signal(pending[0])   # now handled as it would have been (the CLI's one line)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def check_writable(path: str | Path, *, kind: str = "dir") -> None:
    """Fail early, before any work, when ``path`` (a folder, or a ``kind="file"``) cannot be written.

    Probes the nearest existing folder with a temp file (``os.access`` says yes to root even on a
    read-only or immutable folder). Creates nothing that stays.

    Raises:
        OutputError: naming ``path`` and the reason.
    """
    from regexplain.errors import OutputError

    p = Path(path)
    if kind == "file" and p.is_dir():
        raise OutputError(f"{p}: is a folder; give a file name")
    if kind == "dir" and p.exists() and not p.is_dir():
        raise OutputError(f"{p}: exists and is not a folder")
    anchor = p if kind == "dir" and p.is_dir() else p.parent
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir():
        raise OutputError(f"{p}: cannot be created, {anchor} is a file")
    try:
        fd, probe = tempfile.mkstemp(prefix=".regexplain-probe.", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{p}: cannot write into {anchor} ({e.strerror})") from e
