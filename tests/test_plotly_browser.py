"""The kernel-free plotly explorer in headless Chromium: moving the λ slider, then choosing another component
and another subject, keeps λ and shows that (subject, component, λ)'s traces in all three views."""

from __future__ import annotations

import functools
import http.server
import threading
import time

import numpy as np
import pytest
from browser import chromium_page, screenshot

STATE_JS = """() => { const gd = document.querySelector('.js-plotly-plot'), m = gd.layout.meta;
  const vis = gd.data.map(t => t.visible === true);
  const first = (at, n) => { const i = vis.indexOf(true, at); return i >= 0 && i < at + n ? i : -1; };
  return {active: gd.layout.sliders[0].active, prefix: gd.layout.sliders[0].currentvalue.prefix,
          subject: vis.indexOf(true, m.n_fixed), arrows: first(m.arrows_at, m.grids_at - m.arrows_at),
          grid: first(m.grids_at, m.jacs_at - m.grids_at), jac: first(m.jacs_at, m.warped_at - m.jacs_at),
          image: vis[m.n_fixed], bars: [vis[m.arrow_bar], vis[m.jac_bar]],
          warped: vis.indexOf(true, m.warped_at), shown: vis.filter(v => v).length, meta: m}; }"""


def _views(lams):
    """Two subjects, two components whose pictures differ by λ: a blob shifted by c·λ voxels along W."""
    from regexplain.viz.slices import slice_view

    out = {}
    for s, at in (("one", 4), ("two", 5)):
        label = np.zeros((12, 12, 12), int)
        label[at:at + 4, 4:8, 4:8] = 1
        image = label.astype(float)
        out[s] = {}
        for c in (1, 2):
            out[s][c] = []
            for lam in lams:
                disp = np.zeros((3, 12, 12, 12), np.float32)
                disp[2] = c * lam
                out[s][c].append([slice_view(image, label, disp, v, 6, axcodes=("R", "A", "S"), jacobian=True)
                                  for v in ("sagittal", "coronal", "axial")])
    return out


def _wait_for(page, done, timeout: float = 10.0) -> dict:
    """The page's state once ``done(state)`` holds, or the last state seen after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    state = page.evaluate(STATE_JS)
    while not done(state) and time.monotonic() < deadline:
        time.sleep(0.1)
        state = page.evaluate(STATE_JS)
    return state


def _pick(page, menu: int, item: int) -> None:
    page.locator(".updatemenu-header-group").nth(menu).click()
    page.locator(".updatemenu-dropdown-button").nth(item).click()


@pytest.mark.browser
def test_plotly_page_keeps_lambda_when_the_component_or_subject_changes(tmp_path):
    from regexplain.viz.interactive import explorer_figure, write_html

    lams = [-2.0, -1.0, 0.0, 1.0, 2.0]
    write_html(explorer_figure(_views(lams), lams, title="t"), tmp_path / "e.html")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with chromium_page(tmp_path / "chrome-profile", width=1400, height=900) as page:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/e.html")
            page.wait_for_selector(".slider-rail-rect", timeout=60_000)
            state = page.evaluate(STATE_JS)
            m = state["meta"]
            per_a, per_w, n = m["per_arrows"], m["per_warped"], len(lams)
            assert state["active"] == 2 and state["warped"] == m["warped_at"] + 2 * per_w  # opens at λ = 0
            rail = page.locator(".slider-rail-rect").first.bounding_box()
            page.mouse.click(rail["x"] + rail["width"] * 0.99, rail["y"] + rail["height"] / 2)  # λ = +2
            state = _wait_for(page, lambda s: s["active"] == 4 and s["warped"] == m["warped_at"] + 4 * per_w)
            assert state["active"] == 4 and state["warped"] == m["warped_at"] + 4 * per_w
            assert state["arrows"] == m["arrows_at"] + 4 * per_a
            _pick(page, 0, 1)  # component 2
            state = _wait_for(page, lambda s: s["prefix"].startswith("component 2"))
            assert state["active"] == 4 and state["arrows"] == m["arrows_at"] + (n + 4) * per_a
            assert state["warped"] == m["warped_at"] + (n + 4) * per_w  # component 2's λ = +2, subject one
            _pick(page, 1, 1)  # subject two: its image, contours; the same arrows
            state = _wait_for(page, lambda s: "two" in s["prefix"])
            assert state["active"] == 4 and state["subject"] == m["n_fixed"] + m["per_subject"]
            assert state["arrows"] == m["arrows_at"] + (n + 4) * per_a
            assert state["warped"] == m["warped_at"] + ((2 + 1) * n + 4) * per_w
            # one colour bar at a time: the arrows' here
            assert state["shown"] == m["n_fixed"] - 1 + m["per_subject"] + per_a + per_w
            assert state["bars"] == [True, False] and state["grid"] == -1 and state["jac"] == -1
            screenshot(page, tmp_path / "plotly_page.png")
            _pick(page, 2, 2)  # the Jacobian map: the same (component, λ), its colour bar, the image hidden
            state = _wait_for(page, lambda s: s["jac"] >= 0)
            assert state["jac"] == m["jacs_at"] + (n + 4) * m["per_jac"] and state["arrows"] == -1
            assert state["bars"] == [False, True] and state["image"] is False and state["active"] == 4
            screenshot(page, tmp_path / "plotly_page_jacobian.png")
            _pick(page, 2, 1)  # the warped grid
            state = _wait_for(page, lambda s: s["grid"] >= 0)
            assert state["grid"] == m["grids_at"] + (n + 4) * m["per_grid"] and state["jac"] == -1
            _pick(page, 0, 0)  # another component keeps the picture and λ
            state = _wait_for(page, lambda s: s["prefix"].startswith("component 1"))
            assert state["grid"] == m["grids_at"] + 4 * m["per_grid"] and state["active"] == 4
            screenshot(page, tmp_path / "plotly_page_grid.png")
    finally:
        server.shutdown()
