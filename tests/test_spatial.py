"""spatial.py against independent references: scipy.ndimage resampling, numpy cumsum / gradient, analytic
affine maps, and the documented axis conventions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from deps import need
from scipy import ndimage

from regexplain.registration import spatial as sp

SHAPE = (12, 10, 14)


def _smooth_field(shape, amp, seed):
    """Random smooth displacement ``(3, D, H, W)`` in voxels (float64)."""
    rng = np.random.default_rng(seed)
    f = np.stack([ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) for _ in range(3)])
    return amp * f / np.abs(f).max()


def _image(shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 1.0)


def _t(a):
    return torch.as_tensor(a, dtype=torch.float64)[None]


def test_identity_map_is_voxel_coordinates():
    phi = sp.identity_map(SHAPE)[0].numpy()
    ref = np.stack(np.meshgrid(*[np.arange(n) for n in SHAPE], indexing="ij"))
    np.testing.assert_array_equal(phi, ref)


def test_warp_matches_map_coordinates_on_smooth_field():
    img = _image()
    phi = np.stack(np.indices(SHAPE)).astype(float) + _smooth_field(SHAPE, 3.0, 1)
    out = sp.warp(_t(img)[None], _t(phi))[0, 0].numpy()
    # grid_sample's border padding clamps coordinates = scipy's "nearest" extension for order 1
    ref = ndimage.map_coordinates(img, phi, order=1, mode="nearest")
    np.testing.assert_allclose(out, ref, atol=1e-10)


def test_warp_float32_and_batch_broadcast():
    img = torch.as_tensor(np.stack([_image(seed=0), _image(seed=1)]), dtype=torch.float32)[:, None]
    phi = sp.identity_map(SHAPE) + torch.as_tensor(_smooth_field(SHAPE, 2.0, 3), dtype=torch.float32)
    out = sp.warp(img, phi)  # map batch 1 broadcasts to 2 images
    for b in range(2):
        ref = ndimage.map_coordinates(img[b, 0].double().numpy(), phi[0].double().numpy(), order=1,
                                      mode="nearest")
        np.testing.assert_allclose(out[b, 0].numpy(), ref, atol=1e-5)


def test_warp_identity_is_exact():
    img = torch.rand(2, 3, *SHAPE)
    out = sp.warp(img, sp.identity_map(SHAPE))
    torch.testing.assert_close(out, img, atol=1e-6, rtol=0)


def test_voxel_grid_round_trip_and_align_corners():
    phi = _t(np.stack(np.indices(SHAPE)) + _smooth_field(SHAPE, 2.0, 4))
    torch.testing.assert_close(sp.grid_to_voxel(sp.voxel_to_grid(phi)), phi)
    grid = sp.voxel_to_grid(sp.identity_map(SHAPE, dtype=torch.float64))
    # the identity grid spans [-1, 1] exactly, last dim (x, y, z) = (W, H, D)
    assert grid[0, 0, 0, 0].tolist() == [-1.0, -1.0, -1.0]
    assert grid[0, -1, 0, -1].tolist() == [1.0, -1.0, 1.0]
    img = torch.rand(1, 1, *SHAPE, dtype=torch.float64)
    out = F.grid_sample(img, grid, mode="bilinear", align_corners=True)
    torch.testing.assert_close(out, img)


def test_displacement_map_round_trip():
    disp = _t(_smooth_field(SHAPE, 2.0, 5))
    phi = sp.displacement_to_map(disp)
    np.testing.assert_allclose(phi[0].numpy(), np.stack(np.indices(SHAPE)) + disp[0].numpy())
    torch.testing.assert_close(sp.map_to_displacement(phi), disp)


def test_integrate_gradients_against_numpy_cumsum():
    rng = np.random.default_rng(6)
    g = 0.5 + rng.random((2, 3, *SHAPE))
    phi = sp.integrate_gradients(torch.as_tensor(g)).numpy()
    for a in range(3):
        np.testing.assert_allclose(phi[:, a], np.cumsum(g[:, a], axis=1 + a) - 1.0)
        # positive gradients give a map strictly increasing along its own axis
        assert (np.diff(phi[:, a], axis=1 + a) > 0).all()


def identity_gradients(shape, batch: int = 1) -> torch.Tensor:
    """Spatial gradients of the identity map: ones ``(B, 3, D, H, W)``."""
    return torch.ones((batch, 3, *shape))


def map_to_gradients(phi: torch.Tensor) -> torch.Tensor:
    """Inverse of ``integrate_gradients`` by backward differences (first plane ``phi[0] + 1``): an
    independent reference for the cumulative sum."""
    out = []
    for a in range(3):
        p = phi[:, a]
        out.append(torch.cat([p.narrow(a + 1, 0, 1) + 1.0, p.diff(dim=a + 1)], dim=a + 1))
    return torch.stack(out, 1)


def test_integrate_identity_gradients_is_identity():
    phi = sp.integrate_gradients(identity_gradients(SHAPE, batch=2))
    torch.testing.assert_close(phi, sp.identity_map(SHAPE).expand(2, -1, -1, -1, -1))


def test_map_to_gradients_inverts_integration():
    phi = _t(np.stack(np.indices(SHAPE)) + _smooth_field(SHAPE, 2.0, 7))
    torch.testing.assert_close(sp.integrate_gradients(map_to_gradients(phi)), phi)


def test_integrated_translation_and_scaling_warp_like_scipy():
    """Integration of gradients that encode a translation (first plane) and an axis scaling, warped,
    against scipy.ndimage.affine_transform."""
    s, t = np.array([1.1, 0.9, 1.0]), np.array([1.5, -0.5, 2.0])
    g = np.ones((3, *SHAPE)) * s[:, None, None, None]
    for a in range(3):  # first plane = phi_a(0) + 1 with phi_a(x) = s_a x + t_a
        idx = [slice(None)] * 3
        idx[a] = 0
        g[(a, *idx)] = t[a] + 1.0
    phi = sp.integrate_gradients(_t(g))
    out = sp.warp(_t(_image())[None], phi)[0, 0].numpy()
    ref = ndimage.affine_transform(_image(), np.diag(s), offset=t, order=1, mode="nearest")
    np.testing.assert_allclose(out, ref, atol=1e-10)


def _rot_np(angle_deg, i, j):
    """Independent rotation in the (i, j) plane: +angle turns axis i towards axis j."""
    c, s = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


@pytest.mark.parametrize("kind", ["rotation_z", "rotation_x", "rotation_y", "translation", "scaling"])
def test_affine_maps_match_scipy_affine_transform(kind):
    c = (np.array(SHAPE) - 1) / 2.0
    t = np.zeros(3)
    if kind == "rotation_z":
        m, phi = _rot_np(25.0, 0, 1), sp.rotation_map(SHAPE, 25.0, "z", dtype=torch.float64)
    elif kind == "rotation_x":
        m, phi = _rot_np(-30.0, 1, 2), sp.rotation_map(SHAPE, -30.0, "x", dtype=torch.float64)
    elif kind == "rotation_y":
        m, phi = _rot_np(15.0, 2, 0), sp.rotation_map(SHAPE, 15.0, 1, dtype=torch.float64)
    elif kind == "translation":
        m, t = np.eye(3), np.array([1.5, -2.0, 3.25])
        phi = sp.translation_map(SHAPE, t, dtype=torch.float64)
    else:
        m, phi = 1.2 * np.eye(3), sp.scaling_map(SHAPE, 1.2, dtype=torch.float64)
    img = _image()
    out = sp.warp(_t(img)[None], phi)[0, 0].numpy()
    # forward content map y = m (x - c) + c + t  =>  out(y) = img(minv y + c - minv (c + t))
    minv = np.linalg.inv(m)
    ref = ndimage.affine_transform(img, minv, offset=c - minv @ (c + t), order=1, mode="nearest")
    np.testing.assert_allclose(out, ref, atol=1e-10)


def _point_image(shape, p):
    img = torch.zeros(1, 1, *shape, dtype=torch.float64)
    img[(0, 0, *p)] = 1.0
    return img


def _argmax3(img):
    return np.unravel_index(int(img.argmax()), img.shape[2:])


def test_convention_translation_along_z_moves_content_plus_w():
    shape = (9, 9, 9)
    out = sp.warp(_point_image(shape, (4, 4, 2)), sp.translation_map(shape, (0, 0, 3), dtype=torch.float64))
    assert _argmax3(out) == (4, 4, 5)
    assert float(out.max()) == pytest.approx(1.0)


def test_convention_rotation_about_z_sends_x_to_y():
    shape = (9, 9, 9)  # centre (4, 4, 4); +x = +D, +y = +H
    out = sp.warp(_point_image(shape, (7, 4, 4)), sp.rotation_map(shape, 90.0, "z", dtype=torch.float64))
    assert _argmax3(out) == (4, 7, 4)
    assert float(out.max()) == pytest.approx(1.0)


def test_convention_scaling_about_centre():
    shape = (9, 9, 9)
    out = sp.warp(_point_image(shape, (6, 4, 3)), sp.scaling_map(shape, 2.0, dtype=torch.float64))
    # offsets (+2, 0, -1) from the centre double; the peak is spread by the magnification but stays there
    assert _argmax3(out) == (8, 4, 2)


def test_warp_labels_is_linear_and_keeps_a_partition():
    lab = torch.as_tensor(np.random.default_rng(8).integers(0, 3, SHAPE))[None]
    oh = sp.one_hot(lab, 3).double()
    phi = _t(np.stack(np.indices(SHAPE)) + _smooth_field(SHAPE, 2.5, 9))
    w = sp.warp_labels(oh, phi)
    torch.testing.assert_close(w.sum(1), torch.ones_like(w[:, 0]))
    ref = ndimage.map_coordinates(oh[0, 1].numpy(), phi[0].numpy(), order=1, mode="nearest")
    np.testing.assert_allclose(w[0, 1].numpy(), ref, atol=1e-10)


def test_jacobian_determinant_of_affine_maps_is_det_m():
    rng = np.random.default_rng(10)
    for _ in range(3):
        m = np.eye(3) + 0.4 * rng.standard_normal((3, 3))
        x = np.stack(np.indices(SHAPE)).astype(float)
        phi = np.einsum("ij,j...->i...", m, x) + rng.standard_normal(3)[:, None, None, None]
        det = sp.jacobian_determinant(_t(phi))[0].numpy()
        np.testing.assert_allclose(det, np.linalg.det(m), rtol=1e-9, atol=1e-9)
    det = sp.jacobian_determinant(sp.rotation_map(SHAPE, 33.0, "y", dtype=torch.float64))
    np.testing.assert_allclose(det.numpy(), 1.0, atol=1e-9)
    det = sp.jacobian_determinant(sp.scaling_map(SHAPE, 0.8, dtype=torch.float64))
    np.testing.assert_allclose(det.numpy(), 0.8 ** -3, rtol=1e-9)  # sampling map of a zoom by 0.8


def test_jacobian_determinant_matches_numpy_gradient():
    phi = np.stack(np.indices(SHAPE)) + _smooth_field(SHAPE, 3.0, 11)
    J = np.stack([np.stack(np.gradient(phi[i]), 0) for i in range(3)], 0)  # J[i, j] = d phi_i / d x_j
    ref = np.linalg.det(np.moveaxis(J, (0, 1), (-2, -1)))
    np.testing.assert_allclose(sp.jacobian_determinant(_t(phi))[0].numpy(), ref, atol=1e-10)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="B, 3, D, H, W"):
        sp.integrate_gradients(torch.ones(1, 2, 4, 4, 4))
    with pytest.raises(ValueError, match="warp expects"):
        sp.warp(torch.ones(1, 4, 4, 4), sp.identity_map((4, 4, 4)))
    with pytest.raises(ValueError, match="axis"):
        sp.rotation_map((4, 4, 4), 10.0, "q")
    with pytest.raises(ValueError, match="positive"):
        sp.scaling_map((4, 4, 4), 0.0)


# --------------------------------------------------------------------------- ITK displacement (mm, LPS)

def _oblique_affine(rotation, spacing, origin):
    a = np.eye(4)
    a[:3, :3] = sp.affine_matrix(rotation=rotation).numpy() @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def test_itk_displacement_analytic_axes():
    """Identity affine: +1 voxel along i is +1 mm in RAS x, so -1 in LPS x; along k it stays +z; spacing
    scales it."""
    u = np.zeros((3, 4, 5, 6))
    u[0], u[2] = 1.0, 2.0
    d = sp.itk_displacement(u, np.diag([1.0, 1.0, 3.0, 1.0]))
    assert d.shape == (4, 5, 6, 3)
    np.testing.assert_allclose(d[1, 2, 3], [-1.0, 0.0, 6.0])
    with pytest.raises(ValueError, match="expected disp"):
        sp.itk_displacement(u[:2], np.eye(4))


@pytest.mark.parametrize("other_moving_grid", [False, True])
def test_itk_displacement_matches_simpleitk_geometry(tmp_path, other_moving_grid):
    """Independent reference: SimpleITK reads both NIfTI headers and maps indices to its own LPS physical
    points; d = moving(x + u) - fixed(x) per voxel, for oblique, anisotropic, shifted grids."""
    sitk = need("SimpleITK")
    import nibabel as nib

    shape = (7, 6, 5)
    fixed = _oblique_affine((20, -15, 30), (0.8, 1.2, 2.0), (-30.0, 12.5, 40.0))
    moving = _oblique_affine((12, 5, -20), (1.1, 0.9, 1.5), (-25.0, 10.0, 38.0)) if other_moving_grid else fixed
    u = _smooth_field(shape, 3.0, seed=4)
    imgs = []
    for name, aff in (("f", fixed), ("m", moving)):
        nib.save(nib.Nifti1Image(np.zeros(shape, np.float32), aff), str(tmp_path / f"{name}.nii"))
        imgs.append(sitk.ReadImage(str(tmp_path / f"{name}.nii")))
    d = sp.itk_displacement(torch.from_numpy(u), fixed, None if not other_moving_grid else moving)
    for x in np.ndindex(*shape):
        p = np.array(imgs[0].TransformIndexToPhysicalPoint([int(v) for v in x]))
        q = np.array(imgs[1].TransformContinuousIndexToPhysicalPoint((np.array(x) + u[(slice(None), *x)])
                                                                     .tolist()))
        np.testing.assert_allclose(d[x], q - p, atol=1e-4)   # header floats: qform is stored in float32
