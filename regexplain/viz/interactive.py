"""Kernel-free explorer: a plotly HTML page with the three views, a λ slider, a component, a subject and a
picture menu (arrows, warped grid, Jacobian-determinant map).

Every (subject, component, λ) picture is precomputed as :class:`SliceView` s and stored as plotly traces;
the slider and menus only toggle visibility, so the page works from a plain file with no Python behind it.
The field ``D(λu) − D(0)`` does not depend on the subject, so the arrows of a (component, λ) are stored
once and every subject is cut at the same slices; the warped contour is stored per subject.
Contours come from ``contourpy`` (matplotlib's own contour engine), arrows are line segments with heads,
binned by norm into a few colours of :data:`~regexplain.viz.slices.ARROW_CMAP`; one length scale and one
colour range (the colour bar) hold for every picture; a legend names the contours and the arrows (the
motion of the structure by default), orientation letters come from the image affine and the caption states
the views' orientation and what each picture draws, in which direction. The warped grid and the Jacobian map
(a PNG per view, coloured by :func:`~regexplain.viz.slices.jacobian_rgb` as the explorer colours it) are, like
the arrows, stored once per (component, λ). A few lines of JavaScript keep λ (and the picture) when the
component or subject changes. :func:`component_views` decodes the pictures with
the explorer's λ convention (``D(λu) − D(0)`` by default, so λ = 0 is the identity; ``literal=True`` for
the paper's ``D(λu)``). plotly.js is written once beside the pages (``plotly.min.js``), not into each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import to_hex

from regexplain.io import atomic_path
from regexplain.viz.slices import (
    ARROW_CMAP,
    GRID_COLOR,
    MOVING_COLOR,
    PICTURE_NAMES,
    WARPED_COLOR,
    SliceView,
    arrow_grid,
    auto_arrow_scale,
    contour_xy,
    grid_polylines,
    jacobian_limit,
    jacobian_rgb,
    orientation_caption,
    picture_caption,
)

N_ARROW_BINS = 4
N_FIXED = 5  # arrow colour bar, Jacobian colour bar, legend entries: moving contour, warped contour, arrows

HEAD_ANGLE = np.deg2rad(28.0)
HEAD_FRACTION = 0.35  # of the arrow's length
DIGITS = 2  # coordinates are stored rounded to 1/100 voxel: the page's size, not its picture

#: Where each orientation letter sits in its view (axis-domain coordinates, anchors).
EDGE_SPOTS = {"top": (0.5, 0.99, "center", "top"), "bottom": (0.5, 0.01, "center", "bottom"),
              "left": (0.01, 0.5, "left", "middle"), "right": (0.99, 0.5, "right", "middle")}

#: The page's controls: every slider and menu uses plotly's "skip" method and this script shows the
#: traces of the chosen (subject, component, λ), so each control keeps the others' values.
CONTROLS_JS = """
var gd = document.getElementById('{plot_id}');
var m = gd.layout.meta, st = {s: 0, c: 0, l: m.start, p: 0};
function show() {
  var total = gd.data.length, vis = new Array(total).fill(false), t, pic = m.pictures[st.p];
  for (t = 0; t < m.n_fixed; t++) vis[t] = true;
  vis[m.arrow_bar] = pic === 'arrows';
  vis[m.jac_bar] = pic === 'jacobian';
  var b = m.n_fixed + st.s * m.per_subject;
  for (t = b; t < b + m.per_subject; t++) vis[t] = pic !== 'jacobian' || (t - b) % 2 === 1;  // the map hides the image
  var at = {arrows: [m.arrows_at, m.per_arrows], grid: [m.grids_at, m.per_grid], jacobian: [m.jacs_at, m.per_jac]}[pic];
  b = at[0] + (st.c * m.n_lams + st.l) * at[1];
  for (t = b; t < b + at[1]; t++) vis[t] = true;
  b = m.warped_at + ((st.s * m.n_comps + st.c) * m.n_lams + st.l) * m.per_warped;
  for (t = b; t < b + m.per_warped; t++) vis[t] = true;
  var prefix = 'component ' + m.comps[st.c] + ', ' + m.subjects[st.s] + ': λ (' + m.unit + ') = ';
  Plotly.update(gd, {visible: vis}, {'sliders[0].active': st.l, 'sliders[0].currentvalue.prefix': prefix});
}
gd.on('plotly_sliderchange', function (e) { st.l = e.slider.active; show(); });
gd.on('plotly_buttonclicked', function (e) { st[e.button.args[0]] = e.button.args[1]; show(); });
"""


def _rounded(values) -> list[float | None]:
    return [None if v is None or not np.isfinite(v) else round(float(v), DIGITS) for v in values]


def arrow_segments(sv: SliceView, step: int, vmax: float, scale: float
                   ) -> list[tuple[list[float | None], list[float | None]]]:
    """Arrows (shaft and a two-stroke head) grouped into :data:`N_ARROW_BINS` norm bins (x = col, y = row);
    arrows shorter than 1/20 voxel are left out, so an identity draws nothing."""
    rows, cols = arrow_grid(sv.image.shape, step)
    du, dv = sv.arrows[0][rows, cols] * scale, sv.arrows[1][rows, cols] * scale
    bins = (sv.norm[rows, cols] / max(vmax, 1e-6) * N_ARROW_BINS).astype(int)
    bins = np.clip(bins, 0, N_ARROW_BINS - 1)
    length = np.hypot(du, dv)
    out = []
    for b in range(N_ARROW_BINS):
        sel = (bins == b) & (length > 0.05)
        x0, y0 = cols[sel].astype(float), rows[sel].astype(float)
        x1, y1 = x0 + dv[sel], y0 + du[sel]
        ang, head = np.arctan2(y1 - y0, x1 - x0), np.maximum(HEAD_FRACTION * length[sel], 0.4)
        strokes = [x0, x1, np.nan * x0, x1, x1 - head * np.cos(ang - HEAD_ANGLE), np.nan * x0,
                   x1, x1 - head * np.cos(ang + HEAD_ANGLE), np.nan * x0]
        ys = [y0, y1, np.nan * y0, y1, y1 - head * np.sin(ang - HEAD_ANGLE), np.nan * y0,
              y1, y1 - head * np.sin(ang + HEAD_ANGLE), np.nan * y0]
        out.append((_rounded(np.stack(strokes, 1).ravel()), _rounded(np.stack(ys, 1).ravel())))
    return out


#: ``views[subject][component]``: one list per λ of the three SliceViews (one per view).
PageViews = Mapping[str, Mapping[int, Sequence[Sequence[SliceView]]]]


def _axes(k: int) -> tuple[str, str]:
    return ("x", "y") if k == 0 else (f"x{k + 1}", f"y{k + 1}")


def _png_uri(rgb: np.ndarray) -> str:
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def explorer_figure(views: PageViews, lams: Sequence[float], *, title: str = "", lam_unit: str = "σ",
                    arrow_step: int = 3, pictures: Sequence[str] | None = None) -> go.Figure:
    """Plotly figure: the three views of one picture per (subject, component, λ); a λ slider, a component
    menu, a subject menu and a picture menu.

    Args:
        views: subject -> 1-based component -> per λ (one per value of ``lams``) the SliceViews of the views,
            every subject cut at the same slices (:func:`component_views`).
        lams: the λ values of the slider.
        pictures: what the picture menu offers, of ``"arrows"``, ``"grid"``, ``"jacobian"`` (the first is
            shown first); default all three when the SliceViews carry Jacobian maps, else arrows and grid.
    """
    subjects = list(views)
    comps = list(views[subjects[0]]) if subjects else []
    if not comps or any(list(views[s]) != comps or any(len(views[s][c]) != len(lams) for c in comps)
                        for s in subjects):
        raise ValueError("views needs, for every subject and component, one list of SliceViews per λ value")
    first = views[subjects[0]][comps[0]][0]
    nv = len(first)
    field_views = [sv for c in comps for row in views[subjects[0]][c] for sv in row]  # one per (comp, λ, view)
    has_jac = all(sv.jacobian is not None for sv in field_views)
    pictures = list(pictures or (("arrows", "grid", "jacobian") if has_jac else ("arrows", "grid")))
    if not pictures or any(p not in PICTURE_NAMES for p in pictures) or ("jacobian" in pictures and not has_jac):
        raise ValueError(f"pictures {pictures}: choose among {list(PICTURE_NAMES)} (the Jacobian needs "
                         "SliceViews built with jacobian=True)")
    every = [sv for s in subjects for c in comps for row in views[s][c] for sv in row]
    vmax = max(float(sv.norm.max()) for sv in every)
    longest = max(float(np.hypot(*sv.arrows).max()) for sv in every)
    scale = auto_arrow_scale(longest, arrow_step)
    jac_lim = jacobian_limit([sv.jacobian for sv in field_views]) if has_jac else 2.0
    start = int(np.argmin(np.abs(np.asarray(lams, float))))  # open at λ closest to 0
    widths = [sv.image.shape[1] for sv in first]
    gap = 0.03
    total_w = sum(widths)
    domains, x = [], 0.0
    for w in widths:
        d = w / total_w * (1 - gap * (nv - 1))
        domains.append((x, x + d))
        x += d + gap
    shown = pictures[0]

    fig = go.Figure()
    stretch = "" if scale == 1 else f"<br>arrows ×{scale:.2g}"
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False,
                             visible=shown == "arrows",
                             marker={"color": [0.0], "cmin": 0.0, "cmax": max(vmax, 1e-6), "showscale": True,
                                     "colorscale": [[t, to_hex(ARROW_CMAP(t))] for t in np.linspace(0, 1, 5)],
                                     "colorbar": {"title": {"text": f"|arrow| (voxels){stretch}"}, "len": 0.6}}))
    ramp = np.exp(np.linspace(-np.log(jac_lim), np.log(jac_lim), 9))
    fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", hoverinfo="skip", showlegend=False,
                             visible=shown == "jacobian",
                             marker={"color": [0.0], "cmin": -np.log(jac_lim), "cmax": np.log(jac_lim),
                                     "showscale": True,
                                     "colorscale": [[t, "rgb({},{},{})".format(*c)] for t, c in
                                                    zip(np.linspace(0, 1, 9), jacobian_rgb(ramp, jac_lim),
                                                        strict=True)],
                                     "colorbar": {"title": {"text": "det J<br>(green: ≤ 0,<br>folding)"}, "len": 0.6,
                                                  "tickvals": [-np.log(jac_lim), 0.0, np.log(jac_lim)],
                                                  "ticktext": [f"{1 / jac_lim:.2g}", "1", f"{jac_lim:.2g}"]}}))
    mode = first[0].arrow_mode
    legend = [("moving contour (subject)", MOVING_COLOR),
              ("warped contour", WARPED_COLOR),
              ("arrows: " + ("motion of the structure" if mode == "motion" else "sampling offsets u(x)"),
               to_hex(ARROW_CMAP(0.6)))]
    for name, colour in legend:
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line={"color": colour, "width": 3}, name=name,
                                 hoverinfo="skip", showlegend=True))
    for s in subjects:  # per subject: its image and moving contour in each view
        for k, sv in enumerate(views[s][comps[0]][0]):
            xa, ya = _axes(k)
            fig.add_trace(go.Heatmap(z=np.round(sv.image, 2), colorscale="gray", showscale=False, hoverinfo="skip",
                                     xaxis=xa, yaxis=ya, visible=s == subjects[0] and shown != "jacobian"))
            mx, my = contour_xy(sv.moving_label)
            fig.add_trace(go.Scatter(x=_rounded(mx), y=_rounded(my), mode="lines", hoverinfo="skip",
                                     line={"color": MOVING_COLOR, "width": 2}, showlegend=False, xaxis=xa, yaxis=ya,
                                     visible=s == subjects[0]))
    arrows_at = len(fig.data)
    for ci, c in enumerate(comps):  # per (component, λ): the arrows, the same for every subject
        for li, row in enumerate(views[subjects[0]][c]):
            for k, sv in enumerate(row):
                xa, ya = _axes(k)
                for b, (ax_, ay_) in enumerate(arrow_segments(sv, arrow_step, vmax, scale)):
                    fig.add_trace(go.Scatter(x=ax_, y=ay_, mode="lines", hoverinfo="skip", showlegend=False,
                                             line={"color": to_hex(ARROW_CMAP((b + 0.5) / N_ARROW_BINS)), "width": 2},
                                             xaxis=xa, yaxis=ya,
                                             visible=ci == 0 and li == start and shown == "arrows"))
    grids_at = len(fig.data)
    for ci, c in enumerate(comps):  # per (component, λ): the warped grid, true scale
        for li, row in enumerate(views[subjects[0]][c]):
            for k, sv in enumerate(row):
                xa, ya = _axes(k)
                gx: list[float | None] = []
                gy: list[float | None] = []
                for line in grid_polylines(sv, arrow_step):
                    gx += line[:, 0].tolist() + [None]
                    gy += line[:, 1].tolist() + [None]
                fig.add_trace(go.Scatter(x=_rounded(gx), y=_rounded(gy), mode="lines", hoverinfo="skip",
                                         showlegend=False, line={"color": GRID_COLOR, "width": 1}, xaxis=xa, yaxis=ya,
                                         visible=ci == 0 and li == start and shown == "grid"))
    jacs_at = len(fig.data)
    for ci, c in enumerate(comps if has_jac else ()):  # per (component, λ): the Jacobian map as a PNG
        for li, row in enumerate(views[subjects[0]][c]):
            for k, sv in enumerate(row):
                xa, ya = _axes(k)
                fig.add_trace(go.Image(source=_png_uri(jacobian_rgb(sv.jacobian, jac_lim)), x0=0, dx=1, y0=0, dy=1,
                                       hoverinfo="skip", xaxis=xa, yaxis=ya,
                                       visible=ci == 0 and li == start and shown == "jacobian"))
    warped_at = len(fig.data)
    for si, s in enumerate(subjects):  # per (subject, component, λ): the warped contour
        for ci, c in enumerate(comps):
            for li, row in enumerate(views[s][c]):
                for k, sv in enumerate(row):
                    xa, ya = _axes(k)
                    wx, wy = contour_xy(sv.warped_label)
                    fig.add_trace(go.Scatter(x=_rounded(wx), y=_rounded(wy), mode="lines", hoverinfo="skip",
                                             line={"color": WARPED_COLOR, "width": 2}, showlegend=False,
                                             xaxis=xa, yaxis=ya, visible=si == 0 and ci == 0 and li == start))
    steps = [{"method": "skip", "label": f"{lam:+g}", "args": []} for lam in lams]
    prefix = f"component {comps[0]}, {subjects[0]}: λ ({lam_unit}) = "
    menus = [{"buttons": [{"method": "skip", "label": f"component {c}", "args": ["c", ci]}
                          for ci, c in enumerate(comps)], "direction": "down", "x": 0.0, "y": 1.16,
              "xanchor": "left"},
             {"buttons": [{"method": "skip", "label": s, "args": ["s", si]} for si, s in enumerate(subjects)],
              "direction": "down", "x": 0.14, "y": 1.16, "xanchor": "left"}]
    if len(pictures) > 1:
        menus.append({"buttons": [{"method": "skip", "label": PICTURE_NAMES[p], "args": ["p", pi]}
                                  for pi, p in enumerate(pictures)], "direction": "down", "x": 0.3, "y": 1.16,
                      "xanchor": "left"})
    annotations = []
    for k, sv in enumerate(first):
        xa, ya = _axes(k)
        annotations.append({"text": f"<b>{sv.view}</b> · slice {sv.index}", "xref": f"{xa} domain",
                            "yref": f"{ya} domain", "x": 0.5, "y": 1.0, "yanchor": "bottom", "showarrow": False})
        for where, (ax_, ay_, xan, yan) in EDGE_SPOTS.items():
            if sv.edges:
                annotations.append({"text": f"<b>{sv.edges[where]}</b>", "xref": f"{xa} domain",
                                    "yref": f"{ya} domain", "x": ax_, "y": ay_, "xanchor": xan, "yanchor": yan,
                                    "showarrow": False, "font": {"color": "#9fe0ff", "size": 15},
                                    "bgcolor": "rgba(0, 0, 0, 0.55)"})
    captions = [picture_caption(p, mode) for p in pictures] + [orientation_caption(first)]
    annotations.append({"text": "<br>".join(captions), "xref": "paper", "yref": "paper", "x": 0.0, "y": 0.0,
                        "yshift": -130, "xanchor": "left", "yanchor": "top", "showarrow": False, "align": "left",
                        "font": {"size": 12}})  # below the λ slider
    h = max(sv.image.shape[0] for sv in first)
    px = 1100 / total_w
    bottom = 140 + 18 * len(captions)  # the λ slider, then the caption
    fig.update_layout(
        meta={"n_fixed": N_FIXED, "arrow_bar": 0, "jac_bar": 1, "per_subject": 2 * nv, "arrows_at": arrows_at,
              "per_arrows": nv * N_ARROW_BINS, "grids_at": grids_at, "per_grid": nv, "jacs_at": jacs_at,
              "per_jac": nv, "warped_at": warped_at, "per_warped": nv, "n_lams": len(lams), "n_comps": len(comps),
              "start": start, "comps": comps, "subjects": subjects, "unit": lam_unit, "pictures": pictures},
        title=title, sliders=[{"active": start, "steps": steps, "currentvalue": {"prefix": prefix},
                               "pad": {"t": 40}}],
        updatemenus=menus, annotations=annotations, width=1100 + 180, height=int(h * px) + 130 + bottom,
        plot_bgcolor="black", legend={"orientation": "h", "x": 0.52, "y": 1.16, "xanchor": "left"},
        margin={"l": 20, "r": 20, "t": 130, "b": bottom}, font={"size": 13})
    for k, (sv, dom) in enumerate(zip(first, domains, strict=True)):
        xa, ya = _axes(k)
        hh, ww = sv.image.shape
        fig.update_layout({f"xaxis{'' if k == 0 else k + 1}": {"domain": dom, "range": [-0.5, ww - 0.5],
                                                                "showticklabels": False, "showgrid": False,
                                                                "zeroline": False, "anchor": ya},
                           f"yaxis{'' if k == 0 else k + 1}": {"range": [hh - 0.5, -0.5], "showticklabels": False,
                                                                "showgrid": False, "zeroline": False,
                                                                "scaleanchor": xa, "anchor": xa}})
    return fig


def write_html(fig: go.Figure, path: str | Path) -> Path:
    """The page, with plotly.js written once beside it (``plotly.min.js``: every page of the folder shares
    it; opens offline, from a file or a server, no CDN)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=False, full_html=True, post_script=CONTROLS_JS)
    text = path.read_text(encoding="utf-8")
    tag = '<script src="plotly.min.js"></script>'
    if tag not in text:  # plotly's "directory" mode would write plotly.min.js next to the *temporary* file
        with atomic_path(path) as tmp:
            tmp.write_text(text.replace("<head>", f"<head><meta charset=\"utf-8\" />{tag}", 1), encoding="utf-8")
    js = path.parent / "plotly.min.js"
    if not js.is_file():
        from plotly.offline import get_plotlyjs

        with atomic_path(js) as tmp:
            tmp.write_text(get_plotlyjs(), encoding="utf-8")
    return path


def component_views(model, dec, subjects: Mapping[str, tuple], components: Sequence[int], lams: Sequence[float], *,
                    views: Sequence[str] = ("sagittal", "coronal", "axial"), units: str = "sigma",
                    literal: bool = False, arrows: str = "motion", axcodes=None, jacobian: bool = True
                    ) -> dict[str, dict[int, list]]:
    """``explorer_figure``'s input: subject -> 1-based component -> per λ the SliceViews of ``views``, of the
    0-based ``components``, decoded as the widget explorer does (``D(λu) − D(0)`` unless ``literal``); every
    subject is cut at the first one's slices through the structure.

    Args:
        subjects: id -> (image, label), ``(D, H, W)`` arrays.
        axcodes: the images' axis codes (views, flips and letters; None: drawn as if RAS).
        jacobian: give every SliceView its Jacobian map (the page's "Jacobian determinant" picture).
    """
    from regexplain.registration.spatial import sampling_jacobian
    from regexplain.viz.slices import slice_view
    from regexplain.viz.widgets import initial_state

    ids = list(subjects)
    state = initial_state(model, dec, *subjects[ids[0]], units=units, literal=literal, axcodes=axcodes)
    out: dict[str, dict[int, list]] = {s: {} for s in ids}
    for i in components:
        fields = [state.displacement(i, lam) for lam in lams]
        dets = [sampling_jacobian(f) if jacobian else None for f in fields]
        for s in ids:
            image, label = subjects[s]
            out[s][i + 1] = [[slice_view(image, label, f, v, state.indices[v], arrows=arrows, axcodes=axcodes,
                                         jacobian=jacobian and s == ids[0], sampling_det=det)
                              for v in views] for f, det in zip(fields, dets, strict=True)]
    return out
