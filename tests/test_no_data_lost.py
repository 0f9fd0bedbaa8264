"""What issue 14 found besides plain bad input (tests/test_bad_input_cli.py): a killed run can be resumed
and restarted, a read-only dataset still trains, non-finite outputs are never written, decompositions
open from any folder, errors start on a new line, and Voilà never outlives its launcher."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from regexplain.cli import main
from regexplain.data.nifti import write_nifti
from regexplain.io import FAULT_ENV


def _train(data: Path, out: Path, *extra: str) -> int:
    return main(["train", "--profile", "smoke", "--data", str(data), "--out", str(out), "--no-progress",
                 "--device", "cpu", *extra])


@pytest.fixture(scope="module")
def run(tmp_path_factory, hippo_root):
    base = tmp_path_factory.mktemp("nolost")
    data = shutil.copytree(hippo_root, base / "data")
    assert _train(data, base / "run", "--steps", "2") == 0
    return base / "run"


def _copy(run: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(run, tmp / "run"))


def test_killed_run_leaves_temp_files_that_the_next_start_removes(run, tmp_path):
    r = _copy(run, tmp_path)
    stale = [r / ".checkpoint.pt.k1ll3d.tmp", r / ".log.jsonl.x8y9z0.tmp", r / ".metrics.json.aaaaaa.tmp"]
    for p in stale:
        p.write_bytes(b"half a file")
    assert main(["train", "--out", str(r), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert not any(p.exists() for p in stale)
    assert torch.load(r / "checkpoint.pt", weights_only=True)["step"] == 3


def test_resume_drops_a_cut_off_last_log_line(run, tmp_path, capsys):
    r = _copy(run, tmp_path)
    with open(r / "log.jsonl", "a") as f:
        f.write('{"kind": "train", "step": 3, "lo')  # the kill came mid-write
    assert main(["train", "--out", str(r), "--resume", "--steps", "3", "--no-progress"]) == 0
    assert "cut-off last line" in capsys.readouterr().err
    records = [json.loads(x) for x in (r / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in records if x["kind"] == "train"] == [1, 2, 3]


def test_run_killed_before_its_first_checkpoint_can_be_started_again(hippo_root, tmp_path):
    r = tmp_path / "run"
    r.mkdir()
    (r / ".regexplain.lock").touch()              # regexplain made this folder...
    (r / "config.yaml").write_text("profile: smoke\n")
    (r / "log.jsonl").write_text('{"kind": "train", "step": 1}\n{"kind": "tr')   # ...and was killed
    assert _train(hippo_root, r, "--steps", "2") == 0
    assert torch.load(r / "checkpoint.pt", weights_only=True)["step"] == 2
    assert all(json.loads(x)["step"] <= 2 for x in (r / "log.jsonl").read_text().splitlines())


def test_failed_training_removes_what_it_wrote(hippo_root, tmp_path, monkeypatch, capsys):
    from regexplain.registration import losses

    def nan_loss(*a, **k):
        return torch.tensor(float("nan"), requires_grad=True), {"total": float("nan")}

    monkeypatch.setattr(losses, "registration_loss", nan_loss)
    assert _train(hippo_root, tmp_path / "run") == 2
    assert "non-finite loss" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def _immutable(path: Path, monkeypatch, how: str):
    """Make ``path`` read-only for this process: by the operating system (mode 0555; as root, whom modes do
    not stop, the immutable attribute) or, where chattr fails (a container's root), and always with
    ``how="fault"``, by regexplain/io.py's write fault. Returns how it was done and the undo."""
    if how == "os" and os.geteuid() != 0:
        path.chmod(0o555)
        return "mode 0555", lambda: path.chmod(0o755)
    if how == "os" and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        return "chattr +i", lambda: subprocess.run(["chattr", "-i", str(path)], capture_output=True)
    monkeypatch.setenv(FAULT_ENV, f"EROFS:{glob.escape(str(path))}")
    return "write fault", lambda: monkeypatch.delenv(FAULT_ENV)


@pytest.mark.parametrize("how", ["os", "fault"])
def test_read_only_dataset_still_trains(hippo_root, tmp_path, capsys, monkeypatch, how):
    data = Path(shutil.copytree(hippo_root, tmp_path / "data"))
    for p in [*data.glob(".cache_*"), data / "split.json"]:
        p.unlink(missing_ok=True)
    _, release = _immutable(data, monkeypatch, how)
    try:
        assert _train(data, tmp_path / "run", "--steps", "1") == 0
    finally:
        release()
    err = capsys.readouterr().err
    assert "split.json" in err and "not written" in err
    assert not (data / "split.json").exists()


def test_register_never_writes_non_finite_volumes(run, tmp_path, monkeypatch, capsys):
    from regexplain.registration.model import RegistrationNet

    g = np.random.default_rng(0)
    vol = (g.random((20, 18, 22)) * 100).astype(np.float32)
    write_nifti(tmp_path / "m.nii.gz", vol, np.eye(4))
    write_nifti(tmp_path / "f.nii.gz", vol[::-1].copy(), np.eye(4))

    def nan_map(self, moving, fixed, **k):
        return torch.full((1, 3, *moving.shape[2:]), float("nan"))

    monkeypatch.setattr(RegistrationNet, "register", nan_map)
    assert main(["register", "--model", str(run), "--moving", str(tmp_path / "m.nii.gz"), "--fixed",
                 str(tmp_path / "f.nii.gz"), "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    assert "non-finite" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_decomposition_opens_from_another_folder(run, tmp_path, monkeypatch):
    from regexplain.app.inputs import check_sources

    launch = tmp_path / "launch"
    shutil.copytree(run, launch / "run")
    shutil.copytree(run.parent / "data", launch / "data")
    monkeypatch.chdir(launch)
    assert main(["decompose", "--model", "run", "--data", "data", "--out", "dec", "-k", "2",
                 "--device", "cpu"]) == 0
    meta = json.loads((launch / "dec" / "decomposition.json").read_text())["meta"]
    assert Path(meta["checkpoint"]).is_absolute() and Path(meta["data"]).is_absolute()
    monkeypatch.chdir(tmp_path)
    _, ckpt, data = check_sources(launch / "dec")
    assert ckpt == launch / "run" / "checkpoint.pt" and data == launch / "data"
    # a decomposition.json written before the fix (relative paths) still opens from where it was made
    old = json.loads((launch / "dec" / "decomposition.json").read_text())
    old["meta"].update(checkpoint="run/checkpoint.pt", data="data")
    (launch / "dec" / "decomposition.json").write_text(json.dumps(old))
    monkeypatch.chdir(launch)
    assert check_sources(launch / "dec")[1].resolve() == (launch / "run" / "checkpoint.pt").resolve()


def test_error_starts_on_a_new_line_below_the_progress_bar(hippo_root, tmp_path, capsys):
    import nibabel as nib

    data = Path(shutil.copytree(hippo_root, tmp_path / "data"))
    lab = sorted((data / "labelsTr").glob("*.nii.gz"))[5]
    img = nib.load(lab)
    arr = np.asarray(img.dataobj).copy()
    arr[0, 0, 0] = 9
    write_nifti(lab, arr.astype(np.uint8), img.affine)
    assert main(["data", "info", str(data)]) == 2
    err = capsys.readouterr().err
    assert "reading" in err  # the bar was drawn, then interrupted
    assert any(line.startswith(f"regexplain data: error: {lab}") for line in err.split("\n")), err


# --------------------------------------------------------------------------------------- explore

def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie no longer serves


@pytest.fixture(scope="module")
def decomposition(run):
    out = run.parent / "dec"
    assert main(["decompose", "--model", str(run), "--out", str(out), "-k", "2", "--device", "cpu"]) == 0
    return out


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT", "SIGKILL"])
def test_voila_dies_with_its_launcher(decomposition, sig):
    from regexplain.app.server import free_port

    port = free_port()
    # SIGINT ignored by the launcher's parent, as for `cmd &` in a script or some CI runners
    proc = subprocess.Popen([sys.executable, "-m", "regexplain.cli", "explore", "--decomposition",
                             str(decomposition), "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    voila = []
    try:
        line = next((ln for ln in iter(proc.stdout.readline, "") if "serving" in ln), "")
        assert f"127.0.0.1:{port}" in line
        voila = _children(proc.pid)
        assert voila and all(_alive(v) for v in voila)
        proc.send_signal(getattr(signal, sig))
        proc.wait(30)
        deadline = time.monotonic() + 20
        while any(_alive(v) for v in voila) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(v) for v in voila), f"Voilà outlived its launcher after {sig}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for v in voila:
            if _alive(v):
                os.kill(v, signal.SIGKILL)


@pytest.mark.slow
def test_second_training_into_a_running_ones_folder_is_refused(hippo_root, tmp_path, capsys):
    data = Path(shutil.copytree(hippo_root, tmp_path / "data"))
    run = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "regexplain.cli", "train", "--profile", "smoke", "--data",
                              str(data), "--out", str(run), "--steps", "100000", "--no-progress", "--device",
                              "cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "log.jsonl").is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None and (run / "log.jsonl").is_file(), first.stderr.read()
        config = (run / "config.yaml").read_text()
        assert _train(data, run, "--steps", "3") == 2                     # a new run into the same folder
        while not (run / "checkpoint.pt").is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert first.poll() is None and (run / "checkpoint.pt").is_file(), "the first training wrote no checkpoint"
        capsys.readouterr()
        assert main(["train", "--out", str(run), "--resume", "--no-progress"]) == 2   # resuming it meanwhile
        err = capsys.readouterr().err
        assert "another training is writing into this folder" in err and "Traceback" not in err
        assert (run / "config.yaml").read_text() == config
    finally:
        first.kill()
        first.wait()
    steps = [json.loads(x)["step"] for x in (run / "log.jsonl").read_text().splitlines()
             if x.strip().endswith("}") and '"train"' in x]
    assert len(steps) >= 2 and steps == list(range(1, len(steps) + 1))  # one run's log, not two interleaved
