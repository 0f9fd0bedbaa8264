"""The kernel-free plotly explorer in headless Chromium: moving the λ slider, then choosing another component,
keeps λ (plotly's own dropdown would reset it; the page's script keeps it)."""

from __future__ import annotations

import functools
import http.server
import threading
import time

import numpy as np
import pytest
from browser import chromium_page

STATE_JS = """() => { const gd = document.querySelector('.js-plotly-plot');
  const vis = gd.data.map(t => t.visible === true);
  return {active: gd.layout.sliders[0].active, first: vis.indexOf(true, gd.layout.meta.n_fixed),
          prefix: gd.layout.sliders[0].currentvalue.prefix}; }"""


def _views(lams):
    """Two components whose pictures differ by λ: a blob shifted by λ voxels along the columns."""
    from regexplain.viz.slices import slice_view

    label = np.zeros((12, 12, 12), int)
    label[4:8, 4:8, 4:8] = 1
    image = label.astype(float)
    out = {}
    for c in (1, 2):
        out[c] = []
        for lam in lams:
            disp = np.zeros((3, 12, 12, 12), np.float32)
            disp[2] = c * lam
            out[c].append(slice_view(image, label, disp, "sagittal"))
    return out


def _wait_for(page, done, timeout: float = 10.0) -> dict:
    """The page's state once ``done(state)`` holds, or the last state seen after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    state = page.evaluate(STATE_JS)
    while not done(state) and time.monotonic() < deadline:
        time.sleep(0.1)
        state = page.evaluate(STATE_JS)
    return state


@pytest.mark.browser
def test_plotly_page_keeps_lambda_when_the_component_changes(tmp_path):
    from regexplain.viz.interactive import N_FIXED, TRACES_PER_STATE, explorer_figure, write_html

    lams = [-2.0, -1.0, 0.0, 1.0, 2.0]
    write_html(explorer_figure(_views(lams), lams, title="t"), tmp_path / "e.html")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium_page(tmp_path / "chrome-profile", width=900, height=800) as page:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/e.html")
            page.wait_for_selector(".slider-rail-rect", timeout=60_000)
            assert page.evaluate(STATE_JS)["active"] == 2  # opens at λ = 0
            rail = page.locator(".slider-rail-rect").first.bounding_box()
            page.mouse.click(rail["x"] + rail["width"] * 0.99, rail["y"] + rail["height"] / 2)  # λ = +2
            # the slider's `active` moves before plotly's restyle shows the step's traces: wait for both
            state = _wait_for(page, lambda s: s["active"] == 4 and s["first"] == N_FIXED + 4 * TRACES_PER_STATE)
            assert state["active"] == 4 and state["first"] == N_FIXED + 4 * TRACES_PER_STATE
            page.locator(".updatemenu-header-group").first.click()
            page.locator(".updatemenu-dropdown-button").nth(1).click()
            state = _wait_for(page, lambda s: s["prefix"].startswith("component 2")
                              and s["first"] == N_FIXED + (len(lams) + 4) * TRACES_PER_STATE)
            assert state["prefix"].startswith("component 2") and state["active"] == 4
            assert state["first"] == N_FIXED + (len(lams) + 4) * TRACES_PER_STATE  # component 2's λ = +2 picture
    finally:
        server.shutdown()
