"""A study folder holds one request: resuming it with another profile, regime, seeds or code is refused
(before any work, with the way to start a new folder), never mixed into the old runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regexplain.analysis import study_record
from regexplain.errors import UsageError


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "regexplain.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def _tree(root: Path) -> dict[str, bytes | None]:
    return {str(p): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def _started(out: Path, profile: str = "smoke", seeds=(0, 1, 2)) -> Path:
    """A study folder as a first, interrupted run leaves it: the record and two score files."""
    base = out / "pose"
    request = study_record.study_request(profile, "pose", seeds, ("noskip", "skip"))
    study_record.check_study_folder(base, request)
    for arch in ("noskip", "skip"):
        rec = {"seed": 0, "arch": arch, "provenance": study_record.run_record(request, arch, 0)}
        (base / "scores").mkdir(parents=True, exist_ok=True)
        (base / "scores" / f"{arch}_seed0.json").write_text(json.dumps(rec))
    return base


def test_the_record_holds_profile_regime_seeds_archs_and_code():
    req = study_record.study_request("smoke", "pose", [0, 1, 2], ["noskip", "skip"])
    assert req["profile"] == "smoke" and req["regime"] == "pose" and req["seeds"] == [0, 1, 2]
    assert req["archs"] == ["noskip", "skip"] and req["code_version"].startswith("0.")
    assert req["profile_digest"] != study_record.study_request("quick", "pose", [0, 1, 2], ["noskip"])[
        "profile_digest"]


def test_resuming_with_another_profile_is_refused_through_the_cli(tmp_path):
    out = tmp_path / "study"
    _started(out)
    before = _tree(tmp_path)
    r = cli("study", "--profile", "quick", "--out", str(out), "--figures", str(tmp_path / "fig"), "--regime", "pose",
            cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    line = next(ln for ln in r.stderr.splitlines() if "error:" in ln)
    assert "profile smoke" in line and "profile quick" in line and "--out" in line
    assert _tree(tmp_path) == before        # nothing trained, nothing rewritten


@pytest.mark.parametrize("change", ["seeds", "code_version", "profile_digest"])
def test_any_other_difference_is_refused(tmp_path, change):
    base = _started(tmp_path / "study")
    request = study_record.study_request("smoke", "pose", (0, 1, 2), ("noskip", "skip"))
    request[change] = [0, 1, 2, 3] if change == "seeds" else "other"
    with pytest.raises(UsageError, match=change):
        study_record.check_study_folder(base, request)


def test_the_same_request_resumes(tmp_path):
    base = _started(tmp_path / "study")
    request = study_record.study_request("smoke", "pose", (0, 1, 2), ("noskip", "skip"))
    study_record.check_study_folder(base, request)
    rec = study_record.read_scores(base / "scores" / "noskip_seed0.json", request, "noskip", 0)
    assert rec["provenance"]["profile"] == "smoke"


def test_a_score_file_of_another_request_is_refused(tmp_path):
    base = _started(tmp_path / "study")
    request = study_record.study_request("smoke", "pose", (0, 1, 2), ("noskip", "skip"))
    path = base / "scores" / "skip_seed0.json"
    rec = json.loads(path.read_text())
    rec["provenance"]["profile"] = "quick"
    path.write_text(json.dumps(rec))
    with pytest.raises(UsageError, match="skip_seed0.json"):
        study_record.read_scores(path, request, "skip", 0)


def test_a_folder_from_before_records_is_judged_by_its_runs_configs(tmp_path):
    base = tmp_path / "study" / "pose"
    (base / "runs" / "noskip_seed0").mkdir(parents=True)
    (base / "runs" / "noskip_seed0" / "config.yaml").write_text("profile: smoke\ndata:\n  phantom_regime: pose\n")
    quick = study_record.study_request("quick", "pose", (0, 1, 2), ("noskip", "skip"))
    with pytest.raises(UsageError, match="profile smoke"):
        study_record.check_study_folder(base, quick)
    assert not (base / study_record.RECORD_NAME).exists()
    smoke = study_record.study_request("smoke", "pose", (0, 1, 2), ("noskip", "skip"))
    study_record.check_study_folder(base, smoke)
    assert json.loads((base / study_record.RECORD_NAME).read_text()) == smoke


def test_run_study_records_every_run_and_refuses_another_request(tmp_path, monkeypatch):
    """run_study itself: the record is written before any work, each new score file carries its run's
    record, study.json the request; a resume with other seeds is refused and changes nothing."""
    from regexplain.analysis import study

    minimal = {"explained_K": 0.9, "explained_first4": 0.5, "readout": {}, "reading": {}}
    base = tmp_path / "study" / "pose"
    (base / "scores").mkdir(parents=True)
    for seed in (0, 1, 2):
        for arch in ("noskip", "skip", "untrained"):
            if (arch, seed) != ("untrained", 2):   # the one job left to do: an untrained encoder, no training
                (base / "scores" / f"{arch}_seed{seed}.json").write_text(json.dumps({**minimal, "seed": seed,
                                                                                     "arch": arch}))
    monkeypatch.setattr(study, "score_run", lambda *a, **k: dict(minimal))
    res = study.run_study("smoke", tmp_path / "study", seeds=(0, 1, 2), regime="pose", progress=False,
                          log=lambda _m: None)
    request = study_record.study_request("smoke", "pose", (0, 1, 2), study.ARCHS)
    assert res["provenance"] == request
    assert json.loads((base / "study.json").read_text())["provenance"] == request
    written = json.loads((base / "scores" / "untrained_seed2.json").read_text())
    assert written["provenance"] == study_record.run_record(request, "untrained", 2)
    before = _tree(tmp_path)
    with pytest.raises(UsageError, match="seeds 0 1 2"):
        study.run_study("smoke", tmp_path / "study", seeds=(0, 1, 2, 3), regime="pose", progress=False)
    assert _tree(tmp_path) == before


def test_study_both_checks_every_regime_before_the_first_runs(tmp_path, capsys):
    from regexplain.analysis import study_record
    from regexplain.analysis.study import ARCHS
    from regexplain.cli import main

    # the second regime's folder was started with other seeds: refused before the first regime trains
    other = study_record.study_request("smoke", "pose", range(4), ARCHS)
    study_record.check_study_folder(tmp_path / "st" / "pose", other)
    assert main(["study", "--profile", "smoke", "--out", str(tmp_path / "st"), "--seeds", "3",
                 "--figures", str(tmp_path / "fig")]) == 2
    assert "pose" in capsys.readouterr().err
    assert not (tmp_path / "st" / "calibrated").exists()
