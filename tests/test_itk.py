"""``register``'s ITK displacement field against SimpleITK: the moving image resampled by SimpleITK's
``DisplacementFieldTransform`` read from ``displacement_itk.nii.gz`` equals regexplain's ``warped.nii.gz``."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch
from deps import need
from scipy import ndimage

from regexplain.data.nifti import write_nifti
from regexplain.registration.inference import write_registration
from regexplain.registration.spatial import RAS_TO_LPS, affine_matrix

sitk = need("SimpleITK", module_level=True)

SHAPE = (24, 20, 16)


def oblique(rotation, spacing, origin) -> np.ndarray:
    a = np.eye(4)
    a[:3, :3] = affine_matrix(rotation=rotation).numpy() @ np.diag(spacing)
    a[:3, 3] = origin
    return a


def sitk_resample(moving_path, field_path, reference_path) -> np.ndarray:
    """Moving resampled by SimpleITK through the displacement file, (D, H, W); NaN outside the moving."""
    field = sitk.ReadImage(str(field_path))
    tx = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
    out = sitk.Resample(sitk.ReadImage(str(moving_path)), sitk.ReadImage(str(reference_path)), tx,
                        sitk.sitkLinear, float("nan"))
    return sitk.GetArrayFromImage(out).transpose(2, 1, 0)   # sitk arrays are (z, y, x)


def inside(u: np.ndarray) -> np.ndarray:
    """Voxels whose sample point lies in the moving volume (regexplain pads with border values there,
    SimpleITK with the default value)."""
    x = np.indices(u.shape[1:]) + u
    return np.all([(x[a] >= 0) & (x[a] <= n - 1) for a, n in enumerate(u.shape[1:])], axis=0)


@pytest.mark.parametrize("moving_grid", ["fixed", "other", "reflected"])
def test_simpleitk_resampling_matches_warped(tmp_path, moving_grid):
    """Oblique fixed grid (rotated axes, 0.8 x 1.2 x 2 mm, shifted origin); the moving image on the same
    grid, on another oblique grid, or both on a mirrored grid (negative determinant, like LAS scans)."""
    rng = np.random.default_rng(0)
    moving = (100 * ndimage.gaussian_filter(rng.random(SHAPE), 1.5)).astype(np.float32)
    u = np.stack([ndimage.gaussian_filter(rng.standard_normal(SHAPE), 3.0) for _ in range(3)])
    u = 3.0 * u / np.abs(u).max()                        # up to 3 voxels, far from identity
    fixed_aff = oblique((20, -15, 30), (0.8, 1.2, 2.0), (-30.0, 12.5, 40.0))
    if moving_grid == "reflected":
        fixed_aff[:3, 0] *= -1
    moving_aff = oblique((15, -10, 25), (0.9, 1.1, 1.8), (-28, 11, 41)) if moving_grid == "other" else fixed_aff
    write_nifti(tmp_path / "moving.nii.gz", moving, moving_aff)
    out = write_registration(tmp_path / "out", moving, torch.from_numpy(u).float(), fixed_aff, moving_aff)

    img = nib.load(str(out["displacement_itk"]))
    assert img.shape == (*SHAPE, 1, 3) and img.header.get_intent()[0] == "vector"
    assert int(img.header["intent_code"]) == 1007 and img.header.get_xyzt_units()[0] == "mm"
    np.testing.assert_allclose(img.affine, fixed_aff, atol=1e-5)
    vox = np.asarray(nib.load(str(out["displacement_voxels"])).dataobj)
    np.testing.assert_allclose(vox, np.moveaxis(u, 0, -1), atol=1e-6)   # the voxel field, as it was

    ours = np.asarray(nib.load(str(out["warped"])).dataobj)
    theirs = sitk_resample(tmp_path / "moving.nii.gz", out["displacement_itk"], out["warped"])
    mask = inside(u)
    assert mask.mean() > 0.7 and np.isfinite(theirs[mask]).all()
    diff = np.abs(theirs - ours)[mask].max()
    print(f"SimpleITK vs regexplain warped: max |diff| = {diff:.3g} (intensities 0..{moving.max():.0f})")
    assert diff < 1e-3                                    # float32 rounding; both interpolate trilinearly

    # control: the same vectors left in RAS (no LPS flip) resample elsewhere, so the check can fail
    ras = np.asarray(img.dataobj)[:, :, :, 0, :] @ RAS_TO_LPS
    nib.save(nib.Nifti1Image(ras[:, :, :, None, :], img.affine, img.header), str(tmp_path / "ras.nii.gz"))
    wrong = sitk_resample(tmp_path / "moving.nii.gz", tmp_path / "ras.nii.gz", out["warped"])
    assert np.nanmax(np.abs(wrong - ours)[mask]) > 1.0
