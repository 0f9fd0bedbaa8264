"""Ready adapters for MONAI's registration networks (``monai.networks.nets``): a :class:`HookAdapter` each, with
the bottleneck, the call and the output already named.

* ``VoxelMorph`` (``VoxelMorph(backbone, integration_steps, half_res)``, with or without integration) and its
  bare backbone ``VoxelMorphUNet``: the code is the output of the deepest down layer of the U-Net (the
  convolution after the last max-pooling, before its nearest upsampling); every shallower level reaches the
  decoder through a ``SkipConnection``. ``VoxelMorph`` returns ``(warped, ddf)``: the DDF is taken; the bare
  backbone returns the DDF (or, for a diffeomorphic model, the velocity field it was trained to integrate).
* ``LocalNet`` (and any ``RegUNet``): the code is the output of ``bottom_block``; the decoder adds the encoder
  features of each level (``concat_skip=False``) or concatenates them.

MONAI's DDF is regexplain's displacement as it is: voxels, channels in array-axis order, sampled by
``Warp`` as ``moving(x + ddf(x))`` with ``align_corners=True`` (``tests/test_adapters.py`` checks it
against MONAI's ``Warp``).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from regexplain.adapters.hooks import HookAdapter
from regexplain.errors import AdapterError


def voxelmorph_bottleneck(unet: nn.Module) -> tuple[str, int]:
    """``(module name, downsamplings)`` of a ``VoxelMorphUNet``'s bottleneck: the down layer of its bottom
    block, reached through the nested ``SkipConnection`` blocks under ``net.0``."""
    from monai.networks.layers.simplelayers import SkipConnection

    name, block, depth = "net.0", unet.net[0], 0
    while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
        name, block, depth = f"{name}.1.submodule", block[1].submodule, depth + 1
    if not (isinstance(block, nn.Sequential) and len(block) == 2):
        raise AdapterError(f"{type(unet).__name__}: no bottom block found under net.0 (MONAI's layout changed?)")
    return f"{name}.0", depth


class MonaiVoxelMorphAdapter(HookAdapter):
    """MONAI's ``VoxelMorph`` (called with the pair) or ``VoxelMorphUNet`` (called with the concatenated pair)."""

    def __init__(self, network: nn.Module, *, shape: Sequence[int] | None = None):
        from monai.networks.nets import VoxelMorph, VoxelMorphUNet

        if isinstance(network, VoxelMorph):
            unet, prefix, inputs, key = network.backbone, "backbone.", "pair", 1
        elif isinstance(network, VoxelMorphUNet):
            unet, prefix, inputs, key = network, "", "concat", None
        else:
            raise AdapterError(f"MonaiVoxelMorphAdapter wraps monai's VoxelMorph or VoxelMorphUNet, got "
                               f"{type(network).__name__}")
        if not isinstance(unet, VoxelMorphUNet):
            raise AdapterError(f"VoxelMorph's backbone is a {type(unet).__name__}: wrap it in a HookAdapter "
                               "naming its bottleneck")
        name, depth = voxelmorph_bottleneck(unet)
        super().__init__(network, prefix + name, inputs=inputs, output="displacement", output_key=key,
                         divisor=2 ** depth, shape=shape)


class MonaiLocalNetAdapter(HookAdapter):
    """MONAI's ``LocalNet`` (or another ``RegUNet`` with a dense output), called with the concatenated pair."""

    def __init__(self, network: nn.Module, *, shape: Sequence[int] | None = None):
        from monai.networks.nets.regunet import RegUNet

        if not isinstance(network, RegUNet):
            raise AdapterError(f"MonaiLocalNetAdapter wraps monai's LocalNet / RegUNet, got {type(network).__name__}")
        super().__init__(network, "bottom_block", inputs="concat", output="displacement",
                         divisor=2 ** int(network.depth), shape=shape)
