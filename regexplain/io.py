"""Atomic writes: outputs appear complete or not at all (temp file / temp dir + rename).

A full disk (``ENOSPC``, or a quota: ``EDQUOT``) while a file is written becomes a
:class:`regexplain.errors.DiskFullError` naming the file that could not be written (the operating system's
error names none), and the temp file goes; nothing half-written is left.

Tests only: ``REGEXPLAIN_TEST_WRITE_FAULT=ERRNO:PATTERN`` makes the writes of this module fail for every path
that matches the glob ``PATTERN`` (``fnmatch``, where ``*`` crosses folders; ``glob.escape`` a literal
folder) or lies in a folder that does, as on a real failing disk, where a test cannot make one (a
container's root ignores file modes, and may not ``chattr`` or mount): ``EROFS`` (or ``EACCES``, ``EPERM``)
fails creating a file or folder there, as a read-only folder does; ``ENOSPC`` lets files be created but
every byte written into them fail (they are opened on ``/dev/full``, so torch, NumPy and nibabel get the
kernel's own error). Nothing outside the tests sets it.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FAULT_ENV = "REGEXPLAIN_TEST_WRITE_FAULT"
#: Errors of a full disk (or quota): re-raised as DiskFullError naming the file.
_FULL = {errno.ENOSPC: "the disk is full (no space left on device)", errno.EDQUOT: "the disk quota is exceeded"}


def _fault(path: str | Path) -> int | None:
    """The errno the test fault (:data:`FAULT_ENV`) injects for writes at ``path``, or None."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    name, _, pattern = spec.partition(":")
    here = Path(os.path.abspath(path))
    if not pattern or not any(fnmatch.fnmatchcase(str(p), pattern) for p in (here, *here.parents)):
        return None
    return getattr(errno, name)


def _refuse(path: str | Path) -> None:
    """Raise the injected 'read-only' fault for creating ``path`` (ENOSPC only fails writing bytes)."""
    code = _fault(path)
    if code is not None and code not in _FULL:
        raise OSError(code, os.strerror(code), str(path))


def disk_full(path: str | Path, error: OSError) -> OSError:
    """``error`` as a :class:`DiskFullError` naming ``path`` when it is a full disk, else ``error``."""
    from regexplain.errors import DiskFullError

    if isinstance(error, DiskFullError) or error.errno not in _FULL:
        return error
    return DiskFullError(path, _FULL[error.errno])


def _mkdir(path: Path) -> None:
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        _refuse(p)
    path.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    Raises:
        DiskFullError: the disk filled up while the block wrote (naming ``path``).
    """
    path = Path(path)
    _mkdir(path.parent)
    with contextlib.ExitStack() as hold:
        hold.enter_context(deferred_signals())   # an interruption here would leave the temp file behind
        _refuse(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp)
        if _fault(path) in _FULL:   # the test fault: every byte written there fails, as on a full disk
            tmp.unlink()
            tmp.symlink_to("/dev/full")
        held = hold.pop_all()
    try:
        held.close()   # a signal that arrived meanwhile is raised here, where the temp file is removed
        try:
            yield tmp
            if tmp.is_symlink():   # the test fault, and the block wrote nothing: as if its bytes failed
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as e:
            raise disk_full(path, e) from e
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it to ``path`` only if the block succeeds.

    With ``overwrite`` an existing ``path`` is replaced (after the new content is complete).
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: already exists (pass overwrite=True to replace it)")
    _mkdir(path.parent)
    with contextlib.ExitStack() as hold:
        hold.enter_context(deferred_signals())   # an interruption here would leave the temp folder behind
        _refuse(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        held = hold.pop_all()
    try:
        held.close()   # a signal that arrived meanwhile is raised here, where the temp folder is removed
        try:
            yield tmp
        except OSError as e:   # a full disk while the folder was filled: name the folder the user asked for
            raise _renamed(disk_full(path, e), tmp, path) from e
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


def _renamed(error: OSError, tmp: Path, path: Path) -> OSError:
    """A :class:`DiskFullError` about a file inside the temp folder ``tmp``, retold about ``path``."""
    from regexplain.errors import DiskFullError

    if isinstance(error, DiskFullError) and error.path.is_relative_to(tmp):
        return DiskFullError(path / error.path.relative_to(tmp), error.reason)
    return error


@contextlib.contextmanager
def atomic_files(folder: str | Path) -> Iterator[Path]:
    """Files that belong together (a registration's volumes, a summary and its table), written whole.

    Yields a staging folder; the files written into it are moved into ``folder`` once the block succeeds,
    so a failure part-way (a full disk, an interruption) leaves ``folder`` as it was: no file of the set,
    and no folder when it did not exist before. Existing files of the same names are replaced.
    """
    folder = Path(folder)
    if not folder.exists():
        with atomic_dir(folder) as tmp:    # the whole folder appears at once
            yield tmp
        return
    _refuse(folder / ".staging")
    with contextlib.ExitStack() as hold:
        hold.enter_context(deferred_signals())
        tmp = Path(tempfile.mkdtemp(prefix=".staging.", suffix=".tmp", dir=folder))
        held = hold.pop_all()
    try:
        held.close()
        try:
            yield tmp
        except OSError as e:
            raise _renamed(e, tmp, folder) from e
        with deferred_signals():   # renames in one folder: no space needed, nothing between them to fail
            for p in sorted(tmp.iterdir()):
                os.replace(p, folder / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class _Writes:
    """A binary file for ``torch.save`` that keeps the OSError of a failed write: torch's writer may turn it
    into ``RuntimeError: [enforce fail at inline_container.cc] . unexpected pos``, naming no cause."""

    def __init__(self, fh):
        self.fh, self.error = fh, None

    def write(self, data) -> int:
        try:
            return self.fh.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        try:
            self.fh.flush()
        except OSError as e:
            self.error = e
            raise


def save_torch(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically, through a Python file: a full disk is an OSError naming ``path``
    (:class:`DiskFullError`), not torch's ``RuntimeError: ... unexpected pos``."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        writes = _Writes(fh)
        try:
            torch.save(obj, writes)
        except RuntimeError as e:
            if writes.error is None:
                raise
            raise writes.error from e
        if writes.error is not None:   # a failed write torch went past: never keep that archive
            raise writes.error


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
        _refuse(anchor / ".regexplain-probe")
        fd, probe = tempfile.mkstemp(prefix=".regexplain-probe.", dir=anchor)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise OutputError(f"{p}: cannot write into {anchor} ({e.strerror})") from e
