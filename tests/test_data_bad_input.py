"""Every bad input gives a DataError naming the file and the problem, and writes nothing half-done."""

import gzip
import json
import shutil

import nibabel as nib
import numpy as np
import pytest

from regexplain.config import DataConfig
from regexplain.data import lung
from regexplain.data.nifti import write_nifti
from regexplain.data.pairs import load_splits
from regexplain.errors import DataError

SUBJ = "hippocampus_003"


@pytest.fixture
def ds(hippo_root, tmp_path):
    return shutil.copytree(hippo_root, tmp_path / "ds")


def _load(root):
    return load_splits(DataConfig(root=str(root), shape=(16, 16, 16), n_subjects=12, n_train=8, n_val=4),
                       progress=False)


def _img(root):
    return root / "imagesTr" / f"{SUBJ}.nii.gz"


def _lab(root):
    return root / "labelsTr" / f"{SUBJ}.nii.gz"


def _rewrite(path, fn):
    img = nib.load(path)
    arr, aff = fn(np.asarray(img.dataobj).copy(), img.affine.copy())
    write_nifti(path, arr, aff)


def _check(root, pattern):
    with pytest.raises(DataError, match=pattern):
        _load(root)
    assert not list(root.glob(".cache_*")) and not (root / "split.json").exists()


def test_corrupt_gz(ds):
    data = _img(ds).read_bytes()
    _img(ds).write_bytes(data[: len(data) // 3])  # truncated download
    _check(ds, rf"{SUBJ}.nii.gz: cannot read")


def test_not_gzip_at_all(ds):
    _img(ds).write_bytes(b"<html>404</html>")
    _check(ds, rf"{SUBJ}.nii.gz: cannot read")


def test_volume_not_3d(ds):
    _rewrite(_img(ds), lambda a, f: (np.stack([a, a], -1), f))
    _check(ds, rf"{SUBJ}.nii.gz: expected a 3-D volume")


def test_shape_mismatch(ds):
    _rewrite(_lab(ds), lambda a, f: (a[:-1], f))
    _check(ds, rf"labelsTr/{SUBJ}.nii.gz: label shape")


def test_affine_mismatch(ds):
    def shift(a, f):
        f[1, 3] += 5.0
        return a, f

    _rewrite(_lab(ds), shift)
    _check(ds, rf"labelsTr/{SUBJ}.nii.gz: label affine")


def test_label_values_outside_0_1_2(ds):
    def three(a, f):
        a[a == 2] = 3
        return a, f

    _rewrite(_lab(ds), three)
    _check(ds, rf"labelsTr/{SUBJ}.nii.gz: label values \[3\]")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_inf_intensities(ds, bad):
    def poison(a, f):
        a = a.astype(np.float32)
        a[2, 3, 4] = bad
        return a, f

    _rewrite(_img(ds), poison)
    _check(ds, rf"imagesTr/{SUBJ}.nii.gz: 1 NaN or Inf")


def test_empty_label(ds):
    _rewrite(_lab(ds), lambda a, f: (np.zeros_like(a), f))
    _check(ds, rf"labelsTr/{SUBJ}.nii.gz: empty label")


def test_listed_but_missing(ds):
    _img(ds).unlink()
    _check(ds, rf"imagesTr/{SUBJ}.nii.gz: listed in .*dataset.json but missing")


def test_dataset_json_broken(ds):
    (ds / "dataset.json").write_text("{not json")
    with pytest.raises(DataError, match="dataset.json: not valid JSON"):
        _load(ds)
    (ds / "dataset.json").write_text(json.dumps({"name": "x", "training": []}))
    with pytest.raises(DataError, match="dataset.json: needs a non-empty 'training'"):
        _load(ds)


def test_too_few_subjects_for_the_split(ds):
    with pytest.raises(DataError, match="only 12 found"):   # explicit counts must fit
        load_splits(DataConfig(root=str(ds), shape=(16, 16, 16), n_subjects=20, n_train=10, n_val=10,
                               exact_counts=True), progress=False)
    meta = json.loads((ds / "dataset.json").read_text())
    meta["training"] = meta["training"][:3]
    (ds / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="3 subject.*need at least 4"):
        _load(ds)
    assert not (ds / "split.json").exists()


def test_unknown_layout(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("hi")
    with pytest.raises(DataError, match="neither the MSD layout"):
        _load(tmp_path / "x")


def test_lung_mask_values_and_missing_state(lung_root, tmp_path):
    root = shutil.copytree(lung_root, tmp_path / "lung")
    mask = root / "patient_001" / "exp_mask.nii.gz"
    img = nib.load(mask)
    write_nifti(mask, np.asarray(img.dataobj) * 255, img.affine)
    with pytest.raises(DataError, match=r"patient_001/exp_mask.nii.gz: label values \[255\]"):
        lung.load(root, progress=False)
    (root / "patient_002" / "exp.nii.gz").unlink()
    with pytest.raises(DataError, match=r"patient_002: expected one exp image"):
        lung.list_volumes(root)


def test_gzip_of_garbage_names_file(tmp_path):
    p = tmp_path / "x.nii.gz"
    p.write_bytes(gzip.compress(b"\x00" * 400))
    from regexplain.data.nifti import read_nifti

    with pytest.raises(DataError, match="x.nii.gz"):
        read_nifti(p)
