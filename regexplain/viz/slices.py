"""2-D views of a 3-D registration: slice, contours before/after, in-plane displacement arrows.

Pure and matplotlib-only: every paper figure, the ipywidgets explorer and the app draw through
:func:`plot_slice_view`, so one picture means the same thing everywhere.

Orientation: a view fixes one array axis (:data:`regexplain.spatial.VIEW_AXIS`); the two remaining axes,
in increasing order, become (row, col) of the 2-D slice, drawn with ``imshow``'s default origin (row 0 at
the top). Arrows are the displacement ``u = phi - x`` in voxels (``warped(x) = moving(x + u(x))``), so an
arrow points to where the warped image reads its intensity from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.colors import LinearSegmentedColormap

from regexplain.spatial import VIEW_AXIS, displacement_to_map, warp

#: Displacement-norm colours: dark red = smallest, white = largest (paper Fig. 2).
ARROW_CMAP = LinearSegmentedColormap.from_list("regexplain_red_white", ["#7a0000", "#ff2a2a", "#ffb0a0",
                                                                        "#ffffff"])
MOVING_COLOR = "red"
WARPED_COLOR = "gold"


@dataclass
class SliceView:
    """One 2-D slice of a registration, ready to draw.

    Attributes:
        image: ``(h, w)`` moving-image intensities.
        moving_label: ``(h, w)`` integer labels of the moving image.
        warped_label: ``(h, w)`` labels after warping by the displacement.
        arrows: ``(2, h, w)`` in-plane displacement in voxels, (row, col) components.
        norm: ``(h, w)`` full 3-D displacement norm in voxels (colours the arrows).
        view: ``"sagittal"``, ``"coronal"`` or ``"axial"``.
        index: slice index along the fixed axis.
    """
    image: np.ndarray
    moving_label: np.ndarray
    warped_label: np.ndarray
    arrows: np.ndarray
    norm: np.ndarray
    view: str
    index: int


def _as_numpy(x, name: str, ndim: int) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = np.squeeze(arr) if arr.ndim > ndim else arr
    if arr.ndim != ndim:
        raise ValueError(f"{name}: expected {ndim} dimensions, got shape {arr.shape}")
    return arr


def warp_label(label: np.ndarray, disp: np.ndarray) -> np.ndarray:
    """Warp integer labels ``(D, H, W)`` by a voxel displacement ``(3, D, H, W)`` (nearest neighbour)."""
    lab = torch.as_tensor(np.ascontiguousarray(label), dtype=torch.float32)[None, None]
    phi = displacement_to_map(torch.as_tensor(np.ascontiguousarray(disp), dtype=torch.float32)[None])
    return warp(lab, phi, mode="nearest")[0, 0].numpy().round().astype(label.dtype)


def default_index(label: np.ndarray, axis: int) -> int:
    """The slice with the most labelled voxels (the one nearest the centroid among equals), or the middle
    slice without labels. Not the centroid itself: two lungs' centroid lies between them, off the structure."""
    lab = np.asarray(label) > 0
    area = lab.sum(axis=tuple(a for a in range(lab.ndim) if a != axis))
    if not area.any():
        return label.shape[axis] // 2
    centroid = float(np.nonzero(lab)[axis].mean())
    best = np.flatnonzero(area == area.max())
    return int(best[np.argmin(np.abs(best - centroid))])


def slice_view(image, label, disp, view: str, index: int | None = None) -> SliceView:
    """Cut one slice out of a 3-D registration.

    Args:
        image: ``(D, H, W)`` moving image (numpy or torch; leading singleton axes are dropped).
        label: ``(D, H, W)`` integer labels of the moving image.
        disp: ``(3, D, H, W)`` displacement in voxels, channels (D, H, W).
        view: ``"sagittal"`` (fixes axis 0), ``"coronal"`` (axis 1) or ``"axial"`` (axis 2).
        index: slice along the fixed axis; by default through the label centroid.
    """
    if view not in VIEW_AXIS:
        raise ValueError(f"unknown view {view!r}; expected one of {sorted(VIEW_AXIS)}")
    img = _as_numpy(image, "image", 3).astype(np.float32)
    lab = _as_numpy(label, "label", 3).astype(np.int64)
    u = _as_numpy(disp, "disp", 4).astype(np.float32)
    if img.shape != lab.shape or u.shape != (3, *img.shape):
        raise ValueError(f"shapes disagree: image {img.shape}, label {lab.shape}, disp {u.shape}")
    axis = VIEW_AXIS[view]
    idx = default_index(lab, axis) if index is None else int(index)
    if not 0 <= idx < img.shape[axis]:
        raise ValueError(f"{view} index {idx} outside [0, {img.shape[axis]})")
    warped = warp_label(lab, u)
    in_plane = [a for a in range(3) if a != axis]
    cut = [slice(None)] * 3
    cut[axis] = idx
    cut = tuple(cut)
    return SliceView(
        image=img[cut],
        moving_label=lab[cut],
        warped_label=warped[cut],
        arrows=np.stack([u[a][cut] for a in in_plane]),
        norm=np.linalg.norm(u, axis=0)[cut],
        view=view,
        index=idx,
    )


def _contour(ax: Axes, label: np.ndarray, color: str, lw: float) -> None:
    levels = [v + 0.5 for v in range(int(label.max()))]
    if levels:  # an empty slice has nothing to outline
        ax.contour(label.astype(float), levels=levels, colors=color, linewidths=lw)


def plot_slice_view(ax: Axes, sv: SliceView, *, arrow_step: int = 3, show_arrows: bool = True,
                    title: str | None = None, arrow_scale: float | None = None, vmax_norm: float | None = None,
                    linewidth: float = 1.2) -> Axes:
    """Draw a :class:`SliceView`: grey image, moving contour red, warped contour gold, arrows by norm.

    Args:
        arrow_step: draw one arrow every ``arrow_step`` voxels.
        arrow_scale: arrow length multiplier (1 = true length in voxels); by default small fields are
            stretched so the longest arrow spans about ``arrow_step`` voxels, which keeps them visible.
        vmax_norm: norm mapped to white; share it across panels to compare magnitudes.
    """
    ax.imshow(sv.image, cmap="gray", interpolation="nearest")
    _contour(ax, sv.moving_label, MOVING_COLOR, linewidth)
    _contour(ax, sv.warped_label, WARPED_COLOR, linewidth)
    if show_arrows:
        _arrows(ax, sv, arrow_step, arrow_scale, vmax_norm)
    ax.set_xlim(-0.5, sv.image.shape[1] - 0.5)
    ax.set_ylim(sv.image.shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    return ax


def auto_arrow_scale(longest: float, step: int) -> float:
    """Arrow length multiplier: true length, unless the longest arrow is under ``step`` voxels, in which
    case small fields are stretched so it spans ``step`` (the default of every arrow drawing)."""
    return 1.0 if longest >= step else step / max(longest, 1e-6)


def _arrows(ax: Axes, sv: SliceView, step: int, scale: float | None, vmax: float | None) -> None:
    step = max(int(step), 1)
    rows, cols = np.mgrid[0:sv.image.shape[0]:step, 0:sv.image.shape[1]:step]
    du, dv = sv.arrows[0][::step, ::step], sv.arrows[1][::step, ::step]
    norm = sv.norm[::step, ::step]
    if scale is None:
        scale = auto_arrow_scale(float(np.hypot(du, dv).max()) if du.size else 0.0, step)
    vmax = float(sv.norm.max()) if vmax is None else vmax
    # quiver draws a zero-length arrow as a dot: an identity (λ = 0) must show no arrow at all
    keep = (du != 0) | (dv != 0)
    rows, cols, du, dv, norm = rows[keep], cols[keep], du[keep], dv[keep], norm[keep]
    if not du.size:
        return
    # quiver's own scale divides: 1/scale lengthens; 'xy' keeps (row, col) directions right on a flipped y
    ax.quiver(cols, rows, dv, du, norm, cmap=ARROW_CMAP, clim=(0.0, max(vmax, 1e-6)), angles="xy",
              scale_units="xy", scale=1.0 / scale, width=0.006, headwidth=3.5)
