"""The explorer's picture drawn straight into pixels (Pillow): a λ move redraws in tens of milliseconds.

Matplotlib draws the paper's figures (:mod:`regexplain.viz.figures`); the explorer redraws at every slider
move, where matplotlib's layout and quiver cost most of a second on two cores. Both draw the same
:class:`~regexplain.viz.slices.SliceView` s with the same conventions: moving contour red, warped contour
gold, arrows coloured by their norm with :data:`~regexplain.viz.slices.ARROW_CMAP`, one arrow every
``step`` voxels on :func:`~regexplain.viz.slices.arrow_grid`, orientation letters from the image affine; a
row may draw the field as a warped grid (:func:`~regexplain.viz.slices.grid_polylines`) or a Jacobian map
(:func:`~regexplain.viz.slices.jacobian_rgb`, folding in green) instead of arrows.

Layout: title lines, column titles (the views), then per row (a component, or one picture of it) a header
naming it and its colour scale, its panels, each with orientation letters at its edges and its scale in a
corner.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from regexplain.viz.slices import (
    ARROW_CMAP,
    FOLD_COLOR,
    GRID_COLOR,
    SliceView,
    arrow_grid,
    contour_xy,
    grid_polylines,
    jacobian_rgb,
)

#: Width the three views share, in pixels (the picture is scaled to the page's width in the browser).
TARGET_WIDTH = 1200
#: Text sizes in pixels (a browser shows the picture at >= 0.9 of its width: >= 11 px on screen).
TITLE_PX, LABEL_PX, LETTER_PX = 16, 14, 15
#: On-screen spacing between arrows, in pixels, and the smallest drawn arrow head.
ARROW_SPACING_PX = 34
HEAD_PX = 7.0
BG = (17, 17, 17)
TEXT = (235, 235, 235)
LETTER = (159, 224, 255)
MOVING_RGB, WARPED_RGB = (255, 40, 40), (255, 205, 0)
GAP, MARGIN = 8, 10


@dataclass
class PanelRow:
    """One row of panels (one component, or one picture of it) with the scales that hold for it."""
    views: Sequence[SliceView]
    header: str                 # e.g. "component 1 · 37 % var. · λ = +2.00σ"
    vmax: float                 # arrow norm drawn white (voxels)
    scale: float                # arrow length multiplier (1 = true length)
    picture: str = "arrows"     # "arrows", "grid" (true scale) or "jacobian" (SliceViews with .jacobian)
    jac_limit: float = 2.0      # Jacobian colours from 1/jac_limit (blue) to jac_limit (red)


@lru_cache(maxsize=8)
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """DejaVu Sans, the font matplotlib ships (no system font needed)."""
    from matplotlib import get_data_path

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(get_data_path()) / "fonts" / "ttf" / name), size)


def zoom_for(shapes: Sequence[tuple[int, int]], target: int = TARGET_WIDTH) -> int:
    """Pixels per voxel so that the panels of one row, side by side, fill about ``target`` pixels."""
    return max(3, int(target // max(sum(w for _, w in shapes), 1)))


def arrow_step(zoom: int) -> int:
    """Voxels between arrows: about :data:`ARROW_SPACING_PX` on screen, legible at any volume size."""
    return max(1, int(round(ARROW_SPACING_PX / zoom)))


def times(scale: float) -> str:
    """An arrow scale as people read it: 0.21, 2.5, 660."""
    return f"{scale:.0f}" if scale >= 10 else f"{scale:.2g}"


def _rgb(values: np.ndarray) -> np.ndarray:
    return (np.asarray(ARROW_CMAP(np.clip(values, 0.0, 1.0)))[..., :3] * 255).astype(np.uint8)


def _grey(image: np.ndarray, zoom: int) -> np.ndarray:
    g = (np.clip(np.nan_to_num(image), 0.0, 1.0) * 255).astype(np.uint8)
    g = np.repeat(np.repeat(g, zoom, axis=0), zoom, axis=1)
    return np.repeat(g[..., None], 3, axis=2)


def _panel_pixels(sv: SliceView, row: PanelRow, zoom: int) -> np.ndarray:
    """The panel's background: the grey image, or the Jacobian map's colours."""
    if row.picture != "jacobian":
        return _grey(sv.image, zoom)
    if sv.jacobian is None:
        raise ValueError("a Jacobian row needs SliceViews built with slice_view(..., jacobian=True)")
    return np.repeat(np.repeat(jacobian_rgb(sv.jacobian, row.jac_limit), zoom, axis=0), zoom, axis=1)


def _polylines(label: np.ndarray) -> list[list[tuple[float, float]]]:
    xs, ys = contour_xy(label)
    lines, cur = [], []
    for x, y in zip(xs, ys, strict=True):
        if x is None:
            if len(cur) > 1:
                lines.append(cur)
            cur = []
        else:
            cur.append((x, y))
    if len(cur) > 1:
        lines.append(cur)
    return lines


def _contours(draw: ImageDraw.ImageDraw, label: np.ndarray, ox: int, oy: int, zoom: int, rgb, width: int,
              outline: bool = False):
    for line in _polylines(label):
        points = [(ox + (x + 0.5) * zoom, oy + (y + 0.5) * zoom) for x, y in line]
        if outline:  # on the Jacobian's colours: a dark edge keeps red and gold apart from red and white
            draw.line(points, fill=(0, 0, 0), width=width + 2, joint="curve")
        draw.line(points, fill=rgb, width=width, joint="curve")


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return tuple(int(colour[k:k + 2], 16) for k in (0, 2, 4))  # type: ignore[return-value]


def _grid(draw: ImageDraw.ImageDraw, sv: SliceView, ox: int, oy: int, zoom: int, step: int) -> int:
    """The warped grid, at true scale, clipped to the panel; returns the number of lines drawn."""
    h, w = sv.image.shape
    colour = _hex_rgb(GRID_COLOR)
    lines = grid_polylines(sv, step)
    for line in lines:
        x = np.clip(ox + (line[:, 0] + 0.5) * zoom, ox, ox + w * zoom - 1)
        y = np.clip(oy + (line[:, 1] + 0.5) * zoom, oy, oy + h * zoom - 1)
        draw.line(list(zip(x.tolist(), y.tolist(), strict=True)), fill=colour, width=1)
    return len(lines)


def _arrows(draw: ImageDraw.ImageDraw, sv: SliceView, ox: int, oy: int, zoom: int, step: int, vmax: float,
            scale: float) -> int:
    rows, cols = arrow_grid(sv.image.shape, step)
    dr, dc = sv.arrows[0][rows, cols] * scale * zoom, sv.arrows[1][rows, cols] * scale * zoom
    length = np.hypot(dr, dc)
    keep = length >= 2.0  # shorter than two pixels: no direction to show (λ = 0 draws nothing)
    colours = _rgb(sv.norm[rows, cols][keep] / max(vmax, 1e-9))
    x0 = ox + (cols[keep] + 0.5) * zoom
    y0 = oy + (rows[keep] + 0.5) * zoom
    n = 0
    for x, y, u, v, lng, c in zip(x0, y0, dc[keep], dr[keep], length[keep], colours, strict=True):
        ux, uy = u / lng, v / lng
        head = min(max(HEAD_PX, 0.35 * lng), 12.0)
        tip = (x + u, y + v)
        base = (tip[0] - ux * head, tip[1] - uy * head)
        wing = 0.55 * head
        poly = [tip, (base[0] - uy * wing, base[1] + ux * wing), (base[0] + uy * wing, base[1] - ux * wing)]
        fill = tuple(int(k) for k in c)
        draw.line([(x, y), base], fill=(0, 0, 0), width=4)
        draw.polygon(poly, fill=fill, outline=(0, 0, 0))
        draw.line([(x, y), base], fill=fill, width=2)
        n += 1
    return n


def _letters(draw: ImageDraw.ImageDraw, edges: dict[str, str], box: tuple[int, int, int, int]) -> None:
    x0, y0, x1, y1 = box
    f = font(LETTER_PX, bold=True)
    spots = {"top": ((x0 + x1) / 2, y0 + 2, "mt"), "bottom": ((x0 + x1) / 2, y1 - 2, "mb"),
             "left": (x0 + 4, (y0 + y1) / 2, "lm"), "right": (x1 - 4, (y0 + y1) / 2, "rm")}
    for where, (x, y, anchor) in spots.items():
        draw.text((x, y), edges[where], font=f, fill=LETTER, anchor=anchor, stroke_width=2, stroke_fill=(0, 0, 0))


def _colourbar(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, row: PanelRow, step: int) -> None:
    f = font(LABEL_PX - 1)
    if row.picture == "grid":
        draw.line([(x, y + 5), (x + width, y + 5)], fill=_hex_rgb(GRID_COLOR), width=2)
        draw.text((x + width + 4, y + 5), f"grid every {step} vox, true scale", font=f, fill=TEXT, anchor="lm")
        return
    if row.picture == "jacobian":
        lim = row.jac_limit
        ramp = jacobian_rgb(np.exp(np.linspace(-np.log(lim), np.log(lim), width)), lim)
        for k in range(width):
            draw.line([(x + k, y), (x + k, y + 10)], fill=tuple(int(c) for c in ramp[k]))
        draw.rectangle([x + width + 8, y, x + width + 18, y + 10], fill=_hex_rgb(FOLD_COLOR))
        draw.text((x - 4, y + 5), f"det J {1 / lim:.2g}", font=f, fill=TEXT, anchor="rm")
        draw.text((x + width / 2, y + 12), "1", font=f, fill=TEXT, anchor="mt")
        draw.text((x + width + 22, y + 5), f"{lim:.2g} · ≤ 0 folding", font=f, fill=TEXT, anchor="lm")
        return
    ramp = _rgb(np.linspace(0.0, 1.0, width))
    for k in range(width):
        draw.line([(x + k, y), (x + k, y + 10)], fill=tuple(int(c) for c in ramp[k]))
    draw.text((x - 4, y + 5), "0", font=f, fill=TEXT, anchor="rm")
    draw.text((x + width + 4, y + 5), f"{row.vmax:.2g} vox · arrows ×{times(row.scale)}", font=f, fill=TEXT,
              anchor="lm")


def _corner_note(row: PanelRow, step: int) -> str:
    if row.picture == "grid":
        return f"grid {step} vox"
    if row.picture == "jacobian":
        return f"det J {1 / row.jac_limit:.2g}..{row.jac_limit:.2g}"
    return f"≤{row.vmax:.2g} vox ×{times(row.scale)}"


def render_rows_png(rows: Sequence[PanelRow], *, col_labels: Sequence[str], title_lines: Sequence[str],
                    step: int | None = None, zoom: int | None = None) -> bytes:
    """The explorer picture as PNG bytes: ``rows`` of panels under ``col_labels`` and ``title_lines``."""
    shapes = [sv.image.shape for sv in rows[0].views]
    zoom = zoom or zoom_for(shapes)
    step = step or arrow_step(zoom)
    widths = [w * zoom for _, w in shapes]
    height = max(h for h, _ in shapes) * zoom
    width = 2 * MARGIN + sum(widths) + GAP * (len(widths) - 1)
    title_h = len(title_lines) * (TITLE_PX + 6) + 4
    col_h, head_h = LABEL_PX + 10, LABEL_PX + 14
    total_h = MARGIN + title_h + col_h + len(rows) * (head_h + height + GAP) + MARGIN
    canvas = np.zeros((total_h, width, 3), np.uint8)
    canvas[:] = BG
    tops = []
    y = MARGIN + title_h + col_h
    for row in rows:  # the grey images first, as arrays: one paste per panel
        y += head_h
        x = MARGIN
        for sv, w in zip(row.views, widths, strict=True):
            g = _panel_pixels(sv, row, zoom)
            canvas[y:y + g.shape[0], x:x + g.shape[1]] = g
            x += w + GAP
        tops.append(y)
        y += height + GAP
    img = Image.fromarray(canvas)
    draw = ImageDraw.Draw(img)
    ty = MARGIN
    for k, line in enumerate(title_lines):
        draw.text((MARGIN, ty), line, font=font(TITLE_PX, bold=k == 0), fill=TEXT)
        ty += TITLE_PX + 6
    x = MARGIN
    for label, w in zip(col_labels, widths, strict=True):
        draw.text((x + w / 2, MARGIN + title_h + col_h / 2), label, font=font(LABEL_PX, bold=True), fill=TEXT,
                  anchor="mm")
        x += w + GAP
    for row, top in zip(rows, tops, strict=True):
        draw.text((MARGIN, top - head_h / 2), row.header, font=font(LABEL_PX), fill=TEXT, anchor="lm")
        _colourbar(draw, width - MARGIN - 360, top - head_h / 2 - 5, 120, row, step)
        x = MARGIN
        for sv, w in zip(row.views, widths, strict=True):
            if row.picture == "grid":
                _grid(draw, sv, x, top, zoom, step)
            _contours(draw, sv.moving_label, x, top, zoom, MOVING_RGB, 2, outline=row.picture == "jacobian")
            _contours(draw, sv.warped_label, x, top, zoom, WARPED_RGB, 2, outline=row.picture == "jacobian")
            if row.picture == "arrows":
                _arrows(draw, sv, x, top, zoom, step, row.vmax, row.scale)
            box = (x, top, x + w, top + sv.image.shape[0] * zoom)
            if sv.edges:
                _letters(draw, sv.edges, box)
            draw.text((box[2] - 4, box[3] - 3), _corner_note(row, step), font=font(LABEL_PX - 2),
                      fill=TEXT, anchor="rd", stroke_width=2, stroke_fill=(0, 0, 0))
            x += w + GAP
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def field_views_png(image: np.ndarray, label: np.ndarray | None, disp: np.ndarray, *, axcodes=None,
                    arrows: str = "motion", title: str = "", pictures: Sequence[str] = ("arrows", "grid", "jacobian"),
                    lr: str | None = None) -> bytes:
    """One registration's field in the three views (columns), drawn as arrows, a warped grid and a Jacobian
    map (rows), as PNG bytes (``regexplain register --pictures``).

    Args:
        image: ``(D, H, W)`` moving intensities (shown between their 1st and 99th percentiles).
        label: ``(D, H, W)`` moving label (red; warped gold) or None.
        disp: ``(3, D, H, W)`` sampling displacement in voxels (``warped(x) = moving(x + u(x))``).
        axcodes: the image's axis codes (its affine; None: drawn as if RAS).
        arrows: ``"motion"`` (the motion of the structure) or ``"sampling"`` (fixed -> moving).
    """
    from regexplain.registration.spatial import DEFAULT_LR, sampling_jacobian
    from regexplain.viz.slices import (
        PICTURE_NAMES,
        auto_arrow_scale,
        jacobian_limit,
        orientation_caption,
        picture_caption,
        slice_view,
    )

    img = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(img, [1, 99]) if img.size else (0.0, 1.0)
    img = np.clip((img - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    lab = np.zeros(img.shape, np.int64) if label is None else np.asarray(label).astype(np.int64)
    u = np.asarray(disp, dtype=np.float32)
    det = sampling_jacobian(u)
    views = [slice_view(img, lab, u, v, arrows=arrows, axcodes=axcodes,
                        lr=lr or DEFAULT_LR, jacobian="jacobian" in pictures, sampling_det=det)
             for v in ("sagittal", "coronal", "axial")]
    zoom = zoom_for([sv.image.shape for sv in views])
    step = arrow_step(zoom)
    vmax = max(float(sv.norm.max()) for sv in views)
    jac = jacobian_limit([sv.jacobian for sv in views]) if "jacobian" in pictures else 2.0
    rows = [PanelRow(views, PICTURE_NAMES[p], max(vmax, 1e-6), auto_arrow_scale(max(vmax, 1e-6), step), picture=p,
                     jac_limit=jac) for p in pictures]
    cols = [f"{sv.view} · slice {sv.index}" for sv in views]
    titles = [title or "registration", *(picture_caption(p, arrows) for p in pictures),
              "red: moving contour · gold: warped" if label is not None else "no moving label given: no contours",
              orientation_caption(views)]
    return render_rows_png(rows, col_labels=cols, title_lines=titles, step=step, zoom=zoom)
