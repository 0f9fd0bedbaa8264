"""What the explorer shows, found from a decomposition directory alone.

``decomposition.json`` names the checkpoint and the data it was fitted on (``regexplain decompose``); the
explorer opens both and shows the first validation subject. Every failure becomes a
:class:`ExplorerUnavailable` whose message a person can act on (the app shows it as the page).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regexplain.app import ENV_CWD
from regexplain.errors import ExplorerUnavailable, RegexplainError

HINT = "Create one with `regexplain decompose --model RUN_DIR --out DIR`."



@dataclass
class ExplorerInputs:
    model: Any                     # RegistrationNet, eval mode
    config: Any                    # the checkpoint's Config
    decomposition: Any             # regexplain.analysis.latent.Decomposition
    image: np.ndarray              # (D, H, W) in [0, 1]
    label: np.ndarray              # (D, H, W) int
    subject: str
    checkpoint: Path
    data: Path
    subjects: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # every validation one
    axcodes: tuple[str, str, str] | None = None   # the images' orientation (RAS letters), from their affine

    @property
    def run_name(self) -> str:
        """The run's folder name (the checkpoint's folder, or the checkpoint itself when it is a folder)."""
        return self.checkpoint.name if self.checkpoint.is_dir() else self.checkpoint.parent.name


def unavailable(path: str | Path, problem: object, hint: str = HINT) -> ExplorerUnavailable:
    return ExplorerUnavailable(f"Cannot open decomposition at {path}: {str(problem).rstrip('. ')}. {hint}")


def open_decomposition(path: str | Path | None):
    """``Decomposition.load`` with the failure turned into the app's one readable message."""
    from regexplain.analysis.latent import Decomposition

    if not path:
        raise unavailable("(none given)", "no decomposition directory was given")
    path = Path(path)
    if not path.is_dir():
        raise unavailable(path, "no such directory")
    npz = path / "decomposition.npz"
    if npz.is_file() and not zipfile.is_zipfile(npz):
        # np.load would guess "pickled data" and suggest allow_pickle: misleading advice for a broken file.
        raise unavailable(path, f"{npz.name} is not a NumPy .npz archive (corrupt or truncated)")
    try:
        return Decomposition.load(path)
    except Exception as e:  # noqa: BLE001 - any corruption must reach the user as one line, not a traceback
        raise unavailable(path, _reason(e)) from e


def resolve(path: str | Path, base: Path | None = None) -> Path:
    """Paths stored in decomposition.json are relative to where `decompose` ran, i.e. the launch directory
    (the kernel's cwd is a temp directory, hence :data:`ENV_CWD`)."""
    p = Path(path)
    if p.is_absolute():
        return p
    return (base or Path(os.environ.get(ENV_CWD) or os.getcwd())) / p


def load_inputs(decomposition: str | Path | None, *, checkpoint: str | Path | None = None,
                data: str | Path | None = None, subject: int | str = 0, basis: str | None = None
                ) -> ExplorerInputs:
    """Decomposition, model, config and the validation subjects; ``subject`` (an id, or a 0-based number)
    is the one shown first. ``basis`` (:data:`regexplain.analysis.bases.BASES`): when the decomposition is in
    another one, that basis is fitted on the run's training codes and shown instead."""
    dec, ckpt, root = check_sources(decomposition, checkpoint=checkpoint, data=data)
    model, cfg = _load_model(decomposition, ckpt)
    _check_latent_shape(decomposition, dec, model, cfg, ckpt)
    cfg, subjects, train, axcodes = _validation_subjects(decomposition, cfg, root)
    if basis and basis != dec.meta.get("basis", "pca"):
        dec = _in_basis(decomposition, dec, model, cfg, train, basis)
    del train  # only a basis fit reads the training volumes: do not hold them for the page's lifetime
    sid = pick_subject(list(subjects), subject)
    return ExplorerInputs(model, cfg, dec, *subjects[sid], sid, ckpt, root, subjects, axcodes)


def pick_subject(ids: list[str], subject: int | str | None) -> str:
    """The id ``subject`` names: an id, or a 0-based number into ``ids``; ExplorerUnavailable otherwise."""
    if subject is None or subject == "":
        return ids[0]
    if str(subject) in ids:
        return str(subject)
    if str(subject).isdigit() and int(subject) < len(ids):
        return ids[int(subject)]
    shown = ", ".join(ids[:8]) + (", ..." if len(ids) > 8 else "")
    raise ExplorerUnavailable(f"--subject {subject}: no such validation subject; choose an id ({shown}) or a "
                              f"number 0..{len(ids) - 1}")


def check_sources(decomposition: str | Path | None, *, checkpoint: str | Path | None = None,
                  data: str | Path | None = None):
    """The decomposition and the existing checkpoint and data paths it names (overrides win); cheap enough
    for the CLI to call before starting a server."""
    dec = open_decomposition(decomposition)
    ckpt = _named_path(decomposition, dec.meta, "checkpoint", checkpoint, "--checkpoint")
    root = _named_path(decomposition, dec.meta, "data", data, "--data")
    return dec, ckpt, root


def _named_path(where, meta: dict, key: str, override, flag: str) -> Path:
    value = override if override is not None else meta.get(key)
    if not value:
        raise unavailable(where, f"decomposition.json names no {key}", f"Pass {flag}.")
    p = resolve(value)
    if not p.exists():
        raise unavailable(where, f"its {key} {p} does not exist", f"Pass {flag} to point at it.")
    return p


def check_model(where, dec, ckpt: Path) -> None:
    """The checkpoint ``ckpt`` loads and encodes to ``dec``'s latent shape (ExplorerUnavailable otherwise)."""
    model, cfg = _load_model(where, ckpt)
    _check_latent_shape(where, dec, model, cfg, ckpt)


def _load_model(where, ckpt: Path):
    from regexplain.registration.checkpoint import load_model

    try:
        return load_model(ckpt, "cpu")
    except Exception as e:  # noqa: BLE001 - see open_decomposition
        raise unavailable(where, f"cannot load checkpoint {ckpt}: {_reason(e)}",
                          "Pass --checkpoint with the run the decomposition was fitted on.") from e


def _check_latent_shape(where, dec, model, cfg, ckpt: Path | None = None) -> None:
    shape = tuple(model.latent_shape(tuple(cfg.data.shape)))
    if shape != tuple(dec.latent_shape):
        raise unavailable(where, f"its latent shape {tuple(dec.latent_shape)} does not match the "
                          f"checkpoint{f' {ckpt}' if ckpt else ''}'s {shape}",
                          "Decompose again with this checkpoint, or pass the right --checkpoint.")


def _validation_subjects(where, cfg, root: Path):
    """``(cfg on root, {id: (image, label)}, training VolumeSet, axis codes)``: the validation subjects in
    ``root``."""
    from regexplain.runs import run_splits

    try:  # another folder than the run's: counts that don't fit become fractions
        cfg, (train, val) = run_splits(cfg, {"root": str(root), "exact_counts": False}, source=str(where),
                                 progress=False)
    except Exception as e:  # noqa: BLE001 - see open_decomposition
        raise unavailable(where, f"cannot read its data {root}: {_reason(e)}",
                          "Pass --data with the dataset it was fitted on.") from e
    subjects = {sid: (val.images[i, 0].numpy().copy(), val.labels[i, 0].numpy().astype(np.uint8))
                for i, sid in enumerate(val.ids)}
    return cfg, subjects, train, val.axcodes


def basis_cache(decomposition: str | Path, basis: str) -> Path:
    """Where the explorer keeps ``basis`` fitted for the run of ``decomposition``: the next page load in that
    basis opens in a second instead of refitting (ICA: half a minute on two cores)."""
    return Path(decomposition) / "bases" / basis


def _cached_basis(where, dec, basis: str, ckpt: Path):
    from regexplain.analysis.latent import Decomposition

    path = basis_cache(where, basis)
    npz = path / "decomposition.npz"
    newest = max(p.stat().st_mtime for p in (ckpt if ckpt.is_file() else ckpt / "checkpoint.pt",
                                              Path(where) / "decomposition.npz") if p.exists())
    if not npz.is_file() or npz.stat().st_mtime < newest:
        return None
    try:
        cached = Decomposition.load(path)
    except Exception:  # noqa: BLE001 - a broken cache is refitted, never trusted
        return None
    return cached if cached.n_components == min(dec.n_components, cached.n_components) else None


def _in_basis(where, dec, model, cfg, train, basis: str):
    """``dec``'s run in ``basis``, with as many components, fitted on the training codes (cached beside the
    decomposition, :func:`basis_cache`, when that folder is writable)."""
    from regexplain.analysis.inputs import encode_splits, fit_decomposition

    cached = _cached_basis(where, dec, basis, resolve(dec.meta.get("checkpoint", where)))
    if cached is not None:
        return cached
    try:
        new = fit_decomposition(model, encode_splits(model, train), dec.n_components, basis=basis,
                                root=cfg.data.root)
    except ValueError as e:
        raise unavailable(where, str(e), "Choose another --basis.") from e
    new.meta.update({k: v for k, v in dec.meta.items() if k in ("checkpoint", "data")}, basis=basis)
    try:
        new.save(basis_cache(where, basis))
    except OSError:  # a read-only decomposition folder: fitted again at the next page load
        pass
    return new


def _reason(e: BaseException) -> str:
    # Package errors already read as sentences; anything else gets its type so the cause is not lost.
    return str(e) if isinstance(e, RegexplainError) else f"{type(e).__name__}: {e}"
