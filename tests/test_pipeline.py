"""Pipeline: notebook parameters and runner, failing-notebook errors, stage logging, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regexplain import pipeline
from regexplain.cli import build_parser


def test_notebook_parameters_and_sources(tmp_path):
    p = pipeline.notebook_parameters("smoke", "d", "r", tmp_path, 7)
    assert p["INTERACTIVE"] is False and p["SEED"] == 7 and Path(p["DATA_DIR"]).is_absolute()
    stems = [s.stem for s in pipeline.notebook_sources()]
    assert stems == sorted(stems) and stems[0].startswith("01") and len(stems) == 9


def test_every_notebook_has_a_parameters_cell():
    import jupytext

    for src in pipeline.notebook_sources():
        nb = jupytext.read(src)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, src
        for name in ("PROFILE", "DATA_DIR", "RUNS_DIR", "FIGURES_DIR", "SEED", "INTERACTIVE"):
            assert f"{name} =" in tagged[0].source, (src, name)


def test_a_ctrl_c_swallowed_in_one_stage_stops_the_next(capsys):
    import contextlib
    import signal

    from regexplain import interrupts

    ran, lines = [], []

    def swallowing():               # a library's bare ``except:`` around the moment Ctrl-C comes
        with contextlib.suppress(BaseException):
            signal.raise_signal(signal.SIGINT)
        ran.append("first")

    previous = interrupts.install()  # as the CLI does
    try:
        pipeline._stage("decompose x", swallowing, lines.append)
        with pytest.raises(KeyboardInterrupt):
            pipeline._stage("notebook y", lambda: ran.append("second"), lines.append)
    finally:
        interrupts.restore(previous)
    assert ran == ["first"] and len(lines) == 1 and lines[0].startswith("[decompose x]")


@pytest.mark.notebook
def test_failing_notebook_names_notebook_and_cell(tmp_path):
    src = tmp_path / "09_broken.py"
    src.write_text('# %% tags=["parameters"]\nX = 1\n\n# %%\ny = X + 1\n\n# %%\nraise ValueError("boom")\n')
    with pytest.raises(pipeline.NotebookError, match=r"09_broken\.py failed in cell \d+.*ValueError: boom"):
        pipeline.execute_notebook(src, tmp_path / "out", {"X": 2}, timeout=120)
    assert (tmp_path / "out" / "09_broken.ipynb").is_file()  # the executed copy is kept for inspection


def test_cli_registers_reproduce():
    args = build_parser().parse_args(["reproduce", "--profile", "smoke", "--notebooks", "01", "04"])
    assert args.profile == "smoke" and args.notebooks == ["01", "04"] and callable(args.func)


def test_notebook_setup_resolves_paths_and_never_chooses_a_backend(tmp_path):
    code = ("import matplotlib; matplotlib.use('svg'); import regexplain.viz.figures, regexplain.viz.widgets; "
            "from regexplain import pipeline; pipeline.notebook_setup('figures'); "
            "print(matplotlib.get_backend())")
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "svg"        # importing the package and the setup left the user's choice
    rel, absolute = pipeline.notebook_setup("figures", tmp_path)
    assert rel == pipeline.REPO_ROOT / "figures"
    assert absolute == tmp_path


@pytest.mark.notebook
def test_executed_notebooks_show_their_figures_inline(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")   # as the Makefile exports it: the kernel must still show figures
    src = tmp_path / "09_figure.py"
    out_png = tmp_path / "fig.png"
    src.write_text('# %% tags=["parameters"]\nOUT = ""\n\n# %%\nimport matplotlib.pyplot as plt\n'
                   'from regexplain.viz.figures import save_figure\n'
                   'fig, ax = plt.subplots()\nax.plot([0, 1], [1, 0])\nsave_figure(fig, OUT);\n')
    nb = pipeline.execute_notebook(src, tmp_path / "out", {"OUT": str(out_png)}, timeout=120)
    outputs = [o for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])]
    assert [o for o in outputs if "image/png" in o.get("data", {})], outputs   # displayed once, inline
    assert len([o for o in outputs if "image/png" in o.get("data", {})]) == 1
    assert not [o for o in outputs if "text/plain" in o.get("data", {}) and "PosixPath" in o["data"]["text/plain"]]
    assert out_png.stat().st_size > 1000                                       # and saved
    assert os.environ["MPLBACKEND"] == "Agg"                                  # the caller's env is restored


def test_stage_logs_one_line_and_holds_back_what_the_stage_prints(capsys):
    import warnings

    lines = []

    def noisy():
        print("step 1: loss=0.3")
        warnings.warn("a library warning", UserWarning, stacklevel=1)
        return "did it"

    assert pipeline._stage("train x", noisy, lines.append) == "did it"
    assert len(lines) == 1 and lines[0].startswith("[train x] did it (")
    out, err = capsys.readouterr()
    assert "step 1" not in out + err and "library warning" not in out + err

    def failing():
        print("the reason it failed")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        pipeline._stage("bad", failing, lines.append)
    assert "the reason it failed" in capsys.readouterr().err  # shown when the stage fails


@pytest.mark.notebook
def test_executed_notebook_leaves_the_console_quiet(tmp_path, capfd):
    """No kernel transport / debugger warnings on the main job's console, no stderr output in the copy."""
    src = tmp_path / "09_quiet.py"
    src.write_text('# %% tags=["parameters"]\nX = 0\n\n# %%\nprint(X + 1)\n')
    nb = pipeline.execute_notebook(src, tmp_path / "out", {"X": 1}, timeout=120)
    outputs = [o for c in json.loads(nb.read_text())["cells"] for o in c.get("outputs", [])]
    assert ["".join(o["text"]) for o in outputs if o.get("name") == "stdout"] == ["2\n"]
    assert not [o for o in outputs if o.get("name") == "stderr"]
    console = capfd.readouterr()
    assert "WARNING" not in console.out + console.err and "Debugger" not in console.err, console.err[-2000:]
