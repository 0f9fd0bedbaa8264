import hashlib
import io
import json
import shutil
import tarfile

import pytest

from regexplain.data import msd
from regexplain.errors import ChecksumError, DataError, UnsafeArchiveError


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _tar_dataset(src, path, extra=()):
    """A tar like the real one: everything under Task04_Hippocampus/, plus ``extra`` TarInfo members."""
    with tarfile.open(path, "w") as tar:
        tar.add(src, arcname="Task04_Hippocampus")
        for info, data in extra:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(name, data=b"x", kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data if kind == tarfile.REGTYPE else None


@pytest.fixture
def archive(hippo_root, tmp_path):
    return _tar_dataset(hippo_root, tmp_path / "src.tar")


def test_download_checks_md5_extracts_and_loads(archive, tmp_path, monkeypatch):
    root = tmp_path / "data" / "hippocampus"
    out = msd.download(root, url=archive.as_uri(), md5=_md5(archive), progress=False)
    assert out == root and (root / "dataset.json").is_file()
    assert len(msd.load(root, progress=False)) == 12
    assert sorted(p.name for p in root.parent.iterdir()) == ["Task04_Hippocampus.tar", "hippocampus"]
    # a second call finds the dataset and touches nothing (no fetch, no extraction)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in root.rglob("*"))

    def no_network(*a, **k):
        raise AssertionError("fetched again")

    monkeypatch.setattr(msd, "fetch", no_network)
    msd.download(root, url=archive.as_uri(), md5=_md5(archive), progress=False)
    assert sorted((p.name, p.stat().st_mtime_ns) for p in root.rglob("*")) == before


def test_tampered_archive_is_rejected_and_removed(archive, tmp_path):
    good_md5 = _md5(archive)
    with open(archive, "ab") as f:
        f.write(b"tampered")
    root = tmp_path / "data" / "hippocampus"
    with pytest.raises(ChecksumError, match="Task04_Hippocampus.tar"):
        msd.download(root, url=archive.as_uri(), md5=good_md5, progress=False)
    assert not (tmp_path / "data").exists() or list((tmp_path / "data").iterdir()) == []


@pytest.mark.parametrize("member", [
    _member("../evil.txt"),
    _member("Task04_Hippocampus/../../evil.txt"),
    _member("/tmp/regexplain_abs_evil.txt"),
    _member("Task04_Hippocampus/link", kind=tarfile.SYMTYPE, link="../../evil.txt"),
    _member("Task04_Hippocampus/abslink", kind=tarfile.SYMTYPE, link="/etc/passwd"),
    _member("Task04_Hippocampus/hard", kind=tarfile.LNKTYPE, link="../outside"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out"])
def test_members_escaping_the_root_are_refused(hippo_root, tmp_path, member):
    archive = _tar_dataset(hippo_root, tmp_path / "bad.tar", [member])
    root = tmp_path / "data" / "hippocampus"
    with pytest.raises(UnsafeArchiveError, match=r"Task04_Hippocampus\.tar: member "):
        msd.download(root, url=archive.as_uri(), md5=_md5(archive), progress=False)
    assert not root.exists() and not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "data").iterdir()) == []  # the unusable archive this call fetched went too
    with pytest.raises(UnsafeArchiveError, match="bad.tar"):
        msd.safe_extract(archive, tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE, tarfile.CHRTYPE])
def test_safe_extract_refuses_every_link_and_special_member(tmp_path, kind):
    # the MSD archive holds none; a link that stays inside is refused too (resolving links is the bug)
    archive = tmp_path / "ok.tar"
    with tarfile.open(archive, "w") as tar:
        for info, data in [_member("d/a.txt", b"hello"), _member("d/l", kind=kind, link="d/a.txt")]:
            tar.addfile(info, io.BytesIO(data) if data else None)
    with pytest.raises(UnsafeArchiveError, match=r"ok.tar: member 'd/l' is a"):
        msd.safe_extract(archive, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_not_a_tar(tmp_path):
    p = tmp_path / "junk.tar"
    p.write_bytes(b"\x00junk" * 10)
    with pytest.raises(DataError, match="junk.tar"):
        msd.safe_extract(p, tmp_path / "x")


def test_paper_split_200_60_from_260_subjects():
    ids = [f"hippocampus_{i:03d}" for i in range(260)]
    s = msd.make_split(ids, 200, 60, seed=0)
    assert len(s["train"]) == 200 and len(s["val"]) == 60 and sorted(s["train"] + s["val"]) == ids
    with pytest.raises(DataError, match="261"):
        msd.make_split(ids, 200, 61, seed=0)


def test_split_file_written_and_reused(tmp_path):
    ids = [f"s{i}" for i in range(10)]
    a = msd.split_file(tmp_path, ids, 6, 4, seed=2)
    on_disk = json.loads((tmp_path / "split.json").read_text())
    assert on_disk["train"] == a["train"] and on_disk["seed"] == 2
    assert msd.split_file(tmp_path, ids, 6, 4, seed=2) == a


def test_dataset_dir_inside_a_wrapper_folder(hippo_root, tmp_path):
    shutil.copytree(hippo_root, tmp_path / "wrap" / "Task04_Hippocampus")
    assert msd.find_dataset_dir(tmp_path / "wrap") == tmp_path / "wrap" / "Task04_Hippocampus"
