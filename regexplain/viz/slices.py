"""2-D views of a 3-D registration: slice, contours before/after, in-plane displacement arrows.

Pure and matplotlib-only: every paper figure, the ipywidgets explorer and the app draw through
:func:`plot_slice_view`, so one picture means the same thing everywhere.

Orientation: a view fixes one array axis (:data:`regexplain.registration.spatial.VIEW_AXIS`); the two remaining axes,
in increasing order, become (row, col) of the 2-D slice, drawn with ``imshow``'s default origin (row 0 at
the top); orientation letters (S/I, A/P, L/R) at the panel's edges come from the image affine
(:func:`regexplain.registration.spatial.view_edge_letters`). Arrows show, by default, the *motion* of the structure
(:func:`regexplain.registration.spatial.motion_field`: they start on the moving anatomy and point where it lands, red
contour to gold); ``arrows="sampling"`` shows the sampling offset ``u = phi - x`` in voxels instead
(``warped(x) = moving(x + u(x))``: an arrow points to where the warped image reads its intensity from).
:data:`regexplain.registration.spatial.ARROW_MODES` words each for captions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.colors import LinearSegmentedColormap

if TYPE_CHECKING:  # matplotlib.axes costs a second to import; the explorer's raster pictures never need it
    from matplotlib.axes import Axes

from regexplain.registration.spatial import (
    ARROW_MODES,
    VIEW_AXIS,
    displacement_to_map,
    motion_field,
    view_edge_letters,
    warp,
)

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
        arrows: ``(2, h, w)`` in-plane arrows in voxels, (row, col) components, as ``arrow_mode`` says.
        norm: ``(h, w)`` full 3-D norm of the drawn field in voxels (colours the arrows).
        view: ``"sagittal"``, ``"coronal"`` or ``"axial"``.
        index: slice index along the fixed axis.
        arrow_mode: ``"motion"`` or ``"sampling"`` (:data:`regexplain.registration.spatial.ARROW_MODES`).
        edges: orientation letters ``{"top", "bottom", "left", "right"}``, or None when unknown.
    """
    image: np.ndarray
    moving_label: np.ndarray
    warped_label: np.ndarray
    arrows: np.ndarray
    norm: np.ndarray
    view: str
    index: int
    arrow_mode: str = "motion"
    edges: dict[str, str] | None = None

    @property
    def arrow_caption(self) -> str:
        return ARROW_MODES[self.arrow_mode]


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


def slice_view(image, label, disp, view: str, index: int | None = None, *, arrows: str = "motion",
               axcodes=None, motion: np.ndarray | None = None) -> SliceView:
    """Cut one slice out of a 3-D registration.

    Args:
        image: ``(D, H, W)`` moving image (numpy or torch; leading singleton axes are dropped).
        label: ``(D, H, W)`` integer labels of the moving image.
        disp: ``(3, D, H, W)`` sampling displacement ``u`` in voxels, channels (D, H, W).
        view: ``"sagittal"`` (fixes axis 0), ``"coronal"`` (axis 1) or ``"axial"`` (axis 2).
        index: slice along the fixed axis; by default through the label centroid.
        arrows: ``"motion"`` (default: where the structure goes) or ``"sampling"`` (``u`` itself).
        axcodes: the image's axis codes (:func:`regexplain.registration.spatial.axis_codes`) for orientation letters.
        motion: ``motion_field(disp)`` when the caller already has it (one per field, shared by views).
    """
    if arrows not in ARROW_MODES:
        raise ValueError(f"unknown arrows {arrows!r}; expected one of {sorted(ARROW_MODES)}")
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
    if arrows == "sampling":
        drawn = u[:, cut[0], cut[1], cut[2]]
    elif motion is not None:
        drawn = np.asarray(motion)[:, cut[0], cut[1], cut[2]]
    else:  # the motion at this slice's points only: a 2-D fixed point, not the whole volume's
        grid = np.stack(np.meshgrid(*[np.arange(n, dtype=np.float32) for n in img.shape], indexing="ij"))
        drawn = motion_field(u, points=grid[:, cut[0], cut[1], cut[2]])
    return SliceView(
        image=img[cut],
        moving_label=lab[cut],
        warped_label=warped[cut],
        arrows=np.stack([drawn[a] for a in in_plane]),
        norm=np.linalg.norm(drawn, axis=0),
        view=view,
        index=idx,
        arrow_mode=arrows,
        edges=None if axcodes is None else view_edge_letters(axcodes, view),
    )


def contour_xy(label: np.ndarray) -> tuple[list[float | None], list[float | None]]:
    """Boundary lines of every foreground label as x (col), y (row) lists separated by ``None`` (contourpy,
    matplotlib's own contour engine; the plotly page and the explorer's raster pictures draw them)."""
    import contourpy

    xs: list[float | None] = []
    ys: list[float | None] = []
    z = np.asarray(label, dtype=float)
    if z.max() <= 0:
        return xs, ys
    gen = contourpy.contour_generator(z=z)
    for level in np.arange(int(z.max())) + 0.5:
        for line in gen.lines(level):
            xs += line[:, 0].tolist() + [None]
            ys += line[:, 1].tolist() + [None]
    return xs, ys


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
    if sv.edges:
        _orientation_letters(ax, sv.edges)
    if title is not None:
        ax.set_title(title, fontsize=11)
    return ax


def _orientation_letters(ax: Axes, edges: dict[str, str]) -> None:
    import matplotlib.patheffects as pe

    outline = [pe.withStroke(linewidth=2.5, foreground="black")]
    for where, (x, y, ha, va) in {"top": (0.5, 0.99, "center", "top"), "bottom": (0.5, 0.01, "center", "bottom"),
                                  "left": (0.01, 0.5, "left", "center"),
                                  "right": (0.99, 0.5, "right", "center")}.items():
        ax.text(x, y, edges[where], transform=ax.transAxes, ha=ha, va=va, color="#9fe0ff", fontsize=11,
                fontweight="bold", path_effects=outline)


#: The longest arrow of a picture spans this share of the arrow spacing: arrows never overlap their
#: neighbours, and the scale factor is printed beside the colour bar.
ARROW_FILL = 0.9


def auto_arrow_scale(longest: float, step: int) -> float:
    """Arrow length multiplier: the longest arrow spans :data:`ARROW_FILL` of the spacing ``step``
    (shrunk or stretched; the default of every arrow drawing, printed beside the colour bar)."""
    return ARROW_FILL * step / max(longest, 1e-6)


def arrow_grid(shape: tuple[int, int], step: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of the arrows' tails: one every ``step`` voxels, the grid centred on the slice."""
    step = max(int(step), 1)
    r0, c0 = (shape[0] - 1) % step // 2, (shape[1] - 1) % step // 2
    return np.mgrid[r0:shape[0]:step, c0:shape[1]:step]


def _arrows(ax: Axes, sv: SliceView, step: int, scale: float | None, vmax: float | None) -> None:
    step = max(int(step), 1)
    rows, cols = arrow_grid(sv.image.shape, step)
    du, dv = sv.arrows[0][rows, cols], sv.arrows[1][rows, cols]
    norm = sv.norm[rows, cols]
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
              scale_units="xy", scale=1.0 / scale, width=0.008, headwidth=4.0, headlength=4.5,
              headaxislength=4.0, minlength=0.5)
