"""Losses against independent references: brute-force LNCC over windows, numpy Dice and differences,
analytic Jacobians, and the symmetric total rebuilt direction by direction."""

import dataclasses

import numpy as np
import pytest
import torch

from regexplain.config import ConfigError, LossConfig, load_config
from regexplain.registration import losses as L
from regexplain.registration import spatial as sp
from regexplain.registration.model import RegistrationNet


def _lncc_brute(a, b, w):
    """cc at every voxel from the zero-padded window values (mean-subtracted form), float64."""
    p = w // 2
    ap, bp = np.pad(a, p), np.pad(b, p)
    out = np.empty(a.shape)
    for i, j, k in np.ndindex(*a.shape):
        x = ap[i:i + w, j:j + w, k:k + w].ravel()
        y = bp[i:i + w, j:j + w, k:k + w].ravel()
        dx, dy = x - x.mean(), y - y.mean()
        out[i, j, k] = (dx @ dy) ** 2 / ((dx @ dx) * (dy @ dy) + L.LNCC_EPS)
    return out


@pytest.mark.parametrize("window", [3, 5])
def test_lncc_map_matches_brute_force_windows(window):
    rng = np.random.default_rng(0)
    a = rng.random((6, 5, 7))
    b = 0.5 * a + 0.5 * rng.random((6, 5, 7))
    ta, tb = (torch.as_tensor(x)[None, None] for x in (a, b))
    cc = L.lncc_map(ta, tb, window)[0, 0].numpy()
    np.testing.assert_allclose(cc, _lncc_brute(a, b, window), rtol=1e-8, atol=1e-10)
    assert float(L.lncc(ta, tb, window)) == pytest.approx(1 - _lncc_brute(a, b, window).mean())


def test_lncc_window_9_float32_and_channels():
    rng = np.random.default_rng(1)
    a, b = rng.random((2, 2, 10, 9, 11)), rng.random((2, 2, 10, 9, 11))
    cc = L.lncc_map(torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32))
    np.testing.assert_allclose(cc[1, 0].numpy(), _lncc_brute(a[1, 0], b[1, 0], 9), atol=1e-4)


def test_lncc_perfect_and_scaled_images_give_zero_loss():
    a = torch.rand(1, 1, 12, 12, 12, dtype=torch.float64)
    assert float(L.lncc(a, a)) == pytest.approx(0.0, abs=1e-6)
    assert float(L.lncc(a, 3.0 * a)) == pytest.approx(0.0, abs=1e-6)


def test_lncc_stable_on_constant_images():
    a = torch.full((1, 1, 10, 10, 10), 0.7, requires_grad=True)
    b = torch.rand(1, 1, 10, 10, 10)
    for x, y in ((a, b), (a, a * 1.0), (torch.zeros_like(b), b)):
        loss = L.lncc(x, y)
        assert torch.isfinite(loss)
        assert 0.0 <= float(loss.detach()) <= 1.0
    L.lncc(a, b).backward()
    assert torch.isfinite(a.grad).all()


def test_lncc_bad_input():
    with pytest.raises(ValueError, match="one shape"):
        L.lncc(torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 6))
    with pytest.raises(ValueError, match="odd"):
        L.lncc(torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8), window=4)


def test_dice_loss_matches_numpy():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 3, 6, 7, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    lab = rng.integers(0, 3, (2, 6, 7, 5))
    t = np.stack([lab == k for k in range(3)], 1).astype(float)
    ref = []
    for bi in range(2):
        for k in (1, 2):  # foreground only
            inter = np.sum(p[bi, k] * t[bi, k])
            ref.append((2 * inter + L.DICE_EPS) / (p[bi, k].sum() + t[bi, k].sum() + L.DICE_EPS))
    got = L.dice_loss(torch.as_tensor(p), torch.as_tensor(t))
    assert float(got) == pytest.approx(1 - np.mean(ref), rel=1e-10)


def test_dice_loss_perfect_and_background_ignored():
    lab = torch.randint(0, 3, (2, 1, 6, 6, 6), generator=torch.Generator().manual_seed(3))
    oh = sp.one_hot(lab, 3)
    assert float(L.dice_loss(oh, oh)) == pytest.approx(0.0, abs=1e-6)
    other = oh.clone()
    other[:, 0] = 1 - other[:, 0]
    assert float(L.dice_loss(other, oh)) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="L>=2"):
        L.dice_loss(oh[:, :1], oh[:, :1])


def test_smoothness_matches_numpy_and_vanishes_on_constant_gradients():
    rng = np.random.default_rng(4)
    g = rng.random((2, 3, 5, 6, 7))
    ref = sum(np.mean(np.diff(g, axis=ax) ** 2) for ax in (2, 3, 4)) / 3
    assert float(L.smoothness(torch.as_tensor(g), "squared_diff")) == pytest.approx(ref, rel=1e-12)
    const = torch.ones(1, 3, 5, 6, 7) * torch.tensor([0.8, 1.0, 1.3]).view(1, 3, 1, 1, 1)
    assert float(L.smoothness(const, "squared_diff")) == 0.0


def test_authors_smoothness_is_l1_of_the_sigmoid_output_to_one_half():
    # hand-computed: g = 2 s, term = mean |s - 1/2| (authors' main.py: L1Loss(deformable_grid, 0.5))
    g = torch.ones(1, 3, 2, 1, 1)
    g[0, 0, 0] = 1.5      # s = 0.75 -> |0.25|
    g[0, 1, 1] = 0.2      # s = 0.10 -> |-0.40|
    g[0, 2, 0] = 2.0      # s = 1.00 -> |0.50|
    expect = (0.25 + 0.40 + 0.50) / 6
    assert float(L.smoothness(g, "l1_identity")) == pytest.approx(expect, rel=1e-6)
    assert float(L.smoothness(g)) == float(L.smoothness(g, LossConfig().smoothness))   # one default
    assert float(L.smoothness_l1_identity(g)) == pytest.approx(expect, rel=1e-6)
    s = torch.sigmoid(torch.randn(2, 3, 4, 5, 6, generator=torch.Generator().manual_seed(0)))
    ref = torch.nn.L1Loss()(s, torch.full_like(s, 0.5))   # the authors' call, on their sigmoid output
    assert float(L.smoothness(2 * s, "l1_identity")) == pytest.approx(float(ref), rel=1e-6)
    # unlike the squared difference, a constant non-identity gradient (a global scaling) is penalised
    scale = torch.full((1, 3, 4, 4, 4), 1.2)
    assert float(L.smoothness(scale, "squared_diff")) == 0.0
    assert float(L.smoothness(scale, "l1_identity")) == pytest.approx(0.1)
    assert float(L.smoothness(torch.ones(1, 3, 4, 4, 4), "l1_identity")) == 0.0
    with pytest.raises(ValueError, match="unknown smoothness"):
        L.smoothness(scale, "l2")


def test_jacobian_loss_on_analytic_maps():
    shape = (8, 8, 8)
    assert float(L.jacobian_loss(sp.identity_map(shape))) == 0.0
    assert float(L.jacobian_loss(sp.rotation_map(shape, 30.0, "z"))) == 0.0
    flip = sp.identity_map(shape, dtype=torch.float64)
    flip[:, 0] = 7 - flip[:, 0]  # mirror along D: det J = -1 everywhere
    assert float(L.jacobian_loss(flip)) == pytest.approx(1.0 + L.JAC_MARGIN)
    squeeze = sp.identity_map(shape, dtype=torch.float64)
    squeeze[:, 0, 4:] = 0.5 * squeeze[:, 0, 4:] + 2.0  # continuous, det 0.5 past the kink: no penalty
    assert float(L.jacobian_loss(squeeze)) == 0.0
    fold = sp.identity_map(shape, dtype=torch.float64)
    fold[:, 0, 4:] = 8.0 - fold[:, 0, 4:]  # folds back past x = 4
    det = np.gradient(fold[0, 0].numpy(), axis=0)  # the other axes stay the identity
    ref = np.maximum(L.JAC_MARGIN - det, 0).mean()
    assert ref > 0.1
    assert float(L.jacobian_loss(fold)) == pytest.approx(ref)


def _setup(seed=0, shape=(8, 8, 8)):
    torch.manual_seed(seed)
    net = RegistrationNet((4, 8))
    with torch.no_grad():
        net.decoder.head.weight.normal_(0, 1.0)  # large enough to fold somewhere
    m, f = torch.rand(2, 1, *shape), torch.rand(2, 1, *shape)
    mo = sp.one_hot((m > 0.5).long(), 2)
    fo = sp.one_hot((f > 0.4).long(), 2)
    return net(m, f), m, f, mo, fo


@pytest.mark.parametrize("kind", ["l1_identity", "squared_diff"])
def test_registration_loss_is_the_symmetric_sum_of_terms(kind):
    out, m, f, mo, fo = _setup()
    cfg = LossConfig(sim=1.0, seg=0.7, smooth=0.1, jac=2.0, lncc_window=5, smoothness=kind)
    total, terms = L.registration_loss(out, m, f, mo, fo, cfg)
    ref = {}
    with torch.no_grad():  # each direction on its own, through the public functions
        for d, phi, g, src, dst, so, do in (("mf", out.phi_mf, out.grads_mf, m, f, mo, fo),
                                            ("fm", out.phi_fm, out.grads_fm, f, m, fo, mo)):
            ref[f"sim_{d}"] = float(L.lncc(sp.warp(src, phi), dst, 5))
            ref[f"seg_{d}"] = float(L.dice_loss(sp.warp_labels(so, phi), do))
            ref[f"smooth_{d}"] = float(L.smoothness(g, kind))
            ref[f"jac_{d}"] = float(L.jacobian_loss(phi))
    for k, v in ref.items():
        assert terms[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    for k in ("sim", "seg", "smooth", "jac"):
        assert terms[k] == pytest.approx(ref[f"{k}_mf"] + ref[f"{k}_fm"], rel=1e-5)
    expect = sum(getattr(cfg, k) * (ref[f"{k}_mf"] + ref[f"{k}_fm"]) for k in ("sim", "seg", "smooth", "jac"))
    assert float(total.detach()) == pytest.approx(expect, rel=1e-5)
    assert terms["total"] == pytest.approx(expect, rel=1e-5)
    assert terms["jac"] > 0 and terms["smooth"] > 0  # the random head makes every term active
    total.backward()


def test_registration_loss_skips_zero_weights_and_rejects_bad_input():
    out, m, f, mo, fo = _setup(1)
    cfg = LossConfig(sim=1.0, seg=0.0, smooth=0.0, jac=0.0)
    total, terms = L.registration_loss(out, m, f, None, None, cfg)
    assert set(terms) == {"sim_mf", "sim_fm", "sim", "total"}
    with pytest.raises(ValueError, match="one-hot"):
        L.registration_loss(out, m, f, None, None, dataclasses.replace(cfg, seg=1.0))
    with pytest.raises(ValueError, match="loss.jac must be >= 0"):
        L.registration_loss(out, m, f, mo, fo, dataclasses.replace(cfg, jac=-1.0))
    with pytest.raises(ValueError, match="same shape"):
        L.registration_loss(out, m, f[:, :, :4], mo, fo, cfg)
    with pytest.raises(ConfigError, match="loss.smooth must be >= 0"):
        load_config("smoke", "hippocampus", {"loss": {"smooth": -0.1}})


def test_box_sums_match_a_ones_kernel_convolution_and_their_gradient():
    # window wider than an axis (9 > 5) included: zero padding, nothing wraps
    x = torch.rand(2, 3, 6, 5, 7, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.conv3d(x.reshape(6, 1, 6, 5, 7), torch.ones(1, 1, 9, 9, 9, dtype=torch.float64),
                                     padding=4).reshape(2, 3, 6, 5, 7)
    torch.testing.assert_close(L._box_sums(x, 9), ref)
    assert torch.autograd.gradcheck(lambda t: L._box_sums(t, 3), (x[:1, :1],))


def _augmented_padded_pair(shape=(12, 12, 12)):
    """A smooth pair after the training augmentation, zoomed out and shifted so that zero padding fills
    a third of each volume: the windows of near-zero variance where LNCC's flat-window guards differ."""
    from regexplain.data.augment import apply_maps

    g = torch.Generator().manual_seed(3)
    vol = torch.nn.functional.avg_pool3d(torch.rand(2, 1, *shape, generator=g), 3, 1, 1, count_include_pad=False)
    phi = sp.affine_sampling_map(shape, sp.affine_matrix(rotation=(0.0, 0.0, 20.0), scale=0.7), (3.0, -2.0, 2.0))
    img, _ = apply_maps(phi.expand(2, -1, -1, -1, -1), vol)
    assert (img == 0).float().mean() > 0.2, "the pair should carry zero padding"
    return img[:1].double(), img[1:].double()


def test_lncc_on_augmented_zero_padded_pair_matches_float64_reference():
    """Both flat-window guards against a float64 brute force over every zero-padded window."""
    a, b = _augmented_padded_pair()
    an, bn = a[0, 0].numpy(), b[0, 0].numpy()
    ref = _lncc_brute(an, bn, 9)
    np.testing.assert_allclose(L.lncc_map(a, b, 9)[0, 0].numpy(), ref, atol=1e-9)
    # float32, as training runs: per voxel to float32 cancellation in flat windows (up to 1.02e-4 on an AVX2
    # EPYC, the summed-volume tables' rounding depends on the kernels), the loss to 1e-5
    cc = L.lncc_map(a.float(), b.float(), 9)[0, 0].double().numpy()
    np.testing.assert_allclose(cc, ref, atol=2e-4)
    assert cc.mean() == pytest.approx(ref.mean(), abs=1e-5)
    # MONAI's guard: each variance floored at eps, no eps added to the product
    p = 4
    ap, bp = np.pad(an, p), np.pad(bn, p)
    ref_m = np.empty(an.shape)
    for i, j, k in np.ndindex(*an.shape):
        x, y = ap[i:i + 9, j:j + 9, k:k + 9].ravel(), bp[i:i + 9, j:j + 9, k:k + 9].ravel()
        dx, dy = x - x.mean(), y - y.mean()
        ref_m[i, j, k] = (dx @ dy) ** 2 / (max(dx @ dx, L.LNCC_EPS) * max(dy @ dy, L.LNCC_EPS))
    np.testing.assert_allclose(L.lncc_map(a, b, 9, flat="monai")[0, 0].numpy(), ref_m, atol=1e-9)
    cc_m = L.lncc_map(a.float(), b.float(), 9, flat="monai")[0, 0].double().numpy()
    assert cc_m.mean() == pytest.approx(ref_m.mean(), abs=1e-5)
    assert abs(ref.mean() - ref_m.mean()) > 1e-4, "on padded volumes the two guards differ (the MONAI gap)"


def test_lncc_monai_guard_equals_monai_on_augmented_zero_padded_pair():
    monai_losses = pytest.importorskip("monai.losses", reason="MONAI comes with the test and bench extras")
    a, b = (x.float() for x in _augmented_padded_pair())
    theirs = monai_losses.LocalNormalizedCrossCorrelationLoss(spatial_dims=3, kernel_size=9,
                                                              kernel_type="rectangular")(a, b)
    assert float(L.lncc(a, b, 9, flat="monai")) == pytest.approx(1.0 + float(theirs), abs=1e-5)
    assert abs(float(L.lncc(a, b, 9)) - (1.0 + float(theirs))) > 1e-4


def test_lncc_flat_option_is_checked():
    with pytest.raises(ValueError, match="flat"):
        L.lncc(torch.rand(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8), flat="other")
    with pytest.raises(ConfigError, match="loss.lncc_flat"):
        load_config("smoke", overrides={"loss": {"lncc_flat": "other"}})
