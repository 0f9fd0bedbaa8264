"""The trivial baseline a model must beat (translate by the label centroids) and per-axis recovery."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regexplain.registration import evaluation, metrics
from regexplain.registration.spatial import translation_map, warp


def _blob(shape, center, radii):
    idx = np.indices(shape).astype(float)
    r = sum(((idx[a] - center[a]) / radii[a]) ** 2 for a in range(3))
    return (r <= 1).astype(np.uint8)


def test_centroid_baseline_undoes_an_integer_translation_exactly():
    fixed = _blob((24, 24, 24), (12, 11, 13), (5, 3, 7))
    moving = _blob((24, 24, 24), (9, 14, 10), (5, 3, 7))          # the same shape, shifted by (-3, 3, -3)
    base = evaluation.centroid_baseline_label(moving, fixed)
    assert metrics.dice_per_label(base, fixed, [1])[0] == pytest.approx(1.0)
    assert metrics.dice_per_label(moving, fixed, [1])[0] < 0.5
    np.testing.assert_allclose(evaluation.label_centroid(base), evaluation.label_centroid(fixed), atol=1e-9)


def test_centroid_baseline_cannot_fix_a_shape_difference():
    fixed = _blob((24, 24, 24), (12, 12, 12), (8, 3, 3))
    moving = _blob((24, 24, 24), (12, 12, 12), (3, 3, 8))          # same centroid, other orientation
    base = evaluation.centroid_baseline_label(moving, fixed)
    np.testing.assert_array_equal(base, moving)
    empty = np.zeros_like(moving)
    np.testing.assert_array_equal(evaluation.centroid_baseline_label(empty, fixed), empty)


def test_axis_recovery_slopes_through_the_origin():
    rng = np.random.default_rng(0)
    true = rng.normal(0, 2, (50, 3))
    rec = true * np.array([1.0, 0.5, 0.0]) + rng.normal(0, 0.01, (50, 3))
    s = evaluation.axis_recovery(true, rec)
    np.testing.assert_allclose(s, [1.0, 0.5, 0.0], atol=0.01)
    # brute force: least squares through the origin, one axis at a time
    for a in range(3):
        slope = np.linalg.lstsq(true[:, a:a + 1], rec[:, a], rcond=None)[0][0]
        assert s[a] == pytest.approx(slope)
    assert np.isnan(evaluation.axis_recovery(np.zeros((4, 3)), np.ones((4, 3)))).all()


class _Shift(torch.nn.Module):
    """A 'model' that translates by a fixed fraction of the true offset along each axis."""

    def __init__(self, labels, gain):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.labels, self.gain = labels, np.asarray(gain)

    def register(self, moving, fixed):
        maps = []
        for m, f in zip(moving, fixed, strict=True):
            # the images are the labels here: translate by gain x (centroid(fixed) - centroid(moving))
            d = evaluation.label_centroid(f[0].numpy()) - evaluation.label_centroid(m[0].numpy())
            maps.append(translation_map(m.shape[1:], (self.gain * d).tolist()))
        return torch.cat(maps).float()


def test_evaluate_pairs_reports_the_baseline_and_what_a_model_recovers_per_axis():
    from regexplain.data.pairs import VolumeSet

    rng = np.random.default_rng(1)
    labels = np.stack([_blob((20, 20, 20), 10 + rng.integers(-3, 4, 3), (3, 4, 5)) for _ in range(8)])
    lab = torch.from_numpy(labels[:, None]).long()
    val = VolumeSet(lab.float(), lab, [f"s{i}" for i in range(8)], [f"s{i}" for i in range(8)], (1.0, 1.0, 1.0))
    pairs = [(i, j) for i in range(8) for j in range(8) if i != j][:30]
    rows, _ = evaluation.evaluate_pairs(_Shift(labels, (1.0, 0.5, 0.0)), val, pairs, 2)
    b = evaluation.baseline_and_axes(rows)
    np.testing.assert_allclose([b["axis_recovery"][a] for a in "xyz"], [1.0, 0.5, 0.0], atol=0.08)
    assert b["dice_centroid_baseline"] == pytest.approx(1.0)       # same shapes: the baseline is perfect
    for r in rows[:3]:                                              # the true offsets, recomputed
        m, f = int(r["moving"][1:]), int(r["fixed"][1:])
        d = evaluation.label_centroid(labels[f]) - evaluation.label_centroid(labels[m])
        np.testing.assert_allclose([r[f"offset_true_{a}"] for a in "xyz"], d)
    warped = warp(lab[:1].float(), translation_map((20, 20, 20), (0.0, 0.0, 0.0)), mode="nearest")
    np.testing.assert_array_equal(warped[0, 0].numpy(), labels[0])
