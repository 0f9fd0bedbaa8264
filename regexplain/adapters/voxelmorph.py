"""Ready adapter for VoxelMorph's own PyTorch package (``pip install voxelmorph``, 0.3.4 and later: PyTorch
only, no TensorFlow): ``voxelmorph.nn.models.VxmPairwise``.

Its backbone is neurite's ``BasicUNet`` (``model``): the code is the output of ``model.lowest_resolution_conv_block``,
below ``len(nb_features)`` max-poolings; every level above reaches the decoder through a skip connection.
``VxmPairwise(source, target)`` returns the displacement (integrated from its velocity field when
``integration_steps > 0``) in voxels, channels in array-axis order, sampled by its ``SpatialTransformer`` as
``source(x + disp(x))`` with ``align_corners=True``: regexplain's displacement as it is
(``tests/test_adapters.py`` checks it against VoxelMorph's transformer).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from regexplain.adapters.hooks import HookAdapter
from regexplain.errors import AdapterError


class VoxelMorphAdapter(HookAdapter):
    """VoxelMorph's ``VxmPairwise``, called with the pair."""

    def __init__(self, network: nn.Module, *, shape: Sequence[int] | None = None):
        unet = getattr(network, "model", None)
        blocks = getattr(unet, "downsampling_conv_blocks", None)
        if blocks is None or not hasattr(unet, "lowest_resolution_conv_block"):
            raise AdapterError(f"VoxelMorphAdapter wraps voxelmorph's VxmPairwise (a neurite BasicUNet in .model), "
                               f"got {type(network).__name__}")
        super().__init__(network, "model.lowest_resolution_conv_block", inputs="pair", output="displacement",
                         divisor=2 ** len(blocks), shape=shape)
