"""Do different trainings find the same elementary transformations? Matching decoded fields across runs.

Two networks' latent spaces are not comparable directly, but their elementary transformations are: the
first ``n`` components of each run are decoded as displacements ``D(σ_j u_j) - D(0)`` (voxels, the λ
convention of :mod:`regexplain.latent`), restricted to a foreground mask and flattened. Runs are matched
to a reference run by the Hungarian algorithm on the field-space ``|cos|`` (the sign of a component is
arbitrary); each reference component's matched ``|cos|`` stands beside a null: the same matching against
random orthonormal directions of the other run's subspace, decoded at matched strengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from regexplain import disentangle as dz
from regexplain import spatial
from regexplain.latent import Decomposition, component_displacements, decode_codes


def _flatten(disp, mask: np.ndarray | None) -> np.ndarray:
    d = np.asarray(disp, np.float64)                    # (n, 3, D, H, W)
    sel = np.ones(d.shape[2:], bool) if mask is None else np.asarray(mask, bool)
    return d[:, :, sel].reshape(len(d), -1)


def component_fields(model, dec: Decomposition, n: int = 8, mask: np.ndarray | None = None) -> np.ndarray:
    """``(n, 3 * mask voxels)``: the first ``n`` components' ``D(σ_j u_j) - D(0)`` over ``mask``
    (bool ``(D, H, W)``, every voxel when ``None``)."""
    n = min(n, dec.n_components)
    return _flatten(component_displacements(model, dec, 1.0, "sigma", range(n), relative_to_zero=True), mask)


def random_fields(model, dec: Decomposition, n: int, mask: np.ndarray | None, rng: np.random.Generator
                  ) -> np.ndarray:
    """Fields of ``n`` random orthonormal directions of ``dec``'s subspace, direction ``j`` at ``σ_j``."""
    n = min(n, dec.n_components)
    rot = dz.random_rotation(dec.n_components, rng)[:, :n]
    dirs = (rot.T @ dec.components.astype(np.float64)) * dec.sigma[:n, None]
    zero = spatial.map_to_displacement(decode_codes(model, np.zeros((1, *dec.latent_shape), np.float32)))
    disp = spatial.map_to_displacement(decode_codes(model, dirs.reshape(n, *dec.latent_shape).astype(np.float32)))
    return _flatten(disp - zero, mask)


def match_fields(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching of the rows of ``other`` ``(m, F)`` to those of ``reference`` ``(n, F)`` on
    ``|cos|``; returns, per reference row, the matched row of ``other`` and its ``|cos|``."""
    return dz.match_components(reference, other)


def cross_run_similarity(runs: Sequence[tuple[Any, Decomposition]], mask: np.ndarray | None = None, *,
                         n: int = 8, n_null: int = 20, seed: int = 0) -> dict[str, Any]:
    """Match every run's first ``n`` fields to the first run's.

    Args:
        runs: ``(model, decomposition)`` per run, the reference first; the models share the working shape.
        mask: bool ``(D, H, W)`` foreground over which fields are compared.
    Returns:
        ``components``: per reference component (1-based) the mean matched ``|cos|`` over the other runs,
        the null's mean and 95th percentile; ``pairs``: per other run the matched component (1-based) and
        ``|cos|`` of each reference component.
    Raises:
        ValueError: fewer than two runs.
    """
    if len(runs) < 2:
        raise ValueError("cross-run matching needs at least two runs")
    rng = np.random.default_rng(seed)
    ref = component_fields(*runs[0], n, mask)
    pairs, null = [], []
    for model, dec in runs[1:]:
        order, cos = match_fields(ref, component_fields(model, dec, n, mask))
        pairs.append({"match": (order + 1).tolist(), "cos": cos.tolist()})
        null += [match_fields(ref, random_fields(model, dec, n, mask, rng))[1] for _ in range(n_null)]
    sims, null = np.array([p["cos"] for p in pairs]), np.array(null)
    return {"components": [{"component": j + 1, "similarity": float(sims[:, j].mean()),
                            "null_mean": float(null[:, j].mean()), "null_p95": float(np.percentile(null[:, j], 95))}
                           for j in range(ref.shape[0])],
            "pairs": pairs}


def matched_displacements(runs: Sequence[tuple[Any, Decomposition]], result: dict[str, Any], component: int = 1):
    """``(n_runs, 3, D, H, W)``: reference component ``component`` (1-based) and, for each other run, the
    component matched to it in ``result`` (:func:`cross_run_similarity`), as ``D(σ u) - D(0)``; the sign
    of each is flipped to agree with the reference (a component's sign is arbitrary)."""
    picks = [component - 1] + [p["match"][component - 1] - 1 for p in result["pairs"]]
    disp = [component_displacements(m, d, 1.0, "sigma", [j], relative_to_zero=True)[0]
            for (m, d), j in zip(runs, picks, strict=True)]
    ref = disp[0].flatten()
    return np.stack([(d if float(d.flatten() @ ref) >= 0 else -d).numpy() for d in disp])
