"""Bases of the latent space: the paper's PCA and the alternatives a researcher compares it with.

Every basis is returned as a :class:`regexplain.analysis.latent.Decomposition` (unit-norm rows ``u_j``, the
training mean, the variance of each coefficient over the training codes, ``meta["basis"]``), so it is
decoded with ``D(λu)``, swept with λ and projected onto exactly like the PCA. Components are ordered by
decreasing training variance. A basis that is not orthonormal is projected by least squares
(``Decomposition.project`` uses the pseudo-inverse of the rows).

=====================  =======================================================================  ========
name                   directions                                                               needs
=====================  =======================================================================  ========
``pca``                principal vectors (the paper's; :meth:`Decomposition.fit`)               codes
``ica``                FastICA on the PCA-whitened coefficients; ``u_j`` = the PCA combination  codes
                       a source moves along (GANSpace's ICA option)
``sparse_pca``         scikit-learn ``MiniBatchSparsePCA`` rows (sparse in the code features)  codes
``sefa``               SeFa: leading right-singular vectors of the decoder's first layer,      model
                       no data. The first layer is a transposed convolution applied at every
                       code voxel, ``A`` = its weight as ``(C_out * 8, C_in)``; a channel
                       direction ``v`` is spread uniformly over the ``d h w`` code voxels
``supervised``         one direction per known factor: least-squares regression of the factor  factors
                       on the codes (in the PCA subspace), an upper bound (phantoms only)
``random_orthonormal`` Haar-random orthonormal rows (the null)                                  codes
=====================  =======================================================================  ========
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from regexplain.analysis.latent import Decomposition
from regexplain.config import BASES  # the names, torch-free for the CLI's --basis; _FIT below fits each


def _from_rows(name: str, rows: np.ndarray, latents: np.ndarray, latent_shape, meta=None) -> Decomposition:
    """A :class:`Decomposition` of unit-norm ``rows`` ``(K, F)``, ordered by training variance."""
    rows = np.asarray(rows, np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    if np.any(norms == 0) or not np.all(np.isfinite(rows)):
        raise ValueError(f"basis {name!r} produced a zero or non-finite direction")
    rows = rows / norms
    mean = latents.mean(0)
    coeffs = (latents - mean) @ np.linalg.pinv(rows)
    var = coeffs.var(0, ddof=1)
    order = np.argsort(var)[::-1]
    total = float(((latents - mean) ** 2).sum() / (latents.shape[0] - 1))
    info = {"K": int(rows.shape[0]), "n_train": int(latents.shape[0]), "basis": name, **(meta or {})}
    if "factors" in info:
        info["factors"] = [info["factors"][i] for i in order]
    shape = tuple(int(s) for s in latent_shape) if latent_shape is not None else (latents.shape[1], 1, 1, 1)
    return Decomposition(rows[order].astype(np.float32), mean.astype(np.float32), var[order],
                         var[order] / total if total > 0 else np.zeros_like(var), shape, info)


def _pca(latents, k, latent_shape, **_):
    dec = Decomposition.fit(latents, k, latent_shape=latent_shape)
    dec.meta["basis"] = "pca"
    return dec


def _ica(latents, k, latent_shape, seed=0, **_):
    from sklearn.decomposition import FastICA

    pca = Decomposition.fit(latents, k, latent_shape=latent_shape)
    white = pca.project(latents) / pca.sigma
    # the whitened coefficients are already k-dimensional: n_components=None (sklearn ignores it unwhitened)
    ica = FastICA(n_components=None, whiten=False, random_state=seed, max_iter=1000, tol=1e-5).fit(white)
    # sources s = W w (w whitened coefficients); a unit change of source j moves w along column j of
    # the mixing matrix, i.e. the code along sum_k A_kj sigma_k u_k
    rows = (ica.mixing_ * pca.sigma[:, None]).T @ pca.components.astype(np.float64)
    return _from_rows("ica", rows, latents, latent_shape)


def _sparse_pca(latents, k, latent_shape, seed=0, alpha: float = 1.0, batch_size: int = 50, max_iter: int = 50,
                **_):
    # Mini-batch: the full SparsePCA takes ~4 minutes per fit on 200 x 2048 codes on one core,
    # the mini-batch one seconds, and the bootstrap refits it ten times.
    from sklearn.decomposition import MiniBatchSparsePCA

    sp = MiniBatchSparsePCA(n_components=k, alpha=alpha, random_state=seed, batch_size=min(batch_size, len(latents)),
                            max_iter=max_iter).fit(latents - latents.mean(0))
    return _from_rows("sparse_pca", sp.components_, latents, latent_shape, {"alpha": alpha})


def sefa_directions(weight: np.ndarray, k: int) -> np.ndarray:
    """SeFa directions of a transposed 3-D convolution's weight ``(C_in, C_out, kd, kh, kw)``: the
    leading ``k`` right-singular vectors ``(k, C_in)`` of ``A = weight as (C_out * kd * kh * kw, C_in)``,
    i.e. the top eigenvectors of ``A^T A`` (the code directions that change the layer's output most)."""
    w = np.asarray(weight, np.float64)
    a = w.reshape(w.shape[0], -1).T
    _, _, vt = np.linalg.svd(a, full_matrices=False)
    return vt[:k]


def _sefa(latents, k, latent_shape, model=None, **_):
    if model is None:
        raise ValueError("basis 'sefa' needs the model (its decoder's first layer)")
    from regexplain.adapters import as_adapter

    weight = as_adapter(model).code_weight()             # the first decoder layer reading the code
    c, *spatial = latent_shape
    k = min(k, c)
    v = sefa_directions(weight.detach().cpu().numpy(), k)            # (k, C)
    rows = np.repeat(v[:, :, None], int(np.prod(spatial)), axis=2).reshape(k, -1)
    return _from_rows("sefa", rows, latents, latent_shape, {"layer": "decoder.ups.0.0 (ConvTranspose3d)"})


def _supervised(latents, k, latent_shape, factors: Mapping[str, np.ndarray] | None = None, **_):
    if not factors:
        raise ValueError("basis 'supervised' needs known factors (phantoms' factors.csv)")
    pca = Decomposition.fit(latents, min(k, latents.shape[0] - 1), latent_shape=latent_shape)
    a = pca.project(latents)
    rows, names = [], []
    for name, f in factors.items():
        f = np.asarray(f, np.float64)
        beta, *_ = np.linalg.lstsq(a, f - f.mean(), rcond=None)
        rows.append(beta @ pca.components.astype(np.float64))
        names.append(name)
    return _from_rows("supervised", np.stack(rows), latents, latent_shape, {"factors": names})


def _random(latents, k, latent_shape, seed=0, **_):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((latents.shape[1], k)))
    return _from_rows("random_orthonormal", q.T, latents, latent_shape)


_FIT: dict[str, Callable[..., Decomposition]] = {
    "pca": _pca, "ica": _ica, "sparse_pca": _sparse_pca, "sefa": _sefa, "supervised": _supervised,
    "random_orthonormal": _random,
}


def fit_basis(name: str, latents: np.ndarray, k: int = 32, *, latent_shape: Sequence[int] | None = None,
              model=None, factors: Mapping[str, np.ndarray] | None = None, seed: int = 0, **options: Any
              ) -> Decomposition:
    """Fit basis ``name`` (:data:`BASES`) on training codes ``(N, F)``; ``K <= min(N - 1, F)``.

    Raises ``ValueError`` for an unknown name, bad latents, or a missing ``model`` / ``factors``.
    """
    if name not in _FIT:
        raise ValueError(f"unknown basis {name!r}; choose one of {BASES}")
    latents = np.asarray(latents, np.float64)
    if latents.ndim != 2 or not np.all(np.isfinite(latents)):
        raise ValueError(f"latents must be finite (N, F), got shape {latents.shape}")
    if not 1 <= k <= min(latents.shape[0] - 1, latents.shape[1]):
        raise ValueError(f"K={k} must lie in [1, min(N - 1, F)] = [1, {min(latents.shape[0] - 1, latents.shape[1])}]")
    return _FIT[name](latents, k, latent_shape, model=model, factors=factors, seed=seed, **options)


def fit_on_codes(name: str, model, codes: np.ndarray, ids: Sequence[str], root, k: int, *, seed: int = 0,
                 latent_shape: Sequence[int] | None = None) -> Decomposition:
    """:func:`fit_basis` on a run's training codes ``(N, F)`` (volume ``ids``, data folder ``root``): the
    supervised basis reads the factors of ``ids`` from ``root/factors.csv``.

    Raises ``ValueError`` naming the basis: an unknown one, or ``supervised`` without ``factors.csv``.
    """
    from regexplain.analysis.inputs import factors_by_name, read_factor_table

    factors = None
    if name == "supervised":
        table = read_factor_table(root)
        if table is None:
            raise ValueError(f"basis supervised: {root} has no factors.csv (phantoms only)")
        factors = factors_by_name(ids, table, Path(root) / "factors.csv")
    try:
        return fit_basis(name, codes, k, latent_shape=latent_shape, model=model, factors=factors, seed=seed)
    except ValueError as e:
        raise ValueError(f"basis {name}: {e}") from e
