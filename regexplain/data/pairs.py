"""Datasets ready for the network and random pairing of different subjects.

:func:`load_splits` reads ``cfg.root`` (whichever registered layout it holds,
:mod:`regexplain.data.datasets`), preprocesses every volume (:func:`regexplain.data.preprocess.preprocess`:
the paper's normalisation, crop / pad around the labels to the dataset's base shape, resampling to
``cfg.shape``), splits by subject with a seeded permutation written
to ``<root>/split.json`` and caches the preprocessed tensors in ``<root>/.cache_<shape>_<key>.pt``
(key: hash of the settings and of every file's relative path, size and content, so a copied or read-only
dataset reuses its cache), so repeated loads are fast. A missing or empty
``cfg.root`` is an error: phantoms are made only on purpose, by ``regexplain data synth`` and by the main
job (:func:`ensure_data`, called by :func:`regexplain.runs.ensure_data`), never in place of a folder that was mistyped.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from regexplain.config import DataConfig
from regexplain.data import datasets, msd
from regexplain.data.nifti import Volume
from regexplain.data.preprocess import to_base, to_working, working_spacing
from regexplain.data.split import split_sizes
from regexplain.errors import DataError
from regexplain.io import save_torch

CACHE_VERSION = 1


@dataclass
class VolumeSet:
    """Preprocessed volumes at the working shape."""

    images: torch.Tensor                   # (N, 1, D, H, W) float32 in [0, 1]
    labels: torch.Tensor                   # (N, 1, D, H, W) int64 in [0, num_labels)
    ids: list[str]
    groups: list[str]
    spacing: tuple[float, float, float]    # mm per working-shape voxel
    #: the anatomical direction each array axis grows towards (RAS letters, from the first image's affine;
    #: preprocessing crops, pads and resizes but never turns or mirrors): pictures' orientation labels
    axcodes: tuple[str, str, str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: Sequence[int]) -> VolumeSet:
        idx = torch.as_tensor(list(index), dtype=torch.long)
        return VolumeSet(self.images[idx], self.labels[idx], [self.ids[i] for i in idx.tolist()],
                         [self.groups[i] for i in idx.tolist()], self.spacing, self.axcodes)


# --------------------------------------------------------------------------- phantoms

def ensure_data(cfg: DataConfig, *, progress: bool = True) -> Path:
    """``cfg.root``; synthesise ``cfg.n_subjects`` phantoms there first when it does not exist or is an
    empty folder (e.g. left by an interrupted run; synthesis writes atomically, so never half a dataset).
    Phantoms are made at the dataset's base shape (:class:`~regexplain.data.datasets.DatasetSpec`)."""
    root = Path(cfg.root)
    if root.is_dir() and not any(root.iterdir()):
        root.rmdir()
    if root.exists():
        _check_regime(root, cfg)
        return root
    print(f"regexplain: {root} not found; synthesising {cfg.n_subjects} {cfg.dataset} phantoms there",
          file=sys.stderr)
    spec = datasets.get(cfg.dataset)
    return spec.synthesize(root, cfg.n_subjects, spec.base_shape, cfg.seed, cfg.phantom_regime, progress=progress)


def _check_regime(root: Path, cfg: DataConfig) -> None:
    """Phantoms of another regime than the config's are refused: they would silently change every result
    (e.g. a data/hippocampus folder made before the calibrated phantoms became the default)."""
    meta = root / "synthetic.json"
    if cfg.dataset != "hippocampus" or not meta.is_file():
        return
    made = json.loads(meta.read_text()).get("regime", "pose")
    if made != cfg.phantom_regime:
        raise DataError(f"{meta}: these phantoms are of the {made!r} regime, the config asks for "
                        f"{cfg.phantom_regime!r} (data.phantom_regime); move the folder away to make new ones, or "
                        f"set data.phantom_regime: {made}")


def _cache_key(root: Path, files, shape, layout: str) -> str:
    """The cache's key: the settings and every volume's path relative to ``root``, size and content hash.

    Content, not place: a copied, moved or read-only copy of a dataset (``cp -r`` included, which does not
    keep modification times) finds its cache valid; an edited file changes the key. Hashing a dataset's
    compressed files is a fraction of what reading and preprocessing them costs."""
    h = hashlib.sha1(json.dumps([CACHE_VERSION, layout, list(shape)]).encode())
    for _, _, img, lab in files:
        for p in (img, lab):
            h.update(f"{os.path.relpath(p, root)}|{p.stat().st_size}|{_file_hash(p)}\n".encode())
    return h.hexdigest()[:16]


def _file_hash(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _check_labels_kept(data: VolumeSet, root: Path, shape) -> None:
    """A label whose structure vanishes at the working shape (volumes much smaller than the dataset's crop
    window, e.g. 16^3 phantoms in a 64^3 window resized to 16^3) would make every Dice NaN: training and
    evaluation refuse it, naming the volumes, like a label that is empty on disk. (``data info`` still
    describes such a folder.)"""
    kept = data.labels.flatten(1).any(1).tolist()
    lost = [i for i, k in zip(data.ids, kept, strict=True) if not k]
    if lost:
        names = ", ".join(lost[:3]) + (f" (+{len(lost) - 3} more)" if len(lost) > 3 else "")
        raise DataError(f"{root}: the labels of {names} have no voxel left at the working shape "
                        f"{'x'.join(map(str, shape))} ({len(lost)} of {len(data)} volumes); the volumes are too "
                        "small for it (the structure is cut around the label, padded to the dataset's window and "
                        "resized): use larger volumes (`data synth` at the default shape) or a larger working shape")


def _preprocess_all(volumes: list[Volume], base_shape, shape, num_labels: int, progress: bool,
                    chunk: int = 32):
    """Normalise and crop each volume, then resize in chunks (one sampling grid per chunk; the
    base-shape tensors of the whole dataset are never held at once)."""
    images = torch.empty((len(volumes), 1, *shape), dtype=torch.float32)
    labels = torch.empty((len(volumes), 1, *shape), dtype=torch.uint8)
    # one reused base-shape buffer: fresh 64^3 allocations per chunk cost more than the maths
    img_buf = torch.empty((min(chunk, len(volumes)), 1, *base_shape), dtype=torch.float32)
    lab_buf = torch.empty((min(chunk, len(volumes)), 1, *base_shape), dtype=torch.uint8)
    bar = tqdm(total=len(volumes), desc="preprocessing", unit="vol", disable=not progress)
    for s in range(0, len(volumes), chunk):
        part = volumes[s:s + chunk]
        for k, v in enumerate(part):
            if int(v.label.max()) >= num_labels:
                raise DataError(f"{v.label_path}: label value {int(v.label.max())} >= num_labels "
                                f"({num_labels})")
            img, lab = to_base(v.image, v.label, base_shape)
            img_buf[k, 0], lab_buf[k, 0] = torch.from_numpy(img), torch.from_numpy(lab)
            bar.update(1)
        images[s:s + len(part)], labels[s:s + len(part)] = to_working(img_buf[:len(part)], lab_buf[:len(part)],
                                                                      shape)
    bar.close()
    spacing = tuple(float(s) for s in np.median([v.spacing for v in volumes], axis=0))
    return images, labels, working_spacing(spacing, base_shape, shape)


def load_all(cfg: DataConfig, *, progress: bool = True) -> tuple[VolumeSet, Path]:
    """Every volume of ``cfg.root`` preprocessed at ``cfg.shape`` (cached), and the dataset folder."""
    root = Path(cfg.root)
    if not root.is_dir() or not any(root.iterdir()):
        raise DataError(f"{root}: {'empty' if root.is_dir() else 'no such'} data folder; point --data at a "
                        "dataset (`regexplain data info FOLDER` checks one), or make phantoms with "
                        "`regexplain data synth`")
    spec = datasets.detect(root)
    root = spec.dataset_dir(root)
    files = spec.list_files(root)
    shape = tuple(cfg.shape)
    cache = root / f".cache_{'x'.join(map(str, shape))}_{_cache_key(root, files, shape, spec.layout)}.pt"
    if cache.is_file():
        try:
            c = torch.load(cache, weights_only=True)
            # a valid cache is only read: a read-only (or root-owned, chmod-proof) copy is never written
            data = VolumeSet(c["images"], c["labels"].long(), c["ids"], c["groups"], tuple(c["spacing"]),
                             _axis_codes(files))
            return data, root
        except Exception:  # a broken cache is rebuilt, never trusted
            pass
    volumes = spec.read(root, spec.spacing, progress)
    images, labels, spacing = _preprocess_all(volumes, spec.base_shape, shape, cfg.num_labels, progress)
    ids, groups = [f[0] for f in files], [f[1] for f in files]
    try:
        for old in root.glob(f".cache_{'x'.join(map(str, shape))}_*.pt"):
            old.unlink(missing_ok=True)   # stale: the files changed since
        save_torch({"images": images, "labels": labels, "ids": ids, "groups": groups, "spacing": list(spacing)},
                   cache)
    except OSError as e:  # a read-only dataset still loads, only slower next time
        print(f"regexplain: could not write cache {cache}: {e}", file=sys.stderr)
    return VolumeSet(images, labels.long(), ids, groups, spacing, _axis_codes(files)), root


def _axis_codes(files) -> tuple[str, str, str] | None:
    """Orientation of the dataset's first image (its header only); None when it cannot be read."""
    import nibabel as nib

    from regexplain.registration.spatial import axis_codes

    try:
        return axis_codes(nib.load(str(files[0][2])).affine)
    except Exception:  # noqa: BLE001 - orientation labels are a courtesy: never fail a load for them
        return None


def load_splits(cfg: DataConfig, *, progress: bool = True) -> tuple[VolumeSet, VolumeSet]:
    """(train, val) at ``cfg.shape``; the subject split (sizes: :func:`regexplain.data.split.split_sizes`)
    is written to ``<root>/split.json``."""
    data, root = load_all(cfg, progress=progress)
    _check_labels_kept(data, root, cfg.shape)
    subjects = sorted(set(data.groups))
    n_train, n_val, rule = split_sizes(len(subjects), cfg.n_train, cfg.n_val, cfg.split,
                                       exact=cfg.exact_counts, where=str(root))
    if rule == "fractions" and not cfg.split:
        print(f"regexplain: {root}: {len(subjects)} subjects, fewer than n_train + n_val = "
              f"{cfg.n_train + cfg.n_val}; split by their ratio: {n_train} train / {n_val} val", file=sys.stderr)
    elif cfg.split:  # fractions become whole subjects, two per side at least: say what was used
        f_train, f_val = cfg.split
        print(f"regexplain: {root}: split {f_train:g} / {f_val:g} of {len(subjects)} subjects "
              f"({f_train * len(subjects):.3g} / {f_val * len(subjects):.3g}): using {n_train} train / {n_val} val "
              "(whole subjects, at least 2 per side)", file=sys.stderr)
    info = {"rule": rule, **({"fractions": list(cfg.split)} if cfg.split else {})}
    split = msd.split_file(root, subjects, n_train, n_val, cfg.seed, info)
    train, val = set(split["train"]), set(split["val"])
    return (data.subset([i for i, g in enumerate(data.groups) if g in train]),
            data.subset([i for i, g in enumerate(data.groups) if g in val]))


# --------------------------------------------------------------------------- pairs

def _group_codes(groups: Sequence[str]) -> torch.Tensor:
    names = {g: k for k, g in enumerate(dict.fromkeys(groups))}
    if len(names) < 2:
        raise ValueError("pairs of different subjects need at least two groups")
    return torch.tensor([names[g] for g in groups], dtype=torch.long)


def random_pairs(groups: Sequence[str], batch_size: int, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Random (moving, fixed) index pairs, never two volumes of the same group.

    Returns two LongTensors ``(batch_size,)``.
    """
    codes = _group_codes(groups)
    n = len(codes)
    moving = torch.randint(n, (batch_size,), generator=generator)
    fixed = torch.randint(n, (batch_size,), generator=generator)
    same = codes[moving] == codes[fixed]
    while same.any():  # rejection: each retry draws uniformly among the others
        fixed[same] = torch.randint(n, (int(same.sum()),), generator=generator)
        same = codes[moving] == codes[fixed]
    return moving, fixed


def validation_pairs(val: VolumeSet | Sequence[str], n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """A fixed list of ``n_pairs`` distinct ordered pairs ``(moving, fixed)`` of different groups.

    Accepts a :class:`VolumeSet` or its list of groups. All valid pairs when fewer exist.
    """
    groups = val.groups if isinstance(val, VolumeSet) else list(val)
    _group_codes(groups)
    valid = [(i, j) for i in range(len(groups)) for j in range(len(groups)) if groups[i] != groups[j]]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(valid), size=min(n_pairs, len(valid)), replace=False)
    return [valid[k] for k in sorted(pick.tolist())]
