"""Cross-run matching of elementary transformations in field space."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from regexplain.analysis import matching
from regexplain.analysis.latent import Decomposition, encode_volumes
from regexplain.registration.model import RegistrationNet


def _run(seed: int):
    torch.manual_seed(seed)
    net = RegistrationNet((2, 4, 4)).eval()
    with torch.no_grad():          # a decoder with a non-trivial response to codes
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    z = encode_volumes(net, torch.rand(12, 1, 8, 8, 8, generator=torch.Generator().manual_seed(seed)))
    return net, Decomposition.fit(z, 5, latent_shape=net.latent_shape((8, 8, 8)))


def _permuted(dec: Decomposition, perm) -> Decomposition:
    return dataclasses.replace(dec, components=dec.components[perm], explained_variance=dec.explained_variance[perm],
                               explained_variance_ratio=dec.explained_variance_ratio[perm])


def test_a_run_matched_against_itself_has_cosine_one():
    net, dec = _run(0)
    out = matching.cross_run_similarity([(net, dec), (net, dec)], n=4, n_null=3)
    assert [c["similarity"] for c in out["components"]] == pytest.approx([1.0] * 4, abs=1e-6)
    assert out["pairs"][0]["match"] == [1, 2, 3, 4]
    assert all(c["null_p95"] < 0.999 for c in out["components"])   # random directions do not match


def test_the_components_of_a_permuted_copy_are_found():
    net, dec = _run(1)
    perm = [3, 0, 4, 1, 2]
    out = matching.cross_run_similarity([(net, dec), (net, _permuted(dec, perm))], n=5, n_null=2)
    # reference component j sits at position perm.index(j) of the permuted copy
    assert out["pairs"][0]["match"] == [perm.index(j) + 1 for j in range(5)]
    assert out["pairs"][0]["cos"] == pytest.approx([1.0] * 5, abs=1e-6)


def test_mask_restricts_the_comparison_and_one_run_is_refused():
    net, dec = _run(2)
    mask = np.zeros((8, 8, 8), bool)
    mask[2:6, 2:6, 2:6] = True
    assert matching.component_fields(net, dec, 3, mask).shape == (3, 3 * 64)
    with pytest.raises(ValueError, match="two runs"):
        matching.cross_run_similarity([(net, dec)])


def test_match_fields_brute_force():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(4, 30)), rng.normal(size=(4, 30))
    order, cos = matching.match_fields(a, b)
    import itertools

    unit = lambda m: m / np.linalg.norm(m, axis=1, keepdims=True)  # noqa: E731
    c = np.abs(unit(a) @ unit(b).T)
    best = max(itertools.permutations(range(4)), key=lambda p: sum(c[i, p[i]] for i in range(4)))
    assert list(order) == list(best) and cos == pytest.approx([c[i, best[i]] for i in range(4)])
