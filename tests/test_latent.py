"""Latent decomposition: PCA against planted directions and scikit-learn, save/load, elementary maps."""

import json

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from regexplain.analysis.latent import (
    Decomposition,
    component_displacements,
    displacement_stats,
    elementary_displacement,
    elementary_map,
    encode_volumes,
    strength,
    warp_by_component,
)
from regexplain.errors import DataError
from regexplain.registration import spatial
from regexplain.registration.model import RegistrationNet

SHAPE = (8, 8, 8)


def _planted(n=120, f=300, seed=0):
    rng = np.random.default_rng(seed)
    dirs = np.linalg.qr(rng.standard_normal((f, 3)))[0].T          # (3, F) orthonormal
    x = (rng.standard_normal((n, 3)) * np.array([10.0, 6.0, 3.0])) @ dirs
    return x + 0.05 * rng.standard_normal((n, f)) + rng.standard_normal(f), dirs


def test_pca_recovers_planted_directions():
    x, dirs = _planted()
    dec = Decomposition.fit(x, 3)
    cos = np.abs(np.sum(dec.components * dirs, axis=1))
    assert np.all(cos > 0.99)
    assert dec.explained_variance_ratio.sum() > 0.99


def test_pca_agrees_with_sklearn():
    x, _ = _planted(seed=1)
    dec = Decomposition.fit(x, 5)
    ref = PCA(n_components=5, svd_solver="full").fit(x)
    np.testing.assert_allclose(np.abs(np.sum(dec.components * ref.components_, axis=1)), 1.0, atol=1e-4)
    np.testing.assert_allclose(dec.explained_variance, ref.explained_variance_, rtol=1e-6)
    np.testing.assert_allclose(dec.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-6)
    np.testing.assert_allclose(np.abs(dec.project(x)), np.abs(ref.transform(x)), rtol=1e-4, atol=1e-4)


def test_project_reconstruct_roundtrip_and_sigma():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((10, 40))
    dec = Decomposition.fit(x, 9)            # N - 1 components span the centred data exactly
    a = dec.project(x)
    np.testing.assert_allclose(dec.reconstruct(a), x, atol=1e-5)
    np.testing.assert_allclose(a.std(0, ddof=1), dec.sigma, rtol=1e-5)
    assert strength(dec, 2, 3.0, "sigma") == pytest.approx(3.0 * dec.sigma[2])
    with pytest.raises(ValueError):
        Decomposition.fit(x, 10)
    with pytest.raises(IndexError):
        strength(dec, 9, 1.0)


def test_save_load_roundtrip(tmp_path):
    x, _ = _planted(n=20, f=24)
    dec = Decomposition.fit(x, 4, latent_shape=(3, 2, 2, 2), meta={"checkpoint": "run/ckpt.pt"})
    dec.extra["val_coefficients"] = dec.project(x[:5])
    dec.save(tmp_path / "d")
    back = Decomposition.load(tmp_path / "d")
    np.testing.assert_array_equal(back.components, dec.components)
    np.testing.assert_array_equal(back.extra["val_coefficients"], dec.extra["val_coefficients"])
    assert back.latent_shape == (3, 2, 2, 2) and back.meta["checkpoint"] == "run/ckpt.pt"
    info = json.loads((tmp_path / "d" / "decomposition.json").read_text())
    assert info["K"] == 4 and len(info["cumulative"]) == 4


def test_load_reports_the_bad_file(tmp_path):
    with pytest.raises(DataError, match="decomposition.npz"):
        Decomposition.load(tmp_path)
    x, _ = _planted(n=20, f=24)
    Decomposition.fit(x, 4).save(tmp_path)
    (tmp_path / "decomposition.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="decomposition.npz"):
        Decomposition.load(tmp_path)


def _net(seed=0, perturb=False):
    torch.manual_seed(seed)
    net = RegistrationNet((2, 4, 4))
    if perturb:  # a non-zero output layer, as after training
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.3 * torch.randn_like(p))
    return net


def test_encode_volumes_shape_and_batch_invariance():
    net = _net()
    images = torch.rand(5, 1, *SHAPE)
    z1 = encode_volumes(net, images, batch_size=1)
    z3 = encode_volumes(net, images, batch_size=3)
    assert z1.shape == (5, int(np.prod(net.latent_shape(SHAPE))))
    np.testing.assert_allclose(z1, z3, atol=1e-5)
    np.testing.assert_allclose(z1[2], net.encode(images[2:3]).detach().flatten().numpy(), atol=1e-5)


def _dec_for(net, seed=0):
    rng = np.random.default_rng(seed)
    f = int(np.prod(net.latent_shape(SHAPE)))
    return Decomposition.fit(rng.standard_normal((12, f)), 4, latent_shape=net.latent_shape(SHAPE))


def test_lambda_zero_is_identity_on_untrained_model():
    net = _net()
    dec = _dec_for(net)
    phi = elementary_map(net, dec, 0, 0.0)
    torch.testing.assert_close(phi, spatial.identity_map(SHAPE), atol=1e-5, rtol=0)
    image = torch.rand(1, 1, *SHAPE)
    label = (image > 0.5).long()
    warped, wl = warp_by_component(net, dec, 1, 0.0, image, label)
    torch.testing.assert_close(warped, image, atol=1e-5, rtol=0)
    assert torch.equal(wl, label)


def test_displacement_grows_with_lambda_and_relative_to_zero():
    net = _net(perturb=True)
    dec = _dec_for(net)
    norms = [displacement_stats(elementary_displacement(net, dec, 0, lam, "sigma", relative_to_zero=True)
                                )["mean_norm"] for lam in (0.0, 1.0, 3.0)]
    assert norms[0] == pytest.approx(0.0, abs=1e-6)
    assert 0 < norms[1] < norms[2]
    batch = component_displacements(net, dec, 1.0, "sigma", [0, 2], relative_to_zero=True)
    single = elementary_displacement(net, dec, 2, 1.0, "sigma", relative_to_zero=True)
    torch.testing.assert_close(batch[1:2], single, atol=1e-5, rtol=0)


def test_displacement_stats_constant_field():
    disp = np.zeros((3, *SHAPE))
    disp[0], disp[2] = 3.0, 4.0
    s = displacement_stats(disp)
    np.testing.assert_allclose(s["mean_vector"], [3.0, 0.0, 4.0])
    assert s["mean_norm"] == pytest.approx(5.0) and s["max_norm"] == pytest.approx(5.0)


@pytest.mark.slow
def test_cli_decompose_and_casestudy(tmp_path):
    from regexplain.cli import main
    from regexplain.data.synthetic import synthesize_hippocampus

    data = synthesize_hippocampus(tmp_path / "data", 12, (32, 32, 32), seed=0, progress=False)  # 16^3 loses labels
    assert main(["train", "--profile", "smoke", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--no-progress", "--device", "cpu"]) == 0
    assert main(["decompose", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "dec"), "-k", "3",
                 "--device", "cpu"]) == 0
    dec = Decomposition.load(tmp_path / "dec")
    assert dec.n_components == 3 and dec.extra["val_coefficients"].shape == (4, 3)
    assert len(dec.extra["train_ids"]) == 8 and dec.meta["K"] == 3
    assert main(["casestudy", "--model", str(tmp_path / "run"), "--decomposition", str(tmp_path / "dec"),
                 "--out", str(tmp_path / "cs"), "--device", "cpu"]) == 0
    info = json.loads((tmp_path / "cs" / "casestudy.json").read_text())
    assert info["transforms"]["translation_vox_along_z"] == pytest.approx(10 * 16 / 64)
    with np.load(tmp_path / "cs" / "casestudy.npz") as z:
        assert z["rotation"].shape == (4, 3) and np.all(z["rotation"] >= 0)
        np.testing.assert_allclose(z["rotation"], np.abs(z["rotation_signed"]))
    # a decomposition directory that is not one: one clear line, exit code 2
    assert main(["casestudy", "--model", str(tmp_path / "run"), "--decomposition", str(tmp_path),
                 "--out", str(tmp_path / "cs2"), "--device", "cpu"]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("basis", ["ica", "sefa", "supervised", "random_orthonormal"])
def test_cli_decompose_in_another_basis(tmp_path, basis):
    from regexplain.analysis.latent import component_displacements
    from regexplain.cli import main
    from regexplain.data.synthetic import synthesize_hippocampus

    data = synthesize_hippocampus(tmp_path / "data", 12, (32, 32, 32), seed=0, progress=False)  # 16^3 loses labels
    assert main(["train", "--profile", "smoke", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--no-progress", "--device", "cpu"]) == 0
    assert main(["decompose", "--model", str(tmp_path / "run"), "--out", str(tmp_path / "dec"), "-k", "3",
                 "--device", "cpu", "--basis", basis]) == 0
    dec = Decomposition.load(tmp_path / "dec")
    assert dec.meta["basis"] == basis and dec.extra["val_coefficients"].shape[0] == 4
    assert np.allclose(np.linalg.norm(dec.components, axis=1), 1.0, atol=1e-5)
    from regexplain.registration.checkpoint import load_model
    model, _ = load_model(tmp_path / "run")
    disp = component_displacements(model, dec, lam=1.0)                  # decodable like the PCA
    assert np.all(np.isfinite(np.asarray(disp)))
