"""Checkpoints: one ``.pt`` file per run, written atomically, read back with ``weights_only=True``.

Layout of the stored dict: ``{model, optimizer, config, step, metrics, version, rng}`` where ``model`` and
``optimizer`` are state dicts, ``config`` is :meth:`Config.to_dict`, ``metrics`` a flat dict of numbers and
``rng`` the state needed to continue the random sequence (see :mod:`regexplain.registration.train`). Only tensors,
numbers, strings, lists, tuples and dicts are stored, so ``torch.load(..., weights_only=True)`` (no pickle
code execution) can read it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from regexplain import __version__
from regexplain.config import Config, ConfigError, config_from_dict
from regexplain.errors import CheckpointError
from regexplain.io import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"
_REQUIRED = ("model", "config", "step")


def checkpoint_path(path_or_run_dir: str | Path) -> Path:
    """A checkpoint file, or ``RUN/checkpoint.pt`` when given a run directory."""
    p = Path(path_or_run_dir)
    return p / CHECKPOINT_NAME if p.is_dir() else p


def _unwrap(model: nn.Module) -> nn.Module:
    # DistributedDataParallel keeps the real network in .module; store it without the "module." prefix.
    return getattr(model, "module", model)


def save_checkpoint(path: str | Path, model: nn.Module, optimizer: torch.optim.Optimizer | None, cfg: Config,
                    step: int, metrics: dict[str, Any] | None = None, *, rng: dict[str, Any] | None = None
                    ) -> Path:
    """Write the checkpoint atomically: a reader sees the previous file or the complete new one."""
    path = Path(path)
    state = {
        "model": _unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "config": cfg.to_dict(),
        "step": int(step),
        "metrics": {k: v for k, v in (metrics or {}).items() if isinstance(v, (int, float, str))},
        "version": __version__,
        "rng": rng or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def read_checkpoint(path_or_run_dir: str | Path, device: torch.device | str | None = None) -> dict[str, Any]:
    """Load the raw checkpoint dict (tensors mapped to ``device``, CPU by default)."""
    path = checkpoint_path(path_or_run_dir)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location=device or "cpu", weights_only=True)
    except Exception as e:  # truncated file, not a torch file, or pickled code refused by weights_only
        first = (str(e).strip().splitlines() or [""])[0][:200]  # torch's own messages run to a page
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {first})") from e
    if not isinstance(state, dict) or any(k not in state for k in _REQUIRED):
        keys = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path}: not a regexplain checkpoint; needs keys {list(_REQUIRED)}, "
                              f"has {keys}")
    return state


#: Recipe options added after checkpoints were first written, with the value an older stored config
#: meant (the recipe of its time), so an old checkpoint keeps decoding exactly as it was trained.
_EARLIER_RECIPE = {"model": {"activation": "softplus"}, "loss": {"smoothness": "squared_diff"}}


def checkpoint_config(state: dict[str, Any], path: str | Path) -> Config:
    values = copy.deepcopy(state["config"])
    for section, options in _EARLIER_RECIPE.items():
        if isinstance(values, dict) and isinstance(values.get(section), dict):
            for k, v in options.items():
                values[section].setdefault(k, v)
    try:
        return config_from_dict(values, source=f"{path} (stored config)")
    except ConfigError as e:
        raise CheckpointError(str(e)) from e


def check_state_dict(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise :class:`CheckpointError` listing missing, unexpected and wrongly shaped keys."""
    expected = _unwrap(model).state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    shapes = [f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items()
              if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or shapes):
        return
    parts = []
    groups = (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes))
    for name, items in groups:
        if items:
            more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
            parts.append(f"{name}: {', '.join(items[:8])}{more}")
    raise CheckpointError(f"{source}: checkpoint does not match the architecture; " + "; ".join(parts))


def check_finite(state_dict: dict[str, torch.Tensor], source: str | Path) -> None:
    """Raise :class:`CheckpointError` when a weight holds NaN or Inf (a diverged or corrupted run would
    otherwise produce NaN volumes without a word)."""
    bad = [k for k, v in state_dict.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CheckpointError(f"{source}: non-finite weights (NaN or Inf) in {', '.join(bad[:5])}{more}; "
                              "the run diverged or the file is damaged")


def strip_prefix(state_dict: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    """Accept checkpoints saved from a DDP-wrapped model by other tools."""
    if state_dict and all(k.startswith(prefix) for k in state_dict):
        return {k[len(prefix):]: v for k, v in state_dict.items()}
    return state_dict


def load_model(path_or_run_dir: str | Path, device: torch.device | str | None = None):
    """Rebuild the network stored in a checkpoint (its ``model.family``: regexplain's ``RegistrationNet`` or an
    adapter, :func:`regexplain.adapters.families.build_model`). Returns ``(model in eval mode, config)``."""
    from regexplain.adapters.families import build_model
    from regexplain.errors import AdapterError

    path = checkpoint_path(path_or_run_dir)
    state = read_checkpoint(path)
    cfg = checkpoint_config(state, path)
    try:
        model = build_model(cfg)
    except AdapterError as e:
        raise CheckpointError(f"{path}: cannot rebuild its network: {e}") from e
    weights = strip_prefix(state["model"])
    check_state_dict(model, weights, path)
    check_finite(weights, path)
    model.load_state_dict(weights)
    if device is not None:
        model.to(device)
    return model.eval(), cfg
