"""Phantoms with ground truth, written in the on-disk layouts of the real data.

* :func:`synthesize_hippocampus` writes the MSD Task04 layout (``dataset.json``, ``imagesTr/``,
  ``labelsTr/``): a curved, tapering structure (anterior head = label 1, posterior body = label 2) in a
  structured MRI-like background. Every subject is the template warped by ONE sampling map: a global
  transform (rotations about x, y, z through the volume centre, translations, isotropic scale; each
  factor with its own standard deviation, as anatomy has) composed with a few smooth local modes.
* :func:`synthesize_lung` writes the lung layout (``<patient>/{insp,exp}[_mask].nii.gz``): a thorax
  with two lungs, a heart and a diaphragm; inspiration and expiration differ by diaphragm motion and
  chest expansion.

Both write ``factors.csv`` (one row per volume: id, then the generative factors in working-geometry
units) and ``synthetic.json`` (kind, shape, seed, the factor standard deviations). Factors are drawn
from a seeded numpy generator, so the same seed gives the same dataset.
"""

from __future__ import annotations

import csv
import functools
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from regexplain.data.nifti import write_nifti
from regexplain.errors import DataError
from regexplain.io import atomic_dir, write_json
from regexplain.registration import spatial

REF = 64.0                                  # the standard deviations below are for a 64-voxel side
ROT_SD_DEG = (3.0, 6.0, 10.0)              # about x, y, z (axes 0, 1, 2)
TRANS_SD_VOX = (1.5, 2.5, 4.0)             # along x, y, z at 64 voxels; scaled with the shape
LOG_SCALE_SD = 0.06
MODE_SD_VOX = (2.2, 1.6, 1.2, 0.8)         # peak amplitude of the local modes at 64 voxels
TRUNCATE = 2.5                             # factors are clipped to +- 2.5 sd
NOISE_SD = 0.02                            # relative to the template's intensity range
INTENSITY = 500.0                          # raw MRI-like units of the written images
HEAD_FRACTION = 0.35                       # curve parameter where the head (label 1) ends
HIPPO_SPACING = (1.0, 1.0, 1.0)
LUNG_SPACING = (1.39, 1.69, 1.39)

#: Phantom regimes: standard deviations of the factors (rotations about x, y, z in degrees; translations in
#: voxels at 64; log-scale; local mode peak amplitudes in voxels at 64).
#: ``pose``: pose (position, orientation, size) dominates the variance, so any encoder sees it.
#: ``msd_like``: closer to the MSD Task04 crops, which are cut around the structure: small position and
#: orientation variance, anatomical shape variance (the local modes) dominating.
#: ``calibrated`` (the default): calibrated on the paper's data (random pairs' Dice before registration
#: 0.59 ± 0.15 at the quick working shape, label volume CV <= 0.2) with a T1-like appearance in which the
#: structure is as bright as its surroundings (:func:`hippocampus_template_t1`); ``pose`` and
#: ``msd_like`` keep the earlier bright-blob appearance (:func:`hippocampus_template`) for sensitivity.
REGIMES: dict[str, dict[str, tuple[float, ...]]] = {
    "calibrated": {"rot": (4.5, 6.5, 8.5), "trans": (0.9, 0.65, 1.1), "log_scale": (0.02,),
                   "modes": (0.4, 2.5, 1.0, 1.9)},
    "pose": {"rot": ROT_SD_DEG, "trans": TRANS_SD_VOX, "log_scale": (LOG_SCALE_SD,), "modes": MODE_SD_VOX},
    "msd_like": {"rot": (1.0, 1.5, 2.5), "trans": (0.4, 0.6, 0.9), "log_scale": (0.02,),
                 "modes": (4.5, 3.5, 2.8, 2.2)},
}
#: "population": the calibrated statistics, each subject with an anatomy of its own (below)
REGIMES["population"] = dict(REGIMES["calibrated"])
#: The template each regime warps: "t1" (structure from context) or "blob" (a bright structure).
APPEARANCE = {"calibrated": "t1", "pose": "blob", "msd_like": "blob", "population": "t1"}
#: How many anatomies a regime's subjects are warps of: one template (its seed) for the first three, so every
#: subject shares one background of tissue, sulci and blobs (a network can learn that one brain, not
#: registration: the models trained on it fail on phantoms of another seed and on real MRI); "subject": a
#: template of its own per subject (template seed ``seed + ANATOMY_STRIDE * i``, subject 0 keeping ``seed``),
#: as every MSD subject is another brain. The labelled structure's tube is the same in every template.
ANATOMIES = {"calibrated": "one", "pose": "one", "msd_like": "one", "population": "subject"}
ANATOMY_STRIDE = 7919

HIPPO_FACTORS = ("rot_x_deg", "rot_y_deg", "rot_z_deg", "trans_x_vox", "trans_y_vox", "trans_z_vox", "scale")


# --------------------------------------------------------------------------- shared helpers

def _fractions(shape: Sequence[int], dtype=torch.float32) -> torch.Tensor:
    """Voxel coordinates as fractions of the field of view about its centre: ``(3, D, H, W)``."""
    phi = spatial.identity_map(shape, dtype=dtype)[0]
    c = spatial.volume_center(shape).to(dtype).view(3, 1, 1, 1)
    return (phi - c) / torch.tensor(shape, dtype=dtype).view(3, 1, 1, 1)


def _smooth_noise(rng: np.random.Generator, shape: Sequence[int], sigma: float) -> np.ndarray:
    """Gaussian-smoothed white noise rescaled to zero mean, unit sd: a texture of blob size ``sigma``."""
    x = ndimage.gaussian_filter(rng.standard_normal(tuple(shape)), sigma, mode="wrap")
    return ((x - x.mean()) / (x.std() + 1e-12)).astype(np.float32)


#: The phantoms' array axes grow towards the patient's Left, Posterior and Superior (LPS, as DICOM and ITK
#: order them): the hippocampus' head (label 1, low index along axis 1) is then anterior and the lung
#: phantom's heart (towards +axis 0, -axis 1) anterior and on the left, as in a patient.
PHANTOM_AXCODES = ("L", "P", "S")


def _grid_affine(spacing: Sequence[float], shape: Sequence[int]) -> np.ndarray:
    """LPS affine (:data:`PHANTOM_AXCODES`; x and y negated from RAS) with the volume centre at the origin."""
    a = np.diag([-spacing[0], -spacing[1], spacing[2], 1.0]).astype(np.float64)
    a[:3, 3] = -a[:3, :3] @ ((np.asarray(shape, dtype=np.float64) - 1) / 2)
    return a


def _write_factors(path: Path, ids: Sequence[str], names: Sequence[str], values: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *names])
        for i, row in zip(ids, values, strict=True):
            w.writerow([i, *(f"{v:.6g}" for v in row)])


def read_factors(root: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """Read ``root/factors.csv``. Returns ``(ids, factor names, values (N, F) float64)``."""
    path = Path(root) / "factors.csv"
    if not path.is_file():
        raise DataError(f"{path}: no factors file (only synthetic datasets have one)")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:1] != ["id"]:
        raise DataError(f"{path}: expected a header starting with 'id'")
    names = rows[0][1:]
    try:
        values = np.array([[float(v) for v in r[1:]] for r in rows[1:]], dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{path}: non-numeric factor value ({e})") from e
    return [r[0] for r in rows[1:]], names, values.reshape(len(rows) - 1, len(names))


def read_meta(root: str | Path) -> dict:
    """The generator's settings written beside a synthetic dataset (``synthetic.json``)."""
    path = Path(root) / "synthetic.json"
    if not path.is_file():
        raise DataError(f"{path}: not a synthetic dataset")
    return json.loads(path.read_text())


def _draw(rng: np.random.Generator, sd: Sequence[float], n: int) -> np.ndarray:
    return np.clip(rng.standard_normal((n, len(sd))), -TRUNCATE, TRUNCATE) * np.asarray(sd)


# --------------------------------------------------------------------------- hippocampus

def _raw_centerline(k: int = 160) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    t = torch.linspace(0, 1, k, dtype=torch.float64)
    pts = torch.stack([0.05 * (t - 0.5), 0.46 * (t - 0.5), 0.11 * torch.sin(math.pi * t)], dim=1)
    radius = 0.066 + 0.062 * (1 - t) ** 1.5
    return pts, radius, t


def _tube_at(q: torch.Tensor, pts: torch.Tensor, radius: torch.Tensor, t: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inside score (radius - distance, > 0 inside), nearest curve parameter and the offset from the
    nearest curve point ``(N, 3)`` at points ``q`` (N, 3)."""
    squash = torch.tensor([1.15, 1.0, 1.0], dtype=torch.float64)  # flatter across x
    score = torch.empty(q.shape[0], dtype=torch.float64)
    tn = torch.empty(q.shape[0], dtype=torch.float64)
    off = torch.empty(q.shape[0], 3, dtype=torch.float64)
    for s in range(0, q.shape[0], 65536):
        d = torch.cdist(q[s:s + 65536] * squash, pts * squash)
        dmin, idx = d.min(dim=1)
        score[s:s + 65536] = radius[idx] - dmin
        tn[s:s + 65536] = t[idx]
        off[s:s + 65536] = q[s:s + 65536] - pts[idx]
    return score, tn, off


@functools.lru_cache(maxsize=1)
def _centerline() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A C-shaped curve along y bending towards z, in field-of-view fractions, shifted so that the
    structure's mass centre is the volume centre (rotations then do not translate it).

    Returns points ``(K, 3)``, radii ``(K,)`` (head thick, body tapering), parameter ``t`` ``(K,)``.
    """
    pts, radius, t = _raw_centerline()
    q = _fractions((48, 48, 48), torch.float64).flatten(1).T
    score, _, _ = _tube_at(q, pts, radius, t)
    return pts - q[score > 0].mean(0), radius, t


@functools.lru_cache(maxsize=2)
def _tube(shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inside score ``(D, H, W)`` (> 0 inside, in fractions), nearest curve parameter ``(D, H, W)`` and
    offset from the nearest curve point ``(3, D, H, W)``."""
    pts, radius, t = _centerline()
    score, tn, off = _tube_at(_fractions(shape, torch.float64).flatten(1).T, pts, radius, t)
    return score.view(*shape), tn.view(*shape), off.T.reshape(3, *shape)


def hippocampus_template(shape: Sequence[int] = (64, 64, 64), seed: int = 0
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """The phantom template: image ``(1, 1, D, H, W)`` float32 (raw units) and label ``(1, 1, D, H, W)``
    uint8 (0 background, 1 anterior head, 2 posterior body). Deterministic in ``seed``."""
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng([seed, 1])
    score, tn, _ = _tube(shape)
    label = torch.where(score > 0, torch.where(tn < HEAD_FRACTION, 1, 2), 0).to(torch.uint8)
    q = _fractions(shape).numpy()
    side = float(np.mean(shape))
    # Tissue-like background: two textures of different grain, brighter and darker blobs.
    tex = 0.42 + 0.06 * _smooth_noise(rng, shape, side / 20)
    blobs = _smooth_noise(rng, shape, side / 10)
    tex = tex + 0.18 * (blobs > 0.7) - 0.15 * (blobs < -1.1)
    # A dark CSF-like cavity beside the head (as the temporal horn lies beside the hippocampus).
    horn = ((q[0] / 0.09) ** 2 + ((q[1] + 0.15) / 0.16) ** 2 + ((q[2] - 0.22) / 0.06) ** 2) < 1
    tex = np.where(horn, 0.12, tex)
    struct = np.where(label.numpy() == 1, 0.78, 0.72)
    inside = ndimage.gaussian_filter((score.numpy() > 0).astype(np.float32), 0.6)
    img = (1 - inside) * tex + inside * struct
    bias = 1 + 0.12 * q[0] - 0.1 * q[1] + 0.15 * q[2] ** 2  # smooth multiplicative bias field
    img = (img * bias).astype(np.float32) * INTENSITY
    return torch.from_numpy(img)[None, None], label[None, None]


#: T1 intensities (fractions of INTENSITY): white matter brighter than grey matter, CSF dark.
T1_LEVELS = {"wm": 0.82, "gm": 0.56, "csf": 0.14}


def hippocampus_template_t1(shape: Sequence[int] = (64, 64, 64), seed: int = 0
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """A T1-like template: the labelled structure is grey matter as bright as its surroundings on average.

    As in a T1 crop of the hippocampus, the structure is found from its context, not its own contrast:
    white matter (alveus / temporal stem) borders it laterally, the CSF of the temporal horn superiorly,
    grey matter (parahippocampal gyrus) medially and inferiorly; beyond that layer lies textured tissue
    mixing grey and white matter with a few CSF-filled sulci. Intensities carry a smooth texture and a
    smooth multiplicative bias field. Same outputs and label as :func:`hippocampus_template`.
    """
    shape = tuple(int(s) for s in shape)
    rng = np.random.default_rng([seed, 4])
    score, tn, off = _tube(shape)
    label = torch.where(score > 0, torch.where(tn < HEAD_FRACTION, 1, 2), 0).to(torch.uint8)
    score, off = score.numpy(), off.numpy()
    q = _fractions(shape).numpy()
    side = float(np.mean(shape))
    lv = T1_LEVELS
    # far tissue: grey matter with white-matter islands and a few dark sulci
    blobs = _smooth_noise(rng, shape, side / 9)
    tissue = np.where(blobs > 0.35, lv["wm"], lv["gm"])
    tissue = np.where(_smooth_noise(rng, shape, side / 14) < -1.6, lv["csf"] + 0.1, tissue)
    # the layer around the structure: direction of each point from the nearest centreline point
    u = off / (np.linalg.norm(off, axis=0, keepdims=True) + 1e-12)
    outside = -score                                           # distance outside the surface, fractions
    layer = (outside > 0) & (outside < 0.075)
    wm_side = u[0] > 0.25                                      # lateral: white matter
    csf_side = (u[2] > 0.55) & ~wm_side & (outside < 0.045)     # superior: the temporal horn
    near = np.where(wm_side, lv["wm"], np.where(csf_side, lv["csf"], lv["gm"]))
    img = np.where(layer, near, tissue)
    img = np.where(score > 0, lv["gm"] + 0.01 * (label.numpy() == 1), img)
    img = ndimage.gaussian_filter(img.astype(np.float32), 0.7)  # partial volume
    img = img * (1 + 0.04 * _smooth_noise(rng, shape, side / 24))  # fine texture
    bias = 1 + 0.12 * q[0] - 0.1 * q[1] + 0.15 * q[2] ** 2      # smooth multiplicative bias field
    img = (img * bias).astype(np.float32) * INTENSITY
    return torch.from_numpy(img)[None, None], label[None, None]


def _mode_displacement(p: torch.Tensor, amps: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Smooth local deformation modes evaluated at voxel points (Gaussian-windowed, analytic).

    Modes: 1 head swelling (radial about the head), 2 the body bends along z, 3 elongation along y,
    4 the head lifts along x.

    Args:
        p: ``(B, 3, D, H, W)`` voxel coordinates (template space).
        amps: ``(B, M)`` amplitudes in voxels at a 64-voxel side (M <= 4).
    Returns:
        ``(B, 3, D, H, W)`` displacement in voxels.
    """
    view = (1, 3, 1, 1, 1)
    sh = torch.tensor(shape, dtype=p.dtype)
    q = (p - ((sh - 1) / 2).view(view)) / sh.view(view)
    pts, _, t = _centerline()
    head = pts[int(0.12 * len(t))].to(p.dtype).view(view)
    tail = pts[int(0.85 * len(t))].to(p.dtype).view(view)
    a = amps.to(p.dtype) * (sh.mean() / REF)
    m = a.shape[1]

    def amp(k):
        return a[:, k].view(-1, 1, 1, 1)

    out = torch.zeros_like(p)
    dh = q - head
    s1 = 0.12
    bh = torch.exp(-(dh * dh).sum(1) / (2 * s1 * s1))  # (B, D, H, W), shared by modes 1 and 4
    if m > 0:
        out += (amp(0) * bh * (math.exp(0.5) / s1)).unsqueeze(1) * dh
    if m > 1:
        dt = q - tail
        out[:, 2] += amp(1) * torch.exp(-(dt * dt).sum(1) / (2 * 0.14**2))
    if m > 2:
        out[:, 1] += amp(2) * torch.tanh(q[:, 1] / 0.15) * torch.exp(-(q * q).sum(1) / (2 * 0.3**2))
    if m > 3:
        out[:, 0] += amp(3) * bh
    return out


def hippocampus_map(shape: Sequence[int], factors: np.ndarray) -> torch.Tensor:
    """The sampling map of each subject: local modes composed with the global transform.

    ``subject(y) = template(L(G(y)))`` with ``G`` the sampling map of the global forward transform
    (:func:`regexplain.registration.spatial.affine_sampling_map`) and ``L(p) = p + sum_k a_k u_k(p)``.

    Args:
        factors: ``(B, 7 + M)`` rows in :data:`HIPPO_FACTORS` order, then the mode amplitudes.
    Returns:
        ``(B, 3, D, H, W)`` float32 voxel sampling map into the template.
    """
    f = torch.as_tensor(np.asarray(factors, dtype=np.float64))
    mats = torch.stack([spatial.affine_matrix(rotation=r.tolist(), scale=float(s))
                        for r, s in zip(f[:, 0:3], f[:, 6], strict=True)])
    # Evaluate the whole map on a grid 4x coarser, then interpolate trilinearly (align_corners): exact
    # for the affine part, and the modes are smooth (widths >= 7 voxels at 64). Coarse voxel i sits at
    # fine voxel S i, so the fine-unit map reads phi(S i) = S phi_c(i) with the conjugated transform
    # M_c = S^-1 M S, t_c = S^-1 t, c_c = S^-1 c.
    coarse = tuple(min(n, (n - 1) // 4 + 2) for n in shape)
    s = torch.tensor([(n - 1) / max(m - 1, 1) for n, m in zip(shape, coarse, strict=True)],
                     dtype=torch.float64)
    mats_c = mats * s[None, None, :] / s[None, :, None]
    phi_c = spatial.affine_sampling_map(coarse, mats_c, f[:, 3:6] / s, spatial.volume_center(shape) / s,
                                        dtype=torch.float64)
    g = (phi_c * s.view(1, 3, 1, 1, 1)).float()
    if f.shape[1] > 7:
        g = g + _mode_displacement(g, f[:, 7:], shape)
    return spatial.resize(g, shape)


def hippocampus_factor_sd(shape: Sequence[int], n_modes: int = 4, regime: str = "calibrated"
                          ) -> tuple[list[str], np.ndarray]:
    """Factor names and standard deviations (scale: of its log) for a working shape and a :data:`REGIMES`
    name; ``ValueError`` for an unknown regime."""
    if regime not in REGIMES:
        raise ValueError(f"unknown phantom regime {regime!r}; choose one of {sorted(REGIMES)}")
    r = REGIMES[regime]
    gain = np.asarray(shape, dtype=np.float64) / REF
    names = [*HIPPO_FACTORS, *(f"mode_{k + 1}" for k in range(n_modes))]
    sd = np.array([*r["rot"], *(np.asarray(r["trans"]) * gain), *r["log_scale"], *r["modes"][:n_modes]])
    return names, sd


def regime_template(regime: str, shape: Sequence[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The template of a :data:`REGIMES` name (its :data:`APPEARANCE`); ``ValueError`` for an unknown one."""
    if regime not in REGIMES:
        raise ValueError(f"unknown phantom regime {regime!r}; choose one of {sorted(REGIMES)}")
    make = hippocampus_template_t1 if APPEARANCE[regime] == "t1" else hippocampus_template
    return make(shape, seed)


def render_hippocampus(template: tuple[torch.Tensor, torch.Tensor], factors: np.ndarray
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp the template with recorded factors (no noise). Returns images ``(B, 1, D, H, W)`` float32
    and labels ``(B, 1, D, H, W)`` uint8.

    The image and the one-hot label go through one trilinear warp (one grid for both); the label is the
    arg-max of the warped one-hot, smoother than nearest-neighbour sampling.
    """
    image, label = template
    phi = hippocampus_map(image.shape[2:], factors)
    stacked = torch.cat([image, spatial.one_hot(label, 3)], dim=1)
    out = spatial.warp(stacked.expand(phi.shape[0], -1, -1, -1, -1), phi)
    bg, head, body = out[:, 1:2], out[:, 2:3], out[:, 3:4]
    # arg-max over three channels; elementwise comparisons are ~10x faster than argmax on this layout
    lab = torch.where((head > bg) & (head >= body), 1, torch.where((body > bg) & (body > head), 2, 0))
    return out[:, :1], lab.to(torch.uint8)


def _msd_json(n: int) -> dict:
    names = [f"hippocampus_{i:03d}" for i in range(n)]
    return {
        "name": "Hippocampus",
        "description": "Synthetic left and right hippocampus phantoms (regexplain), MSD Task04 layout",
        "reference": "regexplain.data.synthetic",
        "licence": "CC-BY-SA 4.0",
        "relase": "1.0 synthetic",  # sic: the real Task04 dataset.json spells it so
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "numTraining": n,
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{s}.nii.gz", "label": f"./labelsTr/{s}.nii.gz"} for s in names],
        "test": [],
    }


def synthesize_hippocampus(out: str | Path, n: int, shape: Sequence[int] = (64, 64, 64), seed: int = 0, *,
                           n_modes: int = 4, overwrite: bool = False, batch: int = 16,
                           compresslevel: int = 1, progress: bool = True, regime: str = "calibrated") -> Path:
    """Write ``n`` hippocampus-like phantoms in the MSD Task04 layout under ``out`` (atomically).

    ``regime`` picks the factor standard deviations and the appearance (:data:`REGIMES`: ``"calibrated"``,
    the default, ``"pose"`` or ``"msd_like"``).

    Returns ``out``. ``factors.csv`` holds, per subject, rotations (degrees about x, y, z), translations
    (voxels along x, y, z), the isotropic scale and the local mode amplitudes (voxels at 64 voxels).
    """
    out, shape = Path(out), tuple(int(s) for s in shape)
    if n < 1 or len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"need n >= 1 and a 3-D shape of sides >= 4, got n={n}, shape={shape}")
    if not 0 <= n_modes <= len(MODE_SD_VOX):
        raise ValueError(f"n_modes must be in [0, {len(MODE_SD_VOX)}], got {n_modes}")
    names, sd = hippocampus_factor_sd(shape, n_modes, regime)
    rng = np.random.default_rng([seed, 2])
    factors = _draw(rng, sd, n)
    factors[:, 6] = np.exp(factors[:, 6])  # recorded as the scale factor itself
    per_subject = ANATOMIES[regime] == "subject"
    template = regime_template(regime, shape, seed)
    noise = torch.Generator().manual_seed(seed)
    affine = _grid_affine(HIPPO_SPACING, shape)
    meta = _msd_json(n)
    ids = [e["image"].split("/")[-1].removesuffix(".nii.gz") for e in meta["training"]]
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        bar = tqdm(total=n, desc="hippocampus phantoms", unit="subj", disable=not progress)
        for s in range(0, n, batch):
            if per_subject:   # each subject warps an anatomy of its own
                rendered = [render_hippocampus(regime_template(regime, shape, seed + ANATOMY_STRIDE * i) if i else
                                               template, factors[i:i + 1]) for i in range(s, min(s + batch, n))]
                img, lab = (torch.cat(parts) for parts in zip(*rendered, strict=True))
            else:
                img, lab = render_hippocampus(template, factors[s:s + batch])
            img = img + NOISE_SD * INTENSITY * torch.randn(img.shape, generator=noise)
            img = img.round().clamp(-32768, 32767).to(torch.int16)  # MRI-like integers, half the bytes
            for j in range(img.shape[0]):
                write_nifti(tmp / "imagesTr" / f"{ids[s + j]}.nii.gz", img[j, 0].numpy(), affine,
                            compresslevel=compresslevel)
                write_nifti(tmp / "labelsTr" / f"{ids[s + j]}.nii.gz", lab[j, 0].numpy(), affine,
                            compresslevel=compresslevel)
                bar.update(1)
        bar.close()
        write_json(tmp / "dataset.json", meta)
        _write_factors(tmp / "factors.csv", ids, names, factors)
        write_json(tmp / "synthetic.json", {
            "kind": "hippocampus", "regime": regime, "appearance": APPEARANCE[regime], "anatomies": ANATOMIES[regime],
            "n": n, "shape": list(shape),
            "seed": seed, "n_modes": n_modes,
            "factor_sd": dict(zip(names, sd.tolist(), strict=True)), "noise_sd": NOISE_SD * INTENSITY,
            "scale_note": "scale is exp(N(0, sd)) with sd given for log(scale)",
        })
    return out


# --------------------------------------------------------------------------- lung

LUNG_PATIENT_FACTORS = ("thorax_width", "thorax_depth", "lung_height", "heart_size",
                        "trans_x_vox", "trans_y_vox", "trans_z_vox")
LUNG_PATIENT_SD = (0.06, 0.06, 0.06, 0.1, 1.5, 0.75, 2.25)  # relative sizes; voxels at 64 per side; the
# translations calibrated so that random pairs' Dice before registration is the paper's 0.74 at 48 x 24 x 48
# (measured 0.738 ± 0.087; translations 2.0, 1.0, 3.0 gave 0.685 ± 0.112)
DIAPHRAGM_EXCURSION = (0.09, 0.02)                          # mean, sd, fraction of the z field of view
EXPANSION = (0.06, 0.015)                                   # chest expansion at inspiration, mean, sd
LUNG_FACTORS = (*LUNG_PATIENT_FACTORS, "diaphragm_shift_vox", "chest_expansion", "inspiration")


def _lung_volume(shape: Sequence[int], f: dict[str, float], noise: np.random.Generator,
                 texture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Render one thorax. Axes (:data:`PHANTOM_AXCODES`): x = 0 right -> left, y = 1 anterior -> posterior,
    z = 2 inferior -> superior."""
    sh = np.asarray(shape, dtype=np.float64)
    shift = np.array([f["trans_x_vox"], f["trans_y_vox"], f["trans_z_vox"]]) / sh
    q = _fractions(shape).numpy() - shift.astype(np.float32).reshape(3, 1, 1, 1)  # float32: 2x faster
    x, y, z = q
    grow = 1 + f["chest_expansion"]
    a, b = 0.44 * f["thorax_width"] * grow, 0.40 * f["thorax_depth"] * grow
    body = (x / a) ** 2 + (y / b) ** 2 < 1
    fat = body & ((x / a) ** 2 + (y / b) ** 2 > 0.8)
    top = 0.36 * f["lung_height"]
    dia = -0.22 * f["lung_height"] - f["diaphragm_shift_vox"] / sh[2]   # diaphragm level (z fraction)
    lungs = np.zeros(tuple(shape), dtype=bool)
    for side in (-1.0, 1.0):
        cx = side * 0.48 * a
        r2 = ((x - cx) / (0.36 * a)) ** 2 + ((y + 0.05 * b) / (0.75 * b)) ** 2
        dome = dia + 0.08 * np.clip(1 - r2, 0, 1)                          # dome rises under each lung
        apex = ((z - dia) / (top - dia)).clip(0, None) ** 4                  # rounded apex
        lungs |= (r2 + apex < 1) & (z > dome)
    hs = f["heart_size"]
    heart = (((x - 0.1 * a) / (0.32 * a * hs)) ** 2 + ((y + 0.3 * b) / (0.45 * b * hs)) ** 2
             + ((z - dia - 0.12) / (0.14 * hs)) ** 2) < 1
    lungs &= ~heart
    img = np.where(body, 0.45 + 0.05 * texture, np.float32(0.02))
    img = np.where(fat, 0.85, img)
    img = np.where(body & (z < dia), 0.55 + 0.04 * texture, img)             # liver / abdomen
    img = np.where(heart, 0.65, img)
    img = np.where(lungs, 0.08 + 0.02 * texture, img)
    img = ndimage.gaussian_filter(img, 0.7) * (1 + 0.1 * x - 0.08 * z)     # partial volume, bias field
    img = img + NOISE_SD * noise.standard_normal(img.shape, dtype=np.float32)
    return np.round(img * INTENSITY).astype(np.int16), lungs.astype(np.uint8)


def synthesize_lung(out: str | Path, n: int, shape: Sequence[int] = (128, 64, 128), seed: int = 0, *,
                    overwrite: bool = False, compresslevel: int = 1, progress: bool = True) -> Path:
    """Write ``n`` patients, each inspiration + expiration volume and lung mask, in the lung layout
    ``out/<patient>/{insp,exp}.nii.gz`` and ``{insp,exp}_mask.nii.gz`` (atomically). Returns ``out``."""
    out, shape = Path(out), tuple(int(s) for s in shape)
    if n < 1 or len(shape) != 3 or min(shape) < 4:
        raise ValueError(f"need n >= 1 and a 3-D shape of sides >= 4, got n={n}, shape={shape}")
    rng = np.random.default_rng([seed, 3])
    gain = np.array([1, 1, 1, 1, *(np.asarray(shape) / REF)], dtype=np.float64)
    draws = _draw(rng, np.asarray(LUNG_PATIENT_SD) * gain, n)
    draws[:, :4] += 1.0
    texture = _smooth_noise(rng, shape, float(np.mean(shape)) / 24)
    affine = _grid_affine(LUNG_SPACING, shape)
    ids, rows = [], []
    with atomic_dir(out, overwrite=overwrite) as tmp:
        for p in tqdm(range(n), desc="lung phantoms", unit="patient", disable=not progress):
            patient = f"patient_{p:03d}"
            (tmp / patient).mkdir()
            excursion = max(0.02, rng.normal(*DIAPHRAGM_EXCURSION)) * shape[2]
            expansion = max(0.0, rng.normal(*EXPANSION))
            base = dict(zip(LUNG_PATIENT_FACTORS, draws[p].tolist(), strict=True))
            for state, insp in (("insp", 1.0), ("exp", 0.0)):
                f = {**base, "diaphragm_shift_vox": insp * excursion, "chest_expansion": insp * expansion,
                     "inspiration": insp}
                img, mask = _lung_volume(shape, f, rng, texture)
                write_nifti(tmp / patient / f"{state}.nii.gz", img, affine, compresslevel=compresslevel)
                write_nifti(tmp / patient / f"{state}_mask.nii.gz", mask, affine, compresslevel=compresslevel)
                ids.append(f"{patient}_{state}")
                rows.append([f[k] for k in LUNG_FACTORS])
        _write_factors(tmp / "factors.csv", ids, LUNG_FACTORS, np.asarray(rows))
        write_json(tmp / "synthetic.json", {
            "kind": "lung", "n": n, "shape": list(shape), "seed": seed,
            "factor_sd": dict(zip(LUNG_PATIENT_FACTORS, (np.asarray(LUNG_PATIENT_SD) * gain).tolist(),
                                  strict=True)),
            "diaphragm_excursion": DIAPHRAGM_EXCURSION, "expansion": EXPANSION,
        })
    return out
