"""RegistrationNet: identity at initialisation, symmetric batched forward consistent with the public
encode/decode, lambda sweeps that move, skip/no-skip, bad input, and that one pair can be overfitted."""

import math

import numpy as np
import pytest
import torch

from regexplain.config import ConfigError, load_config
from regexplain.registration import spatial as sp
from regexplain.registration.losses import registration_loss
from regexplain.registration.model import RegistrationNet, RegistrationOutput, gradient_activation

SHAPE = (16, 16, 16)
CH = (4, 8, 8)


def _pair(seed=0, b=2, shape=SHAPE):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, *shape, generator=g), torch.rand(b, 1, *shape, generator=g)


def _randomise_head(net, seed=0, scale=0.1):
    """Give the zero-initialised output layer random weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        net.decoder.head.weight.copy_(scale * torch.randn(net.decoder.head.weight.shape, generator=g))
        net.decoder.head.bias.copy_(scale * torch.randn(net.decoder.head.bias.shape, generator=g))
    return net


@pytest.mark.parametrize("skip", [False, True])
def test_untrained_model_is_identity(skip):
    torch.manual_seed(0)
    net = RegistrationNet(CH, skip_connections=skip)
    m, f = _pair()
    out = net(m, f)
    assert isinstance(out, RegistrationOutput)
    for g in (out.grads_mf, out.grads_fm):
        torch.testing.assert_close(g, torch.ones_like(g), atol=0, rtol=0)
    ident = sp.identity_map(SHAPE).expand(2, -1, -1, -1, -1)
    torch.testing.assert_close(out.phi_mf, ident, atol=1e-5, rtol=0)
    torch.testing.assert_close(sp.warp(m, out.phi_mf), m, atol=1e-5, rtol=0)
    torch.testing.assert_close(sp.warp(f, out.phi_fm), f, atol=1e-5, rtol=0)
    torch.testing.assert_close(net.decode(torch.zeros(1, CH[-1], 4, 4, 4)), torch.ones(1, 3, *SHAPE))


@pytest.mark.parametrize("skip", [False, True])
def test_shapes_latent_and_monotone_maps(skip):
    torch.manual_seed(1)
    net = _randomise_head(RegistrationNet(CH, skip_connections=skip))
    m, f = _pair(1, shape=(16, 8, 24))
    out = net(m, f)
    assert out.phi_mf.shape == out.grads_fm.shape == (2, 3, 16, 8, 24)
    assert net.encode(m).shape == (2, *net.latent_shape((16, 8, 24))) == (2, 8, 4, 2, 6)
    assert (out.grads_mf > 0).all() and (out.grads_fm > 0).all()
    for a in range(3):  # positive gradients: each phi_a strictly increasing along its axis
        assert (out.phi_mf[:, a].diff(dim=1 + a) > 0).all()
    assert not torch.allclose(out.grads_mf, torch.ones_like(out.grads_mf))


def test_forward_is_batched_encode_subtract_decode_and_symmetric():
    torch.manual_seed(2)
    net = _randomise_head(RegistrationNet(CH))
    m, f = _pair(2)
    out = net(m, f)
    zm, zf = net.encode(m), net.encode(f)
    torch.testing.assert_close(out.grads_mf, net.decode(zm - zf), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.grads_fm, net.decode(zf - zm), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.phi_mf, sp.integrate_gradients(out.grads_mf))
    swapped = net(f, m)
    torch.testing.assert_close(swapped.grads_mf, out.grads_fm, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(net.register(m, f), out.phi_mf, atol=1e-5, rtol=1e-5)


def test_skip_decode_without_skips_uses_zero_differences():
    torch.manual_seed(3)
    net = _randomise_head(RegistrationNet(CH, skip_connections=True))
    z = torch.randn(1, CH[-1], 4, 4, 4)
    zeros = [torch.zeros(1, c, *(s // 2 ** i for s in SHAPE)) for i, c in enumerate(CH[:-1])]
    torch.testing.assert_close(net.decode(z), net.decode(z, zeros))
    ones = [torch.ones_like(t) for t in zeros]
    assert not torch.allclose(net.decode(z), net.decode(z, ones))


def test_decoded_lambda_sweep_moves_with_lambda():
    """The decoder has no instance norm, so D(lam u) depends on lam > 0 (a norm would cancel it)."""
    torch.manual_seed(4)
    net = _randomise_head(RegistrationNet(CH), scale=0.3)
    u = torch.randn(1, CH[-1], 4, 4, 4)  # about the size of a code difference
    with torch.no_grad():
        d0 = net.decode(torch.zeros_like(u))
        dev = [float((net.decode(lam * u) - d0).abs().mean()) for lam in (0.5, 1.0, 2.0, 4.0)]
    assert dev[0] > 1e-4
    assert all(b > 1.3 * a for a, b in zip(dev, dev[1:], strict=False)), dev


def test_from_config_profiles():
    cfg = load_config("quick", "hippocampus")
    net = RegistrationNet.from_config(cfg)
    assert net.channels == (8, 16, 32, 32) and not net.skip_connections
    assert net.latent_shape(cfg.data.shape) == (32, 4, 4, 4)
    paper = load_config("paper", "hippocampus")
    c, d, h, w = RegistrationNet(paper.model.channels).latent_shape(paper.data.shape)
    assert (c, d, h, w) == (512, 4, 4, 4) and c * d * h * w == 32768
    lung = load_config("paper", "lung")
    assert RegistrationNet(lung.model.channels).depth == 3
    skip = load_config("smoke", "hippocampus", {"model": {"skip_connections": True}})
    assert RegistrationNet.from_config(skip).skip_connections


def _authors_integral3d(s):
    """FrontiersNet.integral3DImage of the authors (normalised grid from their sigmoid output ``s``),
    written out from their formula, then mapped to voxels with align_corners=True."""
    out = []
    for a in range(3):
        n = s.shape[2 + a]
        xn = (4 * torch.cumsum(s[:, a], dim=1 + a) - 2) / (n - 1) - 1
        out.append((xn + 1) * (n - 1) / 2)
    return torch.stack(out, dim=1)


def test_gradient_activation_is_the_authors_bounded_sigmoid():
    x = torch.tensor([0.0, math.log(3.0), -math.log(3.0), 50.0, -50.0], dtype=torch.float64)
    g = gradient_activation(x, "sigmoid")
    assert g.tolist() == pytest.approx([1.0, 1.5, 0.5, 2.0, 0.0], abs=1e-12)   # 2 sigmoid: (0, 2)
    assert gradient_activation(x, "softplus").tolist() == pytest.approx(
        [1.0, math.log(4.0) / math.log(2.0), math.log(4 / 3) / math.log(2.0), 50 / math.log(2.0), 0.0],
        abs=1e-12)
    # the decoder's integrated map equals the authors' integral of their sigmoid output
    head = torch.randn(2, 3, 5, 6, 7, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    ours = sp.integrate_gradients(gradient_activation(head, "sigmoid"))
    assert torch.allclose(ours, _authors_integral3d(torch.sigmoid(head)), atol=1e-10)
    with pytest.raises(ValueError, match="unknown gradient activation"):
        gradient_activation(x, "relu")
    with pytest.raises(ValueError, match="unknown gradient activation"):
        RegistrationNet(CH, activation="relu")


@pytest.mark.parametrize("activation", ["sigmoid", "softplus"])
def test_activation_option_builds_the_decoder(activation):
    cfg = load_config("smoke", "hippocampus", {"model": {"activation": activation}})
    net = RegistrationNet.from_config(cfg)
    with torch.no_grad():
        net.decoder.head.bias.fill_(3.0)
    g = net.decode(torch.zeros(1, *net.latent_shape(cfg.data.shape)))
    assert torch.allclose(g, gradient_activation(torch.tensor(3.0), activation).expand_as(g))
    with pytest.raises(ConfigError, match="model.activation"):
        load_config("smoke", "hippocampus", {"model": {"activation": "tanh"}})


def test_bad_inputs():
    net = RegistrationNet(CH)
    with pytest.raises(ValueError, match="same shape"):
        net(torch.rand(1, 1, 16, 16, 16), torch.rand(1, 1, 16, 16, 8))
    with pytest.raises(ValueError, match="divisible by 2\\^2"):
        net(torch.rand(1, 1, 16, 16, 10), torch.rand(1, 1, 16, 16, 10))
    with pytest.raises(ValueError, match="divisible"):
        net.latent_shape((15, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\)"):
        net.encode(torch.rand(1, 2, 16, 16, 16))
    with pytest.raises(ValueError, match="code must have shape"):
        net.decode(torch.rand(1, 3, 4, 4, 4))
    with pytest.raises(ValueError, match="two positive"):
        RegistrationNet((8,))
    with pytest.raises(ConfigError, match="divisible by 2\\^3"):
        load_config("quick", "hippocampus", {"data": {"shape": [30, 32, 32]}})


def _blob(shape, centre, radius):
    x = np.stack(np.indices(shape)).astype(float)
    r2 = sum((x[i] - centre[i]) ** 2 for i in range(3))
    return np.exp(-r2 / (2 * radius ** 2))


@pytest.mark.slow
def test_overfitting_one_pair_lowers_the_loss():
    torch.manual_seed(0)
    m_img = torch.as_tensor(_blob(SHAPE, (7, 8, 8), 3.0), dtype=torch.float32)[None, None]
    f_img = torch.as_tensor(_blob(SHAPE, (9, 7, 9), 3.5), dtype=torch.float32)[None, None]
    m_oh, f_oh = (sp.one_hot((x > 0.5).long(), 2) for x in (m_img, f_img))
    cfg = load_config("smoke", "hippocampus").loss
    net = RegistrationNet(CH)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = []
    for _ in range(60):
        total, _terms = registration_loss(net(m_img, f_img), m_img, f_img, m_oh, f_oh, cfg)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(_terms["total"])
    assert np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.8 * losses[0], (losses[0], losses[-5:])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda():
    net = _randomise_head(RegistrationNet(CH, skip_connections=True)).cuda()
    m, f = _pair(5)
    out = net(m.cuda(), f.cuda())
    cpu = net.cpu()(m, f)
    torch.testing.assert_close(out.grads_mf.cpu(), cpu.grads_mf, atol=1e-4, rtol=1e-4)


def test_deep_supervision_is_the_identity_untrained_and_its_levels_are_coarse():
    from regexplain.registration.model import RegistrationNet
    from regexplain.registration.spatial import identity_map

    torch.manual_seed(0)
    net = RegistrationNet((4, 8, 8, 8), deep_supervision=True)
    x, y = torch.rand(2, 1, 16, 16, 16), torch.rand(2, 1, 16, 16, 16)
    out = net(x, y)
    assert out.coarse_phi.shape == (3, 4, 3, 16, 16, 16)           # bottleneck + 2 decoder levels, both ways
    torch.testing.assert_close(out.coarse_phi, identity_map((16, 16, 16)).expand(3, 4, -1, -1, -1, -1))
    # give the side heads weights: the bottleneck level is constant over 8^3 blocks (nearest upsampling)
    for conv in net.decoder.side:
        torch.nn.init.normal_(conv.weight, std=0.1)
    g = net.decoder.levels(torch.randn(1, 8, 2, 2, 2))[1][0]
    assert torch.equal(g[..., :8, :8, :8], g[..., :1, :1, :1].expand(-1, -1, 8, 8, 8))
    assert not torch.allclose(g[..., 0, 0, 0], g[..., 8, 8, 8])
    # the final map and register() do not depend on the side heads
    torch.testing.assert_close(net.register(x, y), net(x, y).phi_mf)
    plain = RegistrationNet((4, 8, 8, 8))
    assert net(x, y).coarse_phi is not None and plain(x, y).coarse_phi is None


def test_deep_supervision_loss_averages_the_named_terms_over_levels():
    import dataclasses

    from regexplain.config import LossConfig
    from regexplain.registration.losses import registration_loss
    from regexplain.registration.model import RegistrationOutput
    from regexplain.registration.spatial import identity_map, one_hot, translation_map

    torch.manual_seed(1)
    img = torch.rand(2, 1, 16, 16, 16)
    lab = one_hot((torch.rand(2, 1, 16, 16, 16) > 0.6).long(), 2)
    ident = identity_map((16, 16, 16)).expand(2, -1, -1, -1, -1)
    shift = translation_map((16, 16, 16), (1.5, 0.0, -1.0)).float().expand(2, -1, -1, -1, -1)
    ones = torch.ones(2, 3, 16, 16, 16)
    final = RegistrationOutput(ones, ones, ident, ident)
    coarse = RegistrationOutput(ones, ones, shift, shift)
    cfg = LossConfig(smooth=0.0, jac=0.0)
    _, t_final = registration_loss(final, img, img[[1, 0]], lab, lab[[1, 0]], cfg)
    _, t_coarse = registration_loss(coarse, img, img[[1, 0]], lab, lab[[1, 0]], cfg)
    deep = dataclasses.replace(final, coarse_phi=torch.stack([torch.cat([shift, shift])]))
    _, t = registration_loss(deep, img, img[[1, 0]], lab, lab[[1, 0]], cfg)
    assert t["sim"] == pytest.approx((t_final["sim"] + t_coarse["sim"]) / 2, rel=1e-5)
    assert t["seg"] == pytest.approx(t_final["seg"], rel=1e-6)            # authors: similarity only
    both = dataclasses.replace(cfg, deep_terms=("sim", "seg"))
    _, t2 = registration_loss(deep, img, img[[1, 0]], lab, lab[[1, 0]], both)
    assert t2["seg"] == pytest.approx((t_final["seg"] + t_coarse["seg"]) / 2, rel=1e-5)


def test_convs_per_level_follow_the_authors_nb_convs():
    from regexplain.registration.model import RegistrationNet

    net = RegistrationNet((4, 8, 16, 16), convs_per_level=(1, 2, 3, 2, 2, 2))   # their --classic-vnet
    enc = [sum(isinstance(m, torch.nn.Conv3d) and m.kernel_size == (3, 3, 3) for m in lvl.modules())
           for lvl in net.encoder.levels]
    dec = [sum(isinstance(m, torch.nn.Conv3d) for m in b.modules()) for b in net.decoder.blocks]
    # encoder: level 0 one block, level l >= 1 nb_Convs[l - 1]; decoder blocks (coarse to fine) make levels
    # 2, 1, 0 with nb_Convs[2], [1], [0] (blocks.py: DeconvBlock(..., nb_Convs[-i-1]) over nb_Convs[:3])
    assert enc == [1, 1, 2, 3] and dec == [3, 2, 1]
    with pytest.raises(ValueError, match="convs_per_level"):
        RegistrationNet((4, 8, 16, 16), convs_per_level=(1, 2))
    x = torch.rand(1, 1, 16, 16, 16)
    torch.testing.assert_close(net.register(x, x), net(x, x).phi_mf)
