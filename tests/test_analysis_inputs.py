"""The analysis inputs built in one place (issue 24): the K rule, factors aligned to ids with one error,
and `regexplain decompose` writing what the main job's decomposition writes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from regexplain.analysis import inputs as ai
from regexplain.errors import DataError


@pytest.mark.parametrize(("requested", "n_train", "expect"), [(32, 200, 32), (32, 12, 11), (3, 12, 3), (5, 2, 1)])
def test_k_rule_caps_at_n_minus_one(requested, n_train, expect):
    assert ai.n_components(requested, n_train) == expect
    # brute force: N centred codes span at most N - 1 directions, so a PCA has no more non-zero components
    z = np.random.default_rng(0).standard_normal((n_train, 50))
    rank = np.linalg.matrix_rank(z - z.mean(0))
    assert ai.n_components(requested, n_train) <= max(rank, 1)


def test_factors_align_to_ids_in_any_order_and_name_the_file_when_one_is_missing():
    table = (["b", "a", "c"], ["x", "y"], np.array([[2.0, 20], [1.0, 10], [3.0, 30]]))
    rows = ai.align_factors(["a", "c", "b"], table)
    np.testing.assert_array_equal(rows, [[1, 10], [3, 30], [2, 20]])
    by_name = ai.factors_by_name(["c", "a"], table)
    assert list(by_name) == ["x", "y"] and by_name["y"].tolist() == [30.0, 10.0]
    with pytest.raises(DataError, match=r"data/factors\.csv: no factors for 2 of the 3 volume\(s\) \(d, e\)"):
        ai.align_factors(["a", "d", "e"], table, "data/factors.csv")


def test_read_factor_table_is_none_without_factors(tmp_path, hippo_root):
    assert ai.read_factor_table(tmp_path) is None
    ids, names, values = ai.read_factor_table(hippo_root)
    assert len(ids) == values.shape[0] and len(names) == values.shape[1]


def test_decompose_and_the_main_job_write_the_same_metadata(decomposition_dir, tmp_path):
    """The explorer fixture's decomposition came from `regexplain decompose`; the main job's
    runs.ensure_decomposition on the same run must record the same keys, values and arrays."""
    from regexplain.analysis.latent import Decomposition
    from regexplain.runs import ensure_decomposition

    cli = Decomposition.load(decomposition_dir)
    run = tmp_path / "run"
    shutil.copytree(decomposition_dir.parent / "run", run)
    main = ensure_decomposition(run)
    assert set(main.meta) == set(cli.meta)
    for key in ("dataset", "working_shape", "skip_connections", "basis", "data"):
        assert main.meta[key] == cli.meta[key], key
    assert main.meta["K"] == main.n_components
    assert sorted(main.extra) == sorted(cli.extra)
    np.testing.assert_array_equal(main.extra["val_ids"], cli.extra["val_ids"])
    # the same PCA of the same codes: the CLI's K = 3 components are the main job's first three
    k = cli.n_components
    np.testing.assert_allclose(main.extra["train_coefficients"][:, :k], cli.extra["train_coefficients"],
                               rtol=1e-4, atol=1e-4 * np.abs(cli.extra["train_coefficients"]).max())
    on_disk = json.loads((run / "decomposition" / "decomposition.json").read_text())["meta"]
    assert on_disk["checkpoint"] == str((run / "checkpoint.pt").absolute())
