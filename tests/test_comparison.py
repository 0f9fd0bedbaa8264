"""The basis comparison: every basis scored the same way, beside its null, and the reading of the winners."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from regexplain.analysis import comparison
from regexplain.analysis.bases import BASES
from regexplain.registration.model import RegistrationNet


def _blobs(n: int, seed: int):
    """Gaussian blobs displaced along each axis by known factors."""
    rng = np.random.default_rng(seed)
    f = rng.uniform(-1, 1, size=(n, 3)) * np.array([2.0, 1.2, 0.6])
    grid = np.stack(np.meshgrid(*[np.arange(16.0)] * 3, indexing="ij"))
    imgs = [np.exp(-(((grid - (7.5 + fi)[:, None, None, None]) / [[[[4.0]]], [[[3.0]]], [[[2.5]]]]) ** 2).sum(0))
            for fi in f]
    return torch.tensor(np.stack(imgs)[:, None], dtype=torch.float32), f


def _set(n, seed, prefix):
    imgs, f = _blobs(n, seed)
    return SimpleNamespace(images=imgs, labels=(imgs > 0.5).long(), ids=[f"{prefix}{i}" for i in range(n)]), f


def test_winners_pick_the_largest_observed_value_and_say_whether_it_beats_its_null():
    s = lambda obs, p95: {"observed": obs, "null_mean": 0.0, "null_p95": p95}  # noqa: E731
    comp = {"pca": {"scores": {"SAP": s(0.3, 0.2), "MIG": s(0.1, 0.2)}},
            "ica": {"scores": {"SAP": s(0.5, 0.6), "MIG": s(0.05, 0.2)}},
            "random_orthonormal": {"scores": {"SAP": s(0.9, 0.1), "MIG": s(0.9, 0.1)}}}
    rows = {r["score"]: r for r in comparison.winners(comp)}
    assert rows["SAP"]["best"] == "ica" and not rows["SAP"]["beats_null"] and rows["SAP"]["pca"] == 0.3
    assert rows["MIG"]["best"] == "pca" and not rows["MIG"]["beats_null"]   # the null basis never wins
    text = comparison.reading(list(rows.values()))
    assert "**ica** is best on 1 score(s): SAP (0.50, not above its null)" in text and "**pca**" in text
    assert {r["basis"] for r in comparison.comparison_rows(comp)} == set(comp)



def test_the_supervised_upper_bound_stands_beside_the_winner_and_never_wins():
    s = lambda obs: {"observed": obs, "null_mean": 0.0, "null_p95": 0.0}  # noqa: E731
    comp = {"pca": {"scores": {"SAP": s(0.3), "bootstrap stability": s(0.7)}},
            "sefa": {"scores": {"SAP": s(0.4)}},
            "supervised": {"scores": {"SAP": s(0.9)}}}
    rows = {r["score"]: r for r in comparison.winners(comp)}
    assert rows["SAP"]["best"] == "sefa" and rows["SAP"]["bound"] == 0.9 and rows["SAP"]["pca"] == 0.3
    assert rows["bootstrap stability"]["best"] == "pca" and rows["bootstrap stability"]["bound"] is None
    assert "**supervised**" not in comparison.reading(list(rows.values()))

@pytest.mark.slow
def test_every_basis_is_scored_with_every_score():
    torch.manual_seed(0)
    net = RegistrationNet((2, 4, 4)).eval()
    (train, f_tr), (val, f_va) = _set(16, 0, "t"), _set(8, 1, "v")
    factors = (train.ids + val.ids, ["tx", "ty", "tz"], np.concatenate([f_tr, f_va]))
    out = comparison.compare_bases(net, train, val, factors, k=4, k_info=3, n_null=2, n_boot=2, n_affine=2)
    json.dumps(out)
    assert set(out) == set(BASES) and out["supervised"]["K"] == 3 and out["pca"]["K"] == 4
    pca = out["pca"]["scores"]
    assert {"SAP", "MIG", "DCI disentanglement", "affine share", "bootstrap stability",
            "R² tx from 3 components", "selectivity rotation (top share)"} <= set(pca)
    assert "bootstrap stability" not in out["sefa"]["scores"]
    # PCA is the variance-maximising basis: no other orthonormal basis explains more of the codes
    assert out["pca"]["explained"] >= out["random_orthonormal"]["explained"] - 1e-9
    with pytest.raises(ValueError, match="unknown basis"):
        comparison.compare_bases(net, train, val, factors, bases=("pca", "nmf"))
