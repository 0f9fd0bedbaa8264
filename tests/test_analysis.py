"""Case-study transforms (casestudy.py), the affine content fit (affine.py) and the interpretability report
(report.py)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from regexplain.analysis import affine, casestudy, report
from regexplain.analysis.latent import Decomposition, encode_volumes
from regexplain.registration import spatial
from regexplain.registration.model import RegistrationNet

N = 24
SHAPE = (N, N, N)


def _ellipsoid(shape=SHAPE, radii=(6.0, 3.0, 3.0), center=None):
    c = spatial.volume_center(shape) if center is None else torch.tensor(center, dtype=torch.float64)
    x = spatial.identity_map(shape, dtype=torch.float64)[0]
    r = torch.tensor(radii, dtype=torch.float64).view(3, 1, 1, 1)
    return ((((x - c.view(3, 1, 1, 1)) / r) ** 2).sum(0) <= 1).float()[None, None]


def _moments(vol):
    x = spatial.identity_map(vol.shape[2:], dtype=torch.float64)[0].flatten(1)
    w = vol[0, 0].double().flatten()
    c = (x * w).sum(1) / w.sum()
    y = x - c[:, None]
    return c.numpy(), ((y * w) @ y.T / w.sum()).numpy()


def _apply(vol, phi):
    return spatial.warp(vol, phi)


def test_translation_moves_centroid_along_z():
    vol = _ellipsoid()
    maps = casestudy.case_study_transforms(SHAPE)
    c0, _ = _moments(vol)
    c1, _ = _moments(_apply(vol, maps["translation"]))
    np.testing.assert_allclose(c1 - c0, [0.0, 0.0, 10.0 * N / 64], atol=0.05)
    c2, _ = _moments(_apply(vol, casestudy.case_study_transforms(SHAPE, translation_vox=4)["translation"]))
    np.testing.assert_allclose(c2 - c0, [0.0, 0.0, 4.0], atol=0.05)
    c3, _ = _moments(_apply(vol, casestudy.case_study_transforms(SHAPE, strength=0.3)["translation"]))
    np.testing.assert_allclose(c3 - c0, [0.0, 0.0, 3.0 * N / 64], atol=0.05)


def test_strength_zero_is_identity_and_strength_scales_the_groups():
    ident = spatial.identity_map(SHAPE)
    for phi in casestudy.case_study_transforms(SHAPE, strength=0.0).values():
        torch.testing.assert_close(phi, ident, atol=1e-5, rtol=0)
    # half strength twice = full strength, for rotation, translation and zoom alike
    half = casestudy.case_study_transforms(SHAPE, strength=0.5)
    full = casestudy.case_study_transforms(SHAPE)
    hi = torch.tensor(SHAPE, dtype=torch.float32).view(1, 3, 1, 1, 1) - 1
    for name in casestudy.TRANSFORM_NAMES:
        twice = spatial.warp(half[name].double(), half[name].double())  # phi_h(phi_h(x))
        inside = torch.stack([(m >= 0) & (m <= hi) for m in (half[name], full[name])]).all(0).all(1, keepdim=True)
        inside = inside.expand_as(twice)
        assert inside.float().mean() > 0.5                             # (sampling outside is clamped)
        torch.testing.assert_close(twice.float()[inside], full[name][inside], atol=1e-3, rtol=0)


def test_rotation_turns_long_axis_by_20_degrees_about_z():
    vol = _ellipsoid()  # long axis along D, in the (D, H) plane turned by a rotation about z
    _, cov = _moments(_apply(vol, casestudy.case_study_transforms(SHAPE)["rotation"]))
    w, v = np.linalg.eigh(cov)
    long_axis = v[:, -1] * np.sign(v[0, -1])
    assert abs(long_axis[2]) < 1e-3
    angle = np.degrees(np.arctan2(long_axis[1], long_axis[0]))
    assert angle == pytest.approx(20.0, abs=1.0)  # +x turns towards +y (spatial.rotation_matrix)


def _gaussian(shape=SHAPE, sigmas=(3.0, 2.5, 2.0)):
    """Smooth blob: its moments survive resampling, unlike a binary shape's."""
    x = spatial.identity_map(shape, dtype=torch.float64)[0]
    c = spatial.volume_center(shape).view(3, 1, 1, 1)
    s = torch.tensor(sigmas, dtype=torch.float64).view(3, 1, 1, 1)
    return torch.exp(-0.5 * (((x - c) / s) ** 2).sum(0)).float()[None, None]


def test_scaling_zooms_by_1_2():
    vol = _gaussian()
    c0, cov0 = _moments(vol)
    c1, cov1 = _moments(_apply(vol, casestudy.case_study_transforms(SHAPE)["scaling"]))
    np.testing.assert_allclose(c1, c0, atol=0.05)
    ratio = np.sqrt(np.trace(cov1) / np.trace(cov0))
    assert ratio == pytest.approx(1.2, abs=0.02)  # trilinear resampling blurs slightly
    zoomed = casestudy.transform_volumes(vol, casestudy.case_study_transforms(SHAPE)["scaling"])
    analytic = _gaussian(sigmas=(3.6, 3.0, 2.4))   # the blob with every radius times 1.2
    assert (zoomed - analytic).abs().max() < 0.04   # (the unzoomed blob is off by > 0.1)
    assert (vol - analytic).abs().max() > 0.1


def _grid(shape=(10, 12, 9)):
    return spatial.identity_map(shape, dtype=torch.float64)[0].numpy()


def test_affine_fit_recovers_known_affine_exactly():
    rng = np.random.default_rng(0)
    x = _grid()
    a, t0 = 0.1 * rng.standard_normal((3, 3)), rng.standard_normal(3)
    mask = np.zeros(x.shape[1:], bool)
    mask[2:8, 1:11, 3:7] = True                     # anisotropic, off-centre foreground
    ref = np.array([1.0, 2.0, 3.0])
    disp = np.einsum("ij,j...->i...", a, x - ref[:, None, None, None]) + t0[:, None, None, None]
    out = affine.affine_content(disp, mask)
    c = np.array(out["c"])
    np.testing.assert_allclose(out["A"], a, atol=1e-10)
    np.testing.assert_allclose(out["t"], t0 + a @ (c - ref), atol=1e-10)
    assert out["nonaffine"] == pytest.approx(0.0, abs=1e-10)
    fr = [out[k] for k in ("translation", "rotation", "scale", "shear", "nonaffine")]
    assert sum(fr) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("kind", ["translation", "rotation", "scale", "shear"])
def test_affine_fit_pure_parts(kind):
    x = _grid((9, 9, 9))  # isotropic scatter: the linear groups are mutually orthogonal
    c = x.reshape(3, -1).mean(1)
    y = x - c[:, None, None, None]
    mats = {"rotation": np.array([[0, -0.1, 0], [0.1, 0, 0], [0, 0, 0]]), "scale": 0.05 * np.eye(3),
            "shear": np.array([[0, 0.1, 0], [0.1, 0, 0], [0, 0, 0]])}
    disp = (np.ones_like(x) * np.array([1.0, -2.0, 0.5])[:, None, None, None] if kind == "translation"
            else np.einsum("ij,j...->i...", mats[kind], y))
    out = affine.affine_content(disp)
    assert out[kind] == pytest.approx(1.0, abs=1e-9)


def test_affine_fractions_add_up_for_a_random_field():
    rng = np.random.default_rng(1)
    disp = rng.standard_normal((3, 10, 12, 9))
    mask = rng.random((10, 12, 9)) > 0.6
    out = affine.affine_content(disp, mask)
    fr = [out[k] for k in ("translation", "rotation", "scale", "shear", "nonaffine")]
    assert all(f >= 0 for f in fr) and sum(fr) == pytest.approx(1.0, abs=1e-10)
    # brute force: the affine share equals 1 - residual of a plain least-squares fit
    pts = np.stack(np.nonzero(mask), 1).astype(float)
    design = np.concatenate([pts, np.ones((len(pts), 1))], 1)
    target = disp[:, mask].T
    resid = target - design @ np.linalg.lstsq(design, target, rcond=None)[0]
    assert out["nonaffine"] == pytest.approx((resid ** 2).sum() / (target ** 2).sum(), rel=1e-9)


def test_affine_fit_rejects_degenerate_mask():
    mask = np.zeros((6, 6, 6), bool)
    mask[2, :, :] = True  # one plane
    with pytest.raises(ValueError, match="non-coplanar"):
        affine.affine_content(np.zeros((3, 6, 6, 6)), mask)


def _net(skip=False):
    torch.manual_seed(0)
    return RegistrationNet((2, 4, 4), skip_connections=skip)


def test_case_study_identity_transform_gives_zero_deltas():
    net = _net()
    images = torch.rand(4, 1, 8, 8, 8)
    z = encode_volumes(net, images)
    dec = Decomposition.fit(np.concatenate([z, z + 0.1 * np.random.default_rng(0).standard_normal(z.shape)]),
                            3, latent_shape=net.latent_shape((8, 8, 8)))
    out = casestudy.case_study(net, dec, images, {"identity": spatial.identity_map((8, 8, 8))})
    assert out["identity"].shape == (4, 3)
    np.testing.assert_allclose(out["identity"], 0.0, atol=1e-4)
    default = casestudy.case_study(net, dec, images)
    assert set(default) == set(casestudy.TRANSFORM_NAMES) and all(np.all(v >= 0) for v in default.values())


def _phantoms(n, seed):
    """Blobs translated along each axis by known factors (different ranges per axis)."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(-1, 1, size=(n, 3)) * np.array([2.0, 1.2, 0.6])
    c = np.array([7.5, 7.5, 7.5])
    imgs = torch.cat([_ellipsoid((16, 16, 16), (4.0, 3.0, 2.5), c + fi) for fi in f])
    return imgs, f


@pytest.mark.slow
def test_interpretability_report_runs_and_is_json(tmp_path):
    net = _net()
    tr, f_tr = _phantoms(16, 0)
    va, f_va = _phantoms(8, 1)
    ids_tr, ids_va = [f"t{i}" for i in range(16)], [f"v{i}" for i in range(8)]
    train = SimpleNamespace(images=tr, labels=tr.long(), ids=ids_tr)
    val = SimpleNamespace(images=va, labels=va.long(), ids=ids_va)
    factors = (ids_tr + ids_va, ["tx", "ty", "tz"], np.concatenate([f_tr, f_va]))
    z = encode_volumes(net, tr)
    dec = Decomposition.fit(z, 4, latent_shape=net.latent_shape((16, 16, 16)))
    rep = report.interpretability_report(net, dec, train, val, factors, k_info=3, n_null=2, n_boot=2,
                                           n_affine=2)
    json.dumps(rep)
    assert len(rep["latent"]["r2_at_3"]) == 3 and len(rep["latent"]["r2_curve"]) == 4
    assert set(rep["latent"]["selectivity"]) == set(casestudy.TRANSFORM_NAMES)
    sweep = rep["latent"]["selectivity_by_strength"]
    assert sweep["strengths"] == [0.2, 0.4, 0.6, 1.0]
    assert all(len(sweep[t]) == 4 for t in casestudy.TRANSFORM_NAMES)
    for t in casestudy.TRANSFORM_NAMES:                               # strength 1 = the case study itself
        for key in ("top_share", "mean_top_share"):
            assert sweep[t][-1][key]["observed"] == pytest.approx(rep["latent"]["selectivity"][t][key]["observed"])
    assert "fields" in rep and len(rep["fields"]["affine"]["components"]) == 2
