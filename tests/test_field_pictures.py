"""The field drawn as a warped grid and a Jacobian-determinant map (issue 32): grid lines where an analytic
field puts them, det J of a uniform scaling s is s^3 (sampling map) or s^-3 (the motion of the structure) and
is drawn in the colour that says so, folding (det J <= 0) marked where an independent numpy computation finds
it; through the explorer's raster and matplotlib, with the caption naming the direction drawn."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image

from regexplain.viz.raster import PanelRow, render_rows_png
from regexplain.viz.slices import (
    FOLD_COLOR,
    GRID_COLOR,
    grid_polylines,
    jacobian_limit,
    jacobian_rgb,
    picture_caption,
    plot_slice_view,
    slice_view,
)

SHAPE = (16, 18, 20)
ZOOM = 10
CODES = ("L", "P", "S")  # the phantoms' axes: coronal rows run against axis 2, columns along axis 0


def _scene():
    image = np.full(SHAPE, 0.3, np.float32)
    label = np.zeros(SHAPE, np.uint8)
    return image, label


def _numpy_det(disp: np.ndarray) -> np.ndarray:
    """det J of x -> x + u(x) with numpy.gradient (the Learn2Reg evaluation's way), independent of torch."""
    grads = [np.gradient(disp[a], axis=(0, 1, 2)) for a in range(3)]
    jac = np.empty((*disp.shape[1:], 3, 3))
    for a in range(3):
        for b in range(3):
            jac[..., a, b] = grads[a][b] + (a == b)
    return np.linalg.det(jac)


def _stretch(s: float) -> np.ndarray:
    """Sampling displacement of a uniform scaling about the centre: x + u(x) = c + s (x - c)."""
    grid = np.indices(SHAPE).astype(np.float32)
    c = (np.asarray(SHAPE, np.float32) - 1).reshape(3, 1, 1, 1) / 2
    return ((s - 1) * (grid - c)).astype(np.float32)


def _rgb(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def _panel_origin(rgb: np.ndarray, sv, colour) -> tuple[int, int]:
    """Top-left pixel of the single panel, found from its background colour."""
    mask = (rgb == colour).all(-1)
    h, w = sv.image.shape
    return np.flatnonzero(mask.sum(1) > w * ZOOM // 3)[0], np.flatnonzero(mask.sum(0) > h * ZOOM // 3)[0]


@pytest.mark.parametrize("mode", ["motion", "sampling"])
def test_grid_of_a_stretch_follows_the_analytic_map(mode):
    """Sampling map c + s (x - c): the fixed grid reads at c + s (q - c) (sampling); the moving grid lands at
    c + (p - c) / s (motion). Flips and transposes keep the centre, so the same holds in picture coordinates."""
    s = 1.2
    image, label = _scene()
    sv = slice_view(image, label, _stretch(s), "coronal", 8, axcodes=CODES, arrows=mode)
    h, w = sv.image.shape
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    factor = s if mode == "sampling" else 1 / s
    lines = grid_polylines(sv, 4)
    rows = np.arange(((h - 1) % 4) // 2, h, 4)
    cols = np.arange(((w - 1) % 4) // 2, w, 4)
    regular = [np.stack([np.arange(w), np.full(w, r)], 1) for r in rows] + \
              [np.stack([np.full(h, c), np.arange(h)], 1) for c in cols]
    for line, q in zip(lines, regular, strict=True):
        np.testing.assert_allclose(line, centre + factor * (q - centre), atol=2e-3)


def test_grid_of_a_translation_is_drawn_where_expected():
    """A structure moved 1.5 voxels towards the patient's left (drawn right in a radiological coronal view):
    the raster's vertical grid lines sit 1.5 voxels right of the regular grid, nowhere else."""
    image, label = _scene()
    motion_vox = np.array([1.5, 0.0, 0.0])  # axis 0 grows towards L
    disp = np.broadcast_to(-motion_vox[:, None, None, None], (3, *SHAPE)).astype(np.float32)
    sv = slice_view(image, label, disp, "coronal", 8, axcodes=CODES)
    assert sv.edges["right"] == "L"
    png = render_rows_png([PanelRow([sv], "", 1.0, 1.0, picture="grid")], col_labels=["coronal"], title_lines=["t"],
                          zoom=ZOOM, step=4)
    rgb = _rgb(png)
    top, left = _panel_origin(rgb, sv, (76, 76, 76))
    h, w = sv.image.shape
    panel = rgb[top:top + h * ZOOM, left:left + w * ZOOM]
    grid = (panel == [int(GRID_COLOR[k:k + 2], 16) for k in (1, 3, 5)]).all(-1)
    columns = np.flatnonzero(grid.sum(0) > h * ZOOM * 0.8)  # vertical lines: almost full height
    expected = [int((c + 1.5 + 0.5) * ZOOM) for c in range(((w - 1) % 4) // 2, w, 4) if c + 1.5 < w - 0.5]
    assert len(columns) == len(expected)
    np.testing.assert_allclose(columns, expected, atol=1)
    rows = np.flatnonzero(grid.sum(1) > w * ZOOM * 0.5)  # horizontal lines did not move
    np.testing.assert_allclose(rows, [int((r + 0.5) * ZOOM) for r in range(((h - 1) % 4) // 2, h, 4)], atol=1)


@pytest.mark.parametrize("mode, power", [("sampling", 3), ("motion", -3)])
def test_jacobian_of_a_uniform_scaling_and_its_colour(mode, power):
    s = 1.15
    image, label = _scene()
    sv = slice_view(image, label, _stretch(s), "axial", 10, axcodes=CODES, arrows=mode, jacobian=True)
    np.testing.assert_allclose(sv.jacobian, s ** power, rtol=1e-4)
    # the rendered colour decodes back to s^power on the colour bar's scale
    limit = 2.0
    png = render_rows_png([PanelRow([sv], "", 1.0, 1.0, picture="jacobian", jac_limit=limit)], col_labels=["a"],
                          title_lines=["t"], zoom=ZOOM)
    colour = jacobian_rgb(np.array([[s ** power]]), limit)[0, 0]
    rgb = _rgb(png)
    top, left = _panel_origin(rgb, sv, colour)
    pixel = rgb[top + ZOOM * 5, left + ZOOM * 5]
    ramp = np.exp(np.linspace(-np.log(limit), np.log(limit), 2001))
    decoded = ramp[np.argmin(np.abs(jacobian_rgb(ramp[None], limit)[0].astype(int) - pixel).sum(-1))]
    assert decoded == pytest.approx(s ** power, rel=0.02)
    red, _, blue = pixel
    assert (red > blue) == (power > 0)  # expansion red, contraction blue
    assert np.all(jacobian_rgb(np.array([[1.0]]), limit) >= 240)  # det 1 is white
    assert ("det J of the sampling map" if mode == "sampling" else "det J of the motion") in \
        picture_caption("jacobian", mode)


def test_folding_is_marked_where_numpy_finds_it():
    """A fold: the sampling map turns back along axis 2 in the middle of the volume (d phi_2 / dz < 0)."""
    image, label = _scene()
    grid = np.indices(SHAPE).astype(np.float32)
    disp = np.zeros((3, *SHAPE), np.float32)
    bump = np.exp(-((grid[0] - 8) ** 2 + (grid[1] - 9) ** 2) / 8.0)
    disp[2] = -2.2 * bump * np.sin((grid[2] - 10) / 3.0) * 3.0 / 2.0
    det = _numpy_det(disp)
    assert (det <= 0).any() and (det > 0).any()
    sv = slice_view(image, label, disp, "coronal", 9, axcodes=CODES, arrows="sampling", jacobian=True)
    ref = np.asarray(det[:, 9, :])          # (D, W): coronal of LPS axes: rows against axis 2, columns axis 0
    ref = ref.T[::-1, :]
    np.testing.assert_allclose(sv.jacobian, ref, rtol=1e-4, atol=1e-4)
    limit = 2.0
    png = render_rows_png([PanelRow([sv], "", 1.0, 1.0, picture="jacobian", jac_limit=limit)], col_labels=["c"],
                          title_lines=["t"], zoom=ZOOM)
    rgb = _rgb(png)
    fold = tuple(int(FOLD_COLOR[k:k + 2], 16) for k in (1, 3, 5))
    marked = (rgb == fold).all(-1)
    h, w = sv.image.shape
    plain = render_rows_png([PanelRow([sv], "", 1.0, 1.0)], col_labels=["c"], title_lines=["t"], zoom=ZOOM)
    top, left = _panel_origin(_rgb(plain), sv, (76, 76, 76))  # the same layout, over the grey image
    drawn = marked[top + ZOOM // 2:top + h * ZOOM:ZOOM, left + ZOOM // 2:left + w * ZOOM:ZOOM]
    np.testing.assert_array_equal(drawn, ref <= 0)
    motion = slice_view(image, label, disp, "coronal", 9, axcodes=CODES, jacobian=True)
    assert (motion.jacobian <= 0).any()  # the motion's map folds too


def test_matplotlib_draws_grid_and_jacobian_and_names_them(tmp_path):
    from regexplain.viz.figures import plot_slice_grid, save_figure

    image, label = _scene()
    label[6:10, 7:11, 8:12] = 1
    disp = _stretch(1.1)
    row = [slice_view(image, label, disp, v, axcodes=CODES, jacobian=True) for v in ("sagittal", "coronal", "axial")]
    fig = plot_slice_grid([row, row, row], pictures=["arrows", "grid", "jacobian"])
    text = "\n".join(t.get_text() for t in fig.texts)
    for words in ("arrows: motion of the structure", "grid: motion of the structure", "det J of the motion",
                  "radiological"):
        assert words in text
    grid_ax, jac_ax = fig.axes[3], fig.axes[6]
    assert len(grid_ax.lines) == len(grid_polylines(row[0], 3))
    shown = jac_ax.images[0].get_array()
    np.testing.assert_array_equal(shown, jacobian_rgb(row[0].jacobian, jacobian_limit([sv.jacobian for sv in row])))
    assert jacobian_limit([sv.jacobian for sv in row]) == pytest.approx(1.1 ** 3, rel=1e-3)
    save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="jacobian=True"):
        plot_slice_view(ax, slice_view(image, label, disp, "axial"), picture="jacobian")
    plt.close(fig)
