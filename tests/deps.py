"""The test suite's declared dependencies (pyproject's ``test`` and ``notebooks`` extras): under CI a missing
one fails the test that needs it; elsewhere that test is skipped with a line saying what to install.

CI is detected by the ``CI`` environment variable (``1``, ``true`` or ``yes``): ``.ci/run`` sets it, as do
GitHub Actions, GitLab CI and most other runners. ``make test`` installs every declared dependency first
(``pip install -e .[notebooks,test,dev]`` and, for the browser tests, ``make browser``), so there nothing is
missing either way. A skip is only right for what a machine truly lacks (a CUDA GPU).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def in_ci() -> bool:
    """True when the ``CI`` environment variable says this run is the project's CI."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(what: str, how: str, *, module_level: bool = False) -> None:
    """Fail under CI (a declared dependency must be there), skip elsewhere; ``what`` names it, ``how`` says
    how to install it."""
    msg = f"{what} is missing: {how}"
    if in_ci():
        pytest.fail(msg + " -- CI must run this test, not skip it", pytrace=False)
    pytest.skip(msg, allow_module_level=module_level)


def need(module: str, *, module_level: bool = False) -> ModuleType:
    """Import ``module``, a declared test dependency. Absent (not installed): fail under CI, skip elsewhere.
    Installed but broken (any other ImportError): always an error, never a skip."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.split(".")[0]
        if e.name is None or e.name.split(".")[0] != top:
            raise   # the module is there, one of its own imports is missing: a broken install
        missing(f"{top} (a declared test dependency)", 'pip install -e ".[notebooks,test]" (make venv)',
                module_level=module_level)
        raise AssertionError("unreachable") from e
