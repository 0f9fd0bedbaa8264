"""Speed-ups must not change results: each fast path against its reference implementation."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch
from deps import need

from regexplain.config import load_config
from regexplain.registration.losses import registration_loss
from regexplain.registration.model import RegistrationNet
from regexplain.registration.spatial import (
    affine_matrix,
    affine_sampling_map,
    map_to_displacement,
    one_hot,
    warp,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))


def _pair(size=16, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 1, size, size, size, generator=g) for _ in range(2))


def _trained_like(channels, skip=False, seed=0):
    """A network whose output is not the identity (head weights made non-zero)."""
    torch.manual_seed(seed)
    net = RegistrationNet(channels, skip_connections=skip).eval()
    torch.nn.init.normal_(net.decoder.head.weight, std=0.05)
    return net


@pytest.mark.parametrize("skip", [False, True])
def test_register_one_direction_equals_forward(skip):
    net = _trained_like((4, 8, 8), skip)
    m, f = _pair()
    with torch.no_grad():
        ref = net(m, f).phi_mf
    assert (ref - net.register(m, f)).abs().max() < 1e-5


@pytest.mark.parametrize("skip, convs", [(False, ()), (True, ()), (False, (1, 2, 3)), (True, (2, 3, 2))])
def test_register_batch_1_equals_one_direction_decode(skip, convs):
    """At batch 1 on the CPU the decoder runs its small layers on a batch of two halves (oneDNN instead of
    PyTorch's native 3-D convolution; blocks of several convolutions borrow one plane per convolution); the
    map equals every layer at batch 1 (native kernels) to 1e-5 voxel."""
    from unittest import mock

    torch.manual_seed(0)
    net = RegistrationNet((8, 16, 32, 32), skip_connections=skip, convs_per_level=convs).eval()
    torch.nn.init.normal_(net.decoder.head.weight, std=0.05)
    m, f = _pair(32, batch=1)
    with mock.patch("regexplain.registration.model._ONEDNN_MIN_NCDH", -1):
        ref = net.register(m, f)
    phi = net.register(m, f)
    assert phi.shape == ref.shape == (1, 3, 32, 32, 32)
    assert (phi - ref).abs().max() < 1e-5
    assert map_to_displacement(phi).abs().max() > 1e-3


def test_register_one_direction_not_identity():
    net = _trained_like((4, 8, 8))
    m, f = _pair()
    phi = net.register(m, f)
    assert map_to_displacement(phi).abs().max() > 1e-3


def test_register_bfloat16_close_to_float32():
    """bf16 autocast is an opt-in speed-up: the map stays float32 and close to the float32 one, but is
    not bit-equal (so the flag really changes the arithmetic)."""
    net = _trained_like((4, 8, 8))
    m, f = _pair()
    ref = net.register(m, f)
    fast = net.register(m, f, precision="bfloat16")
    assert fast.dtype == torch.float32 and fast.shape == ref.shape
    diff = (fast - ref).abs().max().item()
    assert 0 < diff < 0.05 * map_to_displacement(ref).abs().max().item() + 1e-3


def test_register_rejects_unknown_precision():
    net = _trained_like((4, 8, 8))
    with pytest.raises(ValueError, match="precision"):
        net.register(*_pair(), precision="fp16")


def test_channels_last_3d_same_output():
    net = _trained_like((4, 8, 8))
    cl = _trained_like((4, 8, 8)).to(memory_format=torch.channels_last_3d)
    m, f = _pair()
    with torch.no_grad():
        a = net(m, f).phi_mf
        b = cl(*(t.contiguous(memory_format=torch.channels_last_3d) for t in (m, f))).phi_mf
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_step_runner_variants_same_first_loss():
    from train_step import StepRunner

    cfg = load_config("smoke")
    a = StepRunner(cfg, torch.device("cpu"))
    b = StepRunner(cfg, torch.device("cpu"), channels_last=True)
    assert abs(a() - b()) < 1e-4


def test_monai_warp_equals_ours():
    need("monai")   # a declared test dependency: fails under CI when missing (tests/deps.py)
    from monai.networks.blocks import Warp

    shape = (12, 10, 14)
    phi = affine_sampling_map(shape, affine_matrix(rotation=(10.0, -5.0, 20.0), scale=1.1), (1.5, -2.0, 0.5))
    phi = phi + 0.3 * torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    img = torch.rand(1, 2, *shape, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():     # "Using PyTorch native grid_sample" without MONAI's C++ extension
        warnings.simplefilter("ignore")
        block = Warp(mode="bilinear", padding_mode="border")
    theirs = block(img, map_to_displacement(phi))
    assert (theirs - img).abs().max() > 0.1              # a real deformation
    torch.testing.assert_close(theirs, warp(img, phi), atol=1e-5, rtol=1e-5)


def test_monai_built_loss_equals_ours():
    need("monai")
    from vs_monai import MonaiLoss

    cfg = load_config("smoke", "lung")                 # jac > 0: every term active
    net = _trained_like((4, 8, 8))
    m, f = _pair()
    g = torch.Generator().manual_seed(2)
    moh, foh = (one_hot(torch.randint(0, 2, (2, 1, 16, 16, 16), generator=g), 2) for _ in range(2))
    out = net(m, f)
    total, ours = registration_loss(out, m, f, moh, foh, cfg.loss)
    total2, theirs = MonaiLoss(cfg.loss.lncc_window)(out, m, f, moh, foh, cfg.loss)
    for k in theirs:
        assert abs(ours[k] - theirs[k]) < 1e-4, k
    ga = torch.autograd.grad(total, net.decoder.head.weight, retain_graph=True)[0]
    gb = torch.autograd.grad(total2, net.decoder.head.weight)[0]
    torch.testing.assert_close(ga, gb, atol=1e-4, rtol=1e-3)


def _register_flops(channels, size):
    """Analytic multiply-add count x 2 of register(): encoder on 2 volumes, decoder + head on 1."""
    n = [(size // 2**lvl) ** 3 for lvl in range(len(channels))]
    enc = 2 * n[0] * 27 * channels[0]
    dec = 2 * n[0] * 27 * channels[0] * 3                                     # head to 3 channels
    for lvl in range(1, len(channels)):
        cin, c = channels[lvl - 1], channels[lvl]
        enc += 2 * n[lvl] * 8 * cin * c + 2 * n[lvl] * 27 * c * c          # 2^3 stride-2 conv + block
        dec += 2 * n[lvl - 1] * c * cin + 2 * n[lvl - 1] * 27 * cin * cin  # 2^3 transposed conv + block
    return 2 * enc + dec


def test_register_benchmark_counts_the_network_flops():
    """The roofline of benchmarks/register.py rests on this count (of the work needed: the decoder's
    batch-1 layers split into halves on the CPU for oneDNN's kernels compute 2 planes more)."""
    from register import register_gflop

    channels = (4, 8, 16)
    net = RegistrationNet(channels).eval()
    m, f = _pair(16, batch=1)
    assert register_gflop(net, m, f) * 1e9 == pytest.approx(_register_flops(channels, 16), rel=1e-9)


def _jacobian_stacked(phi):
    """The stacked 3 x 3 Jacobian determinant that spatial.jacobian_determinant replaced."""
    rows = [torch.stack(torch.gradient(phi[:, i], dim=(1, 2, 3)), dim=1) for i in range(3)]
    J = torch.stack(rows, dim=1)
    return (J[:, 0, 0] * (J[:, 1, 1] * J[:, 2, 2] - J[:, 1, 2] * J[:, 2, 1])
            - J[:, 0, 1] * (J[:, 1, 0] * J[:, 2, 2] - J[:, 1, 2] * J[:, 2, 0])
            + J[:, 0, 2] * (J[:, 1, 0] * J[:, 2, 1] - J[:, 1, 1] * J[:, 2, 0]))


def test_jacobian_one_gradient_call_bit_identical_to_stacked():
    from regexplain.registration.spatial import jacobian_determinant

    phi = torch.randn(2, 3, 10, 7, 9, generator=torch.Generator().manual_seed(0), requires_grad=True)
    fast, ref = jacobian_determinant(phi), _jacobian_stacked(phi)
    assert torch.equal(fast, ref)
    assert torch.equal(*(torch.autograd.grad(x.square().sum(), phi)[0] for x in (fast, ref)))


def test_vs_authors_names_a_dependency_their_code_lacks(tmp_path):
    """A copy of their code importing a module this environment lacks: a clear exit naming the folder and
    the module, not a traceback from inside their files."""
    from vs_authors import import_authors
    (tmp_path / "blocks.py").write_text("")
    (tmp_path / "FrontiersNet.py").write_text("")
    (tmp_path / "losses.py").write_text("import regexplain_no_such_module_xyz\n")
    with pytest.raises(SystemExit) as err:
        import_authors(tmp_path)
    msg = str(err.value)
    assert str(tmp_path) in msg and "regexplain_no_such_module_xyz" in msg and ".[bench]" in msg
    assert "hippocampus_registration" not in sys.modules
