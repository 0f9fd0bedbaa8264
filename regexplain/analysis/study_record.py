"""What a seed study folder was started with, so that a resumed study never mixes two requests.

A study reuses every finished run and score it finds in ``<out>/<regime>/``; that is only right when they
were made by the same request. The first run of a study writes ``<out>/<regime>/provenance.json``: the
profile (name and a digest of its settings, so an edited YAML file counts as another profile), the
regime, the seeds, the architectures and the code version. Every later run into that folder must ask for
the same, or it is refused (:class:`UsageError`) with the way to start a new study folder. Each score
file carries its own run's record too (profile, regime, seed, architecture, code), checked when reused.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from regexplain.errors import UsageError

RECORD_NAME = "provenance.json"
#: the fields two requests must share to share a study folder
KEYS = ("profile", "profile_digest", "regime", "seeds", "archs", "code_version")


def code_version() -> str:
    """``regexplain.__version__``, plus the git commit when the package runs from a checkout."""
    from regexplain import __version__

    repo = Path(__file__).resolve().parents[2]
    if not (repo / ".git").exists():
        return __version__
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{__version__}+g{commit}" if commit else __version__


def profile_digest(profile: str | Path) -> str:
    """Digest of the profile's hippocampus settings (the folder it names left out: the study chooses it)."""
    from regexplain.config import load_config

    values = load_config(profile, "hippocampus").to_dict()
    values["data"].pop("root", None)
    return hashlib.sha1(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


def study_request(profile: str | Path, regime: str, seeds: Sequence[int], archs: Sequence[str]) -> dict[str, Any]:
    """The record of one ``study`` request (what :data:`KEYS` compares)."""
    from regexplain.config import profile_path

    return {"profile": profile_path(profile).stem, "profile_digest": profile_digest(profile), "regime": regime,
            "seeds": [int(s) for s in seeds], "archs": list(archs), "code_version": code_version()}


def run_record(request: dict[str, Any], arch: str, seed: int) -> dict[str, Any]:
    """One run's record inside its score file: the request's profile, regime and code, its seed and arch."""
    return {"profile": request["profile"], "profile_digest": request["profile_digest"],
            "regime": request["regime"], "code_version": request["code_version"], "arch": arch, "seed": int(seed)}


def _show(record: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in record.items()
                     if k in keys)


def _refuse(where: Path, old: dict[str, Any], new: dict[str, Any], study_out: Path) -> UsageError:
    keys = [k for k in KEYS if k in old and old.get(k) != new.get(k)]
    return UsageError(f"{where}: this study folder was started with {_show(old, keys)}; this command asks for "
                      f"{_show(new, keys)}. Its finished runs cannot be mixed with new ones: resume it with the "
                      f"same options and code, or start a new study folder with another --out (e.g. --out "
                      f"{study_out.name}_{new['profile']})")


def _legacy_runs_match(base: Path, request: dict[str, Any]) -> dict[str, Any] | None:
    """A folder from before records: the trained runs' own configs say which profile and regime made them.
    Returns the first disagreeing run's record, else ``None``."""
    import yaml

    for cfg_path in sorted((base / "runs").glob("*_seed*/config.yaml")):
        try:
            cfg = yaml.safe_load(cfg_path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        got = {"profile": cfg.get("profile"), "regime": (cfg.get("data") or {}).get("phantom_regime")}
        if got != {"profile": request["profile"], "regime": request["regime"]}:
            return got
    return None


def check_study_folder(base: str | Path, request: dict[str, Any], *, record: bool = True) -> None:
    """Refuse to resume ``base`` (``<out>/<regime>``) with another request; record the request on a first run
    (``record=False``: only check, e.g. every regime of ``study --regime both`` before the first one runs).

    Raises:
        UsageError: the folder was started with another profile, regime, seeds, architectures or code version
            (named, beside how to start a new study folder).
    """
    from regexplain.io import write_json

    base = Path(base)
    path = base / RECORD_NAME
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise UsageError(f"{path}: unreadable study record ({e}); start a new study folder with another "
                             "--out") from e
        if any(old.get(k) != request.get(k) for k in KEYS):
            raise _refuse(base, old, request, base.parent)
        return
    other = _legacy_runs_match(base, request)
    if other is not None:
        raise _refuse(base, other, request, base.parent)
    if record:
        write_json(path, request)


def read_scores(path: Path, request: dict[str, Any], arch: str, seed: int) -> dict[str, Any]:
    """A finished run's score file, refused when its record says another request made it."""
    rec = json.loads(path.read_text())
    want = run_record(request, arch, seed)
    got = rec.get("provenance")
    if got is not None and got != want:
        raise _refuse(path, got, want, Path(path).parent.parent.parent)
    return rec
