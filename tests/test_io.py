"""Atomic writes: complete or absent, with the usual permissions."""

import os
import stat

import pytest

from regexplain.errors import DiskFullError, OutputError
from regexplain.io import (
    FAULT_ENV,
    atomic_dir,
    atomic_files,
    atomic_path,
    check_writable,
    save_torch,
    write_bytes,
    write_json,
)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_respects_umask(tmp_path):
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as d:
            (d / "f").write_text("1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    target = tmp_path / "d"
    with atomic_dir(target) as d:
        (d / "f").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target, overwrite=True) as d:
        (d / "f").write_text("2")
        raise RuntimeError("boom")
    assert (target / "f").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_write_bytes_creates_parents_and_round_trips(tmp_path):
    target = tmp_path / "sub" / "x.png"
    write_bytes(target, b"\x89PNG")
    assert target.read_bytes() == b"\x89PNG"
    assert [p.name for p in target.parent.iterdir()] == ["x.png"]


# ------------------------------------------------------------------------ a full disk, a read-only folder

def _fault(monkeypatch, code: str, where, tail: str = "") -> None:
    import glob

    monkeypatch.setenv(FAULT_ENV, f"{code}:{glob.escape(str(where))}{tail}")


@pytest.mark.parametrize("n", [10, 100_000])
def test_save_torch_on_a_full_disk_names_the_file_and_leaves_no_temp(tmp_path, monkeypatch, n):
    """The bytes go to /dev/full (the kernel's own ENOSPC): torch.save's error becomes one naming the file."""
    import torch

    _fault(monkeypatch, "ENOSPC", tmp_path / "ck.pt")
    with pytest.raises(DiskFullError) as e:
        save_torch({"w": torch.zeros(n)}, tmp_path / "ck.pt")
    assert str(e.value).startswith(f"{tmp_path / 'ck.pt'}: not written: the disk is full (no space left on device)")
    assert list(tmp_path.iterdir()) == []


def test_save_torch_keeps_the_write_error_torch_turns_into_unexpected_pos(tmp_path, monkeypatch):
    """torch's zip writer can report a failed write as `RuntimeError: ... unexpected pos` (seen on a tmpfs
    that filled up at the archive's last record): the OSError behind it is what is raised. torch.save is
    replaced by what its writer did there: a write into the file fails, the writer goes on, then complains."""
    import torch

    def torch_save_on_a_full_disk(obj, f):
        try:
            f.write(b"PK" * 8192)      # past the file's buffer: written at once, and the disk is full
        except OSError:
            pass                       # as torch's C++ writer does: it only notices the position later
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 20 vs 0")

    monkeypatch.setattr(torch, "save", torch_save_on_a_full_disk)
    _fault(monkeypatch, "ENOSPC", tmp_path / "ck.pt")
    with pytest.raises(DiskFullError, match="ck.pt: not written: the disk is full") as e:
        save_torch({"w": 1}, tmp_path / "ck.pt")
    chain, x = [], e.value
    while x is not None:
        chain.append(x)
        x = x.__cause__ or x.__context__
    assert any("unexpected pos" in str(x) for x in chain)   # kept in the chain, for a traceback reader
    assert list(tmp_path.iterdir()) == []


def test_atomic_files_writes_all_or_none(tmp_path, monkeypatch):
    out = tmp_path / "reg"
    out.mkdir()
    (out / "old.txt").write_text("kept")
    _fault(monkeypatch, "ENOSPC", out, "/*b.txt")   # the second file does not fit
    with pytest.raises(DiskFullError, match=rf"^{out / 'b.txt'}: not written"):
        with atomic_files(out) as stage:
            write_bytes(stage / "a.txt", b"a")
            write_bytes(stage / "b.txt", b"b")
    assert sorted(p.name for p in out.iterdir()) == ["old.txt"]      # no a.txt, no staging folder
    monkeypatch.delenv(FAULT_ENV)
    with atomic_files(out) as stage:
        write_bytes(stage / "a.txt", b"a")
        write_bytes(stage / "old.txt", b"new")
    assert {p.name: p.read_text() for p in out.iterdir()} == {"a.txt": "a", "old.txt": "new"}
    _fault(monkeypatch, "ENOSPC", tmp_path, "/*a.txt")   # a new folder is filled beside it, then moved in
    with pytest.raises(DiskFullError, match=rf"^{tmp_path / 'new' / 'a.txt'}: not written"):
        with atomic_files(tmp_path / "new") as stage:
            write_bytes(stage / "a.txt", b"a")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["reg"]     # no folder made, no temp folder


@pytest.mark.parametrize("code", ["EROFS", "EACCES"])
def test_the_read_only_fault_refuses_files_folders_and_the_probe(tmp_path, monkeypatch, code):
    ro = tmp_path / "ro"
    ro.mkdir()
    _fault(monkeypatch, code, ro)
    with pytest.raises(OSError) as e:
        write_bytes(ro / "sub" / "x", b"x")
    assert e.value.errno == getattr(__import__("errno"), code) and e.value.filename == str(ro / "sub")
    with pytest.raises(OutputError, match=rf"^{ro / 'out'}: cannot write into {ro} \("):
        check_writable(ro / "out")
    with pytest.raises(OSError), atomic_dir(ro / "d"):
        pass
    check_writable(tmp_path / "elsewhere")          # outside the pattern: untouched
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["ro"]
