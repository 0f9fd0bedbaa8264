"""The last bad inputs of issue 22, each through a real ``regexplain`` process.

Refused cases exit 2 with one line naming the file or option, print no traceback and leave their outputs
(and inputs) as they were. Cases where going on is right exit 0 and print what was done (the split actually
used). ``match`` is held to its contract: comparable runs only (or ``--allow-mixed``, recorded), at most the
components the runs have, and nothing written into the runs it reads.
"""

from __future__ import annotations

import csv
import hashlib
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
