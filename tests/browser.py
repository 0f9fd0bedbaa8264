"""Helpers for driving the explorer app in Debian's headless Chromium through Playwright.

The browser is kept off the network: flags switch off background traffic, and every request that is not
for 127.0.0.1 or a ``data:`` URL is aborted (Voilà asks a CDN for font-awesome, which must not hang).
"""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

from deps import missing

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ALLOWED_HOSTS = {"127.0.0.1"}
#: Copies of every screenshot land here too, so a person can look at the last run.
SHOT_COPIES = Path("/tmp/explorer_shots")


def require_chromium() -> Path:
    """Chromium's path; skip locally when it is missing, but fail under CI, where `make browser` installs
    it: a browser test that silently skips in CI tests nothing (:mod:`deps`)."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    missing(str(CHROMIUM), "install Debian's chromium (`make browser`)")


def _allowed(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("data", "blob") or parsed.hostname in ALLOWED_HOSTS


@contextlib.contextmanager
def chromium_page(profile_dir: Path, *, width: int = 1280, height: int = 1100) -> Iterator:
    """A Playwright page in a fresh Chromium profile that can only reach 127.0.0.1."""
    from playwright.sync_api import sync_playwright

    blocked: list[str] = []

    def route(r):
        if _allowed(r.request.url):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        # launch_persistent_context is Playwright's way to give Chromium a fresh --user-data-dir.
        context = pw.chromium.launch_persistent_context(
            str(profile_dir), executable_path=str(require_chromium()), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            context.route("**/*", route)
            page = context.pages[0] if context.pages else context.new_page()
            page.blocked_requests = blocked  # for tests that want to check what was kept off the network
            yield page
        finally:
            context.close()


_IMAGE_BYTES_JS = """async (sel) => {
  const el = document.querySelector(sel);
  const img = el && (el.tagName === 'IMG' ? el : el.querySelector('img'));
  if (!img || !img.src) return null;
  try {
    const buf = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let s = ''; for (const b of buf) s += String.fromCharCode(b);
    return btoa(s);
  } catch (e) { return null; }  // a blob URL revoked by a redraw in between
}"""


def image_bytes(page, selector: str) -> bytes | None:
    """The bytes the plot ``<img>`` shows (the element itself or one inside ``selector``).

    Read through the page because ipywidgets serves them as ``blob:`` URLs that change at every redraw,
    even for identical pictures: comparing bytes is what says the picture changed.
    """
    data = page.evaluate(_IMAGE_BYTES_JS, selector)
    return None if data is None else base64.b64decode(data)


def wait_for_image(page, selector: str, *, differs_from: bytes | None = None, stable_s: float = 0.7,
                   timeout_s: float = 60.0) -> bytes:
    """Wait until the plot's image exists, differs from ``differs_from`` and has stayed the same for
    ``stable_s`` seconds (each key press triggers its own redraw). Returns the image bytes."""
    deadline = time.monotonic() + timeout_s
    last, since = None, time.monotonic()
    while time.monotonic() < deadline:
        data = image_bytes(page, selector)
        now = time.monotonic()
        if data != last:
            last, since = data, now
        elif data and data != differs_from and now - since >= stable_s:
            return data
        time.sleep(0.1)
    state = ("never appeared" if last is None else "did not change" if last == differs_from
             else "kept changing")
    raise AssertionError(f"image under {selector!r} {state} within {timeout_s:.0f} s")


def screenshot(page, path: Path) -> bytes:
    """Save a full-page screenshot to ``path`` and a copy under :data:`SHOT_COPIES`."""
    data = page.screenshot(path=str(path), full_page=True)
    SHOT_COPIES.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, SHOT_COPIES / path.name)
    return data


def press_slider(page, css_class: str, key: str = "ArrowRight", times: int = 1) -> None:
    """Move an ipywidgets slider with the keyboard, as a user would."""
    handle = page.locator(f".{css_class} .noUi-handle").first
    handle.focus()
    for _ in range(times):
        handle.press(key)


# ------------------------------------------------------------------------------- timing in the page

_PAINT_PROBE_JS = """(sel) => {
  window.__paints = [];
  const root = document.querySelector(sel);
  const obs = new MutationObserver(ms => { for (const m of ms) if (m.attributeName === 'src')
      window.__paints.push(performance.now()); });
  obs.observe(root, {attributes: true, subtree: true, attributeFilter: ['src']});
  return true;
}"""


def install_paint_probe(page, selector: str) -> None:
    """Record the page clock (ms) at every change of the plot image's ``src`` in ``window.__paints``."""
    page.evaluate(_PAINT_PROBE_JS, selector)


def paints(page) -> list[float]:
    return page.evaluate("() => window.__paints.slice()")


def timed(page, action, *, timeout_s: float = 60.0, settle_s: float = 0.4) -> tuple[float, int]:
    """Run ``action()`` (key presses, a typed value) and return (seconds from just before it to the first
    new picture, pictures drawn until none came for ``settle_s``)."""
    n = len(paints(page))
    t0 = page.evaluate("() => performance.now()")
    action()
    deadline = time.monotonic() + timeout_s
    while len(paints(page)) <= n:
        if time.monotonic() > deadline:
            raise AssertionError(f"no new picture within {timeout_s:.0f} s")
        time.sleep(0.01)
    count = len(paints(page))
    while True:
        time.sleep(settle_s)
        now = len(paints(page))
        if now == count:
            break
        count = now
    got = paints(page)
    return (got[n] - t0) / 1000.0, len(got) - n


def press_fast(page, css_class: str, key: str, times: int) -> None:
    """``times`` key presses on a slider's handle, as fast as the browser takes them."""
    handle = page.locator(f".{css_class} .noUi-handle").first
    handle.focus()
    for _ in range(times):
        page.keyboard.press(key)


def fill_text(page, css_class: str, text: str) -> None:
    """Type ``text`` into a Text widget and press Enter (its value is sent on Enter)."""
    box = page.locator(f".{css_class} input").first
    box.click()
    box.fill(text)
    box.press("Enter")
