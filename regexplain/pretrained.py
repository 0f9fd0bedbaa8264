"""The trained quick models that ship with the package: from a fresh clone to the explorer's sliders in a
minute, without 30 minutes of training first.

``regexplain/weights/<run name>/`` holds each model's weights (a state dict, ``weights.pt``) and its latent
decomposition (``decomposition.npz`` / ``.json``, fitted on its training codes); ``manifest.json`` records,
per model, how it was made (profile, seed, phantom regime, code version, the command), its SHA-256, its
validation Dice, and the Dice on a small set of *check* phantoms that anyone can synthesise again in seconds
(``check``: dataset, seed, subjects, pairs). :func:`materialize` turns a shipped model into an ordinary run
folder in the cache (``$REGEXPLAIN_CACHE``, else ``~/.cache/regexplain``) beside freshly synthesised check
phantoms, so every command and notebook opens it as it opens a trained run. :func:`make` re-makes the
weights (``regexplain pretrained make``, ``make pretrained``).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regexplain.errors import CheckpointError, UsageError

WEIGHTS_DIR = Path(__file__).parent / "weights"
MANIFEST_NAME = "manifest.json"
#: the names users type -> the main job's run names (regexplain.runs.MODELS)
PRETRAINED = {"hippocampus": "hippocampus_noskip", "hippocampus-skip": "hippocampus_skip", "lung": "lung_noskip"}
#: the check phantoms: a set none of the models saw (another seed than the training data), small enough to
#: synthesise in seconds; subjects per dataset (the lung's are patients of two volumes each)
CHECK = {"hippocampus": {"seed": 1, "subjects": 12, "n_train": 2, "n_val": 10},
         "lung": {"seed": 1, "subjects": 6, "n_train": 2, "n_val": 4}}
CHECK_PAIRS = 30


def cache_dir() -> Path:
    """Where shipped models are unpacked with their check phantoms: ``$REGEXPLAIN_CACHE`` or
    ``~/.cache/regexplain``."""
    env = os.environ.get("REGEXPLAIN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "regexplain"


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(weights_dir: str | Path = WEIGHTS_DIR) -> dict[str, Any]:
    """``manifest.json``: ``{run name: entry}``; :class:`CheckpointError` naming the file otherwise."""
    path = Path(weights_dir) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: no readable manifest of the shipped models ({e}); re-make them with "
                              "`regexplain pretrained make`") from e
    if not isinstance(manifest, dict) or not isinstance(manifest.get("models"), dict):
        raise CheckpointError(f"{path}: expected {{\"models\": {{name: entry}}}}")
    return manifest["models"]


def run_name(name: str) -> str:
    """The run name of a shipped model named ``name`` (``hippocampus``, ``hippocampus-skip``, ``lung``, or a
    run name itself); :class:`UsageError` naming the choices otherwise."""
    if name in PRETRAINED:
        return PRETRAINED[name]
    if name in PRETRAINED.values():
        return name
    raise UsageError(f"--pretrained {name}: no such shipped model; choose one of {', '.join(PRETRAINED)}")


def verified(name: str, weights_dir: str | Path = WEIGHTS_DIR) -> tuple[dict[str, Any], Path]:
    """The manifest entry and folder of shipped model ``name``, its files' SHA-256 checked against it.

    Raises:
        CheckpointError: a file is missing or its checksum differs (naming the file, both sums).
    """
    rn = run_name(name)
    entry = read_manifest(weights_dir).get(rn)
    if entry is None:
        raise CheckpointError(f"{Path(weights_dir) / MANIFEST_NAME}: no entry for {rn}")
    folder = Path(weights_dir) / rn
    for fname, expected in entry["sha256"].items():
        path = folder / fname
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (a shipped file of {rn}); re-make with `regexplain "
                                  "pretrained make`")
        got = sha256(path)
        if got != expected:
            raise CheckpointError(f"{path}: SHA-256 {got[:16]}... differs from the manifest's {expected[:16]}...; "
                                  "the file is damaged or was replaced")
    return entry, folder


def materialize(name: str, *, data: str | Path | None = None, cache: str | Path | None = None,
                weights_dir: str | Path = WEIGHTS_DIR, progress: bool = False) -> Path:
    """A run folder (``checkpoint.pt``, ``config.yaml``, ``metrics.json``, ``decomposition/``) of shipped model
    ``name`` in the cache, on ``data`` (a data folder) or, by default, on its check phantoms (synthesised
    beside it, once). Returns the run folder. Nothing is written outside the cache."""
    import torch

    from regexplain.adapters import build_model
    from regexplain.analysis.latent import Decomposition
    from regexplain.config import config_from_dict, override, save_config
    from regexplain.data.pairs import ensure_data
    from regexplain.io import write_json
    from regexplain.registration.checkpoint import check_state_dict, save_checkpoint

    entry, folder = verified(name, weights_dir)
    rn = run_name(name)
    base = Path(cache or cache_dir()) / f"{rn}-{entry['sha256']['weights.pt'][:12]}"
    cfg = config_from_dict(entry["config"], source=f"{folder} (manifest config)")
    dataset = cfg.data.dataset
    if data is None:       # the check phantoms: the model's own generator and regime, another seed
        c = CHECK[dataset]
        cfg = override(cfg, {"data": {"root": str(base / "data"), "n_train": c["n_train"], "n_val": c["n_val"],
                                      "n_subjects": c["subjects"], "seed": c["seed"]}}, source=str(folder))
        root = ensure_data(cfg.data, progress=progress)
        run = base / "run"
    else:
        root = Path(data).absolute()
        cfg = override(cfg, {"data": {"root": str(root)}}, source=str(folder))
        run = base / ("run_" + hashlib.sha1(str(root).encode()).hexdigest()[:8])
    if (run / "decomposition" / "decomposition.npz").is_file():
        return run
    model = build_model(cfg)
    weights = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    check_state_dict(model, weights, folder / "weights.pt")
    model.load_state_dict(weights)
    run.mkdir(parents=True, exist_ok=True)
    metrics = {k: v for k, v in entry["metrics"].items() if isinstance(v, (int, float, str))}
    metrics["pretrained"] = rn
    save_config(cfg, run / "config.yaml")
    save_checkpoint(run / "checkpoint.pt", model, None, cfg, int(metrics.get("steps", 0)), metrics)
    write_json(run / "metrics.json", metrics)
    dec = Decomposition.load(folder)
    dec.meta.update(checkpoint=str((run / "checkpoint.pt").absolute()), data=str(root), pretrained=rn)
    dec.save(run / "decomposition")           # written last: a half-made run is made again next time
    return run


def origin_line(name: str, run: Path) -> str:
    """The one line that says a shipped model is used instead of a trained run."""
    entry = read_manifest().get(run_name(name), {})
    dice = entry.get("metrics", {}).get("dice_after", float("nan"))
    return (f"using the shipped pretrained model {run_name(name)} ({entry.get('profile', '?')} profile, seed "
            f"{entry.get('seed', '?')}, validation Dice {dice:.3f}; regexplain/weights/manifest.json), unpacked "
            f"in {run}")


def check_dice(name: str, *, cache: str | Path | None = None, weights_dir: str | Path = WEIGHTS_DIR
               ) -> dict[str, float]:
    """Dice before / after of shipped model ``name`` on its freshly synthesised check phantoms
    (:data:`CHECK_PAIRS` validation pairs): what the manifest's ``check`` records."""
    from regexplain.data.pairs import validation_pairs
    from regexplain.registration.evaluation import validation_scores
    from regexplain.runs import open_run

    r = open_run(materialize(name, cache=cache, weights_dir=weights_dir), device="cpu", progress=False)
    pairs = validation_pairs(r.val, CHECK_PAIRS, r.cfg.data.seed)
    return validation_scores(r.model, r.val, pairs, r.cfg.data.num_labels)


def _code_version() -> str:
    from regexplain import __version__

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=10)
        return f"{__version__} ({out.stdout.strip()})" if out.returncode == 0 else __version__
    except OSError:
        return __version__


def make(profile: str = "quick", *, runs_dir: str | Path = "runs", data_dir: str | Path = "data", seed: int = 0,
         out: str | Path = WEIGHTS_DIR, force: bool = False, only: Sequence[str] | None = None,
         log=print) -> dict[str, Any]:
    """Train (or reuse) the main job's three models under ``profile`` and ship them into ``out``: weights,
    decomposition, and the manifest with the check phantoms' Dice. ``only``: the short names to make (default
    all three; the others keep their manifest entries). What ``regexplain pretrained make`` runs."""
    import tempfile

    import torch

    from regexplain.io import atomic_dir, write_json
    from regexplain.registration.checkpoint import load_model
    from regexplain.runs import ensure_data, ensure_decomposition, ensure_trained, model_config, read_metrics
    from regexplain.runs import run_dir as run_folder

    out = Path(out)
    models: dict[str, Any] = {}
    unknown = sorted(set(only or ()) - set(PRETRAINED))
    if unknown:
        raise UsageError(f"no shipped model named {', '.join(unknown)}; known: {', '.join(PRETRAINED)}")
    for short, rn in PRETRAINED.items():
        if only and short not in only:
            continue
        cfg = model_config(profile, rn, data_dir, seed)
        log(ensure_data(cfg))
        rd = run_folder(runs_dir, profile, rn)
        log(ensure_trained(cfg, rd, force=force))
        dec = ensure_decomposition(rd)
        model, stored = load_model(rd, device="cpu")
        with atomic_dir(out / rn, overwrite=True) as tmp:
            torch.save(model.state_dict(), tmp / "weights.pt")
            dec.save(tmp)
        files = {f: sha256(out / rn / f) for f in ("weights.pt", "decomposition.npz", "decomposition.json")}
        metrics = read_metrics(rd)
        models[rn] = {"name": short, "profile": profile, "seed": seed, "dataset": stored.data.dataset,
                      "phantom_regime": stored.data.phantom_regime, "code_version": _code_version(),
                      "command": f"regexplain pretrained make --profile {profile} --seed {seed}",
                      "parameters": int(sum(p.numel() for p in model.parameters())), "sha256": files,
                      "metrics": {k: metrics[k] for k in ("dice_before", "dice_after", "folding_pct", "steps")
                                  if k in metrics},
                      "config": stored.to_dict()}
        write_json(out / MANIFEST_NAME, {"models": {**_previous(out), **models}})
        with tempfile.TemporaryDirectory() as cache:
            check = check_dice(short, cache=cache, weights_dir=out)
        models[rn]["check"] = {**CHECK[stored.data.dataset], "pairs": CHECK_PAIRS,
                               "dice_before": check["dice_before"], "dice_after": check["dice_after"]}
        write_json(out / MANIFEST_NAME, {"models": {**_previous(out), **models}})
        log(f"shipped {rn}: validation Dice {metrics['dice_before']:.3f} -> {metrics['dice_after']:.3f}, check "
            f"phantoms {check['dice_before']:.3f} -> {check['dice_after']:.3f}")
    return models


def _previous(out: Path) -> dict[str, Any]:
    try:
        return read_manifest(out)
    except CheckpointError:
        return {}

