"""tests/deps.py: a declared test dependency that is missing fails under CI and skips elsewhere; one that is
installed but broken is always an error."""

from __future__ import annotations

import sys

import pytest
from deps import need


@pytest.mark.parametrize("ci, outcome", [("true", pytest.fail.Exception), ("1", pytest.fail.Exception),
                                         ("", pytest.skip.Exception), ("false", pytest.skip.Exception)])
def test_a_missing_dependency_fails_under_ci_and_skips_elsewhere(monkeypatch, ci, outcome):
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome) as e:
        need("regexplain_no_such_dependency.sub")
    assert "regexplain_no_such_dependency (a declared test dependency) is missing" in str(e.value)


def test_an_installed_but_broken_dependency_is_an_error(monkeypatch, tmp_path):
    (tmp_path / "brokendep").mkdir()
    (tmp_path / "brokendep" / "__init__.py").write_text("import regexplain_its_own_missing_import\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(ModuleNotFoundError, match="regexplain_its_own_missing_import"):
        need("brokendep")
    sys.modules.pop("brokendep", None)


def test_a_present_dependency_is_returned():
    assert need("numpy.linalg") is sys.modules["numpy.linalg"]
