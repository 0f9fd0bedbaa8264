"""Evaluation metrics on integer label volumes and sampling maps (numpy / scipy), following the
Learn2Reg evaluation (Hering et al. 2022, github.com/MDL-UzL/L2R, ``evaluation/``): Dice per label,
HD95 in mm, share of folding voxels and the standard deviation of the log Jacobian determinant.

Undefined cases: Dice of a label absent from both volumes is NaN (left out by ``nanmean``); HD95 is NaN
when the label is absent from both, ``inf`` when it is absent from only one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from regexplain.registration.spatial import jacobian_determinant

#: Learn2Reg clips det J to this range before the log.
LOGJ_CLIP = (1e-9, 1e9)


def _labels_pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction and target label volumes differ in shape: {p.shape} vs {t.shape}")
    return p, t


def dice_per_label(pred, target, labels: Sequence[int]) -> np.ndarray:
    """Dice ``2 |P & T| / (|P| + |T|)`` for each label value (NaN where both are empty).

    Args:
        pred, target: integer label arrays of one shape, e.g. ``(D, H, W)``.
        labels: label values to score (usually the foreground ``1 .. L-1``).
    Returns:
        ``(len(labels),)`` float64.
    """
    p, t = _labels_pair(pred, target)
    out = np.empty(len(labels))
    for i, lab in enumerate(labels):
        pm, tm = p == lab, t == lab
        denom = pm.sum() + tm.sum()
        out[i] = 2.0 * np.logical_and(pm, tm).sum() / denom if denom else np.nan
    return out


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with at least one 6-neighbour outside it (the volume border counts as outside)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred, target, spacing: Sequence[float], label: int) -> float:
    """95th-percentile symmetric Hausdorff distance between the surfaces of ``label``, in mm.

    Surfaces are the boundary voxels of each mask; distances use ``spacing`` (mm per voxel, array axis
    order). As in the DeepMind ``surface-distance`` code used by Learn2Reg, the result is the larger of
    the two directed 95th percentiles. NaN if the label is absent from both, ``inf`` if from one.

    Args:
        pred, target: integer label arrays ``(D, H, W)`` of one shape.
        spacing: ``(3,)`` mm.
    """
    p, t = _labels_pair(pred, target)
    if len(spacing) != p.ndim:
        raise ValueError(f"spacing {tuple(spacing)} does not match a {p.ndim}-D volume")
    pm, tm = p == label, t == label
    if not pm.any() and not tm.any():
        return float("nan")
    if not pm.any() or not tm.any():
        return float("inf")
    ps, ts = _surface(pm), _surface(tm)
    # distance from every voxel to the nearest surface voxel of the other mask
    d_to_t = ndimage.distance_transform_edt(~ts, sampling=spacing)
    d_to_p = ndimage.distance_transform_edt(~ps, sampling=spacing)
    return float(max(np.percentile(d_to_t[ps], 95), np.percentile(d_to_p[ts], 95)))


def _det(phi) -> np.ndarray:
    """det J of voxel sampling map(s) ``(3, D, H, W)`` or ``(B, 3, D, H, W)`` -> ``(B, D, H, W)``."""
    t = torch.as_tensor(np.asarray(phi) if not torch.is_tensor(phi) else phi).detach().double().cpu()
    if t.ndim == 4:
        t = t[None]
    if t.ndim != 5 or t.shape[1] != 3:
        raise ValueError(f"expected a sampling map (3, D, H, W) or (B, 3, D, H, W), got {tuple(t.shape)}")
    return jacobian_determinant(t).numpy()


def folding_fraction(phi) -> float:
    """Share of voxels (0-1, all voxels of all maps) whose raw Jacobian determinant is ``<= 0``.

    Args:
        phi: voxel sampling map(s) ``(3, D, H, W)`` or ``(B, 3, D, H, W)``, numpy or torch.
    """
    return float((_det(phi) <= 0).mean())


def sdlogj(phi, border: int = 2) -> float:
    """Standard deviation of ``log(clip(det J, 1e-9, 1e9))`` (Learn2Reg SDlogJ).

    ``border`` voxels are cropped on every side first, as the Learn2Reg script does, because one-sided
    differences at the border are unreliable. Multiple maps: the std over all their interior voxels.
    """
    det = _det(phi)
    if border:
        if min(det.shape[1:]) <= 2 * border:
            raise ValueError(f"volume {det.shape[1:]} too small to crop a {border}-voxel border")
        det = det[:, border:-border, border:-border, border:-border]
    return float(np.log(np.clip(det, *LOGJ_CLIP)).std())


