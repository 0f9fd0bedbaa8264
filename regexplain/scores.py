"""Interpretability scores of any basis' coordinates, each beside its null: the score registry.

A score reads one basis' :class:`Coordinates` (training, validation and case-study coefficients; from the
latent PCA, any basis of :mod:`regexplain.bases`, or a PCA of deformation fields) and the phantoms'
:class:`Factors`, and returns named numbers where **larger means more interpretable**. :data:`SCORES`
registers them; :func:`score_table` evaluates every registered score on the coordinates and on ``n_null``
random orthonormal rotations of the same subspace with matched variances
(:func:`regexplain.disentangle.random_basis_codes`), so each number stands beside its null
(``{"observed", "null_mean", "null_sd", "null_p95", "p_value"}``, :func:`regexplain.disentangle.null_summary`).
The report (:mod:`regexplain.report`), notebook 07 and RESULTS.md loop over the result, so a new score is
one function here and one line in :data:`SCORES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from regexplain import disentangle as dz


@dataclass(frozen=True)
class Coordinates:
    """One basis' view of a model's latent space.

    Attributes:
        train: ``(N, K)`` coefficients of the training codes.
        val: ``(M, K)`` coefficients of the validation codes.
        deltas: transform name -> ``(M, K)`` signed case-study changes ``a(X') - a(X)``.
        sigma: ``(K,)`` training standard deviation of each coefficient (standardises ``deltas``).
    """
    train: np.ndarray
    val: np.ndarray
    deltas: Mapping[str, np.ndarray] = field(default_factory=dict)
    sigma: np.ndarray | None = None


@dataclass(frozen=True)
class Factors:
    """Ground truth of the phantoms: ``names`` ``(F,)``, values ``train`` ``(N, F)`` and ``val`` ``(M, F)``
    in the rows' order of :class:`Coordinates`; ``k``: leading components for the R² scores."""
    names: Sequence[str]
    train: np.ndarray
    val: np.ndarray
    k: int = 8


Score = Callable[[Coordinates, Factors], dict[str, float]]


def informativeness(c: Coordinates, f: Factors) -> dict[str, float]:
    """Held-out R² of each factor from the first ``f.k`` components (linear regression)."""
    r2 = dz.informativeness_r2(c.train, f.train, c.val, f.val, [f.k])[0]
    return {r2_name(n, f.k): float(v) for n, v in zip(f.names, r2, strict=True)}


def r2_name(factor: str, k: int) -> str:
    return f"R² {factor} from {k} components"


def sap(c: Coordinates, f: Factors) -> dict[str, float]:
    return {"SAP": dz.sap_score(c.train, f.train)}


def mig(c: Coordinates, f: Factors) -> dict[str, float]:
    return {"MIG": dz.mig_score(c.train, f.train)}


def dci(c: Coordinates, f: Factors) -> dict[str, float]:
    d = dz.dci_scores(c.train, f.train)
    return {"DCI disentanglement": d["disentanglement"], "DCI completeness": d["completeness"]}


def selectivity(c: Coordinates, f: Factors) -> dict[str, float]:
    """Per case-study transform: the median top share of each subject's standardised response, and the
    top share of the mean response (:func:`regexplain.disentangle.selectivity`)."""
    out = {}
    for name, d in c.deltas.items():
        s = dz.selectivity(d, c.sigma)
        out[f"selectivity {name} (top share)"] = s["top_share"]
        out[f"selectivity {name} (mean response)"] = s["mean_top_share"]
    return out


#: name -> score; every entry is scored, with its null, for every basis
SCORES: dict[str, Score] = {"SAP": sap, "MIG": mig, "DCI": dci, "selectivity": selectivity,
                            "informativeness": informativeness}


def null_coordinates(c: Coordinates, variances: np.ndarray, n_null: int, seed: int) -> list[Coordinates]:
    """``n_null`` random orthonormal bases of the same subspace, axes rescaled to ``variances`` ``(K,)``
    (the PCA variances by rank), applied to every array of ``c`` alike."""
    rng = np.random.default_rng(seed)
    names = list(c.deltas)
    out = []
    for _ in range(n_null):
        codes = dz.random_basis_codes([c.train, c.val, *[c.deltas[n] for n in names]], variances, rng)
        out.append(Coordinates(codes[0], codes[1], dict(zip(names, codes[2:], strict=True)), c.sigma))
    return out


def evaluate(c: Coordinates, f: Factors, scores: Mapping[str, Score] | None = None) -> dict[str, float]:
    """Every registered score's numbers for one set of coordinates."""
    return {k: v for fn in (SCORES if scores is None else scores).values() for k, v in fn(c, f).items()}


def score_table(c: Coordinates, f: Factors, nulls: Sequence[Coordinates],
                scores: Mapping[str, Score] | None = None) -> dict[str, dict[str, float]]:
    """``{score name: null summary}`` of every registered score, observed on ``c`` and on each of ``nulls``
    (:func:`null_coordinates`)."""
    observed = evaluate(c, f, scores)
    null = [evaluate(n, f, scores) for n in nulls]
    return {k: dz.null_summary(v, [n[k] for n in null]) for k, v in observed.items()}
