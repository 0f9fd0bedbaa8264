"""Device selection, CPU threads and seeding: the one place that decides where code runs."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from regexplain.errors import UsageError


def select_device(name: str | None = None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1") or, by default, CUDA when present and the CPU otherwise.

    Raises:
        UsageError: ``name`` is not a device, or names a GPU this machine does not have (checked here, so
            that the failure is one line naming ``--device`` rather than an error deep inside torch).
    """
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as e:
        raise UsageError(f"--device {name!r}: not a device; use cpu, cuda or cuda:N") from e
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UsageError(f"--device {name!r}: no CUDA GPU is available here; use --device cpu")
        if (device.index or 0) >= count:
            raise UsageError(f"--device {name!r}: this machine has {count} CUDA GPU(s) (cuda:0.."
                             f"cuda:{count - 1})")
    elif device.type != "cpu":
        raise UsageError(f"--device {name!r}: only cpu and cuda devices are supported")
    return device


def set_threads(n: int = 0) -> None:
    """Set torch's CPU threads (0 keeps the default, or ``REGEXPLAIN_THREADS`` when set)."""
    n = n or int(os.environ.get("REGEXPLAIN_THREADS", "0") or 0)
    if n > 0:
        torch.set_num_threads(n)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a CPU generator seeded the same."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
