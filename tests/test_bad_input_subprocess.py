"""The last bad inputs of issue 22, each through a real ``regexplain`` process.

Refused cases exit 2 with one line naming the file or option, print no traceback and leave their outputs
(and inputs) as they were. Cases where going on is right exit 0 and print what was done (the split actually
used). ``match`` is held to its contract: comparable runs only (or ``--allow-mixed``, recorded), at most the
components the runs have, and nothing written into the runs it reads.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from regexplain.data.nifti import write_nifti


@dataclass
class Fx:
    data: Path      # 12 hippocampus phantoms at 32^3 (read-only: copy before changing)
    run: Path       # smoke run, no skip connections, 2 steps
    skip: Path      # smoke run with skip connections
    wide: Path      # smoke run with a wider bottleneck (another latent shape)
    moving: Path
    fixed: Path


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "regexplain.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def snapshot(*paths: Path) -> dict[str, str | None]:
    """Every file under ``paths`` with its hash (absent paths as ``None``)."""
    out: dict[str, str | None] = {}
    for p in paths:
        if p.is_file():
            out[str(p)] = hashlib.sha1(p.read_bytes()).hexdigest()
        elif p.is_dir():
            out[str(p)] = "dir"
            for q in sorted(p.rglob("*")):
                out[str(q)] = hashlib.sha1(q.read_bytes()).hexdigest() if q.is_file() else "dir"
        else:
            out[str(p)] = None
    return out


def refused(r: subprocess.CompletedProcess, *names: str) -> str:
    """Exit 2, one error line naming every one of ``names``, no traceback; returns the line."""
    assert r.returncode == 2, f"exit {r.returncode}\n{r.stderr[-3000:]}"
    assert "Traceback" not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(lines) == 1, r.stderr
    for n in names:
        assert n in lines[0], f"{n!r} not named in: {lines[0]}"
    return lines[0]


def smoke_train(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--profile", "smoke", "--data", str(data), "--out", str(out), "--no-progress", "--device", "cpu",
            *extra]


@pytest.fixture(scope="module")
def fx(tmp_path_factory, hippo_root) -> Fx:
    from regexplain.cli import main

    base = tmp_path_factory.mktemp("badsub")
    data = Path(shutil.copytree(hippo_root, base / "data"))
    wide = base / "wide.yaml"
    wide.write_text((Path(__file__).parents[1] / "regexplain" / "profiles" / "smoke.yaml").read_text()
                    .replace("channels: [4, 8, 8]", "channels: [4, 8, 16]"))
    cwd = os.getcwd()
    os.chdir(base)
    try:
        assert main(smoke_train(data, base / "run", "--steps", "2")) == 0
        assert main(smoke_train(data, base / "skip", "--steps", "2", "--skip-connections")) == 0
        assert main(smoke_train(data, base / "wide", "--steps", "2") + ["--profile", str(wide)]) == 0
    finally:
        os.chdir(cwd)
    g = np.random.default_rng(0)
    mov = (g.random((20, 18, 22)) * 100).astype(np.float32)
    write_nifti(base / "moving.nii.gz", mov, np.eye(4))
    write_nifti(base / "fixed.nii.gz", mov[::-1].copy(), np.eye(4))
    return Fx(data, base / "run", base / "skip", base / "wide", base / "moving.nii.gz", base / "fixed.nii.gz")


def copy_data(fx: Fx, t: Path) -> Path:
    d = Path(shutil.copytree(fx.data, t / "data"))
    for p in d.glob(".cache_*"):
        p.unlink()  # the edited copy must be read again, not served from the cache
    return d


# ------------------------------------------------------------------------------------- refused input

def test_all_zero_image_is_refused_by_data_info_and_train(fx, tmp_path):
    d = copy_data(fx, tmp_path)
    victim = sorted((d / "imagesTr").glob("*.nii.gz"))[4]
    write_nifti(victim, np.zeros((32, 32, 32), np.float32), np.eye(4))
    refused(cli("data", "info", str(d), cwd=tmp_path), str(victim), "constant")
    before = snapshot(d, tmp_path / "run")
    refused(cli(*smoke_train(d, tmp_path / "run"), cwd=tmp_path), str(victim), "constant")
    assert snapshot(d, tmp_path / "run") == before


def register_argv(fx: Fx, out: Path, *, moving: Path | None = None, label: Path | None = None) -> list[str]:
    argv = ["register", "--model", str(fx.run), "--moving", str(moving or fx.moving), "--fixed", str(fx.fixed),
            "--out", str(out), "--device", "cpu"]
    return argv + (["--moving-label", str(label)] if label else [])


def test_register_refuses_a_fractional_label(fx, tmp_path):
    label = tmp_path / "label.nii.gz"
    write_nifti(label, np.full((20, 18, 22), 7.5, np.float32), np.eye(4))
    refused(cli(*register_argv(fx, tmp_path / "reg", label=label), cwd=tmp_path), str(label), "integers", "7.5")
    assert not (tmp_path / "reg").exists()


def test_register_keeps_integer_labels_above_255(fx, tmp_path):
    import nibabel as nib

    label = tmp_path / "label.nii.gz"
    write_nifti(label, np.full((20, 18, 22), 300, np.uint16), np.eye(4))
    r = cli(*register_argv(fx, tmp_path / "reg", label=label), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warped = np.asarray(nib.load(tmp_path / "reg" / "warped_label.nii.gz").dataobj)
    assert set(np.unique(warped).tolist()) <= {0, 300} and (warped == 300).any()  # not wrapped to 44


def test_register_refuses_a_constant_moving_image(fx, tmp_path):
    moving = tmp_path / "flat.nii.gz"
    write_nifti(moving, np.full((20, 18, 22), 3.0, np.float32), np.eye(4))
    refused(cli(*register_argv(fx, tmp_path / "reg", moving=moving), cwd=tmp_path), str(moving), "constant")
    assert not (tmp_path / "reg").exists()


def test_training_on_phantoms_too_small_for_the_working_shape_is_refused(tmp_path):
    from regexplain.data import synthetic

    d = synthetic.synthesize_hippocampus(tmp_path / "tiny", 12, (16, 16, 16), seed=0, progress=False)
    line = refused(cli(*smoke_train(d, tmp_path / "run", "--steps", "1"), cwd=tmp_path), str(d), "hippocampus_000",
                   "working shape 16x16x16")
    assert "NaN" not in line
    assert not (tmp_path / "run").exists()   # no metrics.json with NaN Dice, no half a run


def test_supervised_basis_names_the_subjects_missing_from_factors_csv(fx, tmp_path):
    d = copy_data(fx, tmp_path)
    path = d / "factors.csv"
    rows = list(csv.reader(path.open()))
    train_ids = json.loads((d / "split.json").read_text())["train"]
    gone = sorted(train_ids)[:2]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([r for r in rows if r[0] not in gone])
    out = tmp_path / "dec"
    line = refused(cli("decompose", "--model", str(fx.run), "--data", str(d), "--out", str(out), "--basis",
                       "supervised", "--device", "cpu", cwd=tmp_path), str(path), *gone)
    assert "KeyError" not in line
    assert not out.exists()


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_bad_seed_is_named_as_the_option(fx, tmp_path, seed):
    out = tmp_path / "dec"
    line = refused(cli("decompose", "--model", str(fx.run), "--out", str(out), "--basis", "sparse_pca",
                       "--seed", seed, "--device", "cpu", cwd=tmp_path), "--seed")
    assert "random_state" not in line
    assert not out.exists()


def test_a_duplicated_dataset_entry_is_named(fx, tmp_path):
    d = copy_data(fx, tmp_path)
    meta = json.loads((d / "dataset.json").read_text())
    meta["training"].append(dict(meta["training"][3]))
    (d / "dataset.json").write_text(json.dumps(meta))
    dup = Path(meta["training"][3]["image"]).name.removesuffix(".nii.gz")
    refused(cli("data", "info", str(d), cwd=tmp_path), "dataset.json", dup)


# ------------------------------------------------------------------------------------ notices (exit 0)

@pytest.mark.parametrize(("split", "used"), [(("0.9", "0.1"), "10 train / 2 val"),
                                             (("0.1", "0.9"), "2 train / 10 val")])
def test_train_prints_the_split_it_used(fx, tmp_path, split, used):
    r = cli(*smoke_train(fx.data, tmp_path / "run", "--steps", "1", "--split", *split), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    notice = [ln for ln in r.stderr.splitlines() if "split" in ln and "subjects" in ln]
    assert len(notice) == 1 and used in notice[0] and f"{split[0]} / {split[1]}" in notice[0], r.stderr


def test_the_split_notice_on_four_subjects(tmp_path):
    from regexplain.data import synthetic

    root = synthetic.synthesize_hippocampus(tmp_path / "four", 4, (32, 32, 32), seed=0, progress=False)
    r = cli(*smoke_train(root, tmp_path / "run", "--steps", "1", "--split", "0.9", "0.1"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "0.9 / 0.1 of 4 subjects" in r.stderr and "using 2 train / 2 val" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------- match

def match_argv(t: Path, *runs: Path, extra: tuple[str, ...] = ()) -> list[str]:
    return ["match", "--runs", *map(str, runs), "--out", str(t / "m"), "--null", "2", *extra]


@pytest.mark.parametrize("other", ["skip", "wide"])
def test_match_refuses_runs_of_another_architecture(fx, tmp_path, other):
    run_b = getattr(fx, other)
    before = snapshot(fx.run, run_b)
    refused(cli(*match_argv(tmp_path, fx.run, run_b), cwd=tmp_path), "--allow-mixed", str(run_b))
    assert not (tmp_path / "m").exists()
    assert snapshot(fx.run, run_b) == before


def test_match_with_allow_mixed_records_the_difference_and_writes_nothing_into_the_runs(fx, tmp_path):
    before = snapshot(fx.run, fx.skip)
    r = cli(*match_argv(tmp_path, fx.run, fx.skip, extra=("--allow-mixed",)), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "--allow-mixed" in r.stdout
    got = json.loads((tmp_path / "m" / "match.json").read_text())
    assert got["mixed"]["allowed"] is True and any("skip_connections" in d for d in got["mixed"]["differences"])
    assert [rec["skip_connections"] for rec in got["runs"]] == [False, True]
    assert all(rec["latent_shape"] and rec["n_components"] >= 1 for rec in got["runs"])
    assert snapshot(fx.run, fx.skip) == before   # no decomposition/ folder written into the inputs


def test_match_of_comparable_runs_records_them(fx, tmp_path):
    twin = Path(shutil.copytree(fx.run, tmp_path / "twin"))
    before = snapshot(fx.run, twin)
    r = cli(*match_argv(tmp_path, fx.run, twin), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "m" / "match.json").read_text())
    assert got["mixed"] == {"allowed": False, "differences": []}
    assert got["runs"][0]["latent_shape"] == got["runs"][1]["latent_shape"]
    assert len(got["components"]) == got["runs"][0]["n_components"]   # smoke K = 4 < the default 8
    assert snapshot(fx.run, twin) == before


def test_match_refuses_more_components_than_the_runs_have(fx, tmp_path):
    twin = Path(shutil.copytree(fx.run, tmp_path / "twin"))
    refused(cli(*match_argv(tmp_path, fx.run, twin, extra=("--components", "99")), cwd=tmp_path),
            "--components 99", "at most 4")
    assert not (tmp_path / "m").exists()


# ---------------------------------------------------------------------------------------------- issue 33

@pytest.fixture(scope="module")
def dec(fx, tmp_path_factory) -> Path:
    """A decomposition of ``fx.run`` (K = 3)."""
    from regexplain.cli import main

    out = tmp_path_factory.mktemp("dec33") / "dec"
    assert main(["decompose", "--model", str(fx.run), "--out", str(out), "-k", "3", "--device", "cpu"]) == 0
    return out


@pytest.mark.parametrize("spelling", ["same", "trailing slash", "symlink", "checkpoint file", "relative"])
def test_match_refuses_one_run_given_twice(fx, tmp_path, spelling):
    """`match --runs R R` scored |cos| 1.000 for every component without a word that the runs were one."""
    link = tmp_path / "link"
    link.symlink_to(fx.run)
    other = {"same": str(fx.run), "trailing slash": f"{fx.run}/", "symlink": str(link),
             "checkpoint file": str(fx.run / "checkpoint.pt"),
             "relative": os.path.relpath(fx.run, tmp_path)}[spelling]
    before = snapshot(fx.run)
    line = refused(cli(*match_argv(tmp_path, fx.run, Path(other)), cwd=tmp_path), "--runs", other, str(fx.run))
    assert "same run" in line
    assert not (tmp_path / "m").exists() and snapshot(fx.run) == before


def test_explore_refuses_a_checkpoint_of_another_latent_shape_before_serving(fx, dec, tmp_path):
    """As `casestudy` does: exit 2 naming the checkpoint and both latent shapes, and no server started."""
    r = cli("explore", "--decomposition", str(dec), "--checkpoint", str(fx.wide), cwd=tmp_path)
    line = refused(r, str(dec), str(fx.wide), "latent shape")
    assert "(8, 4, 4, 4)" in line and "(16, 4, 4, 4)" in line, line   # smoke: 16^3, two downsamplings
    assert "http://" not in r.stdout and "serving" not in r.stdout


@pytest.mark.slow
def test_explore_stopped_by_sigterm_prints_no_zmq_traceback(dec, tmp_path):
    """SIGTERM while Voilà's preheated kernel waits for its page (here an error page: its data folder is
    empty) stopped it mid-execution: `zmq.error.ZMQError: Socket operation on non-socket` on the terminal."""
    import signal
    import time

    import psutil

    (tmp_path / "empty").mkdir()
    log = tmp_path / "explore.log"
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "regexplain.cli", "explore", "--decomposition", str(dec),
                                 "--data", str(tmp_path / "empty")], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                stderr=err, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 240   # bounds against a hang on a loaded machine, not measurements
        while "is filled with" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        kernels = [p for p in psutil.Process(proc.pid).children(recursive=True) if "ipykernel" in " ".join(p.cmdline())]
        assert kernels, "no kernel"
        while sum(k.cpu_percent(interval=0.5) for k in kernels) > 5:   # parked, waiting for a page
            assert time.monotonic() < deadline, "the preheated kernel never went quiet"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert "Kernel shutdown" in text, text[-3000:]        # the kernel was there, and was stopped
    assert "ZMQError" not in text and "Traceback" not in text, text[-3000:]


@pytest.mark.parametrize("lam, shown, note", [("1e308", 3.0, "beyond the slider's ±3σ"),
                                              ("-1e308", -3.0, "beyond the slider's ±3σ"),
                                              ("nan", 0.0, "not a finite number"),
                                              ("inf", 0.0, "not a finite number")])
def test_explorer_link_with_an_impossible_lambda_names_the_parameter(dec, lam, shown, note):
    """`?lam=1e308` showed "Cannot open decomposition ...: OverflowError", blaming the decomposition. The
    page opens (as for `?lam=100`) and a note names the URL parameter. (The page's own code, as a Voilà
    kernel runs it for that URL.)"""
    from regexplain.app.page import explorer_page

    page = explorer_page(str(dec), query=f"lam={lam}")
    assert "explorer-error" not in page._dom_classes, page.value
    assert page.children[1].children[0].explorer_state.lam == shown
    notes = [html.unescape(w.value) for w in page.children if "link-note" in w._dom_classes]
    assert len(notes) == 1 and f"link parameter lam={lam}: {note}" in notes[0], notes
    assert not [w for w in explorer_page(str(dec), query="lam=1.5").children if "link-note" in w._dom_classes]


# A full disk, two ways: a real tmpfs too small for the output where this process may mount one (root with
# CAP_SYS_ADMIN), else (and always in the "fault" runs) regexplain/io.py's write fault, whose writes go to
# /dev/full, so torch, NumPy and nibabel meet the kernel's own ENOSPC.

@pytest.fixture(params=["tmpfs", "fault"])
def full_disk(request, tmp_path, monkeypatch):
    """``make(fill_glob, leave=0, fill=True) -> folder``: a folder on a full disk. With a 64 KiB tmpfs, filled
    (unless ``fill`` is false) up to ``leave`` bytes; with the write fault, writes to paths matching
    ``folder/fill_glob`` fail."""
    mounted = []

    def make(fill_glob: str = "*", leave: int = 0, fill: bool = True) -> Path:
        disk = tmp_path / "disk"
        disk.mkdir()
        if request.param == "tmpfs" and subprocess.run(
                ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True).returncode == 0:
            mounted.append(disk)
            if not fill:
                return disk
            fd = os.open(disk / ".filler", os.O_WRONLY | os.O_CREAT)
            try:
                while True:
                    os.write(fd, b"x" * 4096)
            except OSError:
                pass
            finally:
                os.close(fd)
            os.truncate(disk / ".filler", max(0, (disk / ".filler").stat().st_size - leave))
        else:
            import glob

            monkeypatch.setenv("REGEXPLAIN_TEST_WRITE_FAULT", f"ENOSPC:{glob.escape(str(disk))}/{fill_glob}")
        return disk

    yield make
    for d in mounted:
        subprocess.run(["umount", str(d)], capture_output=True)


def listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.name != ".filler")


def test_train_on_a_full_disk(fx, tmp_path, full_disk):
    """torch.save's `RuntimeError: ... unexpected pos` traceback: now one line naming the checkpoint, and
    the run folder of a run without a checkpoint removed."""
    disk = full_disk("run/checkpoint.pt", fill=False)   # 64 KiB hold config.yaml and the log, not a checkpoint
    line = refused(cli(*smoke_train(fx.data, disk / "run"), cwd=tmp_path), str(disk / "run" / "checkpoint.pt"),
                   "the disk is full")
    assert "unexpected pos" not in line
    assert listing(disk) == []


def test_evaluate_on_a_full_disk_writes_neither_file(fx, tmp_path, full_disk):
    """The summary fitted, its per-pair table did not: exit 2 naming no file, and e.json without e.csv."""
    disk = full_disk("*e.csv", leave=4096)    # one page: room for the summary only
    (disk / "ev").mkdir()
    r = cli("evaluate", "--model", str(fx.run), "--data", str(fx.data), "--out", str(disk / "ev" / "e.json"),
            "--device", "cpu", cwd=tmp_path)
    refused(r, str(disk / "ev" / "e.csv"), "the disk is full")
    assert listing(disk) == ["ev"]


@pytest.mark.parametrize("out_exists", [False, True])
def test_register_on_a_full_disk_leaves_the_output_as_it_was(fx, tmp_path, full_disk, out_exists):
    """It left an empty output folder; into an existing one, it must not leave some outputs new and
    others old."""
    disk = full_disk("*")
    if out_exists:
        (disk / "reg").mkdir()
        os.close(os.open(disk / "reg" / "notes.txt", os.O_WRONLY | os.O_CREAT))   # an empty file: no space
    before = snapshot(disk)
    refused(cli(*register_argv(fx, disk / "reg"), cwd=tmp_path), str(disk / "reg"), "the disk is full")
    assert snapshot(disk) == before
    assert listing(disk) == (["reg", "reg/notes.txt"] if out_exists else [])


def _zero_affine(path: Path, how: str) -> None:
    """Rewrite ``path`` with the same voxels and a header affine that places no voxel."""
    import nibabel as nib

    img = nib.load(path)
    hdr = img.header.copy()
    rows = {"zero": np.zeros((3, 4)), "nan": np.full((3, 4), np.nan),
            "flat": np.array([[1.0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]])}[how]   # two equal columns: singular
    hdr["srow_x"], hdr["srow_y"], hdr["srow_z"] = rows
    hdr["sform_code"], hdr["qform_code"] = 1, 0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), None, header=hdr), path)


@pytest.mark.parametrize("which, how", [("image", "zero"), ("label", "zero"), ("image", "nan"), ("image", "flat")])
def test_a_volume_whose_affine_places_no_voxel_is_refused(fx, tmp_path, which, how):
    """An all-zero affine trained to exit 0; `data info` showed spacing (0, 0, 0) mm and did not object."""
    d = copy_data(fx, tmp_path)
    victim = sorted((d / ("imagesTr" if which == "image" else "labelsTr")).glob("*.nii.gz"))[4]
    _zero_affine(victim, how)
    line = refused(cli("data", "info", str(d), cwd=tmp_path), str(victim), "affine")
    assert ("singular" if how != "nan" else "not a finite") in line
    before = snapshot(d, tmp_path / "run")
    refused(cli(*smoke_train(d, tmp_path / "run"), cwd=tmp_path), str(victim), "affine")
    assert snapshot(d, tmp_path / "run") == before


def test_register_refuses_a_moving_image_whose_affine_places_no_voxel(fx, tmp_path):
    moving = tmp_path / "m.nii.gz"
    shutil.copyfile(fx.moving, moving)
    _zero_affine(moving, "zero")
    refused(cli(*register_argv(fx, tmp_path / "reg", moving=moving), cwd=tmp_path), str(moving), "affine")
    assert not (tmp_path / "reg").exists()


def test_resuming_a_finished_run_changes_nothing(fx, tmp_path):
    """It appended a second final `val` line to log.jsonl and rewrote seconds_per_step."""
    run = Path(shutil.copytree(fx.run, tmp_path / "run"))
    before = snapshot(run)
    r = cli("train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"{run}: already finished (2 of 2 steps trained); nothing to do" in r.stderr, r.stderr
    assert snapshot(run) == before
    assert "steps=2" in r.stdout   # the run's own final metrics, as a finished training prints them
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in records if x["kind"] == "val"] == [2]


def test_resuming_a_finished_run_whose_metrics_json_was_lost_writes_it_again(fx, tmp_path):
    run = Path(shutil.copytree(fx.run, tmp_path / "run"))
    want = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").unlink()   # killed between the last checkpoint and metrics.json
    log = (run / "log.jsonl").read_bytes()
    r = cli("train", "--out", str(run), "--resume", "--no-progress", "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0 and "already finished" in r.stderr, r.stderr
    got = json.loads((run / "metrics.json").read_text())
    assert got == {k: v for k, v in want.items() if isinstance(v, (int, float, str))}
    assert (run / "log.jsonl").read_bytes() == log


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", ".NaN"])
def test_a_non_finite_learning_rate_is_named(fx, tmp_path, value):
    """`lr: .inf` stopped at step 2 with "non-finite loss", naming no option."""
    profile = tmp_path / "p.yaml"
    profile.write_text((Path(__file__).parents[1] / "regexplain" / "profiles" / "smoke.yaml").read_text()
                       .replace("lr: 1.0e-3", f"lr: {value}"))
    assert f"lr: {value}" in profile.read_text()
    line = refused(cli(*smoke_train(fx.data, tmp_path / "run"), "--profile", str(profile), cwd=tmp_path),
                   str(profile), "train.lr")
    assert "finite" in line and "non-finite loss" not in line
    assert not (tmp_path / "run").exists()
