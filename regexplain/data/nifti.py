"""NIfTI volumes on disk: reading, atomic writing and the sanity checks every loader shares.

Arrays keep nibabel's axis order ``(i, j, k) = (D, H, W)``; the affine travels beside them unchanged.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from regexplain.errors import DataError
from regexplain.io import atomic_path


@dataclass
class Volume:
    """One NIfTI image (+ optional label) as read from disk."""

    id: str
    image: np.ndarray                      # float32 (D, H, W), raw intensities
    label: np.ndarray | None               # uint8 (D, H, W)
    affine: np.ndarray                     # (4, 4) float64
    group: str                             # subject / patient: pairs never join two volumes of one group
    image_path: Path
    label_path: Path | None
    spacing: tuple[float, float, float]    # mm, from the affine


def spacing_from_affine(affine: np.ndarray) -> tuple[float, float, float]:
    """Voxel size in mm: the norms of the affine's first three columns."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))


def read_nifti(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D NIfTI file. Returns ``(array (D, H, W) float32, affine (4, 4) float64)``.

    Raises :class:`DataError` naming the file when it is missing, corrupt or not 3-D.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        array = np.asarray(img.dataobj, dtype=np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
    except Exception as e:  # nibabel raises many types (EOFError, zlib.error, ImageFileError...)
        raise DataError(f"{path}: cannot read as NIfTI ({type(e).__name__}: {e})") from e
    while array.ndim > 3 and array.shape[-1] == 1:  # (D, H, W, 1) is still a volume
        array = array[..., 0]
    if array.ndim != 3:
        raise DataError(f"{path}: expected a 3-D volume, got shape {tuple(array.shape)}")
    check_affine(affine, path)
    return array, affine


def check_affine(affine: np.ndarray, path: str | Path) -> None:
    """Refuse a voxel-to-world affine that places no voxel: non-finite, or a singular 3 x 3 part (an
    all-zero header gives spacing (0, 0, 0) mm, and every distance, resampling and HD95 from it is void).

    Raises :class:`DataError` naming the file."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise DataError(f"{path}: the header's affine (voxel to world, mm) is not a finite 4 x 4 matrix; fix "
                        "the header's sform / qform")
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    if spacing.min() <= 0 or abs(np.linalg.det(a[:3, :3])) <= 1e-12 * float(np.prod(spacing)):
        shown = ", ".join(f"{v:g}" for v in spacing)
        raise DataError(f"{path}: the header's affine (voxel to world, mm) is singular (spacing {shown} mm"
                        f"{', all zero' if not a[:3, :3].any() else ''}); fix the header's sform / qform")


def write_nifti(path: str | Path, array: np.ndarray, affine: np.ndarray, *, compresslevel: int = 6) -> None:
    """Write ``array`` with ``affine`` to ``path`` atomically (``.nii`` or ``.nii.gz``).

    ``compresslevel`` 1 is several times faster than the default for generated data.
    """
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    _save(path, img, compresslevel)


def _save(path: str | Path, img: nib.Nifti1Image, compresslevel: int = 6) -> None:
    img.header.set_xyzt_units("mm")
    data = img.to_bytes()
    if Path(path).name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=compresslevel, mtime=0)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)


def write_itk_displacement(path: str | Path, field: np.ndarray, affine: np.ndarray) -> None:
    """Write a displacement field the way ITK, ANTs and Slicer read one, atomically.

    Layout (ANTs' warp files): a 5-D NIfTI ``(X, Y, Z, 1, 3)`` float32 with intent ``NIFTI_INTENT_VECTOR``
    (1007), vectors in mm in ITK's LPS convention, stored as they are (ITK converts RAS->LPS only for the
    ``DISPVECT`` intent 1006), on the grid of ``affine``.

    Args:
        field: ``(D, H, W, 3)`` mm, LPS (:func:`regexplain.registration.spatial.itk_displacement`).
        affine: ``(4, 4)`` the fixed image's affine.
    """
    field = np.asarray(field, dtype=np.float32)
    if field.ndim != 4 or field.shape[-1] != 3:
        raise ValueError(f"expected a (D, H, W, 3) field, got {field.shape}")
    img = nib.Nifti1Image(field[:, :, :, None, :], np.asarray(affine, dtype=np.float64))
    img.header.set_intent("vector")
    _save(path, img)


def check_image(image: np.ndarray, path: Path, what: str = "image") -> None:
    """Reject NaN / Inf intensities and a constant image (e.g. all zeros: an empty or failed export).

    A constant image normalises to all zeros: nothing in it can be registered, and a registration onto or
    from it would write a meaningless result without a word."""
    if not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise DataError(f"{path}: {bad} NaN or Inf intensities")
    if image.size and image.min() == image.max():
        raise DataError(f"{path}: constant {what} (every voxel is {float(image.flat[0]):g}); there is nothing "
                        "to register in it (an empty or failed export?)")


def check_label(label: np.ndarray, path: Path, allowed: Iterable[int]) -> np.ndarray:
    """Check integer values in ``allowed`` and a non-empty foreground; return it as uint8."""
    allowed = sorted(set(int(a) for a in allowed))
    if not np.isfinite(label).all() or not np.array_equal(label, np.round(label)):
        raise DataError(f"{path}: label values must be integers")
    values = np.unique(label).astype(np.int64)
    extra = sorted(set(values.tolist()) - set(allowed))
    if extra:
        raise DataError(f"{path}: label values {extra} outside the allowed {allowed}")
    if not (label > 0).any():
        raise DataError(f"{path}: empty label (no foreground voxel)")
    return label.astype(np.uint8)


def check_pair(image: np.ndarray, image_affine: np.ndarray, label: np.ndarray, label_affine: np.ndarray,
               label_path: Path) -> None:
    """The label must sit on the image's grid: same shape and (to 1e-3 mm) the same affine."""
    if image.shape != label.shape:
        raise DataError(f"{label_path}: label shape {label.shape} differs from its image's {image.shape}")
    if not np.allclose(image_affine, label_affine, atol=1e-3):
        raise DataError(f"{label_path}: label affine differs from its image's affine")


def read_volume(id: str, image_path: Path, label_path: Path | None, *, group: str | None = None,
                allowed_labels: Iterable[int] = (0, 1, 2)) -> Volume:
    """Read and check an image and its optional label into a :class:`Volume`."""
    image, affine = read_nifti(image_path)
    check_image(image, image_path)
    label = None
    if label_path is not None:
        raw, label_affine = read_nifti(label_path)
        check_pair(image, affine, raw, label_affine, label_path)
        label = check_label(raw, label_path, allowed_labels)
    return Volume(id=id, image=image, label=label, affine=affine, group=group or id,
                  image_path=Path(image_path), label_path=None if label_path is None else Path(label_path),
                  spacing=spacing_from_affine(affine))
