"""2-D views of a 3-D registration: slice, contours before/after, and the field drawn three ways: arrows, a
warped grid, or a Jacobian-determinant map.

Pure and matplotlib-only: every paper figure, the ipywidgets explorer, the app, the plotly page and
``regexplain register`` draw :class:`SliceView` s, so one picture means the same thing everywhere.

Orientation: :func:`slice_view` turns every slice into picture order (row 0 at the top) through
:func:`regexplain.registration.spatial.view_orientation`, from the image's axis codes (its affine): sagittal
and coronal slices with superior up, axial slices with anterior up, sagittal with anterior on the left, the
patient's right on the left (radiological, the default) or on the right (neurological); the arrows' components
are permuted and negated with the pixels, and the orientation letters come from the same place.
:func:`orientation_caption` says it on the picture. Arrows show, by default, the *motion* of the structure
(:func:`regexplain.registration.spatial.motion_field`: they start on the moving anatomy and point where it lands,
red contour to gold); ``arrows="sampling"`` shows the sampling offset ``u = phi - x`` in voxels instead
(``warped(x) = moving(x + u(x))``, fixed -> moving: an arrow points to where the warped image reads). The
warped grid (:func:`grid_polylines`) and the Jacobian map (:func:`jacobian_rgb`) draw the same field in the same
direction; :data:`PICTURES` and :func:`picture_caption` word each for captions.
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
    DEFAULT_LR,
    GRID_MODES,
    JACOBIAN_MODES,
    LR_CONVENTIONS,
    VIEWS,
    displacement_to_map,
    motion_field,
    motion_jacobian,
    sampling_jacobian,
    view_orientation,
    warp,
)

#: Displacement-norm colours: dark red = smallest, white = largest (paper Fig. 2).
ARROW_CMAP = LinearSegmentedColormap.from_list("regexplain_red_white", ["#7a0000", "#ff2a2a", "#ffb0a0",
                                                                        "#ffffff"])
MOVING_COLOR = "red"
WARPED_COLOR = "gold"
#: Warped-grid lines and Jacobian colours: a diverging map, white at det = 1, blue below (the neighbourhood
#: shrinks), red above (it grows), on a log scale between 1/limit and limit; folding (det <= 0) in green.
GRID_COLOR = "#40c8ff"
JACOBIAN_CMAP = "RdBu_r"
FOLD_COLOR = "#00e600"
#: The three ways a picture draws a field, each with its caption (the direction comes from the arrow mode).
PICTURES: dict[str, dict[str, str]] = {"arrows": ARROW_MODES, "grid": GRID_MODES, "jacobian": JACOBIAN_MODES}
PICTURE_NAMES: dict[str, str] = {"arrows": "arrows", "grid": "warped grid", "jacobian": "Jacobian determinant"}


@dataclass
class SliceView:
    """One 2-D slice of a registration, ready to draw.

    Attributes:
        image: ``(h, w)`` moving-image intensities.
        moving_label: ``(h, w)`` integer labels of the moving image.
        warped_label: ``(h, w)`` labels after warping by the displacement.
        arrows: ``(2, h, w)`` in-plane arrows in voxels, picture components (down, right), as ``arrow_mode``
            says (the grid is drawn from them too).
        norm: ``(h, w)`` full 3-D norm of the drawn field in voxels (colours the arrows).
        view: ``"sagittal"``, ``"coronal"`` or ``"axial"``.
        index: slice index along the array axis the view fixes.
        arrow_mode: ``"motion"`` or ``"sampling"`` (:data:`regexplain.registration.spatial.ARROW_MODES`).
        edges: orientation letters ``{"top", "bottom", "left", "right"}``, or None when unknown.
        jacobian: ``(h, w)`` det J of the drawn map (:data:`regexplain.registration.spatial.JACOBIAN_MODES`),
            when asked for.
        lr: the left/right convention the picture follows (``regexplain.registration.spatial.LR_CONVENTIONS``).
    All arrays are in picture order: row 0 is drawn at the top, column 0 on the left.
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
    jacobian: np.ndarray | None = None
    lr: str = DEFAULT_LR

    @property
    def arrow_caption(self) -> str:
        return ARROW_MODES[self.arrow_mode]


def picture_caption(picture: str, arrow_mode: str) -> str:
    """What a picture of kind ``picture`` (:data:`PICTURES`) draws, in ``arrow_mode``'s direction."""
    if picture not in PICTURES:
        raise ValueError(f"unknown picture {picture!r}; expected one of {list(PICTURES)}")
    return PICTURES[picture][arrow_mode]


def orientation_caption(views) -> str:
    """One line saying how the pictures of ``views`` (SliceViews) are oriented, for their caption."""
    views = list(views)
    lr = views[0].lr if views else DEFAULT_LR
    known = all(sv.edges is not None for sv in views)
    text = f"superior up (sagittal, coronal), anterior up (axial); {LR_CONVENTIONS[lr]}"
    return text if known else text + "; orientation unknown, drawn as if RAS"


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
               axcodes=None, motion: np.ndarray | None = None, lr: str = DEFAULT_LR, jacobian: bool = False,
               sampling_det: np.ndarray | None = None) -> SliceView:
    """Cut one slice out of a 3-D registration, in picture order.

    Args:
        image: ``(D, H, W)`` moving image (numpy or torch; leading singleton axes are dropped).
        label: ``(D, H, W)`` integer labels of the moving image.
        disp: ``(3, D, H, W)`` sampling displacement ``u`` in voxels, channels (D, H, W).
        view: ``"sagittal"``, ``"coronal"`` or ``"axial"``; the array axis it cuts comes from ``axcodes``.
        index: slice along that axis; by default through the structure (:func:`default_index`).
        arrows: ``"motion"`` (default: where the structure goes) or ``"sampling"`` (``u`` itself).
        axcodes: the image's axis codes (:func:`regexplain.registration.spatial.axis_codes` of its affine); None:
            unknown, drawn as if RAS and without orientation letters.
        motion: ``motion_field(disp)`` when the caller already has it (one per field, shared by views).
        lr: ``"radiological"`` (default) or ``"neurological"``.
        jacobian: also compute the Jacobian-determinant map of the drawn map (:attr:`SliceView.jacobian`).
        sampling_det: :func:`regexplain.registration.spatial.sampling_jacobian` of ``disp`` when the caller
            has it (shared by views).
    """
    if arrows not in ARROW_MODES:
        raise ValueError(f"unknown arrows {arrows!r}; expected one of {sorted(ARROW_MODES)}")
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; expected one of {list(VIEWS)}")
    orient = view_orientation(axcodes, view, lr)
    img = _as_numpy(image, "image", 3).astype(np.float32)
    lab = _as_numpy(label, "label", 3).astype(np.int64)
    u = _as_numpy(disp, "disp", 4).astype(np.float32)
    if img.shape != lab.shape or u.shape != (3, *img.shape):
        raise ValueError(f"shapes disagree: image {img.shape}, label {lab.shape}, disp {u.shape}")
    axis = orient.axis
    idx = default_index(lab, axis) if index is None else int(index)
    if not 0 <= idx < img.shape[axis]:
        raise ValueError(f"{view} index {idx} outside [0, {img.shape[axis]})")
    warped = warp_label(lab, u)
    cut = [slice(None)] * 3
    cut[axis] = idx
    cut = tuple(cut)
    along = [np.arange(n, dtype=np.float32) for n in img.shape]
    along[axis] = np.array([idx], np.float32)
    points = np.take(np.stack(np.meshgrid(*along, indexing="ij")), 0, axis=1 + axis)  # (3, a, b): the slice's voxels
    if arrows == "sampling":
        drawn = u[:, cut[0], cut[1], cut[2]]
    elif motion is not None:
        drawn = np.asarray(motion)[:, cut[0], cut[1], cut[2]]
    else:  # the motion at this slice's points only: a 2-D fixed point, not the whole volume's
        drawn = motion_field(u, points=points)
    det = None
    if jacobian and arrows == "sampling":
        det = (sampling_jacobian(u) if sampling_det is None else np.asarray(sampling_det))[cut]
    elif jacobian:
        det = motion_jacobian(u, points, drawn, sampling_det)
    return SliceView(
        image=orient.plane(img[cut]),
        moving_label=orient.plane(lab[cut]),
        warped_label=orient.plane(warped[cut]),
        arrows=orient.vectors(drawn),
        norm=orient.plane(np.linalg.norm(drawn, axis=0)),
        view=view,
        index=idx,
        arrow_mode=arrows,
        edges=None if axcodes is None else dict(orient.edges),
        jacobian=None if det is None else orient.plane(det).astype(np.float32),
        lr=lr,
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


def _contour(ax: Axes, label: np.ndarray, color: str, lw: float, outline=None) -> None:
    levels = [v + 0.5 for v in range(int(label.max()))]
    if levels:  # an empty slice has nothing to outline
        cs = ax.contour(label.astype(float), levels=levels, colors=color, linewidths=lw)
        if outline:
            cs.set_path_effects(outline)


def plot_slice_view(ax: Axes, sv: SliceView, *, arrow_step: int = 3, show_arrows: bool = True,
                    title: str | None = None, arrow_scale: float | None = None, vmax_norm: float | None = None,
                    linewidth: float = 1.2, picture: str = "arrows", jac_limit: float | None = None,
                    grid_step: int | None = None) -> Axes:
    """Draw a :class:`SliceView`: grey image, moving contour red, warped contour gold, and the field as
    ``picture`` says: ``"arrows"`` coloured by norm, ``"grid"`` a warped grid, ``"jacobian"`` its
    Jacobian-determinant map (:func:`jacobian_rgb`, folding in green).

    Args:
        arrow_step: draw one arrow every ``arrow_step`` voxels.
        arrow_scale: arrow length multiplier (1 = true length in voxels); by default small fields are
            stretched so the longest arrow spans about ``arrow_step`` voxels, which keeps them visible.
        vmax_norm: norm mapped to white; share it across panels to compare magnitudes.
        jac_limit: the Jacobian map's colour range, 1/limit .. limit (default :func:`jacobian_limit`).
        grid_step: voxels between grid lines (default ``arrow_step``); the grid is drawn at true scale.
    """
    if picture not in PICTURES:
        raise ValueError(f"unknown picture {picture!r}; expected one of {list(PICTURES)}")
    outline = None
    if picture == "jacobian":
        if sv.jacobian is None:
            raise ValueError("this SliceView has no Jacobian map: build it with slice_view(..., jacobian=True)")
        import matplotlib.patheffects as pe

        ax.imshow(jacobian_rgb(sv.jacobian, jac_limit or jacobian_limit([sv.jacobian])), interpolation="nearest")
        outline = [pe.withStroke(linewidth=linewidth + 1.5, foreground="black")]
    else:
        ax.imshow(sv.image, cmap="gray", interpolation="nearest")
    _contour(ax, sv.moving_label, MOVING_COLOR, linewidth, outline)
    _contour(ax, sv.warped_label, WARPED_COLOR, linewidth, outline)
    if picture == "arrows" and show_arrows:
        _arrows(ax, sv, arrow_step, arrow_scale, vmax_norm)
    elif picture == "grid":
        for line in grid_polylines(sv, grid_step or arrow_step):
            ax.plot(line[:, 0], line[:, 1], color=GRID_COLOR, lw=0.8)
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


def grid_polylines(sv: SliceView, step: int) -> list[np.ndarray]:
    """The warped grid of a slice: lines every ``step`` voxels (on :func:`arrow_grid`'s rows and columns),
    each point ``q`` moved to ``q + arrows(q)`` in picture coordinates, at true scale. With motion arrows it is
    a grid on the moving image carried where the structure goes; with sampling arrows the fixed image's grid
    moved to where it reads the moving image. Returns ``(n, 2)`` arrays of (x = col, y = row) points."""
    h, w = sv.image.shape
    rows, cols = arrow_grid((h, w), step)
    down, right = sv.arrows
    lines = []
    for r in rows[:, 0]:
        c = np.arange(w)
        lines.append(np.stack([c + right[r, c], r + down[r, c]], axis=1))
    for c in cols[0]:
        r = np.arange(h)
        lines.append(np.stack([c + right[r, c], r + down[r, c]], axis=1))
    return lines


def jacobian_limit(dets, *, floor: float = 1.1, percentile: float = 99.0) -> float:
    """Colour range of Jacobian maps: ``limit`` such that 1/limit .. limit spans ``percentile`` % of the
    positive dets of ``dets`` (arrays; ``|log det|``, so expansion and contraction count alike), at least
    ``floor`` (a near-identity field stays pale instead of saturating). Beyond it colours saturate."""
    logs = [np.abs(np.log(d[d > 0])).ravel() for d in (np.asarray(x, dtype=np.float64) for x in dets)]
    logs = [x for x in logs if x.size]
    top = float(np.percentile(np.concatenate(logs), percentile)) if logs else 0.0
    return float(max(np.exp(top), floor))


def jacobian_rgb(det: np.ndarray, limit: float) -> np.ndarray:
    """Colours of a Jacobian-determinant map, ``(h, w)`` -> ``(h, w, 3)`` uint8: :data:`JACOBIAN_CMAP` on
    ``log(det)`` from ``-log(limit)`` (blue) through 0 (white, det = 1) to ``log(limit)`` (red); folding
    (``det <= 0``) in :data:`FOLD_COLOR`."""
    from matplotlib import colormaps
    from matplotlib.colors import to_rgb

    det = np.asarray(det, dtype=np.float64)
    span = np.log(max(float(limit), 1.0 + 1e-6))
    folded = ~(det > 0)
    t = 0.5 + 0.5 * np.log(np.where(folded, 1.0, det)) / span
    rgb = colormaps[JACOBIAN_CMAP](np.clip(t, 0.0, 1.0))[..., :3]
    rgb[folded] = to_rgb(FOLD_COLOR)
    return np.round(rgb * 255).astype(np.uint8)
