"""The paper's network through the adapter interface: one shared encoder, codes subtracted (late fusion).

``encode(M, F) = E(M) - E(F)``; ``encode_volume(x) = E(x)``; the context of a pair is its encoder feature
differences at the skip levels (skip model) or nothing (no skip). The identity pair's code is zero and its
skip differences are zero, so decoding about it is the paper's ``D(v)``, computed exactly as
:class:`~regexplain.registration.model.RegistrationNet` always did (``decoder`` with ``skips=None``).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from regexplain.adapters.base import RegistrationAdapter, expand
from regexplain.registration import spatial


class LateFusionAdapter(RegistrationAdapter):
    """Adapter of a late-fusion network with ``encode(x) -> code`` and ``decode(code, skips=None) ->`` positive
    spatial gradients (:class:`~regexplain.registration.model.RegistrationNet`, or any module with those two
    methods; skip features are used when the module has ``skip_connections`` and an ``encoder`` returning
    every level's features)."""

    fusion = "late"

    def __init__(self, network: nn.Module):
        super().__init__(network, divisor=2 ** int(getattr(network, "depth", 0)))

    @property
    def _skips(self) -> bool:
        return bool(getattr(self.network, "skip_connections", False)) and hasattr(self.network, "encoder")

    def encode_volume(self, x: Tensor) -> Tensor:
        return self.network.encode(x)

    def encode(self, moving: Tensor, fixed: Tensor) -> Tensor:
        return self.network.encode(moving) - self.network.encode(fixed)

    def context(self, moving: Tensor, fixed: Tensor) -> list[Tensor] | None:
        """The encoder feature differences ``E_l(M) - E_l(F)`` below the bottleneck (skip model), else None."""
        if not self._skips:
            return None
        return [a - b for a, b in zip(self.network.encoder(moving)[:-1], self.network.encoder(fixed)[:-1],
                                      strict=True)]

    def decode_map(self, code: Tensor, context: Any = None) -> Tensor:
        skips = None if context is None else [expand(s, code.shape[0]).to(code) for s in context]
        grads = self.network.decode(code, skips) if skips is not None else self.network.decode(code)
        return spatial.integrate_gradients(grads.float())

    def decode(self, code: Tensor, context: Any = None) -> Tensor:
        return spatial.map_to_displacement(self.decode_map(code, context))

    def displacement(self, moving: Tensor, fixed: Tensor) -> Tensor:
        return spatial.map_to_displacement(self.network(moving, fixed).phi_mf)

    def latent_shape(self, shape):
        if hasattr(self.network, "latent_shape"):
            return tuple(self.network.latent_shape(shape))
        return super().latent_shape(shape)

    def check_shape(self, shape) -> None:
        if hasattr(self.network, "check_shape"):
            self.network.check_shape(shape)
        else:
            super().check_shape(shape)

    def forward(self, moving: Tensor, fixed: Tensor):
        return self.network(moving, fixed)

    def register(self, moving: Tensor, fixed: Tensor, *, precision: str = "float32") -> Tensor:
        if hasattr(self.network, "register"):
            return self.network.register(moving, fixed, precision=precision)
        return super().register(moving, fixed, precision=precision)

    def code_weight(self) -> Tensor:
        decoder = getattr(self.network, "decoder", None)
        if decoder is None or not hasattr(decoder, "ups"):
            return super().code_weight()
        return decoder.ups[0][0].weight
