"""The trained quick models shipped in regexplain/weights: checksums, Dice on fresh phantoms, and the ways
users open them (regexplain explore --pretrained, notebooks without a trained run)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from regexplain import pretrained, runs
from regexplain.errors import CheckpointError, UsageError

SHIPPED = list(pretrained.PRETRAINED)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("pretrained_cache")


def test_the_manifest_says_how_each_model_was_made():
    manifest = pretrained.read_manifest()
    for short, rn in pretrained.PRETRAINED.items():
        e = manifest[rn]
        assert e["name"] == short and e["profile"] == "quick" and e["command"].startswith("regexplain pretrained make")
        assert set(e["sha256"]) == {"weights.pt", "decomposition.npz", "decomposition.json"}
        assert 0 < e["metrics"]["dice_before"] < e["metrics"]["dice_after"] <= 1     # the model registers
        # the check phantoms are another seed, so another template brain: a reproducibility check, not one of
        # registration (the no-skip model does not register that brain: docs/results.md, "One anatomy")
        assert 0 < e["check"]["dice_before"] < 1 and 0 < e["check"]["dice_after"] < 1
        assert e["config"]["data"]["dataset"] == e["dataset"] and e["phantom_regime"]
        size = (pretrained.WEIGHTS_DIR / rn / "weights.pt").stat().st_size
        assert size < 3_000_000, f"{rn}: weights only, {size} bytes"


@pytest.mark.slow
@pytest.mark.parametrize("short", SHIPPED)
def test_each_shipped_model_matches_its_checksum_and_its_dice_on_fresh_phantoms(short, cache):
    entry, folder = pretrained.verified(short)
    for fname, digest in entry["sha256"].items():
        assert pretrained.sha256(folder / fname) == digest      # what verified() checked, computed again here
    got = pretrained.check_dice(short, cache=cache)
    want = entry["check"]
    assert got["dice_before"] == pytest.approx(want["dice_before"], abs=0.02)
    assert got["dice_after"] == pytest.approx(want["dice_after"], abs=0.02)


def test_a_damaged_or_missing_file_is_named(tmp_path):
    shutil.copytree(pretrained.WEIGHTS_DIR, tmp_path / "w")
    target = tmp_path / "w" / "hippocampus_noskip" / "weights.pt"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"hippocampus_noskip/weights\.pt: SHA-256 .* differs"):
        pretrained.verified("hippocampus", tmp_path / "w")
    (tmp_path / "w" / "lung_noskip" / "decomposition.npz").unlink()
    with pytest.raises(CheckpointError, match=r"lung_noskip/decomposition\.npz: missing"):
        pretrained.verified("lung", tmp_path / "w")
    with pytest.raises(UsageError, match="choose one of hippocampus, hippocampus-skip, lung"):
        pretrained.run_name("brain")


@pytest.mark.slow
def test_notebooks_without_a_trained_run_open_the_shipped_model_and_say_so(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("REGEXPLAIN_CACHE", str(cache))
    run = runs.load_run("quick", "hippocampus_noskip", tmp_path / "runs", tmp_path / "data")
    out = capsys.readouterr().out.strip().splitlines()
    where = tmp_path / "runs" / "quick" / "hippocampus_noskip"
    assert len(out) == 1 and out[0].startswith(f"No trained run at {where}")
    assert "using the shipped pretrained model hippocampus_noskip" in out[0]
    assert run.origin.startswith("pretrained hippocampus_noskip ")
    assert run.decomposition.n_components == pretrained.read_manifest()["hippocampus_noskip"]["config"]["latent"][
        "n_components"]
    assert len(run.val.ids) == pretrained.CHECK["hippocampus"]["n_val"]
    with pytest.raises(CheckpointError, match="no finished training run"):     # no shipped model of that profile
        runs.load_run("smoke", "hippocampus_noskip", tmp_path / "runs", tmp_path / "data")


@pytest.mark.slow
def test_explore_pretrained_serves_the_shipped_model(tmp_path, cache):
    """`regexplain explore --pretrained hippocampus` from nothing: one line names the shipped model, then the
    app serves the explorer (the browser tests time the first picture)."""
    env = {**os.environ, "REGEXPLAIN_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "regexplain.cli", "explore", "--pretrained", "hippocampus"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, deadline = [], time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "serving" in line:
                break
        assert any("using the shipped pretrained model hippocampus_noskip" in ln for ln in lines), lines
        assert any("serving" in ln and "http://127.0.0.1:" in ln for ln in lines), lines
        meta = json.loads(next((tmp_path / "cache").glob("hippocampus_noskip-*/run/decomposition/"
                                                          "decomposition.json")).read_text())["meta"]
        assert meta["pretrained"] == "hippocampus_noskip"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0


def test_make_only_names_a_shipped_model(tmp_path):
    with pytest.raises(UsageError, match="no shipped model named nope"):
        pretrained.make("quick", runs_dir=tmp_path / "runs", data_dir=tmp_path / "data", out=tmp_path / "w",
                        only=["nope"], log=lambda *_: None)
    assert not (tmp_path / "w").exists() and not (tmp_path / "data").exists()
