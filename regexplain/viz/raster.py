"""The explorer's picture drawn straight into pixels (Pillow): a λ move redraws in tens of milliseconds.

Matplotlib draws the paper's figures (:mod:`regexplain.viz.figures`); the explorer redraws at every slider
move, where matplotlib's layout and quiver cost most of a second on two cores. Both draw the same
:class:`~regexplain.viz.slices.SliceView` s with the same conventions: moving contour red, warped contour
gold, arrows coloured by their norm with :data:`~regexplain.viz.slices.ARROW_CMAP`, one arrow every
``step`` voxels on :func:`~regexplain.viz.slices.arrow_grid`, orientation letters from the image affine.

Layout: title lines, column titles (the views), then per row (a component) a header naming it and its
arrow scale, its panels, each with orientation letters at its edges and its scale in a corner.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from regexplain.viz.slices import ARROW_CMAP, SliceView, arrow_grid, contour_xy

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
    """One row of panels (one component) with the arrow scales that hold for it."""
    views: Sequence[SliceView]
    header: str                 # e.g. "component 1 · 37 % var. · λ = +2.00σ"
    vmax: float                 # arrow norm drawn white (voxels)
    scale: float                # arrow length multiplier (1 = true length)


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


def _contours(draw: ImageDraw.ImageDraw, label: np.ndarray, ox: int, oy: int, zoom: int, rgb, width: int):
    for line in _polylines(label):
        draw.line([(ox + (x + 0.5) * zoom, oy + (y + 0.5) * zoom) for x, y in line], fill=rgb, width=width,
                  joint="curve")


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


def _colourbar(draw: ImageDraw.ImageDraw, x: int, y: int, width: int, vmax: float, scale: float) -> None:
    ramp = _rgb(np.linspace(0.0, 1.0, width))
    for k in range(width):
        draw.line([(x + k, y), (x + k, y + 10)], fill=tuple(int(c) for c in ramp[k]))
    f = font(LABEL_PX - 1)
    draw.text((x - 4, y + 5), "0", font=f, fill=TEXT, anchor="rm")
    draw.text((x + width + 4, y + 5), f"{vmax:.2g} vox · arrows ×{times(scale)}", font=f, fill=TEXT, anchor="lm")


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
            g = _grey(sv.image, zoom)
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
        _colourbar(draw, width - MARGIN - 330, top - head_h / 2 - 5, 120, row.vmax, row.scale)
        x = MARGIN
        for sv, w in zip(row.views, widths, strict=True):
            _contours(draw, sv.moving_label, x, top, zoom, MOVING_RGB, 2)
            _contours(draw, sv.warped_label, x, top, zoom, WARPED_RGB, 2)
            _arrows(draw, sv, x, top, zoom, step, row.vmax, row.scale)
            box = (x, top, x + w, top + sv.image.shape[0] * zoom)
            if sv.edges:
                _letters(draw, sv.edges, box)
            draw.text((box[2] - 4, box[3] - 3), f"≤{row.vmax:.2g} vox ×{times(row.scale)}", font=font(LABEL_PX - 2),
                      fill=TEXT, anchor="rd", stroke_width=2, stroke_fill=(0, 0, 0))
            x += w + GAP
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
