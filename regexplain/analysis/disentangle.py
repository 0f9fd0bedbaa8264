"""Quantitative interpretability scores, beyond the paper (which names their absence as its main
limitation, section 5). Pure numpy / scikit-learn functions on codes ``(N, K)`` and known factors
``(N, F)``.

* informativeness: held-out R^2 of each factor from the first ``k`` coefficients;
* SAP, continuous form (Kumar et al. 2018, "Variational inference of disentangled latent concepts from
  unlabeled observations"; as in ``disentanglement_lib/evaluation/metrics/sap_score.py``);
* DCI (Eastwood & Williams 2018, "A framework for the quantitative evaluation of disentangled
  representations"), with Lasso regressors as in the original paper;
* MIG (Chen et al. 2018, "Isolating sources of disentanglement in VAEs"; binned as in
  ``disentanglement_lib/evaluation/metrics/mig.py``);
* selectivity of a response to a known transform (standardised deltas, top share, participation ratio);
* stability of components under bootstrap resampling (Hungarian matching on ``|cos|``);
* nulls from random orthonormal bases of matched variances (:func:`random_basis_codes`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import ortho_group
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso, LinearRegression
from sklearn.metrics import mutual_info_score, r2_score

# ------------------------------------------------------------------------------------------- helpers


def _standardise(x: np.ndarray, ref: np.ndarray | None = None) -> np.ndarray:
    ref = x if ref is None else ref
    sd = ref.std(0)
    return (x - ref.mean(0)) / np.where(sd > 0, sd, 1.0)


def _check(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes, factors = np.asarray(codes, np.float64), np.asarray(factors, np.float64)
    if codes.ndim != 2 or factors.ndim != 2 or codes.shape[0] != factors.shape[0]:
        raise ValueError(f"codes (N, K) and factors (N, F) must share N; got {codes.shape}, {factors.shape}")
    return codes, factors


# ------------------------------------------------------------------------------------- informativeness

def informativeness_r2(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray,
                       factors_test: np.ndarray, ks: Sequence[int] | None = None) -> np.ndarray:
    """Held-out R^2 of each factor predicted by ordinary least squares from the first ``k`` codes.

    Returns:
        ``(len(ks), F)``; ``ks`` defaults to ``1..K``. R^2 can be negative on held-out data.
    """
    ct, ft = _check(codes_train, factors_train)
    cv, fv = _check(codes_test, factors_test)
    ks = list(range(1, ct.shape[1] + 1)) if ks is None else list(ks)
    out = np.empty((len(ks), ft.shape[1]))
    for row, k in enumerate(ks):
        pred = LinearRegression().fit(ct[:, :k], ft).predict(cv[:, :k])
        out[row] = r2_score(fv, pred, multioutput="raw_values")
    return out


# ------------------------------------------------------------------------------------------------- SAP

def sap_matrix(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """``(K, F)`` squared correlation of each code with each factor (SAP's continuous score matrix:
    the R^2 of a one-variable linear regression; 0 where a code is constant)."""
    c, f = _check(codes, factors)
    c, f = c - c.mean(0), f - f.mean(0)
    cov = c.T @ f / (len(c) - 1)
    var_c, var_f = c.var(0, ddof=1), f.var(0, ddof=1)
    denom = np.outer(var_c, var_f)
    return np.where(denom > 1e-12, cov ** 2 / np.where(denom > 1e-12, denom, 1.0), 0.0)


def sap_score(codes: np.ndarray, factors: np.ndarray) -> float:
    """Separated Attribute Predictability: mean over factors of the gap between the two codes that
    explain it best (1: each factor in one code only; 0: at least two codes explain it equally)."""
    m = np.sort(sap_matrix(codes, factors), axis=0)
    return float(np.mean(m[-1] - m[-2])) if m.shape[0] > 1 else float(np.mean(m[-1]))


# ------------------------------------------------------------------------------------------------- DCI

def lasso_importance(codes: np.ndarray, factors: np.ndarray, alpha: float = 0.01
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Importance matrix ``R`` ``(K, F)`` = ``|w|`` of a Lasso per factor on standardised codes and
    factors (Eastwood & Williams 2018, section 4), and each factor's in-sample R^2 ``(F,)``."""
    c, f = _check(codes, factors)
    cs, fs = _standardise(c), _standardise(f)
    r = np.empty((c.shape[1], f.shape[1]))
    r2 = np.empty(f.shape[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for j in range(f.shape[1]):
            model = Lasso(alpha=alpha, max_iter=5000).fit(cs, fs[:, j])
            r[:, j] = np.abs(model.coef_)
            r2[j] = model.score(cs, fs[:, j])
    return r, r2


def _entropy_score(p: np.ndarray, base: int) -> np.ndarray:
    """``1 - H_base(p)`` per column of a column-stochastic matrix."""
    if base <= 1:
        return np.ones(p.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=0) / np.log(base)
    return 1.0 - h


def dci_from_importance(r: np.ndarray) -> tuple[float, float]:
    """Disentanglement and completeness from an importance matrix ``(K, F)`` (Eastwood & Williams 2018).

    D: per code ``1 - H_F(P_i.)`` with ``P_ij = R_ij / sum_j R_ij``, weighted by the code's share of the
    total importance. C: per factor ``1 - H_K(P~_.j)`` with ``P~_ij = R_ij / sum_i R_ij``, averaged.
    """
    r = np.abs(np.asarray(r, np.float64))
    total = r.sum()
    if total <= 0:
        return 0.0, 0.0
    row = r.sum(1)
    keep = row > 0
    d_i = _entropy_score((r[keep] / row[keep, None]).T, r.shape[1])
    disentanglement = float(np.sum(d_i * row[keep] / total))
    col = r.sum(0)
    c_j = _entropy_score(r[:, col > 0] / col[col > 0], r.shape[0])
    return disentanglement, float(np.mean(c_j))


def dci_scores(codes_train: np.ndarray, factors_train: np.ndarray, codes_test: np.ndarray | None = None,
               factors_test: np.ndarray | None = None, alpha: float = 0.01) -> dict[str, float]:
    """DCI with Lasso regressors: disentanglement, completeness and informativeness (held-out R^2 of the
    same Lasso when a test set is given, else in-sample), averaged over factors."""
    r, r2_in = lasso_importance(codes_train, factors_train, alpha)
    d, c = dci_from_importance(r)
    if codes_test is None or factors_test is None:
        info = float(np.mean(r2_in))
    else:
        ct, ft = _check(codes_train, factors_train)
        cv, fv = _check(codes_test, factors_test)
        cs, cvs = _standardise(ct), _standardise(cv, ct)
        fs, fvs = _standardise(ft), _standardise(fv, ft)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = [Lasso(alpha=alpha, max_iter=5000).fit(cs, fs[:, j]).score(cvs, fvs[:, j])
                      for j in range(ft.shape[1])]
        info = float(np.mean(scores))
    return {"disentanglement": d, "completeness": c, "informativeness": info}


# ------------------------------------------------------------------------------------------------- MIG

def discretize(x: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Equal-width binning of every column (``disentanglement_lib``'s ``_histogram_discretize``)."""
    x = np.asarray(x, np.float64)
    out = np.empty(x.shape, dtype=np.int64)
    for j in range(x.shape[1]):
        edges = np.histogram(x[:, j], bins=n_bins)[1]
        out[:, j] = np.digitize(x[:, j], edges[:-1])
    return out


def mig_score(codes: np.ndarray, factors: np.ndarray, n_bins: int = 20) -> float:
    """Mutual Information Gap: mean over factors of ``(I(c_best; f) - I(c_second; f)) / H(f)`` with codes
    and factors both discretised into ``n_bins`` equal-width bins."""
    c, f = _check(codes, factors)
    cd, fd = discretize(c, n_bins), discretize(f, n_bins)
    mi = np.array([[mutual_info_score(fd[:, j], cd[:, i]) for j in range(f.shape[1])]
                   for i in range(c.shape[1])])
    h = np.array([mutual_info_score(fd[:, j], fd[:, j]) for j in range(f.shape[1])])
    top = np.sort(mi, axis=0)
    gap = top[-1] - (top[-2] if top.shape[0] > 1 else 0.0)
    return float(np.mean(np.where(h > 0, gap / np.where(h > 0, h, 1.0), 0.0)))


# ------------------------------------------------------------------------------------------ selectivity

def selectivity(deltas: np.ndarray, sigma: np.ndarray) -> dict[str, Any]:
    """How concentrated a response is: standardised deltas ``z_ij = delta_ij / sigma_j`` ``(N, K)``.

    Per subject: ``top_share = max_j z_j^2 / sum_j z_j^2`` (1 / K .. 1) and the participation ratio
    ``PR = (sum_j z_j^2)^2 / sum_j z_j^4`` (1 .. K, the effective number of responding components);
    their medians are returned. The same top share of the *mean* response ``mean_i z_i`` (the
    transform's average direction in the latent space) is ``mean_top_share``, and
    ``coherence = |mean_i z_i|^2 / mean_i |z_i|^2`` (1 when every subject moves the same way, near 0
    when the per-subject responses point in unrelated directions) says how much of the per-subject
    response that average direction carries. Also the modal top component and the mean ``|z|`` profile.
    """
    d = np.asarray(deltas, np.float64)
    s = np.asarray(sigma, np.float64)
    z = d / np.where(s > 0, s, 1.0)
    z2 = z ** 2
    tot = z2.sum(1)
    ok = tot > 0
    share = z2[ok].max(1) / tot[ok]
    pr = tot[ok] ** 2 / (z2[ok] ** 2).sum(1)
    top = np.bincount(z2.argmax(1), minlength=z2.shape[1])
    mean = z.mean(0)
    m2 = mean ** 2
    return {"top_share": float(np.median(share)) if ok.any() else 0.0,
            "participation_ratio": float(np.median(pr)) if ok.any() else float(z2.shape[1]),
            "top_component": int(top.argmax()), "top_component_frequency": float(top.max() / len(z2)),
            "mean_top_share": float(m2.max() / m2.sum()) if m2.sum() > 0 else 0.0,
            "mean_top_component": int(m2.argmax()),
            "coherence": float(m2.sum() / tot.mean()) if tot.mean() > 0 else 0.0,
            "mean_abs_z": np.sqrt(z2).mean(0).tolist()}


# --------------------------------------------------------------------------------------------- nulls

def random_rotation(k: int, rng: np.random.Generator) -> np.ndarray:
    """Haar-distributed ``(k, k)`` orthogonal matrix."""
    if k == 1:
        return np.ones((1, 1))
    return ortho_group.rvs(k, random_state=rng)


def random_basis_codes(coeffs: Sequence[np.ndarray], variances: np.ndarray, rng: np.random.Generator
                       ) -> list[np.ndarray]:
    """Coordinates in a random orthonormal basis of the PCA subspace, rescaled to matched variances.

    The null keeps exactly the information of the K-dimensional PCA subspace and only changes its axes:
    ``b = a R`` with ``R`` Haar-random orthogonal ``(K, K)``, then column ``j`` is rescaled so that its
    variance over ``coeffs[0]`` (the training set) equals the PCA variance ``variances[j]``. Column order
    thus inherits the PCA variance order (relevant to "first k" scores). The same ``R`` and scales apply
    to every array of ``coeffs`` (e.g. train, validation, transformed copies).
    """
    return rotated_codes(coeffs, variances, random_rotation(coeffs[0].shape[1], rng))


def rotated_codes(coeffs: Sequence[np.ndarray], variances: np.ndarray, rot: np.ndarray) -> list[np.ndarray]:
    """:func:`random_basis_codes` with a given orthogonal ``(K, K)`` matrix ``rot``."""
    b0 = coeffs[0] @ rot
    sd = b0.std(0, ddof=1)
    scale = np.sqrt(np.asarray(variances, np.float64)) / np.where(sd > 0, sd, 1.0)
    return [(c @ rot) * scale for c in coeffs]


def null_summary(observed: float, null: Sequence[float], larger_is_better: bool = True
                 ) -> dict[str, float]:
    """Observed value beside the null's mean, standard deviation, 95th (5th) percentile and the share of
    null draws at least as good as observed (a one-sided empirical p-value, (1 + #) / (1 + n)); "good"
    is larger unless ``larger_is_better`` is false (e.g. a participation ratio)."""
    arr = np.asarray(null, np.float64)
    hits = np.sum(arr >= observed) if larger_is_better else np.sum(arr <= observed)
    return {"observed": float(observed), "null_mean": float(arr.mean()), "null_std": float(arr.std()),
            "null_p95" if larger_is_better else "null_p5": float(np.percentile(arr, 95 if larger_is_better
                                                                               else 5)),
            "p_value": float((1 + hits) / (1 + len(arr)))}


# ------------------------------------------------------------------------------------------- stability

def match_components(reference: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian matching maximising total ``|cos|`` between rows of two ``(K, F)`` bases.

    Returns, for each reference row, the matched row index and its ``|cos|``.
    """
    def unit(m):  # a zero row (a degenerate bootstrap component) matches nothing: |cos| = 0
        n = np.linalg.norm(m, axis=1, keepdims=True)
        return m / np.where(n > 0, n, 1.0)

    a, b = unit(np.asarray(reference, np.float64)), unit(np.asarray(other, np.float64))
    cos = np.abs(a @ b.T)
    rows, cols = linear_sum_assignment(cos, maximize=True)
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = cols
    return order, cos[rows, cols][np.argsort(rows)]


def bootstrap_stability(latents: np.ndarray, components: np.ndarray, n_boot: int = 20, seed: int = 0,
                        fit: Callable[[np.ndarray, int], np.ndarray] | None = None) -> dict[str, Any]:
    """Mean ``|cos|`` per component between the reference PCA and PCAs of resampled subjects.

    ``fit(latents, K) -> (K, F)`` defaults to :func:`regexplain.analysis.latent.pca_gram`. The null matches the
    reference to random orthonormal K-bases of the centred data's row space (where any PCA basis lies).
    """
    from regexplain.analysis.latent import pca_gram

    fit = fit or (lambda x, k: pca_gram(x, k)[0])
    x = np.asarray(latents, np.float64)
    k = components.shape[0]
    rng = np.random.default_rng(seed)
    per = np.empty((n_boot, k))
    for b in range(n_boot):
        idx = rng.integers(0, len(x), len(x))
        per[b] = match_components(components, fit(x[idx], k))[1]
    row_space = np.linalg.svd(x - x.mean(0), full_matrices=False)[2]
    null = []
    for _ in range(n_boot):
        q = np.linalg.qr(rng.standard_normal((row_space.shape[0], k)))[0]
        null.append(match_components(components, q.T @ row_space)[1].mean())
    mean_cos = per.mean(0)
    return {"mean_abs_cos": mean_cos.tolist(), **null_summary(float(mean_cos.mean()), null)}
