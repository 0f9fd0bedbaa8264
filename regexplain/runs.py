"""Trained runs: the paper's three models, their configs and folders, and the one way to open a run.

A run directory holds what ``train`` wrote (``checkpoint.pt``, ``config.yaml``, ``log.jsonl``, and
``metrics.json`` once finished) and, after :func:`ensure_decomposition`, ``decomposition/``.
:func:`open_run` opens any run (a checkpoint file or a run directory) with its data splits, for the
notebooks, the ``decompose`` / ``casestudy`` commands, the explorer and the seed study alike;
:func:`load_run` opens one of the main job's :data:`MODELS` by name. A different data folder or split
than the checkpoint's goes through :func:`with_data`, which validates the result like a profile.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from regexplain.config import Config, load_config
from regexplain.errors import CheckpointError, UsageError

if TYPE_CHECKING:   # torch-heavy modules, imported when a run is opened
    from torch import nn

    from regexplain.analysis.latent import Decomposition
    from regexplain.data.pairs import VolumeSet

#: run name -> (dataset, skip connections): the paper's three trained models
MODELS: dict[str, tuple[str, bool]] = {
    "hippocampus_noskip": ("hippocampus", False),
    "hippocampus_skip": ("hippocampus", True),
    "lung_noskip": ("lung", False),
}

#: other networks explained the paper's way (notebook 09): run name -> (dataset, model family, the family's
#: constructor arguments); trained with the profile's recipe and ``config.family_overrides(family)``
NETWORKS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "hippocampus_voxelmorph": ("hippocampus", "monai_voxelmorph", {}),     # MONAI's defaults (VoxelMorph 2)
    "hippocampus_localnet": ("hippocampus", "monai_localnet", {"num_channel_initial": 8}),   # a CPU budget
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


# ------------------------------------------------------------------------------------------ configs

def _data_root(cfg_root: str, data_dir: str | Path) -> Path:
    """Profile roots are written relative to ``data/``; move them under ``data_dir``."""
    p = Path(cfg_root)
    rel = p.relative_to("data") if p.parts and p.parts[0] == "data" else p
    return Path(data_dir) / rel if not p.is_absolute() else p


def model_config(profile: str, name: str, data_dir: str | Path = "data", seed: int | None = None) -> Config:
    """The config of one of the :data:`MODELS` or :data:`NETWORKS` under ``profile``, its data root under
    ``data_dir``.

    Raises:
        UsageError: ``name`` is not one of :data:`MODELS` or :data:`NETWORKS`.
    """
    from regexplain.config import family_overrides, merge_overrides

    if name in MODELS:
        dataset, skip = MODELS[name]
        model: dict[str, Any] = {"model": {"skip_connections": skip}}
    elif name in NETWORKS:
        dataset, family, kwargs = NETWORKS[name]
        model = merge_overrides(family_overrides(family), {"model": {"adapter": {"kwargs": dict(kwargs)}}})
    else:
        raise UsageError(f"unknown model {name!r}; expected one of {sorted(MODELS) + sorted(NETWORKS)}")
    base = load_config(profile, dataset)
    over: dict[str, Any] = {**model, "data": {"root": str(_data_root(base.data.root, data_dir))}}
    if seed is not None:
        over["train"] = {"seed": int(seed)}
    return load_config(profile, dataset, over)


def with_data(cfg: Config, source: str = "command line", **data: Any) -> Config:
    """``cfg`` with ``cfg.data`` fields replaced (``root``, ``split``, ``n_train``...), validated as a
    profile is (:class:`~regexplain.config.ConfigError` naming ``source``); ``cfg`` itself is unchanged."""
    from regexplain.config import override

    return override(cfg, {"data": data} if data else None, source=source)


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


def read_log(rd: str | Path) -> list[dict[str, Any]]:
    """The records of run ``rd``'s ``log.jsonl`` (:func:`regexplain.registration.train.read_log`: a cut-off last line
    dropped, a damaged one named)."""
    from regexplain.registration.train import read_log as read

    return read(Path(rd) / "log.jsonl")


def read_metrics(rd: str | Path) -> dict[str, Any]:
    """Run ``rd``'s ``metrics.json`` (written after its last step). Raises :class:`CheckpointError`
    naming the file when it is missing or unreadable."""
    import json

    path = Path(rd) / "metrics.json"
    try:
        out = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: no finished run's metrics ({e}); train the run first") from e
    if not isinstance(out, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(out).__name__}")
    return out


def ensure_trained(cfg: Config, rd: str | Path, *, force: bool = False, progress: bool = False) -> str:
    """Train into ``rd`` unless a finished run is there; resume an unfinished one."""
    from regexplain.registration.train import train

    rd = Path(rd)
    if force and rd.exists():
        shutil.rmtree(rd)
    if run_finished(rd):
        return f"reused {rd}"
    resume = (rd / "checkpoint.pt").is_file()
    m = train(cfg, rd, resume=resume, progress=progress)
    return (f"{'resumed' if resume else 'trained'} {rd}: {m.get('steps')} steps, Dice "
            f"{m.get('dice_before', float('nan')):.3f} -> {m.get('dice_after', float('nan')):.3f}")


def ensure_decomposition(rd: str | Path, *, data=None, force: bool = False, basis: str = "pca", seed: int = 0,
                         save: bool = True):
    """The run's latent decomposition in ``basis`` (:mod:`regexplain.analysis.bases`; the paper's PCA by default),
    fitted on its training codes and cached in ``rd/decomposition`` (``rd/decomposition_<basis>``), refitted
    when the checkpoint is newer. K by :func:`regexplain.analysis.inputs.n_components`; the
    same metadata as ``regexplain decompose`` (:func:`~regexplain.analysis.inputs.decomposition_record`). ``data``: the
    ``(train, val)`` :class:`~regexplain.data.pairs.VolumeSet` pair, read from the run's config if ``None``.
    ``save=False``: a fresh cached one is still read, but a new fit stays in memory (``match`` writes nothing
    into the runs it reads).

    Raises:
        ValueError: an unknown basis, or ``supervised`` for data without ``factors.csv``.
    """
    from regexplain.analysis.inputs import decompose_run
    from regexplain.analysis.latent import Decomposition
    from regexplain.data.pairs import load_splits
    from regexplain.registration.checkpoint import load_model

    rd = Path(rd)
    out = rd / ("decomposition" if basis == "pca" else f"decomposition_{basis}")
    ckpt = rd / "checkpoint.pt"
    if not force and (out / "decomposition.npz").is_file() \
            and (out / "decomposition.npz").stat().st_mtime >= ckpt.stat().st_mtime:
        return Decomposition.load(out)
    model, cfg = load_model(rd, device="cpu")
    train_set, val_set = data if data is not None else load_splits(cfg.data)
    dec, _ = decompose_run(model, cfg, ckpt, train_set, val_set, basis=basis, seed=seed)
    if save:
        dec.save(out)
    return dec


# ------------------------------------------------------------------------------------------- opening

@dataclass
class Run:
    """One trained model with its data splits and, when asked for, its decomposition."""
    name: str
    model: nn.Module           # eval mode: regexplain's RegistrationNet, or an adapter (regexplain.adapters)
    cfg: Config                # the checkpoint's config, data overrides applied
    train: VolumeSet
    val: VolumeSet
    decomposition: Decomposition | None
    run_dir: Path
    origin: str = "trained"    # or "pretrained <run name> <sha256 prefix>": a shipped model (regexplain.pretrained)


def run_splits(cfg: Config, data: dict[str, Any] | None = None, *, source: str = "command line",
               progress: bool = True):
    """``(cfg with data overrides, (train, val))``: a run's splits, in its own data folder or in the one
    ``data`` names (:func:`with_data`). Raises ConfigError or DataError naming the value or file."""
    from regexplain.data.pairs import load_splits

    cfg = with_data(cfg, source, **(data or {}))
    return cfg, load_splits(cfg.data, progress=progress)


def open_run(path: str | Path, *, device=None, data: dict[str, Any] | None = None, decomposition: bool = False,
             basis: str = "pca", source: str = "command line", progress: bool = True) -> Run:
    """Open a checkpoint file or run directory with its splits (the one way to open a trained run).

    Args:
        path: ``checkpoint.pt`` or the run directory holding it.
        device: where the model goes (``"cpu"``, ``"cuda"``...); its current device when ``None``.
        data: overrides of ``cfg.data`` (:func:`with_data`), e.g. ``{"root": "/other/folder"}``.
        decomposition: also fit or load the cached decomposition (:func:`ensure_decomposition`) in ``basis``.
    Raises:
        CheckpointError, ConfigError, DataError: naming the file or value at fault.
    """
    from regexplain.registration.checkpoint import checkpoint_path, load_model

    model, cfg = load_model(path, device)
    cfg, splits = run_splits(cfg, data, source=source, progress=progress)
    rd = checkpoint_path(path).parent
    dec = ensure_decomposition(rd, data=splits, basis=basis) if decomposition else None
    return Run(rd.name, model, cfg, splits[0], splits[1], dec, rd)


def load_run(profile: str, name: str, runs_dir: str | Path = "runs", data_dir: str | Path = "data", *,
             basis: str = "pca") -> Run:
    """Open one of the main job's :data:`MODELS` (CPU, eval mode) with its splits and its decomposition in
    ``basis``; its data are read from ``data_dir`` on this machine, not from where it was trained."""
    rd = run_dir(runs_dir, profile, name)
    root: str | None = model_config(profile, name, data_dir).data.root
    origin = "trained"
    if not run_finished(rd):
        shipped = _shipped(profile, name)
        if shipped is None:
            raise CheckpointError(f"{rd}: no finished training run; run `regexplain reproduce --profile {profile}`")
        from regexplain.pretrained import materialize, origin_line

        if not dataset_present(root):
            root = None                 # the shipped model's check phantoms, synthesised in the cache
        rd = materialize(name, data=root)
        print(f"No trained run at {run_dir(runs_dir, profile, name)}: {origin_line(name, rd)}.")
        origin = f"pretrained {name} {shipped['sha256']['weights.pt'][:12]}"
    run = open_run(rd, device="cpu", data={"root": root} if root else None, decomposition=True, basis=basis,
                   source=f"{profile} {name}", progress=False)
    run.name, run.origin = name, origin
    return run


def _shipped(profile: str, name: str) -> dict[str, Any] | None:
    """The manifest entry of a shipped model that stands for run ``name`` of ``profile``, if any."""
    from regexplain.pretrained import read_manifest

    try:
        entry = read_manifest().get(name)
    except CheckpointError:
        return None
    return entry if entry is not None and entry.get("profile") == profile else None
