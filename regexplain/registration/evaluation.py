"""Registration quality of a model on fixed validation pairs, before (identity) and after registration.

Used by the training loop (:func:`validation_scores`: mean foreground Dice, folding %, SDlogJ) and by
``regexplain evaluate`` (:func:`evaluate_pairs`: per pair and per label Dice and HD95 in mm, plus
SDlogJ and folding %). Labels are warped with nearest-neighbour sampling, as in Learn2Reg.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from regexplain.registration import metrics
from regexplain.registration.spatial import identity_map, translation_map, warp


@torch.no_grad()
def registered_batches(model, images: torch.Tensor, labels: torch.Tensor, pairs: Sequence[tuple[int, int]],
                       batch_size: int = 4, device=None) -> Iterator[tuple[list, torch.Tensor, torch.Tensor]]:
    """Yield ``(pairs, phi_mf (B, 3, D, H, W), warped moving labels (B, 1, D, H, W))`` on the CPU."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        for s in range(0, len(pairs), batch_size):
            chunk = list(pairs[s:s + batch_size])
            mi = torch.tensor([m for m, _ in chunk])
            fi = torch.tensor([f for _, f in chunk])
            phi = model.register(images[mi].to(device), images[fi].to(device)).float()  # M->F only
            warped = warp(labels[mi].to(device).float(), phi, mode="nearest").round().long()
            yield chunk, phi.cpu(), warped.cpu()
    finally:
        model.train(was_training)


def _fg(num_labels: int) -> list[int]:
    return list(range(1, num_labels))


def validation_scores(model, val, pairs: Sequence[tuple[int, int]], num_labels: int, *, batch_size: int = 4,
                      device=None) -> dict[str, float]:
    """Mean foreground Dice before and after, mean folding % (det J <= 0) and mean SDlogJ over ``pairs``
    of ``val`` (a VolumeSet; ``pairs`` are (moving, fixed) indices)."""
    labels = _fg(num_labels)
    before, after, fold, sd = [], [], [], []
    for chunk, phi, warped in registered_batches(model, val.images, val.labels, pairs, batch_size, device):
        for k, (m, f) in enumerate(chunk):
            fixed = val.labels[f, 0].numpy()
            before.append(np.nanmean(metrics.dice_per_label(val.labels[m, 0].numpy(), fixed, labels)))
            after.append(np.nanmean(metrics.dice_per_label(warped[k, 0].numpy(), fixed, labels)))
            fold.append(100.0 * metrics.folding_fraction(phi[k:k + 1]))
            sd.append(metrics.sdlogj(phi[k:k + 1]))
    return {"dice_before": float(np.mean(before)), "dice_after": float(np.mean(after)),
            "folding_pct": float(np.mean(fold)), "sdlogj": float(np.mean(sd))}


def evaluate_pairs(model, val, pairs: Sequence[tuple[int, int]], num_labels: int, *, batch_size: int = 4,
                   device=None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-pair rows and a summary (mean and sd of every column) for ``regexplain evaluate``.

    Every row: ``moving``, ``fixed`` (ids), and for ``stage`` in (before, after): ``dice_{stage}_{l}``,
    ``hd95_{stage}_{l}`` (mm, with the working-shape spacing) per foreground label ``l``,
    ``dice_{stage}`` (mean over labels), ``folding_pct_{stage}``, ``sdlogj_{stage}``. "before" is the
    identity map (no folding, SDlogJ 0).
    """
    rows = []
    ident = identity_map(val.images.shape[2:])
    for chunk, phi, warped in registered_batches(model, val.images, val.labels, pairs, batch_size, device):
        for k, (m, f) in enumerate(chunk):
            fixed = val.labels[f, 0].numpy()
            row: dict[str, Any] = {"moving": val.ids[m], "fixed": val.ids[f]}
            for stage, pred, p in (("before", val.labels[m, 0].numpy(), ident),
                                   ("after", warped[k, 0].numpy(), phi[k:k + 1])):
                row.update(_label_scores(pred, fixed, num_labels, val.spacing, stage))
                row[f"folding_pct_{stage}"] = 100.0 * metrics.folding_fraction(p)
                row[f"sdlogj_{stage}"] = metrics.sdlogj(p)
            row.update(_centroid_columns(val.labels[m, 0].numpy(), fixed, warped[k, 0].numpy(), num_labels))
            rows.append(row)
    return rows, summarize(rows)


def _centroid_columns(moving: np.ndarray, fixed: np.ndarray, warped: np.ndarray, num_labels: int) -> dict:
    """The centroid baseline's Dice and the true / model label-centroid offsets of one pair."""
    base = centroid_baseline_label(moving, fixed)
    c_m = label_centroid(moving)
    true, model = label_centroid(fixed) - c_m, label_centroid(warped) - c_m
    out = {"dice_centroid": float(np.nanmean(metrics.dice_per_label(base, fixed, _fg(num_labels))))}
    out.update({f"offset_true_{a}": float(v) for a, v in zip("xyz", true, strict=True)})
    out.update({f"offset_model_{a}": float(v) for a, v in zip("xyz", model, strict=True)})
    return out


def _label_scores(pred: np.ndarray, target: np.ndarray, num_labels: int, spacing, stage: str) -> dict:
    labels = _fg(num_labels)
    dice = metrics.dice_per_label(pred, target, labels)
    out = {f"dice_{stage}_{lab}": float(d) for lab, d in zip(labels, dice, strict=True)}
    out[f"dice_{stage}"] = float(np.nanmean(dice))
    for lab in labels:
        out[f"hd95_{stage}_{lab}"] = float(metrics.hd95(pred, target, spacing, lab))
    return out


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``{column: {"mean", "sd", "n"}}`` over the numeric columns (NaN ignored, e.g. HD95 of an empty
    label), plus ``n_pairs``."""
    out: dict[str, Any] = {"n_pairs": len(rows)}
    for key in (rows[0] if rows else {}):
        vals = np.array([r[key] for r in rows if isinstance(r[key], (int, float))], dtype=float)
        if len(vals) == len(rows) and len(vals):
            ok = vals[np.isfinite(vals)]
            out[key] = {"mean": float(ok.mean()) if len(ok) else float("nan"),
                        "sd": float(ok.std()) if len(ok) else float("nan"), "n": int(len(ok))}
    return out


# --------------------------------------------------------------------------- trivial baseline, per axis

def label_centroid(label: np.ndarray | torch.Tensor) -> np.ndarray:
    """Centroid ``(3,)`` of the foreground ``label > 0`` ``(D, H, W)`` in voxels (NaN when empty)."""
    idx = np.argwhere(np.asarray(label) > 0)
    return idx.mean(0) if len(idx) else np.full(3, np.nan)


def centroid_baseline_label(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The trivial registration: ``moving`` ``(D, H, W)`` translated by the difference of the label
    centroids (fixed minus moving), nearest-neighbour; the baseline a learnt model must beat."""
    shift = label_centroid(fixed) - label_centroid(moving)
    if not np.isfinite(shift).all():
        return np.asarray(moving).copy()
    phi = translation_map(np.shape(moving), shift.tolist())
    lab = torch.as_tensor(np.asarray(moving), dtype=torch.float32)[None, None]
    return warp(lab, phi, mode="nearest")[0, 0].round().numpy().astype(np.asarray(moving).dtype)


def axis_recovery(true_offsets: np.ndarray, recovered_offsets: np.ndarray) -> np.ndarray:
    """Per-axis slope (through the origin) of the recovered vs the true label-centroid offset.

    Args:
        true_offsets: ``(P, 3)`` centroid(fixed) - centroid(moving) per pair, voxels, axes (x, y, z).
        recovered_offsets: ``(P, 3)`` centroid(warped moving) - centroid(moving).
    Returns:
        ``(3,)``: 1 recovers the offset along that axis, 0 ignores it (the identity); NaN without offsets.
    """
    t, r = np.asarray(true_offsets, float), np.asarray(recovered_offsets, float)
    ok = np.isfinite(t).all(1) & np.isfinite(r).all(1)
    t, r = t[ok], r[ok]
    den = (t * t).sum(0)
    return np.where(den > 0, (t * r).sum(0) / np.where(den > 0, den, 1), np.nan)


def baseline_row(model, val, pairs: Sequence[tuple[int, int]], num_labels: int, name: str, *,
                 device=None) -> dict[str, Any]:
    """One row of the ``baseline`` results table: Dice before / after, the centroid baseline's Dice and
    the per-axis recovery of ``model`` over ``pairs`` of ``val``."""
    rows, summary = evaluate_pairs(model, val, pairs, num_labels, device=device)
    b = baseline_and_axes(rows)
    return {"model": name, "dice_before": summary["dice_before"]["mean"], "dice_after": summary["dice_after"]["mean"],
            "dice_centroid_baseline": b["dice_centroid_baseline"],
            **{f"recovery_{a}": b["axis_recovery"][a] for a in "xyz"}}


def baseline_and_axes(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary of the ``centroid_*`` and ``offset_*`` columns of :func:`evaluate_pairs`' rows: the
    centroid baseline's mean Dice and the per-axis recovery ``{"x", "y", "z"}`` of the model and of the
    baseline."""
    t = np.array([[r[f"offset_true_{a}"] for a in "xyz"] for r in rows])
    m = np.array([[r[f"offset_model_{a}"] for a in "xyz"] for r in rows])
    return {"dice_centroid_baseline": float(np.nanmean([r["dice_centroid"] for r in rows])),
            "axis_recovery": dict(zip("xyz", axis_recovery(t, m).tolist(), strict=True))}


#: the real-anatomy check (regexplain.data.real_anatomy) scores this share of its crops (>= 2 left aside: the
#: split needs two sides) ...
REAL_SPLIT = (0.1, 0.9)
#: ... over this many random pairs of different crops
REAL_PAIRS = 40


def real_anatomy_row(model, cfg, folder, name: str, *, pairs: int = REAL_PAIRS, device=None) -> dict[str, Any]:
    """:func:`baseline_row` of ``model`` (trained with config ``cfg``) on a real-anatomy folder (``regexplain
    data real``), at the model's working shape: the validation side of :data:`REAL_SPLIT`, ``pairs`` pairs
    (:func:`regexplain.data.pairs.validation_pairs`, the config's data seed). DataError naming the folder when
    it is not a dataset."""
    from regexplain.config import override
    from regexplain.data.pairs import load_splits, validation_pairs

    data = override(cfg, {"data": {"root": str(folder), "split": list(REAL_SPLIT), "exact_counts": False}},
                    source="real-anatomy check").data
    _, val = load_splits(data, progress=False)
    chosen = validation_pairs(val, pairs, data.seed)
    return baseline_row(model, val, chosen, data.num_labels, name, device=device)
