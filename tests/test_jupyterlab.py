"""Notebooks in a real JupyterLab, driven in headless Chromium as a user would: open one (no kernel dialog),
Run All Cells, then see the figures inline; in notebook 04 the explorer redraws on the λ slider and the
component slider; notebook 08 shows its basis comparison inline.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from browser import chromium_page, fill_text, image_bytes, press_slider, screenshot, wait_for_image

from regexplain import pipeline
from regexplain.app.server import HOST, free_port

NOTEBOOK = "04_lambda_sweeps"
BASES_NOTEBOOK = "08_bases_and_seeds"
PLOT = ".explorer-plot"
CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"


@pytest.fixture(scope="module")
def lab_notebook(tmp_path_factory):
    """Notebook 04 as `make sync` writes it (python3 kernelspec), with the smoke profile's folders filled in
    its parameters cell and INTERACTIVE left True, in a folder JupyterLab serves."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root = tmp_path_factory.mktemp("lab")
    pipeline.prepare("smoke", root / "data", root / "runs", log=lambda _msg: None)
    params = {**pipeline.notebook_parameters("smoke", root / "data", root / "runs", root / "figures"),
              "INTERACTIVE": True}
    for name in (NOTEBOOK, BASES_NOTEBOOK):
        nb_path = pipeline.to_ipynb(pipeline.NOTEBOOK_DIR / f"{name}.py", root / f"{name}.ipynb")
        nbformat.write(parameterize_notebook(load_notebook_node(str(nb_path)), params), nb_path)
    return root


#: Lab settings for the test: every cell stays in the page (JupyterLab 4 detaches off-screen cells by
#: default, which would hide their outputs from the count) and no news prompt over the notebook.
LAB_SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"}}


@pytest.fixture
def lab_server(lab_notebook, tmp_path):
    import json

    settings = tmp_path / "lab-settings"
    for name, value in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # `make lab` unsets it too: inline
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"
    log = open(lab_notebook / "lab.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--ip={HOST}", f"--port={port}",
                             "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.open_browser=False",
                             "--ServerApp.port_retries=0", f"--ServerApp.root_dir={lab_notebook}",
                             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
                             f"--LabApp.user_settings_dir={settings}", f"--ServerApp.runtime_dir={tmp_path / 'rt'}",
                             *(["--allow-root"] if os.geteuid() == 0 else [])],  # containers run tests as root
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(proc, port)
        yield f"http://{HOST}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _wait_for_port(proc, port: int, timeout: float = 60.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "jupyter lab exited before serving"
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"jupyter lab did not open port {port} within {timeout:.0f} s")


_PROMPTS_JS = """() => Array.from(document.querySelectorAll(
  '.jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputPrompt')).map(p => p.innerText.trim())"""


def _run_all(page, lab_server: str, name: str) -> None:
    """Open notebook ``name`` in JupyterLab and Run > Run All Cells; fails on an error output or a cell that
    has not run within 300 s."""
    page.goto(f"{lab_server}/lab/workspaces/t{int(time.time())}/tree/{name}.ipynb?reset")
    page.wait_for_selector(CELLS, timeout=120_000)
    assert page.locator(".jp-Dialog").count() == 0, "a kernel dialog: the notebook carries no kernelspec"
    page.wait_for_function("() => document.body.innerText.includes('Python 3 (ipykernel) | Idle')", timeout=120_000)
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        prompts = page.evaluate(_PROMPTS_JS)
        if prompts and all(p[1:-2].isdigit() for p in prompts):
            break
        assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0, \
            page.locator("[data-mime-type='application/vnd.jupyter.error']").first.inner_text()[-2000:]
        time.sleep(0.5)
    else:
        raise AssertionError(f"cells did not all run within 300 s: {page.evaluate(_PROMPTS_JS)}")
    assert page.locator("[data-mime-type='application/vnd.jupyter.error']").count() == 0


@pytest.mark.browser
@pytest.mark.slow
def test_notebook_08_shows_the_basis_comparison_inline(lab_server, lab_notebook, tmp_path):
    with chromium_page(tmp_path / "chrome-profile", width=1500, height=1100) as page:
        _run_all(page, lab_server, BASES_NOTEBOOK)
        figures = page.locator(".jp-OutputArea-output[data-mime-type='image/png'] img")
        assert figures.count() >= 1                                   # the basis comparison chart
        tables = page.locator(".jp-RenderedMarkdown table")
        assert tables.count() >= 2                                    # every basis' scores; the winners
        assert "random_orthonormal" in tables.first.inner_text() and "best basis" in tables.nth(1).inner_text()
        figures.first.scroll_into_view_if_needed()
        screenshot(page, tmp_path / "lab_08_bases.png")


@pytest.mark.browser
@pytest.mark.slow
def test_notebook_04_in_jupyterlab(lab_server, lab_notebook, tmp_path):
    t0 = time.monotonic()
    with chromium_page(tmp_path / "chrome-profile", width=1500, height=1100) as page:
        _run_all(page, lab_server, NOTEBOOK)
        run_s = time.monotonic() - t0
        inline = page.locator(".jp-OutputArea-output[data-mime-type='image/png'] img").count()
        assert inline >= 6, f"{inline} inline figures"  # Fig 2, 6, 3 (x2), 4, 7
        page.locator(".jp-OutputArea-output[data-mime-type='image/png'] img").nth(2).scroll_into_view_if_needed()
        screenshot(page, tmp_path / "lab_1_figures.png")

        page.locator(PLOT).first.scroll_into_view_if_needed()
        before = wait_for_image(page, PLOT, timeout_s=120)
        screenshot(page, tmp_path / "lab_2_explorer.png")
        fill_text(page, "lam-text", "2")
        after_lam = wait_for_image(page, PLOT, differs_from=before)
        assert after_lam != before
        page.locator(PLOT).first.scroll_into_view_if_needed()
        screenshot(page, tmp_path / "lab_3_lambda_2sigma.png")
        press_slider(page, "comp-slider", "ArrowRight")
        after_comp = wait_for_image(page, PLOT, differs_from=after_lam)
        assert after_comp != after_lam
        # λ is kept when the component changes
        assert page.locator(".lam-text input").first.input_value() == "+2"
        page.wait_for_function("() => document.querySelector('.component-summary').innerText"
                               ".includes('Component 2')", timeout=30_000)
        assert image_bytes(page, PLOT) == after_comp
        screenshot(page, tmp_path / "lab_4_component_2.png")
    print(f"JupyterLab: notebook 04 ran in {run_s:.1f} s; whole test {time.monotonic() - t0:.1f} s")
