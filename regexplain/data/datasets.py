"""The dataset registry: what the package knows about each kind of data, in one :class:`DatasetSpec`.

A spec names its folder layout and how to list, read and synthesise it, and the paper's geometry the
volumes are brought to before resizing to the working shape: the spacing they are resampled to first
(``None``: kept) and the ``base_shape`` window cut around the labels. Training data
(:func:`regexplain.data.pairs.load_all`), ``register`` (:mod:`regexplain.registration.inference`), ``data info`` /
``data synth``, the profiles and the CLI's ``--dataset`` choices read :data:`DATASETS`; a new dataset is a
spec (with its reader module) and one line there, plus its section in the profiles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from regexplain.errors import DataError

if TYPE_CHECKING:
    from regexplain.data.nifti import Volume

#: ``(id, group, image path, label path)`` of one volume; pairs never join two volumes of one group
FileEntry = tuple[str, str, Path, Path]


@dataclass(frozen=True)
class DatasetSpec:
    """One kind of dataset.

    Attributes:
        name: the config's ``data.dataset``.
        layout: the folder layout's name (shown by ``data info``).
        base_shape: ``(D, H, W)`` window cut around the labels before resizing (the paper's crop).
        spacing: mm the volumes are resampled to before cropping, or ``None`` to keep theirs.
        num_labels: label values, background included.
        hint: how to recognise the layout, for errors.
        synth_count: phantoms the main job makes when the folder is missing.
        holds: does a folder hold this layout?
        dataset_dir: the folder with the files (e.g. the MSD task folder inside a download root).
        list_files: every volume's :data:`FileEntry`; DataError naming a missing or bad file.
        read: ``(dataset_dir, spacing, progress) -> [Volume]``, checked and resampled to ``spacing``.
        synthesize: ``(out, n, shape, seed, regime="calibrated", *, progress, overwrite) -> out``: phantoms with
            ``factors.csv`` (``regime``: :data:`regexplain.data.synthetic.REGIMES`, where the kind has them).
    """
    name: str
    layout: str
    base_shape: tuple[int, int, int]
    spacing: tuple[float, float, float] | None
    num_labels: int
    hint: str
    synth_count: int
    holds: Callable[[Path], bool]
    dataset_dir: Callable[[Path], Path]
    list_files: Callable[[Path], list[FileEntry]]
    read: Callable[[Path, tuple[float, float, float] | None, bool], list[Volume]]
    synthesize: Callable[..., Path]


# Readers are imported when used: the CLI reads this registry for its choices without importing torch.

def _msd_holds(root: Path) -> bool:
    from regexplain.data import msd

    try:
        msd.find_dataset_dir(root)
        return True
    except DataError:
        return False


def _msd_dir(root: Path) -> Path:
    from regexplain.data import msd

    return msd.find_dataset_dir(root)


def _msd_files(root: Path) -> list[FileEntry]:
    from regexplain.data import msd

    return [(i, i, img, lab) for i, img, lab in msd.list_subjects(root)]


def _msd_read(root: Path, spacing, progress: bool) -> list[Volume]:
    from regexplain.data import msd

    return msd.load(root, progress=progress)


def _hippocampus_synth(out, n, shape, seed, regime: str = "calibrated", **kw) -> Path:
    from regexplain.data import synthetic

    return synthetic.synthesize_hippocampus(out, n, shape, seed, regime=regime, **kw)


def _lung_holds(root: Path) -> bool:
    from regexplain.data import lung

    return lung.is_lung_layout(root)


def _lung_files(root: Path) -> list[FileEntry]:
    from regexplain.data import lung

    return [(f"{p}_{s}", p, img, mask) for p, s, img, mask in lung.list_volumes(root)]


def _lung_read(root: Path, spacing, progress: bool) -> list[Volume]:
    from regexplain.data import lung

    return lung.load(root, spacing=spacing, progress=progress)


def _lung_synth(out, n, shape, seed, regime: str = "calibrated", **kw) -> Path:
    from regexplain.data import synthetic

    return synthetic.synthesize_lung(out, n, shape, seed, **kw)


DATASETS: dict[str, DatasetSpec] = {
    "hippocampus": DatasetSpec("hippocampus", "msd", (64, 64, 64), None, 3, "MSD layout (dataset.json)", 260,
                               _msd_holds, _msd_dir, _msd_files, _msd_read, _hippocampus_synth),
    # the paper's lung volumes: 1.39 x 1.69 x 1.39 mm, cropped to 128 x 64 x 128
    "lung": DatasetSpec("lung", "lung", (128, 64, 128), (1.39, 1.69, 1.39), 2,
                        "lung layout (<patient>/insp.nii.gz ...)", 41, _lung_holds, Path, _lung_files, _lung_read,
                        _lung_synth),
}


def get(name: str) -> DatasetSpec:
    """The spec registered as ``name``; DataError listing the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DataError(f"unknown dataset {name!r}; expected one of {sorted(DATASETS)}") from None


def detect(root: str | Path) -> DatasetSpec:
    """The spec whose layout ``root`` holds (in registry order); DataError naming ``root`` when none."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder")
    for spec in DATASETS.values():
        if spec.holds(root):
            return spec
    raise DataError(f"{root}: neither the " + " nor the ".join(s.hint for s in DATASETS.values()) + " was found")
