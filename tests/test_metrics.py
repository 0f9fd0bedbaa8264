"""Metrics against independent references: sklearn F1 (= Dice), brute-force surface distances with
scipy.spatial, numpy.gradient Jacobians, numpy mean/std."""

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist
from sklearn.metrics import f1_score

from regexplain.registration import metrics as M
from regexplain.registration import spatial as sp

SHAPE = (10, 12, 9)


def _labels(seed, shape=SHAPE, n=3):
    rng = np.random.default_rng(seed)
    return ndimage.median_filter(rng.integers(0, n, shape), size=3)


def test_dice_per_label_matches_sklearn_f1():
    p, t = _labels(0), _labels(1)
    got = M.dice_per_label(p, t, [1, 2])
    ref = [f1_score((t == k).ravel(), (p == k).ravel()) for k in (1, 2)]
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_dice_per_label_edge_cases():
    p = _labels(2)
    np.testing.assert_array_equal(M.dice_per_label(p, p, [1, 2]), [1.0, 1.0])
    out = M.dice_per_label(p, p, [7])  # absent from both: undefined
    assert np.isnan(out[0])
    with pytest.raises(ValueError, match="differ in shape"):
        M.dice_per_label(p, p[:-1], [1])


def _surface_points(mask, spacing):
    """Voxels of the mask with a 6-neighbour outside (or on the volume border), in mm."""
    pts = []
    for idx in zip(*np.nonzero(mask), strict=True):
        for a in range(3):
            for s in (-1, 1):
                n = list(idx)
                n[a] += s
                if not 0 <= n[a] < mask.shape[a] or not mask[tuple(n)]:
                    pts.append(idx)
                    break
            else:
                continue
            break
    return np.array(pts, dtype=float) * np.asarray(spacing)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (2.0, 0.7, 1.5)])
def test_hd95_matches_brute_force(spacing):
    p, t = _labels(3), _labels(4)
    for k in (1, 2):
        sp_, st = _surface_points(p == k, spacing), _surface_points(t == k, spacing)
        d = cdist(sp_, st)
        ref = max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))
        assert M.hd95(p, t, spacing, k) == pytest.approx(ref, rel=1e-9)


def test_hd95_analytic_and_edge_cases():
    a = np.zeros((12, 12, 12), int)
    a[3:8, 3:8, 3:8] = 1
    b = np.roll(a, 3, axis=0)
    assert M.hd95(a, a, (1, 1, 1), 1) == 0.0
    # a pure shift by 3 voxels of 2 mm: every surface point of one cube is within 6 mm of the other
    assert M.hd95(a, b, (2.0, 1.0, 1.0), 1) <= 6.0 + 1e-9
    assert M.hd95(a, b, (2.0, 1.0, 1.0), 1) == pytest.approx(6.0)
    assert np.isnan(M.hd95(a, a, (1, 1, 1), 5))
    assert M.hd95(a, np.zeros_like(a), (1, 1, 1), 1) == float("inf")
    with pytest.raises(ValueError, match="spacing"):
        M.hd95(a, a, (1, 1), 1)


def _det_numpy(phi):
    J = np.stack([np.stack(np.gradient(phi[i]), 0) for i in range(3)], 0)
    return np.linalg.det(np.moveaxis(J, (0, 1), (-2, -1)))


def _folded_map():
    phi = np.stack(np.indices(SHAPE)).astype(float)
    rng = np.random.default_rng(5)
    f = np.stack([ndimage.gaussian_filter(rng.standard_normal(SHAPE), 1.5) for _ in range(3)])
    return phi + 4.0 * f / np.abs(f).max()


def test_folding_fraction_matches_numpy_gradient():
    phi = _folded_map()
    ref = np.mean(_det_numpy(phi) <= 0)
    assert 0 < ref < 0.5
    assert M.folding_fraction(phi) == pytest.approx(ref)
    assert M.folding_fraction(torch.as_tensor(phi)[None]) == pytest.approx(ref)
    assert M.folding_fraction(sp.identity_map(SHAPE)) == 0.0


def test_sdlogj_matches_learn2reg_definition():
    phi = _folded_map()
    det = _det_numpy(phi)[2:-2, 2:-2, 2:-2]
    ref = np.log(np.clip(det, 1e-9, 1e9)).std()
    assert M.sdlogj(phi) == pytest.approx(ref, rel=1e-9)
    assert M.sdlogj(sp.identity_map(SHAPE)) == pytest.approx(0.0, abs=1e-12)
    assert M.sdlogj(sp.scaling_map(SHAPE, 1.3, dtype=torch.float64)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="sampling map"):
        M.sdlogj(np.zeros((2, 5, 5, 5)))
