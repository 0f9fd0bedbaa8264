"""The real-anatomy check's folder (regexplain.data.real_anatomy) on a small synthetic template and atlas:
crops are checked against the atlas itself through the affines they are written with."""

import dataclasses
import importlib.machinery
import importlib.util
import json

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from regexplain.cli import main
from regexplain.data import msd
from regexplain.data import real_anatomy as ra
from regexplain.data.nifti import write_nifti

SHAPE = (80, 90, 70)
AFFINE = np.array([[1.0, 0, 0, -39.5], [0, 1, 0, -45], [0, 0, 1, -35], [0, 0, 0, 1]])   # RAS, 1 mm


def _atlas() -> np.ndarray:
    """Two tilted ellipsoids, mirror images of each other about x = 0: 37 left (x < 0), 38 right."""
    idx = np.indices(SHAPE).reshape(3, -1).T.astype(float)
    w = idx @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    lab = np.zeros(len(w), np.uint8)
    for value, sign in ((37, -1), (38, 1)):
        q = w - np.array([sign * 20.0, -2.0, -6.0])
        # long axis along y, tilted up by ~25 degrees posteriorly
        c, s = np.cos(0.44), np.sin(0.44)
        y, z = c * q[:, 1] + s * q[:, 2], -s * q[:, 1] + c * q[:, 2]
        lab[(q[:, 0] / 6) ** 2 + (y / 18) ** 2 + (z / 7) ** 2 < 1] = value
    return lab.reshape(SHAPE)


def _write_sources(folder, n_templates=2):
    folder.mkdir(parents=True, exist_ok=True)
    atlas = _atlas()
    write_nifti(folder / "aal.nii.gz", atlas, AFFINE)
    rng = np.random.default_rng(0)
    for name in ("ch2.nii.gz", "tpl-MNI152NLin6Asym_res-01_T1w.nii.gz")[:n_templates]:
        img = 300 + 200 * ndimage.gaussian_filter(rng.standard_normal(SHAPE), 4) + 150 * (atlas > 0)
        write_nifti(folder / name, img.astype(np.float32), AFFINE)
    return atlas


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No installed package is seen: Debian's folder moved to an empty one, no pip package found."""
    empty = tmp_path / "no_debian"
    monkeypatch.setattr(ra, "SOURCES", tuple(dataclasses.replace(s, where=str(empty))
                                             if s.package == "mricron-data" else s for s in ra.SOURCES))
    monkeypatch.setattr(ra, "ATLAS", dataclasses.replace(ra.ATLAS, where=str(empty)))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("nilearn", "nimare") else real(name, *a))
    return tmp_path


def test_missing_sources_name_what_to_install(isolated, capsys):
    found = ra.find_sources()
    assert not found.usable and not found.templates and found.atlas is None
    assert "apt-get install mricron-data" in found.why_not() and "regexplain[realdata]" in found.why_not()
    assert len(found.missing) == len(ra.SOURCES) + 1
    # the command refuses with that one line, exit 2, and writes nothing
    assert main(["data", "real", "--out", str(isolated / "out")]) == 2
    err = capsys.readouterr().err
    assert "mricron-data" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (isolated / "out").exists()


def test_pip_package_files_are_found_without_importing(isolated, monkeypatch):
    pkg = isolated / "site" / "nilearn"
    (pkg / "datasets" / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (pkg / "datasets" / "data" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz").write_bytes(b"x")
    monkeypatch.syspath_prepend(str(isolated / "site"))
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: importlib.machinery.PathFinder.find_spec(name) if name == "nilearn" else None)
    found = ra.find_sources()
    assert [s.name for s, _ in found.templates] == ["mni152_2009a_sym"]
    assert found.templates[0][1].parent == pkg / "datasets" / "data"
    assert not found.usable and "AAL" in found.why_not()     # a template alone is not enough


def test_crops_hold_the_atlas_hippocampus_where_their_affine_says(isolated):
    atlas = _write_sources(isolated / "src")
    out = isolated / "real"
    found = ra.find_sources([isolated / "src"])
    assert found.usable and {s.name for s, _ in found.templates} == {"colin27", "mni152_nlin6_asym"}
    ra.build_real_anatomy(out, found.templates, found.atlas, crops=3, seed=1)
    vols = msd.load(out, progress=False)
    assert len(vols) == 2 * 2 * 3                              # 2 templates x 2 hemispheres x 3 crops
    rows = {r[0]: r for r in (ln.split(",") for ln in (out / "crops.csv").read_text().splitlines()[1:])}
    world = {v: np.argwhere(atlas == v) @ AFFINE[:3, :3].T + AFFINE[:3, 3] for v in (37, 38)}
    for v in vols:
        hemi = rows[v.id][3]
        lab_world = np.argwhere(v.label > 0) @ v.affine[:3, :3].T + v.affine[:3, 3]
        ref = world[ra.AAL_HIPPOCAMPUS[hemi]]
        # nearest-neighbour sampling of a rotated grid: the centroid within a voxel, the volume within 8 %
        assert np.abs(lab_world.mean(0) - ref.mean(0)).max() < 0.6
        assert abs(len(lab_world) / len(ref) - 1) < 0.08
        # array axis 0 grows laterally on both sides: the affine mirrors x for a left crop
        assert np.sign(v.affine[0, 0]) == (-1 if hemi == "L" else 1)
        # head (1) is the anterior half by volume
        head = np.argwhere(v.label == 1) @ v.affine[:3, :3].T + v.affine[:3, 3]
        body = np.argwhere(v.label == 2) @ v.affine[:3, :3].T + v.affine[:3, 3]
        assert head[:, 1].mean() > body[:, 1].mean() and abs(len(head) / len(lab_world) - ra.HEAD_SHARE) < 0.06
        # the crop's centre is the hippocampus' box centre plus the recorded offset
        off = np.array([float(x) for x in rows[v.id][7:10]])
        centre = v.affine[:3, :3] @ ((np.array(v.image.shape) - 1) / 2) + v.affine[:3, 3]
        box = (ref.min(0) + ref.max(0)) / 2
        assert np.allclose(centre, box + off, atol=1e-3) and np.abs(off).max() <= ra.OFFSET_MM
        # sizes: the structure's extent plus the margin, below the 64^3 window
        assert all(s <= ra.MAX_SIZE for s in v.image.shape)
        assert v.label[0].sum() + v.label[-1].sum() == 0        # the structure never touches the crop's x faces


def test_mirrored_left_crop_equals_right_crop_of_a_symmetric_brain(isolated):
    """The synthetic atlas and a template symmetric about x = 0: a left crop drawn with the right crop's
    size, offset and rotation (offset x mirrored) holds the same arrays, as image and label."""
    atlas = _write_sources(isolated / "src", n_templates=1)
    img = np.asarray(nib.load(isolated / "src" / "ch2.nii.gz").dataobj)
    img = img + img[::-1]                                   # symmetric about x = 0 (voxel 39.5)
    hip = {h: ra.hippocampus_geometry(atlas, AFFINE, v) for h, v in ra.AAL_HIPPOCAMPUS.items()}
    size, off, rot = (40, 50, 44), np.array([1.5, -2.0, 0.5]), (2.0, -3.0, 1.0)
    crops = {}
    for h in ("R", "L"):
        o = off * np.array([-1 if h == "L" else 1, 1, 1])
        r = np.array(rot) * np.array([1, -1, -1]) if h == "L" else np.array(rot)   # mirrored rotation
        a = ra.crop_affine(hip[h].center + o, size, r, mirror=h == "L")
        crops[h] = ra.sample_crop(img, AFFINE, atlas, AFFINE, hip[h], ra.AAL_HIPPOCAMPUS[h], a, size)
    np.testing.assert_allclose(crops["L"][0], crops["R"][0], rtol=1e-4, atol=1e-2)
    assert (crops["L"][1] != crops["R"][1]).mean() < 0.002   # nearest sampling at ties


def test_data_real_command_builds_from_search_folders(isolated, capsys):
    _write_sources(isolated / "src")
    out = isolated / "real"
    assert main(["data", "real", "--out", str(out), "--search", str(isolated / "src"), "--crops", "2",
                 "--offset-mm", "2"]) == 0
    text = capsys.readouterr().out
    assert "2 independent brains" in text and "not found: colin27_hires" in text
    assert len(list((out / "imagesTr").glob("*.nii.gz"))) == 8
    meta = json.loads((out / "real_anatomy.json").read_text())
    assert meta["offset_mm"] == 2.0 and sorted(meta["independent_brains"]) == ["colin27", "mni152_nlin6_asym"]
    assert main(["data", "real", "--out", str(out), "--search", str(isolated / "src")]) == 2   # exists
