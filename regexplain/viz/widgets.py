"""The λ-slider explorer (notebook 04 and the Voilà app): ipywidgets around pure rendering functions.

All logic lives in :func:`explorer_grid` / :func:`render_explorer_png`, which take an :class:`ExplorerState`
and need no browser or kernel; :func:`build_explorer` only wires widgets to them. CSS classes
(``lam-slider``, ``lam-text``, ``comp-slider``, ``ncomp-slider``, ``units-dd``, ``literal-cb``,
``arrows-dd``, ``own-scale-cb``, ``subject-dd``, ``slice-slider``, ``view-dd``, ``explorer-plot``,
``explorer-status``) let the browser tests find the controls.

λ convention: the picture shows ``D(λ u_i) − D(0)`` by default, the deformation the component adds, so
λ = 0 is the identity (a trained decoder's ``D(0)`` is not: it is the network's answer to two identical
inputs). ``literal=True`` shows the paper's ``D(λ u_i)`` as decoded (docs/deviations.md); the box states the
open run's measured ``|D(0)|``.

Arrows show the motion of the structure by default (:func:`regexplain.registration.spatial.motion_field`), the sampling
offsets ``u`` with ``arrows="sampling"``; the picture's second title line says which.

λ grid: ±3σ_i in 0.1σ_i steps for every component, in σ units or in the paper's absolute units (the same
positions, labelled ``λ = s σ_i``). Fields are decoded in small batches around the requested λ and cached,
so the next key press finds its field decoded. Redraws run on a worker thread that always draws the
latest request: key presses that arrive while it draws coalesce into one picture of the last value.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlencode

import numpy as np
import torch

from regexplain.registration.spatial import ARROW_MODES, VIEW_AXIS
from regexplain.viz.raster import PanelRow, arrow_step, render_rows_png, zoom_for
from regexplain.viz.slices import SliceView, auto_arrow_scale, default_index, slice_view

#: λ slider range and step in σ units of the selected component (absolute units: times σ_i).
LAM_RANGE_SIGMA = 3.0
LAM_STEP_SIGMA = 0.1
UNITS = ("sigma", "absolute")
VIEWS = tuple(VIEW_AXIS)
#: At most this many components side by side.
MAX_SHOWN = 4
#: Fields decoded per batch around a requested λ (one batch costs about as much as one field).
DECODE_BATCH = 8
#: A redraw waits this long for more key presses before drawing (coalescing), in seconds.
QUIET_S = 0.03
MINUS = "\u2212"


def grid_lams(units: str, sigma: float) -> tuple[float, float]:
    """(half range, step) of the λ slider for a component of standard deviation ``sigma``."""
    s = 1.0 if units == "sigma" else max(float(sigma), 1e-12)
    return LAM_RANGE_SIGMA * s, LAM_STEP_SIGMA * s


def parse_lam(text: str) -> float:
    """A typed λ: ``"−2"`` (the Unicode minus the read-outs show), ``"-2"``, ``"+1.5"``, ``"2σ"``."""
    t = str(text).strip().replace(MINUS, "-").replace("\u2013", "-").replace("σ", "").replace(",", ".")
    return float(t.strip())


def format_lam(value: float) -> str:
    return f"{value:+.3g}".replace("-", MINUS)


class _FieldCache:
    """Decoded fields ``D(s u_i)`` (absolute strength ``s``, voxels) and ``D(0)``.

    A strength on the slider's grid (``k`` steps of ``step``) is decoded with its block of
    :data:`DECODE_BATCH` grid neighbours (``k // DECODE_BATCH``): moving λ step by step mostly finds the
    field ready, and a field is the same bits whichever way one got to it (same batch, same codes)."""

    def __init__(self, size: int = 96):
        self.size = size
        self._d: OrderedDict[tuple[int, float], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(i: int, s: float) -> tuple[int, float]:
        return (-1, 0.0) if s == 0 else (int(i), round(float(s), 6))  # D(0 u_i) = D(0) for every i

    def literal(self, model, dec, i: int, s: float, *, step: float = 0.0) -> np.ndarray:
        """``D(s u_i)`` as a voxel displacement; ``step``: the slider's step for component ``i``."""
        batch = [float(s)]
        if step > 0 and s != 0:
            k = round(s / step)
            if abs(s - k * step) <= 1e-6 * step:  # on the grid: decode its block
                lo = (k // DECODE_BATCH) * DECODE_BATCH
                batch = [j * step for j in range(lo, lo + DECODE_BATCH) if j != 0]
                s = k * step
        key = self.key(i, s)
        with self._lock:
            if key not in self._d:
                self._decode(model, dec, max(key[0], 0), batch if key[0] >= 0 else [0.0])
            self._d.move_to_end(key)
            return self._d[key]

    def _decode(self, model, dec, i: int, strengths: list[float]) -> None:
        from regexplain.analysis.latent import decode_codes
        from regexplain.registration import spatial

        codes = np.stack([dec.code(i, s, "absolute") for s in strengths])
        disp = spatial.map_to_displacement(decode_codes(model, codes, batch_size=DECODE_BATCH,
                                                        reference=dec.reference)).numpy()
        for s, d in zip(strengths, disp, strict=True):
            self._d[self.key(i, s)] = d
            self._d.move_to_end(self.key(i, s))
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def field(self, model, dec, i: int, s: float, literal: bool, *, step: float = 0.0) -> np.ndarray:
        d = self.literal(model, dec, i, s, step=step)
        return d if literal else d - self.literal(model, dec, i, 0.0)


@dataclass
class ExplorerState:
    """Everything one explorer picture depends on (components 0-based; λ in ``units``)."""
    model: Any
    decomposition: Any
    image: np.ndarray           # (D, H, W)
    label: np.ndarray           # (D, H, W)
    component: int = 0          # first component shown
    lam: float = 0.0
    view: str = "sagittal"      # the view whose slice the slice slider moves
    index: int | None = None    # that view's slice (default: through the structure)
    units: str = "sigma"        # "sigma" or "absolute" (the paper's λ)
    literal: bool = False       # True: the paper's D(λu); False: D(λu) − D(0)
    n_shown: int = 1            # components side by side: component .. component + n_shown - 1
    arrows: str = "motion"      # "motion" (where the structure goes) or "sampling" (u itself)
    own_scale: bool = False     # side by side: each component its own arrow length and colour scale
    axcodes: tuple[str, str, str] | None = None   # image orientation (RAS letters) for the edge letters
    views: tuple[str, ...] = VIEWS
    indices: dict[str, int] = field(default_factory=dict)
    subject: str = ""
    cache: _FieldCache = field(default_factory=_FieldCache, repr=False)

    def shown(self) -> list[int]:
        k = int(self.decomposition.n_components)
        return list(range(self.component, min(self.component + max(self.n_shown, 1), k)))

    def sigma(self, i: int) -> float:
        return float(self.decomposition.sigma[i])

    def strength(self, i: int, lam: float | None = None) -> float:
        """Absolute strength of component ``i`` at ``lam`` (the state's λ by default). In absolute units
        the slider is the first component's; the others are shown at the same number of σ."""
        lam = self.lam if lam is None else lam
        if self.units == "sigma":
            return lam * self.sigma(i)
        return lam if i == self.component else lam / max(self.sigma(self.component), 1e-12) * self.sigma(i)

    def lam_sigma(self, i: int, lam: float | None = None) -> float:
        return self.strength(i, lam) / max(self.sigma(i), 1e-12)

    def displacement(self, i: int, lam: float | None = None) -> np.ndarray:
        """``(3, D, H, W)`` sampling field ``u`` of component ``i`` as the explorer shows it."""
        return self.cache.field(self.model, self.decomposition, i, self.strength(i, lam), self.literal,
                                step=LAM_STEP_SIGMA * self.sigma(i))

    def lam_range(self, i: int | None = None) -> float:
        return grid_lams(self.units, self.sigma(self.component if i is None else i))[0]

    def reference_norm(self, i: int) -> float:
        """The largest displacement norm of component ``i`` over the slider's range (±3σ_i): arrow length and
        colour scales are fixed by it, so a picture looks the same length at the same field whatever λ is."""
        r = LAM_RANGE_SIGMA * self.sigma(i)
        fields = [self.cache.field(self.model, self.decomposition, i, s, self.literal,
                                   step=LAM_STEP_SIGMA * self.sigma(i)) for s in (-r, r)]
        return max(float(np.linalg.norm(f, axis=0).max()) for f in fields)

    def zero_offset(self) -> dict[str, float]:
        """The measured ``|D(0)|`` of the open run, in voxels: mean inside the structure, and largest."""
        zero = self.cache.literal(self.model, self.decomposition, 0, 0.0)
        norm = np.linalg.norm(zero, axis=0)
        mask = self.label > 0
        return {"mean_in_structure": float(norm[mask].mean() if mask.any() else norm.mean()),
                "max": float(norm.max())}


def _volume(x) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.squeeze(arr).reshape(arr.shape[-3:])


def explorer_slice_view(state: ExplorerState, component: int | None = None, view: str | None = None) -> SliceView:
    """One panel: the moving subject warped by the shown field of ``component`` (default: the state's)."""
    i = state.component if component is None else component
    v = view or state.view
    return slice_view(state.image, state.label, state.displacement(i), v, state.indices.get(v), arrows=state.arrows,
                      axcodes=state.axcodes)


def explorer_grid(state: ExplorerState) -> list[list[SliceView]]:
    """Rows: the shown components; columns: the shown views."""
    return [[explorer_slice_view(state, i, v) for v in state.views] for i in state.shown()]


def lam_label(state: ExplorerState, i: int) -> str:
    """λ in σ units and in the paper's absolute units (σ units compare components; absolute is the paper's)."""
    s, n = state.strength(i), state.lam_sigma(i)
    text = f"λ = {n:+.2f}σ ({s:+.3g} abs.)" if state.units == "sigma" else f"λ = {s:+.3g} abs. ({n:+.2f}σ)"
    return text.replace("-", MINUS)


def what_is_drawn(state: ExplorerState) -> str:
    return "literal D(λu) (the paper's; λ = 0 shows D(0))" if state.literal else "D(λu) − D(0) (λ = 0: identity)"


def render_explorer_png(state: ExplorerState) -> bytes:
    """Draw the explorer's current picture and return it as PNG bytes (what the image widget shows)."""
    grid = explorer_grid(state)
    shown = state.shown()
    zoom = zoom_for([sv.image.shape for sv in grid[0]])
    step = arrow_step(zoom)
    refs = {i: max(state.reference_norm(i), 1e-6) for i in shown}
    shared = max(refs.values())
    ratio = np.asarray(state.decomposition.explained_variance_ratio)
    basis = state.decomposition.meta.get("basis", "pca")
    rows = []
    for i, views in zip(shown, grid, strict=True):
        vmax = refs[i] if state.own_scale else shared
        header = f"component {i + 1} ({basis}) · {ratio[i]:.1%} var. · {lam_label(state, i)}"
        rows.append(PanelRow(views, header, vmax, auto_arrow_scale(vmax, step)))
    scale_note = "each component its own arrow scale" if state.own_scale and len(shown) > 1 else \
        "one arrow scale for every panel"
    cols = [f"{v} · slice {sv.index} of {state.image.shape[VIEW_AXIS[v]]}"
            for v, sv in zip(state.views, grid[0], strict=True)]
    titles = [f"{state.subject + ' · ' if state.subject else ''}{what_is_drawn(state)}",
              f"{ARROW_MODES[state.arrows]}",
              f"red: moving contour · gold: warped · arrows coloured by length, dark red → white; {scale_note}"]
    return render_rows_png(rows, col_labels=cols, title_lines=titles, step=step, zoom=zoom)


def initial_state(model, decomposition, image, label, **kw) -> ExplorerState:
    """A state on the first component at λ = 0, every view's slice through the structure."""
    img, lab = _volume(image), _volume(label).astype(np.int64)
    state = ExplorerState(model, decomposition, img, lab, **kw)
    for v in VIEWS:
        state.indices.setdefault(v, default_index(lab, VIEW_AXIS[v]))
    if state.index is not None:  # a hand-edited link may name a slice outside the volume
        state.indices[state.view] = int(np.clip(state.index, 0, img.shape[VIEW_AXIS[state.view]] - 1))
    state.index = state.indices[state.view]
    return state


# ------------------------------------------------------------------------------------------- URL state

_KEYS = ("subject", "component", "n", "lam", "units", "literal", "view", "slice", "arrows", "scale")


def state_query(state: ExplorerState) -> str:
    """The state as a URL query (1-based component, as the sliders show it)."""
    return urlencode({"subject": state.subject, "component": state.component + 1, "n": state.n_shown,
                      "lam": f"{state.lam:g}", "units": state.units, "literal": int(state.literal),
                      "view": state.view, "slice": state.indices.get(state.view, ""), "arrows": state.arrows,
                      "scale": "own" if state.own_scale else "shared"})


def parse_query(query: str | None, n_components: int) -> dict[str, Any]:
    """``initial_state`` keywords (plus ``subject``) from a URL query; unknown or malformed values are
    dropped so a hand-edited link still opens."""
    q = {k: v[-1] for k, v in parse_qs((query or "").lstrip("?")).items() if k in _KEYS}
    out: dict[str, Any] = {}
    conv = {"component": lambda v: min(max(int(v), 1), n_components) - 1, "n": lambda v: min(max(int(v), 1), MAX_SHOWN),
            "lam": parse_lam, "units": lambda v: v if v in UNITS else None, "literal": lambda v: v in ("1", "true"),
            "view": lambda v: v if v in VIEW_AXIS else None, "slice": int, "subject": str,
            "arrows": lambda v: v if v in ARROW_MODES else None, "scale": lambda v: v == "own"}
    names = {"n": "n_shown", "slice": "index", "scale": "own_scale"}
    for k, v in q.items():
        try:
            value = conv[k](v)
        except ValueError:
            continue
        if value is not None and not (isinstance(value, float) and not np.isfinite(value)):
            out[names.get(k, k)] = value
    return out


# ------------------------------------------------------------------------------------------- widgets

def _snap(value: float, r: float, step: float) -> float:
    return float(np.clip(round(value / step) * step, -r, r))


def _literal_note(state: ExplorerState) -> str:
    z = state.zero_offset()
    return (f"this run's D(0): |D(0)| = {z['mean_in_structure']:.2g} voxel on average in the structure, "
            f"{z['max']:.2g} at most")


def build_explorer(model, decomposition, image, label, *, subjects: dict | None = None, interactive: bool = True,
                   **state_kw):
    """Controls (subject, first component, how many side by side, λ and its units, literal toggle, arrows,
    scales, view and slice) above the picture: every shown component in the three orthogonal views at one λ.

    Args:
        subjects: optional ``id -> (image, label)``; a dropdown switches between them.
        interactive: with ``False`` the widgets are built and drawn once but not wired (static exports).
    The returned box carries the state as ``.explorer_state``, the widgets as ``.controls``, a
    ``.refresh()`` callable (draws now), ``.settle()`` (waits for the worker's last picture) and
    ``.on_change`` (callables run after each redraw, e.g. a summary panel).
    """
    import ipywidgets as W

    state = initial_state(model, decomposition, image, label, **state_kw)
    k = int(decomposition.n_components)
    state.component = min(max(state.component, 0), k - 1)
    r, step = grid_lams(state.units, state.sigma(state.component))
    state.lam = _snap(state.lam, r, step)  # the slider's grid
    subj = W.Dropdown(options=list(subjects or {state.subject: None}), value=state.subject, description="subject")
    comp = W.IntSlider(value=state.component + 1, min=1, max=k, description="component")
    nshow = W.IntSlider(value=min(state.n_shown, MAX_SHOWN, k), min=1, max=min(MAX_SHOWN, k),
                        description="side by side")
    lam = W.FloatSlider(value=state.lam, min=-r, max=r, step=step, readout=False, continuous_update=False,
                        description="λ (σ)" if state.units == "sigma" else "λ (abs.)",
                        layout=W.Layout(width="360px"))
    lam_text = W.Text(value=format_lam(state.lam), continuous_update=False, layout=W.Layout(width="90px"),
                      tooltip="type a value: −2, -2 or 2σ; Enter")
    units = W.Dropdown(options=[("σ units", "sigma"), ("paper's absolute λ", "absolute")], value=state.units,
                       description="λ units")
    literal = W.Checkbox(value=state.literal, description="literal D(λu) (paper): λ = 0 shows D(0), not the identity",
                         layout=W.Layout(width="auto"), indent=False)
    literal_note = W.HTML(f"<span style='font-size:13px'>({_literal_note(state)})</span>")
    arrows = W.Dropdown(options=[("motion of the structure", "motion"), ("sampling offsets u(x)", "sampling")],
                        value=state.arrows, description="arrows")
    own = W.Checkbox(value=state.own_scale, description="each component its own arrow scale (side by side)",
                     layout=W.Layout(width="auto"), indent=False)
    view = W.Dropdown(options=list(VIEW_AXIS), value=state.view, description="slice of")
    sl = W.IntSlider(value=state.indices[state.view], min=0, max=state.image.shape[VIEW_AXIS[state.view]] - 1,
                     description="slice", continuous_update=False)
    first = render_explorer_png(state)
    plot = W.Image(value=first, format="png", layout=W.Layout(width="100%", max_width="1240px", height="auto"))
    status = W.HTML()
    for w, cls in ((lam, "lam-slider"), (lam_text, "lam-text"), (comp, "comp-slider"), (nshow, "ncomp-slider"),
                   (units, "units-dd"), (literal, "literal-cb"), (arrows, "arrows-dd"), (own, "own-scale-cb"),
                   (subj, "subject-dd"), (sl, "slice-slider"), (view, "view-dd"), (plot, "explorer-plot"),
                   (status, "explorer-status")):
        w.add_class(cls)
    rows = [W.HBox([comp, nshow]), W.HBox([lam, lam_text, units]), W.HBox([literal, literal_note]),
            W.HBox([arrows, own]), W.HBox([view, sl]), status, plot]
    box = W.VBox(([subj] if subjects and len(subjects) > 1 else []) + rows, layout=W.Layout(width="100%"))
    box.explorer_state = state
    box.on_change = []
    box.renders = 1
    busy = {"on": False}

    def sync_state() -> bool:
        """Copy the controls into the state (and controls that follow others); True when a redraw is due."""
        if subjects and subj.value != state.subject:  # a new subject: slices through its structure
            img, lab = subjects[subj.value]
            state.image, state.label, state.subject = _volume(img), _volume(lab).astype(np.int64), subj.value
            state.indices = {v: default_index(state.label, VIEW_AXIS[v]) for v in VIEWS}
            sl.value = state.indices[view.value]
            literal_note.value = f"<span style='font-size:13px'>({_literal_note(state)})</span>"
        sigma_now = state.sigma(comp.value - 1)
        if units.value != state.units or comp.value - 1 != state.component:
            # λ keeps its number of σ, in the other units or on another component: one strength compares
            # components, and the absolute slider's range and step are the new component's ±3σ in 0.1σ
            value = state.lam_sigma(state.component, lam.value) * (sigma_now if units.value == "absolute" else 1.0)
            state.units = units.value
            r, step = grid_lams(state.units, sigma_now)
            lam.min, lam.max = -max(r, abs(lam.min)), max(r, lam.max)  # widen first: value never clipped
            lam.step = step
            lam.value = _snap(value, r, step)
            lam.min, lam.max = -r, r
            lam.description = "λ (σ)" if state.units == "sigma" else "λ (abs.)"
        if view.value != state.view:  # the slider now moves that view's slice
            sl.max = state.image.shape[VIEW_AXIS[view.value]] - 1
            sl.value = state.indices[view.value]
        elif sl.value != state.indices[state.view]:
            state.indices[state.view] = sl.value
        state.component, state.n_shown, state.lam = comp.value - 1, nshow.value, lam.value
        state.view, state.index, state.literal = view.value, state.indices[view.value], literal.value
        state.arrows, state.own_scale = arrows.value, own.value
        lam_text.value = format_lam(state.lam)
        return True

    def snapshot() -> ExplorerState:
        return replace(state, indices=dict(state.indices))

    def draw(s: ExplorerState) -> None:
        t0 = time.perf_counter()
        plot.value = render_explorer_png(s)
        box.renders += 1
        status.value = (f"<span style='font-size:12px;color:#666'>picture {box.renders} drawn in "
                        f"{(time.perf_counter() - t0) * 1000:.0f} ms</span>")
        for fn in box.on_change:
            fn(s)

    def refresh(_change=None) -> None:
        """Draw now, on the calling thread."""
        if busy["on"]:  # adjusting one control from another fires its own event: draw once
            return
        busy["on"] = True
        try:
            with lock:
                sync_state()
                s = snapshot()
            draw(s)
        finally:
            busy["on"] = False

    lock = threading.Lock()   # held only to copy the controls into the state, never while drawing
    wanted = threading.Event()
    idle = threading.Event()
    idle.set()

    def worker() -> None:
        while True:
            wanted.wait()
            time.sleep(QUIET_S)
            while wanted.is_set():  # more presses meanwhile: draw only the last state
                wanted.clear()
                with lock:
                    s = snapshot()
                try:
                    draw(s)
                except Exception as e:  # noqa: BLE001 - a failed redraw says so instead of killing the thread
                    status.value = f"<span style='color:#c33'>redraw failed: {type(e).__name__}: {e}</span>"
            idle.set()

    def request(_change=None) -> None:
        """A control moved: take its value now (the kernel answers the next key press at once), draw the
        latest state on the worker."""
        if busy["on"]:
            return
        busy["on"] = True
        try:
            with lock:
                sync_state()
        finally:
            busy["on"] = False
        idle.clear()
        wanted.set()

    def on_text(_change=None) -> None:
        """A typed λ (never the read-out the kernel itself writes: that would send the slider back an older
        value while a user's key presses are still on their way)."""
        if busy["on"]:
            return
        try:
            value = parse_lam(lam_text.value)
        except ValueError:
            lam_text.value = format_lam(lam.value)
            return
        snapped = _snap(value, lam.max, lam.step)
        if abs(snapped - lam.value) < lam.step / 2:
            lam_text.value = format_lam(lam.value)
        else:
            lam.value = snapped

    def settle(timeout: float = 60.0) -> bool:
        """Wait until the worker has drawn the last request (tests, scripts); True when it has."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if idle.is_set() and not wanted.is_set():
                return True
            time.sleep(0.005)
        return False

    box.refresh = refresh
    box.settle = settle
    if interactive:
        threading.Thread(target=worker, name="explorer-redraw", daemon=True).start()
        for w in (subj, comp, nshow, lam, units, literal, arrows, own, view, sl):
            w.observe(request, names="value")
        lam_text.observe(on_text, names="value")
    box.controls = {"subject": subj, "component": comp, "n_shown": nshow, "lam": lam, "lam_text": lam_text,
                    "units": units, "literal": literal, "literal_note": literal_note, "arrows": arrows,
                    "own_scale": own, "view": view, "slice": sl, "plot": plot, "status": status}
    return box
