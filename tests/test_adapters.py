"""The adapter interface (regexplain.adapters): other networks explained the paper's way.

References: each network's own forward pass (MONAI's VoxelMorph / LocalNet, regexplain's RegistrationNet),
MONAI's ``Warp`` for the displacement convention, and the native late-fusion computations
(``encode``, ``decode`` + ``integrate_gradients``) that the analysis used before adapters existed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from regexplain.adapters import HookAdapter, LateFusionAdapter, as_adapter, build_model
from regexplain.adapters.monai import MonaiLocalNetAdapter, MonaiVoxelMorphAdapter
from regexplain.adapters.voxelmorph import VoxelMorphAdapter
from regexplain.analysis.casestudy import case_study_deltas, case_study_transforms, transform_volumes
from regexplain.analysis.inputs import encode_splits, fit_decomposition
from regexplain.analysis.latent import Decomposition, component_displacements, decode_codes, encode_volumes
from regexplain.config import load_config
from regexplain.errors import AdapterError
from regexplain.registration import spatial
from regexplain.registration.model import RegistrationNet

monai_nets = pytest.importorskip("monai.networks.nets")
vxm_models = pytest.importorskip("voxelmorph.nn.models")

SHAPE = (16, 16, 16)


def _pair(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, *SHAPE, generator=g), torch.rand(n, 1, *SHAPE, generator=g)


def _perturbed(net: torch.nn.Module, scale=0.05, seed=0) -> torch.nn.Module:
    """An untrained network whose outputs are not the identity (regexplain's head is zero-initialised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net.eval()


def _ours(skip=False):
    torch.manual_seed(0)
    return _perturbed(RegistrationNet((4, 8, 8), skip_connections=skip))


def _voxelmorph(steps=7):
    torch.manual_seed(0)
    return monai_nets.VoxelMorph(integration_steps=steps).eval()


def _vxm_pairwise():
    torch.manual_seed(0)
    return _perturbed(vxm_models.VxmPairwise(ndim=3, source_channels=1, target_channels=1,
                                             nb_features=(8, 8, 8), integration_steps=5), 0.02)


def _localnet():
    torch.manual_seed(0)
    return _perturbed(monai_nets.LocalNet(spatial_dims=3, in_channels=2, num_channel_initial=4,
                                          extract_levels=(0, 1, 2, 3)), 0.02)


def _own_output(net, moving, fixed) -> torch.Tensor:
    """The network's own deformation, as regexplain's displacement in voxels (the independent reference)."""
    if isinstance(net, RegistrationNet):
        return spatial.map_to_displacement(net(moving, fixed).phi_mf)
    if isinstance(net, monai_nets.VoxelMorph):
        return net(moving, fixed)[1]
    if isinstance(net, vxm_models.VxmPairwise):
        return net(moving, fixed)
    return net(torch.cat([moving, fixed], 1))      # VoxelMorphUNet, LocalNet: the DDF itself


READY = {
    "ours, no skip": lambda: LateFusionAdapter(_ours(False)),
    "ours, skip": lambda: LateFusionAdapter(_ours(True)),
    "voxelmorph, integration": lambda: MonaiVoxelMorphAdapter(_voxelmorph(7)),
    "voxelmorph, no integration": lambda: MonaiVoxelMorphAdapter(_voxelmorph(0)),
    "voxelmorph backbone": lambda: MonaiVoxelMorphAdapter(_voxelmorph(0).backbone),
    "localnet": lambda: MonaiLocalNetAdapter(_localnet()),
    "voxelmorph package": lambda: VoxelMorphAdapter(_vxm_pairwise()),
}


@pytest.mark.parametrize("name", list(READY))
def test_decode_of_encode_with_the_pairs_own_context_is_the_models_forward(name):
    adapter = READY[name]()
    moving, fixed = _pair()
    with torch.no_grad():
        own = _own_output(adapter.network, moving, fixed)
        assert own.abs().max() > 1e-3                          # a real deformation, not the identity
        out = torch.cat([adapter.decode(adapter.encode(moving[i:i + 1], fixed[i:i + 1]),
                                        adapter.context(moving[i:i + 1], fixed[i:i + 1])) for i in range(2)])
        assert torch.allclose(out, own, atol=1e-5 * max(1.0, float(own.abs().max())))
        assert torch.allclose(adapter.displacement(moving, fixed), own, atol=1e-6)
        z = adapter.encode(moving, fixed)
        assert tuple(z.shape[1:]) == adapter.latent_shape(SHAPE)


def test_monai_ddf_is_regexplains_displacement():
    """MONAI's Warp reads ddf exactly as regexplain reads a displacement (voxels, array-axis order)."""
    from monai.networks.blocks import Warp

    g = torch.Generator().manual_seed(1)
    ddf = 2.0 * torch.randn(2, 3, *SHAPE, generator=g)
    image = torch.rand(2, 1, *SHAPE, generator=g)
    theirs = Warp(mode="bilinear", padding_mode="border")(image, ddf)
    ours = spatial.warp(image, spatial.displacement_to_map(ddf))
    assert torch.allclose(theirs, ours, atol=1e-5)


def test_voxelmorphs_displacement_is_regexplains():
    """VoxelMorph's own SpatialTransformer reads a displacement as regexplain does."""
    from voxelmorph.nn.functional import spatial_transform

    g = torch.Generator().manual_seed(2)
    disp = 2.0 * torch.randn(2, 3, *SHAPE, generator=g)
    image = torch.rand(2, 1, *SHAPE, generator=g)
    theirs = torch.stack([spatial_transform(image[i:i + 1], disp[i], padding_mode="border")[0] for i in range(2)])
    ours = spatial.warp(image, spatial.displacement_to_map(disp))
    assert torch.allclose(theirs, ours, atol=1e-5)


def test_the_bottlenecks_found_are_the_deepest_levels():
    vxm = MonaiVoxelMorphAdapter(_voxelmorph())
    assert vxm.bottleneck == "backbone.net.0.1.submodule.1.submodule.1.submodule.0"
    assert vxm.divisor == 8 and vxm.latent_shape(SHAPE) == (32, 2, 2, 2)     # 3 poolings, MONAI's 32 channels
    local = MonaiLocalNetAdapter(_localnet())
    assert local.bottleneck == "bottom_block" and local.latent_shape(SHAPE)[1:] == (2, 2, 2)
    pairwise = VoxelMorphAdapter(_vxm_pairwise())
    assert pairwise.divisor == 8 and pairwise.latent_shape(SHAPE) == (8, 2, 2, 2)


def test_generic_adapter_reproduces_the_native_codes_and_fields():
    """A HookAdapter on regexplain's own no-skip network (code = the decoder's input) gives E(M) - E(F) and
    the decoded field of that code, to float rounding."""
    net = _ours(False)
    hook = HookAdapter(net, "decoder.ups.0", hook="input", output="sampling_map", output_key="phi_mf")
    moving, fixed = _pair(3)
    with torch.no_grad():
        native = net.encode(moving) - net.encode(fixed)
        z = hook.encode(moving, fixed)
        assert torch.allclose(z, native, atol=1e-6 * float(native.abs().max()))
        field = spatial.map_to_displacement(spatial.integrate_gradients(net.decode(native)))
        # any reference pair: the decoder of the no-skip network reads the code alone
        decoded = hook.decode(native, hook.context(moving[:1], fixed[:1]))
        assert torch.allclose(decoded, field, atol=1e-5)
        assert field.abs().max() > 1e-2


def test_a_grid_output_is_converted_to_voxels():
    """A network returning grid_sample's normalised (x, y, z) grid is read as the same displacement."""
    class GridNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = _ours(False)

        def forward(self, m, f):
            return spatial.voxel_to_grid(self.inner(m, f).phi_mf)

    net = GridNet().eval()
    moving, fixed = _pair()
    adapter = HookAdapter(net, "inner.decoder.ups.0", hook="input", output="grid")
    with torch.no_grad():
        expected = spatial.map_to_displacement(net.inner(moving, fixed).phi_mf)
        assert torch.allclose(adapter.displacement(moving, fixed), expected, atol=1e-4)


@pytest.mark.parametrize("name", ["voxelmorph, integration", "localnet", "ours, skip", "voxelmorph package"])
def test_frozen_skip_decoding_at_lambda_zero_is_the_reference_pairs_field(name):
    adapter = READY[name]()
    reference = _pair(1, seed=3)[0]
    with torch.no_grad():
        maps = decode_codes(adapter, torch.zeros(2, *adapter.latent_shape(SHAPE)), reference=reference)
        own = _own_output(adapter.network, reference, reference)
    assert torch.allclose(spatial.map_to_displacement(maps), own.expand_as(maps), atol=1e-5)


def test_frozen_skips_make_a_direction_move_the_field():
    adapter = READY["voxelmorph, integration"]()
    reference = _pair(1, seed=3)[0]
    z = torch.zeros(3, *adapter.latent_shape(SHAPE))
    z[1, 0] = 1.0
    z[2, 0] = 2.0
    with torch.no_grad():
        disp = spatial.map_to_displacement(decode_codes(adapter, z, reference=reference))
    step1, step2 = (disp[1] - disp[0]).abs().mean(), (disp[2] - disp[0]).abs().mean()
    assert step1 > 1e-5 and step2 > step1


def test_native_network_through_the_interface_gives_todays_numbers():
    """Bit for bit what the analysis computed before adapters: E(X) of each volume, integrate(D(v)), and the
    case study's a(X') - a(X) from those codes."""
    net = _ours(False)
    images = torch.cat(_pair(4))
    with torch.no_grad():
        codes = encode_volumes(net, images, batch_size=4)
        assert np.array_equal(codes, net.encode(images).flatten(1).numpy())
        v = torch.randn(3, *net.latent_shape(SHAPE))
        assert torch.equal(decode_codes(net, v), spatial.integrate_gradients(net.decode(v)))
        dec = Decomposition.fit(codes, 3, latent_shape=net.latent_shape(SHAPE))
        transforms = case_study_transforms(SHAPE)
        deltas = case_study_deltas(net, dec, images, transforms, batch_size=4)
        for name, phi in transforms.items():
            moved = net.encode(transform_volumes(images, phi)).flatten(1).numpy()
            assert np.array_equal(deltas[name], dec.project(moved) - dec.project(codes))


def test_codes_against_a_reference_give_the_papers_pca_for_late_fusion():
    """PCA ignores the common shift -E(R): pair codes (X, R) through a HookAdapter give the components and
    variances of the paper's volume codes E(X)."""
    net = _ours(False)
    hook = HookAdapter(net, "decoder.ups.0", hook="input", output="sampling_map", output_key="phi_mf")
    images = torch.cat(_pair(6))
    with torch.no_grad():
        paper = Decomposition.fit(encode_volumes(net, images), 4)
        pairs = Decomposition.fit(encode_volumes(hook, images, reference=images[:1]), 4)
    cos = np.abs(np.sum(paper.components * pairs.components, axis=1))
    assert np.all(cos > 0.999)
    assert np.allclose(paper.explained_variance, pairs.explained_variance, rtol=1e-4)


def test_an_early_fusion_decomposition_keeps_its_reference(tmp_path):
    from regexplain.data.pairs import VolumeSet

    adapter = READY["voxelmorph, no integration"]()
    images = torch.cat(_pair(5))
    labels = torch.zeros_like(images, dtype=torch.long)
    train = VolumeSet(images, labels, [f"s{i}" for i in range(10)], [f"s{i}" for i in range(10)], (1.0,) * 3)
    codes = encode_splits(adapter, train)
    dec = fit_decomposition(adapter, codes, 3)
    assert torch.equal(dec.reference, images[:1]) and dec.meta["reference"] == "s0"
    dec.save(tmp_path)
    again = Decomposition.load(tmp_path)
    with torch.no_grad():
        a = component_displacements(adapter, dec, 1.0, "sigma", [0, 1], relative_to_zero=True)
        b = component_displacements(adapter, again, 1.0, "sigma", [0, 1], relative_to_zero=True)
    assert torch.equal(a, b) and a.abs().max() > 0
    with pytest.raises(ValueError, match="needs a reference"):
        encode_volumes(adapter, images)


# ------------------------------------------------------------------------------------------------ errors

def _one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


def test_a_wrong_module_name_lists_the_candidates_with_their_shapes():
    with pytest.raises(AdapterError) as e:
        HookAdapter(_voxelmorph(), "backbone.net.0.9", shape=SHAPE)
    msg = _one_line(e)
    assert "no module 'backbone.net.0.9' in VoxelMorph" in msg
    # the real bottleneck is listed with its output shape for a blank pair of SHAPE
    assert "backbone.net.0.1.submodule.1.submodule.1.submodule.0 (1, 32, 2, 2, 2)" in msg


def test_an_output_that_is_no_displacement_or_grid_is_refused():
    moving, fixed = _pair()
    adapter = HookAdapter(_voxelmorph(), "backbone.net.0", output_key=0, shape=SHAPE)   # 0: the warped image
    with pytest.raises(AdapterError) as e:
        adapter.displacement(moving, fixed)
    assert "is not a displacement (2, 3, 16, 16, 16)" in _one_line(e) and "(2, 1, 16, 16, 16)" in str(e.value)
    with pytest.raises(AdapterError, match="returns a tuple of 2; set output_key"):
        HookAdapter(_voxelmorph(), "backbone.net.0").displacement(moving, fixed)
    with pytest.raises(AdapterError, match="output_key 5"):
        HookAdapter(_voxelmorph(), "backbone.net.0", output_key=5).displacement(moving, fixed)


def test_a_code_of_the_wrong_shape_is_refused():
    adapter = READY["voxelmorph, integration"]()
    moving, fixed = _pair(1)
    with pytest.raises(AdapterError) as e:
        adapter.decode(torch.zeros(1, 16, 2, 2, 2), adapter.context(moving, fixed))
    assert "code (16, 2, 2, 2) does not match the output of module" in _one_line(e)
    assert "(32, 2, 2, 2)" in str(e.value)


def test_bad_adapter_options_and_objects_are_refused():
    with pytest.raises(AdapterError, match="output must be one of"):
        HookAdapter(_voxelmorph(), "backbone", output="flow")
    with pytest.raises(AdapterError, match="called 1 time"):
        HookAdapter(_ours(), "decoder.ups.0", hook="input", call=3, output_key="phi_mf").encode(*_pair(1))
    with pytest.raises(AdapterError, match="not a registration adapter"):
        as_adapter(torch.nn.Linear(2, 2))
    with pytest.raises(AdapterError, match="fuses the pair early"):
        READY["localnet"]().encode_volume(_pair(1)[0])


# --------------------------------------------------------------------------------------- families, training

def test_families_build_from_a_config_and_refuse_bad_values(tmp_path):
    from regexplain.config import ConfigError

    cfg = load_config("smoke", overrides={"model": {"family": "monai_voxelmorph"}})
    assert isinstance(build_model(cfg), MonaiVoxelMorphAdapter)
    cfg = load_config("smoke", overrides={"model": {"family": "monai_localnet",
                                                    "adapter": {"kwargs": {"num_channel_initial": 4}}}})
    assert isinstance(build_model(cfg), MonaiLocalNetAdapter)
    with pytest.raises(ConfigError, match="model.family must be one of"):
        load_config("smoke", overrides={"model": {"family": "transmorph"}})
    with pytest.raises(ConfigError, match="divisible by 2\\^5 = 32"):
        load_config("smoke", overrides={"model": {"family": "monai_voxelmorph",
                                                  "adapter": {"kwargs": {"channels": [4] * 10}}}})
    with pytest.raises(ConfigError, match="package.module:function"):
        load_config("smoke", overrides={"model": {"family": "factory", "adapter": {"factory": "nofunction"}}})


def test_a_factory_network_is_wrapped_by_its_hook_options(tmp_path, monkeypatch):
    (tmp_path / "mynets.py").write_text(
        "import torch\n"
        "from monai.networks.nets import VoxelMorph\n"
        "def build(integration_steps=7):\n"
        "    torch.manual_seed(0)\n"
        "    return VoxelMorph(integration_steps=integration_steps)\n"
        "def broken(**kwargs):\n"
        "    raise RuntimeError('no GPU here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    over = {"model": {"family": "factory", "adapter": {
        "factory": "mynets:build", "kwargs": {"integration_steps": 0}, "inputs": "pair", "output_key": "1",
        "bottleneck": "backbone.net.0.1.submodule.1.submodule.1.submodule.0", "divisor": 8}}}
    model = build_model(load_config("smoke", overrides=over))
    moving, fixed = _pair(1)
    with torch.no_grad():
        assert torch.allclose(model.displacement(moving, fixed), model.network(moving, fixed)[1])
    over["model"]["adapter"]["factory"] = "mynets:broken"
    with pytest.raises(AdapterError, match="mynets:broken' failed: RuntimeError: no GPU here"):
        build_model(load_config("smoke", overrides=over))
    over["model"]["adapter"].update(factory="mynets:build", bottleneck="backbone.nope")
    with pytest.raises(AdapterError, match="no module 'backbone.nope'"):
        build_model(load_config("smoke", overrides=over))


@pytest.mark.slow
def test_a_monai_voxelmorph_trains_resumes_and_reloads_with_regexplains_trainer(tmp_path, hippo_root):
    from regexplain.registration.checkpoint import load_model
    from regexplain.registration.train import train

    over = {"data": {"root": str(hippo_root)}, "model": {"family": "monai_voxelmorph"},
            "loss": {"smoothness": "displacement_l2"}, "train": {"steps": 4, "processes": 1}}
    cfg = load_config("smoke", overrides=over)
    metrics = train(cfg, tmp_path / "run", progress=False)
    assert metrics["steps"] == 4 and np.isfinite(metrics["dice_after"])
    model, stored = load_model(tmp_path / "run")
    assert isinstance(model, MonaiVoxelMorphAdapter) and stored.model.family == "monai_voxelmorph"
    again = train(load_config("smoke", overrides={**over, "train": {"steps": 6, "processes": 1}}),
                  tmp_path / "run", resume=True, progress=False)
    assert again["steps"] == 6


# ------------------------------------------------------------------------------------------- the commands

SPEC = """extends: smoke
common:
  model:
    family: factory
    adapter:
      factory: mynets_cli:build
      kwargs: {integration_steps: 0}
      bottleneck: backbone.net.0.1.submodule.1.submodule.1.submodule.0
      inputs: pair
      output_key: "1"
      divisor: 8
"""


@pytest.mark.slow
def test_a_network_trained_elsewhere_is_imported_decomposed_and_shared(tmp_path, monkeypatch, capsys):
    """`network modules | import | share` and `decompose` / `casestudy` on a MONAI VoxelMorph whose weights
    come from a plain state dict, described by a profile YAML naming a factory."""
    import json

    from regexplain.cli import main
    from regexplain.data.synthetic import synthesize_hippocampus

    (tmp_path / "mynets_cli.py").write_text(
        "from monai.networks.nets import VoxelMorph\n"
        "def build(integration_steps=7):\n"
        "    return VoxelMorph(integration_steps=integration_steps)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "my_network.yaml"
    spec.write_text(SPEC)
    data = synthesize_hippocampus(tmp_path / "data", 12, (64, 64, 64), seed=0, progress=False)
    torch.manual_seed(3)
    trained = monai_nets.VoxelMorph(integration_steps=0)
    torch.save({"state_dict": {f"module.{k}": v for k, v in trained.state_dict().items()}}, tmp_path / "w.pt")

    assert main(["network", "modules", "--profile", str(spec)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\nbackbone\.net\.0\.1\.submodule\.1\.submodule\.1\.submodule\.0 +\(1, 32, 2, 2, 2\)  <-\n",
                     out), out

    run = tmp_path / "run"
    assert main(["network", "import", "--profile", str(spec), "--weights", str(tmp_path / "w.pt"),
                 "--data", str(data), "--out", str(run)]) == 0
    model, _ = __import__("regexplain.registration.checkpoint", fromlist=["load_model"]).load_model(run)
    for k, v in trained.state_dict().items():
        assert torch.equal(model.network.state_dict()[k], v), k
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 0 and 0 < metrics["dice_before"] <= 1

    assert main(["decompose", "--model", str(run), "--out", str(run / "dec"), "-k", "3"]) == 0
    assert json.loads((run / "dec" / "decomposition.json").read_text())["meta"]["fusion"] == "early"
    assert main(["casestudy", "--model", str(run), "--decomposition", str(run / "dec"),
                 "--out", str(run / "cs")]) == 0
    assert main(["network", "share", "--model", str(run), "--pairs", "3", "--out", str(tmp_path / "s.json")]) == 0
    share = json.loads((tmp_path / "s.json").read_text())
    assert share["trained"]["n_pairs"] == 3 and np.isfinite(share["untrained"]["bottleneck_share"])


def test_weights_that_do_not_fit_are_refused_in_one_line(tmp_path, monkeypatch, capsys):
    from regexplain.cli import main

    (tmp_path / "mynets_cli.py").write_text(
        "from monai.networks.nets import VoxelMorph\n"
        "def build(integration_steps=7):\n"
        "    return VoxelMorph(integration_steps=integration_steps)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = tmp_path / "my_network.yaml"
    spec.write_text(SPEC)
    torch.save({"backbone.net.0.0.conv.weight": torch.zeros(1)}, tmp_path / "w.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    for weights, expected in (("w.pt", "missing keys"), ("junk.pt", "cannot read weights"),
                              ("none.pt", "no such weights file")):
        assert main(["network", "import", "--profile", str(spec), "--weights", str(tmp_path / weights),
                     "--out", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0] and weights in err[0]
        assert not (tmp_path / "run").exists()
