"""Bad input through the real CLI: every case exits 2 with one message naming the file or option, prints
no traceback and leaves the output location as it was (absent, or byte-identical).

Each case is a ``setup(tmp, fx) -> Spec`` function: it builds the bad input in ``tmp`` (never touching the
shared fixtures ``fx``) and returns the argv, the paths that must not change and the words the message
must contain. Cases run in-process through :func:`regexplain.cli.main` (seconds each); the working
directory is ``tmp``, so a profile default such as ``data/smoke/...`` can never reach the repository.
"""

from __future__ import annotations

import fcntl
import glob
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from regexplain.data.nifti import write_nifti
from regexplain.io import FAULT_ENV

# --------------------------------------------------------------------------------------------- helpers


@dataclass
class Spec:
    argv: list[str]
    watch: list[Path]                      # must be unchanged (absent stays absent)
    names: list[str]                       # the message must contain one of these
    patch: dict[str, Any] = field(default_factory=dict)   # "module:attribute" -> value (e.g. a local URL)
    keep: list[Any] = field(default_factory=list)         # objects kept alive while the case runs (locks)
    forbid_stdout: str | None = None       # text stdout must not contain (e.g. a URL never served)


@dataclass
class Fx:
    data: Path          # 12 hippocampus phantoms, MSD layout (read-only: copy before changing)
    run: Path           # a smoke run trained 2 steps on ``data``
    dec: Path           # decomposition of ``run`` (K = 3)
    moving: Path        # a NIfTI pair for register
    fixed: Path


CASES: dict[str, Callable[[Path, Fx], Spec]] = {}


def case(fn: Callable[[Path, Fx], Spec]) -> Callable[[Path, Fx], Spec]:
    CASES[fn.__name__] = fn
    return fn


def snapshot(paths: list[Path]) -> dict[str, Any]:
    """Every file under ``paths`` with its hash (``None`` for an absent path). The preprocessing cache
    (``.cache_*.pt``, rebuilt when a file of the dataset changes) is derived, not data: left out."""
    out: dict[str, Any] = {}
    for p in paths:
        if p.is_symlink() or p.is_file():
            out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else "link"
        elif p.is_dir():
            out[str(p)] = "dir"
            for q in sorted(p.rglob("*")):
                if not q.name.startswith(".cache_"):
                    out[str(q)] = hashlib.sha1(q.read_bytes()).hexdigest() if q.is_file() else "dir"
        else:
            out[str(p)] = None
    return out


def copy_data(fx: Fx, t: Path, name: str = "data") -> Path:
    return Path(shutil.copytree(fx.data, t / name))


def copy_run(fx: Fx, t: Path) -> Path:
    return Path(shutil.copytree(fx.run, t / "run"))


def edit_dataset_json(root: Path, fn) -> None:
    meta = json.loads((root / "dataset.json").read_text())
    fn(meta)
    (root / "dataset.json").write_text(json.dumps(meta))


def nan_checkpoint(fx: Fx, t: Path) -> Path:
    state = torch.load(fx.run / "checkpoint.pt", weights_only=True)
    key = next(k for k, v in state["model"].items() if v.is_floating_point())
    state["model"][key] = torch.full_like(state["model"][key], float("nan"))
    path = t / "nan.pt"
    torch.save(state, path)
    return path


#: How ``read_only_dir`` makes its folder read-only: "os" (mode 0555; as root, whom modes do not stop, the
#: immutable attribute), falling back to "fault" where ``chattr`` fails (a container's root): the write
#: fault of regexplain/io.py (``REGEXPLAIN_TEST_WRITE_FAULT=EROFS:folder``). ``test_read_only_by_the_write_fault``
#: runs those cases with "fault" everywhere, so both ways are checked wherever chattr works.
READ_ONLY_BY = "os"


def read_only_dir(t: Path) -> Path:
    """A folder nobody may write into, root included."""
    d = t / "readonly"
    d.mkdir()
    d.chmod(0o555)
    if READ_ONLY_BY == "fault" or (os.access(d, os.W_OK) and os.geteuid() == 0 and subprocess.run(
            ["chattr", "+i", str(d)], capture_output=True).returncode != 0):
        os.environ[FAULT_ENV] = f"EROFS:{glob.escape(str(d))}"
    return d


def release_read_only(t: Path) -> None:
    os.environ.pop(FAULT_ENV, None)
    d = t / "readonly"
    if d.exists():
        subprocess.run(["chattr", "-i", str(d)], capture_output=True)
        d.chmod(0o755)


def hold_lock(run: Path):
    """What a running ``train`` holds on its run folder."""
    run.mkdir(parents=True, exist_ok=True)
    fh = open(run / ".regexplain.lock", "a+")
    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fh


def smoke_train(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--profile", "smoke", "--data", str(data), "--out", str(out), "--no-progress",
            "--device", "cpu", *extra]


# ------------------------------------------------------------------------------------ tar archives

def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info, (data if kind == tarfile.REGTYPE else None)


def msd_members(fx: Fx) -> list[tuple]:
    """A small valid Task04-like archive built from the phantoms (directories, dataset.json, volumes)."""
    out = [member("Task04_Hippocampus", tarfile.DIRTYPE)]
    for sub in ("imagesTr", "labelsTr"):
        out.append(member(f"Task04_Hippocampus/{sub}", tarfile.DIRTYPE))
        for p in sorted((fx.data / sub).glob("*.nii.gz")):
            out.append(member(f"Task04_Hippocampus/{sub}/{p.name}", data=p.read_bytes()))
    out.append(member("Task04_Hippocampus/dataset.json", data=(fx.data / "dataset.json").read_bytes()))
    return out


def pathmax_chain() -> list[tuple]:
    """Symlinks whose lexical path stays inside but whose resolved path runs past PATH_MAX: the
    CVE-2025-4517 pattern that Python's own ``filter="data"`` (before 3.11.13 / 3.12.11) lets through."""
    comp, steps, path, out = "d" * 247, "abcdefghijklmnop", "", []
    for s in steps:
        out.append(member(os.path.join(path, comp), tarfile.DIRTYPE))
        out.append(member(os.path.join(path, s), tarfile.SYMTYPE, link=comp))
        path = os.path.join(path, comp)
    linkpath = os.path.join(*steps)
    out.append(member(linkpath + "/l", tarfile.SYMTYPE, link="../" * len(steps)))
    out.append(member("escape", tarfile.SYMTYPE, link=linkpath + "/l/../../../outside"))
    out.append(member("escape/pwned.txt", data=b"written outside the target folder\n"))
    return out


def download_spec(t: Path, archive: bytes, root: Path, *, md5: str | None = None, extra=()) -> Spec:
    src = t / "served" / "Task04_Hippocampus.tar"
    src.parent.mkdir()
    src.write_bytes(archive)
    return Spec(["data", "download", "hippocampus", "--root", str(root), *extra],
                [root, root.parent / "Task04_Hippocampus.tar", t / "outside"],
                [str(root.parent / "Task04_Hippocampus.tar"), str(root)],
                patch={"regexplain.data.msd:URL": src.as_uri(),
                       "regexplain.data.msd:MD5": md5 or hashlib.md5(archive).hexdigest()})


# ============================================================================================= cases
# ------------------------------------------------------------------------------------- data synth

@case
def synth_n_zero(t, fx):
    return Spec(["data", "synth", "hippocampus", "--out", str(t / "ds"), "--n", "0"], [t / "ds"], ["--n"])


@case
def synth_n_negative(t, fx):
    return Spec(["data", "synth", "hippocampus", "--out", str(t / "ds"), "--n", "-3"], [t / "ds"], ["--n"])


@case
def synth_lung_n_one(t, fx):
    return Spec(["data", "synth", "lung", "--out", str(t / "ds"), "--n", "1"], [t / "ds"], ["--n"])


@case
def synth_shape_zero(t, fx):
    return Spec(["data", "synth", "hippocampus", "--out", str(t / "ds"), "--n", "2", "--shape", "0", "16",
                 "16"], [t / "ds"], ["--shape"])


@case
def synth_shape_negative(t, fx):
    return Spec(["data", "synth", "hippocampus", "--out", str(t / "ds"), "--n", "2", "--shape", "16", "-16",
                 "16"], [t / "ds"], ["--shape"])


@case
def synth_out_holds_user_files(t, fx):
    (t / "ds").mkdir()
    (t / "ds" / "notes.txt").write_text("mine")
    return Spec(["data", "synth", "hippocampus", "--out", str(t / "ds"), "--n", "2"], [t / "ds"],
                [str(t / "ds")])


@case
def synth_out_is_a_file(t, fx):
    (t / "ds").write_text("mine")
    return Spec(["data", "synth", "hippocampus", "--out", str(t / "ds"), "--n", "2"], [t / "ds"],
                [str(t / "ds")])


@case
def synth_out_read_only(t, fx):
    ro = read_only_dir(t)
    return Spec(["data", "synth", "hippocampus", "--out", str(ro / "ds"), "--n", "2", "--shape", "16", "16",
                 "16"], [ro], [str(ro)])


# -------------------------------------------------------------------------------------- data info

@case
def info_missing_folder(t, fx):
    return Spec(["data", "info", str(t / "nowhere")], [t / "nowhere"], [str(t / "nowhere")])


@case
def info_empty_folder(t, fx):
    (t / "empty").mkdir()
    return Spec(["data", "info", str(t / "empty")], [t / "empty"], [str(t / "empty")])


@case
def info_on_a_file(t, fx):
    (t / "f.txt").write_text("x")
    return Spec(["data", "info", str(t / "f.txt")], [t / "f.txt"], [str(t / "f.txt")])


@case
def info_dataset_json_broken(t, fx):
    d = copy_data(fx, t)
    (d / "dataset.json").write_text('{"training": [')
    return Spec(["data", "info", str(d)], [d], ["dataset.json"])


@case
def info_dataset_json_list(t, fx):
    d = copy_data(fx, t)
    (d / "dataset.json").write_text("[]")
    return Spec(["data", "info", str(d)], [d], ["dataset.json"])


@case
def info_null_image_path(t, fx):
    d = copy_data(fx, t)
    edit_dataset_json(d, lambda m: m["training"][0].update(image=None))
    return Spec(["data", "info", str(d)], [d], ["dataset.json"])


@case
def info_null_label_path(t, fx):
    d = copy_data(fx, t)
    edit_dataset_json(d, lambda m: m["training"][1].update(label=None))
    return Spec(["data", "info", str(d)], [d], ["dataset.json"])


@case
def info_numeric_image_path(t, fx):
    d = copy_data(fx, t)
    edit_dataset_json(d, lambda m: m["training"][0].update(image=7))
    return Spec(["data", "info", str(d)], [d], ["dataset.json"])


@case
def info_listed_file_missing(t, fx):
    d = copy_data(fx, t)
    victim = sorted((d / "imagesTr").glob("*.nii.gz"))[0]
    victim.unlink()
    return Spec(["data", "info", str(d)], [d], [victim.name])


@case
def info_split_json_list(t, fx):
    d = copy_data(fx, t)
    (d / "split.json").write_text('["hippocampus_000"]')
    return Spec(["data", "info", str(d)], [d], ["split.json"])


@case
def info_split_json_broken(t, fx):
    d = copy_data(fx, t)
    (d / "split.json").write_text('{"train": [')
    return Spec(["data", "info", str(d)], [d], ["split.json"])


@case
def info_split_json_wrong_types(t, fx):
    d = copy_data(fx, t)
    (d / "split.json").write_text('{"train": 5, "val": "x"}')
    return Spec(["data", "info", str(d)], [d], ["split.json"])


# ---------------------------------------------------------------------------------- data download

@case
def download_root_holds_user_files(t, fx):
    root = t / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("two years of work")
    return download_spec(t, tar_bytes(msd_members(fx)), root)


@case
def download_root_is_a_file(t, fx):
    (t / "mine").write_text("two years of work")
    return download_spec(t, tar_bytes(msd_members(fx)), t / "mine")


@case
def download_checksum_mismatch(t, fx):
    return download_spec(t, tar_bytes(msd_members(fx)), t / "ds", md5="0" * 32)


@case
def download_not_a_tar(t, fx):
    return download_spec(t, b"<html>503 Service Unavailable</html>" * 20, t / "ds")


@case
def download_archive_without_dataset_json(t, fx):
    return download_spec(t, tar_bytes([member("readme.txt", data=b"hello")]), t / "ds")


@case
def download_symlink_member(t, fx):
    links = [member("Task04_Hippocampus/link.nii.gz", tarfile.SYMTYPE, link="imagesTr/x.nii.gz")]
    return download_spec(t, tar_bytes(msd_members(fx) + links), t / "ds")


@case
def download_hardlink_member(t, fx):
    links = [member("Task04_Hippocampus/hard.json", tarfile.LNKTYPE, link="Task04_Hippocampus/dataset.json")]
    return download_spec(t, tar_bytes(msd_members(fx) + links), t / "ds")


@case
def download_fifo_member(t, fx):
    return download_spec(t, tar_bytes(msd_members(fx) + [member("Task04_Hippocampus/pipe",
                                                                 tarfile.FIFOTYPE)]), t / "ds")


@case
def download_device_member(t, fx):
    return download_spec(t, tar_bytes(msd_members(fx) + [member("Task04_Hippocampus/null",
                                                                 tarfile.CHRTYPE)]), t / "ds")


@case
def download_dotdot_member(t, fx):
    return download_spec(t, tar_bytes(msd_members(fx) + [member("../outside/evil.txt", data=b"x")]), t / "ds")


@case
def download_absolute_member(t, fx):
    return download_spec(t, tar_bytes(msd_members(fx) + [member(str(t / "outside" / "evil.txt"),
                                                                 data=b"x")]), t / "ds")


@case
def download_symlink_chain_past_path_max(t, fx):
    return download_spec(t, tar_bytes(msd_members(fx) + pathmax_chain()), t / "ds")


@case
def download_root_read_only(t, fx):
    ro = read_only_dir(t)
    return download_spec(t, tar_bytes(msd_members(fx)), ro / "ds")


# ------------------------------------------------------------------------------------------- train

def _profile(t: Path, text: str) -> Path:
    p = t / "profile.yaml"
    p.write_text(text)
    return p


@case
def train_profile_is_a_list(t, fx):
    p = _profile(t, "- train\n- steps\n")
    return Spec(smoke_train(fx.data, t / "run") + ["--profile", str(p)], [t / "run"], [str(p)])


@case
def train_profile_is_a_scalar(t, fx):
    p = _profile(t, "42\n")
    return Spec(smoke_train(fx.data, t / "run") + ["--profile", str(p)], [t / "run"], [str(p)])


@case
def train_profile_section_is_a_list(t, fx):
    p = _profile(t, "common: [1, 2]\n")
    return Spec(smoke_train(fx.data, t / "run") + ["--profile", str(p)], [t / "run"], [str(p)])


@case
def train_profile_missing(t, fx):
    p = t / "nope.yaml"
    return Spec(smoke_train(fx.data, t / "run") + ["--profile", str(p)], [t / "run"], [str(p)])


@case
def train_profile_not_yaml(t, fx):
    p = _profile(t, "common: {train: [\n")
    return Spec(smoke_train(fx.data, t / "run") + ["--profile", str(p)], [t / "run"], [str(p)])


@case
def train_profile_unknown_key(t, fx):
    p = _profile(t, "common:\n  train:\n    stepz: 3\n")
    return Spec(smoke_train(fx.data, t / "run") + ["--profile", str(p)], [t / "run"], ["stepz"])


@case
def train_profile_batch_size_zero(t, fx):
    p = _profile(t, "common:\n  data: {n_train: 8, n_val: 4, n_subjects: 12, shape: [16, 16, 16]}\n"
                    "  model: {channels: [4, 8, 8]}\n  train: {batch_size: 0}\n")
    return Spec(smoke_train(fx.data, t / "run") + ["--profile", str(p)], [t / "run"], ["batch_size"])


@case
def train_device_bogus(t, fx):
    return Spec(smoke_train(fx.data, t / "run")[:-2] + ["--device", "bogus"], [t / "run"], ["--device"])


@case
def train_device_cuda_index_missing(t, fx):
    return Spec(smoke_train(fx.data, t / "run")[:-2] + ["--device", "cuda:7"], [t / "run"], ["--device"])


@case
def train_device_cuda_without_gpu(t, fx):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    return Spec(smoke_train(fx.data, t / "run")[:-2] + ["--device", "cuda"], [t / "run"], ["--device"])


@case
def train_steps_zero(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--steps", "0"), [t / "run"], ["--steps", "steps"])


@case
def train_steps_negative(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--steps", "-5"), [t / "run"], ["--steps", "steps"])


@case
def train_max_minutes_negative(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--max-minutes", "-1"), [t / "run"],
                ["--max-minutes", "max_minutes"])


@case
def train_max_minutes_inf(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--max-minutes", "inf"), [t / "run"], ["--max-minutes"])


@case
def train_max_minutes_nan(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--max-minutes", "nan"), [t / "run"], ["--max-minutes"])


@case
def train_out_is_a_file(t, fx):
    (t / "run").write_text("mine")
    return Spec(smoke_train(fx.data, t / "run"), [t / "run"], [str(t / "run")])


@case
def train_out_read_only(t, fx):
    ro = read_only_dir(t)
    return Spec(smoke_train(fx.data, ro / "run"), [ro], [str(ro)])


@case
def train_out_holds_users_run_files(t, fx):
    out = t / "mine"
    out.mkdir()
    (out / "log.jsonl").write_text('{"my": "own log"}\n')
    (out / "config.yaml").write_text("mine: true\n")
    (out / "metrics.json").write_text('{"mine": 1}\n')
    return Spec(smoke_train(fx.data, out), [out], [str(out)])


@case
def train_out_holds_other_files(t, fx):
    out = t / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    return Spec(smoke_train(fx.data, out), [out], [str(out)])


@case
def train_data_dataset_json_broken(t, fx):
    d = copy_data(fx, t)
    (d / "dataset.json").write_text("{")
    return Spec(smoke_train(d, t / "run"), [t / "run", d], ["dataset.json"])


@case
def train_data_label_out_of_range(t, fx):
    import nibabel as nib

    d = copy_data(fx, t)
    for p in (d.glob(".cache_*")):
        p.unlink()
    lab = sorted((d / "labelsTr").glob("*.nii.gz"))[3]
    img = nib.load(lab)
    arr = np.asarray(img.dataobj).copy()
    arr[0, 0, 0] = 7
    write_nifti(lab, arr.astype(np.uint8), img.affine)
    return Spec(smoke_train(d, t / "run"), [t / "run", d], [lab.name])


@case
def train_data_null_path(t, fx):
    d = copy_data(fx, t)
    edit_dataset_json(d, lambda m: m["training"][2].update(image=None))
    return Spec(smoke_train(d, t / "run"), [t / "run", d], ["dataset.json"])


@case
def train_data_split_json_list(t, fx):
    d = copy_data(fx, t)
    (d / "split.json").write_text('["hippocampus_000"]')
    return Spec(smoke_train(d, t / "run"), [t / "run", d], ["split.json"])


@case
def train_data_split_json_broken(t, fx):
    d = copy_data(fx, t)
    (d / "split.json").write_text("{")
    return Spec(smoke_train(d, t / "run"), [t / "run", d], ["split.json"])


@case
def train_resume_without_checkpoint(t, fx):
    (t / "run").mkdir()
    return Spec(smoke_train(fx.data, t / "run", "--resume"), [t / "run"], [str(t / "run")])


@case
def train_resume_missing_folder(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--resume"), [t / "run"], [str(t / "run")])


@case
def train_resume_corrupt_checkpoint(t, fx):
    run = copy_run(fx, t)
    (run / "checkpoint.pt").write_bytes(b"\x00" * 100)
    return Spec(smoke_train(fx.data, run, "--resume"), [run], ["checkpoint.pt"])


@case
def train_resume_other_profile(t, fx):
    run = copy_run(fx, t)
    argv = smoke_train(fx.data, run, "--resume")
    argv[argv.index("smoke")] = "quick"
    return Spec(argv, [run], ["--profile"])


@case
def train_resume_adds_skip_connections(t, fx):
    run = copy_run(fx, t)
    return Spec(smoke_train(fx.data, run, "--resume", "--skip-connections"), [run], ["--skip-connections"])


@case
def train_resume_other_dataset(t, fx):
    run = copy_run(fx, t)
    return Spec(smoke_train(fx.data, run, "--resume", "--dataset", "lung"), [run], ["--dataset"])


@case
def train_resume_log_line_corrupt_midway(t, fx):
    run = copy_run(fx, t)
    lines = (run / "log.jsonl").read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    (run / "log.jsonl").write_text("\n".join(lines) + "\n")
    return Spec(smoke_train(fx.data, run, "--resume", "--steps", "3"), [run], ["log.jsonl"])


@case
def train_while_another_trains_there(t, fx):
    fh = hold_lock(t / "run")
    return Spec(smoke_train(fx.data, t / "run"), [t / "run"], [str(t / "run")], keep=[fh])


@case
def train_resume_while_another_trains_there(t, fx):
    run = copy_run(fx, t)
    fh = hold_lock(run)
    return Spec(smoke_train(fx.data, run, "--resume", "--steps", "3"), [run], [str(run)], keep=[fh])


@case
def train_data_missing_folder(t, fx):
    return Spec(smoke_train(t / "nowhere", t / "run"), [t / "run", t / "nowhere"], [str(t / "nowhere")])


@case
def train_data_empty_folder(t, fx):
    (t / "empty").mkdir()
    return Spec(smoke_train(t / "empty", t / "run"), [t / "run", t / "empty"], [str(t / "empty")])


@case
def train_split_sums_above_one(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--split", "0.8", "0.5"), [t / "run"], ["--split"])


@case
def train_split_fraction_of_one(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--split", "1", "0.2"), [t / "run"], ["--split"])


@case
def train_split_and_counts_together(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--split", "0.5", "0.5", "--n-train", "4"), [t / "run"],
                ["--split", "--n-train"])


@case
def train_counts_do_not_fit_the_folder(t, fx):
    return Spec(smoke_train(fx.data, t / "run", "--n-train", "40", "--n-val", "4"), [t / "run", fx.data],
                ["--n-train", "n_train", "subjects"])


@case
def train_resume_other_split(t, fx):
    run = copy_run(fx, t)
    return Spec(smoke_train(fx.data, run, "--resume", "--split", "0.5", "0.5"), [run], ["--split"])


# ---------------------------------------------------------------------------------------- evaluate

def _evaluate(fx: Fx, t: Path, *extra: str, model: Path | None = None) -> list[str]:
    return ["evaluate", "--model", str(model or fx.run), "--data", str(fx.data), "--out",
            str(t / "ev" / "eval.json"), "--device", "cpu", *extra]


@case
def evaluate_pairs_zero(t, fx):
    return Spec(_evaluate(fx, t, "--pairs", "0"), [t / "ev"], ["--pairs"])


@case
def evaluate_pairs_negative(t, fx):
    return Spec(_evaluate(fx, t, "--pairs", "-3"), [t / "ev"], ["--pairs"])


@case
def evaluate_model_missing(t, fx):
    return Spec(_evaluate(fx, t, model=t / "nope.pt"), [t / "ev"], [str(t / "nope.pt")])


@case
def evaluate_model_garbage(t, fx):
    (t / "bad.pt").write_bytes(b"not a checkpoint")
    return Spec(_evaluate(fx, t, model=t / "bad.pt"), [t / "ev"], [str(t / "bad.pt")])


@case
def evaluate_model_not_regexplain(t, fx):
    torch.save({"weights": torch.zeros(3)}, t / "other.pt")
    return Spec(_evaluate(fx, t, model=t / "other.pt"), [t / "ev"], [str(t / "other.pt")])


@case
def evaluate_model_nan_weights(t, fx):
    p = nan_checkpoint(fx, t)
    return Spec(_evaluate(fx, t, model=p), [t / "ev"], [str(p)])


@case
def evaluate_out_read_only(t, fx):
    ro = read_only_dir(t)
    argv = _evaluate(fx, t)
    argv[argv.index("--out") + 1] = str(ro / "eval.json")
    return Spec(argv, [ro], [str(ro)])


@case
def evaluate_out_is_a_folder(t, fx):
    (t / "ev" / "eval.json").mkdir(parents=True)
    (t / "ev" / "eval.json" / "notes.txt").write_text("mine")
    return Spec(_evaluate(fx, t), [t / "ev"], [str(t / "ev" / "eval.json")])


@case
def evaluate_device_bogus(t, fx):
    return Spec(_evaluate(fx, t)[:-2] + ["--device", "bogus"], [t / "ev"], ["--device"])


@case
def evaluate_data_null_path(t, fx):
    d = copy_data(fx, t)
    edit_dataset_json(d, lambda m: m["training"][0].update(label=None))
    argv = _evaluate(fx, t)
    argv[argv.index("--data") + 1] = str(d)
    return Spec(argv, [t / "ev", d], ["dataset.json"])


@case
def evaluate_data_split_json_list(t, fx):
    d = copy_data(fx, t)
    (d / "split.json").write_text("[]")
    argv = _evaluate(fx, t)
    argv[argv.index("--data") + 1] = str(d)
    return Spec(argv, [t / "ev", d], ["split.json"])


@case
def evaluate_data_missing_folder(t, fx):
    argv = _evaluate(fx, t)
    argv[argv.index("--data") + 1] = str(t / "nowhere")
    return Spec(argv, [t / "ev", t / "nowhere"], [str(t / "nowhere")])


@case
def evaluate_n_val_zero(t, fx):
    return Spec(_evaluate(fx, t, "--n-val", "0"), [t / "ev"], ["--n-val"])


# ---------------------------------------------------------------------------------------- register

def _register(fx: Fx, t: Path, *, model=None, moving=None, fixed=None, out=None, extra=()) -> list[str]:
    return ["register", "--model", str(model or fx.run), "--moving", str(moving or fx.moving), "--fixed",
            str(fixed or fx.fixed), "--out", str(out or t / "reg"), "--device", "cpu", *extra]


@case
def register_nan_weights(t, fx):
    p = nan_checkpoint(fx, t)
    return Spec(_register(fx, t, model=p), [t / "reg"], [str(p)])


@case
def register_model_dir_without_checkpoint(t, fx):
    (t / "emptyrun").mkdir()
    return Spec(_register(fx, t, model=t / "emptyrun"), [t / "reg"], [str(t / "emptyrun")])


@case
def register_moving_missing(t, fx):
    return Spec(_register(fx, t, moving=t / "nope.nii.gz"), [t / "reg"], [str(t / "nope.nii.gz")])


@case
def register_moving_not_nifti(t, fx):
    (t / "m.nii.gz").write_text("not an image")
    return Spec(_register(fx, t, moving=t / "m.nii.gz"), [t / "reg"], [str(t / "m.nii.gz")])


@case
def register_moving_has_nan(t, fx):
    arr = np.ones((20, 18, 22), np.float32)
    arr[3, 3, 3] = np.nan
    write_nifti(t / "m.nii.gz", arr, np.eye(4))
    return Spec(_register(fx, t, moving=t / "m.nii.gz"), [t / "reg"], [str(t / "m.nii.gz")])


@case
def register_moving_4d(t, fx):
    write_nifti(t / "m.nii.gz", np.ones((20, 18, 22, 2), np.float32), np.eye(4))
    return Spec(_register(fx, t, moving=t / "m.nii.gz"), [t / "reg"], [str(t / "m.nii.gz")])


@case
def register_shape_mismatch(t, fx):
    write_nifti(t / "m.nii.gz", np.ones((10, 18, 22), np.float32), np.eye(4))
    return Spec(_register(fx, t, moving=t / "m.nii.gz"), [t / "reg"], [str(t / "m.nii.gz")])


@case
def register_label_missing(t, fx):
    return Spec(_register(fx, t, extra=("--moving-label", str(t / "l.nii.gz"))), [t / "reg"],
                [str(t / "l.nii.gz")])


@case
def register_label_shape_mismatch(t, fx):
    write_nifti(t / "l.nii.gz", np.zeros((5, 5, 5), np.uint8), np.eye(4))
    return Spec(_register(fx, t, extra=("--moving-label", str(t / "l.nii.gz"))), [t / "reg"],
                [str(t / "l.nii.gz")])


@case
def register_out_is_a_file(t, fx):
    (t / "reg").write_text("mine")
    return Spec(_register(fx, t), [t / "reg"], [str(t / "reg")])


@case
def register_out_read_only(t, fx):
    ro = read_only_dir(t)
    return Spec(_register(fx, t, out=ro / "reg"), [ro], [str(ro)])


@case
def register_device_bogus(t, fx):
    return Spec(_register(fx, t)[:-2] + ["--device", "bogus"], [t / "reg"], ["--device"])


@case
def register_precision_bogus(t, fx):
    return Spec(_register(fx, t, extra=("--precision", "float8")), [t / "reg"], ["--precision"])


# --------------------------------------------------------------------------------------- decompose

def _decompose(fx: Fx, t: Path, *extra: str, model=None, out=None, data=None) -> list[str]:
    return ["decompose", "--model", str(model or fx.run), "--data", str(data or fx.data), "--out",
            str(out or t / "dec"), "--device", "cpu", *extra]


@case
def decompose_k_zero(t, fx):
    return Spec(_decompose(fx, t, "-k", "0"), [t / "dec"], ["--components", "-k"])


@case
def decompose_k_negative(t, fx):
    return Spec(_decompose(fx, t, "-k", "-2"), [t / "dec"], ["--components", "-k"])


@case
def decompose_k_above_subjects(t, fx):
    return Spec(_decompose(fx, t, "-k", "50"), [t / "dec"], ["--components", "-k"])


@case
def decompose_batch_size_zero(t, fx):
    return Spec(_decompose(fx, t, "--batch-size", "0"), [t / "dec"], ["--batch-size"])


@case
def decompose_batch_size_negative(t, fx):
    return Spec(_decompose(fx, t, "--batch-size", "-4"), [t / "dec"], ["--batch-size"])


@case
def decompose_out_is_a_file(t, fx):
    (t / "dec").write_text("mine")
    return Spec(_decompose(fx, t), [t / "dec"], [str(t / "dec")])


@case
def decompose_out_read_only(t, fx):
    ro = read_only_dir(t)
    return Spec(_decompose(fx, t, out=ro / "dec"), [ro], [str(ro)])


@case
def decompose_model_missing(t, fx):
    return Spec(_decompose(fx, t, model=t / "nope"), [t / "dec"], [str(t / "nope")])


@case
def decompose_nan_weights(t, fx):
    p = nan_checkpoint(fx, t)
    return Spec(_decompose(fx, t, model=p), [t / "dec"], [str(p)])


@case
def decompose_device_bogus(t, fx):
    return Spec(_decompose(fx, t)[:-2] + ["--device", "bogus"], [t / "dec"], ["--device"])


@case
def decompose_data_split_json_list(t, fx):
    d = copy_data(fx, t)
    (d / "split.json").write_text("[1, 2]")
    return Spec(_decompose(fx, t, data=d), [t / "dec", d], ["split.json"])


@case
def decompose_data_empty_folder(t, fx):
    (t / "empty").mkdir()
    return Spec(_decompose(fx, t, data=t / "empty"), [t / "dec", t / "empty"], [str(t / "empty")])


# --------------------------------------------------------------------------------------- casestudy

def _casestudy(fx: Fx, t: Path, *extra: str, dec=None, out=None, model=None) -> list[str]:
    return ["casestudy", "--model", str(model or fx.run), "--decomposition", str(dec or fx.dec), "--data",
            str(fx.data), "--out", str(out or t / "cs"), "--device", "cpu", *extra]


@case
def casestudy_decomposition_missing(t, fx):
    return Spec(_casestudy(fx, t, dec=t / "nope"), [t / "cs"], [str(t / "nope")])


@case
def casestudy_decomposition_corrupt(t, fx):
    d = Path(shutil.copytree(fx.dec, t / "baddec"))
    (d / "decomposition.npz").write_bytes(b"not a zip")
    return Spec(_casestudy(fx, t, dec=d), [t / "cs"], ["decomposition.npz"])


@case
def casestudy_zoom_zero(t, fx):
    return Spec(_casestudy(fx, t, "--zoom", "0"), [t / "cs"], ["--zoom"])


@case
def casestudy_zoom_negative(t, fx):
    return Spec(_casestudy(fx, t, "--zoom", "-1.2"), [t / "cs"], ["--zoom"])


@case
def casestudy_batch_size_zero(t, fx):
    return Spec(_casestudy(fx, t, "--batch-size", "0"), [t / "cs"], ["--batch-size"])


@case
def casestudy_rotation_nan(t, fx):
    return Spec(_casestudy(fx, t, "--rotation", "nan"), [t / "cs"], ["--rotation"])


@case
def casestudy_translation_inf(t, fx):
    return Spec(_casestudy(fx, t, "--translation", "inf"), [t / "cs"], ["--translation"])


@case
def casestudy_out_is_a_file(t, fx):
    (t / "cs").write_text("mine")
    return Spec(_casestudy(fx, t), [t / "cs"], [str(t / "cs")])


@case
def casestudy_out_read_only(t, fx):
    ro = read_only_dir(t)
    return Spec(_casestudy(fx, t, out=ro / "cs"), [ro], [str(ro)])


@case
def casestudy_nan_weights(t, fx):
    p = nan_checkpoint(fx, t)
    return Spec(_casestudy(fx, t, model=p), [t / "cs"], [str(p)])


# ------------------------------------------------------------------------------------------- match

@case
def match_one_run(t, fx):
    return Spec(["match", "--runs", str(fx.run), "--out", str(t / "m")], [t / "m"], ["--runs"])


@case
def match_data_missing_folder(t, fx):
    run = copy_run(fx, t)
    twin = Path(shutil.copytree(fx.run, t / "twin"))
    return Spec(["match", "--runs", str(run), str(twin), "--data", str(t / "nowhere"), "--out", str(t / "m")],
                [t / "m", run, twin, t / "nowhere"], ["no such data folder"])


@case
def match_one_run_twice(t, fx):
    run = copy_run(fx, t)
    return Spec(["match", "--runs", str(run), f"{run}/", "--out", str(t / "m")], [t / "m", run], ["--runs"])


# ----------------------------------------------------------------------------------------- explore

@case
def explore_port_busy(t, fx):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    return Spec(["explore", "--decomposition", str(fx.dec), "--port", str(port)], [], ["--port", str(port)],
                keep=[s], forbid_stdout="http://")


@case
def explore_port_out_of_range(t, fx):
    return Spec(["explore", "--decomposition", str(fx.dec), "--port", "70000"], [], ["--port"])


@case
def explore_decomposition_missing(t, fx):
    return Spec(["explore", "--decomposition", str(t / "nope")], [], [str(t / "nope")])


@case
def explore_decomposition_is_a_file(t, fx):
    (t / "dec").write_text("x")
    return Spec(["explore", "--decomposition", str(t / "dec")], [t / "dec"], [str(t / "dec")])


@case
def explore_checkpoint_missing(t, fx):
    return Spec(["explore", "--decomposition", str(fx.dec), "--checkpoint", str(t / "gone.pt")], [],
                [str(t / "gone.pt")])


@case
def explore_data_missing(t, fx):
    return Spec(["explore", "--decomposition", str(fx.dec), "--data", str(t / "gone")], [t / "gone"],
                [str(t / "gone")])


# --------------------------------------------------------------------------------------- reproduce

def _reproduce(t: Path, *extra: str) -> list[str]:
    return ["reproduce", "--profile", "smoke", "--figures", str(t / "fig"), "--data", str(t / "data"),
            "--runs", str(t / "runs"), *extra]


_REPRO_OUT = ("fig", "data", "runs")


@case
def reproduce_unknown_notebook(t, fx):
    return Spec(_reproduce(t, "--notebooks", "99"), [t / p for p in _REPRO_OUT], ["--notebooks"])


@case
def reproduce_profile_is_a_list(t, fx):
    p = _profile(t, "- a\n- b\n")
    argv = _reproduce(t)
    argv[argv.index("smoke")] = str(p)
    return Spec(argv, [t / p for p in _REPRO_OUT], [str(p)])


@case
def reproduce_profile_missing(t, fx):
    argv = _reproduce(t)
    argv[argv.index("smoke")] = "nosuchprofile"
    return Spec(argv, [t / p for p in _REPRO_OUT], ["nosuchprofile"])


@case
def reproduce_figures_is_a_file(t, fx):
    (t / "fig").write_text("mine")
    return Spec(_reproduce(t), [t / p for p in _REPRO_OUT], [str(t / "fig")])


@case
def reproduce_runs_read_only(t, fx):
    ro = read_only_dir(t)
    argv = _reproduce(t)
    argv[argv.index("--runs") + 1] = str(ro / "runs")
    return Spec(argv, [ro, t / "fig", t / "data"], [str(ro)])


# ------------------------------------------------------------------------------------------- study

def _study(t: Path, *extra: str) -> list[str]:
    return ["study", "--profile", "smoke", "--out", str(t / "study"), "--figures", str(t / "fig"), *extra]


@case
def study_two_seeds(t, fx):
    return Spec(_study(t, "--seeds", "2"), [t / "study", t / "fig"], ["--seeds"])


@case
def study_unknown_regime(t, fx):
    return Spec(_study(t, "--regime", "mri"), [t / "study", t / "fig"], ["--regime"])


@case
def study_profile_is_a_list(t, fx):
    p = _profile(t, "- a\n- b\n")
    argv = _study(t)
    argv[argv.index("smoke")] = str(p)
    return Spec(argv, [t / "study", t / "fig"], [str(p)])


@case
def study_profile_missing(t, fx):
    argv = _study(t)
    argv[argv.index("smoke")] = "nosuchprofile"
    return Spec(argv, [t / "study", t / "fig"], ["nosuchprofile"])


@case
def study_out_is_a_file(t, fx):
    (t / "study").write_text("mine")
    return Spec(_study(t), [t / "study", t / "fig"], [str(t / "study")])


@case
def study_figures_read_only(t, fx):
    ro = read_only_dir(t)
    argv = _study(t)
    argv[argv.index("--figures") + 1] = str(ro / "fig")
    return Spec(argv, [ro, t / "study"], [str(ro)])


# ============================================================================================== test

@pytest.fixture(scope="module")
def fx(tmp_path_factory, hippo_root) -> Fx:
    from regexplain.cli import main

    base = tmp_path_factory.mktemp("badinput")
    data = Path(shutil.copytree(hippo_root, base / "data"))
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert main(smoke_train(data, base / "run", "--steps", "2")) == 0
        assert main(["decompose", "--model", str(base / "run"), "--out", str(base / "dec"), "-k", "3",
                     "--device", "cpu"]) == 0
    finally:
        os.chdir(cwd)
    g = np.random.default_rng(0)
    mov = (g.random((20, 18, 22)) * 100).astype(np.float32)
    write_nifti(base / "moving.nii.gz", mov, np.eye(4))
    write_nifti(base / "fixed.nii.gz", mov[::-1].copy(), np.eye(4))
    return Fx(data, base / "run", base / "dec", base / "moving.nii.gz", base / "fixed.nii.gz")


def run_case(spec: Spec, monkeypatch, capsys) -> tuple[int, str, str]:
    from regexplain.cli import main

    for target, value in spec.patch.items():
        module, attr = target.split(":")
        monkeypatch.setattr(f"{module}.{attr}", value)
    try:
        rc = main(spec.argv)
    except SystemExit as e:  # argparse
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name, tmp_path, monkeypatch, capsys, fx):
    check_case(name, tmp_path, monkeypatch, capsys, fx)


@pytest.mark.parametrize("name", sorted(n for n in CASES if n.endswith("_read_only")))
def test_read_only_by_the_write_fault(name, tmp_path, monkeypatch, capsys, fx):
    """The read-only cases with the folder made read-only by regexplain/io.py's write fault, as they run
    where chattr cannot (a container's root): the same refusal, and nothing written."""
    monkeypatch.setattr(sys.modules[__name__], "READ_ONLY_BY", "fault")
    check_case(name, tmp_path, monkeypatch, capsys, fx)
    assert FAULT_ENV not in os.environ


def check_case(name, tmp_path, monkeypatch, capsys, fx) -> None:
    shared = snapshot([fx.data, fx.run, fx.dec])
    monkeypatch.chdir(tmp_path)
    try:
        spec = CASES[name](tmp_path, fx)
        before = snapshot(spec.watch)
        rc, out, err = run_case(spec, monkeypatch, capsys)
        assert rc == 2, f"exit {rc}\n{err[-2000:]}"
        assert "Traceback" not in err
        assert any(n in err for n in spec.names), f"message names none of {spec.names}:\n{err}"
        assert err.count("error:") == 1, err
        assert snapshot(spec.watch) == before, "the output location changed"
        if spec.forbid_stdout:
            assert spec.forbid_stdout not in out
    finally:
        release_read_only(tmp_path)
    assert snapshot([fx.data, fx.run, fx.dec]) == shared  # cases must not touch the shared fixtures


def test_corpus_is_large_enough():
    assert len(CASES) >= 60
    commands = {name.split("_")[0] for name in CASES}
    assert commands >= {"synth", "info", "download", "train", "evaluate", "register", "decompose",
                        "casestudy", "explore", "reproduce", "study"}
