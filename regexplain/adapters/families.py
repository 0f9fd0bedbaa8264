"""Model families: the network a config describes, built ready for training and analysis (GANSpace's one
wrapper per model family).

``model.family`` (:data:`regexplain.config.FAMILIES`):

* ``regexplain``: the paper's :class:`~regexplain.registration.model.RegistrationNet` (``model.channels``...),
  returned as it is (the trainer, the analysis and old checkpoints see the very same module);
* ``monai_voxelmorph``: MONAI's ``VoxelMorph`` with a ``VoxelMorphUNet`` backbone; ``model.adapter.kwargs``
  are the backbone's arguments (MONAI's defaults: ``channels (16, 32, 32, 32, 32, 32)``,
  ``final_conv_channels (16, 16)``, ``unet_out_channels 32``) plus ``integration_steps`` (7: diffeomorphic;
  0: a displacement network) and ``half_res``;
* ``monai_localnet``: MONAI's ``LocalNet``; ``kwargs`` its arguments (defaults ``num_channel_initial 16``,
  ``extract_levels (0, 1, 2, 3)``);
* ``voxelmorph``: VoxelMorph's own PyTorch ``VxmPairwise`` (``pip install voxelmorph``); ``kwargs`` its
  arguments (defaults ``nb_features (16,) * 5``, ``integration_steps 5``);
* ``factory``: ``model.adapter.factory = "package.module:function"`` called with ``kwargs``; it returns a
  :class:`~regexplain.adapters.base.RegistrationAdapter` (used as it is) or a network, wrapped in a
  :class:`~regexplain.adapters.hooks.HookAdapter` with the other ``model.adapter`` options.

Every family but ``regexplain`` is an adapter, whose ``forward`` gives both directions for the trainer and
whose state dict a checkpoint stores (keys ``network.*``).
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from torch import nn

from regexplain.config import LOCALNET_LEVELS, VOXELMORPH_CHANNELS, VXM_FEATURES, Config
from regexplain.errors import AdapterError

_VXM_WRAPPER = ("integration_steps", "half_res")


def build_model(cfg: Config) -> nn.Module:
    """The untrained network of ``cfg.model`` (see the module docstring) for volumes of ``cfg.data.shape``.

    Raises:
        AdapterError: a factory that cannot be imported or called, MONAI missing, or a network the adapter
            cannot reach (naming the option at fault).
    """
    m = cfg.model
    shape = tuple(cfg.data.shape)
    if m.family == "regexplain":
        from regexplain.registration.model import RegistrationNet

        return RegistrationNet.from_config(cfg)
    if m.family == "monai_voxelmorph":
        return monai_voxelmorph(shape, **m.adapter.kwargs)
    if m.family == "monai_localnet":
        return monai_localnet(shape, **m.adapter.kwargs)
    if m.family == "voxelmorph":
        return voxelmorph(shape, **m.adapter.kwargs)
    if m.family == "factory":
        return from_factory(cfg)
    raise AdapterError(f"model.family {m.family!r} is not a model family")


def _monai(what: str):
    try:
        return importlib.import_module("monai.networks.nets")
    except ImportError as e:
        raise AdapterError(f"model family {what} needs MONAI: pip install 'monai>=1.3' "
                           f"(or pip install -e '.[adapters]'): {e}") from e


def monai_voxelmorph(shape=None, **kwargs: Any) -> nn.Module:
    """MONAI's ``VoxelMorph`` (backbone ``VoxelMorphUNet`` of ``kwargs``, MONAI's defaults otherwise) in its
    :class:`~regexplain.adapters.monai.MonaiVoxelMorphAdapter`."""
    from regexplain.adapters.monai import MonaiVoxelMorphAdapter

    nets = _monai("monai_voxelmorph")
    wrapper = {k: kwargs.pop(k) for k in _VXM_WRAPPER if k in kwargs}
    backbone = {"spatial_dims": 3, "in_channels": 2, "unet_out_channels": 32, "channels": VOXELMORPH_CHANNELS,
                "final_conv_channels": (16, 16), **kwargs}
    try:
        with warnings.catch_warnings():   # MONAI announces, per Warp, that it uses torch's grid_sample
            warnings.filterwarnings("ignore", message=".*Using PyTorch native grid_sample")
            net = nets.VoxelMorph(backbone=nets.VoxelMorphUNet(**backbone), spatial_dims=3, **wrapper)
    except (TypeError, ValueError) as e:
        raise AdapterError(f"model.adapter.kwargs of monai_voxelmorph: {e}") from e
    return MonaiVoxelMorphAdapter(net, shape=shape)


def monai_localnet(shape=None, **kwargs: Any) -> nn.Module:
    """MONAI's ``LocalNet`` of ``kwargs`` in its :class:`~regexplain.adapters.monai.MonaiLocalNetAdapter`."""
    from regexplain.adapters.monai import MonaiLocalNetAdapter

    nets = _monai("monai_localnet")
    args = {"spatial_dims": 3, "in_channels": 2, "num_channel_initial": 16, "extract_levels": LOCALNET_LEVELS,
            **kwargs}
    try:
        net = nets.LocalNet(**{**args, "extract_levels": tuple(args["extract_levels"])})
    except (TypeError, ValueError) as e:
        raise AdapterError(f"model.adapter.kwargs of monai_localnet: {e}") from e
    return MonaiLocalNetAdapter(net, shape=shape)


def voxelmorph(shape=None, **kwargs: Any) -> nn.Module:
    """VoxelMorph's own ``VxmPairwise`` (``pip install voxelmorph``; its defaults: ``nb_features (16,) * 5``,
    ``integration_steps 5``) in its :class:`~regexplain.adapters.voxelmorph.VoxelMorphAdapter`."""
    from regexplain.adapters.voxelmorph import VoxelMorphAdapter

    try:
        models = importlib.import_module("voxelmorph.nn.models")
    except ImportError as e:
        raise AdapterError(f"model family voxelmorph needs VoxelMorph's PyTorch package: pip install "
                           f"'voxelmorph>=0.3.4' (or pip install -e '.[adapters]'): {e}") from e
    try:
        net = models.VxmPairwise(ndim=3, source_channels=1, target_channels=1,
                                 **{**kwargs, "nb_features": tuple(kwargs.get("nb_features", VXM_FEATURES))})
    except (TypeError, ValueError) as e:
        raise AdapterError(f"model.adapter.kwargs of voxelmorph: {e}") from e
    return VoxelMorphAdapter(net, shape=shape)


def load_factory(spec: str):
    """The function ``"package.module:function"`` names. :class:`AdapterError` naming ``spec`` otherwise."""
    mod_name, _, fn_name = spec.partition(":")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as e:
        raise AdapterError(f"model.adapter.factory {spec!r}: cannot import {mod_name} ({e})") from e
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise AdapterError(f"model.adapter.factory {spec!r}: {mod_name} has no function {fn_name}")
    return fn


def from_factory(cfg: Config) -> nn.Module:
    """The network ``model.adapter.factory`` returns, as an adapter (see the module docstring)."""
    from regexplain.adapters.base import RegistrationAdapter
    from regexplain.adapters.hooks import HookAdapter

    a = cfg.model.adapter
    try:
        net = load_factory(a.factory)(**a.kwargs)
    except AdapterError:
        raise
    except Exception as e:  # noqa: BLE001 - the user's code: its failure in one line, naming the option
        raise AdapterError(f"model.adapter.factory {a.factory!r} failed: {type(e).__name__}: {e}") from e
    if isinstance(net, RegistrationAdapter):
        return net
    if not isinstance(net, nn.Module):
        raise AdapterError(f"model.adapter.factory {a.factory!r} returned a {type(net).__name__}, not a "
                           "torch.nn.Module")
    if not a.bottleneck:
        raise AdapterError(f"model.adapter.bottleneck: name the module of {type(net).__name__} whose output is "
                           "the code (`regexplain network modules` lists them)")
    return HookAdapter(net, a.bottleneck, hook=a.hook, inputs=a.inputs, output=a.output,
                       output_key=a.output_key or None, call=a.call, divisor=a.divisor,
                       shape=tuple(cfg.data.shape))
