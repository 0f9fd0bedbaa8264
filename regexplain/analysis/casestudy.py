"""The paper's case study (Fig 5 / Fig 8): transforms, coefficient responses, their read-out and selectivity.

Case study (paper section 4.1): every validation subject ``X`` is transformed into ``X'`` by a rotation of
20 degrees about z, a translation of 10 voxels along z and "a scaling of 0.2", and the coefficient changes
``|a_j(X) - a_j(X')|`` are compared per component. Two readings are fixed here, both parameters:

* the scaling of 0.2 is taken as an isotropic zoom by a factor 1.2 about the volume centre;
* the translation of 10 voxels is in the paper's 64^3 hippocampus geometry; at another working shape it
  is scaled to ``10 * W / 64`` voxels along z (5 voxels at the quick profile's 32^3), so that it moves the
  anatomy by the same physical amount.

Axis names follow :mod:`regexplain.registration.spatial`: z is array axis 2 (W); "rotation about z" turns the (D, H)
plane.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from regexplain.analysis import disentangle as dz
from regexplain.analysis.latent import Decomposition, encode_volumes
from regexplain.registration import spatial

PAPER_SIZE = 64          # hippocampus patches of the paper, voxels per side
PAPER_TRANSLATION = 10.0  # voxels along z at PAPER_SIZE
PAPER_ROTATION = 20.0     # degrees about z
PAPER_ZOOM = 1.2          # "scaling of 0.2", read as a zoom factor
TRANSFORM_NAMES = ("rotation", "translation", "scaling")



def case_study_transforms(shape: Sequence[int], *, rotation_deg: float = PAPER_ROTATION,
                          translation_vox: float | None = None, zoom: float = PAPER_ZOOM, strength: float = 1.0
                          ) -> dict[str, torch.Tensor]:
    """Sampling maps ``(1, 3, D, H, W)`` of the three case-study transforms, built with
    :mod:`regexplain.registration.spatial` (the same transforms as data augmentation).

    ``translation_vox`` defaults to ``10 * W / 64`` (the paper's 10 voxels at 64^3, scaled).
    ``strength`` scales all three along their one-parameter groups: ``strength * rotation_deg``,
    ``strength * translation_vox`` and ``zoom ** strength`` (0 = identity, 1 = the paper's case study).
    """
    shape = tuple(int(s) for s in shape)
    shift = PAPER_TRANSLATION * shape[2] / PAPER_SIZE if translation_vox is None else float(translation_vox)
    return {"rotation": spatial.rotation_map(shape, strength * rotation_deg, "z"),
            "translation": spatial.translation_map(shape, (0.0, 0.0, strength * shift)),
            "scaling": spatial.scaling_map(shape, zoom ** strength)}


def transform_volumes(images: torch.Tensor, phi: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Warp every volume ``(N, 1, D, H, W)`` by one sampling map ``(1, 3, D, H, W)`` (trilinear, border)."""
    out = [spatial.warp(images[s:s + batch_size].float(), phi.to(images.device))
           for s in range(0, images.shape[0], batch_size)]
    return torch.cat(out)


def case_study_deltas(model, dec: Decomposition, images: torch.Tensor,
                      transforms: Mapping[str, torch.Tensor] | None = None, batch_size: int = 8,
                      base: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Signed coefficient changes ``a(X') - a(X)``, ``(N, K)`` per transform name. ``base``: the
    coefficients ``a(X)`` when the caller has them already (encoded otherwise)."""
    transforms = case_study_transforms(images.shape[2:]) if transforms is None else transforms
    base = dec.project(encode_volumes(model, images, batch_size, reference=dec.reference)) if base is None else base
    return {name: dec.project(encode_volumes(model, transform_volumes(images, phi), batch_size,
                                                reference=dec.reference)) - base
            for name, phi in transforms.items()}


def case_study(model, dec: Decomposition, images: torch.Tensor,
               transforms: Mapping[str, torch.Tensor] | None = None, batch_size: int = 8
               ) -> dict[str, np.ndarray]:
    """Paper Fig 5: ``|a_j(X) - a_j(X')|`` ``(N, K)`` for every transform (default: the paper's three)."""
    return {k: np.abs(v) for k, v in case_study_deltas(model, dec, images, transforms, batch_size).items()}


def summarize_case_study(deltas: Mapping[str, np.ndarray], sigma: np.ndarray, n_show: int = 10
                         ) -> dict[str, Any]:
    """Per transform: median and mean ``|delta|`` of the first ``n_show`` components (the box plots'
    centres), the component with the largest median, and the selectivity of the standardised deltas."""
    out = {}
    for name, d in deltas.items():
        a = np.abs(d)
        med = np.median(a, axis=0)
        out[name] = {"median_abs": med[:n_show].tolist(), "mean_abs": a.mean(0)[:n_show].tolist(),
                     "top_by_median": int(med.argmax()), **dz.selectivity(d, sigma)}
    return out


def readout_rows(model_name: str, summary: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the ``case_study`` result table (:mod:`regexplain.results`) from
    :func:`summarize_case_study`'s output: ``model``, ``transform`` and :func:`readout_from_medians`."""
    return [{"model": model_name, "transform": t, **readout_from_medians(s["median_abs"])} for t, s in summary.items()]


def readout_from_medians(median_abs: Sequence[float]) -> dict[str, Any]:
    """The paper's reading of Fig 5 from the per-component medians of ``|Δa|``: top component (1-based),
    the ratio of the top median to the second, and the number of components above twice the median of
    the medians."""
    med = np.asarray(median_abs, np.float64)
    order = np.argsort(med)[::-1]
    second = med[order[1]] if med.size > 1 else float("nan")
    return {"top": int(order[0]) + 1, "ratio": float(med[order[0]] / max(second, 1e-12)),
            "n_active": int((med > 2 * np.median(med)).sum())}


def selectivity_with_null(deltas: np.ndarray, sigma: np.ndarray, null_deltas: Sequence[np.ndarray]
                           ) -> dict[str, Any]:
    """:func:`regexplain.analysis.disentangle.selectivity` of the PCA coordinates beside the same deltas expressed
    in random bases (``null_deltas``, from :func:`regexplain.analysis.disentangle.random_basis_codes`)."""
    obs = dz.selectivity(deltas, sigma)
    null = [dz.selectivity(d, sigma) for d in null_deltas]
    return {"top_share": dz.null_summary(obs["top_share"], [s["top_share"] for s in null]),
            "participation_ratio": dz.null_summary(obs["participation_ratio"],
                                                   [s["participation_ratio"] for s in null], False),
            "mean_top_share": dz.null_summary(obs["mean_top_share"], [s["mean_top_share"] for s in null]),
            "coherence": obs["coherence"], "top_component": obs["top_component"],
            "mean_top_component": obs["mean_top_component"], "mean_abs_z": obs["mean_abs_z"]}


def selectivity_by_strength(model, dec: Decomposition, images: torch.Tensor, coeffs_train: np.ndarray,
                            strengths: Sequence[float] = (0.2, 0.4, 0.6, 1.0), *, n_null: int = 20,
                            seed: int = 0, batch_size: int = 8, base: np.ndarray | None = None
                            ) -> dict[str, Any]:
    """Case-study selectivity as the transforms grow from small to the paper's (``strength`` of
    :func:`case_study_transforms`; at 32^3, 0.2 = a 1-voxel shift, 4 degrees, zoom 1.037).

    A latent direction that encodes a factor linearly answers a small transform along it, whatever its
    size; the paper's transforms are 2-3 population standard deviations of the phantoms' factors, where
    the code is no longer linear. Returns ``{"strengths": [...], "<transform>": [selectivity with null
    per strength]}``; the null draws one random basis per draw for every strength and transform.
    ``base``: the coefficients of the untransformed ``images`` if already computed.
    """
    base = dec.project(encode_volumes(model, images, batch_size, reference=dec.reference)) if base is None else base
    rng = np.random.default_rng(seed)
    rots = [dz.random_rotation(dec.n_components, rng) for _ in range(n_null)]
    out: dict[str, Any] = {"strengths": [float(s) for s in strengths]}
    for strength in strengths:
        transforms = case_study_transforms(images.shape[2:], strength=strength)
        deltas = case_study_deltas(model, dec, images, transforms, batch_size, base)
        for name, d in deltas.items():
            null = [dz.rotated_codes([coeffs_train, d], dec.explained_variance, r)[1] for r in rots]
            out.setdefault(name, []).append(selectivity_with_null(d, dec.sigma, null))
    return out


def selectivity_rows(model_name: str, sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the ``selectivity_by_strength`` result table (:mod:`regexplain.results`) from one
    :func:`selectivity_by_strength` sweep, transforms in :data:`TRANSFORM_NAMES` order."""
    return [{"model": model_name, "transform": t, "strength": st,
             "mean_response": r["mean_top_share"]["observed"], "mean_component": r["mean_top_component"] + 1,
             "mean_null_p95": r["mean_top_share"]["null_p95"], "per_subject": r["top_share"]["observed"],
             "per_subject_null_p95": r["top_share"]["null_p95"], "coherence": r["coherence"]}
            for t in TRANSFORM_NAMES if t in sweep for st, r in zip(sweep["strengths"], sweep[t], strict=True)]
