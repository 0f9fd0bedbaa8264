"""Viz: slice geometry, contours and arrows follow the displacement; explorer callbacks; figures."""

from __future__ import annotations

import io
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from regexplain.viz.slices import ARROW_CMAP, SliceView, plot_slice_view, slice_view, warp_label


def _blob(shape=(12, 14, 16), center=(6, 7, 8), r=3):
    grid = np.indices(shape)
    d2 = sum((g - c) ** 2 for g, c in zip(grid, center, strict=True))
    label = (d2 <= r * r).astype(np.uint8)
    return label.astype(np.float32), label


def _shift(shape, vec):
    disp = np.zeros((3, *shape), np.float32)
    for a, v in enumerate(vec):
        disp[a] = v
    return disp


def test_warped_label_moves_against_displacement():
    # warped(x) = label(x + u): a constant u = +2 along W moves the content by -2 along W
    image, label = _blob()
    warped = warp_label(label, _shift(label.shape, (0, 0, 2)))
    com = lambda m: np.array(np.nonzero(m)).mean(axis=1)  # noqa: E731
    np.testing.assert_allclose(com(warped) - com(label), [0, 0, -2], atol=1e-6)


def test_motion_arrows_point_where_the_contour_goes():
    """A smooth non-uniform field: the default arrows (the motion of the structure) point the way the warped
    contour moved, and are the inverse map's displacement; the sampling offsets point the other way."""
    import torch

    from regexplain.registration.spatial import identity_map, motion_field, warp

    shape = (16, 16, 16)
    image, label = _blob(shape, (8, 8, 8), 4)
    grid = np.indices(shape).astype(np.float32)
    disp = np.zeros((3, *shape), np.float32)
    disp[2] = 2.0 * np.exp(-((grid - 8) ** 2).sum(0) / 40.0)  # a bump: reads from +W near the centre
    m = motion_field(disp)
    com = lambda x: np.array(np.nonzero(x)).mean(axis=1)  # noqa: E731
    shift = com(warp_label(label, disp)) - com(label)
    assert shift[2] < -0.5 and m[2][label > 0].mean() < -0.5 and disp[2][label > 0].mean() > 0.5
    # m(p) + u(p + m(p)) = 0: where the moving point p lands, to the fixed point's tolerance
    p = identity_map(shape)
    residual = torch.as_tensor(m)[None] + warp(torch.as_tensor(disp)[None], p + torch.as_tensor(m)[None])
    assert float(residual.abs().max()) < 1e-3
    sv = slice_view(image, label, disp, "sagittal", 8)
    # the slice's motion = the volume's; RAS sagittal: rows run against W (S up), columns against H (A left),
    # so the picture's (down, right) components are (-m_W, -m_H), transposed and flipped with the pixels
    np.testing.assert_allclose(sv.arrows[0], -m[2][8].T[::-1, ::-1], atol=1e-5)
    np.testing.assert_allclose(sv.arrows[1], -m[1][8].T[::-1, ::-1], atol=1e-5)


def test_orientation_letters_follow_the_affine():
    from regexplain.registration.spatial import axis_codes, view_orientation

    assert axis_codes(np.diag([2.0, 2.0, 2.0, 1.0])) == ("R", "A", "S")
    assert axis_codes(np.diag([-1.0, -1.0, 1.0, 1.0])) == ("L", "P", "S")
    # viewer orientation whatever the axes: S up (sagittal, coronal), A up (axial), A left in sagittal,
    # the patient's right on the left (radiological) or on the right (neurological)
    for codes in (("R", "A", "S"), ("L", "P", "S"), ("A", "S", "R"), ("I", "L", "P")):
        assert view_orientation(codes, "sagittal").edges == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
        assert view_orientation(codes, "coronal").edges == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
        assert view_orientation(codes, "axial").edges == {"top": "A", "bottom": "P", "left": "R", "right": "L"}
        assert view_orientation(codes, "axial", "neurological").edges["left"] == "L"
        # the view cuts the array axis of its anatomical normal
        assert codes[view_orientation(codes, "sagittal").axis] in "RL"
        assert codes[view_orientation(codes, "coronal").axis] in "AP"
        assert codes[view_orientation(codes, "axial").axis] in "SI"
    permuted = np.array([[0, 0, 1.0, 0], [1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1]])  # axes: A, S, R
    assert axis_codes(permuted) == ("A", "S", "R")
    image, label = _blob()
    sv = slice_view(image, label, np.zeros((3, *label.shape), np.float32), "coronal", axcodes=("A", "S", "R"))
    assert sv.edges == {"top": "S", "bottom": "I", "left": "R", "right": "L"}
    assert sv.image.shape == (14, 16)  # coronal of (A, S, R) axes cuts axis 0: rows along S (axis 1)
    with pytest.raises(ValueError, match="convention"):
        view_orientation(None, "axial", "upside-down")
    with pytest.raises(ValueError, match="axis codes"):
        view_orientation(("R", "L", "S"), "axial")


@pytest.mark.parametrize("view,axis,rows,cols", [("sagittal", 0, 2, 1), ("coronal", 1, 2, 0),
                                                  ("axial", 2, 1, 0)])
def test_slice_view_axes(view, axis, rows, cols):
    """RAS axes (the default when the orientation is unknown): every view runs against the array index on
    both picture axes (S, A up; A, R left), so the arrows' components are the two in-plane channels, negated."""
    shape = (12, 14, 16)
    image, label = _blob(shape)
    disp = _shift(shape, (1.0, 2.0, 3.0))
    sv = slice_view(image, label, disp, view)
    assert isinstance(sv, SliceView)
    assert sv.image.shape == (shape[rows], shape[cols])
    assert sv.index == (6, 7, 8)[axis]  # label centroid
    assert sv.edges is None  # orientation unknown: no letters
    # by default the motion of the structure (a translation's sampling offset u moves the content by -u), in
    # picture components (down, right), or u itself on request
    shift = (1.0, 2.0, 3.0)
    np.testing.assert_allclose(sv.arrows[:, 0, 0], [shift[rows], shift[cols]], atol=1e-5)
    np.testing.assert_allclose(sv.norm, np.sqrt(14.0), rtol=1e-5)
    sampling = slice_view(image, label, disp, view, arrows="sampling")
    np.testing.assert_allclose(sampling.arrows[:, 0, 0], [-shift[rows], -shift[cols]])
    assert "motion" in sv.arrow_caption and "u(x)" in sampling.arrow_caption
    assert "fixed -> moving" in sampling.arrow_caption


def test_slice_view_identity_and_errors():
    image, label = _blob()
    sv = slice_view(image, label, np.zeros((3, *label.shape), np.float32), "coronal", index=3)
    assert sv.index == 3
    np.testing.assert_array_equal(sv.warped_label, sv.moving_label)
    with pytest.raises(ValueError, match="view"):
        slice_view(image, label, np.zeros((3, *label.shape)), "oblique")
    with pytest.raises(ValueError, match="index"):
        slice_view(image, label, np.zeros((3, *label.shape)), "axial", index=99)
    with pytest.raises(ValueError, match="shapes"):
        slice_view(image, label, np.zeros((3, 2, 2, 2)), "axial")


def test_plot_slice_view_draws_red_gold_contours_and_norm_arrows():
    image, label = _blob()
    disp = _shift(label.shape, (0, 2, 0))
    disp[1] *= np.linspace(0.5, 1.5, label.shape[2])[None, None, :]  # varying norm along the columns
    sv = slice_view(image, label, disp, "sagittal")
    fig, ax = plt.subplots()
    plot_slice_view(ax, sv, arrow_step=2, title="c1")
    colours = [tuple(np.round(c.get_edgecolor()[0][:3], 3)) for c in ax.collections
               if hasattr(c, "get_edgecolor") and type(c).__name__ != "Quiver" and len(c.get_edgecolor())]
    assert (1.0, 0.0, 0.0) in colours                       # moving: red
    assert tuple(np.round(matplotlib.colors.to_rgb("gold"), 3)) in colours  # warped: gold
    quiver = [c for c in ax.collections if type(c).__name__ == "Quiver"]
    assert len(quiver) == 1
    values = quiver[0].get_array()
    assert values.min() < values.max()  # coloured by a norm that varies
    assert ax.get_title() == "c1"
    plt.close(fig)


def test_plot_slice_view_without_arrows():
    image, label = _blob()
    sv = slice_view(image, label, np.zeros((3, *label.shape)), "axial")
    fig, ax = plt.subplots()
    plot_slice_view(ax, sv, show_arrows=False)
    assert not [c for c in ax.collections if type(c).__name__ == "Quiver"]
    plt.close(fig)


def test_arrow_colormap_red_to_white():
    lo, hi = ARROW_CMAP(0.0), ARROW_CMAP(1.0)
    assert lo[0] > 0.3 and lo[1] < 0.1 and lo[2] < 0.1  # red
    assert min(hi[:3]) > 0.99                            # white


# ----------------------------------------------------------------------------- model-backed viz (tiny)

@pytest.fixture(scope="module")
def tiny():
    """A small untrained network with a non-zero head (so codes decode to non-identity maps) and a PCA
    fitted on random latents; a blob subject in the middle of a 16^3 volume."""
    import torch

    from regexplain.analysis.latent import Decomposition
    from regexplain.registration.model import RegistrationNet

    torch.manual_seed(0)
    model = RegistrationNet([4, 8, 8])
    with torch.no_grad():
        model.decoder.head.weight.normal_(0, 0.5)
    shape = (16, 16, 16)
    latent = model.latent_shape(shape)
    rng = np.random.default_rng(0)
    # latents spread wide enough that +-3 sigma moves the blob by voxels
    dec = Decomposition.fit(30 * rng.normal(size=(12, int(np.prod(latent)))).astype(np.float32), 4,
                            latent_shape=latent)
    image, label = _blob(shape, (8, 8, 8), 4)
    return model, dec, image, label


def test_render_explorer_png_changes_with_lambda(tiny):
    from regexplain.viz.widgets import explorer_slice_view, initial_state, render_explorer_png

    model, dec, image, label = tiny
    state = initial_state(model, dec, image, label)
    png0 = render_explorer_png(state)
    assert png0[:8] == b"\x89PNG\r\n\x1a\n"
    sv0 = explorer_slice_view(state)
    state.lam = 3.0
    sv3 = explorer_slice_view(state)
    assert np.abs(sv3.arrows - sv0.arrows).max() > 1.0
    assert render_explorer_png(state) != png0


def test_explorer_widget_lambda_slider_moves_contour(tiny):
    from regexplain.viz.widgets import build_explorer, explorer_slice_view

    model, dec, image, label = tiny
    box = build_explorer(model, dec, image, label)
    c = box.controls
    assert "lam-slider" in c["lam"]._dom_classes and "explorer-plot" in c["plot"]._dom_classes
    assert "comp-slider" in c["component"]._dom_classes and "view-dd" in c["view"]._dom_classes
    assert "slice-slider" in c["slice"]._dom_classes
    before_png = c["plot"].value
    before = explorer_slice_view(box.explorer_state).warped_label.copy()
    c["lam"].value = c["lam"].max  # the observer redraws, as a browser drag would
    assert box.settle()
    after = explorer_slice_view(box.explorer_state).warped_label
    assert box.explorer_state.lam == c["lam"].max
    assert c["plot"].value != before_png
    assert (after != before).any()  # the gold contour moved
    c["view"].value = "axial"
    assert box.explorer_state.view == "axial" and box.explorer_state.index == 8
    assert "picture-dd" in c["picture"]._dom_classes
    c["picture"].value = "all"  # arrows, grid and Jacobian, one row each
    assert box.settle() and box.explorer_state.picture == "all" and c["plot"].value != before_png
    # a typed λ takes the read-out's Unicode minus (and snaps to the slider's 0.1σ grid)
    c["lam_text"].value = "\u22122.04"
    assert box.settle() and c["lam"].value == pytest.approx(-2.0) and c["lam_text"].value == "\u22122"
    c["lam_text"].value = "not a number"
    assert c["lam"].value == pytest.approx(-2.0) and c["lam_text"].value == "\u22122"


def test_key_presses_during_a_redraw_coalesce_into_one_picture(tiny, monkeypatch):
    """Eight λ presses that arrive while a picture is being drawn make one more picture, of the last value:
    the drawing is held until all eight are in, so this holds however fast the machine is (the browser test
    only sees the timing the machine gives it)."""
    import threading

    from regexplain.viz import widgets

    model, dec, image, label = tiny
    box = widgets.build_explorer(model, dec, image, label)
    real, drawing, release, drawn = widgets.render_explorer_png, threading.Event(), threading.Event(), []

    def held(state):
        drawn.append(round(state.lam, 6))
        drawing.set()
        assert release.wait(60)
        return real(state)

    monkeypatch.setattr(widgets, "render_explorer_png", held)
    renders = box.renders
    lam = box.controls["lam"]
    lam.value = 0.1
    assert drawing.wait(60), "the first press was never drawn"
    for k in range(2, 10):
        lam.value = round(0.1 * k, 1)
    release.set()
    assert box.settle()
    assert drawn == [0.1, 0.9] and box.renders == renders + 2
    assert box.explorer_state.lam == pytest.approx(0.9) and box.controls["plot"].value == real(box.explorer_state)


def test_explorer_not_interactive_is_not_wired(tiny):
    from regexplain.viz.widgets import build_explorer

    model, dec, image, label = tiny
    box = build_explorer(model, dec, image, label, interactive=False)
    png = box.controls["plot"].value
    box.controls["lam"].value = 2.0
    assert box.controls["plot"].value == png
    box.refresh()
    assert box.controls["plot"].value != png


def _decoded_zero(model, dec):
    """D(0) of the network as a voxel displacement, decoded here (not through the explorer's cache)."""
    import torch

    from regexplain.registration import spatial

    model.eval()
    with torch.no_grad():
        phi = spatial.integrate_gradients(model.decode(torch.zeros(1, *dec.latent_shape)).float())
    return spatial.map_to_displacement(phi)[0].numpy()


def test_explorer_lambda_zero_is_the_identity_unless_literal(tiny):
    """Default D(λu) − D(0): at λ = 0 no arrow and the gold contour on the red one, in every view and every
    shown component, though this network's D(0) is far from the identity; the literal toggle shows D(0)."""
    from regexplain.viz.widgets import build_explorer, explorer_grid

    model, dec, image, label = tiny
    zero = _decoded_zero(model, dec)
    assert np.linalg.norm(zero, axis=0).max() > 0.5  # the test means something: D(0) is not the identity
    box = build_explorer(model, dec, image, label)
    c, state = box.controls, box.explorer_state
    c["n_shown"].value = 3
    grid = explorer_grid(state)
    assert len(grid) == 3 and all(len(row) == 3 for row in grid)  # 3 components x 3 orthogonal views
    for sv in (sv for row in grid for sv in row):
        assert np.abs(sv.arrows).max() == 0 and (sv.warped_label == sv.moving_label).all()
    fig, ax = plt.subplots()
    plot_slice_view(ax, grid[0][0])
    assert not any(hasattr(q, "U") for q in ax.collections)  # no quiver: not even zero-length dots
    plt.close(fig)
    c["literal"].value = True
    sv = explorer_grid(state)[0][0]
    assert np.allclose(state.displacement(0), zero, atol=1e-5)  # literal: what the network decodes at 0
    assert np.abs(sv.arrows).max() > 0.1


def test_explorer_keeps_lambda_on_component_change_and_fixes_scales(tiny):
    from regexplain.viz.widgets import build_explorer

    model, dec, image, label = tiny
    box = build_explorer(model, dec, image, label)
    c, state = box.controls, box.explorer_state
    c["lam"].value = 1.5
    c["component"].value = 2
    assert box.settle()
    assert c["lam"].value == 1.5 and state.lam == 1.5 and state.component == 1
    # the colour / length reference does not depend on λ: the largest norm over the slider's range
    ref = state.reference_norm(1)
    c["lam"].value = -0.5
    assert state.reference_norm(1) == ref
    expected = max(np.linalg.norm(state.displacement(1, lam), axis=0).max() for lam in (-3.0, 3.0))
    assert ref == pytest.approx(float(expected))
    # the paper's absolute λ: same strength, other units; range and step from this component's σ
    c["units"].value = "absolute"
    sigma = dec.sigma[1]
    assert state.units == "absolute" and c["lam"].max == pytest.approx(3 * sigma)
    assert c["lam"].step == pytest.approx(0.1 * sigma)
    assert state.strength(1) == pytest.approx(-0.5 * sigma)
    c["component"].value = 3  # another σ: another range, λ keeps its number of σ
    assert box.settle()
    assert c["lam"].max == pytest.approx(3 * dec.sigma[2]) and state.lam_sigma(2) == pytest.approx(-0.5)


def test_side_by_side_with_one_or_per_component_scales(tiny):
    from PIL import Image

    from regexplain.viz.raster import LABEL_PX, TARGET_WIDTH
    from regexplain.viz.widgets import initial_state, render_explorer_png

    model, dec, image, label = tiny
    state = initial_state(model, dec, image, label, lam=2.0, n_shown=3, axcodes=("R", "A", "S"))
    shared = render_explorer_png(state)
    state.own_scale = True
    own = render_explorer_png(state)
    assert own != shared
    width, height = Image.open(io.BytesIO(own)).size
    assert width >= TARGET_WIDTH * 0.9 and LABEL_PX >= 12  # three views fill the width; readable labels
    refs = [state.reference_norm(i) for i in state.shown()]
    assert len(set(np.round(refs, 6))) == 3  # three components, three scales


def test_explorer_state_round_trips_through_the_url(tiny):
    from regexplain.viz.widgets import build_explorer, parse_query, state_query

    model, dec, image, label = tiny
    box = build_explorer(model, dec, image, label, component=2, lam=-1.2, n_shown=2, literal=True, view="coronal",
                         arrows="sampling", own_scale=True)
    q = state_query(box.explorer_state)
    kw = parse_query(q, dec.n_components)
    assert kw["component"] == 2 and kw["lam"] == -1.2 and kw["n_shown"] == 2 and kw["literal"] is True
    assert kw["arrows"] == "sampling" and kw["own_scale"] is True
    assert parse_query("lam=%E2%88%921.5", 4)["lam"] == -1.5  # a Unicode minus in a link
    assert kw["view"] == "coronal" and kw["index"] == box.explorer_state.indices["coronal"]
    again = build_explorer(model, dec, image, label, **kw)
    assert again.controls["plot"].value == box.controls["plot"].value
    assert parse_query("component=99&lam=nan&view=oblique&units=x&n=zz", 4) == {"component": 3}
    wild = build_explorer(model, dec, image, label, **parse_query("lam=100&view=axial&slice=999", 4))
    assert wild.explorer_state.lam == 3.0 and wild.explorer_state.indices["axial"] == image.shape[2] - 1


def test_default_slice_goes_through_a_two_part_structure():
    """Two lungs: the centroid lies between them; the default slice must cut one of them."""
    from regexplain.viz.slices import default_index

    lab = np.zeros((20, 10, 10), int)
    lab[2:7, 3:7, 3:7] = 1
    lab[13:18, 3:7, 3:7] = 1
    i = default_index(lab, 0)
    assert lab[i].any() and not lab[10].any()


def test_plotly_explorer_states_and_html(tiny, tmp_path):
    """Three views, a subject menu, a contour legend, orientation letters, arrows named; λ = 0 is the
    identity; the page stays small because plotly.js is one shared file beside it."""
    from regexplain.viz.interactive import N_ARROW_BINS, N_FIXED, component_views, explorer_figure, write_html

    model, dec, image, label = tiny
    lams = [-2.0, 0.0, 2.0]
    other = (np.roll(image, 1, axis=2), np.roll(label, 1, axis=2))
    views = component_views(model, dec, {"a": (image, label), "b": other}, [0, 1], lams, axcodes=("R", "A", "S"))
    fig = explorer_figure(views, lams, title="t")
    m = fig.layout.meta
    assert m["per_subject"] == 6 and m["per_arrows"] == 3 * N_ARROW_BINS and m["per_warped"] == 3
    assert m["per_grid"] == 3 and m["per_jac"] == 3 and m["pictures"] == ["arrows", "grid", "jacobian"]
    # fixed, per subject, arrows / grids / Jacobian maps per (component, λ), warped contours per (subject, ...)
    assert len(fig.data) == N_FIXED + 2 * 6 + 2 * 3 * 3 * (N_ARROW_BINS + 2) + 2 * 2 * 3 * 3
    assert [b.label for b in fig.layout.updatemenus[1].buttons] == ["a", "b"]          # subject menu
    assert [b.label for b in fig.layout.updatemenus[0].buttons] == ["component 1", "component 2"]
    assert [b.label for b in fig.layout.updatemenus[2].buttons] == ["arrows", "warped grid", "Jacobian determinant"]
    legend = [t.name for t in fig.data if getattr(t, "showlegend", False)]
    assert legend == ["moving contour (subject)", "warped contour", "arrows: motion of the structure"]
    texts = [a.text for a in fig.layout.annotations]
    assert {"<b>sagittal</b> · slice 8", "<b>A</b>", "<b>S</b>", "<b>I</b>", "<b>R</b>"} <= set(texts)
    caption = texts[-1]  # every picture named with its direction, and the views' orientation
    assert "arrows: motion of the structure" in caption and "grid: motion of the structure" in caption
    assert "det J of the motion" in caption and "radiological" in caption
    assert fig.data[m["jacs_at"]].source.startswith("data:image/png;base64,")

    def arrows(ci, li):
        b = m["arrows_at"] + (ci * len(lams) + li) * m["per_arrows"]
        return fig.data[b:b + m["per_arrows"]]

    def warped(si, ci, li):
        b = m["warped_at"] + ((si * 2 + ci) * len(lams) + li) * 3
        return fig.data[b:b + 3]

    assert warped(0, 0, 0)[0].x != warped(0, 0, 2)[0].x  # the gold contour moves with λ
    assert warped(0, 0, 2)[0].x != warped(1, 0, 2)[0].x  # and is each subject's
    for ci in (0, 1):  # λ = 0: the identity (this network's D(0) is not): no arrow, gold on red
        assert all(len(a.x) == 0 for a in arrows(ci, 1))
        assert warped(0, ci, 1)[0].x == fig.data[N_FIXED + 1].x
    shaft_and_head = [a for a in arrows(0, 2) if len(a.x)]
    assert shaft_and_head and all(len(a.x) % 9 == 0 for a in shaft_and_head)  # shaft + two head strokes
    assert fig.data[0].marker.showscale and fig.data[0].marker.cmax > 0  # the colour legend
    literal = explorer_figure(component_views(model, dec, {"a": (image, label)}, [0], lams, literal=True), lams)
    lm = literal.layout.meta
    assert sum(len(a.x) for a in literal.data[lm["arrows_at"] + lm["per_arrows"]:][:lm["per_arrows"]]) > 0
    out = write_html(fig, tmp_path / "e.html")
    text = out.read_text()
    assert "Plotly.newPlot" in text and "plotly_buttonclicked" in text and len(text) < 3_000_000
    assert '<script src="plotly.min.js">' in text and (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    assert not re.search(r"<script[^>]+src=.http", text)  # nothing loaded from a CDN


def _sweep(rng):
    def row():
        return {"mean_top_share": {"observed": rng.random(), "null_mean": 0.2, "null_p95": 0.3}}
    return {"strengths": [0.2, 0.5, 1.0], "rotation": [row() for _ in range(3)],
            "translation": [row() for _ in range(3)]}


def test_paper_figures_from_arrays(tmp_path):
    from regexplain.viz import figures as F

    rng = np.random.default_rng(0)
    image, label = _blob()
    grid = [[slice_view(image, label, _shift(label.shape, (0, s, 0)), "sagittal") for s in (-2, 0, 2)]]
    figs = {
        "grid": F.plot_slice_grid(grid, col_labels=["-2", "0", "2"], row_labels=["c1"]),
        "box": F.plot_delta_boxplots({"rotation": rng.random((20, 12)), "translation": rng.random((20, 12))}),
        "skip": F.plot_skip_ablation({"rotation": rng.random((20, 12))}, {"rotation": rng.random((20, 12))}),
        "ev": F.plot_explained_variance({"hippocampus": np.full(32, 0.02)},
                                        {"hippocampus": {"K32": 0.93, "first4": 0.62}}),
        "loss": F.plot_loss_curves({"m": [{"step": i, "loss": 1 / (i + 1)} for i in range(50)]
                                    + [{"step": 49, "val_dice": 0.7}]}),
        "bars": F.plot_component_bars({"x": rng.random(8)}, ylabel="fraction"),
        "hist": F.plot_factor_histograms(["f1", "f2"], rng.random((30, 2))),
        "strength": F.plot_selectivity_by_strength({m: _sweep(rng) for m in ("a", "b")}),
    }
    assert [ax.get_title() for ax in figs["strength"].axes] == ["rotation", "translation"]
    box_ax = figs["box"].axes
    assert len(box_ax) == 2 and len(box_ax[0].get_xticks()) == 10  # first ten components only
    assert len(figs["grid"].axes) == 4  # 3 panels + colour bar
    for name, fig in figs.items():
        path = F.save_figure(fig, tmp_path / f"{name}.png")
        assert path.stat().st_size > 2000
    with pytest.raises(ValueError):
        F.plot_slice_grid([[None]])


def test_skip_ablation_ticks_name_components_one_to_n():
    """Boxes sit at j -/+ 0.2 but the axis must read 1..n, not the offset positions."""
    from regexplain.viz import figures as F

    rng = np.random.default_rng(0)
    fig = F.plot_skip_ablation({"rotation": rng.random((8, 10))}, {"rotation": rng.random((8, 10))})
    fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == [str(j) for j in range(1, 11)]


def test_observed_vs_null_chart_is_compact_and_draws_every_score(tmp_path):
    """One row per score, a dot per model at the observed value and a bar from null mean to 95th percentile;
    1 000 px wide, far shorter than a bar per (model, score)."""
    from PIL import Image

    from regexplain.viz import figures as F

    names = [f"score {i}" for i in range(10)]
    scores = {m: {n: {"observed": 0.1 * i + d, "null_mean": 0.05 * i, "null_p95": 0.05 * i + 0.1}
                  for i, n in enumerate(names)} for m, d in (("latent", 0.2), ("fields", 0.0), ("skip", -0.1))}
    fig = F.plot_observed_vs_null(scores, title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == names
    dots = [ln for ln in ax.lines if ln.get_marker() == "o"]
    assert len(dots) == 30 and dots[0].get_xdata()[0] == pytest.approx(0.2)
    bars = [ln for ln in ax.lines if ln.get_marker() in ("None", None, "") and len(ln.get_xdata()) == 2]
    assert len(bars) == 30 and list(bars[1].get_xdata()) == pytest.approx([0.05, 0.15])
    F.save_figure(fig, tmp_path / "q.png")
    w, h = Image.open(tmp_path / "q.png").size
    assert 900 <= w <= 1100 and h < 900
