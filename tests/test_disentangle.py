"""Disentanglement scores against their known extremes and brute-force references."""

import numpy as np
import pytest

from regexplain.analysis import disentangle as dz


def _factors(n=2000, f=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-1, 1, size=(n, f))


def _hadamard4():
    h = np.array([[1, 1, 1, 1], [1, -1, 1, -1], [1, 1, -1, -1], [1, -1, -1, 1]], float)
    return h / 2.0  # orthogonal: every code mixes every factor with equal weight


def test_sap_extremes():
    f = _factors()
    assert dz.sap_score(f, f) > 0.99
    assert dz.sap_score(f @ _hadamard4(), f) < 0.05
    rot = dz.random_rotation(4, np.random.default_rng(1))
    assert dz.sap_score(f @ rot, f) < dz.sap_score(f, f) - 0.2


def test_sap_matrix_is_squared_correlation():
    rng = np.random.default_rng(2)
    c, f = rng.standard_normal((50, 3)), rng.standard_normal((50, 2))
    ref = np.array([[np.corrcoef(c[:, i], f[:, j])[0, 1] ** 2 for j in range(2)] for i in range(3)])
    np.testing.assert_allclose(dz.sap_matrix(c, f), ref, atol=1e-12)


def test_dci_extremes():
    f = _factors()
    aligned = dz.dci_scores(f, f, f, f)
    assert aligned["disentanglement"] > 0.99 and aligned["completeness"] > 0.99
    assert aligned["informativeness"] > 0.99
    mixed = dz.dci_scores(f @ _hadamard4(), f)
    assert mixed["disentanglement"] < 0.05 and mixed["completeness"] < 0.05
    assert mixed["informativeness"] > 0.99  # mixing loses no information


def test_dci_from_importance_known_values():
    assert dz.dci_from_importance(np.eye(3)) == pytest.approx((1.0, 1.0))
    d, c = dz.dci_from_importance(np.ones((3, 3)))
    assert d == pytest.approx(0.0, abs=1e-12) and c == pytest.approx(0.0, abs=1e-12)
    # one code explains two factors equally: that code has D = 0 (base 2), completeness stays 1
    d, c = dz.dci_from_importance(np.array([[1.0, 1.0], [0.0, 0.0]]))
    assert d == pytest.approx(0.0, abs=1e-12) and c == pytest.approx(1.0)


def test_mig_extremes():
    f = _factors(n=4000)
    assert dz.mig_score(f, f) > 0.9
    assert dz.mig_score(f @ _hadamard4(), f) < 0.1


def test_mig_matches_brute_force_entropy():
    rng = np.random.default_rng(3)
    f = rng.integers(0, 4, size=(500, 1)).astype(float)
    # a code equal to the factor, and a second code independent of it
    c = np.concatenate([f, rng.standard_normal((500, 1))], axis=1)
    p = np.bincount(f[:, 0].astype(int)) / 500
    h = -(p * np.log(p)).sum()
    cd, fd = dz.discretize(c, 20), dz.discretize(f, 20)
    from sklearn.metrics import mutual_info_score
    expected = (h - mutual_info_score(fd[:, 0], cd[:, 1])) / h
    assert dz.mig_score(c, f) == pytest.approx(expected, rel=1e-9)


def test_informativeness_r2():
    rng = np.random.default_rng(4)
    codes = rng.standard_normal((400, 5))
    factors = np.stack([codes[:, 0], codes[:, 0] + codes[:, 3]], axis=1)
    r2 = dz.informativeness_r2(codes[:300], factors[:300], codes[300:], factors[300:])
    assert r2.shape == (5, 2)
    assert r2[0, 0] > 0.999 and r2[2, 1] < 0.7 and r2[3, 1] > 0.999


def test_selectivity_extremes():
    sigma = np.array([1.0, 2.0, 4.0])
    one = dz.selectivity(np.array([[0.0, 6.0, 0.0]] * 5), sigma)
    assert one["top_share"] == pytest.approx(1.0) and one["participation_ratio"] == pytest.approx(1.0)
    assert one["top_component"] == 1
    flat = dz.selectivity(np.array([[1.0, 2.0, 4.0]] * 5), sigma)  # equal standardised deltas
    assert flat["top_share"] == pytest.approx(1 / 3) and flat["participation_ratio"] == pytest.approx(3.0)
    assert one["coherence"] == pytest.approx(1.0) and one["mean_top_share"] == pytest.approx(1.0)


def test_selectivity_of_the_mean_response():
    """Subjects moving +-1 along component 2 and 0.5 along component 0 (standardised): each subject's
    response is spread (top share 0.8), but the average direction is component 0 alone, and it carries
    0.25 / 1.25 of the per-subject energy."""
    sigma = np.array([2.0, 1.0, 4.0])
    d = np.array([[1.0, 0.0, 4.0], [1.0, 0.0, -4.0]] * 3)
    sel = dz.selectivity(d, sigma)
    assert sel["top_share"] == pytest.approx(0.8) and sel["top_component"] == 2
    assert sel["mean_top_share"] == pytest.approx(1.0) and sel["mean_top_component"] == 0
    assert sel["coherence"] == pytest.approx(0.25 / 1.25)


def test_random_basis_codes_matches_variances_and_preserves_span():
    rng = np.random.default_rng(5)
    a = rng.standard_normal((200, 4)) * np.array([4.0, 3.0, 2.0, 1.0])
    var = a.var(0, ddof=1)
    b, b2 = dz.random_basis_codes([a, a[:10] * 2], var, np.random.default_rng(6))
    np.testing.assert_allclose(b.var(0, ddof=1), var, rtol=1e-10)
    np.testing.assert_allclose(b2, 2 * b[:10], rtol=1e-10)
    # same information: a is a linear function of b
    coef = np.linalg.lstsq(b, a, rcond=None)[0]
    np.testing.assert_allclose(b @ coef, a, atol=1e-9)


def test_match_components_recovers_permutation_and_signs():
    rng = np.random.default_rng(7)
    q = np.linalg.qr(rng.standard_normal((30, 5)))[0].T
    perm = np.array([3, 0, 4, 1, 2])
    other = q[perm] * np.array([1, -1, 1, -1, 1])[:, None]
    order, cos = dz.match_components(q, other)
    np.testing.assert_array_equal(perm[order], np.arange(5))
    np.testing.assert_allclose(cos, 1.0)


def test_bootstrap_stability_well_separated_vs_null():
    rng = np.random.default_rng(8)
    basis = np.linalg.qr(rng.standard_normal((60, 3)))[0].T
    x = (rng.standard_normal((150, 3)) * np.array([10.0, 5.0, 2.5])) @ basis
    x += 0.01 * rng.standard_normal(x.shape)
    out = dz.bootstrap_stability(x, basis, n_boot=5)
    assert min(out["mean_abs_cos"]) > 0.99
    assert out["null_mean"] < 0.9 and out["p_value"] < 0.2


def test_null_summary_p_value():
    s = dz.null_summary(1.0, [0.0, 0.5, 2.0])
    assert s["p_value"] == pytest.approx(2 / 4) and s["null_mean"] == pytest.approx(2.5 / 3)


def test_null_summary_smaller_is_better():
    s = dz.null_summary(1.0, [0.5, 2.0, 3.0], larger_is_better=False)
    assert s["p_value"] == pytest.approx(2 / 4) and "null_p5" in s
