"""The bottleneck share: how much of a network's deformation its bottleneck controls, for any network.

The paper's Fig 8 argues that skip connections spoil the latent decomposition, because part of the
deformation bypasses the bottleneck. The share puts a number on it. For a validation pair ``(M, F)`` with
code ``z`` and context ``c`` (skip features), and the identity pair ``(F, F)`` with ``z0``, ``c0``:

* the pair's deformation ``u = D(z, c) - D(z0, c0)`` (relative to the network's answer for identical inputs);
* what the bottleneck alone does, along the basis, skips frozen at the identity pair's:
  ``u_b = D(z0 + P(z - z0), c0) - D(z0, c0)``, ``P`` the projection onto the span of the decomposition's
  components;
* what the skip features alone do: ``u_s = D(z0, c) - D(z0, c0)``.

``bottleneck share = 1 - sum ||u - u_b||^2 / sum ||u||^2`` over the pairs and voxels (an R^2: 1 when the
bottleneck along the basis reproduces the deformation, 0 when it adds nothing, negative when it moves the
wrong way); ``skip share`` is the same for ``u_s``. A network without skips has no context: its share is the
share of its code's change that the K components hold (near 1 when they explain the latent variance).

Baseline: the same architecture untrained, with a basis fitted on its own codes (:func:`untrained_model`);
regexplain's zero-initialised output layer is drawn like its other layers there, since the identity it
would give everywhere has no deformation to share.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from regexplain.analysis.latent import Decomposition, inference, model_device


def bottleneck_share(model, dec: Decomposition, images: torch.Tensor, pairs: Sequence[tuple[int, int]]
                     ) -> dict[str, Any]:
    """The shares of the module docstring over ``pairs`` ``(moving index, fixed index)`` of ``images``
    ``(N, 1, D, H, W)``.

    Returns:
        ``{"bottleneck_share", "skip_share", "n_pairs", "mean_norm"}``, ``mean_norm`` the mean ``|u|`` in voxels
        (a share of a network that does not deform is not meaningful: read it beside this).
    """
    from regexplain.adapters import as_adapter

    adapter = as_adapter(model)
    dev = model_device(adapter)
    basis = torch.as_tensor(np.asarray(dec.components, np.float32), device=dev)        # (K, F)
    sums = np.zeros(4)                                          # |u|^2, |u - u_b|^2, |u - u_s|^2, sum |u|
    count = 0
    with inference(adapter):
        for mi, fi in pairs:
            m, f = (images[i:i + 1].to(dev, torch.float32) for i in (mi, fi))
            z, c = adapter.encode(m, f), adapter.context(m, f)
            z0, c0 = adapter.encode(f, f), adapter.context(f, f)
            rest = adapter.decode(z0, c0)
            u = adapter.decode(z, c) - rest
            dz = ((z - z0).flatten(1) @ basis.T @ basis).reshape(z.shape)
            u_b = adapter.decode(z0 + dz, c0) - rest
            u_s = adapter.decode(z0, c) - rest
            sums += [float(u.square().sum()), float((u - u_b).square().sum()), float((u - u_s).square().sum()),
                     float(u.square().sum(1).sqrt().sum())]
            count += u[0, 0].numel()
    total = max(sums[0], 1e-30)
    return {"bottleneck_share": 1.0 - sums[1] / total, "skip_share": 1.0 - sums[2] / total,
            "n_pairs": len(pairs), "mean_norm": sums[3] / max(count, 1)}


def untrained_model(cfg, seed: int = 0):
    """The architecture of ``cfg`` with fresh weights (``seed``), eval mode: the share's baseline. Output layers
    initialised to zero (regexplain's head and side heads) are drawn like the layers before them."""
    from regexplain.adapters import build_model

    torch.manual_seed(seed)
    model = build_model(cfg)
    decoder = getattr(model, "decoder", None)
    if decoder is not None and hasattr(decoder, "head"):
        for conv in (decoder.head, *getattr(decoder, "side", ())):
            conv.reset_parameters()
    return model.eval()
