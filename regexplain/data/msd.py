"""Medical Segmentation Decathlon Task04 Hippocampus: download, checksum, safe extraction, loading.

The archive is the one MONAI's ``DecathlonDataset`` uses. ``download(root)`` leaves the dataset's
``dataset.json``, ``imagesTr/`` and ``labelsTr/`` directly in ``root`` (the layout
:func:`regexplain.data.synthetic.synthesize_hippocampus` writes too). Labels: 0 background,
1 anterior (head), 2 posterior (body).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import urllib.request
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm.auto import tqdm

from regexplain.data.datasets import DATASETS
from regexplain.data.nifti import Volume, read_volume
from regexplain.errors import ChecksumError, DataError, UnsafeArchiveError
from regexplain.io import atomic_dir, check_writable, write_json

URL = "https://msd-for-monai.s3-us-west-2.amazonaws.com/Task04_Hippocampus.tar"
MD5 = "9d24dba78a72977dbd1d2e110310f31b"
ARCHIVE_NAME = "Task04_Hippocampus.tar"
LABELS = tuple(range(DATASETS["hippocampus"].num_labels))
CHUNK = 1 << 20


# --------------------------------------------------------------------------- download

def md5sum(path: str | Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: str | Path, md5: str, *, progress: bool = True) -> Path:
    """Download ``url`` to ``dest`` through a temp file renamed only once its MD5 matches.

    Raises :class:`ChecksumError` naming the file (and leaves nothing behind) on a mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part")
    h = hashlib.md5()
    try:
        with urllib.request.urlopen(url) as r, open(tmp, "wb") as f:
            total = int(r.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, disable=not progress) as bar:
                for block in iter(lambda: r.read(CHUNK), b""):
                    f.write(block)
                    h.update(block)
                    bar.update(len(block))
        if h.hexdigest() != md5:
            raise ChecksumError(f"{dest}: MD5 {h.hexdigest()} of the download from {url} does not match "
                                f"the expected {md5}; the file was discarded")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _check_member(m: tarfile.TarInfo, archive: Path) -> None:
    """Accept only regular files and folders whose names stay inside the extraction root.

    Links are refused outright, not resolved: the MSD archive holds none, and a chain of symlinks whose
    resolved path runs past PATH_MAX escapes even Python's own ``filter="data"`` (CVE-2025-4517).
    """
    name = PurePosixPath(m.name)
    if name.is_absolute() or m.name.startswith(("/", "\\")) or ".." in name.parts:
        raise UnsafeArchiveError(f"{archive}: member {m.name!r} would be written outside the target folder")
    if m.issym() or m.islnk():
        raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a link (-> {m.linkname!r}); links are "
                                 "refused")
    if not (m.isfile() or m.isdir()):
        raise UnsafeArchiveError(f"{archive}: member {m.name!r} is a device, fifo or other special file")


def _check_resolved(tmp: Path, m: tarfile.TarInfo, archive: Path) -> None:
    # Belt and braces after extraction: every member must resolve inside the temp root.
    where = os.path.realpath(tmp / m.name)
    if os.path.commonpath([where, os.path.realpath(tmp)]) != os.path.realpath(tmp):
        raise UnsafeArchiveError(f"{archive}: member {m.name!r} resolves to {where}, outside the target folder")


def safe_extract(archive: str | Path, dest: str | Path) -> Path:
    """Extract a tar archive into ``dest`` (atomically), refusing absolute paths, ``..`` members, every
    link and every special member; tarfile's ``data`` filter is applied as well where available, and
    each member's resolved path is checked to lie inside the root."""
    archive, dest = Path(archive), Path(dest)
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, archive)
            with atomic_dir(dest, overwrite=True) as tmp:
                if hasattr(tarfile, "data_filter"):
                    try:
                        tar.extractall(tmp, members=members, filter="data")
                    except tarfile.FilterError as e:
                        raise UnsafeArchiveError(f"{archive}: {e}") from e
                else:
                    tar.extractall(tmp, members=members)  # noqa: S202 (members checked above)
                for m in members:
                    _check_resolved(tmp, m, archive)
    except tarfile.TarError as e:
        raise DataError(f"{archive}: not a readable tar archive ({e})") from e
    return dest


def download(root: str | Path, *, url: str | None = None, md5: str | None = None, progress: bool = True
             ) -> Path:
    """Download and extract Task04 Hippocampus so that ``root/dataset.json`` exists. Returns ``root``.

    ``root`` must be absent or an empty folder: nothing a user put there is ever deleted or replaced. A
    ``root`` that already holds a ``dataset.json`` is returned untouched.
    The archive is kept beside ``root`` (``<root>/../Task04_Hippocampus.tar``) and not fetched again when
    its checksum matches; an archive this call fetched is removed again when it cannot be extracted.
    ``url`` / ``md5`` default to :data:`URL` / :data:`MD5` (read at call time).
    """
    root = Path(root)
    url, md5 = url or URL, md5 or MD5
    if (root / "dataset.json").is_file():
        return root  # already downloaded (or a dataset of the user's own): left exactly as it is
    if root.exists() and not (root.is_dir() and not any(root.iterdir())):
        what = "a file" if not root.is_dir() else "a folder that is not empty"
        raise DataError(f"{root}: is {what}; download into a new or empty folder (nothing there is replaced)")
    check_writable(root)
    archive = root.parent / ARCHIVE_NAME
    fetched = False
    if not (archive.is_file() and md5sum(archive) == md5):
        fetch(url, archive, md5, progress=progress)
        fetched = True
    staging = root.parent / f".{root.name}.extract"
    try:
        safe_extract(archive, staging)
        try:
            inner = find_dataset_dir(staging)
        except DataError as e:
            raise DataError(f"{archive}: holds no dataset.json (not the MSD layout)") from e
        with atomic_dir(root, overwrite=True) as tmp:  # overwrite: only an empty folder can be there
            for item in inner.iterdir():
                shutil.move(str(item), tmp / item.name)
    except BaseException:
        if fetched:
            archive.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


# --------------------------------------------------------------------------- loading

def find_dataset_dir(root: str | Path) -> Path:
    """``root`` itself when it holds ``dataset.json``, else its only sub-folder that does."""
    root = Path(root)
    if (root / "dataset.json").is_file():
        return root
    found = [p.parent for p in sorted(root.glob("*/dataset.json"))]
    if len(found) == 1:
        return found[0]
    raise DataError(f"{root}: no dataset.json found (expected the MSD layout)")


def read_dataset_json(root: str | Path) -> dict:
    path = Path(root) / "dataset.json"
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise DataError(f"{path}: file not found") from e
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    entries = meta.get("training") if isinstance(meta, dict) else None
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: needs a non-empty 'training' list of {{image, label}} entries")
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or not {"image", "label"} <= set(e):
            raise DataError(f"{path}: training entry {i} must have 'image' and 'label' keys")
        for key in ("image", "label"):
            if not isinstance(e[key], str) or not e[key].strip():
                raise DataError(f"{path}: training entry {i}: '{key}' must be a relative file path, got "
                                f"{e[key]!r}")
    return meta


def subject_id(image_path: str) -> str:
    name = PurePosixPath(image_path).name
    for suffix in (".nii.gz", ".nii"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_subjects(root: str | Path) -> list[tuple[str, Path, Path]]:
    """``(id, image path, label path)`` for every training entry; DataError if a listed file is missing."""
    root = find_dataset_dir(root)
    out = []
    for e in read_dataset_json(root)["training"]:
        img, lab = root / e["image"], root / e["label"]
        for p in (img, lab):
            if not p.is_file():
                raise DataError(f"{p}: listed in {root / 'dataset.json'} but missing")
        out.append((subject_id(e["image"]), img, lab))
    ids = [s[0] for s in out]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise DataError(f"{root / 'dataset.json'}: subject {', '.join(twice[:5])} listed more than once in "
                        "'training' (each volume once: a duplicate would pair a subject with itself)")
    return out


def load(root: str | Path, *, progress: bool = True) -> list[Volume]:
    """Read every training subject (image, label, affine, spacing, id), checking each file."""
    subjects = list_subjects(root)
    return [read_volume(i, img, lab, allowed_labels=LABELS)
            for i, img, lab in tqdm(subjects, desc="reading", unit="subj", disable=not progress)]


# --------------------------------------------------------------------------- split

def make_split(ids: Sequence[str], n_train: int, n_val: int, seed: int) -> dict[str, list[str]]:
    """Deterministic split of ``ids`` (order-independent): a seeded permutation of the sorted ids."""
    ids = sorted(ids)
    if n_train + n_val > len(ids):
        raise DataError(f"split needs n_train + n_val = {n_train + n_val} subjects, only {len(ids)} found")
    perm = np.random.default_rng(seed).permutation(len(ids))
    chosen = [ids[i] for i in perm]
    return {"train": sorted(chosen[:n_train]), "val": sorted(chosen[n_train:n_train + n_val])}


def read_split(path: str | Path) -> dict | None:
    """``split.json`` as written by :func:`split_file` (``None`` when absent); DataError naming the file
    when it is not a JSON object whose ``train`` and ``val`` are lists of ids."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        split = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(split, dict) or not all(
            isinstance(split.get(k), list) and all(isinstance(i, str) for i in split[k]) for k in ("train", "val")):
        raise DataError(f"{path}: must be an object whose 'train' and 'val' are lists of subject ids, got "
                        f"{json.dumps(split)[:80]}")
    return split


def split_file(root: str | Path, ids: Sequence[str], n_train: int, n_val: int, seed: int,
               info: dict | None = None) -> dict[str, list[str]]:
    """Read ``root/split.json`` when it matches the request, else make the split and write it (with
    ``info``, e.g. how the sizes were chosen)."""
    path = Path(root) / "split.json"
    want = make_split(ids, n_train, n_val, seed)
    old = read_split(path)
    if old is not None and old["train"] == want["train"] and old["val"] == want["val"]:
        return want
    try:
        write_json(path, {"seed": seed, "n_train": n_train, "n_val": n_val, **(info or {}), **want})
    except OSError as e:  # a read-only dataset still trains: the split is a seeded function of the ids
        print(f"regexplain: {path}: not written ({e.strerror}); the split is re-made from the seed each time",
              file=sys.stderr)
    return want
