"""The preprocessing cache is keyed by the dataset's content, not its place: a copied folder reuses it, a
read-only folder holding a valid cache loads without writing anything, and an edited file is read again."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from regexplain.config import load_config
from regexplain.data import pairs


def _cfg(root: Path):
    return load_config("smoke", overrides={"data": {"root": str(root)}}).data


def _caches(root: Path) -> list[Path]:
    return sorted(root.glob(".cache_*.pt"))


def _no_preprocessing(monkeypatch) -> None:
    def fail(*a, **k):
        raise AssertionError("the cache was rebuilt")
    monkeypatch.setattr(pairs, "_preprocess_all", fail)


@pytest.fixture()
def cached(hippo_root, tmp_path) -> Path:
    """A dataset whose cache (and split.json) exist."""
    root = Path(shutil.copytree(hippo_root, tmp_path / "original"))
    pairs.load_splits(_cfg(root), progress=False)
    assert len(_caches(root)) == 1
    return root


def test_a_copy_made_without_keeping_times_reuses_the_cache(cached, tmp_path, monkeypatch):
    # cp -r keeps neither the modification times nor the absolute path
    copy = Path(shutil.copytree(cached, tmp_path / "elsewhere" / "copy", copy_function=shutil.copyfile))
    want, _ = pairs.load_all(_cfg(cached), progress=False)
    _no_preprocessing(monkeypatch)
    got, _ = pairs.load_all(_cfg(copy), progress=False)
    assert torch.equal(got.images, want.images) and got.ids == want.ids
    assert [p.name for p in _caches(copy)] == [p.name for p in _caches(cached)]


def _freeze(root: Path) -> dict[str, tuple[int, int]]:
    """Make ``root`` read-only; return every entry's (inode, mtime_ns)."""
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in [root, *root.rglob("*")]}


def _thaw(root: Path) -> None:
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_a_read_only_copy_with_its_cache_loads_and_is_never_written(cached, tmp_path, monkeypatch, capsys):
    copy = Path(shutil.copytree(cached, tmp_path / "ro", copy_function=shutil.copyfile))
    before = _freeze(copy)
    try:
        _no_preprocessing(monkeypatch)
        train, val = pairs.load_splits(_cfg(copy), progress=False)
        # as root chmod does not stop writes: the proof is that nothing was rewritten or replaced
        after = {str(p): (p.stat().st_ino, p.stat().st_mtime_ns) for p in [copy, *copy.rglob("*")]}
        assert after == before
    finally:
        _thaw(copy)
    assert len(train) == 8 and len(val) == 4
    err = capsys.readouterr().err
    assert "permission denied" not in err.lower() and "could not write" not in err


def test_an_edited_volume_is_read_again(cached, monkeypatch):
    from regexplain.data.nifti import read_nifti, write_nifti

    img = sorted((cached / "imagesTr").glob("*.nii.gz"))[0]
    array, affine = read_nifti(img)
    old_cache = _caches(cached)[0]
    write_nifti(img, (array * 2 + 1).astype(np.float32), affine)
    os.utime(img, ns=(old_cache.stat().st_mtime_ns, old_cache.stat().st_mtime_ns))  # the same time: content counts
    pairs.load_all(_cfg(cached), progress=False)
    assert [p.name for p in _caches(cached)] != [old_cache.name] and len(_caches(cached)) == 1
