# %% [markdown]
# # 04 — Elementary transformations and λ sweeps (paper Fig 2, 3, 4, 6, 7)
#
# Each principal vector u_i decodes into an elementary transformation φ_i = D(λ u_i), applied to a
# validation subject M and its labels: red is the contour of M, gold the contour of W(D(λ u_i), M).
#
# **Arrows: the motion of the structure.** The decoder's field is a sampling offset u(x): the warped image
# reads the moving one at x + u(x), so u points *against* the motion. Every picture here draws, by default,
# where each point of the moving anatomy lands, m(p) = x − p with x + u(x) = p (the inverse map's
# displacement, `regexplain.registration.spatial.motion_field`): arrows start on the red contour and point towards the
# gold one, coloured by their length (voxels), dark red smallest, white largest. `ARROWS = "sampling"` draws
# u(x) instead (the sampling offset, fixed → moving); each figure's caption says which. The same field can be
# drawn as a warped grid or as its Jacobian-determinant map (> 1 the structure grows, < 1 it shrinks, green
# ≤ 0 folds): the figure after Fig 4 shows all three for component 1, the explorer and the plotly pages offer
# them beside the arrows.
#
# **Orientation.** Slices are drawn as ITK-SNAP, 3D Slicer and FSLeyes draw them, from the images' affine:
# sagittal and coronal slices with superior up, axial slices with anterior up, anterior on the left of sagittal
# slices, the patient's right on the left of coronal and axial ones (radiological). The letters at the edges
# and each caption say it.
#
# **λ convention.** Every picture and number shows D(λ u_i) − D(0), the deformation the component adds:
# λ = 0 is then the identity. A trained decoder's D(0) is not the identity (it is the network's answer to two
# identical images), so the paper's literal D(λ u_i) carries that offset in every panel; set
# `LITERAL_D = True` (or tick the explorer's "literal" box) to see it. How large it is depends on the
# run: the cell after the models are opened prints this run's |D(0)|, and the explorer states it beside
# its box. docs/deviations.md says why.
#
# **λ scale.** The paper's λ ∈ {-200, ..., 200} is tied to the norm of their latent codes; ours differ in
# size, so the absolute sweep is shown for completeness and the sweep in units of each component's
# standard deviation σ_i is the comparable one. Component figures use λ = `LAM_SIGMA` σ_i.

# %% tags=["parameters"]
PROFILE = "quick"
DATA_DIR = "data"
RUNS_DIR = "runs"
FIGURES_DIR = "figures"
SEED = 0
INTERACTIVE = True
LITERAL_D = False
ARROWS = "motion"        # the motion of the structure; or "sampling": the sampling offsets u(x)
BASIS = "pca"            # the paper's; or ica, sparse_pca, sefa, supervised, random_orthonormal (notebook 08)

# %%
import numpy as np

from regexplain import pipeline, runs
from regexplain.analysis.latent import component_displacements, displacement_stats
from regexplain.app.page import explorer_panel
from regexplain.errors import RegexplainError
from regexplain.io import write_bytes
from regexplain.results import save_results
from regexplain.viz.figures import plot_slice_grid, save_figure
from regexplain.viz.interactive import component_views, explorer_figure, write_html
from regexplain.viz.slices import slice_view
from regexplain.viz.widgets import initial_state, render_explorer_png

DATA_DIR, RUNS_DIR, FIGURES_DIR = pipeline.notebook_setup(DATA_DIR, RUNS_DIR, FIGURES_DIR)
LAM_SIGMA = 3.0                          # strength of the component figures, in σ units
PAPER_LAMBDAS = [-200, -100, 0, 100, 200]
SIGMA_LAMBDAS = [-3, -1.5, 0, 1.5, 3]
hip = runs.load_run(PROFILE, "hippocampus_noskip", RUNS_DIR, DATA_DIR, basis=BASIS)
try:  # the hippocampus figures and the explorer need only the hippocampus model
    lung = runs.load_run(PROFILE, "lung_noskip", RUNS_DIR, DATA_DIR, basis=BASIS)
except RegexplainError as e:
    lung = None
    print(f"No lung model ({e}).\nFigures 2, 3 and 6 need it: `regexplain reproduce --profile {PROFILE}` trains "
          f"every model, or `regexplain train --profile {PROFILE} --dataset lung --data {DATA_DIR / 'lung'} --out "
          f"{runs.run_dir(RUNS_DIR, PROFILE, 'lung_noskip')}` trains the lung alone; then run this notebook again.")


def subject(run, k):
    """Moving image and labels of validation subject ``k`` as (D, H, W) arrays."""
    k = k % len(run.val.ids)
    return run.val.images[k, 0].numpy(), run.val.labels[k, 0].numpy(), run.val.ids[k]


def displacements(run, comps, lam, units="sigma"):
    """(n, 3, D, H, W) displacements of the 0-based ``comps`` at one strength (D(λu) − D(0) unless LITERAL_D)."""
    return component_displacements(run.model, run.decomposition, lam, units, comps,
                                   relative_to_zero=not LITERAL_D).numpy()


def component_rows(run, k, disp, views):
    """Slices of validation subject ``k`` warped by each of ``disp`` (decoded once, shared by subjects)."""
    image, label, _ = subject(run, k)
    return [[slice_view(image, label, d, v, arrows=ARROWS, axcodes=run.val.axcodes) for d in disp] for v in views]


def n_comp(run, n):
    return list(range(min(n, run.decomposition.n_components)))


def zero_offset(run):
    """|D(0)| of the run in voxels, mean over the first validation subject's structure and largest."""
    zero = component_displacements(run.model, run.decomposition, 0.0, "sigma", [0]).numpy()[0]  # D(0)
    norm = np.linalg.norm(zero, axis=0)
    return float(norm[subject(run, 0)[1] > 0].mean()), float(norm.max())


for run in (hip, lung):
    if run is not None:
        mean, top = zero_offset(run)
        print(f"{run.name}: the trained decoder's D(0) moves the structure by {mean:.3g} voxel on average "
              f"({top:.3g} at most): what the literal D(λu) adds to every picture")

# %% [markdown]
# ## Fig 4 — hippocampus, components 1-4, sagittal
# Paper: the 1st component looks like a rotation in the sagittal plane.

# %%
comps = n_comp(hip, 4)
rows = component_rows(hip, 0, displacements(hip, comps, LAM_SIGMA), ["sagittal"])
fig = plot_slice_grid(rows, col_labels=[f"component {i + 1}" for i in comps],
                      row_labels=[subject(hip, 0)[2]], suptitle=f"hippocampus, λ = {LAM_SIGMA} σ")
save_figure(fig, FIGURES_DIR / "fig4_hippocampus_components.png");

# %% [markdown]
# ## Component 1 drawn three ways: arrows, warped grid, Jacobian determinant
# One field, the three views as columns: the arrows (where the structure goes), a regular grid carried with
# the structure (true scale, one line every 3 voxels), and det J of that motion on a log colour scale (blue:
# the neighbourhood shrinks, red: it grows, green: det J ≤ 0, folding). `ARROWS = "sampling"` draws all three
# for the sampling map instead (fixed → moving; its det J is the one Learn2Reg scores).

# %%
image, label, sid = subject(hip, 0)
field1 = displacements(hip, [0], LAM_SIGMA)[0]
three = [slice_view(image, label, field1, v, arrows=ARROWS, axcodes=hip.val.axcodes, jacobian=True)
         for v in ("sagittal", "coronal", "axial")]
fig = plot_slice_grid([three] * 3, pictures=["arrows", "grid", "jacobian"], col_labels=["sagittal", "coronal", "axial"],
                      row_labels=["arrows", "warped grid", "det J"],
                      suptitle=f"hippocampus, {sid}, component 1, λ = {LAM_SIGMA} σ")
save_figure(fig, FIGURES_DIR / "fig4b_hippocampus_component1_arrows_grid_jacobian.png");

# %% [markdown]
# ## Fig 7 — hippocampus, two other subjects, components 1-8 (first row 1-4, second row 5-8)

# %%
comps8 = n_comp(hip, 8)
hip_disp8 = displacements(hip, comps8, LAM_SIGMA)
rows, names = [], []
for k in (1, 2):
    row = component_rows(hip, k, hip_disp8, ["sagittal"])[0]
    for start in range(0, len(row), 4):
        rows.append(row[start:start + 4])
        names.append(f"{subject(hip, k)[2]} c{start + 1}-{start + len(rows[-1])}")
fig = plot_slice_grid(rows, row_labels=names, suptitle=f"hippocampus, components 1-{len(comps8)}, λ = {LAM_SIGMA} σ")
save_figure(fig, FIGURES_DIR / "fig7_hippocampus_components_1-8.png");

# %% [markdown]
# ## Beyond the paper — the same components on real anatomy
# A component's field is decoded from its latent direction alone, so it can be shown on any image. Here the
# first four components of the model trained on phantoms move a phantom (top) and a real T1 crop of a
# hippocampus the network has never seen (bottom, the real-anatomy check's folder `DATA_DIR/real_anatomy`,
# `regexplain data real`; skipped, with what to install, when the packages it is cut from are absent).
# `regexplain explore --decomposition ... --data DATA_DIR/real_anatomy` explores the real crops the same way.

# %%
from regexplain.data.real_anatomy import ensure as ensure_real_anatomy
from regexplain.registration.evaluation import REAL_SPLIT
from regexplain.viz.figures import plot_components_on_subjects

REAL_DIR = DATA_DIR / "real_anatomy"
print(ensure_real_anatomy(REAL_DIR))
if (REAL_DIR / "dataset.json").is_file():
    _, (_, real_val) = runs.run_splits(hip.cfg, {"root": str(REAL_DIR), "split": list(REAL_SPLIT),
                                                 "exact_counts": False}, progress=False)
    image, label, sid = subject(hip, 0)
    shown = {"phantom": (image, label, hip.val.axcodes),
             "real crop": (real_val.images[0, 0].numpy(), real_val.labels[0, 0].numpy(), real_val.axcodes)}
    fig = plot_components_on_subjects(shown, displacements(hip, comps, LAM_SIGMA), view="sagittal",
                                      suptitle=f"no skip, components 1-{len(comps)}, λ = {LAM_SIGMA} σ: phantom {sid} "
                                               f"and real {real_val.ids[0]}")
    save_figure(fig, FIGURES_DIR / "components_real_vs_phantom.png");

# %% [markdown]
# ## Fig 2 — lung, components 1-4, coronal and sagittal
# Paper: the 1st component is a translation, the 2nd deforms the bottom of the lungs, the 3rd the right
# lung and heart region, the 4th the top of the lungs and shoulders.

# %%
if lung is not None:
    comps4 = n_comp(lung, 4)
    labels4 = [f"component {i + 1}" for i in comps4]
    lung_disp4 = displacements(lung, comps4, LAM_SIGMA)
    fig = plot_slice_grid(component_rows(lung, 0, lung_disp4, ["coronal", "sagittal"]), col_labels=labels4,
                          row_labels=["coronal", "sagittal"],
                          suptitle=f"lung, {subject(lung, 0)[2]}, λ = {LAM_SIGMA} σ")
    save_figure(fig, FIGURES_DIR / "fig2_lung_components.png");

# %% [markdown]
# ## Fig 6 — the same for two other patients

# %%
if lung is not None:
    rows, names = [], []
    for k in (1, 2):
        rows += component_rows(lung, k, lung_disp4, ["coronal", "sagittal"])
        names += [f"{subject(lung, k)[2]} coronal", f"{subject(lung, k)[2]} sagittal"]
    fig = plot_slice_grid(rows, col_labels=labels4, row_labels=names, suptitle=f"lung, λ = {LAM_SIGMA} σ")
    save_figure(fig, FIGURES_DIR / "fig6_lung_components_more.png");

# %% [markdown]
# ## Fig 3 — λ sweeps of components 1 and 4 (coronal)
# Paper: λ = 0 gives a near-identity; negative and positive λ move the lungs up and down for component 1,
# component 4 moves the top of the lungs. First the paper's absolute λ values, then the same in σ units.

# %%
if lung is not None:
    image, label, sid = subject(lung, 0)
    sweep_comps = [0, min(3, lung.decomposition.n_components - 1)]
    sweep = {}
    for units, lams, suffix in (("absolute", PAPER_LAMBDAS, ""), ("sigma", SIGMA_LAMBDAS, "_sigma")):
        disp = {(c, lam): displacements(lung, [c], lam, units)[0] for c in sweep_comps for lam in lams}
        grid = [[slice_view(image, label, disp[c, lam], "coronal", arrows=ARROWS, axcodes=lung.val.axcodes)
                 for lam in lams] for c in sweep_comps]
        unit = "" if units == "absolute" else " σ"
        fig = plot_slice_grid(grid, col_labels=[f"λ = {lam:+g}{unit}" for lam in lams],
                              row_labels=[f"component {c + 1}" for c in sweep_comps], suptitle=f"lung, {sid}")
        save_figure(fig, FIGURES_DIR / f"fig3_lambda_sweep{suffix}.png")
        # mean displacement inside the lungs along each axis: the sign flip with λ is the paper's up/down
        mask = label > 0
        sweep[units] = {f"component {c + 1}": [displacement_stats(disp[c, lam], mask)["mean_vector"].round(3).tolist()
                                               for lam in lams]
                        for c in sweep_comps}
    sigma = lung.decomposition.sigma
    print("σ of components 1-4:", np.round(sigma[:4], 3), "-> λ = 200 is", np.round(200 / sigma[:4], 1), "σ")

# %% [markdown]
# ## Interactive explorer
# With a kernel (`INTERACTIVE = True`): the subject, the first component and how many are shown side by
# side, λ (σ units, or the paper's absolute values: the slider runs over ±3σ_i of the component in 0.1σ_i
# steps either way; type a value, "−2" included, in the box beside it), the literal-D(λu) toggle with this
# run's measured |D(0)| beside it, the arrows (motion of the structure, or the sampling offsets u(x)), what
# to draw (arrows, warped grid, Jacobian determinant, or all three), one scale for every component shown or
# each its own, and the slices; the three orthogonal views side by side in viewer orientation, each shown
# component's explained variance and affine content below.
# Arrow length and colour scales are fixed over the λ range (printed on each row and panel). Each move
# redraws through `render_explorer_png`, the function the batch cell below calls; `regexplain explore`
# serves the same panel as a web app. Without a kernel, the plotly pages `explorer_hippocampus.html` /
# `explorer_lung.html` carry precomputed pictures of the three views behind a λ slider, a component menu, a
# subject menu and a picture menu (arrows, warped grid, Jacobian; plotly.js beside them as `plotly.min.js`).

# %%
if INTERACTIVE:
    subjects = {sid: (img[0].numpy(), lab[0].numpy()) for sid, img, lab in zip(hip.val.ids, hip.val.images,
                                                                                hip.val.labels, strict=True)}
    explorer = explorer_panel(hip.model, hip.decomposition, subjects, hip.val.ids[0], axcodes=hip.val.axcodes)
    display(explorer)  # noqa: F821 (IPython builtin)

# %%
# Batch mode: the explorer's pure callback at fixed states, saved as figures.
image, label, sid = subject(hip, 0)
state = initial_state(hip.model, hip.decomposition, image, label, literal=LITERAL_D, arrows=ARROWS,
                      axcodes=hip.val.axcodes, subject=sid)
for lam in (-LAM_SIGMA, 0.0, LAM_SIGMA):
    state.lam = lam
    write_bytes(FIGURES_DIR / "explorer_states" / f"hippocampus_c1_lam{lam:+.1f}.png", render_explorer_png(state))

# %%
EXPLORER_LAMBDAS = list(np.linspace(-LAM_SIGMA, LAM_SIGMA, 7))
pages = {}
for run, name in ((hip, "hippocampus"), (lung, "lung")):
    if run is None:
        continue
    subjects = {subject(run, k)[2]: subject(run, k)[:2] for k in range(min(3, len(run.val.ids)))}
    views = component_views(run.model, run.decomposition, subjects, n_comp(run, 4), EXPLORER_LAMBDAS,
                            literal=LITERAL_D, arrows=ARROWS, axcodes=run.val.axcodes)
    what = "D(λu) (literal)" if LITERAL_D else "D(λu) − D(0)"
    basis = run.decomposition.meta.get("basis", "pca")
    fig = explorer_figure(views, EXPLORER_LAMBDAS, title=f"{run.name} ({PROFILE}), {basis} components 1-"
                          f"{len(n_comp(run, 4))}: {what}, λ in σ units")
    pages[name] = write_html(fig, FIGURES_DIR / f"explorer_{name}.html")
    print(f"{pages[name]}: {pages[name].stat().st_size / 1e6:.2f} MB (+ plotly.min.js, shared)")

# %%
save_results(FIGURES_DIR, "04_lambda_sweeps", {},
             models={run.name: run.origin for run in (hip, lung) if run is not None},
             lam_sigma=LAM_SIGMA, hippocampus_sigma_first4=hip.decomposition.sigma[:4].tolist(),
             hippocampus_zero_offset_voxels=zero_offset(hip)[0],
             **({} if lung is None else {"lung_sigma_first4": lung.decomposition.sigma[:4].tolist(),
                                         "lung_zero_offset_voxels": zero_offset(lung)[0],
                                         "fig3_mean_displacement_in_lungs_DHW": sweep}));
