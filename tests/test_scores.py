"""The score registry (regexplain.analysis.scores): each score against a brute-force or analytic reference, the
structured keys every number carries, and the nulls it stands beside."""

from __future__ import annotations

import numpy as np
import pytest

from regexplain.analysis import scores as sc


def _coords(seed=0, n=60, m=30, k=6, planted=True):
    """Coefficients with decreasing variances; factor 'a' is component 1 (planted), 'b' is noise; a
    'shift' transform moves component 1 only."""
    rng = np.random.default_rng(seed)
    sd = np.linspace(3.0, 1.0, k)
    train, val = rng.standard_normal((n, k)) * sd, rng.standard_normal((m, k)) * sd
    deltas = 0.05 * rng.standard_normal((m, k))
    if planted:
        deltas[:, 0] += 2.0
    f_tr = np.c_[train[:, 0] + 0.1 * rng.standard_normal(n), rng.standard_normal(n)]
    f_va = np.c_[val[:, 0] + 0.1 * rng.standard_normal(m), rng.standard_normal(m)]
    c = sc.Coordinates(train, val, {"shift": deltas}, train.std(0, ddof=1))
    return c, sc.Factors(["a", "b"], f_tr, f_va, k=4)


def test_best_single_r2_is_the_squared_correlation_of_the_best_component():
    c, f = _coords()
    got = {key.factor: v for key, v in sc.best_single_r2(c, f).items()}
    brute = {name: max(np.corrcoef(c.val[:, j], f.val[:, i])[0, 1] ** 2 for j in range(f.k))
             for i, name in enumerate(f.names)}
    assert got == pytest.approx(brute, rel=1e-10)
    assert got["a"] > 0.9 > 0.3 > got["b"]


def test_readout_is_top_over_second_median_of_the_absolute_deltas():
    c, f = _coords()
    (key, ratio), = sc.readout(c, f).items()
    med = np.sort(np.median(np.abs(c.deltas["shift"])[:, :sc.N_SHOW], axis=0))[::-1]
    assert key.transform == "shift" and key.family == "readout"
    assert ratio == pytest.approx(med[0] / med[1])


def test_subspace_share_is_the_energy_of_the_best_k_components():
    c, f = _coords()
    got = {key.variant: v for key, v in sc.subspace(c, f).items()}
    d = c.deltas["shift"]
    energy = sorted(((d[:, j] ** 2).sum() for j in range(d.shape[1])), reverse=True)   # brute force
    for k in sc.SUBSPACE_DIMS:
        assert got[f"best {k}"] == pytest.approx(sum(energy[:k]) / sum(energy), rel=1e-12)
    assert got["best 1"] > 0.99                                  # planted: component 1 takes it all
    # a change spread evenly over two equal components: one takes half, two take all (the case PCA
    # cannot split: the single-component read-out fails, the subspace one holds)
    two = np.zeros((30, 6))
    two[:, 0], two[:, 1] = 1.0, -1.0
    shares = {k.variant: v for k, v in sc.subspace(sc.Coordinates(c.train, c.val, {"t": two}), f).items()}
    assert shares["best 1"] == pytest.approx(0.5) and shares["best 2"] == pytest.approx(1.0)
    assert np.isnan(sc.subspace_share(np.zeros((3, 4)), 2))
    # a random rotation of the planted change spreads it: the null stands well below
    table = sc.score_table(c, f, sc.null_coordinates(c, c.train.var(0, ddof=1), 30, 0), {"subspace": sc.subspace})
    entry = table[sc.subspace_label("shift", 1)]
    assert entry["observed"] > entry["null_p95"] and entry["variant"] == "best 1" and entry["transform"] == "shift"


def test_informativeness_matches_a_least_squares_fit():
    c, f = _coords()
    got = {key.factor: v for key, v in sc.informativeness(c, f).items()}
    x_tr, x_va = np.c_[np.ones(len(c.train)), c.train[:, :f.k]], np.c_[np.ones(len(c.val)), c.val[:, :f.k]]
    for i, name in enumerate(f.names):
        beta = np.linalg.lstsq(x_tr, f.train[:, i], rcond=None)[0]
        resid = f.val[:, i] - x_va @ beta
        r2 = 1 - np.sum(resid ** 2) / np.sum((f.val[:, i] - f.val[:, i].mean()) ** 2)
        assert got[name] == pytest.approx(r2, rel=1e-6, abs=1e-9)


def test_every_number_carries_its_structured_key():
    c, f = _coords()
    numbers = sc.evaluate(c, f, {**sc.SCORES, **sc.STUDY_SCORES})
    families = {k.family for k in numbers}
    assert families == {"SAP", "MIG", "DCI", "selectivity", "informativeness", "readout", "subspace",
                        "best single R²"}
    assert len({k.label for k in numbers}) == len(numbers)              # labels stay unique table keys
    assert {k.factor for k in numbers if k.family == "informativeness"} == {"a", "b"}
    assert {k.variant for k in numbers if k.family == "selectivity"} == {"top share", "mean response"}
    table = sc.score_table(c, f, sc.null_coordinates(c, c.train.var(0, ddof=1), 4, 0))
    top = sc.select(table, family="selectivity", variant="top share", transform="shift")
    assert list(top) == ["selectivity shift (top share)"]
    assert sc.select(table, family="informativeness", factor="b") == {sc.r2_name("b", f.k): table[sc.r2_name("b", f.k)]}


def test_score_table_puts_each_number_beside_its_null():
    c, f = _coords()
    nulls = sc.null_coordinates(c, c.train.var(0, ddof=1), 30, seed=3)
    table = sc.score_table(c, f, nulls, {"readout": sc.readout})
    entry = table["read-out shift (top / second median |Δa|)"]
    by_hand = [sc.readout(n, f) for n in nulls]
    null = np.array([next(iter(b.values())) for b in by_hand])
    assert entry["null_p95"] == pytest.approx(np.percentile(null, 95))
    assert entry["p_value"] == pytest.approx((1 + np.sum(null >= entry["observed"])) / 31)
    # the planted transform moves one component: far above any random basis of the same subspace
    assert entry["observed"] > entry["null_p95"] and entry["p_value"] == pytest.approx(1 / 31)
    # without a planted response, the observed read-out is no better than its null
    c0, _ = _coords(planted=False)
    flat = sc.score_table(c0, f, sc.null_coordinates(c0, c0.train.var(0, ddof=1), 30, 3), {"readout": sc.readout})
    assert next(iter(flat.values()))["p_value"] > 0.05


def test_null_bases_keep_the_subspace_and_the_variances():
    c, _ = _coords()
    var = c.train.var(0, ddof=1)
    for n in sc.null_coordinates(c, var, 3, seed=0):
        np.testing.assert_allclose(n.train.var(0, ddof=1), var, rtol=1e-10)
    for n in sc.null_coordinates(c, None, 3, seed=0):     # rotated only: every norm kept
        np.testing.assert_allclose(np.linalg.norm(n.val, axis=1), np.linalg.norm(c.val, axis=1))
    a, b = sc.null_coordinates(c, var, 2, seed=5), sc.null_coordinates(c, var, 2, seed=5)
    np.testing.assert_array_equal(a[1].val, b[1].val)    # seeded
