"""How hard a dataset is to register, in numbers comparable with the paper's data.

Computed on preprocessed volumes at the working shape (what the network sees), for phantoms and real
folders alike (``regexplain data info`` prints them):

* ``dice_before``: mean foreground Dice of random pairs of *different* subjects before registration
  (the paper: hippocampus 0.59 ± 0.15, lung 0.74 ± 0.14), as
  :func:`regexplain.registration.evaluation.validation_scores` scores it (mean over the foreground labels of
  a pair, then mean and sd over pairs);
* ``contrast``: ``|mean(label) - mean(shell)| / pooled sd``, the shell being the voxels within
  ``shell_vox`` voxels (city-block dilation steps) outside the label. Real T1 crops of the hippocampus give
  about 0 (grey matter between white matter and CSF); a bright blob gives several sd;
* ``volume_cv``: coefficient of variation of the foreground volume across subjects;
* ``thickness_vox``: ``16 V / (pi S)`` of the foreground (V voxels, S exposed voxel faces), a tube's diameter.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

#: The paper's Dice before registration (mean, sd), section 4.
PAPER_DICE_BEFORE = {"hippocampus": (0.59, 0.15), "lung": (0.74, 0.14)}


def pair_dice_before(labels: np.ndarray, groups: Sequence[str], n_pairs: int = 200, seed: int = 0
                     ) -> np.ndarray:
    """Mean foreground Dice of ``n_pairs`` random ordered pairs of different groups (without repeats).

    Args:
        labels: ``(N, D, H, W)`` integer labels, 0 = background.
        groups: subject of each volume; pairs never join two volumes of one subject.
    Returns:
        ``(n_pairs,)`` Dice per pair (fewer when fewer valid pairs exist).
    """
    from regexplain.data.pairs import validation_pairs
    from regexplain.registration.metrics import dice_per_label

    fg = [int(v) for v in np.unique(labels) if v > 0]
    pairs = validation_pairs(list(groups), n_pairs, seed)
    return np.array([np.nanmean(dice_per_label(labels[m], labels[f], fg)) for m, f in pairs])


def shell_contrast(images: np.ndarray, labels: np.ndarray, shell_vox: int = 2) -> float:
    """``|mean inside - mean shell| / sqrt((var inside + var shell) / 2)`` pooled over volumes.

    Args:
        images, labels: ``(N, D, H, W)``; the foreground is ``labels > 0``.
        shell_vox: shell width in 6-connected dilation steps.
    """
    inside, shell = [], []
    for img, lab in zip(images, labels, strict=True):
        fg = lab > 0
        ring = ndimage.binary_dilation(fg, iterations=shell_vox) & ~fg
        inside.append(img[fg])
        shell.append(img[ring])
    a, b = np.concatenate(inside), np.concatenate(shell)
    pooled = np.sqrt((a.var() + b.var()) / 2)
    return float(abs(a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def thickness(label: np.ndarray) -> float:
    """``16 V / (pi S)`` of ``label > 0`` in voxels (V: voxel count, S: faces between fore- and background,
    the volume border counting as background): the diameter of a long tube (``4 V / S`` for a smooth
    surface; voxel faces overcount a tube's surface by ``4 / pi``)."""
    fg = np.pad(label > 0, 1)
    faces = sum(int(np.count_nonzero(np.diff(fg, axis=a))) for a in range(3))
    return 16.0 * float(fg.sum()) / (math.pi * faces) if faces else float("nan")


def dataset_stats(images: np.ndarray, labels: np.ndarray, groups: Sequence[str], *, n_pairs: int = 200,
                  seed: int = 0) -> dict[str, float]:
    """The module's statistics for preprocessed volumes ``images``, ``labels`` ``(N, D, H, W)``.

    Returns ``dice_before_mean``, ``dice_before_sd``, ``n_pairs``, ``contrast``, ``volume_cv``,
    ``thickness_vox`` (mean over volumes), ``volume_vox`` (mean foreground voxels).
    """
    images, labels = np.asarray(images), np.asarray(labels)
    if images.shape != labels.shape or images.ndim != 4:
        raise ValueError(f"images and labels must both be (N, D, H, W), got {images.shape} and {labels.shape}")
    vol = (labels > 0).reshape(len(labels), -1).sum(1).astype(float)
    with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
        # volumes whose structure vanished at this shape give NaN, reported as such, not as warnings
        warnings.simplefilter("ignore", RuntimeWarning)
        dice = pair_dice_before(labels, groups, n_pairs, seed)
        return {"dice_before_mean": float(np.nanmean(dice)), "dice_before_sd": float(np.nanstd(dice)),
                "n_pairs": len(dice), "contrast": shell_contrast(images, labels),
                "volume_cv": float(vol.std() / vol.mean()),
                "thickness_vox": float(np.nanmean([thickness(lab) for lab in labels])),
                "volume_vox": float(vol.mean()), "empty_labels": int((vol == 0).sum())}


def folder_stats(root, shape: Sequence[int] | None = None, n_pairs: int = 200, seed: int = 0
                 ) -> tuple[dict[str, float], tuple[int, int, int]]:
    """:func:`dataset_stats` of every volume of a dataset folder, preprocessed as training preprocesses it
    (:func:`regexplain.data.pairs.load_all`, cached) at ``shape`` (default: the quick profile's for the
    folder's kind of data). Returns the statistics and the shape used."""
    import dataclasses

    from regexplain.config import load_config
    from regexplain.data.datasets import detect
    from regexplain.data.pairs import load_all

    d = load_config("quick", detect(root).name).data
    d = dataclasses.replace(d, root=str(root), shape=tuple(int(n) for n in (shape or d.shape)))
    data, _ = load_all(d, progress=False)
    s = dataset_stats(data.images[:, 0].numpy(), data.labels[:, 0].numpy(), data.groups, n_pairs=n_pairs,
                      seed=seed)
    return s, d.shape


def format_stats(s: dict[str, float], dataset: str | None = None) -> str:
    """One line per statistic, with the paper's Dice before registration beside ours where known."""
    paper = PAPER_DICE_BEFORE.get(dataset or "")
    ref = f" (paper {paper[0]:.2f} ± {paper[1]:.2f})" if paper else ""
    return "\n".join([
        f"dice before  {s['dice_before_mean']:.3f} ± {s['dice_before_sd']:.3f} over {s['n_pairs']} pairs of "
        f"different subjects{ref}",
        f"contrast     {s['contrast']:.2f} pooled sd between the label and a 2-voxel shell around it "
        "(real T1 hippocampus: about 0)",
        f"volume       {s['volume_vox']:.0f} voxels, coefficient of variation {s['volume_cv']:.2f}"
        + (f"; {s['empty_labels']} volumes without a label at this shape" if s.get("empty_labels") else ""),
        f"thickness    {s['thickness_vox']:.1f} voxels (16 V / (pi S): a tube's diameter)",
    ])
