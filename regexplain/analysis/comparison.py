"""Which basis explains a registration latent space best? Every basis of :mod:`regexplain.analysis.bases` scored
the same way, each score beside its own null.

For one trained model and phantoms with known factors, each basis (PCA, ICA, sparse PCA, SeFa, supervised,
random orthonormal) is fitted on the training codes and scored with every registered score of
:mod:`regexplain.analysis.scores` (R² of each factor, SAP, DCI, MIG, case-study selectivity), with the affine share
of its first decoded directions and, for the bases fitted on data, the bootstrap stability of its
directions. Nulls: the basis' coordinates in random orthonormal rotations with matched variances; random
combinations of its directions at matched strengths (affine share); random bases of the codes' row space
(stability). The case-study codes are encoded once and projected onto every basis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from regexplain.analysis import disentangle as dz
from regexplain.analysis.affine import affine_null, affine_score, component_affine_content, foreground_mask
from regexplain.analysis.bases import BASES, fit_basis
from regexplain.analysis.casestudy import case_study_transforms, transform_volumes
from regexplain.analysis.inputs import FactorTable, align_factors, n_components
from regexplain.analysis.latent import encode_volumes, reference_volume
from regexplain.analysis.scores import Coordinates, Factors, null_coordinates, score_table

#: bases fitted on resampled codes for the bootstrap stability (SeFa uses no data; supervised and the
#: random null have no stable directions to speak of)
RESAMPLED = ("pca", "ica", "sparse_pca")


def compare_bases(model, train_set, val_set, factors: FactorTable, *,
                  bases: Sequence[str] = BASES, k: int = 32, k_info: int = 8, n_null: int = 10, n_boot: int = 10,
                  n_affine: int = 8, seed: int = 0, batch_size: int = 8) -> dict[str, dict[str, Any]]:
    """``{basis: {"scores": {score: null summary}, "K": int, "explained": float}}``.

    Args:
        model: a trained :class:`~regexplain.registration.model.RegistrationNet`.
        train_set, val_set: :class:`~regexplain.data.pairs.VolumeSet` (images, labels, ids).
        factors: ``read_factors(root)`` -> ``(ids, names, values)``.
        k: components per basis (capped at ``N - 1``; the supervised basis has one per factor).
    Raises:
        ValueError: an unknown basis name; DataError: a volume without factors.
    """
    unknown = set(bases) - set(BASES)
    if unknown:
        raise ValueError(f"unknown basis {sorted(unknown)}; choose among {BASES}")
    names = list(factors[1])
    f_tr, f_va = align_factors(train_set.ids, factors), align_factors(val_set.ids, factors)
    ref = reference_volume(model, train_set)
    z_tr = encode_volumes(model, train_set.images, batch_size, reference=ref)
    z_va = encode_volumes(model, val_set.images, batch_size, reference=ref)
    z_case = {t: encode_volumes(model, transform_volumes(val_set.images, phi), batch_size, reference=ref)
              for t, phi in case_study_transforms(val_set.images.shape[2:]).items()}
    mask = foreground_mask(train_set.labels)
    shape = model.latent_shape(tuple(train_set.images.shape[2:]))
    k = n_components(k, len(z_tr))
    total = float(np.var(z_tr, axis=0, ddof=1).sum())
    out = {}
    for name in bases:
        fit = lambda x, kk, name=name: fit_basis(name, x, kk, latent_shape=shape, model=model, seed=seed,  # noqa: E731
                                                 factors={n: f_tr[:, j] for j, n in enumerate(names)})
        dec = fit(z_tr, k)
        a_va = dec.project(z_va)
        coords = Coordinates(dec.project(z_tr), a_va, {t: dec.project(z) - a_va for t, z in z_case.items()},
                             dec.sigma)
        truth = Factors(names, f_tr, f_va, min(k_info, dec.n_components))
        scores = score_table(coords, truth, null_coordinates(coords, dec.explained_variance, n_null, seed))
        n = min(n_affine, dec.n_components)
        scores["affine share"] = dz.null_summary(affine_score(component_affine_content(model, dec, n, 1.0, mask)),
                                                 affine_null(model, dec, n, mask, n_null, seed))
        if name in RESAMPLED:
            st = dz.bootstrap_stability(z_tr, dec.components, n_boot, seed,
                                        fit=lambda x, kk, fit=fit: fit(x, kk).components)
            scores["bootstrap stability"] = {k_: v for k_, v in st.items() if k_ != "mean_abs_cos"}
        out[name] = {"scores": scores, "K": dec.n_components,
                     "explained": float(dec.explained_variance.sum() / total) if total > 0 else float("nan")}
    return out


def comparison_rows(comparison: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the results table ``basis_comparison``: basis, score, observed, null mean, null 95 %."""
    return [{"basis": b, "score": s, **v} for b, sec in comparison.items() for s, v in sec["scores"].items()]


#: not contestants: the null itself, and the supervised directions (fitted on the factors the scores
#: measure, an upper bound that would otherwise "win" the factor scores by construction)
NOT_CONTESTANTS = ("random_orthonormal", "supervised")


def winners(comparison: Mapping[str, Mapping[str, Any]], exclude: Sequence[str] = NOT_CONTESTANTS,
            bound: str = "supervised") -> list[dict[str, Any]]:
    """Per score, the basis with the largest observed value (``exclude`` left out), whether it beats its
    own null's 95th percentile, PCA's value and the upper bound's (``bound``, ``None`` where it has no such
    score) beside it: the written reading's rows."""
    scores = dict.fromkeys(s for sec in comparison.values() for s in sec["scores"])
    rows = []
    for s in scores:
        have = {b: sec["scores"][s] for b, sec in comparison.items() if s in sec["scores"] and b not in exclude}
        if not have:
            continue
        best = max(have, key=lambda b: have[b]["observed"])
        v, pca = have[best], have.get("pca", {})
        rows.append({"score": s, "best": best, "observed": v["observed"],
                     "beats_null": bool(v["observed"] > v.get("null_p95", np.inf)), "pca": pca.get("observed"),
                     "bound": comparison.get(bound, {}).get("scores", {}).get(s, {}).get("observed")})
    return rows


def reading(rows: Sequence[Mapping[str, Any]]) -> str:
    """One sentence per basis that wins at least one score: what it wins, and where it beats its null."""
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(r["best"], []).append(f"{r['score']} ({r['observed']:.2f}"
                                            + ("" if r["beats_null"] else ", not above its null") + ")")
    return " ".join(f"**{b}** is best on {len(w)} score(s): {', '.join(w)}." for b, w in
                    sorted(by.items(), key=lambda kv: -len(kv[1])))
