import glob
import json
import re

import numpy as np
import pytest
import torch

from regexplain.data import lung, msd, synthetic
from regexplain.data.nifti import read_nifti
from regexplain.errors import DiskFullError
from regexplain.io import FAULT_ENV
from regexplain.registration import spatial


def _centroid(mask):
    return np.argwhere(mask).mean(axis=0)


def test_msd_layout_and_dataset_json(hippo_root):
    meta = json.loads((hippo_root / "dataset.json").read_text())
    assert meta["labels"] == {"0": "background", "1": "Anterior", "2": "Posterior"}
    assert "relase" in meta and meta["numTraining"] == 12 and meta["test"] == []
    vols = msd.load(hippo_root, progress=False)
    assert len(vols) == 12
    for v in vols:
        assert v.image.shape == (32, 32, 32) and v.spacing == (1.0, 1.0, 1.0)
        assert set(np.unique(v.label)) == {0, 1, 2}


def test_factors_header_and_rows(hippo_root):
    ids, names, values = synthetic.read_factors(hippo_root)
    assert names[:7] == ["rot_x_deg", "rot_y_deg", "rot_z_deg", "trans_x_vox", "trans_y_vox", "trans_z_vox",
                         "scale"]
    assert names[7:] == ["mode_1", "mode_2", "mode_3", "mode_4"]
    assert ids == [f"hippocampus_{i:03d}" for i in range(12)] and values.shape == (12, 11)
    assert (values[:, 6] > 0).all()


def test_subjects_reproduce_from_recorded_factors(hippo_root):
    meta = synthetic.read_meta(hippo_root)
    template = synthetic.regime_template(meta["regime"], meta["shape"], meta["seed"])
    ids, _, factors = synthetic.read_factors(hippo_root)
    img, lab = synthetic.render_hippocampus(template, factors)
    for k, sid in enumerate(ids):
        disk_img, _ = read_nifti(hippo_root / "imagesTr" / f"{sid}.nii.gz")
        disk_lab, _ = read_nifti(hippo_root / "labelsTr" / f"{sid}.nii.gz")
        agree = (disk_lab == lab[k, 0].numpy()).mean()
        assert agree > 0.995
        resid = disk_img - img[k, 0].numpy()
        # only the recorded noise is left (factors are written with 6 significant digits)
        assert abs(resid.std() - meta["noise_sd"]) < 0.2 * meta["noise_sd"]
        assert abs(resid.mean()) < 0.2 * meta["noise_sd"]


def test_translation_factors_move_the_structure_by_that_many_voxels(tmp_path):
    # Without local modes, rotation and scaling act about the volume centre, where the structure's mass
    # centre sits, so the label centroid moves by the recorded translation (x, y, z = axes 0, 1, 2).
    root = synthetic.synthesize_hippocampus(tmp_path / "d", 16, (32, 32, 32), seed=3, n_modes=0,
                                            progress=False)
    _, tpl_lab = synthetic.hippocampus_template((32, 32, 32), 3)
    c0 = _centroid(tpl_lab[0, 0].numpy() > 0)
    assert np.abs(c0 - 15.5).max() < 0.5
    ids, names, f = synthetic.read_factors(root)
    shifts = np.array([_centroid(read_nifti(root / "labelsTr" / f"{i}.nii.gz")[0] > 0) - c0 for i in ids])
    # voxelisation of a rotated, scaled mask blurs the centroid by a fraction of a voxel
    np.testing.assert_allclose(shifts, f[:, 3:6], atol=0.6)
    assert np.abs(shifts - f[:, 3:6]).mean() < 0.2


def test_rotation_about_z_turns_the_long_axis_in_the_xy_plane():
    shape = (32, 32, 32)
    tpl = synthetic.hippocampus_template(shape, 0)
    f = np.zeros((2, 7))
    f[:, 6] = 1.0
    f[1, 2] = 30.0  # rot_z
    _, lab = synthetic.render_hippocampus(tpl, f)

    def long_axis(mask):
        pts = np.argwhere(mask) - _centroid(mask)
        return np.linalg.eigh(pts.T @ pts)[1][:, -1]

    a0, a1 = long_axis(lab[0, 0].numpy() > 0), long_axis(lab[1, 0].numpy() > 0)
    assert abs(a0[1]) > 0.95  # the template lies along y
    angle = np.degrees(np.arccos(abs(a0 @ a1)))
    assert abs(angle - 30) < 4
    assert abs(a1[2] - a0[2]) < 0.05  # the turn stays in the (x, y) plane


def test_factor_sds_differ_and_scale_with_shape():
    names, sd64 = synthetic.hippocampus_factor_sd((64, 64, 64))
    _, sd32 = synthetic.hippocampus_factor_sd((32, 32, 32))
    rot, trans = sd64[0:3], sd64[3:6]
    assert len(set(rot)) == 3 and len(set(trans)) == 3
    np.testing.assert_allclose(sd32[3:6], trans / 2)
    np.testing.assert_allclose(sd32[0:3], rot)


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = synthetic.synthesize_hippocampus(tmp_path / "a", 3, (12, 12, 12), seed=5, progress=False)
    b = synthetic.synthesize_hippocampus(tmp_path / "b", 3, (12, 12, 12), seed=5, progress=False)
    c = synthetic.synthesize_hippocampus(tmp_path / "c", 3, (12, 12, 12), seed=6, progress=False)
    name = "imagesTr/hippocampus_002.nii.gz"
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "factors.csv").read_text() == (b / "factors.csv").read_text()
    assert (a / "factors.csv").read_text() != (c / "factors.csv").read_text()


def test_realistic_overlap_and_structured_background(tmp_path):
    root = synthetic.synthesize_hippocampus(tmp_path / "d", 10, (32, 32, 32), seed=1, progress=False)
    labs = [read_nifti(root / "labelsTr" / f"hippocampus_{i:03d}.nii.gz")[0] > 0 for i in range(10)]
    dice = [2 * (a & b).sum() / (a.sum() + b.sum()) for i, a in enumerate(labs) for b in labs[i + 1:]]
    assert 0.15 < np.mean(dice) < 0.75
    extent = np.ptp(np.argwhere(labs[0]), axis=0)
    assert 0.3 * 32 < extent.max() < 0.75 * 32
    img, _ = read_nifti(root / "imagesTr" / "hippocampus_000.nii.gz")
    background = img[~labs[0]]
    meta = synthetic.read_meta(root)
    assert background.std() > 5 * meta["noise_sd"]  # texture, not a flat field plus noise


def test_lung_layout_states_and_factors(lung_root):
    rows = lung.list_volumes(lung_root)
    assert [(p, s) for p, s, *_ in rows][:2] == [("patient_000", "insp"), ("patient_000", "exp")]
    assert len(rows) == 8
    ids, names, f = synthetic.read_factors(lung_root)
    assert ids[:2] == ["patient_000_insp", "patient_000_exp"]
    col = {n: k for k, n in enumerate(names)}
    for p in range(4):
        insp, _ = read_nifti(lung_root / f"patient_{p:03d}" / "insp_mask.nii.gz")
        exp, _ = read_nifti(lung_root / f"patient_{p:03d}" / "exp_mask.nii.gz")
        assert insp.sum() > exp.sum() > 0  # inspiration: lower diaphragm, wider chest
        assert f[2 * p, col["inspiration"]] == 1 and f[2 * p + 1, col["diaphragm_shift_vox"]] == 0
        # two lungs: the mask has two connected parts left and right of the midline
        assert insp[:32].sum() > 0 and insp[32:].sum() > 0


def test_existing_output_is_refused_and_failures_leave_nothing(tmp_path, monkeypatch):
    out = tmp_path / "d"
    out.mkdir()
    with pytest.raises(FileExistsError):
        synthetic.synthesize_hippocampus(out, 2, (8, 8, 8), progress=False)
    calls = {"n": 0}
    real = synthetic.write_nifti

    def filling(path, *a, **k):   # the disk fills up at the third volume: its bytes fail (ENOSPC)
        calls["n"] += 1
        if calls["n"] == 3:
            monkeypatch.setenv(FAULT_ENV, f"ENOSPC:{glob.escape(str(path))}")
        return real(path, *a, **k)

    monkeypatch.setattr(synthetic, "write_nifti", filling)
    with pytest.raises(DiskFullError, match=rf"^{re.escape(str(tmp_path / 'new'))}/(imagesTr|labelsTr)/\w+\.nii\.gz: "
                       "not written: the disk is full"):
        synthetic.synthesize_hippocampus(tmp_path / "new", 3, (8, 8, 8), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_render_is_batched_and_torch():
    tpl = synthetic.hippocampus_template((12, 12, 12), 0)
    f = np.tile([0, 0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0], (2, 1))
    img, lab = synthetic.render_hippocampus(tpl, f)
    assert img.shape == (2, 1, 12, 12, 12) and lab.dtype == torch.uint8
    torch.testing.assert_close(img[0], tpl[0][0], atol=1e-3, rtol=1e-4)  # zero factors: the template


@pytest.mark.parametrize("shape", [(32, 32, 32), (20, 12, 28)])
def test_global_part_of_the_map_is_the_spatial_affine_map(shape):
    # the map is evaluated on a coarse grid and interpolated: the affine part must stay exact
    _, sd = synthetic.hippocampus_factor_sd(shape, 0)
    f = np.random.default_rng(0).standard_normal((3, 7)) * sd * 2
    f[:, 6] = np.exp(f[:, 6])
    mats = torch.stack([spatial.affine_matrix(rotation=r.tolist(), scale=float(s)) for r, s in
                        zip(torch.as_tensor(f[:, :3]), f[:, 6], strict=True)])
    ref = spatial.affine_sampling_map(shape, mats, torch.as_tensor(f[:, 3:6]))
    torch.testing.assert_close(synthetic.hippocampus_map(shape, f), ref, atol=1e-4, rtol=0)


def test_msd_like_regime_has_small_pose_and_dominant_shape_variance(tmp_path):
    from regexplain.config import PHANTOM_REGIMES, load_config

    assert tuple(synthetic.REGIMES) == PHANTOM_REGIMES
    roots = {r: synthetic.synthesize_hippocampus(tmp_path / r, 24, (32, 32, 32), seed=1, regime=r,
                                                 progress=False) for r in ("pose", "msd_like")}
    spread, names = {}, None
    for r, root in roots.items():
        assert synthetic.read_meta(root)["regime"] == r
        ids, names, f = synthetic.read_factors(root)
        labels = [read_nifti(root / "labelsTr" / f"{i}.nii.gz")[0] > 0 for i in ids]
        # measured on the images, not on the recorded factors: the spread of the structure's position
        spread[r] = np.linalg.norm(np.std([_centroid(m) for m in labels], axis=0))
        pose, shape = f[:, :6].std(0), f[:, 7:].std(0)
        spread[r, "pose"], spread[r, "shape"] = pose, shape
    assert spread["msd_like"] < 0.7 * spread["pose"]    # the modes move the centroid a little too
    assert (spread["msd_like", "pose"] < spread["pose", "pose"]).all()
    assert (spread["msd_like", "shape"] > spread["pose", "shape"]).all()
    assert names[7:] == ["mode_1", "mode_2", "mode_3", "mode_4"]      # several shape modes, recorded
    cfg = load_config("smoke", "hippocampus", {"data": {"phantom_regime": "msd_like"}})
    assert cfg.data.phantom_regime == "msd_like"
    with pytest.raises(ValueError, match="unknown phantom regime"):
        synthetic.hippocampus_factor_sd((32, 32, 32), regime="flat")


def test_population_regime_gives_each_subject_an_anatomy_of_its_own(tmp_path):
    """Same factors, labels and subject 0 as the calibrated regime; every other subject's background is the
    render of its own template (seed + stride * i), so no two subjects share one brain."""
    shape, n, seed = (16, 16, 16), 4, 3
    cal = synthetic.synthesize_hippocampus(tmp_path / "c", n, shape, seed=seed, regime="calibrated", progress=False)
    pop = synthetic.synthesize_hippocampus(tmp_path / "p", n, shape, seed=seed, regime="population", progress=False)
    assert synthetic.read_meta(pop)["anatomies"] == "subject"
    assert synthetic.read_meta(cal)["anatomies"] == "one"
    assert (cal / "factors.csv").read_text() == (pop / "factors.csv").read_text()
    _, _, factors = synthetic.read_factors(pop)
    imgs = {}
    for i in range(n):
        name = f"hippocampus_{i:03d}.nii.gz"
        lab_c, lab_p = (read_nifti(r / "labelsTr" / name)[0] for r in (cal, pop))
        np.testing.assert_array_equal(lab_c, lab_p)      # the labelled tube is the same in every template
        img_c, img_p = (read_nifti(r / "imagesTr" / name)[0].astype(np.float64) for r in (cal, pop))
        imgs[i] = img_p
        if i == 0:
            np.testing.assert_array_equal(img_c, img_p)
            continue
        # the noise draws are the same in both: what differs is the anatomy, several noise SDs on average
        assert np.abs(img_c - img_p)[lab_p == 0].mean() > 3 * synthetic.NOISE_SD * synthetic.INTENSITY
        own = synthetic.render_hippocampus(synthetic.regime_template("population", shape,
                                                                     seed + synthetic.ANATOMY_STRIDE * i),
                                           factors[i:i + 1])[0][0, 0].numpy()
        resid = img_p - own       # only the noise (and int16 rounding) is left
        noise_sd = synthetic.NOISE_SD * synthetic.INTENSITY
        assert abs(resid.std() - noise_sd) < 0.3 * noise_sd
