# %% [markdown]
# # 09 — Your own network: the paper's decomposition for MONAI's VoxelMorph and LocalNet
#
# The paper explains one network, built for it: a shared encoder, codes subtracted (late fusion), no skip
# connections. The networks researchers train are early-fusion U-Nets whose decoders read skip features
# beside the bottleneck. regexplain reaches any of them through one **adapter** (`regexplain.adapters`):
#
# * `encode(moving, fixed)`: the bottleneck of the pair (read by a forward hook on the module you name);
# * `context(moving, fixed)`: what the decoder needs besides the code — for a U-Net, that pair's skip features;
# * `decode(code, context)`: the displacement in voxels, in regexplain's convention.
#
# A volume's code is that of the pair (volume, R) with one reference volume R (the first training volume).
# A direction v of the latent space is decoded as D(z_R + v) with the skip features of the identity pair
# (R, R) held fixed: **frozen skips**. For the paper's network this is exactly its D(v).
#
# This notebook trains MONAI's VoxelMorph (MONAI's defaults: 3 max-poolings, 32 channels at the bottleneck,
# 7 scaling-and-squaring steps) and MONAI's LocalNet on the default phantoms with regexplain's losses and
# trainer for the profile's budget (displacement networks get VoxelMorph's diffusion smoothness,
# `docs/deviations.md`), decomposes their bottlenecks, shows the components with frozen skips, runs the case
# study beside the paper's no-skip network, and measures the **bottleneck share**: how much of each network's
# deformation its bottleneck controls (`docs/your_network.md`).

# %% tags=["parameters"]
PROFILE = "quick"
DATA_DIR = "data"
RUNS_DIR = "runs"
FIGURES_DIR = "figures"
SEED = 0
INTERACTIVE = True

# %%
from IPython.display import Image, Markdown, display

from regexplain import pipeline, runs
from regexplain.analysis.casestudy import case_study, readout_rows, summarize_case_study
from regexplain.analysis.latent import component_displacements
from regexplain.analysis.networks import network_row
from regexplain.app.page import explorer_panel
from regexplain.results import save_results, table_markdown
from regexplain.viz.figures import plot_skip_ablation, plot_slice_grid, save_figure
from regexplain.viz.slices import slice_view
from regexplain.viz.widgets import initial_state, render_explorer_png

DATA_DIR, RUNS_DIR, FIGURES_DIR = pipeline.notebook_setup(DATA_DIR, RUNS_DIR, FIGURES_DIR)
for name in runs.NETWORKS:
    cfg = runs.model_config(PROFILE, name, DATA_DIR, SEED)
    print(runs.ensure_data(cfg))
    print(runs.ensure_trained(cfg, runs.run_dir(RUNS_DIR, PROFILE, name)))
nets = {name: runs.load_run(PROFILE, name, RUNS_DIR, DATA_DIR)
        for name in ("hippocampus_noskip", "hippocampus_skip", *runs.NETWORKS)}

# %% [markdown]
# ## Where the code is
# The ready adapter of MONAI's VoxelMorph finds the deepest down layer of its U-Net; `regexplain network
# modules --profile my_network.yaml` lists every module with its output shape for any network.

# %%
for name in runs.NETWORKS:
    model = nets[name].model
    print(f"{name}: {type(model).__name__}, bottleneck {model.bottleneck!r}, code "
          f"{model.latent_shape(tuple(nets[name].cfg.data.shape))}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")

# %% [markdown]
# ## VoxelMorph's first components, frozen skips
# D(z_R + 3 σ_i u_i) − D(z_R) applied to a validation subject (red: its contour, gold: the warped one; arrows:
# the motion of the structure).

# %%
vxm = nets["hippocampus_voxelmorph"]
comps = list(range(min(4, vxm.decomposition.n_components)))
disp = component_displacements(vxm.model, vxm.decomposition, 3.0, "sigma", comps, relative_to_zero=True).numpy()
image, label = vxm.val.images[0, 0].numpy(), vxm.val.labels[0, 0].numpy()
rows = [[slice_view(image, label, d, view, axcodes=vxm.val.axcodes) for d in disp] for view in ("sagittal", "coronal")]
fig = plot_slice_grid(rows, col_labels=[f"component {i + 1}" for i in comps], row_labels=["sagittal", "coronal"],
                      suptitle="MONAI VoxelMorph, frozen skips of the reference pair, λ = 3 σ")
save_figure(fig, FIGURES_DIR / "fig9_voxelmorph_components.png");

# %% [markdown]
# ## The explorer on VoxelMorph
# The same λ sliders as notebook 04 (`regexplain explore --decomposition RUN/decomposition` serves them in a
# browser). Without a kernel (papermill), one picture of the explorer at λ = 2 σ.

# %%
subjects = {sid: (vxm.val.images[i, 0].numpy(), vxm.val.labels[i, 0].numpy()) for i, sid in enumerate(vxm.val.ids)}
if INTERACTIVE:
    display(explorer_panel(vxm.model, vxm.decomposition, subjects, vxm.val.ids[0], axcodes=vxm.val.axcodes))
else:
    state = initial_state(vxm.model, vxm.decomposition, image, label, lam=2.0, n_shown=2, axcodes=vxm.val.axcodes)
    display(Image(render_explorer_png(state)))

# %% [markdown]
# ## The case study beside the paper's network (Fig 5 / Fig 8)
# |a_j(X) − a_j(X')| under the paper's rotation, translation and scaling; each network in its own units, so the
# second figure divides each by its own median.

# %%
deltas = {name: case_study(run.model, run.decomposition, run.val.images) for name, run in nets.items()}
for name in runs.NETWORKS:
    fig = plot_skip_ablation(deltas["hippocampus_noskip"], deltas[name], 10, normalise=True,
                             labels=("paper's network, no skip", name.removeprefix("hippocampus_")))
    save_figure(fig, FIGURES_DIR / f"fig8_{name.removeprefix('hippocampus_')}_vs_noskip.png");
case_rows = [r for name, d in deltas.items()
             for r in readout_rows(name, summarize_case_study(d, nets[name].decomposition.sigma))]
Markdown(table_markdown("case_study", case_rows))

# %% [markdown]
# ## The paper's method on four networks
# Dice on the validation pairs, the explained variance of the latent PCA, the case study's read-out (top /
# second median |Δa|) beside the 95th percentile of random bases with the PCA's variances, and the bottleneck
# share beside an untrained network of the same architecture. The paper's claim that skip connections spoil
# the decomposition reads here as a number: the share of the deformation the bottleneck still controls once
# the skip features are frozen.

# %%
net_rows = [network_row(name, run, runs.read_metrics(run.run_dir), seed=SEED) for name, run in nets.items()]
Markdown(table_markdown("networks", net_rows))

# %%
save_results(FIGURES_DIR, "09_your_network", {"networks": net_rows},
             models={name: run.origin for name, run in nets.items()});
