import gzip

import nibabel as nib
import numpy as np
import pytest

from regexplain.data.nifti import check_label, read_nifti, read_volume, spacing_from_affine, write_nifti
from regexplain.errors import DataError


def _affine():
    a = np.diag([1.5, 0.8, 2.0, 1.0])
    a[:3, 3] = [-10.0, 4.0, 7.5]
    a[0, 1] = 0.1  # oblique: the affine must come back untouched, not re-derived
    return a


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii"])
@pytest.mark.parametrize("dtype", [np.float32, np.int16, np.uint8])
def test_round_trip_nibabel_writes_we_read(tmp_path, name, dtype):
    arr = np.random.default_rng(0).integers(0, 100, (5, 6, 7)).astype(dtype)
    nib.save(nib.Nifti1Image(arr, _affine()), tmp_path / name)
    out, aff = read_nifti(tmp_path / name)
    np.testing.assert_array_equal(out, arr.astype(np.float32))
    np.testing.assert_allclose(aff, _affine(), atol=1e-6)
    assert out.dtype == np.float32 and out.shape == (5, 6, 7)


@pytest.mark.parametrize("name", ["v.nii.gz", "v.nii"])
def test_round_trip_we_write_nibabel_reads(tmp_path, name):
    arr = np.random.default_rng(1).normal(size=(4, 5, 6)).astype(np.float32)
    write_nifti(tmp_path / name, arr, _affine())
    img = nib.load(tmp_path / name)
    np.testing.assert_array_equal(np.asarray(img.dataobj), arr)
    np.testing.assert_allclose(img.affine, _affine(), atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temp file left behind


def test_spacing_from_affine_matches_nibabel_zooms(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.float32), _affine()), tmp_path / "a.nii")
    zooms = nib.load(tmp_path / "a.nii").header.get_zooms()
    np.testing.assert_allclose(spacing_from_affine(_affine()), zooms, rtol=1e-5)


def test_trailing_singleton_dimension_is_a_volume(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 1), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    assert read_nifti(tmp_path / "a.nii.gz")[0].shape == (3, 4, 5)


def test_corrupt_file_names_the_file(tmp_path):
    p = tmp_path / "bad.nii.gz"
    p.write_bytes(gzip.compress(b"this is not a nifti header" * 20)[:50])
    with pytest.raises(DataError, match="bad.nii.gz"):
        read_nifti(p)


def test_not_3d(tmp_path):
    nib.save(nib.Nifti1Image(np.ones((3, 4, 5, 2), np.float32), np.eye(4)), tmp_path / "a.nii.gz")
    with pytest.raises(DataError, match=r"a.nii.gz.*3-D"):
        read_nifti(tmp_path / "a.nii.gz")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.nii.gz"):
        read_nifti(tmp_path / "nope.nii.gz")


def _pair(tmp_path, image, label, label_affine=None):
    write_nifti(tmp_path / "img.nii.gz", image, np.eye(4))
    write_nifti(tmp_path / "lab.nii.gz", label, np.eye(4) if label_affine is None else label_affine)
    return tmp_path / "img.nii.gz", tmp_path / "lab.nii.gz"


def _image():
    """A valid (non-constant) 4^3 image: constant images are refused before the label is checked."""
    return np.arange(64, dtype=np.float32).reshape(4, 4, 4)


def test_read_volume_ok(tmp_path):
    lab = np.zeros((4, 4, 4), np.uint8)
    lab[1, 1, 1], lab[2, 2, 2] = 1, 2
    v = read_volume("s", *_pair(tmp_path, _image(), lab))
    np.testing.assert_array_equal(v.label, lab)
    assert v.group == "s" and v.spacing == (1.0, 1.0, 1.0) and v.label.dtype == np.uint8


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_intensities(tmp_path, bad):
    img = np.ones((4, 4, 4), np.float32)
    img[1, 2, 3] = bad
    lab = np.ones((4, 4, 4), np.uint8)
    with pytest.raises(DataError, match=r"img.nii.gz.*NaN or Inf"):
        read_volume("s", *_pair(tmp_path, img, lab))


def test_shape_mismatch(tmp_path):
    with pytest.raises(DataError, match=r"lab.nii.gz.*shape"):
        read_volume("s", *_pair(tmp_path, _image(), np.ones((4, 4, 5), np.uint8)))


def test_affine_mismatch(tmp_path):
    moved = np.eye(4)
    moved[0, 3] = 2.0
    with pytest.raises(DataError, match=r"lab.nii.gz.*affine"):
        read_volume("s", *_pair(tmp_path, _image(), np.ones((4, 4, 4), np.uint8),
                                moved))


def test_label_values_outside_allowed(tmp_path):
    lab = np.zeros((4, 4, 4), np.uint8)
    lab[0, 0, 0] = 3
    with pytest.raises(DataError, match=r"lab.nii.gz.*\[3\]"):
        read_volume("s", *_pair(tmp_path, _image(), lab))


def test_empty_label(tmp_path):
    with pytest.raises(DataError, match=r"lab.nii.gz.*empty"):
        read_volume("s", *_pair(tmp_path, _image(), np.zeros((4, 4, 4), np.uint8)))


def test_fractional_label():
    with pytest.raises(DataError, match="integers"):
        check_label(np.full((2, 2, 2), 0.5), "x.nii.gz", (0, 1))
