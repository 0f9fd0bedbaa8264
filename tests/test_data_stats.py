"""Dataset statistics (regexplain.data.stats) against brute force and analytic cases, and the calibrated
phantoms against the paper's data: Dice of random pairs before registration, label contrast, volume CV."""

from __future__ import annotations

import numpy as np
import pytest

from regexplain.data import stats, synthetic


def _ball(shape, center, r):
    idx = np.indices(shape).astype(float)
    return (((idx - np.reshape(center, (3, 1, 1, 1))) ** 2).sum(0) <= r * r).astype(np.uint8)


def test_pair_dice_is_the_mean_over_pairs_of_the_foreground_dice():
    rng = np.random.default_rng(0)
    labels = np.stack([_ball((16, 16, 16), 8 + rng.integers(-3, 4, 3), 4) for _ in range(6)])
    labels[::2][labels[::2] > 0] = 2            # two label values: Dice per label, nan-mean over labels
    groups = ["a", "a", "b", "c", "d", "e"]     # the two volumes of "a" are never paired
    d = stats.pair_dice_before(labels, groups, n_pairs=500, seed=0)
    brute = []
    for i in range(6):
        for j in range(6):
            if groups[i] == groups[j]:
                continue
            per = []
            for lab in (1, 2):
                a, b = labels[i] == lab, labels[j] == lab
                if a.sum() + b.sum():
                    per.append(2 * (a & b).sum() / (a.sum() + b.sum()))
            brute.append(np.mean(per))
    assert len(d) == len(brute) == 28           # every valid ordered pair once
    assert sorted(d) == pytest.approx(sorted(brute))


def test_contrast_is_zero_for_a_label_as_bright_as_its_shell_and_large_for_a_blob():
    rng = np.random.default_rng(1)
    lab = _ball((24, 24, 24), (12, 12, 12), 5)[None]
    flat = 0.5 + 0.05 * rng.standard_normal(lab.shape)
    assert stats.shell_contrast(flat, lab) < 0.1
    blob = flat + 0.3 * lab
    assert stats.shell_contrast(blob, lab) > 4           # 0.3 / 0.05 = 6 sd, minus sampling noise
    # the shell is 2 dilation steps wide: brightening voxels 3 steps away changes nothing
    from scipy import ndimage

    far = ndimage.binary_dilation(lab[0] > 0, iterations=3) & ~ndimage.binary_dilation(lab[0] > 0, iterations=2)
    moved = flat.copy()
    moved[0][far] += 10
    assert stats.shell_contrast(moved, lab) == pytest.approx(stats.shell_contrast(flat, lab))


def test_thickness_of_a_tube_is_its_diameter_and_volume_cv():
    tube = np.zeros((400, 30, 30), np.uint8)
    idx = np.indices((30, 30))
    tube[:, ((idx[0] - 15) ** 2 + (idx[1] - 15) ** 2) <= 36] = 1     # radius 6, long: the caps are 2 % of S
    assert stats.thickness(tube) == pytest.approx(12.0, rel=0.1)
    slab = np.zeros((40, 40, 40), np.uint8)
    slab[:, :, 10:14] = 1                                             # axis-aligned faces: S counts exactly
    assert stats.thickness(slab) == pytest.approx(16 * 40 * 40 * 4 / np.pi / (2 * 40 * 40 + 4 * 40 * 4))
    labels = np.stack([_ball((20, 20, 20), (10, 10, 10), r) for r in (3, 4, 5)])
    vol = labels.reshape(3, -1).sum(1)
    s = stats.dataset_stats(np.zeros(labels.shape), labels, ["a", "b", "c"], n_pairs=10)
    assert s["volume_cv"] == pytest.approx(vol.std() / vol.mean())
    assert s["n_pairs"] == 6


@pytest.fixture(scope="module")
def calibrated_stats(tmp_path_factory):
    """The default phantoms and pose ones, as the quick profile sees them (64³ made, preprocessed to 32³)."""
    out = {}
    for regime in ("calibrated", "pose"):
        root = synthetic.synthesize_hippocampus(tmp_path_factory.mktemp(regime) / "ds", 60, (64, 64, 64),
                                                seed=3, regime=regime, progress=False)
        out[regime], shape = stats.folder_stats(root, n_pairs=200)
        assert shape == (32, 32, 32)
    return out


def test_calibrated_phantoms_match_the_papers_hippocampus_data(calibrated_stats):
    s = calibrated_stats["calibrated"]
    assert s["n_pairs"] == 200
    assert abs(s["dice_before_mean"] - 0.59) <= 0.03      # the paper: 0.59 +- 0.15 before registration
    assert 0.08 <= s["dice_before_sd"] <= 0.2
    assert s["contrast"] <= 0.5                            # grey matter as bright as its surroundings
    assert s["volume_cv"] <= 0.2
    p = calibrated_stats["pose"]                           # the earlier regime: a bright blob, further apart
    assert p["contrast"] > 2 and p["dice_before_mean"] < 0.45 and p["volume_cv"] > 0.3
    assert synthetic.synthesize_hippocampus.__kwdefaults__["regime"] == "calibrated"


def test_data_info_prints_the_statistics(hippo_root, capsys):
    from regexplain.cli import main

    assert main(["data", "info", str(hippo_root), "--shape", "16", "16", "16", "--pairs", "20"]) == 0
    out = capsys.readouterr().out
    assert "at 16x16x16" in out and "dice before" in out and "over 20 pairs" in out and "(paper 0.59" in out
    assert main(["data", "info", str(hippo_root), "--no-stats"]) == 0
    assert "dice before" not in capsys.readouterr().out


def test_phantoms_of_another_regime_are_refused_by_the_main_job(tmp_path):
    import dataclasses

    from regexplain.config import load_config
    from regexplain.data.pairs import ensure_data
    from regexplain.errors import DataError

    root = synthetic.synthesize_hippocampus(tmp_path / "h", 4, (16, 16, 16), regime="pose", progress=False)
    d = dataclasses.replace(load_config("smoke").data, root=str(root))
    assert d.phantom_regime == "calibrated"
    with pytest.raises(DataError, match="'pose' regime.*data.phantom_regime"):
        ensure_data(d)
    assert ensure_data(dataclasses.replace(d, phantom_regime="pose")) == root
