"""Lung MRI pairs: a folder of patients, each with an inspiration and an expiration volume and their
lung masks (label 1 = lung).

Default layout (what :func:`regexplain.data.synthetic.synthesize_lung` writes)::

    <root>/<patient>/insp.nii.gz   <root>/<patient>/insp_mask.nii.gz
    <root>/<patient>/exp.nii.gz    <root>/<patient>/exp_mask.nii.gz

Other namings: pass a :class:`LungLayout` with other patterns (``{state}`` is replaced by each state
name, matched with ``glob`` inside each patient folder), or put a ``pairs.csv`` in ``<root>`` with
columns ``patient,state,image,mask`` (paths relative to ``<root>``), which takes precedence.
Volumes are resampled to the paper's 1.39 x 1.69 x 1.39 mm and cut / padded to 128 x 64 x 128.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from regexplain.data.datasets import DATASETS
from regexplain.data.nifti import Volume, read_volume, spacing_from_affine
from regexplain.data.preprocess import resample_to_spacing
from regexplain.errors import DataError

PAPER_SPACING = DATASETS["lung"].spacing
PAPER_SHAPE = DATASETS["lung"].base_shape
LABELS = tuple(range(DATASETS["lung"].num_labels))
CSV_NAME = "pairs.csv"


@dataclass(frozen=True)
class LungLayout:
    image: str = "{state}.nii.gz"
    mask: str = "{state}_mask.nii.gz"
    states: tuple[str, ...] = ("insp", "exp")


def _one(folder: Path, pattern: str, what: str) -> Path:
    hits = sorted(folder.glob(pattern))
    if len(hits) != 1:
        raise DataError(f"{folder}: expected one {what} matching {pattern!r}, found {len(hits)}")
    return hits[0]


def _from_csv(root: Path) -> list[tuple[str, str, Path, Path]]:
    path = root / CSV_NAME
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        need = {"patient", "state", "image", "mask"}
        if not reader.fieldnames or not need <= set(reader.fieldnames):
            raise DataError(f"{path}: needs columns {sorted(need)}, has {reader.fieldnames}")
        rows = [(r["patient"], r["state"], root / r["image"], root / r["mask"]) for r in reader]
    for _, _, img, mask in rows:
        for p in (img, mask):
            if not p.is_file():
                raise DataError(f"{p}: listed in {path} but missing")
    return rows


def list_volumes(root: str | Path, layout: LungLayout = LungLayout()) -> list[tuple[str, str, Path, Path]]:
    """``(patient, state, image path, mask path)`` for every volume, sorted by patient then state."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    if (root / CSV_NAME).is_file():
        rows = _from_csv(root)
    else:
        rows = []
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if not any(folder.glob(layout.image.format(state=layout.states[0]))):
                continue  # not a patient folder
            for state in layout.states:
                rows.append((folder.name, state,
                             _one(folder, layout.image.format(state=state), f"{state} image"),
                             _one(folder, layout.mask.format(state=state), f"{state} mask")))
    if not rows:
        raise DataError(f"{root}: no lung patients found (expected <patient>/{layout.image} and "
                        f"{layout.mask}, or a {CSV_NAME})")
    counts: dict[str, int] = {}
    for p, *_ in rows:
        counts[p] = counts.get(p, 0) + 1
    single = [p for p, c in counts.items() if c < 2]
    if single:
        raise DataError(f"{root}: patients {single[:5]} have a single state; inspiration and expiration "
                        "are both needed")
    return rows


def is_lung_layout(root: str | Path, layout: LungLayout = LungLayout()) -> bool:
    root = Path(root)
    return (root / CSV_NAME).is_file() or any(root.glob(f"*/{layout.image.format(state=layout.states[0])}"))


def load(root: str | Path, layout: LungLayout = LungLayout(), *, spacing=PAPER_SPACING,
         progress: bool = True) -> list[Volume]:
    """Read every volume with its mask, checked, and resampled to ``spacing`` mm (``None``: as stored).

    Volume ids are ``<patient>_<state>``; the group is the patient.
    """
    out = []
    for patient, state, img, mask in tqdm(list_volumes(root, layout), desc="reading", unit="vol",
                                          disable=not progress):
        v = read_volume(f"{patient}_{state}", img, mask, group=patient, allowed_labels=LABELS)
        if spacing is not None and any(abs(a - b) > 1e-3 for a, b in zip(v.spacing, spacing, strict=True)):
            v.image, v.label, v.affine = resample_to_spacing(v.image, v.label, v.affine, spacing)
            v.spacing = spacing_from_affine(v.affine)
        out.append(v)
    return out
