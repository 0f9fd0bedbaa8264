"""Spatial operations: the single owner of regexplain's coordinate conventions.

Conventions (everything else in the package goes through this module):

* Volumes are tensors of shape ``(B, C, D, H, W)``. A NIfTI array loaded by nibabel keeps its axis order
  ``(i, j, k) = (D, H, W)``; the affine travels beside the array and is written back unchanged.
* Anatomical axis names follow the NIfTI voxel axes: ``x = i = D`` (axis 0), ``y = j = H`` (axis 1),
  ``z = k = W`` (axis 2). "Rotation about z" is a rotation in the (D, H) plane; "translation along z" moves
  along W. Views: sagittal slices fix axis 0, coronal slices fix axis 1, axial slices fix axis 2
  (:data:`VIEW_AXIS`).
* A *sampling map* ``phi`` says, for every output voxel, where to read the input: ``warped(x) = I(phi(x))``.
  Users see it as a *displacement in voxels* ``u = phi - x``, shape ``(B, 3, D, H, W)``, channels ordered
  ``(D, H, W)``. Internally ``torch.nn.functional.grid_sample`` needs a *grid* of shape ``(B, D, H, W, 3)``
  in normalised coordinates with ``align_corners=True`` and last dimension ordered ``(x, y, z) = (W, H, D)``
  (reversed!). :func:`voxel_to_grid` and :func:`grid_to_voxel` are the only conversions.
* Spatial-gradient parametrisation (Stergios et al. 2018, Estienne et al. 2021): the decoder predicts
  ``g`` of shape ``(B, 3, D, H, W)`` where channel ``a`` is the (positive) derivative of the sampling
  coordinate ``phi_a`` along axis ``a``, in voxels per voxel. :func:`integrate_gradients` gives
  ``phi_a[k] = sum_{j<=k} g_a[j] - 1`` along axis ``a``: ``g = 1`` is the identity, and a positive ``g``
  makes every ``phi_a`` strictly increasing along its axis (no folding along the axes). The first plane
  is free (``phi_a[0] = g_a[0] - 1``), which is what lets the network translate.
* Geometric transforms (rotation about an axis through the volume centre, translation in voxels, isotropic
  scaling about the centre) are *forward* maps of the content, ``y = M (x - c) + c + t``;
  :func:`affine_sampling_map` turns them into the sampling map ``phi(y) = M^{-1} (y - c - t) + c`` that
  moves the content that way. Augmentation and the case study share them.
* *Motion* of the structure: the sampling offset ``u`` says where the warped image *reads*; the anatomy
  at moving point ``p`` *lands* at the ``x`` solving ``x + u(x) = p``. :func:`motion_field` returns
  ``m(p) = x - p`` (the inverse map's displacement, ``m = -u(p + m)``), which pictures draw by default:
  their arrows start on the moving anatomy and point where it goes (:data:`ARROW_MODES`).
* Physical space: a NIfTI affine ``A`` maps voxel ``(i, j, k)`` to millimetres in RAS (x grows towards
  the patient's Right, y Anterior, z Superior). ITK, ANTs and Slicer's transforms work in LPS: the same
  points with x and y negated (:data:`RAS_TO_LPS`). An ITK displacement
  field is a *resampling* transform like ``phi``: a fixed physical point ``p`` reads the moving image at
  ``p + d(p)``, ``d`` in mm (LPS), stored on the fixed image's grid; :func:`itk_displacement` converts a
  voxel displacement into it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

Shape3 = tuple[int, int, int]

#: Axis held fixed by each named view (see module docstring).
VIEW_AXIS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
#: Anatomical axis names -> array axis (D, H, W) = (x, y, z).
AXIS_INDEX: dict[str, int] = {"x": 0, "y": 1, "z": 2}

ALIGN_CORNERS = True

#: What a picture's arrows draw: "motion" (default) the motion of the structure, :func:`motion_field`;
#: "sampling" the sampling offset u(x), ``warped(x) = moving(x + u(x))``. Each with its one-line definition.
ARROW_MODES: dict[str, str] = {
    "motion": "arrows: motion of the structure, m(p) = x - p where x + u(x) = p (where each moving point lands)",
    "sampling": "arrows: sampling offsets u(x), warped(x) = moving(x + u(x)) (where the warped image reads)",
}
#: The letter at the other end of each anatomical axis (RAS letters, as nibabel's aff2axcodes gives them).
OPPOSITE: dict[str, str] = {"R": "L", "L": "R", "A": "P", "P": "A", "S": "I", "I": "S"}

#: RAS (NIfTI, nibabel) -> LPS (ITK, ANTs, Slicer transforms) physical coordinates; its own inverse.
RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0])


def _axis(axis: int | str) -> int:
    if isinstance(axis, str):
        if axis not in AXIS_INDEX:
            raise ValueError(f"unknown axis {axis!r}; expected one of {sorted(AXIS_INDEX)} or 0, 1, 2")
        return AXIS_INDEX[axis]
    if axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1 or 2, got {axis}")
    return int(axis)


def identity_map(shape: Sequence[int], *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Voxel coordinates of every voxel. Returns ``(1, 3, D, H, W)``, channels ``(D, H, W)``."""
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)[None]


def voxel_to_grid(phi: torch.Tensor) -> torch.Tensor:
    """Voxel sampling map ``(B, 3, D, H, W)`` -> ``grid_sample`` grid ``(B, D, H, W, 3)`` (x, y, z) order."""
    sizes = torch.tensor(phi.shape[2:], device=phi.device, dtype=phi.dtype).view(1, 3, 1, 1, 1)
    norm = 2.0 * phi / (sizes - 1).clamp(min=1) - 1.0
    return norm.flip(1).permute(0, 2, 3, 4, 1)


def grid_to_voxel(grid: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`voxel_to_grid`: ``(B, D, H, W, 3)`` normalised -> ``(B, 3, D, H, W)`` voxels."""
    phi = grid.permute(0, 4, 1, 2, 3).flip(1)
    sizes = torch.tensor(phi.shape[2:], device=grid.device, dtype=grid.dtype).view(1, 3, 1, 1, 1)
    return (phi + 1.0) * (sizes - 1) / 2.0


def displacement_to_map(disp: torch.Tensor) -> torch.Tensor:
    """Displacement in voxels ``(B, 3, D, H, W)`` -> sampling map in voxels (same shape)."""
    return disp + identity_map(disp.shape[2:], device=disp.device, dtype=disp.dtype)


def map_to_displacement(phi: torch.Tensor) -> torch.Tensor:
    """Sampling map in voxels ``(B, 3, D, H, W)`` -> displacement in voxels (same shape)."""
    return phi - identity_map(phi.shape[2:], device=phi.device, dtype=phi.dtype)


def integrate_gradients(grads: torch.Tensor) -> torch.Tensor:
    """Cumulative sums of per-axis spatial gradients into a voxel sampling map.

    Args:
        grads: ``(B, 3, D, H, W)``; channel ``a`` is ``d phi_a / d x_a`` in voxels per voxel.
    Returns:
        ``(B, 3, D, H, W)`` voxel sampling map, ``phi_a = cumsum(g_a, axis a) - 1``.
    """
    if grads.ndim != 5 or grads.shape[1] != 3:
        raise ValueError(f"expected gradients of shape (B, 3, D, H, W), got {tuple(grads.shape)}")
    return torch.stack([grads[:, a].cumsum(dim=1 + a) - 1.0 for a in range(3)], dim=1)


def differentiate_map(phi: torch.Tensor) -> torch.Tensor:
    """Per-axis spatial gradients of a voxel sampling map, the inverse of :func:`integrate_gradients`.

    Channel ``a`` is the backward difference of ``phi_a`` along axis ``a``, with ``phi_a[-1] = -1`` before
    the first plane, so ``integrate_gradients(differentiate_map(phi)) == phi`` (to float rounding). For a
    network that predicts displacements (VoxelMorph, MONAI) it gives the gradients that the smoothness term
    of the paper's loss reads.

    Args:
        phi: ``(B, 3, D, H, W)`` voxel sampling map.
    Returns:
        ``(B, 3, D, H, W)``; the identity map gives ones.
    """
    if phi.ndim != 5 or phi.shape[1] != 3:
        raise ValueError(f"expected a sampling map of shape (B, 3, D, H, W), got {tuple(phi.shape)}")
    out = []
    for a in range(3):
        p = phi[:, a] + 1.0
        out.append(torch.cat([p.narrow(a + 1, 0, 1), p.diff(dim=a + 1)], dim=a + 1))
    return torch.stack(out, dim=1)


def warp(image: torch.Tensor, phi: torch.Tensor, *, mode: str = "bilinear",
         padding_mode: str = "border") -> torch.Tensor:
    """Resample ``image`` at the voxel sampling map ``phi``: ``out(x) = image(phi(x))``.

    Args:
        image: ``(B, C, D, H, W)``.
        phi: ``(B, 3, D', H', W')`` voxel coordinates into ``image`` (batch 1 broadcasts).
        mode: ``"bilinear"`` (trilinear in 3-D) or ``"nearest"``.
    Returns:
        ``(B, C, D', H', W')``.
    """
    if image.ndim != 5 or phi.ndim != 5 or phi.shape[1] != 3:
        raise ValueError(f"warp expects image (B,C,D,H,W) and map (B,3,D,H,W); got {tuple(image.shape)}"
                         f" and {tuple(phi.shape)}")
    sizes = torch.tensor(image.shape[2:], device=phi.device, dtype=phi.dtype).view(1, 3, 1, 1, 1)
    grid = (2.0 * phi / (sizes - 1).clamp(min=1) - 1.0).flip(1).permute(0, 2, 3, 4, 1)
    if grid.shape[0] != image.shape[0]:
        grid = grid.expand(image.shape[0], *grid.shape[1:])
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode=padding_mode,
                         align_corners=ALIGN_CORNERS)


def warp_labels(onehot: torch.Tensor, phi: torch.Tensor) -> torch.Tensor:
    """Warp one-hot (or soft) labels ``(B, L, D, H, W)`` linearly, so Dice stays differentiable."""
    return warp(onehot, phi, mode="bilinear", padding_mode="border")


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Integer labels ``(B, 1, D, H, W)`` or ``(B, D, H, W)`` -> float one-hot ``(B, L, D, H, W)``."""
    if labels.ndim == 5:
        labels = labels[:, 0]
    return F.one_hot(labels.long(), num_classes).permute(0, 4, 1, 2, 3).float()


def jacobian_determinant(phi: torch.Tensor) -> torch.Tensor:
    """Determinant of the Jacobian of a voxel sampling map, central differences (one-sided at the
    borders), as ``numpy.gradient`` does in the Learn2Reg evaluation.

    Args:
        phi: ``(B, 3, D, H, W)`` voxel sampling map (use :func:`displacement_to_map` on displacements).
    Returns:
        ``(B, D, H, W)``; 1 for the identity, ``det M`` for an affine map ``M x + t``.
    """
    # one torch.gradient over the three axes for all components, unbound into views (no 3x3 stack):
    # the same elementwise arithmetic as a stacked J, bit for bit, and a training step's Jacobian ~1.06x faster
    dx, dy, dz = (g.unbind(1) for g in torch.gradient(phi, dim=(2, 3, 4)))
    # J[i][j] = d phi_i / d x_j
    (j00, j10, j20), (j01, j11, j21), (j02, j12, j22) = dx, dy, dz
    return (j00 * (j11 * j22 - j12 * j21)
            - j01 * (j10 * j22 - j12 * j20)
            + j02 * (j10 * j21 - j11 * j20))


# --------------------------------------------------------------------------- geometric transforms

def volume_center(shape: Sequence[int]) -> torch.Tensor:
    """Centre of a volume in voxel coordinates, ``(3,)``: ``(n - 1) / 2`` per axis."""
    return torch.tensor([(n - 1) / 2.0 for n in shape], dtype=torch.float64)


def rotation_matrix(angle_deg: float, axis: int | str) -> torch.Tensor:
    """3x3 rotation in voxel (D, H, W) coordinates by ``angle_deg`` about ``axis`` (right-handed on
    (x, y, z) = (D, H, W): about z, +90 deg sends +x to +y)."""
    a = _axis(axis)
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    i, j = [k for k in range(3) if k != a]
    if a == 1:  # keep the right-handed cyclic order (z, x) for rotations about y
        i, j = j, i
    m = torch.eye(3, dtype=torch.float64)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


def affine_matrix(*, rotation: Sequence[float] = (0.0, 0.0, 0.0), scale: float | Sequence[float] = 1.0
                  ) -> torch.Tensor:
    """Linear part ``S R_z R_y R_x`` from rotations in degrees about (x, y, z) and a scale (isotropic or
    per axis). Returns ``(3, 3)`` float64."""
    m = torch.eye(3, dtype=torch.float64)
    for ax, ang in zip((0, 1, 2), rotation, strict=True):
        if ang:
            m = rotation_matrix(ang, ax) @ m
    s = torch.as_tensor(scale, dtype=torch.float64)
    return (torch.diag(s.expand(3)) if s.ndim else s * torch.eye(3, dtype=torch.float64)) @ m


def affine_sampling_map(shape: Sequence[int], matrix: torch.Tensor, translation: Sequence[float] | torch.Tensor
                        = (0.0, 0.0, 0.0), center: Sequence[float] | torch.Tensor | None = None,
                        *, device=None, dtype=torch.float32) -> torch.Tensor:
    """Sampling map that moves the content by the forward map ``y = M (x - c) + c + t``.

    Args:
        shape: ``(D, H, W)``.
        matrix: ``(3, 3)`` or ``(B, 3, 3)`` linear part ``M`` in voxel (D, H, W) coordinates.
        translation: ``(3,)`` or ``(B, 3)`` in voxels, (D, H, W) order.
        center: ``(3,)`` centre ``c``; the volume centre by default.
    Returns:
        ``(B, 3, D, H, W)`` voxel sampling map ``phi(y) = M^{-1} (y - c - t) + c``.
    """
    # Only the 3x3 inverse and the offset are computed in float64 on the host; the dense map is built
    # directly on ``device`` in ``dtype`` (no per-step host -> device copy of a full-size map).
    m = torch.as_tensor(matrix, dtype=torch.float64).cpu()
    m = m[None] if m.ndim == 2 else m
    t = torch.as_tensor(translation, dtype=torch.float64).cpu()
    t = t[None] if t.ndim == 1 else t
    c = volume_center(shape) if center is None else torch.as_tensor(center, dtype=torch.float64).cpu()
    minv = torch.linalg.inv(m)                                           # (B, 3, 3)
    offset = c[None, :] - (minv @ (c[None, :] + t)[..., None])[..., 0]   # (B, 3) = c - M^-1 (c + t)
    y = identity_map(shape, device=device, dtype=dtype).flatten(2)      # (1, 3, N)
    x = minv.to(device=device, dtype=dtype) @ y + offset.to(device=device, dtype=dtype)[..., None]
    return x.reshape(x.shape[0], 3, *shape)


def rotation_map(shape: Sequence[int], angle_deg: float, axis: int | str, **kw) -> torch.Tensor:
    """Sampling map rotating the content by ``angle_deg`` about ``axis`` through the volume centre."""
    return affine_sampling_map(shape, rotation_matrix(angle_deg, axis), **kw)


def translation_map(shape: Sequence[int], shift_vox: Sequence[float], **kw) -> torch.Tensor:
    """Sampling map translating the content by ``shift_vox`` voxels, (D, H, W) order."""
    return affine_sampling_map(shape, torch.eye(3, dtype=torch.float64), shift_vox, **kw)


def scaling_map(shape: Sequence[int], factor: float, **kw) -> torch.Tensor:
    """Sampling map zooming the content by ``factor`` (> 1 enlarges) about the volume centre."""
    if factor <= 0:
        raise ValueError(f"scale factor must be positive, got {factor}")
    return affine_sampling_map(shape, factor * torch.eye(3, dtype=torch.float64), **kw)


def resize(volume: torch.Tensor, shape: Sequence[int], *, mode: str = "trilinear") -> torch.Tensor:
    """Resample ``(B, C, D, H, W)`` to ``shape`` so that corner voxels stay on corner voxels
    (``align_corners=True``, consistent with :func:`warp`). ``mode="nearest"`` for labels."""
    if mode == "nearest":
        phi = identity_map(shape, device=volume.device)
        scale = torch.tensor([(a - 1) / max(b - 1, 1) for a, b in zip(volume.shape[2:], shape, strict=True)],
                             device=volume.device).view(1, 3, 1, 1, 1)
        return warp(volume.float(), phi * scale, mode="nearest").to(volume.dtype)
    return F.interpolate(volume, size=tuple(shape), mode=mode, align_corners=ALIGN_CORNERS)


# --------------------------------------------------------------------------- physical space (ITK)

def itk_displacement(disp: np.ndarray | torch.Tensor, fixed_affine: np.ndarray,
                     moving_affine: np.ndarray | None = None) -> np.ndarray:
    """Voxel displacement on the fixed grid -> ITK displacement field (mm, LPS) on the same grid.

    regexplain samples the moving image at voxel ``x + u(x)`` for fixed voxel ``x``. Voxel ``x`` of the
    fixed image is the RAS point ``A_f x`` (homogeneous), moving voxel ``x + u`` is ``A_m (x + u)``; ITK's
    ``DisplacementFieldTransform`` reads the moving image at ``p + d(p)``, so
    ``d = RAS_TO_LPS (A_m (x + u) - A_f x)``, which is ``RAS_TO_LPS A_f[:3, :3] u`` when both images share
    one grid (``moving_affine`` None). Written as a 5-D vector NIfTI by
    :func:`regexplain.data.nifti.write_itk_displacement`.

    Args:
        disp: ``(3, D, H, W)`` displacement in voxels, channels ``(D, H, W)``.
        fixed_affine: ``(4, 4)`` NIfTI affine of the fixed image (voxel -> RAS mm).
        moving_affine: ``(4, 4)`` affine of the moving image; None: the fixed one.
    Returns:
        ``(D, H, W, 3)`` float64 displacement vectors in mm, LPS components ``(x, y, z)``.
    Raises:
        ValueError: ``disp`` not ``(3, D, H, W)`` or an affine not ``(4, 4)``.
    """
    u = (disp.detach().cpu().double().numpy() if isinstance(disp, torch.Tensor)
         else np.asarray(disp, dtype=np.float64))
    af = np.asarray(fixed_affine, dtype=np.float64)
    am = af if moving_affine is None else np.asarray(moving_affine, dtype=np.float64)
    if u.ndim != 4 or u.shape[0] != 3 or af.shape != (4, 4) or am.shape != (4, 4):
        raise ValueError(f"expected disp (3, D, H, W) and (4, 4) affines, got {u.shape}, {af.shape}, {am.shape}")
    d = np.einsum("ij,jdhw->dhwi", RAS_TO_LPS @ am[:3, :3], u)
    if not np.array_equal(am, af):  # other grid: add where the moving grid puts the same voxel index
        x = np.moveaxis(np.indices(u.shape[1:], dtype=np.float64), 0, -1)   # (D, H, W, 3)
        d += x @ (RAS_TO_LPS @ (am[:3, :3] - af[:3, :3])).T + RAS_TO_LPS @ (am[:3, 3] - af[:3, 3])
    return d


# ------------------------------------------------------------------------------ motion and orientation

def motion_field(disp: torch.Tensor | np.ndarray, iterations: int = 12, *,
                 points: torch.Tensor | np.ndarray | None = None) -> torch.Tensor | np.ndarray:
    """The motion of the structure that a sampling displacement ``u`` causes, in voxels.

    ``warped(x) = moving(x + u(x))`` carries the moving point ``p`` to the ``x`` with ``x + u(x) = p``;
    returns ``m(p) = x - p``, found by the fixed point ``m = -u(p + m)`` (trilinear, border values outside).
    A translation by ``t`` gives exactly ``-t``; for smooth fields it is the inverse map's displacement,
    to the iteration's tolerance.

    Args:
        disp: ``(3, D, H, W)`` voxels, channels (D, H, W); numpy or torch.
        points: ``(3, ...)`` voxel coordinates where the motion is wanted (e.g. one slice's); default every
            voxel of the grid.
    Returns:
        ``(3, D, H, W)`` (or ``(3, ...)`` like ``points``), numpy or torch like ``disp``.
    """
    was_numpy = not isinstance(disp, torch.Tensor)
    u = torch.as_tensor(np.asarray(disp) if was_numpy else disp, dtype=torch.float32)
    if u.ndim != 4 or u.shape[0] != 3:
        raise ValueError(f"motion_field expects a (3, D, H, W) displacement, got {tuple(u.shape)}")
    if points is None:
        p = identity_map(u.shape[1:], device=u.device, dtype=u.dtype)
    else:
        p = torch.as_tensor(np.asarray(points), dtype=u.dtype)
        out_shape = p.shape[1:]
        p = p.reshape(1, 3, -1, 1, 1)
    m = -warp(u[None], p)
    for _ in range(iterations - 1):
        m = -warp(u[None], p + m)
    m = m[0] if points is None else m[0].reshape(3, *out_shape)
    return m.numpy() if was_numpy else m


def axis_codes(affine: np.ndarray) -> tuple[str, str, str]:
    """The anatomical direction (RAS letters) each array axis grows towards, from a NIfTI affine, e.g.
    ``("R", "A", "S")`` for nibabel's canonical orientation."""
    from nibabel.orientations import aff2axcodes

    return tuple(str(c) for c in aff2axcodes(np.asarray(affine, dtype=float)))  # type: ignore[return-value]


def view_edge_letters(codes: Sequence[str], view: str) -> dict[str, str]:
    """Orientation letters at the edges of a :data:`VIEW_AXIS` slice drawn with row 0 at the top:
    ``{"top", "bottom", "left", "right"}``. Rows follow the first remaining array axis, columns the second."""
    rows, cols = (a for a in range(3) if a != VIEW_AXIS[view])
    return {"top": OPPOSITE[codes[rows]], "bottom": codes[rows], "left": OPPOSITE[codes[cols]],
            "right": codes[cols]}
