"""docs/usage.md's "your own folder" walkthrough, run through the CLI on a small REAL MRI: the brain T1
(33 x 41 x 25 voxels of 2 mm) that nibabel ships in its wheel (``nibabel/tests/data/anatomical.nii``;
read from the installed package, nothing downloaded). Six "subjects" are shifted crops of it, labelled by
intensity (1: dark CSF / ventricles, 2: bright white matter) -- real anatomy, real scanner noise, in the
MSD layout a user would write, smaller than every profile's split counts."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from regexplain import cli

CROP = (28, 34, 22)
SHIFTS = [(0, 0, 0), (5, 7, 3), (2, 4, 1), (4, 1, 2), (1, 6, 3), (3, 3, 0)]


def shipped_mri() -> tuple[np.ndarray, np.ndarray]:
    from nibabel.testing import data_path

    img = nib.load(str(Path(data_path) / "anatomical.nii"))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def brain_folder(root: Path, n: int = 6) -> Path:
    """``n`` (<= 6) shifted crops of the shipped MRI with intensity labels, as dataset.json +
    imagesTr/labelsTr."""
    image, affine = shipped_mri()
    smooth = ndimage.gaussian_filter(image, 1.0)
    label = np.where(smooth < np.percentile(smooth, 12), 1, np.where(smooth > np.percentile(smooth, 85), 2, 0))
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    entries = []
    for k, s in enumerate(SHIFTS[:n]):
        window = tuple(slice(a, a + n) for a, n in zip(s, CROP, strict=True))
        crop_affine = affine.copy()
        crop_affine[:3, 3] = affine[:3, :3] @ np.array(s) + affine[:3, 3]   # same anatomy, same mm
        name = f"brain_{k:03d}.nii.gz"
        nib.save(nib.Nifti1Image(image[window], crop_affine), str(root / "imagesTr" / name))
        nib.save(nib.Nifti1Image(label[window].astype(np.uint8), crop_affine), str(root / "labelsTr" / name))
        entries.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    (root / "dataset.json").write_text(json.dumps({"name": "brain crops", "training": entries}))
    return root


def run(capsys, *argv) -> str:
    assert cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize("n, n_train, n_val", [(6, 4, 2), (4, 2, 2)])   # 4: the smallest folder accepted
def test_walkthrough_on_a_real_mri(tmp_path, capsys, n, n_train, n_val):
    t0 = time.perf_counter()
    data, runs = brain_folder(tmp_path / "brains", n), tmp_path / "runs"
    info = run(capsys, "data", "info", data)
    assert f"volumes   {n} from {n} subjects" in info and "labels    [0, 1, 2]" in info
    assert f"takes {n_train} train / {n_val} val (fractions" in info

    run(capsys, "train", "--profile", "smoke", "--data", data, "--out", runs / "brain", "--steps", "2",
        "--no-progress")
    split = json.loads((data / "split.json").read_text())
    assert (len(split["train"]), len(split["val"]), split["rule"]) == (n_train, n_val, "fractions")  # smoke: 8/4

    run(capsys, "evaluate", "--model", runs / "brain", "--out", runs / "brain" / "evaluation.json")
    summary = json.loads((runs / "brain" / "evaluation.json").read_text())
    assert summary["n_pairs"] == min(2, n_val * (n_val - 1))   # smoke: 2 pairs, of different subjects

    moving, fixed = (data / "imagesTr" / f"brain_{k:03d}.nii.gz" for k in (0, 1))
    run(capsys, "register", "--model", runs / "brain", "--moving", moving, "--fixed", fixed,
        "--moving-label", data / "labelsTr" / "brain_000.nii.gz", "--out", runs / "reg")
    itk = nib.load(str(runs / "reg" / "displacement_itk.nii.gz"))
    assert itk.shape == (*CROP, 1, 3)
    np.testing.assert_allclose(itk.affine, nib.load(str(fixed)).affine, atol=1e-5)
    # the crops sit at different origins: the ITK field carries that too, and SimpleITK resamples the
    # moving crop into regexplain's warped.nii.gz
    pytest.importorskip("SimpleITK")
    from test_itk import inside, sitk_resample

    ours = np.asarray(nib.load(str(runs / "reg" / "warped.nii.gz")).dataobj)
    theirs = sitk_resample(moving, runs / "reg" / "displacement_itk.nii.gz", runs / "reg" / "warped.nii.gz")
    mask = inside(np.moveaxis(np.asarray(nib.load(str(runs / "reg" / "displacement_voxels.nii.gz")).dataobj),
                              -1, 0))
    assert mask.mean() > 0.5
    assert np.abs(theirs - ours)[mask].max() < 1e-3 * np.abs(ours).max()

    out = run(capsys, "decompose", "--model", runs / "brain", "--out", runs / "brain" / "decomposition")
    assert f"{n_train} train / {n_val} val" in out and f"K={min(4, n_train - 1)}" in out   # K <= N - 1
    run(capsys, "casestudy", "--model", runs / "brain", "--decomposition", runs / "brain" / "decomposition",
        "--out", runs / "brain" / "casestudy")
    assert json.loads((runs / "brain" / "casestudy" / "casestudy.json").read_text())["n_subjects"] == n_val

    # the explorer: the page Voilà serves, built by the same code (no server in the fast suite)
    pytest.importorskip("ipywidgets")
    from regexplain.app.page import explorer_page

    page = explorer_page(str(runs / "brain" / "decomposition"))
    assert "explorer-error" not in page._dom_classes
    print(f"own-data walkthrough, {n} crops of nibabel's anatomical.nii: {time.perf_counter() - t0:.1f} s")
