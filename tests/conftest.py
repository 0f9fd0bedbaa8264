"""Shared fixtures: tiny phantom datasets written once per test session (seconds, no network).

Skips. A test skips only for what a machine truly lacks (a CUDA GPU). A declared test dependency (the
``test`` and ``notebooks`` extras of pyproject.toml, and Debian's chromium for the browser tests) that is
missing *fails* the test under CI and skips it elsewhere with a line saying what to install: import them
with :func:`deps.need` (never ``pytest.importorskip``). CI is the ``CI`` environment variable (``1``,
``true`` or ``yes``), which ``.ci/run`` sets and most CI runners set themselves. Nothing skips because of the
order tests run in or the speed of the machine: what a test needs comes from a fixture, and a race is
made deterministic (a hook, an injected fault) rather than skipped when it goes the other way.
"""

from __future__ import annotations

import signal

import pytest

from regexplain.data import synthetic

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_LEAKED: list[str] = []


@pytest.fixture(autouse=True)
def _signal_handlers_restored(request):
    """Each test starts with the handlers the session started with: a test that leaves SIGINT ignored (an
    in-process CLI call cut short) would otherwise make a later test's Ctrl-C do nothing. Tests that left
    one changed are listed at the end of the run, so the leak can be fixed where it starts."""
    before = {s: signal.getsignal(s) for s in _SIGNALS}
    yield
    after = {s: signal.getsignal(s) for s in _SIGNALS}
    if after != before:
        _LEAKED.append(f"{request.node.nodeid}: " + ", ".join(
            f"{signal.Signals(s).name} {before[s]!r} -> {after[s]!r}" for s in _SIGNALS if after[s] != before[s]))
        for s, h in before.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def pytest_terminal_summary(terminalreporter):
    if _LEAKED:
        terminalreporter.section("signal handlers a test left changed (restored after it)")
        for line in _LEAKED:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def hippo_root(tmp_path_factory):
    """12 hippocampus phantoms at 32^3 in the MSD layout (read-only: copy before modifying)."""
    return synthetic.synthesize_hippocampus(tmp_path_factory.mktemp("hippo") / "ds", 12, (32, 32, 32), seed=0,
                                            progress=False)


@pytest.fixture(scope="session")
def lung_root(tmp_path_factory):
    """4 lung phantom patients at 64 x 32 x 64 in the lung layout (read-only: copy before modifying)."""
    return synthetic.synthesize_lung(tmp_path_factory.mktemp("lung") / "ds", 4, (64, 32, 64), seed=0,
                                     progress=False)


@pytest.fixture(scope="session")
def decomposition_dir(tmp_path_factory):
    """A real decomposition of a smoke-trained model: phantoms, a few training steps, K = 3."""
    from regexplain.cli import main
    from regexplain.data.synthetic import synthesize_hippocampus

    root = tmp_path_factory.mktemp("explore")
    # 64^3 phantoms: the hippocampus pipeline pads to 64^3 before resizing to the smoke shape (16^3), so
    # smaller phantoms would leave almost no label voxels to draw contours from.
    data = synthesize_hippocampus(root / "data", 12, (64, 64, 64), seed=0, progress=False)
    assert main(["train", "--profile", "smoke", "--data", str(data), "--out", str(root / "run"),
                 "--no-progress", "--device", "cpu"]) == 0
    assert main(["decompose", "--model", str(root / "run"), "--out", str(root / "dec"), "-k", "3",
                 "--device", "cpu"]) == 0
    return root / "dec"
