"""The quantitative interpretability report: every registered score of a model's latent PCA, beside its
null, plus what needs the network (affine content, bootstrap stability, selectivity against strength) and
the paper's negative control, a PCA of deformation fields scored the same way.

Each section (``report["latent"]``, ``report["fields"]``) holds ``scores`` (score name -> null summary, from
:func:`regexplain.analysis.scores.score_table` with ``affine share`` and ``stability`` added): the table that
notebook 07 and RESULTS.md show (:func:`score_rows`). Details beside it: the R² curve over K, the
per-transform selectivity (participation ratio, coherence...), the affine content of each component.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from regexplain.analysis import disentangle as dz
from regexplain.analysis.affine import (
    affine_content,
    affine_null,
    affine_score,
    component_affine_content,
    foreground_mask,
    random_affine_scores,
)
from regexplain.analysis.casestudy import (
    case_study_deltas,
    case_study_transforms,
    selectivity_by_strength,
    selectivity_with_null,
    summarize_case_study,
    transform_volumes,
)
from regexplain.analysis.inputs import FactorTable, align_factors
from regexplain.analysis.latent import Decomposition, encode_volumes, inference, model_device
from regexplain.analysis.scores import Coordinates, Factors, null_coordinates, r2_name, score_table
from regexplain.registration import spatial


def coordinate_section(c: Coordinates, f: Factors, variances: np.ndarray, n_null: int, seed: int
                       ) -> dict[str, Any]:
    """Every registered score with its null (``scores``), the R² curve over the number of components, the
    R² at ``f.k`` per factor, DCI's held-out informativeness and the per-transform selectivity details."""
    nulls = null_coordinates(c, variances, n_null, seed)
    scores = score_table(c, f, nulls)
    return {"scores": scores,
            "r2_curve": dz.informativeness_r2(c.train, f.train, c.val, f.val).tolist(),
            f"r2_at_{f.k}": [scores[r2_name(n, f.k)] for n in f.names],
            "dci_informativeness": dz.dci_scores(c.train, f.train, c.val, f.val)["informativeness"],
            "selectivity": {t: selectivity_with_null(d, c.sigma, [n.deltas[t] for n in nulls])
                            for t, d in c.deltas.items()}}


def _add_affine_and_stability(section: dict[str, Any], contents, null, stability) -> None:
    section["affine"] = {"components": contents, **dz.null_summary(affine_score(contents), null)}
    section["scores"]["affine share"] = {**{k: v for k, v in section["affine"].items() if k != "components"},
                                         "family": "affine share"}
    section["stability"] = stability
    section["scores"]["bootstrap stability"] = {**{k: v for k, v in stability.items() if k != "mean_abs_cos"},
                                                "family": "bootstrap stability"}


def interpretability_report(model, dec: Decomposition, train_set, val_set,
                            factors: FactorTable, *, k_info: int = 8,
                            n_null: int = 20, n_boot: int = 20, n_affine: int = 8, seed: int = 0,
                            field_baseline: bool = True, strengths: Sequence[float] = (0.2, 0.4, 0.6, 1.0),
                            batch_size: int = 8) -> dict[str, Any]:
    """Everything of the "beyond the paper" list as one JSON-serialisable dict.

    Args:
        model: a trained :class:`~regexplain.registration.model.RegistrationNet`; dec: its latent decomposition.
        train_set, val_set: :class:`~regexplain.data.pairs.VolumeSet` (images, labels, ids).
        factors: ``read_factors(root)`` -> ``(ids, names, values)``, ground truth per volume id.
        k_info: number of leading components for the R² scores (``r2_at_<k>``).
        strengths: case-study strengths for :func:`~regexplain.analysis.casestudy.selectivity_by_strength`
            (empty: skipped).
    Returns:
        ``factors``, ``K``, ``variance``, ``case_study`` and the sections ``latent`` and (``field_baseline``)
        ``fields``; every score beside a null of ``n_null`` random orthonormal bases of the same subspace with
        matched variances, ``p_value`` the share of null draws at least as good.
    Raises:
        DataError: a volume id has no row in ``factors``.
    """
    names = list(factors[1])
    f_tr, f_va = align_factors(train_set.ids, factors), align_factors(val_set.ids, factors)
    z_tr = encode_volumes(model, train_set.images, batch_size, reference=dec.reference)
    z_va = encode_volumes(model, val_set.images, batch_size, reference=dec.reference)
    a_tr, a_va = dec.project(z_tr), dec.project(z_va)
    transforms = case_study_transforms(val_set.images.shape[2:])
    deltas = case_study_deltas(model, dec, val_set.images, transforms, batch_size, a_va)
    truth = Factors(names, f_tr, f_va, min(k_info, dec.n_components))
    report: dict[str, Any] = {"factors": names, "K": dec.n_components, "variance": dec.summary(),
                              "case_study": summarize_case_study(deltas, dec.sigma)}
    latent = coordinate_section(Coordinates(a_tr, a_va, deltas, dec.sigma), truth, dec.explained_variance,
                                n_null, seed)
    mask = foreground_mask(train_set.labels)
    _add_affine_and_stability(latent, component_affine_content(model, dec, n_affine, 1.0, mask),
                              affine_null(model, dec, n_affine, mask, n_null, seed),
                              dz.bootstrap_stability(z_tr, dec.components, n_boot, seed))
    if len(strengths):
        latent["selectivity_by_strength"] = selectivity_by_strength(
            model, dec, val_set.images, a_tr, strengths, n_null=n_null, seed=seed, batch_size=batch_size,
            base=a_va)
    report["latent"] = latent
    if field_baseline:
        report["fields"] = _field_baseline(model, dec.n_components, train_set, val_set, z_tr, truth, transforms,
                                           n_null, n_boot, n_affine, mask, seed, batch_size)
    return report


#: the report's sections and how tables name them after the run (``"hippocampus_noskip latent PCA"``)
SECTION_LABELS = {"latent": "latent PCA", "fields": "deformation-field PCA"}


def report_sections(run: str, report: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """``{"<run> latent PCA": section, "<run> deformation-field PCA": section}`` of one report (the sections
    it has), as notebook 07 plots and tables them."""
    return {f"{run} {label}": report[key] for key, label in SECTION_LABELS.items() if key in report}


def report_score_rows(run: str, report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the ``scores`` result table for one report: :func:`score_rows` of its sections, each row also
    carrying ``run`` and ``section`` (``latent`` / ``fields``), which RESULTS.md's summary selects by."""
    return [{**r, "run": run, "section": key} for key, label in SECTION_LABELS.items() if key in report
            for r in score_rows({f"{run} {label}": report[key]})]


def score_rows(sections: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the ``scores`` result table (:mod:`regexplain.results`) from ``{model or basis: section}``
    (a report section, or any ``{"scores": {name: null summary or number}}``); a score's structured fields
    (``family``, ``factor``, ``transform``, ``variant``: :class:`regexplain.analysis.scores.ScoreKey`) come along."""
    return [{"model": m, "score": k, **(v if isinstance(v, Mapping) else {"observed": v})}
            for m, sec in sections.items() for k, v in sec["scores"].items()]


# ------------------------------------------------------------------------ PCA-of-deformations baseline

def template_index(latents: np.ndarray) -> int:
    """The training subject whose code is closest to the mean code (a medoid-like template)."""
    return int(np.argmin(((latents - latents.mean(0)) ** 2).sum(1)))


def deformation_fields(model, images: torch.Tensor, template: torch.Tensor, batch_size: int = 8
                       ) -> np.ndarray:
    """Displacements registering every volume to one template, flattened: ``(N, 3*D*H*W)`` voxels.

    The paper's negative control (section 5) is a PCA of "the deformation's grid instead of the latent
    representation"; here the grid is ``phi_mf`` of ``model(X, template)`` (skip connections included).
    """
    dev = model_device(model)
    out = []
    with inference(model):
        for s in range(0, images.shape[0], batch_size):
            x = images[s:s + batch_size].to(dev, torch.float32)
            phi = model(x, template.to(dev, torch.float32).expand_as(x)).phi_mf
            out.append(spatial.map_to_displacement(phi).flatten(1).float().cpu().numpy())
    return np.concatenate(out)


def _field_baseline(model, k, train_set, val_set, z_tr, truth: Factors, transforms, n_null, n_boot, n_affine,
                    mask, seed, batch_size) -> dict[str, Any]:
    """The negative control: PCA of deformation fields to a template, scored like the latents."""
    template = train_set.images[template_index(z_tr)][None]
    u_tr = deformation_fields(model, train_set.images, template, batch_size)
    u_va = deformation_fields(model, val_set.images, template, batch_size)
    shape = (3, *train_set.images.shape[2:])
    fdec = Decomposition.fit(u_tr, min(k, len(u_tr) - 1), latent_shape=shape)
    b_tr, b_va = fdec.project(u_tr), fdec.project(u_va)
    deltas = {name: fdec.project(deformation_fields(model, transform_volumes(val_set.images, phi), template,
                                                    batch_size)) - b_va
              for name, phi in transforms.items()}
    truth = Factors(truth.names, truth.train, truth.val, min(truth.k, fdec.n_components))
    out = {"variance": fdec.summary(), "case_study": summarize_case_study(deltas, fdec.sigma),
           **coordinate_section(Coordinates(b_tr, b_va, deltas, fdec.sigma), truth, fdec.explained_variance,
                                n_null, seed)}
    n = min(n_affine, fdec.n_components)
    comps = fdec.components[:n].astype(np.float64) * fdec.sigma[:n, None]
    contents = [affine_content(c.reshape(shape), mask) for c in comps]
    null = random_affine_scores(fdec, n, mask, n_null, seed, lambda dirs: dirs.reshape(n, *shape))
    _add_affine_and_stability(out, contents, null, dz.bootstrap_stability(u_tr, fdec.components, n_boot, seed))
    return out
