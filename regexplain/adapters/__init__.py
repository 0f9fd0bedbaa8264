"""Adapters: any registration network explained the paper's way (:mod:`regexplain.adapters.base` defines the
interface; read its docstring first).

* :class:`LateFusionAdapter`: regexplain's own network (``E(M) - E(F)``, skip features as context);
* :class:`HookAdapter`: any network, through forward hooks on the module you name as its bottleneck;
* :class:`MonaiVoxelMorphAdapter`, :class:`MonaiLocalNetAdapter`: MONAI's VoxelMorph and LocalNet, ready;
* :class:`VoxelMorphAdapter`: VoxelMorph's own PyTorch ``VxmPairwise`` (``pip install voxelmorph``), ready;
* :func:`build_model`: the network of a config's ``model.family`` (trainable by regexplain's trainer).
"""

from regexplain.adapters.base import RegistrationAdapter, as_adapter
from regexplain.adapters.families import build_model
from regexplain.adapters.hooks import HookAdapter, module_outputs
from regexplain.adapters.late_fusion import LateFusionAdapter


def __getattr__(name: str):
    # the MONAI adapters import MONAI only when asked for
    if name in ("MonaiVoxelMorphAdapter", "MonaiLocalNetAdapter"):
        from regexplain.adapters import monai

        return getattr(monai, name)
    if name == "VoxelMorphAdapter":
        from regexplain.adapters import voxelmorph

        return voxelmorph.VoxelMorphAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RegistrationAdapter", "as_adapter", "build_model", "HookAdapter", "module_outputs",
           "LateFusionAdapter", "MonaiVoxelMorphAdapter", "MonaiLocalNetAdapter", "VoxelMorphAdapter"]
