"""Kernel-free explorer: a self-contained plotly HTML page with a λ slider and a component dropdown.

Every (component, λ) picture is precomputed as :class:`SliceView` s and stored as plotly traces; the
slider and dropdown only toggle visibility, so the page works from a plain file with no Python behind it.
Contours come from ``contourpy`` (matplotlib's own contour engine), arrows are line segments with heads,
binned by norm into a few colours of :data:`~regexplain.viz.slices.ARROW_CMAP`; one length scale and one
colour range (the colour bar) hold for every picture. A few lines of JavaScript keep λ when the component
changes. :func:`component_views` decodes the pictures with the explorer's λ convention (``D(λu) − D(0)``
by default, so λ = 0 is the identity; ``literal=True`` for the paper's ``D(λu)``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import to_hex

from regexplain.io import atomic_path
from regexplain.viz.slices import ARROW_CMAP, MOVING_COLOR, SliceView, auto_arrow_scale, contour_xy

N_ARROW_BINS = 4
TRACES_PER_STATE = 1 + N_ARROW_BINS  # warped contour + arrow bins
N_FIXED = 3  # image, moving contour, colour bar
HEAD_ANGLE = np.deg2rad(28.0)
HEAD_FRACTION = 0.35  # of the arrow's length

#: Dropdown -> same λ, other component (plotly's own dropdown would reset the slider).
KEEP_LAMBDA_JS = """
var gd = document.getElementById('{plot_id}');
var m = gd.layout.meta, lam = m.start;
gd.on('plotly_sliderchange', function (e) { lam = e.slider.active; });
gd.on('plotly_buttonclicked', function (e) {
  var ci = e.active, vis = [], total = m.n_fixed + m.n_states * m.per_state;
  for (var t = 0; t < total; t++) vis.push(t < m.n_fixed);
  var s = m.n_fixed + (ci * m.n_lams + lam) * m.per_state;
  for (var t = s; t < s + m.per_state; t++) vis[t] = true;
  var slider = JSON.parse(JSON.stringify(m.sliders[ci]));
  slider.active = lam;
  Plotly.update(gd, {visible: vis}, {sliders: [slider]});
});
"""


def arrow_segments(sv: SliceView, step: int, vmax: float, scale: float
                   ) -> list[tuple[list[float | None], list[float | None]]]:
    """Arrows (shaft and a two-stroke head) grouped into :data:`N_ARROW_BINS` norm bins (x = col, y = row);
    zero-length arrows are left out, so an identity draws nothing."""
    rows, cols = np.mgrid[0:sv.image.shape[0]:step, 0:sv.image.shape[1]:step]
    du, dv = sv.arrows[0][::step, ::step] * scale, sv.arrows[1][::step, ::step] * scale
    bins = (sv.norm[::step, ::step] / max(vmax, 1e-6) * N_ARROW_BINS).astype(int)
    bins = np.clip(bins, 0, N_ARROW_BINS - 1)
    length = np.hypot(du, dv)
    out = []
    for b in range(N_ARROW_BINS):
        sel = (bins == b) & (length > 1e-6)
        x0, y0 = cols[sel].astype(float), rows[sel].astype(float)
        x1, y1 = x0 + dv[sel], y0 + du[sel]
        ang, head = np.arctan2(y1 - y0, x1 - x0), HEAD_FRACTION * length[sel]
        strokes = [x0, x1, np.nan * x0, x1, x1 - head * np.cos(ang - HEAD_ANGLE), np.nan * x0,
                   x1, x1 - head * np.cos(ang + HEAD_ANGLE), np.nan * x0]
        ys = [y0, y1, np.nan * y0, y1, y1 - head * np.sin(ang - HEAD_ANGLE), np.nan * y0,
              y1, y1 - head * np.sin(ang + HEAD_ANGLE), np.nan * y0]
        xs_, ys_ = np.stack(strokes, 1).ravel(), np.stack(ys, 1).ravel()
        out.append(([None if np.isnan(v) else float(v) for v in xs_],
                    [None if np.isnan(v) else float(v) for v in ys_]))
    return out


def _state_traces(sv: SliceView, step: int, vmax: float, scale: float, visible: bool) -> list[go.Scatter]:
    x, y = contour_xy(sv.warped_label)
    traces = [go.Scatter(x=x, y=y, mode="lines", line={"color": "gold", "width": 2}, name="warped",
                         visible=visible, hoverinfo="skip", showlegend=False)]
    for b, (ax_, ay_) in enumerate(arrow_segments(sv, step, vmax, scale)):
        colour = to_hex(ARROW_CMAP((b + 0.5) / N_ARROW_BINS))
        traces.append(go.Scatter(x=ax_, y=ay_, mode="lines", line={"color": colour, "width": 1.5},
                                 visible=visible, hoverinfo="skip", showlegend=False))
    return traces


def explorer_figure(views: Mapping[int, Sequence[SliceView]], lams: Sequence[float], *, title: str = "",
                    lam_unit: str = "σ", arrow_step: int = 3) -> go.Figure:
    """Plotly figure: one picture per (component, λ); slider over λ, dropdown over components.

    Args:
        views: 1-based component -> SliceViews, one per value of ``lams`` (same slice and moving image).
        lams: the λ values of the slider.
    """
    comps = list(views)
    if not comps or any(len(views[c]) != len(lams) for c in comps):
        raise ValueError("views needs, for every component, one SliceView per λ value")
    first = views[comps[0]][0]
    vmax = max(float(sv.norm.max()) for c in comps for sv in views[c])
    longest = max(float(np.hypot(*sv.arrows).max()) for c in comps for sv in views[c])
    scale = auto_arrow_scale(longest, arrow_step)
    start = int(np.argmin(np.abs(np.asarray(lams, float))))  # open at λ closest to 0

    fig = go.Figure()
    fig.add_trace(go.Heatmap(z=first.image, colorscale="gray", showscale=False, hoverinfo="skip"))
    mx, my = contour_xy(first.moving_label)
    fig.add_trace(go.Scatter(x=mx, y=my, mode="lines", line={"color": MOVING_COLOR, "width": 2},
                             name="moving", hoverinfo="skip", showlegend=False))
    # the legend: an invisible marker trace carrying the arrows' colour bar (fixed for every picture)
    stretch = "" if scale == 1 else f"<br>arrows ×{scale:.3g}"
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False,
                             marker={"color": [0.0], "cmin": 0.0, "cmax": max(vmax, 1e-6), "showscale": True,
                                     "colorscale": [[t, to_hex(ARROW_CMAP(t))] for t in np.linspace(0, 1, 5)],
                                     "colorbar": {"title": {"text": f"|u| (voxels){stretch}"}, "len": 0.6}}))
    n_fixed = N_FIXED
    for ci, c in enumerate(comps):
        for li, sv in enumerate(views[c]):
            for tr in _state_traces(sv, arrow_step, vmax, scale, ci == 0 and li == start):
                fig.add_trace(tr)
    n_states = len(comps) * len(lams)

    def visible(ci: int, li: int) -> list[bool]:
        vis = [True] * n_fixed + [False] * (n_states * TRACES_PER_STATE)
        s = n_fixed + (ci * len(lams) + li) * TRACES_PER_STATE
        vis[s:s + TRACES_PER_STATE] = [True] * TRACES_PER_STATE
        return vis

    def slider(ci: int) -> dict:
        steps = [{"method": "restyle", "args": [{"visible": visible(ci, li)}],
                  "label": f"{lam:+g}"} for li, lam in enumerate(lams)]
        prefix = f"component {comps[ci]}, λ ({lam_unit}) = "
        return {"active": start, "steps": steps, "currentvalue": {"prefix": prefix}, "pad": {"t": 30}}

    # "skip": KEEP_LAMBDA_JS switches the component at the slider's λ (see write_html)
    buttons = [{"method": "skip", "label": f"component {c}", "args": [ci]} for ci, c in enumerate(comps)]
    h, w = first.image.shape
    fig.update_layout(
        meta={"n_fixed": n_fixed, "per_state": TRACES_PER_STATE, "n_lams": len(lams), "n_states": n_states,
              "start": start, "sliders": [slider(ci) for ci in range(len(comps))]},
        title=title, sliders=[slider(0)], width=max(420, int(520 * w / max(h, w))) + 80,
        height=max(420, int(520 * h / max(h, w))) + 160, plot_bgcolor="black",
        updatemenus=[{"buttons": buttons, "direction": "down", "x": 0.0, "y": 1.12, "xanchor": "left"}],
        margin={"l": 20, "r": 20, "t": 80, "b": 20})
    fig.update_xaxes(range=[-0.5, w - 0.5], showticklabels=False, showgrid=False, zeroline=False)
    fig.update_yaxes(range=[h - 0.5, -0.5], showticklabels=False, showgrid=False, zeroline=False,
                     scaleanchor="x")
    return fig


def write_html(fig: go.Figure, path: str | Path) -> Path:
    """Self-contained HTML (plotly.js inlined: opens offline, no kaleido/Chrome)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True, post_script=KEEP_LAMBDA_JS)
    return path


def component_views(model, dec, image, label, components: Sequence[int], lams: Sequence[float], view: str, *,
                    units: str = "sigma", literal: bool = False, index: int | None = None
                    ) -> dict[int, list[SliceView]]:
    """``explorer_figure``'s input: 1-based component -> one SliceView per λ of the 0-based ``components``,
    decoded as the widget explorer does (``D(λu) − D(0)`` unless ``literal``), slice through the structure."""
    from regexplain.viz.slices import slice_view
    from regexplain.viz.widgets import initial_state

    state = initial_state(model, dec, image, label, units=units, literal=literal, view=view, index=index)
    return {i + 1: [slice_view(state.image, state.label, state.displacement(i, lam), view, state.index)
                    for lam in lams] for i in components}
