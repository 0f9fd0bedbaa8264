"""The λ-slider explorer (notebook 04 and the Voilà app): ipywidgets around pure rendering functions.

All logic lives in :func:`explorer_grid` / :func:`render_explorer_png`, which take an :class:`ExplorerState`
and need no browser or kernel; :func:`build_explorer` only wires widgets to them. CSS classes
(``lam-slider``, ``comp-slider``, ``ncomp-slider``, ``units-dd``, ``literal-cb``, ``subject-dd``,
``slice-slider``, ``view-dd``, ``explorer-plot``) let the browser tests find the controls.

λ convention: the picture shows ``D(λ u_i) − D(0)`` by default, the deformation the component adds, so
λ = 0 is the identity (a trained decoder's ``D(0)`` is not: it is the network's answer to two identical
inputs). ``literal=True`` shows the paper's ``D(λ u_i)`` as decoded (docs/deviations.md).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode

import matplotlib.pyplot as plt
import numpy as np
import torch

from regexplain.spatial import VIEW_AXIS
from regexplain.viz.figures import DARK_BG, plot_slice_grid
from regexplain.viz.slices import SliceView, auto_arrow_scale, default_index, slice_view

#: λ slider range in σ units of the selected component (the comparable scale across components).
LAM_RANGE_SIGMA = 3.0
#: The paper's absolute λ range (Fig 3 sweeps -200..200) and slider step in those units.
LAM_RANGE_ABSOLUTE = 200.0
LAM_STEP = {"sigma": 0.25, "absolute": 25.0}
VIEWS = tuple(VIEW_AXIS)
#: At most this many components side by side.
MAX_SHOWN = 4


class _FieldCache:
    """Decoded fields ``D(s u_i)`` (absolute strength ``s``) and ``D(0)``: dragging back and forth decodes
    once per position."""

    def __init__(self, size: int = 96):
        self.size = size
        self._d: OrderedDict[tuple[int, float], np.ndarray] = OrderedDict()

    def literal(self, model, dec, i: int, s: float) -> np.ndarray:
        from regexplain.latent import elementary_displacement  # model-side import kept lazy

        key = (-1, 0.0) if s == 0 else (int(i), round(float(s), 6))  # D(0 u_i) = D(0) for every i
        if key not in self._d:
            self._d[key] = elementary_displacement(model, dec, max(key[0], 0), key[1])[0].cpu().numpy()
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        self._d.move_to_end(key)
        return self._d[key]

    def field(self, model, dec, i: int, s: float, literal: bool) -> np.ndarray:
        d = self.literal(model, dec, i, s)
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
    views: tuple[str, ...] = VIEWS
    indices: dict[str, int] = field(default_factory=dict)
    subject: str = ""
    arrow_step: int = 3
    cache: _FieldCache = field(default_factory=_FieldCache, repr=False)

    def shown(self) -> list[int]:
        k = int(self.decomposition.n_components)
        return list(range(self.component, min(self.component + max(self.n_shown, 1), k)))

    def strength(self, i: int, lam: float | None = None) -> float:
        """Absolute strength of component ``i`` at ``lam`` (the state's λ by default)."""
        from regexplain.latent import strength

        return strength(self.decomposition, i, self.lam if lam is None else lam, self.units)

    def displacement(self, i: int, lam: float | None = None) -> np.ndarray:
        """``(3, D, H, W)`` field of component ``i`` as the explorer shows it."""
        return self.cache.field(self.model, self.decomposition, i, self.strength(i, lam), self.literal)

    def lam_range(self) -> float:
        return LAM_RANGE_SIGMA if self.units == "sigma" else LAM_RANGE_ABSOLUTE

    def reference_norm(self, i: int) -> float:
        """The largest displacement norm of component ``i`` over the slider's range: arrow length and colour
        scales are fixed by it, so a picture looks the same length at the same field whatever λ is."""
        r = self.lam_range()
        return max(float(np.linalg.norm(self.displacement(i, lam), axis=0).max()) for lam in (-r, r))


def _volume(x) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.squeeze(arr).reshape(arr.shape[-3:])


def explorer_slice_view(state: ExplorerState, component: int | None = None, view: str | None = None) -> SliceView:
    """One panel: the moving subject warped by the shown field of ``component`` (default: the state's)."""
    i = state.component if component is None else component
    v = view or state.view
    return slice_view(state.image, state.label, state.displacement(i), v, state.indices.get(v))


def explorer_grid(state: ExplorerState) -> list[list[SliceView]]:
    """Rows: the shown components; columns: the shown views."""
    return [[explorer_slice_view(state, i, v) for v in state.views] for i in state.shown()]


def lam_label(state: ExplorerState, i: int) -> str:
    """λ in the state's units and in the other one (σ units are comparable; absolute is the paper's)."""
    s, sigma = state.strength(i), float(state.decomposition.sigma[i])
    return f"λ = {state.lam:+.2f}σ ({s:+.3g} abs.)" if state.units == "sigma" else \
        f"λ = {s:+.3g} abs. ({s / max(sigma, 1e-12):+.2f}σ)"


def render_explorer_png(state: ExplorerState, *, panel_height: float = 2.4) -> bytes:
    """Draw the explorer's current picture and return it as PNG bytes (what the image widget shows)."""
    grid = explorer_grid(state)
    vmax = max(state.reference_norm(i) for i in state.shown())
    ratio = np.asarray(state.decomposition.explained_variance_ratio)
    rows = [f"component {i + 1} ({ratio[i]:.0%} var.)\n{lam_label(state, i)}" for i in state.shown()]
    cols = [f"{v} {sv.index}" for v, sv in zip(state.views, grid[0], strict=True)]
    what = "literal D(λu) (paper)" if state.literal else "D(λu) − D(0)"
    fig = plot_slice_grid(grid, row_labels=rows, col_labels=cols, arrow_step=state.arrow_step,
                          panel_height=panel_height, vmax_norm=max(vmax, 1e-6),
                          arrow_scale=auto_arrow_scale(vmax, state.arrow_step),
                          suptitle=f"{state.subject + ': ' if state.subject else ''}{what}; red: moving, gold: warped")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, facecolor=DARK_BG, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


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

_KEYS = ("subject", "component", "n", "lam", "units", "literal", "view", "slice")


def state_query(state: ExplorerState) -> str:
    """The state as a URL query (1-based component, as the sliders show it)."""
    return urlencode({"subject": state.subject, "component": state.component + 1, "n": state.n_shown,
                      "lam": f"{state.lam:g}", "units": state.units, "literal": int(state.literal),
                      "view": state.view, "slice": state.indices.get(state.view, "")})


def parse_query(query: str | None, n_components: int) -> dict[str, Any]:
    """``initial_state`` keywords (plus ``subject``) from a URL query; unknown or malformed values are
    dropped so a hand-edited link still opens."""
    q = {k: v[-1] for k, v in parse_qs((query or "").lstrip("?")).items() if k in _KEYS}
    out: dict[str, Any] = {}
    conv = {"component": lambda v: min(max(int(v), 1), n_components) - 1, "n": lambda v: min(max(int(v), 1), MAX_SHOWN),
            "lam": float, "units": lambda v: v if v in LAM_STEP else None, "literal": lambda v: v in ("1", "true"),
            "view": lambda v: v if v in VIEW_AXIS else None, "slice": int, "subject": str}
    names = {"n": "n_shown", "slice": "index"}
    for k, v in q.items():
        try:
            value = conv[k](v)
        except ValueError:
            continue
        if value is not None and not (isinstance(value, float) and not np.isfinite(value)):
            out[names.get(k, k)] = value
    return out


# ------------------------------------------------------------------------------------------- widgets

def build_explorer(model, decomposition, image, label, *, subjects: dict | None = None, interactive: bool = True,
                   **state_kw):
    """Controls (subject, first component, how many side by side, λ and its units, literal toggle, view and
    slice) above the picture: every shown component in the three orthogonal views at one λ.

    Args:
        subjects: optional ``id -> (image, label)``; a dropdown switches between them.
        interactive: with ``False`` the widgets are built and drawn once but not wired (static exports).
    The returned box carries the state as ``.explorer_state``, the widgets as ``.controls``, a
    ``.refresh()`` callable and ``.on_change`` (callables run after each redraw, e.g. a summary panel).
    """
    import ipywidgets as W

    state = initial_state(model, decomposition, image, label, **state_kw)
    k = int(decomposition.n_components)
    state.component = min(max(state.component, 0), k - 1)
    state.lam = float(np.clip(state.lam, -state.lam_range(), state.lam_range()))  # the slider's range
    subj = W.Dropdown(options=list(subjects or {state.subject: None}), value=state.subject, description="subject")
    comp = W.IntSlider(value=state.component + 1, min=1, max=k, description="component")
    nshow = W.IntSlider(value=min(state.n_shown, MAX_SHOWN, k), min=1, max=min(MAX_SHOWN, k),
                        description="side by side")
    r = state.lam_range()
    lam = W.FloatSlider(value=state.lam, min=-r, max=r, step=LAM_STEP[state.units],
                        description="λ (σ)" if state.units == "sigma" else "λ (abs.)", continuous_update=False)
    units = W.Dropdown(options=[("σ units", "sigma"), ("paper's absolute λ", "absolute")], value=state.units,
                       description="λ units")
    literal = W.Checkbox(value=state.literal, description="literal D(λu) (paper): λ = 0 shows D(0), not the identity",
                         layout=W.Layout(width="auto"), indent=False)
    view = W.Dropdown(options=list(VIEW_AXIS), value=state.view, description="slice of")
    sl = W.IntSlider(value=state.indices[state.view], min=0, max=state.image.shape[VIEW_AXIS[state.view]] - 1,
                     description="slice", continuous_update=False)
    plot = W.Image(value=render_explorer_png(state), format="png")
    for w, cls in ((lam, "lam-slider"), (comp, "comp-slider"), (nshow, "ncomp-slider"), (units, "units-dd"),
                   (literal, "literal-cb"), (subj, "subject-dd"), (sl, "slice-slider"), (view, "view-dd"),
                   (plot, "explorer-plot")):
        w.add_class(cls)
    rows = [W.HBox([comp, nshow]), W.HBox([lam, units]), literal, W.HBox([view, sl]), plot]
    box = W.VBox(([subj] if subjects and len(subjects) > 1 else []) + rows)
    box.explorer_state = state
    box.on_change = []
    busy = {"on": False}

    def refresh(_change=None) -> None:
        if busy["on"]:  # adjusting one control from another fires its own event: draw once
            return
        busy["on"] = True
        try:
            if subjects and subj.value != state.subject:  # a new subject: slices through its structure
                img, lab = subjects[subj.value]
                state.image, state.label, state.subject = _volume(img), _volume(lab).astype(np.int64), subj.value
                state.indices = {v: default_index(state.label, VIEW_AXIS[v]) for v in VIEWS}
                sl.value = state.indices[view.value]
            if units.value != state.units:  # same strength in the other units
                sigma = float(decomposition.sigma[comp.value - 1])
                value = lam.value * sigma if units.value == "absolute" else lam.value / max(sigma, 1e-12)
                state.units = units.value
                r = state.lam_range()
                lam.min, lam.max, lam.step = -r, r, LAM_STEP[state.units]
                lam.description = "λ (σ)" if state.units == "sigma" else "λ (abs.)"
                lam.value = float(np.clip(round(value / lam.step) * lam.step, -r, r))
            if view.value != state.view:  # the slider now moves that view's slice
                sl.max = state.image.shape[VIEW_AXIS[view.value]] - 1
                sl.value = state.indices[view.value]
            elif sl.value != state.indices[state.view]:
                state.indices[state.view] = sl.value
            # λ stays where it is when the component changes: one strength compares components.
            state.component, state.n_shown, state.lam = comp.value - 1, nshow.value, lam.value
            state.view, state.index, state.literal = view.value, state.indices[view.value], literal.value
            plot.value = render_explorer_png(state)
            for fn in box.on_change:
                fn(state)
        finally:
            busy["on"] = False

    box.refresh = refresh
    if interactive:
        for w in (subj, comp, nshow, lam, units, literal, view, sl):
            w.observe(refresh, names="value")
    box.controls = {"subject": subj, "component": comp, "n_shown": nshow, "lam": lam, "units": units,
                    "literal": literal, "view": view, "slice": sl, "plot": plot}
    return box
