"""The adapter interface: what regexplain's latent analysis needs from a registration network.

Every network reaches the analysis (bases, scores, case study, matching, explorer, figures, notebooks)
through a :class:`RegistrationAdapter`, a ``torch.nn.Module`` wrapping the network that answers:

* ``encode(moving, fixed) -> code`` ``(B, *latent_shape)``: the bottleneck of the pair. Late fusion (the
  paper's network) gives ``E(M) - E(F)``; early fusion (VoxelMorph, MONAI's LocalNet...) the bottleneck of
  the concatenated pair.
* ``context(moving, fixed)``: what the decoder needs besides the code, e.g. the skip features of that pair;
  ``None`` for a network whose decoder reads the code alone.
* ``decode(code, context) -> displacement`` ``(B, 3, D, H, W)`` in voxels, regexplain's convention
  (:mod:`regexplain.registration.spatial`): ``warped(x) = moving(x + u(x))``, channels in array-axis order
  ``(D, H, W)``. A context holds one pair (batch 1) and serves a whole batch of codes: decoding many codes
  with the skips of one reference pair is "frozen skips".
* ``fusion``: ``"late"`` or ``"early"``. A late-fusion adapter also has ``encode_volume(x) -> E(x)``.

How the analysis uses it (:mod:`regexplain.analysis.latent`):

* *Volume codes.* The paper encodes every training volume alone, ``E(X)``. An early-fusion network has no
  code of one volume, so a volume's code is that of the pair ``(X, R)``, registered to one reference volume
  ``R`` (the first training volume, stored with the decomposition). For late fusion the two agree: PCA is
  blind to the common shift ``-E(R)``, so components, variances and coefficient differences are the same.
* *Decoding a direction* ``v`` of the latent space: ``D(z_R + v, c_R) - ...`` where ``z_R``, ``c_R`` are the
  code and context of the identity pair ``(R, R)`` (:meth:`RegistrationAdapter.origin`). For late fusion
  ``z_R = 0`` and the skip differences are zero: exactly the paper's ``D(v)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from regexplain.config import PRECISIONS
from regexplain.errors import AdapterError
from regexplain.registration import spatial

#: ``RegistrationAdapter.fusion`` values
FUSIONS = ("late", "early")


class RegistrationAdapter(nn.Module):
    """Base class of every adapter (see the module docstring). Subclasses implement :meth:`encode`,
    :meth:`context`, :meth:`decode` and :meth:`displacement`; the rest follows from them.

    Attributes:
        network: the wrapped ``torch.nn.Module`` (its state dict is the checkpoint's, prefixed ``network.``).
        fusion: ``"late"`` or ``"early"``.
        divisor: every working-shape size must be a multiple of it (``2 ** downsamplings``).
    """

    fusion: str = "early"

    def __init__(self, network: nn.Module, *, divisor: int = 1):
        super().__init__()
        self.network = network
        self.training = network.training     # eval() / train() of the adapter then restore the network's own
        self.divisor = int(divisor)
        self._shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._origin: tuple[str, Tensor | None, Any] | None = None

    # ----------------------------------------------------------------------------- the interface
    def encode(self, moving: Tensor, fixed: Tensor) -> Tensor:
        """``(B, 1, D, H, W)`` pair -> code ``(B, *latent_shape)``."""
        raise NotImplementedError

    def context(self, moving: Tensor, fixed: Tensor) -> Any:
        """What :meth:`decode` needs besides the code for the pair (batch 1), or ``None``."""
        raise NotImplementedError

    def decode(self, code: Tensor, context: Any = None) -> Tensor:
        """Code ``(B, *latent_shape)`` -> displacement ``(B, 3, D, H, W)`` in voxels."""
        raise NotImplementedError

    def displacement(self, moving: Tensor, fixed: Tensor) -> Tensor:
        """The network's own output for the pair, converted to a displacement ``(B, 3, D, H, W)`` in voxels:
        the reference that ``decode(encode(m, f), context(m, f))`` must reproduce."""
        raise NotImplementedError

    def encode_volume(self, x: Tensor) -> Tensor:
        """``E(x)`` of one volume: late fusion only."""
        raise AdapterError(f"{type(self).__name__} fuses the pair early: it has no code of one volume; "
                           "encode the pair (volume, reference) instead")

    # ------------------------------------------------------------------------- derived from it
    def decode_map(self, code: Tensor, context: Any = None) -> Tensor:
        """:meth:`decode` as a voxel sampling map ``(B, 3, D, H, W)``."""
        return spatial.displacement_to_map(self.decode(code, context))

    def origin(self, reference: Tensor | None) -> tuple[Tensor | None, Any]:
        """Code and context of the identity pair ``(reference, reference)``, about which directions are
        decoded (``(None, None)`` for late fusion: the zero code, no context). Cached for one reference."""
        if self.fusion == "late":
            return None, None
        if reference is None:
            raise AdapterError(f"{type(self).__name__} fuses the pair early: decoding a direction needs a "
                               "reference volume (the decomposition's reference_image)")
        key = _digest(reference)
        if self._origin is None or self._origin[0] != key:
            ref = reference.to(_device(self), torch.float32)
            with torch.no_grad():
                self._origin = (key, self.encode(ref, ref), self.context(ref, ref))
        return self._origin[1], self._origin[2]

    def latent_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """Shape of one code for volumes of shape ``(D, H, W)`` (found by encoding a blank pair once)."""
        shape = tuple(int(s) for s in shape)
        self.check_shape(shape)
        if shape not in self._shapes:
            blank = torch.zeros(1, 1, *shape, device=_device(self))
            with torch.no_grad():
                self._shapes[shape] = tuple(int(s) for s in self.encode(blank, blank).shape[1:])
        return self._shapes[shape]

    def check_shape(self, shape: Sequence[int]) -> None:
        """``ValueError`` unless every size of ``shape`` ``(D, H, W)`` is a multiple of :attr:`divisor`."""
        if len(shape) != 3 or any(int(s) <= 0 or int(s) % self.divisor for s in shape):
            raise ValueError(f"volume shape {tuple(shape)} must be three sizes divisible by {self.divisor} "
                             f"({type(self).__name__} downsamples by {self.divisor})")

    def forward(self, moving: Tensor, fixed: Tensor):
        """Both directions for training: a :class:`~regexplain.registration.model.RegistrationOutput` whose
        maps come from :meth:`displacement` and whose gradients are their per-axis differences
        (:func:`~regexplain.registration.spatial.differentiate_map`, what the smoothness term reads)."""
        from regexplain.registration.model import RegistrationOutput

        if moving.shape != fixed.shape:
            raise ValueError(f"moving and fixed must have the same shape, got {tuple(moving.shape)} "
                             f"and {tuple(fixed.shape)}")
        b = moving.shape[0]
        phi = spatial.displacement_to_map(self.displacement(torch.cat([moving, fixed]),
                                                            torch.cat([fixed, moving])).float())
        grads = spatial.differentiate_map(phi)
        return RegistrationOutput(grads[:b], grads[b:], phi[:b], phi[b:])

    @torch.no_grad()
    def register(self, moving: Tensor, fixed: Tensor, *, precision: str = "float32") -> Tensor:
        """Voxel sampling map ``(B, 3, D, H, W)`` float32 of the pair (``warp(moving, phi) ~ fixed``)."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        with torch.autocast(moving.device.type, dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            disp = self.displacement(moving, fixed)
        return spatial.displacement_to_map(disp.float())

    def code_weight(self) -> Tensor:
        """Weight ``(C_code, C_out, *kernel)`` of the first decoder layer reading the code (the SeFa basis)."""
        raise AdapterError(f"basis 'sefa' needs the weight of the first layer that reads the code; "
                           f"{type(self).__name__} does not expose it")


def expand(x: Tensor, n: int) -> Tensor:
    """A batch-1 tensor repeated to batch ``n`` (a larger batch is returned as it is)."""
    return x.expand(n, *x.shape[1:]) if x.shape[0] == 1 and n != 1 else x


def _device(module: nn.Module) -> torch.device:
    p = next(module.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _digest(t: Tensor) -> str:
    a = t.detach().float().cpu().contiguous().numpy()
    return f"{a.shape}:{hashlib.sha1(a.tobytes()).hexdigest()}"


def as_adapter(model) -> RegistrationAdapter:
    """``model`` itself when it is an adapter; regexplain's own ``RegistrationNet`` (or any module with the
    late-fusion methods ``encode(x) -> code`` and ``decode(code) -> spatial gradients``) wrapped in a
    :class:`~regexplain.adapters.late_fusion.LateFusionAdapter`.

    Raises:
        AdapterError: anything else, naming what an adapter needs.
    """
    if isinstance(model, RegistrationAdapter):
        return model
    from regexplain.adapters.late_fusion import LateFusionAdapter

    if isinstance(model, nn.Module) and callable(getattr(model, "encode", None)) \
            and callable(getattr(model, "decode", None)):
        return LateFusionAdapter(model)
    raise AdapterError(f"{type(model).__name__} is not a registration adapter: wrap it in one of "
                       "regexplain.adapters (HookAdapter names its bottleneck module; MONAI's VoxelMorph and "
                       "LocalNet have ready ones)")
