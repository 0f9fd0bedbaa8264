"""Pictures in viewer orientation (issue 32): sagittal and coronal slices with superior up, axial slices with
anterior up, sagittal with anterior on the left, the patient's right on the side the stated convention says;
from the image affine, whatever its orientation (RAS, LPS, oblique). A marker placed at a known anatomical side
of a volume must land on that side of the rendered picture, through the real renderers (the explorer's Pillow
raster and matplotlib)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from regexplain.registration.spatial import axis_codes, view_orientation
from regexplain.viz.raster import PanelRow, render_rows_png
from regexplain.viz.slices import orientation_caption, plot_slice_view, slice_view

SHAPE = (15, 17, 19)
BACKGROUND = 0.4
ZOOM = 10


def _oblique() -> np.ndarray:
    """Voxel axes towards P, S, L (a permuted, mirrored grid), turned 20 degrees about a tilted axis, 1.2 mm."""
    base = np.array([[0, 0, -1.0], [-1.0, 0, 0], [0, 1.0, 0]])   # columns: axis 0 -> -y, 1 -> +z, 2 -> -x
    turn = Rotation.from_rotvec(np.deg2rad(20) * np.array([1.0, 1.0, 1.0]) / np.sqrt(3)).as_matrix()
    affine = np.eye(4)
    affine[:3, :3] = 1.2 * turn @ base
    affine[:3, 3] = [10.0, -4.0, 7.0]
    return affine


AFFINES = {"RAS": np.diag([1.0, 1.0, 1.0, 1.0]), "LPS": np.diag([-0.9, -1.1, 1.3, 1.0]), "oblique": _oblique()}
#: For each view, the world direction (RAS) that must point up and the one that must point left
#: (radiological: the patient's right is drawn on the left; sagittal: anterior on the left).
UP = {"sagittal": (0, 0, 1), "coronal": (0, 0, 1), "axial": (0, 1, 0)}
LEFT = {"sagittal": (0, 1, 0), "coronal": (1, 0, 0), "axial": (1, 0, 0)}


def test_the_oblique_affine_is_oblique_and_has_other_axes():
    assert axis_codes(_oblique()) == ("P", "S", "L")
    assert (np.abs(_oblique()[:3, :3]) > 0.1).sum() > 3  # no voxel axis along a world axis


def _marked(affine: np.ndarray, view: str, direction) -> tuple[np.ndarray, np.ndarray, int, tuple[int, int, int]]:
    """A volume with one bright voxel 5 voxels from the centre of the view's middle slice, in the slice's
    in-plane direction closest to the world ``direction``; returns (image, label, index, marker voxel)."""
    codes = axis_codes(affine)
    axis = view_orientation(codes, view).axis
    centre = np.array([(n - 1) // 2 for n in SHAPE])
    d = np.linalg.solve(affine[:3, :3], np.asarray(direction, float))   # that direction in voxels
    d[axis] = 0.0                                                         # within the slice
    voxel = tuple(int(v) for v in np.round(centre + 5 * d / np.linalg.norm(d)))
    image = np.full(SHAPE, BACKGROUND, np.float32)
    image[voxel] = 1.0
    label = np.zeros(SHAPE, np.uint8)
    label[voxel] = 1
    return image, label, int(centre[axis]), voxel


def _raster_position(sv) -> tuple[float, float]:
    """Where the marker lands in the explorer's raster picture, as (row, col) in voxels of the panel."""
    png = render_rows_png([PanelRow([sv], "", 1.0, 1.0)], col_labels=["v"], title_lines=["t"], zoom=ZOOM)
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    grey = (rgb == round(BACKGROUND * 255)).all(-1)  # the panel's background (text edges may match a few)
    h, w = sv.image.shape
    top = np.flatnonzero(grey.sum(1) > w * ZOOM // 2)[0]
    left = np.flatnonzero(grey.sum(0) > h * ZOOM // 2)[0]
    marker = np.argwhere((rgb == 255).all(-1))
    assert len(marker) >= ZOOM * ZOOM // 2, "marker not drawn"
    return tuple((marker.mean(0) - (top, left)) / ZOOM - 0.5)


def _matplotlib_position(sv) -> tuple[float, float]:
    """Where the marker lands in plot_slice_view's figure, as (row, col) in voxels of the axes."""
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    plot_slice_view(ax, sv)
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    box = ax.get_window_extent()
    height = rgba.shape[0]
    inside = np.zeros(rgba.shape[:2], bool)  # the axes only (the figure around them is white)
    inside[int(height - box.y1) + 2:int(height - box.y0) - 2, int(box.x0) + 2:int(box.x1) - 2] = True
    marker = np.argwhere((rgba >= 250).all(-1) & inside)
    plt.close(fig)
    assert len(marker), "marker not drawn"
    y, x = marker.mean(0)
    h, w = sv.image.shape
    row = (y - (height - box.y1)) / box.height * h - 0.5
    col = (x - box.x0) / box.width * w - 0.5
    return row, col


@pytest.mark.parametrize("render", [_raster_position, _matplotlib_position], ids=["raster", "matplotlib"])
@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("view", ["sagittal", "coronal", "axial"])
def test_a_marker_lands_on_its_anatomical_side(view, name, render):
    affine = AFFINES[name]
    codes = axis_codes(affine)
    for direction, side in ((UP[view], "top"), (LEFT[view], "left"), (np.negative(UP[view]), "bottom"),
                            (np.negative(LEFT[view]), "right")):
        image, label, index, voxel = _marked(affine, view, direction)
        sv = slice_view(image, label, np.zeros((3, *SHAPE), np.float32), view, index, axcodes=codes)
        row, col = render(sv)
        dr, dc = row - (sv.image.shape[0] - 1) / 2, col - (sv.image.shape[1] - 1) / 2
        moved = {"top": -dr, "bottom": dr, "left": -dc, "right": dc}[side]
        assert moved > 3 and moved > 2 * abs(dc if side in ("top", "bottom") else dr), (view, name, side, row, col)
        # the contour of the marker's label is drawn where its pixel is (the same reordering)
        lab = np.argwhere(sv.moving_label > 0)[0]
        assert abs(lab[0] - row) < 0.6 and abs(lab[1] - col) < 0.6
        assert sv.edges[side] == {"top": "SSA", "bottom": "IIP", "left": "ARR", "right": "PLL"}[side][
            ("sagittal", "coronal", "axial").index(view)]


@pytest.mark.parametrize("name", list(AFFINES))
def test_neurological_convention_puts_the_patients_right_on_the_right(name):
    affine = AFFINES[name]
    for view in ("coronal", "axial"):
        image, label, index, _ = _marked(affine, view, (1, 0, 0))  # the patient's right
        sv = slice_view(image, label, np.zeros((3, *SHAPE), np.float32), view, index, axcodes=axis_codes(affine),
                        lr="neurological")
        _, col = _raster_position(sv)
        assert col - (sv.image.shape[1] - 1) / 2 > 3 and sv.edges["right"] == "R"
        assert "neurological" in orientation_caption([sv])


@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("mode", ["motion", "sampling"])
def test_arrows_turn_with_the_pixels(name, mode):
    """A translation of the structure towards the patient's superior (sagittal, coronal) or anterior (axial)
    side draws arrows pointing up; towards the patient's right, arrows pointing left (radiological)."""
    affine = AFFINES[name]
    codes = axis_codes(affine)
    image = np.full(SHAPE, BACKGROUND, np.float32)
    label = np.zeros(SHAPE, np.uint8)
    label[5:10, 6:11, 7:12] = 1
    for view in ("sagittal", "coronal", "axial"):
        for world, expect in ((UP[view], (-1, 0)), (LEFT[view], (0, -1))):
            motion = np.linalg.solve(affine[:3, :3], np.asarray(world, float))   # voxels, (D, H, W)
            motion = 1.5 * motion / np.linalg.norm(motion)
            # a translation's sampling offset is minus its motion
            disp = np.broadcast_to(-motion[:, None, None, None], (3, *SHAPE)).astype(np.float32)
            sv = slice_view(image, label, disp, view, axcodes=codes, arrows=mode)
            drawn = sv.arrows[:, sv.arrows.shape[1] // 2, sv.arrows.shape[2] // 2]
            drawn = drawn if mode == "motion" else -drawn        # the sampling offset points the other way
            unit = drawn / np.linalg.norm(drawn)
            assert np.dot(unit, expect) > 0.85, (view, name, world, drawn)


def test_phantoms_are_anatomically_placed(tmp_path):
    """The phantoms are written LPS: the hippocampus' head (label 1) is anterior of its body (label 2) in
    world coordinates, and both views say so (head on the left of a sagittal picture)."""
    import nibabel as nib

    from regexplain.data.synthetic import PHANTOM_AXCODES, synthesize_hippocampus

    root = synthesize_hippocampus(tmp_path / "h", 2, (32, 32, 32), seed=0, progress=False)
    img = nib.load(str(next((root / "labelsTr").glob("*.nii.gz"))))
    label = np.asarray(img.dataobj)
    assert axis_codes(img.affine) == PHANTOM_AXCODES == ("L", "P", "S")
    world = {k: (img.affine @ np.r_[np.argwhere(label == k).mean(0), 1.0])[:3] for k in (1, 2)}
    assert world[1][1] > world[2][1] + 3  # head anterior (RAS y) of the body by more than 3 mm
    sv = slice_view(label.astype(np.float32), label, np.zeros((3, *label.shape), np.float32), "sagittal",
                    axcodes=axis_codes(img.affine))
    cols = {k: np.argwhere(sv.moving_label == k)[:, 1].mean() for k in (1, 2)}
    assert cols[1] < cols[2]  # anterior on the left
