"""Real brain MRI around the hippocampus, built offline from the T1 templates that packages ship.

The project's real-anatomy check (``regexplain data real``, ``benchmarks/real_anatomy.py``): crops in the
MSD Task04 layout (``dataset.json``, ``imagesTr/``, ``labelsTr/``; 1 mm voxels, sizes like the MSD patches,
label 1 = hippocampal head (anterior), 2 = body (posterior)) cut around each hippocampus of each template
with a random offset and a small random rotation, so that a model trained on phantoms is scored on anatomy
it has never seen. Nothing is downloaded: the files come from installed packages.

Sources (:data:`SOURCES`; each is used when found, the others are named with what to install):

* ``colin27`` and ``colin27_hires``: Colin27 (one adult brain, 27 scans averaged; ``ch2.nii.gz`` 1 mm and
  ``ch2better.nii.gz`` 0.5 mm, another processing of the same scans), Debian's ``mricron-data``;
* ``mni152_2009a_sym``: the ICBM 2009a symmetric average (152 brains), shipped in ``nilearn``'s wheel;
* ``mni152_nlin6_asym``: the MNI152 6th-generation (FSL) average, shipped in ``nimare``'s wheel.

Labels: the AAL atlas (``aal.nii.gz`` of ``mricron-data``; 37 / 38 = left / right hippocampus), drawn on
Colin27 in MNI space. On the two MNI averages it is the atlas's label in their (common) space, not a tracing
of their own anatomy. Each hippocampus is split across its long axis (the first principal axis of its
label, in mm) into an anterior head holding :data:`HEAD_SHARE` of its volume and a posterior body.

Left hemispheres are mirrored (array axis 0 grows laterally on both sides; the affine says so honestly:
``L`` for a left crop), as a registration of a left onto a right hippocampus is impossible for a monotone
map. A symmetric template's right hemisphere is its left one mirrored: only one is used. So the folder
holds 3 independent brains (Colin27 and two population averages), 5 distinct hemispheres, and Colin27 in
two processings; every crop is its own subject in the MSD layout.
"""

from __future__ import annotations

import csv
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from regexplain.data.nifti import read_nifti, write_nifti
from regexplain.errors import DataError
from regexplain.io import atomic_dir, write_json
from regexplain.registration import spatial

DEBIAN_DIR = Path("/usr/share/mricron/templates")
#: AAL label values of the hippocampus per hemisphere
AAL_HIPPOCAMPUS = {"L": 37, "R": 38}
#: share of a hippocampus' volume labelled head (1, the anterior end); the rest is its body (2)
HEAD_SHARE = 0.5
#: crop margins, mm: a crop's side is the hippocampus' extent along it plus a margin uniform in [lo, hi] (integer
#: sizes, at most MAX_SIZE), so that the structure stays inside whatever the offset, as in the MSD patches
MARGIN_MM = (8, 16)
MAX_SIZE = 62          # below the 64^3 window: the preprocessing pads a crop centred, keeping its offset
OFFSET_MM = 4.0        # crop centre offset from the hippocampus' centre, uniform in [-o, o] mm per axis
ROTATION_DEG = 5.0     # crop rotation, uniform in [-r, r] degrees about each axis
INTENSITY = 1000.0     # written images: the template's 1st-99.9th percentile range mapped to [0, INTENSITY]
#: how to install each package the sources come from (Debian's, or this project's optional extra)
INSTALL = {"mricron-data": "apt-get install mricron-data", "nilearn": "pip install 'regexplain[realdata]'",
           "nimare": "pip install 'regexplain[realdata]'"}


@dataclass(frozen=True)
class Source:
    """One file of an installed package: a T1 template, or the label atlas."""
    name: str
    anatomy: str            # the brain it shows: sources of one anatomy are not independent
    file: str
    package: str            # key of :data:`INSTALL`
    where: str              # Debian: a folder; pip: the folder inside the installed package
    symmetric: bool = False  # its right hemisphere is its left one mirrored

    def candidates(self, search: Sequence[str | Path] = ()) -> list[Path]:
        """Where the file may be: the package's own place first, then ``search`` folders (their tree)."""
        out = []
        if self.package == "mricron-data":
            out.append(Path(self.where) / self.file)
        else:
            spec = importlib.util.find_spec(self.package)   # finds, never imports, the package
            if spec is not None and spec.submodule_search_locations:
                out.append(Path(list(spec.submodule_search_locations)[0]) / self.where / self.file)
        for d in search:
            out.extend(sorted(Path(d).rglob(self.file)))
        return out

    def locate(self, search: Sequence[str | Path] = ()) -> Path | None:
        return next((p for p in self.candidates(search) if p.is_file()), None)


SOURCES: tuple[Source, ...] = (
    Source("colin27", "colin27", "ch2.nii.gz", "mricron-data", str(DEBIAN_DIR)),
    Source("colin27_hires", "colin27", "ch2better.nii.gz", "mricron-data", str(DEBIAN_DIR)),
    Source("mni152_2009a_sym", "mni152_2009a_sym", "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "nilearn",
           "datasets/data", symmetric=True),
    Source("mni152_nlin6_asym", "mni152_nlin6_asym", "tpl-MNI152NLin6Asym_res-01_T1w.nii.gz", "nimare",
           "resources/templates"),
)
ATLAS = Source("aal", "colin27", "aal.nii.gz", "mricron-data", str(DEBIAN_DIR))


@dataclass
class Found:
    """What :func:`find_sources` found: templates ``[(source, path)]``, the atlas path (or None) and, for
    what is missing, one line each naming how to install it."""
    templates: list[tuple[Source, Path]]
    atlas: Path | None
    missing: list[str]

    @property
    def usable(self) -> bool:
        return self.atlas is not None and bool(self.templates)

    def why_not(self) -> str:
        """What is missing for the check to run, as one line naming what to install (empty when it can)."""
        if self.usable:
            return ""
        need = (["the AAL atlas"] if self.atlas is None else []) + (["a T1 template"] if not self.templates else [])
        how = dict.fromkeys(["mricron-data"] if self.atlas is None else [])
        how.update(dict.fromkeys(INSTALL if not self.templates else []))
        return (f"no real-anatomy sources: needs {' and '.join(need)}; run "
                + " and/or ".join(f"`{c}`" for c in dict.fromkeys(INSTALL[k] for k in how)))


def find_sources(search: Sequence[str | Path] = (), sources: Sequence[Source] | None = None,
                 atlas: Source | None = None) -> Found:
    """Locate the templates (:data:`SOURCES` by default) and the atlas (:data:`ATLAS`) in installed packages
    and under ``search`` folders (e.g. a ``dpkg -x`` or an unzipped wheel). Nothing is downloaded."""
    templates, missing = [], []
    atlas = atlas or ATLAS
    for s in SOURCES if sources is None else sources:
        p = s.locate(search)
        if p is None:
            missing.append(f"{s.name} ({s.file}): {INSTALL[s.package]}")
        else:
            templates.append((s, p))
    path = atlas.locate(search)
    if path is None:
        missing.append(f"labels ({atlas.file}): {INSTALL[atlas.package]}")
    return Found(templates, path, missing)


# --------------------------------------------------------------------------- geometry

def _world(affine: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Voxel indices ``(N, 3)`` -> world mm ``(N, 3)``."""
    return idx @ affine[:3, :3].T + affine[:3, 3]


def _voxel(affine: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """World mm ``(N, 3)`` -> (fractional) voxel indices ``(N, 3)``."""
    inv = np.linalg.inv(affine)
    return pts @ inv[:3, :3].T + inv[:3, 3]


@dataclass(frozen=True)
class Hippocampus:
    """One hippocampus of the atlas in world mm: its bounding-box centre and extent (mm along x, y, z),
    long axis (unit, pointing anteriorly) and the position along it where the head ends (projections above
    it are head)."""
    center: np.ndarray
    extent: np.ndarray
    axis: np.ndarray
    split: float


def hippocampus_geometry(atlas: np.ndarray, affine: np.ndarray, value: int, head_share: float = HEAD_SHARE
                         ) -> Hippocampus:
    """:class:`Hippocampus` of the voxels of ``atlas == value``; DataError when there are none."""
    idx = np.argwhere(atlas == value).astype(np.float64)
    if len(idx) == 0:
        raise DataError(f"the atlas has no voxel of label {value}")
    pts = _world(affine, idx)
    mean = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - mean, full_matrices=False)
    axis = vt[0] * (1.0 if vt[0][1] >= 0 else -1.0)            # anterior = +y in the RAS world
    proj = (pts - mean) @ axis
    split = float(np.quantile(proj, 1 - head_share)) + float(mean @ axis)
    vox = np.linalg.norm(affine[:3, :3], axis=0)
    lo, hi = pts.min(0), pts.max(0)
    return Hippocampus((lo + hi) / 2, np.abs(hi - lo) + vox, axis, split)


def crop_affine(center: np.ndarray, size: Sequence[int], rotation_deg: Sequence[float], mirror: bool
                ) -> np.ndarray:
    """Affine ``(4, 4)`` of a 1 mm crop of ``size`` voxels centred on ``center`` (world mm), turned by
    ``rotation_deg`` about x, y, z; ``mirror`` makes array axis 0 grow towards -x (a left hemisphere seen
    as a right one)."""
    m = spatial.affine_matrix(rotation=list(rotation_deg)).numpy() @ np.diag([-1.0 if mirror else 1.0, 1, 1])
    a = np.eye(4)
    a[:3, :3] = m
    a[:3, 3] = np.asarray(center, float) - m @ ((np.asarray(size, float) - 1) / 2)
    return a


def sample_crop(image: np.ndarray, image_affine: np.ndarray, atlas: np.ndarray, atlas_affine: np.ndarray,
                hippo: Hippocampus, value: int, affine: np.ndarray, size: Sequence[int]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Image (trilinear) and head / body label (nearest atlas voxel of ``value``) on the crop grid.

    Returns ``(image (X, Y, Z) float32, label (X, Y, Z) uint8)``; outside the template the image is 0.
    """
    idx = np.indices(tuple(size), dtype=np.float64).reshape(3, -1).T
    pts = _world(affine, idx)
    img = ndimage.map_coordinates(image, _voxel(image_affine, pts).T, order=1, mode="constant", cval=0.0)
    inside = ndimage.map_coordinates(atlas, _voxel(atlas_affine, pts).T, order=0, mode="constant", cval=0) == value
    head = pts @ hippo.axis > hippo.split
    label = np.where(inside, np.where(head, 1, 2), 0).astype(np.uint8)
    return img.reshape(tuple(size)).astype(np.float32), label.reshape(tuple(size))


def _prepared(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A template's intensities scaled to [0, INTENSITY] (1st / 99.9th percentiles of its non-zero voxels)
    and smoothed to 1 mm when its voxels are finer (no aliasing when sampled at 1 mm)."""
    data, affine = read_nifti(path)
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise DataError(f"{path}: expected a 3-D image, got shape {data.shape}")
    vox = np.linalg.norm(affine[:3, :3], axis=0)
    if vox.min() < 0.9:
        data = ndimage.gaussian_filter(data, [0.5 / v for v in vox])
    lo, hi = np.percentile(data[data > 0], [1, 99.9])
    return (np.clip((data - lo) / (hi - lo), 0, None) * INTENSITY).astype(np.float32), affine


def _dataset_json(ids: Sequence[str], sources: Sequence[str]) -> dict:
    return {
        "name": "Hippocampus (real anatomy)",
        "description": "T1 templates shipped by packages, cropped around each hippocampus (regexplain.data."
                       "real_anatomy); sources: " + ", ".join(sources),
        "reference": "regexplain.data.real_anatomy; labels: AAL (Tzourio-Mazoyer et al. 2002)",
        "licence": "see each package's copyright (mricron-data, nilearn, nimare)",
        "tensorImageSize": "3D",
        "modality": {"0": "MRI"},
        "labels": {"0": "background", "1": "Anterior", "2": "Posterior"},
        "numTraining": len(ids),
        "numTest": 0,
        "training": [{"image": f"./imagesTr/{i}.nii.gz", "label": f"./labelsTr/{i}.nii.gz"} for i in ids],
        "test": [],
    }


CROP_COLUMNS = ("id", "source", "anatomy", "hemisphere", "size_x", "size_y", "size_z", "offset_x_mm",
                "offset_y_mm", "offset_z_mm", "rot_x_deg", "rot_y_deg", "rot_z_deg")


def build_real_anatomy(out: str | Path, templates: Sequence[tuple[Source, Path]], atlas: str | Path, *,
                       crops: int = 4, seed: int = 0, offset_mm: float = OFFSET_MM,
                       rotation_deg: float = ROTATION_DEG, margin_mm=MARGIN_MM, overwrite: bool = False) -> Path:
    """Write ``crops`` crops of each hemisphere of each template in the MSD layout under ``out`` (atomic).

    Each crop: per axis, the hippocampus' extent plus a margin drawn in ``margin_mm`` (at most
    :data:`MAX_SIZE` voxels of 1 mm), its centre the hippocampus' bounding-box centre
    plus an offset uniform in ``[-offset_mm, offset_mm]`` per axis, a rotation uniform in
    ``[-rotation_deg, rotation_deg]`` about each axis; the same seed gives the same folder. ``crops.csv``
    records each crop (source, anatomy, hemisphere, size, offset, rotation); ``real_anatomy.json`` the
    settings and sources. Returns ``out``.
    """
    if crops < 1 or not templates:
        raise ValueError(f"need crops >= 1 and at least one template, got crops={crops}, {len(templates)} templates")
    out = Path(out)
    lab, lab_affine = read_nifti(atlas)
    lab = np.asarray(lab).astype(np.int32)
    hippos = {h: hippocampus_geometry(lab, lab_affine, v) for h, v in AAL_HIPPOCAMPUS.items()}
    rng = np.random.default_rng([seed, 34])
    rows, ids = [], []
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for src, path in templates:
            image, affine = _prepared(path)
            for hemi in ("R", "L")[: 1 if src.symmetric else 2]:
                hippo = hippos[hemi]
                for k in range(crops):
                    size = [min(MAX_SIZE, int(round(e)) + int(rng.integers(margin_mm[0], margin_mm[1] + 1)))
                            for e in hippo.extent]
                    off = rng.uniform(-offset_mm, offset_mm, 3)
                    rot = rng.uniform(-rotation_deg, rotation_deg, 3)
                    a = crop_affine(hippo.center + off, size, rot, mirror=hemi == "L")
                    img, label = sample_crop(image, affine, lab, lab_affine, hippo, AAL_HIPPOCAMPUS[hemi], a, size)
                    if not (label == 1).any() or not (label == 2).any():
                        raise DataError(f"{path}: a crop of the {hemi} hippocampus lost a label; use a smaller "
                                        f"offset than {offset_mm} mm")
                    vid = f"hippocampus_{src.name}_{hemi}{k}"
                    write_nifti(tmp / "imagesTr" / f"{vid}.nii.gz", np.round(img).astype(np.int16), a)
                    write_nifti(tmp / "labelsTr" / f"{vid}.nii.gz", label, a)
                    ids.append(vid)
                    rows.append([vid, src.name, src.anatomy, hemi, *size, *np.round(off, 3), *np.round(rot, 3)])
        write_json(tmp / "dataset.json", _dataset_json(ids, [s.name for s, _ in templates]))
        with open(tmp / "crops.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(CROP_COLUMNS)
            w.writerows(rows)
        anatomies = sorted({s.anatomy for s, _ in templates})
        write_json(tmp / "real_anatomy.json", {
            "kind": "real_anatomy", "seed": seed, "crops_per_hemisphere": crops, "offset_mm": offset_mm,
            "rotation_deg": rotation_deg, "margin_mm": list(margin_mm), "head_share": HEAD_SHARE,
            "sources": {s.name: str(p) for s, p in templates}, "atlas": str(atlas),
            "independent_brains": anatomies,
            "hemispheres": sorted({f"{s.anatomy}_{h}" for s, _ in templates
                                   for h in ("R", "L")[: 1 if s.symmetric else 2]}),
        })
    return out


def build_from_packages(out: str | Path, *, search: Sequence[str | Path] = (), **kw) -> tuple[Path, Found]:
    """:func:`find_sources` then :func:`build_real_anatomy`; DataError (its message names what to install)
    when the atlas or every template is missing."""
    found = find_sources(search)
    if not found.usable:
        raise DataError(found.why_not())
    return build_real_anatomy(out, found.templates, found.atlas, **kw), found


def ensure(out: str | Path, *, search: Sequence[str | Path] = ()) -> str:
    """The real-anatomy check's folder at ``out``: kept when it holds a dataset, else built from the
    installed packages; without them nothing is written. Returns one line saying which (the main job's
    notebooks print it, so a missing package is named, never an error)."""
    out = Path(out)
    if (out / "dataset.json").is_file():
        return f"{out}: real-anatomy crops present"
    found = find_sources(search)
    if not found.usable:
        return f"real-anatomy check skipped: {found.why_not()}"
    build_real_anatomy(out, found.templates, found.atlas)
    return (f"{out}: real-anatomy crops built from " + ", ".join(s.name for s, _ in found.templates)
            + (f" (not found: {'; '.join(found.missing)})" if found.missing else ""))
