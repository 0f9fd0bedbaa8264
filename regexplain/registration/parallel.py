"""Data-parallel training on one CPU machine: ``train.processes`` single-thread ranks that the trainer
spawns itself (torch.distributed on gloo over the loopback), no launcher needed.

Why processes rather than threads: on the quick profile's 8-32-channel convolutions a second OpenMP thread
buys little (and with spin-waiting threads any other load on the machine made a 2-thread step several
times slower), while two single-thread ranks each do half the batch. Each rank draws the same global batch
from the step's seed and keeps its share (:func:`batch_share`), so the data a run sees do not depend on
the number of processes; only float rounding of the averaged gradients does. A run is bit-reproducible for
a given ``(train.processes, threads per process)``.

Every rank runs :class:`regexplain.registration.train.Trainer` with ``RANK`` / ``WORLD_SIZE`` set as torchrun would;
rank 0 writes the run folder (the parent process holds its lock) and ``metrics.json``, which the parent
returns. A rank that fails stops the others; its :class:`~regexplain.errors.RegexplainError` is raised
again in the parent, so the message is the one a single-process run gives.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regexplain.errors import RegexplainError, TrainingError

#: Environment of every spawned rank: OpenMP threads that sleep while they wait (a spinning thread steals
#: the core another rank or job needs), and gloo on the loopback interface.
RANK_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "GLOO_SOCKET_IFNAME": "lo"}


def spawned_processes(cfg, device) -> int:
    """Ranks to spawn for ``cfg``: ``cfg.train.processes`` on the CPU, 1 on CUDA (one GPU per process is
    torchrun's job) and 1 inside an already distributed run (``WORLD_SIZE`` set, e.g. by torchrun)."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return 1
    from regexplain import runtime

    if runtime.select_device(str(device) if device else None).type != "cpu":
        return 1
    return max(1, int(cfg.train.processes))


def batch_share(batch_size: int, rank: int, world: int) -> slice:
    """The pairs ``[lo, hi)`` of a global batch that rank ``rank`` of ``world`` trains on.

    Raises:
        TrainingError: ``batch_size`` is not a multiple of ``world`` (unequal shares would weigh the ranks'
            mean losses unequally).
    """
    if batch_size % world:
        raise TrainingError(f"train.batch_size {batch_size} must be a multiple of the number of processes "
                            f"({world}: train.processes or torchrun's WORLD_SIZE)")
    n = batch_size // world
    return slice(rank * n, (rank + 1) * n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, cfg, run_dir: str, resume: bool, data, progress: bool,
               errors) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    if not cfg.train.threads:
        os.environ["REGEXPLAIN_THREADS"] = "1"      # one thread per rank unless the profile says otherwise
    from regexplain.registration.train import Trainer

    try:
        Trainer(cfg, Path(run_dir), resume, "cpu", data, progress).loop()
    except RegexplainError as e:
        errors.put(e)
        raise


@contextlib.contextmanager
def main_not_rerun() -> Iterator[None]:
    """While ranks are started: hide the parent's ``__main__`` from multiprocessing's spawn, which would
    otherwise run the user's script (or ``-m`` module) again in every rank, so that a script calling
    :func:`regexplain.registration.train.train` without an ``if __name__ == "__main__":`` guard would start a second
    training inside each rank. The ranks need nothing from it: their function and arguments live in
    regexplain and torch."""
    main = sys.modules.get("__main__")
    hidden = {k: main.__dict__.pop(k) for k in ("__file__",) if main is not None and k in main.__dict__}
    spec = getattr(main, "__spec__", None)
    if main is not None:
        main.__spec__ = None
    try:
        yield
    finally:
        if main is not None:
            main.__dict__.update(hidden)
            main.__spec__ = spec


def spawn_training(cfg, run_dir: Path, resume: bool, data, progress: bool, world: int) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` with ``world`` spawned CPU ranks; return rank 0's final metrics.

    ``data``: the ``(train, val)`` VolumeSets, sent to every rank; ``None`` reads ``cfg.data`` here first.

    Raises:
        RegexplainError: the error a rank raised (e.g. :class:`TrainingError` for a non-finite loss).
        TrainingError: a rank died without one (its traceback is in the message).
    """
    import torch.multiprocessing as mp
    from torch.multiprocessing.spawn import ProcessException

    if data is None:                 # read and preprocess once, here: a bad folder fails before any rank starts
        from regexplain.data.pairs import load_splits
        data = load_splits(cfg.data)
    ctx = mp.get_context("spawn")
    errors = ctx.SimpleQueue()
    saved = {k: os.environ.get(k) for k in RANK_ENV}
    os.environ.update(RANK_ENV)                      # read by each rank's OpenMP runtime as it loads
    try:
        with main_not_rerun():
            ranks = mp.start_processes(_rank_main, args=(world, _free_port(), cfg, str(run_dir), resume, data,
                                                         progress, errors), nprocs=world, join=False,
                                       start_method="spawn")
        try:
            while not ranks.join():
                pass
        except BaseException:       # a failed rank, or this process interrupted (Ctrl-C, SIGTERM): no rank
            for p in ranks.processes:   # may train on without the parent that holds the run folder's lock
                if p.is_alive():
                    p.terminate()
            for p in ranks.processes:
                p.join(30)
            raise
    except ProcessException as e:
        if not errors.empty():
            raise errors.get() from None
        raise TrainingError(f"{run_dir}: a training process failed ({world} processes, train.processes): "
                            f"{str(e).strip().splitlines()[-1] if str(e).strip() else e}") from e
    finally:
        errors.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return json.loads((Path(run_dir) / "metrics.json").read_text())


