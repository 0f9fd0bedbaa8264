"""The paper's preprocessing (section 4): N(0, 1) standardisation, clip to [-5, 5], min-max to [0, 1];
crop / pad to the working shape around the labelled structure; resampling to a spacing or a shape.

Pure functions on numpy arrays ``(D, H, W)``; resampling goes through :func:`regexplain.registration.spatial.resize`
so that it shares the package's ``align_corners=True`` convention.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from regexplain.registration import spatial

CLIP = 5.0


def normalize(image: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """Standardise to mean 0 / sd 1, clip to ``[-clip, clip]``, then min-max to ``[0, 1]``.

    A constant image becomes all zeros. Returns float32 of the same shape.
    """
    x = np.asarray(image, dtype=np.float64)
    sd = x.std()
    x = (x - x.mean()) / sd if sd > 0 else np.zeros_like(x)
    x = np.clip(x, -clip, clip)
    lo, hi = x.min(), x.max()
    x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return x.astype(np.float32)


def label_center(label: np.ndarray | None, shape: Sequence[int]) -> tuple[float, float, float]:
    """Centre of the bounding box of the foreground; the volume centre when there is none."""
    if label is None or not (label > 0).any():
        return tuple((n - 1) / 2 for n in shape)
    idx = np.nonzero(label > 0)
    return tuple((float(i.min()) + float(i.max())) / 2 for i in idx)


def crop_window(size: int, target: int, center: float) -> int:
    """Start index of a ``target``-long window centred on ``center`` that stays inside ``[0, size)``
    when it fits (negative start = padding before)."""
    start = int(round(center - (target - 1) / 2))
    if target <= size:
        return min(max(start, 0), size - target)
    return -((target - size) // 2)  # smaller than the window: centre the volume in it


def crop_or_pad(array: np.ndarray, shape: Sequence[int], center: Sequence[float] | None = None,
                fill: float = 0.0) -> np.ndarray:
    """Cut (or pad with ``fill``) a ``shape`` window centred on ``center`` (the volume centre by default).

    Args:
        array: ``(D, H, W)``.
        shape: target ``(D', H', W')``.
        center: voxel coordinates of the window's centre.
    Returns:
        ``(D', H', W')`` array of ``array``'s dtype.
    """
    center = center if center is not None else [(n - 1) / 2 for n in array.shape]
    out = np.full(tuple(shape), fill, dtype=array.dtype)
    src, dst = [], []
    for n, t, c in zip(array.shape, shape, center, strict=True):
        start = crop_window(n, t, c)
        lo, hi = max(start, 0), min(start + t, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = array[tuple(src)]
    return out


def crop_pair(image: np.ndarray, label: np.ndarray | None, shape: Sequence[int]
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop / pad image and label with one window centred on the labelled structure.

    Pad the (already normalised) image with its minimum, the label with background.
    """
    c = label_center(label, image.shape)
    img = crop_or_pad(image, shape, c, fill=float(image.min()))
    lab = None if label is None else crop_or_pad(label, shape, c, fill=0)
    return img, lab


def resize_image(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Trilinear resampling of ``(D, H, W)`` to ``shape`` (corners kept on corners)."""
    if tuple(image.shape) == tuple(shape):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None]
    return spatial.resize(t, shape).numpy()[0, 0]


def resize_label(label: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resampling of an integer label ``(D, H, W)`` to ``shape``."""
    if tuple(label.shape) == tuple(shape):
        return label
    t = torch.from_numpy(np.ascontiguousarray(label, dtype=np.float32))[None, None]
    return spatial.resize(t, shape, mode="nearest").numpy()[0, 0].round().astype(label.dtype)


def shape_for_spacing(shape: Sequence[int], spacing: Sequence[float], new_spacing: Sequence[float]
                      ) -> tuple[int, int, int]:
    """Grid size that covers the same extent at ``new_spacing`` (corner to corner, align_corners)."""
    return tuple(max(2, int(round((n - 1) * s / t)) + 1) for n, s, t in zip(shape, spacing, new_spacing,
                                                                             strict=True))


def resample_to_spacing(image: np.ndarray, label: np.ndarray | None, affine: np.ndarray,
                        new_spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Resample image (trilinear) and label (nearest) to about ``new_spacing`` mm.

    Returns ``(image, label, affine)``; the new affine keeps the first voxel's position and the axes'
    directions, with the exact spacing the integer grid gives.
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    shape = shape_for_spacing(image.shape, spacing, new_spacing)
    exact = np.array([(n - 1) * s / (m - 1) for n, s, m in zip(image.shape, spacing, shape, strict=True)])
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] / spacing * exact
    img = resize_image(image, shape)
    lab = None if label is None else resize_label(label, shape)
    return img, lab, new_affine


def working_spacing(spacing: Sequence[float], base_shape: Sequence[int], shape: Sequence[int]
                    ) -> tuple[float, float, float]:
    """Voxel size after resizing a ``base_shape`` grid of ``spacing`` mm to ``shape`` (align_corners)."""
    return tuple(float(s * (b - 1) / max(n - 1, 1))
                 for s, b, n in zip(spacing, base_shape, shape, strict=True))


def to_base(image: np.ndarray, label: np.ndarray | None, base_shape: Sequence[int]
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """Step 1 of :func:`preprocess`: normalise, then cut / pad the ``base_shape`` window around the label
    (around the volume centre without one, as ``register`` does)."""
    return crop_pair(normalize(image), label, base_shape)


def to_working(images: torch.Tensor, labels: torch.Tensor | None, shape: Sequence[int]
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step 2 of :func:`preprocess`, batched: images ``(N, 1, *base)`` trilinear to ``(N, 1, *shape)``
    clamped to [0, 1], labels ``(N, 1, *base)`` nearest, as uint8."""
    if tuple(images.shape[2:]) == tuple(shape):
        return images, None if labels is None else labels.to(torch.uint8)
    images = spatial.resize(images.float(), shape).clamp(0, 1)
    if labels is not None:
        labels = spatial.resize(labels.float(), shape, mode="nearest").round().to(torch.uint8)
    return images, labels


def preprocess(image: np.ndarray, label: np.ndarray | None, base_shape: Sequence[int],
               shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray | None]:
    """The one preprocessing path of training data and ``register``: :func:`to_base`, then
    :func:`to_working` (training runs the same two steps over chunks of volumes).

    Args:
        image: ``(D, H, W)`` raw intensities, already at the dataset's spacing.
        label: ``(D, H, W)`` integer label, or ``None`` (the window is then centred on the volume).
    Returns:
        image float32 in [0, 1] and label (uint8, or ``None``), both of shape ``shape``.
    """
    img, lab = to_base(image, label, base_shape)
    t_lab = None if lab is None else torch.from_numpy(np.ascontiguousarray(lab, dtype=np.uint8))[None, None]
    img, t_lab = to_working(torch.from_numpy(img)[None, None], t_lab, shape)
    return img[0, 0].numpy(), None if t_lab is None else t_lab[0, 0].numpy()
