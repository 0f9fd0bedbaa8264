"""The training augmentation: random flip, 90-degree turn, rotation, translation and zoom, as torch ops.

The policy in use is :func:`pair_augmentation_maps` (the authors': one transform per *pair*, see
:class:`regexplain.config.AugmentConfig`). Each random affine sampling map (built with
:func:`regexplain.registration.spatial.affine_sampling_map`, a flip being ``-1`` on the matrix diagonal about the volume
centre) is applied to the image (trilinear) and to its label (nearest) alike, so they stay aligned.
Random numbers come from a CPU ``torch.Generator`` (same seed, same transforms on any device); the
warping runs on the tensors' device.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from regexplain.config import AugmentConfig
from regexplain.registration import spatial


def _uniform(n: int, k: int, half: float, generator) -> torch.Tensor:
    return (torch.rand((n, k), generator=generator, dtype=torch.float64) * 2 - 1) * half


def _quarter_turns(n: int, shape: Sequence[int] | None, generator) -> torch.Tensor:
    """``(n, 3, 3)`` turns by ``k * 90`` degrees, ``k`` in {1, 2, 3, 4}, in a random plane whose two sizes
    are equal (so the turned volume keeps its shape; the authors' ``RandomRotation90`` on cubic crops)."""
    planes = [(a, b) for a, b in ((0, 1), (0, 2), (1, 2)) if shape is None or shape[a] == shape[b]]
    k = torch.randint(1, 5, (n,), generator=generator)
    which = torch.randint(0, max(len(planes), 1), (n,), generator=generator)
    out = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
    for i in range(n):
        if planes:
            a, b = planes[int(which[i])]
            c, s = [(0, 1), (-1, 0), (0, -1), (1, 0)][int(k[i]) % 4]   # cos, sin of k * 90 degrees
            out[i, a, a], out[i, a, b], out[i, b, a], out[i, b, b] = c, -s, s, c
    return out


def random_affine_params(n: int, cfg: AugmentConfig, generator: torch.Generator | None = None,
                         shape: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` transforms. Returns matrices ``(n, 3, 3)`` and translations ``(n, 3)`` in voxels, float64.

    ``shape`` ``(D, H, W)`` limits the 90-degree turns to planes of equal sizes (any plane when ``None``).
    A volume is left untouched (identity) with probability ``1 - cfg.prob``.
    """
    flips = torch.where(torch.rand((n, 3), generator=generator) < cfg.flip_prob, -1.0, 1.0).double()
    angles = _uniform(n, 3, cfg.rotation_deg, generator)
    if cfg.one_axis_rotation:   # the authors zero two of the three angles
        axis = torch.randint(0, 3, (n,), generator=generator)
        angles = angles * torch.nn.functional.one_hot(axis, 3).double()
    zoom = 1 + _uniform(n, 1, cfg.zoom, generator)[:, 0]
    shift = _uniform(n, 3, cfg.translation_vox, generator)
    keep = torch.rand(n, generator=generator) < cfg.prob
    eye = torch.eye(3, dtype=torch.float64).expand(n, 3, 3)
    turns = _quarter_turns(n, shape, generator) if cfg.rot90 else eye
    mats = torch.stack([spatial.affine_matrix(rotation=a.tolist(), scale=float(z)) @ q @ torch.diag(f)
                        for a, z, f, q in zip(angles, zoom, flips, turns, strict=True)])
    mats[~keep] = torch.eye(3, dtype=torch.float64)
    shift[~keep] = 0.0
    return mats, shift


def random_affine_maps(n: int, shape: Sequence[int], cfg: AugmentConfig,
                       generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """``n`` random voxel sampling maps ``(n, 3, D, H, W)`` (flip, rotation, translation, zoom)."""
    mats, shift = random_affine_params(n, cfg, generator, shape)
    return spatial.affine_sampling_map(shape, mats, shift, device=device)


def pair_augmentation_maps(batch_size: int, shape: Sequence[int], cfg: AugmentConfig,
                           generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """Sampling maps ``(2B, 3, D, H, W)`` for B moving volumes then their B fixed volumes.

    ``cfg.per_pair`` (default, the authors'): one transform per pair, the same for both of its volumes, so
    augmentation changes the pair's pose, not the transformation that relates its two volumes. Otherwise
    rotation, translation and zoom are drawn per volume and only the flips per pair: a monotone
    spatial-gradient map cannot reverse an axis, so two differently mirrored volumes could not be registered.
    """
    if cfg.per_pair:
        return random_affine_maps(batch_size, shape, cfg, generator, device).repeat(2, 1, 1, 1, 1)
    no_flip = dataclasses.replace(cfg, flip_prob=0.0)
    mats, shift = random_affine_params(2 * batch_size, no_flip, generator, shape)
    flips = torch.where(torch.rand((batch_size, 3), generator=generator) < cfg.flip_prob, -1.0, 1.0).double()
    mats = mats @ torch.diag_embed(torch.cat([flips, flips]))
    return spatial.affine_sampling_map(shape, mats, shift, device=device)


def apply_maps(phi: torch.Tensor, images: torch.Tensor, labels: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Warp images ``(B, C, D, H, W)`` (trilinear) and integer labels ``(B, 1, D, H, W)`` (nearest) with
    the same maps ``(B, 3, D, H, W)``; labels keep their dtype."""
    phi = phi.to(images.device)
    out = spatial.warp(images, phi, mode="bilinear", padding_mode="zeros")
    if labels is None:
        return out, None
    lab = spatial.warp(labels.float(), phi, mode="nearest", padding_mode="zeros")
    return out, lab.round().to(labels.dtype)


