"""Register two NIfTI files with a trained model and write the results on the fixed image's grid.

Preprocessing follows training (:func:`regexplain.data.preprocess.preprocess`): volumes of a dataset with
a spacing (the lung's, :mod:`regexplain.data.datasets`) are first resampled to it, then each image is
normalised, one ``base_shape`` window (the
dataset's crop before resizing, see :func:`base_shape`) is cut centred on the volume centre — the same
window for moving and fixed, since no fixed label is given (training centres it on the labels) — and
resized to the model's working shape ``cfg.data.shape``.

The network's map lives on the working grid. It is brought back to the fixed image's own grid so that
the fixed affine describes every output. Every step is a per-axis scaling and shift: an original voxel
``x`` sits at ``r = x * s`` on the resampled grid (``s = (m - 1) / (n - 1)``, 1 without resampling) and at
working coordinate ``w = (r - start) * (work - 1) / (base - 1)``; the working displacement sampled there
(trilinear, border values outside the window) is scaled back by ``(base - 1) / (work - 1) / s``.
Outputs therefore have the fixed image's shape and affine:

* ``warped.nii.gz``: moving intensities as read, resampled (trilinear, border values outside);
* ``warped_label.nii.gz``: the moving label, nearest neighbour (when given);
* ``displacement_voxels.nii.gz``: regexplain's own field ``u``, ``(D, H, W, 3)``, channels last in
  (D, H, W) = (i, j, k) order, in *voxels* of the fixed grid, with ``warped(x) = moving(x + u(x))``;
* ``displacement_itk.nii.gz``: the same transform as ITK / ANTs / Slicer read a displacement field
  (:func:`regexplain.registration.spatial.itk_displacement`): 5-D ``(X, Y, Z, 1, 3)``, intent vector (1007), mm, LPS.
  ``antsApplyTransforms -t displacement_itk.nii.gz`` or SimpleITK's ``DisplacementFieldTransform``
  resample the moving image into ``warped.nii.gz`` (up to interpolation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from regexplain.config import Config
from regexplain.data import datasets
from regexplain.data.nifti import check_image, read_nifti, spacing_from_affine, write_itk_displacement, write_nifti
from regexplain.data.preprocess import crop_window, preprocess, resize_image, shape_for_spacing
from regexplain.errors import CheckpointError, DataError
from regexplain.io import atomic_files, deferred_signals
from regexplain.registration.spatial import (
    displacement_to_map,
    identity_map,
    itk_displacement,
    map_to_displacement,
    warp,
)


def base_shape(cfg: Config) -> tuple[int, int, int]:
    """The crop window applied before resizing in training (the dataset's, e.g. the paper's 64^3)."""
    return tuple(datasets.get(cfg.data.dataset).base_shape)


def resampled_shape(cfg: Config, shape, affine: np.ndarray) -> tuple[int, int, int]:
    """Grid size after training's spacing step (datasets with a spacing; the others keep their grid)."""
    target, spacing = datasets.get(cfg.data.dataset).spacing, spacing_from_affine(affine)
    if target is None or all(abs(a - b) <= 1e-3 for a, b in zip(spacing, target, strict=True)):
        return tuple(shape)
    return shape_for_spacing(shape, spacing, target)


def _read(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    array, affine = read_nifti(path)
    if not np.isfinite(array).all():
        raise DataError(f"{path}: {what} has NaN or Inf values")
    return array, affine


def _read_image(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """An intensity image; a constant one is refused (it would give an all-zero warped image)."""
    array, affine = _read(path, what)
    check_image(array, path, what)
    return array, affine


def _read_label(path: Path) -> np.ndarray:
    """A label of integer values: a fractional one (7.5) is refused, not rounded into another label."""
    label, _ = _read(path, "moving label")
    fractional = label[label != np.round(label)]
    if fractional.size:
        raise DataError(f"{path}: label values must be integers, found {float(fractional[0]):g} "
                        f"({fractional.size} voxels); pass a segmentation, not an intensity image")
    if label.min() < 0:
        raise DataError(f"{path}: negative label value {float(label.min()):g}; labels are 0 (background) "
                        "and positive integers")
    return label


def _label_dtype(label: np.ndarray) -> type:
    """The smallest unsigned integer type holding every value (uint8 unless there are > 255 labels)."""
    top = float(label.max()) if label.size else 0.0
    return np.uint8 if top <= 255 else np.uint16 if top <= 65535 else np.uint32


def _working(image: np.ndarray, rshape, base, shape) -> np.ndarray:
    """Training's preprocessing of one volume, no label: the window is centred on the volume."""
    return preprocess(resize_image(image, rshape), None, base, shape)[0]


def _per_axis(values) -> torch.Tensor:
    return torch.tensor(list(values), dtype=torch.float32).view(1, 3, 1, 1, 1)


def original_displacement(u_work: torch.Tensor, orig_shape, base, work, rshape=None) -> torch.Tensor:
    """Working-grid displacement ``(1, 3, *work)`` -> displacement on the original grid ``(1, 3, *orig)``,
    both in voxels of their own grid (see the module docstring). ``rshape``: the resampled grid size
    (default: no resampling)."""
    rshape = tuple(orig_shape) if rshape is None else tuple(rshape)
    s = _per_axis((m - 1) / max(n - 1, 1) for m, n in zip(rshape, orig_shape, strict=True))
    start = _per_axis(crop_window(m, b, (m - 1) / 2) for m, b in zip(rshape, base, strict=True))
    ratio = _per_axis((w - 1) / (b - 1) for w, b in zip(work, base, strict=True))
    where = (identity_map(orig_shape) * s - start) * ratio
    return warp(u_work.float().cpu(), where, padding_mode="border") / ratio / s


@torch.no_grad()
def register_files(model, cfg: Config, moving: Path, fixed: Path, out: Path, *,
                   moving_label: Path | None = None, device=None, precision: str = "float32"
                   ) -> dict[str, Path]:
    """Register ``moving`` onto ``fixed``; write warped image, warped label (when given) and the
    displacement (voxels and ITK) into ``out`` (see the module docstring). Returns ``{name: path}``.
    ``precision``: see :meth:`RegistrationNet.register`."""
    mov, mov_affine = _read_image(Path(moving), "moving image")
    fix, affine = _read_image(Path(fixed), "fixed image")
    if mov.shape != fix.shape:
        raise DataError(f"{moving}: shape {mov.shape} differs from the fixed image {fixed} {fix.shape}; "
                        "resample both onto one grid first")
    lab = None
    if moving_label is not None:
        lab = _read_label(Path(moving_label))
        if lab.shape != mov.shape:
            raise DataError(f"{moving_label}: label shape {lab.shape} differs from the moving image's "
                            f"{mov.shape}")
    work, base, rshape = tuple(cfg.data.shape), base_shape(cfg), resampled_shape(cfg, fix.shape, affine)
    device = device or next(model.parameters()).device
    m = torch.from_numpy(_working(mov, rshape, base, work))[None, None].to(device)
    f = torch.from_numpy(_working(fix, rshape, base, work))[None, None].to(device)
    phi = model.eval().register(m, f, precision=precision)
    if not torch.isfinite(phi).all():  # checked weights can still overflow; never write NaN volumes
        raise CheckpointError(f"{moving} -> {fixed}: the network returned non-finite values (NaN or Inf); "
                              "nothing was written")
    u = original_displacement(map_to_displacement(phi), mov.shape, base, work, rshape)
    return write_registration(out, mov, u[0], affine, mov_affine, label=lab)


def write_registration(out: Path, moving: np.ndarray, disp: torch.Tensor, fixed_affine: np.ndarray,
                       moving_affine: np.ndarray, *, label: np.ndarray | None = None) -> dict[str, Path]:
    """Warp ``moving`` (and ``label``) by ``disp`` and write the four outputs of :func:`register_files`.

    Args:
        moving: ``(D, H, W)`` moving intensities; label: ``(D, H, W)`` integer label or None.
        disp: ``(3, D, H, W)`` displacement in voxels of the fixed grid, channels (D, H, W).
        fixed_affine, moving_affine: ``(4, 4)`` NIfTI affines (the ITK field maps fixed to moving mm).
    Returns:
        ``{"warped", "displacement_voxels", "displacement_itk"[, "warped_label"]: path}``.
    """
    out = Path(out)
    # the outputs belong together: all of them or none (a full disk, a Ctrl-C), and no folder left empty
    with deferred_signals(), atomic_files(out) as stage:
        names = _write_registration(stage, moving, disp, fixed_affine, moving_affine, label)
    return {k: out / name for k, name in names.items()}


def _write_registration(out: Path, moving, disp, fixed_affine, moving_affine, label) -> dict[str, str]:
    phi = displacement_to_map(disp[None].float())
    written = {"warped": "warped.nii.gz", "displacement_voxels": "displacement_voxels.nii.gz",
               "displacement_itk": "displacement_itk.nii.gz"}
    warped = warp(torch.from_numpy(moving)[None, None], phi)[0, 0].numpy()
    write_nifti(out / written["warped"], warped.astype(np.float32), fixed_affine)
    write_nifti(out / written["displacement_voxels"], disp.permute(1, 2, 3, 0).numpy().astype(np.float32),
                fixed_affine)
    write_itk_displacement(out / written["displacement_itk"], itk_displacement(disp, fixed_affine, moving_affine),
                           fixed_affine)
    if label is not None:
        wl = warp(torch.from_numpy(label.astype(np.float32))[None, None], phi, mode="nearest")
        written["warped_label"] = "warped_label.nii.gz"
        write_nifti(out / written["warped_label"], wl[0, 0].numpy().round().astype(_label_dtype(label)),
                    fixed_affine)
    return written
