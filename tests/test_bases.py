"""Bases of the latent space: each recovers planted directions within its known limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from regexplain.analysis.bases import BASES, fit_basis, sefa_directions
from regexplain.analysis.latent import Decomposition
from regexplain.registration.model import RegistrationNet


def _frame(f: int, k: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((f, k)))
    return q.T                                                    # (k, f) orthonormal rows


def _best_cos(rows: np.ndarray, d: np.ndarray) -> float:
    return float(np.max(np.abs(rows @ d / (np.linalg.norm(rows, axis=1) * np.linalg.norm(d)))))


def test_ica_separates_equal_variance_factors_that_pca_mixes():
    rng = np.random.default_rng(0)
    d = _frame(20, 2, 1)
    s = rng.uniform(-np.sqrt(3), np.sqrt(3), (400, 2))           # two independent unit-variance sources
    z = s @ d + 0.01 * rng.standard_normal((400, 20))
    ica = fit_basis("ica", z, 2, seed=0).components
    pca = fit_basis("pca", z, 2).components
    for j in range(2):
        assert _best_cos(ica, d[j]) > 0.99
    assert min(_best_cos(pca, d[j]) for j in range(2)) < 0.95     # equal variances: PCA's axes are arbitrary
    # least-squares projection of a non-orthonormal basis recovers the sources (up to order, sign, scale)
    dec = fit_basis("ica", z, 2, seed=0)
    a = dec.project(z)
    corr = np.abs(np.corrcoef(a.T, s.T)[:2, 2:])
    assert corr.max(1).min() > 0.99


def test_pca_basis_is_the_papers_decomposition():
    z = np.random.default_rng(2).standard_normal((50, 30)) * np.linspace(3, 0.5, 30)
    a, b = fit_basis("pca", z, 5), Decomposition.fit(z, 5)
    np.testing.assert_allclose(np.abs(a.components), np.abs(b.components), atol=1e-6)
    assert a.meta["basis"] == "pca"


def test_sefa_directions_are_the_svd_of_the_first_decoder_layer():
    torch.manual_seed(0)
    net = RegistrationNet((4, 8, 6))
    shape = net.latent_shape((8, 8, 8))                          # (6, 2, 2, 2)
    z = np.random.default_rng(0).standard_normal((20, int(np.prod(shape))))
    dec = fit_basis("sefa", z, 4, latent_shape=shape, model=net)
    w = net.decoder.ups[0][0].weight.detach().double()         # (C_in, C_out, 2, 2, 2)
    _, sv, vt = torch.linalg.svd(w.reshape(w.shape[0], -1).T, full_matrices=False)
    rows = dec.components.reshape(4, shape[0], -1).astype(np.float64)
    assert np.allclose(rows, rows[:, :, :1], atol=1e-6)           # one channel vector, spread over voxels
    chan = rows[:, :, 0] / np.linalg.norm(rows[:, :, 0], axis=1, keepdims=True)
    for v in vt[:4].numpy():                                     # the same 4 singular directions (any order)
        assert _best_cos(chan, v) > 0.9999
    np.testing.assert_allclose(np.abs(sefa_directions(w.numpy(), 4)), np.abs(vt[:4].numpy()), atol=1e-10)
    with pytest.raises(ValueError, match="needs the model"):
        fit_basis("sefa", z, 4, latent_shape=shape)


def test_supervised_directions_recover_a_planted_linear_factor():
    rng = np.random.default_rng(3)
    d = _frame(40, 3, 4)
    f = rng.standard_normal(300)
    z = np.outer(f, d[0]) + 2.0 * np.outer(rng.standard_normal(300), d[1]) + 0.05 * rng.standard_normal((300, 40))
    dec = fit_basis("supervised", z, 10, factors={"planted": f, "unrelated": rng.standard_normal(300)})
    i = dec.meta["factors"].index("planted")
    assert abs(float(dec.components[i] @ d[0])) > 0.98
    assert abs(np.corrcoef(dec.project(z)[:, i], f)[0, 1]) > 0.99
    with pytest.raises(ValueError, match="needs known factors"):
        fit_basis("supervised", z, 10)


def test_random_orthonormal_and_sparse_pca():
    rng = np.random.default_rng(5)
    z = rng.standard_normal((60, 24))
    r = fit_basis("random_orthonormal", z, 6, seed=1)
    np.testing.assert_allclose(r.components @ r.components.T, np.eye(6), atol=1e-5)
    assert fit_basis("random_orthonormal", z, 6, seed=2).components.tolist() != r.components.tolist()
    # two sparse directions on disjoint supports, different variances: sparse PCA keeps the supports
    sparse = np.zeros((2, 24))
    sparse[0, :4], sparse[1, 10:14] = 0.5, 0.5
    z = np.outer(3 * rng.standard_normal(200), sparse[0]) + np.outer(rng.standard_normal(200), sparse[1])
    z += 0.01 * rng.standard_normal(z.shape)
    sp = fit_basis("sparse_pca", z, 2, seed=0, alpha=0.5).components
    assert _best_cos(sp, sparse[0]) > 0.98 and _best_cos(sp, sparse[1]) > 0.98
    assert (np.abs(sp) < 1e-6).mean() > 0.5                       # and is sparse
    with pytest.raises(ValueError, match="unknown basis"):
        fit_basis("nmf", z, 2)
    assert set(BASES) == {"pca", "ica", "sparse_pca", "sefa", "supervised", "random_orthonormal"}


def test_fit_on_codes_reads_the_factors_of_the_ids_and_names_a_missing_csv(tmp_path):
    from regexplain.analysis.bases import fit_on_codes
    from regexplain.data.synthetic import _write_factors

    rng = np.random.default_rng(0)
    codes, f = rng.normal(size=(30, 6)), rng.normal(size=(30, 2))
    codes[:, 0] += 3 * f[:, 0]
    ids = [f"s{i}" for i in range(30)]
    _write_factors(tmp_path / "factors.csv", ids[::-1], ("a", "b"), f[::-1])   # file order differs from ids
    dec = fit_on_codes("supervised", None, codes, ids, tmp_path, 2)
    direct = fit_basis("supervised", codes, 2, factors={"a": f[:, 0], "b": f[:, 1]})
    np.testing.assert_allclose(dec.components, direct.components, atol=1e-4)   # the csv keeps 6 digits
    with pytest.raises(ValueError, match="basis supervised: .* no factors.csv"):
        fit_on_codes("supervised", None, codes, ids, tmp_path / "none", 2)


def test_the_cli_names_every_basis_that_can_be_fitted_and_parses_without_torch():
    import subprocess
    import sys

    from regexplain.analysis import bases
    from regexplain.config import BASES

    assert tuple(bases._FIT) == BASES   # config.BASES (torch-free, the CLI's --basis choices) is the same list
    code = ("import sys; from regexplain.cli import build_parser; build_parser(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False", "parsing the command line imported torch"
