"""The affine content of a displacement, and of a decomposition's elementary transformations.

:func:`affine_content` splits a displacement's energy exactly into translation, rotation, isotropic scale,
shear and a non-affine residual; :func:`component_affine_content` applies it to ``D(σ_j u_j) - D(0)``, and
:func:`affine_null` to random directions of the same subspace at matched strengths.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from regexplain.analysis.latent import Decomposition, component_displacements, decode_codes
from regexplain.registration import spatial


def _linear_basis() -> tuple[list[np.ndarray], list[str]]:
    """Orthonormal (Frobenius) basis of 3x3 matrices: 3 antisymmetric, 1 isotropic, 5 symmetric traceless."""
    basis, groups = [], []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        m = np.zeros((3, 3))
        m[a, b], m[b, a] = 1.0, -1.0
        basis.append(m / np.sqrt(2))
        groups.append("rotation")
    basis.append(np.eye(3) / np.sqrt(3))
    groups.append("scale")
    for a, b in ((0, 1), (0, 2), (1, 2)):
        m = np.zeros((3, 3))
        m[a, b] = m[b, a] = 1.0
        basis.append(m / np.sqrt(2))
        groups.append("shear")
    basis += [np.diag([1.0, -1.0, 0.0]) / np.sqrt(2), np.diag([1.0, 1.0, -2.0]) / np.sqrt(6)]
    groups += ["shear", "shear"]
    return basis, groups


def affine_content(disp: torch.Tensor | np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
    """Least-squares fit of a displacement to ``A (x - c) + t`` and an orthogonal energy decomposition.

    Over the voxels of ``mask`` (all voxels when ``None``), ``c`` is their centroid. The sum of squared
    displacement splits exactly into translation (``t``), rotation (antisymmetric part of ``A``), isotropic
    scale (``tr(A)/3 I``), shear (symmetric traceless part) and the non-affine residual: centring at ``c``
    makes the translation orthogonal to every linear field, the residual is orthogonal to the affine fit,
    and inside the linear part the groups are orthogonalised in that order (rotation, then scale, then
    shear; a QR factorisation of the design). Rotation and isotropic scale fields are always orthogonal;
    the order only matters for shear when the mask's scatter is anisotropic.

    Args:
        disp: ``(3, D, H, W)`` (or ``(1, 3, D, H, W)``) displacement in voxels, channels (D, H, W).
        mask: boolean ``(D, H, W)``.
    Returns:
        fractions ``translation, rotation, scale, shear, nonaffine`` (summing to 1), ``energy`` (sum of
        squares), ``A`` ``(3, 3)``, ``t`` ``(3,)`` and ``c`` ``(3,)`` as lists.
    """
    u = np.asarray(disp, dtype=np.float64)
    u = u[0] if u.ndim == 5 else u
    if u.ndim != 4 or u.shape[0] != 3:
        raise ValueError(f"displacement must be (3, D, H, W), got {u.shape}")
    sel = np.ones(u.shape[1:], bool) if mask is None else np.asarray(mask, bool)
    if sel.shape != u.shape[1:]:
        raise ValueError(f"mask shape {sel.shape} differs from the displacement's {u.shape[1:]}")
    x = np.stack(np.nonzero(sel), axis=1).astype(np.float64)  # (n, 3)
    c = x.mean(0) if len(x) else np.zeros(3)
    y = x - c
    if len(x) < 4 or np.linalg.matrix_rank(y) < 3:
        raise ValueError("the mask must hold at least four non-coplanar voxels for an affine fit")
    target = u[:, sel].T.reshape(-1)                          # (3n,), point-major
    basis, groups = _linear_basis()
    cols = [np.tile(np.eye(3)[a], len(y)) for a in range(3)]  # translation along each axis
    cols += [(y @ b.T).reshape(-1) for b in basis]
    design = np.stack(cols, axis=1)                           # (3n, 12)
    q, _ = np.linalg.qr(design)
    proj = q.T @ target
    names = ["translation"] * 3 + groups
    energy = float(target @ target)
    parts = {g: 0.0 for g in ("translation", "rotation", "scale", "shear")}
    for name, p in zip(names, proj, strict=True):
        parts[name] += float(p * p)
    parts["nonaffine"] = max(energy - sum(parts.values()), 0.0)
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    a_mat = sum(w * b for w, b in zip(coef[3:], basis, strict=True))
    fractions = {k: (v / energy if energy > 0 else 0.0) for k, v in parts.items()}
    return {**fractions, "energy": energy, "A": np.asarray(a_mat).tolist(), "t": coef[:3].tolist(),
            "c": c.tolist()}


def foreground_mask(labels: torch.Tensor, min_share: float = 0.1) -> np.ndarray | None:
    """Voxels that are foreground in at least ``min_share`` of the volumes ``(N, 1, D, H, W)``; ``None``
    when too few voxels qualify for an affine fit."""
    share = (labels > 0).float().mean(0)[0].cpu().numpy()
    mask = share >= min_share
    return mask if mask.sum() >= 8 else None


def component_affine_content(model, dec: Decomposition, n_components: int | None = None, lam: float = 1.0,
                             mask: np.ndarray | None = None) -> list[dict[str, Any]]:
    """:func:`affine_content` of the first components, decoded at ``lam`` standard deviations and taken
    relative to ``D(0)`` (what the component adds to the model's response to identical inputs)."""
    n = dec.n_components if n_components is None else min(n_components, dec.n_components)
    disp = component_displacements(model, dec, lam, "sigma", range(n), relative_to_zero=True)
    return [affine_content(d, mask) for d in disp]


def affine_score(contents: Sequence[Mapping[str, Any]]) -> float:
    """Mean affine share ``1 - nonaffine`` over components."""
    return float(np.mean([1.0 - c["nonaffine"] for c in contents]))


def affine_null(model, dec: Decomposition, n: int, mask, n_null: int, seed: int) -> list[float]:
    """Affine score of random orthonormal directions of the PCA subspace, decoded at matched strengths
    (direction ``j`` at ``sigma_j``, like component ``j``)."""
    n = min(n, dec.n_components)
    zero = spatial.map_to_displacement(decode_codes(model, np.zeros((1, *dec.latent_shape), np.float32),
                                                    reference=dec.reference))
    return random_affine_scores(dec, n, mask, n_null, seed, lambda dirs: spatial.map_to_displacement(
        decode_codes(model, dirs.reshape(n, *dec.latent_shape), reference=dec.reference)) - zero)


def random_affine_scores(dec: Decomposition, n: int, mask, n_null: int, seed: int,
                          to_displacements: Callable[[np.ndarray], Any]) -> list[float]:
    """Affine scores of ``n_null`` draws of ``n`` random orthonormal directions of ``dec``'s subspace
    (direction ``j`` scaled by ``sigma_j``), each ``(n, F)`` draw turned into ``(n, 3, D, H, W)``
    displacements by ``to_displacements``."""
    rng = np.random.default_rng(seed + 1)
    scores = []
    for _ in range(n_null):
        from regexplain.analysis import disentangle as dz  # scipy + sklearn: seconds to import, only for the null

        rot = dz.random_rotation(dec.n_components, rng)[:, :n]          # (K, n) orthonormal columns
        dirs = (rot.T @ dec.components.astype(np.float64)) * dec.sigma[:n, None]
        scores.append(affine_score([affine_content(d, mask) for d in to_displacements(dirs)]))
    return scores
