"""Case study (paper Fig 5 / Fig 8), affine content of elementary transformations, the PCA-of-deformations
baseline, and the quantitative interpretability report (the scores live in :mod:`regexplain.disentangle`).

Case study (paper section 4.1): every validation subject ``X`` is transformed into ``X'`` by a rotation of
20 degrees about z, a translation of 10 voxels along z and "a scaling of 0.2", and the coefficient changes
``|a_j(X) - a_j(X')|`` are compared per component. Two readings are fixed here, both parameters:

* the scaling of 0.2 is taken as an isotropic zoom by a factor 1.2 about the volume centre;
* the translation of 10 voxels is in the paper's 64^3 hippocampus geometry; at another working shape it
  is scaled to ``10 * W / 64`` voxels along z (5 voxels at the quick profile's 32^3), so that it moves the
  anatomy by the same physical amount.

Axis names follow :mod:`regexplain.spatial`: z is array axis 2 (W); "rotation about z" turns the (D, H)
plane.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from regexplain import disentangle as dz
from regexplain import spatial
from regexplain.errors import DataError
from regexplain.latent import (
    Decomposition,
    component_displacements,
    decode_codes,
    encode_volumes,
    inference,
    model_device,
)

PAPER_SIZE = 64          # hippocampus patches of the paper, voxels per side
PAPER_TRANSLATION = 10.0  # voxels along z at PAPER_SIZE
PAPER_ROTATION = 20.0     # degrees about z
PAPER_ZOOM = 1.2          # "scaling of 0.2", read as a zoom factor
TRANSFORM_NAMES = ("rotation", "translation", "scaling")


# ---------------------------------------------------------------------------------------- case study

def case_study_transforms(shape: Sequence[int], *, rotation_deg: float = PAPER_ROTATION,
                          translation_vox: float | None = None, zoom: float = PAPER_ZOOM, strength: float = 1.0
                          ) -> dict[str, torch.Tensor]:
    """Sampling maps ``(1, 3, D, H, W)`` of the three case-study transforms, built with
    :mod:`regexplain.spatial` (the same transforms as data augmentation).

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
    base = dec.project(encode_volumes(model, images, batch_size)) if base is None else base
    return {name: dec.project(encode_volumes(model, transform_volumes(images, phi), batch_size)) - base
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


# ------------------------------------------------------------------------------------- affine content

def _linear_basis() -> tuple[list[np.ndarray], list[str]]:
    """Orthonormal (Frobenius) basis of 3x3 matrices: 3 antisymmetric, 1 isotropic, 5 symmetric traceless."""
    basis, groups = [], []
    for a, b in ((0, 1), (0, 2), (1, 2)):
        m = np.zeros((3, 3))
        m[a, b], m[b, a] = 1.0, -1.0
        basis.append(m / np.sqrt(2))
        groups.append("rotation")
    basis.append(np.eye(3) / np.sqrt(3))
    groups.append("scale")
    for a, b in ((0, 1), (0, 2), (1, 2)):
        m = np.zeros((3, 3))
        m[a, b] = m[b, a] = 1.0
        basis.append(m / np.sqrt(2))
        groups.append("shear")
    basis += [np.diag([1.0, -1.0, 0.0]) / np.sqrt(2), np.diag([1.0, 1.0, -2.0]) / np.sqrt(6)]
    groups += ["shear", "shear"]
    return basis, groups


def affine_content(disp: torch.Tensor | np.ndarray, mask: np.ndarray | None = None) -> dict[str, Any]:
    """Least-squares fit of a displacement to ``A (x - c) + t`` and an orthogonal energy decomposition.

    Over the voxels of ``mask`` (all voxels when ``None``), ``c`` is their centroid. The sum of squared
    displacement splits exactly into translation (``t``), rotation (antisymmetric part of ``A``), isotropic
    scale (``tr(A)/3 I``), shear (symmetric traceless part) and the non-affine residual: centring at ``c``
    makes the translation orthogonal to every linear field, the residual is orthogonal to the affine fit,
    and inside the linear part the groups are orthogonalised in that order (rotation, then scale, then
    shear; a QR factorisation of the design). Rotation and isotropic scale fields are always orthogonal;
    the order only matters for shear when the mask's scatter is anisotropic.

    Args:
        disp: ``(3, D, H, W)`` (or ``(1, 3, D, H, W)``) displacement in voxels, channels (D, H, W).
        mask: boolean ``(D, H, W)``.
    Returns:
        fractions ``translation, rotation, scale, shear, nonaffine`` (summing to 1), ``energy`` (sum of
        squares), ``A`` ``(3, 3)``, ``t`` ``(3,)`` and ``c`` ``(3,)`` as lists.
    """
    u = np.asarray(disp, dtype=np.float64)
    u = u[0] if u.ndim == 5 else u
    if u.ndim != 4 or u.shape[0] != 3:
        raise ValueError(f"displacement must be (3, D, H, W), got {u.shape}")
    sel = np.ones(u.shape[1:], bool) if mask is None else np.asarray(mask, bool)
    if sel.shape != u.shape[1:]:
        raise ValueError(f"mask shape {sel.shape} differs from the displacement's {u.shape[1:]}")
    x = np.stack(np.nonzero(sel), axis=1).astype(np.float64)  # (n, 3)
    c = x.mean(0) if len(x) else np.zeros(3)
    y = x - c
    if len(x) < 4 or np.linalg.matrix_rank(y) < 3:
        raise ValueError("the mask must hold at least four non-coplanar voxels for an affine fit")
    target = u[:, sel].T.reshape(-1)                          # (3n,), point-major
    basis, groups = _linear_basis()
    cols = [np.tile(np.eye(3)[a], len(y)) for a in range(3)]  # translation along each axis
    cols += [(y @ b.T).reshape(-1) for b in basis]
    design = np.stack(cols, axis=1)                           # (3n, 12)
    q, _ = np.linalg.qr(design)
    proj = q.T @ target
    names = ["translation"] * 3 + groups
    energy = float(target @ target)
    parts = {g: 0.0 for g in ("translation", "rotation", "scale", "shear")}
    for name, p in zip(names, proj, strict=True):
        parts[name] += float(p * p)
    parts["nonaffine"] = max(energy - sum(parts.values()), 0.0)
    coef = np.linalg.lstsq(design, target, rcond=None)[0]
    a_mat = sum(w * b for w, b in zip(coef[3:], basis, strict=True))
    fractions = {k: (v / energy if energy > 0 else 0.0) for k, v in parts.items()}
    return {**fractions, "energy": energy, "A": np.asarray(a_mat).tolist(), "t": coef[:3].tolist(),
            "c": c.tolist()}


def foreground_mask(labels: torch.Tensor, min_share: float = 0.1) -> np.ndarray | None:
    """Voxels that are foreground in at least ``min_share`` of the volumes ``(N, 1, D, H, W)``; ``None``
    when too few voxels qualify for an affine fit."""
    share = (labels > 0).float().mean(0)[0].cpu().numpy()
    mask = share >= min_share
    return mask if mask.sum() >= 8 else None


def component_affine_content(model, dec: Decomposition, n_components: int | None = None, lam: float = 1.0,
                             mask: np.ndarray | None = None) -> list[dict[str, Any]]:
    """:func:`affine_content` of the first components, decoded at ``lam`` standard deviations and taken
    relative to ``D(0)`` (what the component adds to the model's response to identical inputs)."""
    n = dec.n_components if n_components is None else min(n_components, dec.n_components)
    disp = component_displacements(model, dec, lam, "sigma", range(n), relative_to_zero=True)
    return [affine_content(d, mask) for d in disp]


def affine_score(contents: Sequence[Mapping[str, Any]]) -> float:
    """Mean affine share ``1 - nonaffine`` over components."""
    return float(np.mean([1.0 - c["nonaffine"] for c in contents]))


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


# ---------------------------------------------------------------------------- interpretability report

def align_factors(ids: Sequence[str], factors: tuple[Sequence[str], Sequence[str], np.ndarray]
                  ) -> np.ndarray:
    """Rows of ``read_factors``' output ``(ids, names, values)`` in the order of ``ids``."""
    f_ids, _, values = factors
    where = {str(i): n for n, i in enumerate(f_ids)}
    missing = [i for i in ids if str(i) not in where]
    if missing:
        raise DataError(f"factors.csv: no factors for {len(missing)} volume(s), e.g. {missing[:3]}")
    return np.asarray(values, np.float64)[[where[str(i)] for i in ids]]


def _subspace_scores(coeffs_tr, coeffs_va, f_tr, f_va, variances, deltas, sigma, k_info, n_null, seed):
    """Every score that only needs coordinates, with the random-basis null of matched variances."""
    names = list(deltas)
    coeffs = [coeffs_tr, coeffs_va, *[deltas[n] for n in names]]

    def r2k(c):
        return dz.informativeness_r2(c[0], f_tr, c[1], f_va, [k_info])[0]

    rng = np.random.default_rng(seed)
    nulls = [dz.random_basis_codes(coeffs, variances, rng) for _ in range(n_null)]
    r2_obs, r2_null = r2k(coeffs), np.array([r2k(c) for c in nulls])
    out: dict[str, Any] = {
        "r2_curve": dz.informativeness_r2(coeffs_tr, f_tr, coeffs_va, f_va).tolist(),
        f"r2_at_{k_info}": [dz.null_summary(o, r2_null[:, j]) for j, o in enumerate(r2_obs)],
        "sap": dz.null_summary(dz.sap_score(coeffs_tr, f_tr), [dz.sap_score(c[0], f_tr) for c in nulls]),
        "mig": dz.null_summary(dz.mig_score(coeffs_tr, f_tr), [dz.mig_score(c[0], f_tr) for c in nulls]),
    }
    dci = dz.dci_scores(coeffs_tr, f_tr, coeffs_va, f_va)
    dci_null = [dz.dci_scores(c[0], f_tr) for c in nulls]
    out["dci"] = {k: dz.null_summary(dci[k], [d[k] for d in dci_null]) for k in ("disentanglement",
                                                                                 "completeness")}
    out["dci"]["informativeness"] = dci["informativeness"]
    out["selectivity"] = {name: _selectivity_with_null(deltas[name], sigma, [c[2 + j] for c in nulls])
                          for j, name in enumerate(names)}
    return out


def _selectivity_with_null(deltas: np.ndarray, sigma: np.ndarray, null_deltas: Sequence[np.ndarray]
                           ) -> dict[str, Any]:
    """:func:`regexplain.disentangle.selectivity` of the PCA coordinates beside the same deltas expressed
    in random bases (``null_deltas``, from :func:`regexplain.disentangle.random_basis_codes`)."""
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
    base = dec.project(encode_volumes(model, images, batch_size)) if base is None else base
    rng = np.random.default_rng(seed)
    rots = [dz.random_rotation(dec.n_components, rng) for _ in range(n_null)]
    out: dict[str, Any] = {"strengths": [float(s) for s in strengths]}
    for strength in strengths:
        transforms = case_study_transforms(images.shape[2:], strength=strength)
        deltas = case_study_deltas(model, dec, images, transforms, batch_size, base)
        for name, d in deltas.items():
            null = [dz.rotated_codes([coeffs_train, d], dec.explained_variance, r)[1] for r in rots]
            out.setdefault(name, []).append(_selectivity_with_null(d, dec.sigma, null))
    return out


def score_rows(scores: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows of the ``scores`` result table from ``{model or basis: {score: null summary or number}}``."""
    return [{"model": m, "score": k, **(v if isinstance(v, Mapping) else {"observed": v})}
            for m, per in scores.items() for k, v in per.items()]


def selectivity_rows(model_name: str, sweep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Rows of the ``selectivity_by_strength`` result table (:mod:`regexplain.results`) from one
    :func:`selectivity_by_strength` sweep, transforms in :data:`TRANSFORM_NAMES` order."""
    return [{"model": model_name, "transform": t, "strength": st,
             "mean_response": r["mean_top_share"]["observed"], "mean_component": r["mean_top_component"] + 1,
             "mean_null_p95": r["mean_top_share"]["null_p95"], "per_subject": r["top_share"]["observed"],
             "per_subject_null_p95": r["top_share"]["null_p95"], "coherence": r["coherence"]}
            for t in TRANSFORM_NAMES if t in sweep for st, r in zip(sweep["strengths"], sweep[t], strict=True)]


def interpretability_report(model, dec: Decomposition, train_set, val_set,
                            factors: tuple[Sequence[str], Sequence[str], np.ndarray], *, k_info: int = 8,
                            n_null: int = 20, n_boot: int = 20, n_affine: int = 8, seed: int = 0,
                            field_baseline: bool = True, strengths: Sequence[float] = (0.2, 0.4, 0.6, 1.0),
                            batch_size: int = 8) -> dict[str, Any]:
    """Everything of the "beyond the paper" list as one JSON-serialisable dict.

    Args:
        model: a trained :class:`~regexplain.model.RegistrationNet`; dec: its latent decomposition.
        train_set, val_set: :class:`~regexplain.data.pairs.VolumeSet` (images, labels, ids).
        factors: ``read_factors(root)`` -> ``(ids, names, values)``, ground truth per volume id.
        k_info: number of leading components for the headline R^2 (``r2_at_<k>``).
        strengths: case-study strengths for :func:`selectivity_by_strength` (empty: skipped).
    Scores (each beside a null of ``n_null`` random orthonormal bases of the PCA subspace with matched
    variances, :func:`regexplain.disentangle.random_basis_codes`; every ``p_value`` is the share of null
    draws at least as good, where smaller is better for ``participation_ratio``): informativeness, SAP,
    DCI, MIG, case-study selectivity, affine content of the first ``n_affine`` components, bootstrap
    stability; the same for a PCA of deformation fields (``field_baseline``).
    """
    names = list(factors[1])
    f_tr, f_va = align_factors(train_set.ids, factors), align_factors(val_set.ids, factors)
    z_tr = encode_volumes(model, train_set.images, batch_size)
    z_va = encode_volumes(model, val_set.images, batch_size)
    a_tr, a_va = dec.project(z_tr), dec.project(z_va)
    transforms = case_study_transforms(val_set.images.shape[2:])
    deltas = case_study_deltas(model, dec, val_set.images, transforms, batch_size, a_va)
    k_info = min(k_info, dec.n_components)
    report: dict[str, Any] = {"factors": names, "K": dec.n_components, "variance": dec.summary(),
                              "case_study": summarize_case_study(deltas, dec.sigma)}
    report["latent"] = _subspace_scores(a_tr, a_va, f_tr, f_va, dec.explained_variance, deltas, dec.sigma,
                                        k_info, n_null, seed)
    mask = foreground_mask(train_set.labels)
    contents = component_affine_content(model, dec, n_affine, 1.0, mask)
    report["latent"]["affine"] = {"components": contents,
                                  **dz.null_summary(affine_score(contents),
                                                    _affine_null(model, dec, n_affine, mask, n_null, seed))}
    report["latent"]["stability"] = dz.bootstrap_stability(z_tr, dec.components, n_boot, seed)
    if len(strengths):
        report["latent"]["selectivity_by_strength"] = selectivity_by_strength(
            model, dec, val_set.images, a_tr, strengths, n_null=n_null, seed=seed, batch_size=batch_size,
            base=a_va)
    if field_baseline:
        report["fields"] = _field_baseline(model, dec.n_components, train_set, val_set, z_tr, f_tr, f_va,
                                           transforms, k_info, n_null, n_boot, n_affine, mask, seed,
                                           batch_size)
    return report


def _affine_null(model, dec: Decomposition, n: int, mask, n_null: int, seed: int) -> list[float]:
    """Affine score of random orthonormal directions of the PCA subspace, decoded at matched strengths
    (direction ``j`` at ``sigma_j``, like component ``j``)."""
    n = min(n, dec.n_components)
    zero = spatial.map_to_displacement(decode_codes(model, np.zeros((1, *dec.latent_shape), np.float32)))
    return _random_affine_scores(dec, n, mask, n_null, seed, lambda dirs: spatial.map_to_displacement(
        decode_codes(model, dirs.reshape(n, *dec.latent_shape))) - zero)


def _random_affine_scores(dec: Decomposition, n: int, mask, n_null: int, seed: int,
                          to_displacements: Callable[[np.ndarray], Any]) -> list[float]:
    """Affine scores of ``n_null`` draws of ``n`` random orthonormal directions of ``dec``'s subspace
    (direction ``j`` scaled by ``sigma_j``), each ``(n, F)`` draw turned into ``(n, 3, D, H, W)``
    displacements by ``to_displacements``."""
    rng = np.random.default_rng(seed + 1)
    scores = []
    for _ in range(n_null):
        rot = dz.random_rotation(dec.n_components, rng)[:, :n]          # (K, n) orthonormal columns
        dirs = (rot.T @ dec.components.astype(np.float64)) * dec.sigma[:n, None]
        scores.append(affine_score([affine_content(d, mask) for d in to_displacements(dirs)]))
    return scores


def _field_baseline(model, k, train_set, val_set, z_tr, f_tr, f_va, transforms, k_info, n_null, n_boot,
                    n_affine, mask, seed, batch_size) -> dict[str, Any]:
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
    out = {"variance": fdec.summary(), "case_study": summarize_case_study(deltas, fdec.sigma)}
    out.update(_subspace_scores(b_tr, b_va, f_tr, f_va, fdec.explained_variance, deltas, fdec.sigma,
                                min(k_info, fdec.n_components), n_null, seed))
    n = min(n_affine, fdec.n_components)
    comps = fdec.components[:n].astype(np.float64) * fdec.sigma[:n, None]
    contents = [affine_content(c.reshape(shape), mask) for c in comps]
    null = _random_affine_scores(fdec, n, mask, n_null, seed, lambda dirs: dirs.reshape(n, *shape))
    out["affine"] = {"components": contents, **dz.null_summary(affine_score(contents), null)}
    out["stability"] = dz.bootstrap_stability(u_tr, fdec.components, n_boot, seed)
    return out
