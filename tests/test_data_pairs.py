import json
import shutil
from collections import Counter

import pytest
import torch

from regexplain.config import DataConfig
from regexplain.data import msd
from regexplain.data.nifti import read_nifti, write_nifti
from regexplain.data.pairs import VolumeSet, load_splits, random_pairs, validation_pairs
from regexplain.errors import DataError


def _cfg(root, **kw):
    return DataConfig(**{"root": str(root), "shape": (16, 16, 16), "n_subjects": 12, "n_train": 8, "n_val": 4,
                         **kw})


def test_split_is_deterministic_and_order_free():
    ids = [f"s{i:02d}" for i in range(30)]
    a = msd.make_split(ids, 20, 6, seed=3)
    assert a == msd.make_split(list(reversed(ids)), 20, 6, seed=3)
    assert a != msd.make_split(ids, 20, 6, seed=4)
    assert len(a["train"]) == 20 and len(a["val"]) == 6 and not set(a["train"]) & set(a["val"])


def test_load_splits_hippocampus(hippo_root, tmp_path):
    root = shutil.copytree(hippo_root, tmp_path / "ds")
    train, val = load_splits(_cfg(root), progress=False)
    assert train.images.shape == (8, 1, 16, 16, 16) and val.labels.shape == (4, 1, 16, 16, 16)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert 0 <= float(train.images.min()) and float(train.images.max()) <= 1
    assert set(train.labels.unique().tolist()) == {0, 1, 2}
    # 1 mm voxels cut / padded to the 64^3 base grid, resized to 16^3 (corners kept): 63/15 mm
    assert train.spacing == pytest.approx((63 / 15,) * 3)
    split = json.loads((root / "split.json").read_text())
    assert split["train"] == train.ids and split["val"] == val.ids
    assert msd.make_split(train.ids + val.ids, 8, 4, 0)["val"] == val.ids
    caches = list(root.glob(".cache_16x16x16_*.pt"))
    assert len(caches) == 1
    # cached: the same tensors come back; a changed file invalidates the cache
    train2, _ = load_splits(_cfg(root), progress=False)
    torch.testing.assert_close(train2.images, train.images)
    img = root / "imagesTr" / "hippocampus_000.nii.gz"
    array, affine = read_nifti(img)
    write_nifti(img, array[::-1].copy(), affine)   # the cache is keyed by content (a touch alone keeps it)
    load_splits(_cfg(root), progress=False)
    assert list(root.glob(".cache_16x16x16_*.pt")) != caches


def test_spacing_uses_the_base_grid(hippo_root, tmp_path):
    root = shutil.copytree(hippo_root, tmp_path / "ds")
    train, _ = load_splits(_cfg(root, shape=(32, 32, 32)), progress=False)
    assert train.spacing == pytest.approx((63 / 31,) * 3)


def test_load_splits_lung_keeps_both_states_together(lung_root, tmp_path):
    root = shutil.copytree(lung_root, tmp_path / "ds")
    train, val = load_splits(_cfg(root, dataset="lung", num_labels=2, n_train=3, n_val=1, n_subjects=4,
                                  shape=(32, 16, 32)), progress=False)
    assert len(train) == 6 and len(val) == 2
    assert all(c == 2 for c in Counter(train.groups).values())
    assert not set(train.groups) & set(val.groups)
    assert set(train.labels.unique().tolist()) == {0, 1}


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_missing_or_empty_root_is_an_error_and_makes_nothing(tmp_path, make):
    root = tmp_path / "typo"
    if make == "empty":
        root.mkdir()
    with pytest.raises(DataError, match=f"{root}: .* data folder"):
        load_splits(_cfg(root, n_subjects=6, n_train=4, n_val=2, shape=(8, 8, 8)), progress=False)
    assert sorted(tmp_path.rglob("*")) == ([root] if make == "empty" else [])


def test_random_pairs_never_join_a_group():
    groups = ["a", "a", "b", "b", "c"]
    g = torch.Generator().manual_seed(0)
    m, f = random_pairs(groups, 500, g)
    assert m.dtype == torch.long and m.shape == f.shape == (500,)
    assert all(groups[i] != groups[j] for i, j in zip(m.tolist(), f.tolist(), strict=True))
    assert len(set(zip(m.tolist(), f.tolist(), strict=True))) > 10  # not stuck on a few pairs
    m2, f2 = random_pairs(groups, 500, torch.Generator().manual_seed(0))
    assert torch.equal(m, m2) and torch.equal(f, f2)
    with pytest.raises(ValueError):
        random_pairs(["a", "a"], 2, g)


def test_validation_pairs_fixed_distinct_and_valid():
    groups = ["p1", "p1", "p2", "p2", "p3", "p3"]
    vs = VolumeSet(torch.zeros(6, 1, 2, 2, 2), torch.zeros(6, 1, 2, 2, 2, dtype=torch.long),
                   [f"v{i}" for i in range(6)], groups, (1.0, 1.0, 1.0))
    a = validation_pairs(vs, 10, seed=1)
    assert a == validation_pairs(groups, 10, seed=1)
    assert len(a) == len(set(a)) == 10 and all(groups[i] != groups[j] for i, j in a)
    assert len(validation_pairs(vs, 1000, seed=1)) == 6 * 4  # all valid ordered pairs


def test_ensure_data_fills_an_empty_root(tmp_path):
    """An empty folder (left by an interrupted run) is treated as missing, not as a dataset."""
    from regexplain.config import DataConfig
    from regexplain.data.datasets import detect
    from regexplain.data.pairs import ensure_data

    root = tmp_path / "hippo"
    root.mkdir()
    ensure_data(DataConfig(root=str(root), n_subjects=3, n_train=2, n_val=1), progress=False)
    assert detect(root).layout == "msd"
