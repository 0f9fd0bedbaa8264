"""Interpretability scores of any basis' coordinates, each beside its null: the score registry.

A score reads one basis' :class:`Coordinates` (training, validation and case-study coefficients; from the
latent PCA, any basis of :mod:`regexplain.analysis.bases`, or a PCA of deformation fields) and the phantoms'
:class:`Factors`, and returns named numbers where **larger means more interpretable**. :data:`SCORES`
registers them; :func:`score_table` evaluates every registered score on the coordinates and on ``n_null``
random orthonormal rotations of the same subspace with matched variances
(:func:`regexplain.analysis.disentangle.random_basis_codes`), so each number stands beside its null
(``{"observed", "null_mean", "null_sd", "null_p95", "p_value"}``, :func:`regexplain.analysis.disentangle.null_summary`).
Every number is keyed by a :class:`ScoreKey` (its registry entry, and the factor / transform / variant it is
about), carried into the result rows, so no reader parses a score's name. The report
(:mod:`regexplain.analysis.report`), the seed study (:mod:`regexplain.analysis.study`), notebook 07 and
RESULTS.md loop over the result, so a new score is one function here and one line in :data:`SCORES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from regexplain.analysis import disentangle as dz


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
class ScoreKey:
    """What one number is: ``family`` (its :data:`SCORES` entry), ``label`` (what tables show) and, where
    it has them, the ``factor``, case-study ``transform`` and ``variant`` it is about."""
    family: str
    label: str
    factor: str | None = None
    transform: str | None = None
    variant: str | None = None

    def fields(self) -> dict[str, str]:
        """``family`` and the set ones of ``factor`` / ``transform`` / ``variant``: a result row's keys."""
        return {"family": self.family, **{k: v for k in ("factor", "transform", "variant")
                                          if (v := getattr(self, k)) is not None}}


@dataclass(frozen=True)
class Factors:
    """Ground truth of the phantoms: ``names`` ``(F,)``, values ``train`` ``(N, F)`` and ``val`` ``(M, F)``
    in the rows' order of :class:`Coordinates`; ``k``: leading components for the R² scores."""
    names: Sequence[str]
    train: np.ndarray
    val: np.ndarray
    k: int = 8


Score = Callable[[Coordinates, Factors], dict[ScoreKey, float]]

#: the case study's read-out (paper Fig 5 / Fig 8): components shown and the "active" threshold's factor
N_SHOW = 10


def informativeness(c: Coordinates, f: Factors) -> dict[ScoreKey, float]:
    """Held-out R² of each factor from the first ``f.k`` components (linear regression)."""
    r2 = dz.informativeness_r2(c.train, f.train, c.val, f.val, [f.k])[0]
    return {ScoreKey("informativeness", r2_name(n, f.k), factor=n): float(v)
            for n, v in zip(f.names, r2, strict=True)}


def r2_name(factor: str, k: int) -> str:
    """The label of :func:`informativeness`' number for ``factor`` (a builder; nothing parses it)."""
    return f"R² {factor} from {k} components"


def best_single_r2(c: Coordinates, f: Factors) -> dict[ScoreKey, float]:
    """Per factor: the largest R² of one of the first ``f.k`` validation coefficients alone (the squared
    correlation, :func:`regexplain.analysis.disentangle.sap_matrix`): does a single component read as the factor?"""
    m = dz.sap_matrix(c.val[:, :f.k], f.val)
    return {ScoreKey("best single R²", f"best single-component R² {n} (first {f.k})", factor=n): float(m[:, j].max())
            for j, n in enumerate(f.names)}


def readout(c: Coordinates, f: Factors) -> dict[ScoreKey, float]:
    """Per case-study transform: the paper's Fig 5 read-out, top / second of the median ``|Δa_j|`` over the
    first :data:`N_SHOW` components (:func:`regexplain.analysis.casestudy.readout_from_medians`)."""
    from regexplain.analysis.casestudy import readout_from_medians

    return {ScoreKey("readout", f"read-out {t} (top / second median |Δa|)", transform=t):
            readout_from_medians(np.median(np.abs(np.asarray(d, np.float64))[:, :N_SHOW], axis=0))["ratio"]
            for t, d in c.deltas.items()}


#: subspace sizes of the subspace read-out: the share of |Δa|² taken by the best 1, 2 and 3 components
SUBSPACE_DIMS = (1, 2, 3)


def subspace_share(deltas: np.ndarray, k: int) -> float:
    """Share of a transform's latent change taken by its ``k`` strongest components.

    Args:
        deltas: ``(M, K)`` signed changes ``a(X') - a(X)`` of ``M`` subjects.
        k: components kept.
    Returns:
        ``sum of the k largest e_j / sum_j e_j`` with ``e_j`` the mean over subjects of ``Δa_j²``: 1 when the
        change lives in ``k`` components, ``k / K`` when it is spread evenly; NaN without any change.
    """
    e = np.mean(np.asarray(deltas, np.float64) ** 2, axis=0)
    total = float(e.sum())
    return float(np.sort(e)[::-1][:k].sum() / total) if total > 0 else float("nan")


def subspace(c: Coordinates, f: Factors) -> dict[ScoreKey, float]:
    """Per case-study transform and ``k`` in :data:`SUBSPACE_DIMS`: :func:`subspace_share`, the subspace
    read-out beside the single-component one (:func:`readout`). PCA cannot separate factors of equal variance,
    so "one component per transform" can fail while "the transform lives in a 2-3-dimensional subspace" holds."""
    return {ScoreKey("subspace", subspace_label(t, k), transform=t, variant=f"best {k}"): subspace_share(d, k)
            for t, d in c.deltas.items() for k in SUBSPACE_DIMS}


def subspace_label(transform: str, k: int) -> str:
    """The label of :func:`subspace`'s number (a builder; nothing parses it)."""
    return f"subspace {transform} (share of |Δa|² in the best {k})"


def sap(c: Coordinates, f: Factors) -> dict[ScoreKey, float]:
    return {ScoreKey("SAP", "SAP"): dz.sap_score(c.train, f.train)}


def mig(c: Coordinates, f: Factors) -> dict[ScoreKey, float]:
    return {ScoreKey("MIG", "MIG"): dz.mig_score(c.train, f.train)}


def dci(c: Coordinates, f: Factors) -> dict[ScoreKey, float]:
    d = dz.dci_scores(c.train, f.train)
    return {ScoreKey("DCI", "DCI disentanglement", variant="disentanglement"): d["disentanglement"],
            ScoreKey("DCI", "DCI completeness", variant="completeness"): d["completeness"]}


def selectivity(c: Coordinates, f: Factors) -> dict[ScoreKey, float]:
    """Per case-study transform: the median top share of each subject's standardised response, and the
    top share of the mean response (:func:`regexplain.analysis.disentangle.selectivity`)."""
    out = {}
    for name, d in c.deltas.items():
        s = dz.selectivity(d, c.sigma)
        out[ScoreKey("selectivity", f"selectivity {name} (top share)", transform=name,
                     variant="top share")] = s["top_share"]
        out[ScoreKey("selectivity", f"selectivity {name} (mean response)", transform=name,
                     variant="mean response")] = s["mean_top_share"]
    return out


#: name -> score; the report and the basis comparison score every entry of :data:`SCORES`, with its null,
#: for every basis; the seed study scores :data:`STUDY_SCORES` the same way
SCORES: dict[str, Score] = {"SAP": sap, "MIG": mig, "DCI": dci, "selectivity": selectivity,
                            "informativeness": informativeness}
STUDY_SCORES: dict[str, Score] = {"readout": readout, "subspace": subspace, "best single R²": best_single_r2}


def null_coordinates(c: Coordinates, variances: np.ndarray | None, n_null: int, seed: int) -> list[Coordinates]:
    """``n_null`` random orthonormal bases of the same subspace, axes rescaled to ``variances`` ``(K,)``
    (the PCA variances by rank; ``None``: rotated only), applied to every array of ``c`` alike."""
    rng = np.random.default_rng(seed)
    names = list(c.deltas)
    out = []
    for _ in range(n_null):
        arrays = [c.train, c.val, *[c.deltas[n] for n in names]]
        rot = dz.random_rotation(c.train.shape[1], rng)
        codes = [a @ rot for a in arrays] if variances is None else dz.rotated_codes(arrays, variances, rot)
        out.append(Coordinates(codes[0], codes[1], dict(zip(names, codes[2:], strict=True)), c.sigma))
    return out


def evaluate(c: Coordinates, f: Factors, scores: Mapping[str, Score] | None = None) -> dict[ScoreKey, float]:
    """Every registered score's numbers for one set of coordinates."""
    return {k: v for fn in (SCORES if scores is None else scores).values() for k, v in fn(c, f).items()}


def score_table(c: Coordinates, f: Factors, nulls: Sequence[Coordinates],
                scores: Mapping[str, Score] | None = None) -> dict[str, dict[str, float | str]]:
    """``{label: null summary and the key's fields}`` of every registered score, observed on ``c`` and on
    each of ``nulls`` (:func:`null_coordinates`): ``observed``, ``null_mean``, ``null_std``, ``null_p95``,
    ``p_value`` beside ``family`` (and ``factor`` / ``transform`` / ``variant``, :meth:`ScoreKey.fields`)."""
    observed = evaluate(c, f, scores)
    null = [evaluate(n, f, scores) for n in nulls]
    return {k.label: {**dz.null_summary(v, [n[k] for n in null]), **k.fields()} for k, v in observed.items()}


def select(table: Mapping[str, Mapping[str, object]], **fields: object) -> dict[str, Mapping[str, object]]:
    """The entries of a :func:`score_table` (or result rows keyed by label) whose fields equal ``fields``,
    e.g. ``select(t, family="selectivity", variant="top share")``."""
    return {k: v for k, v in table.items() if all(v.get(f) == x for f, x in fields.items())}
