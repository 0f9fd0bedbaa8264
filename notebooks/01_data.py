# %% [markdown]
# # 01 — Data
#
# The paper registers hippocampus MR patches (Medical Segmentation Decathlon, Task04) and thoracic
# inspiration/expiration pairs. This notebook opens the MSD hippocampus when it is present under
# `DATA_DIR`, and otherwise synthesises phantoms with recorded ground-truth factors (rotations,
# translations, scale, local shape modes) in the same on-disk layouts. It shows slices with their label
# contours, the distributions of the generating factors and a few lung inspiration/expiration pairs.

# %% tags=["parameters"]
PROFILE = "quick"
DATA_DIR = "data"
RUNS_DIR = "runs"
FIGURES_DIR = "figures"
SEED = 0
INTERACTIVE = True

# %%
import numpy as np

from regexplain import pipeline, runs
from regexplain.data.pairs import load_splits
from regexplain.data.synthetic import read_factors
from regexplain.results import save_results
from regexplain.viz.figures import plot_factor_histograms, plot_slice_grid, save_figure
from regexplain.viz.slices import slice_view

DATA_DIR, FIGURES_DIR = pipeline.notebook_setup(DATA_DIR, FIGURES_DIR)
cfgs = {ds: runs.model_config(PROFILE, f"{ds}_noskip", DATA_DIR) for ds in ("hippocampus", "lung")}
for ds, cfg in cfgs.items():
    print(ds, "->", runs.ensure_data(cfg))

# %% [markdown]
# ## Hippocampus: slices with label contours
# Volumes are preprocessed (standardise, clip, rescale to [0, 1]) and resampled to the profile's working
# shape. Each panel is a slice through the structure; the red contour is the label (anterior and posterior
# hippocampus). Slices are drawn as viewers draw them, from the images' affine: superior up in sagittal and
# coronal slices, anterior up in axial ones, anterior on the left of sagittal slices and the patient's right on
# the left of the others (radiological); the letters at the edges say it, the caption too. The phantoms are
# written with LPS axes, so the hippocampus' head sits anterior and the lung phantom's heart anterior-left.

# %%
hip_train, hip_val = load_splits(cfgs["hippocampus"].data)
print(f"hippocampus: {len(hip_train.ids)} train / {len(hip_val.ids)} val volumes of shape "
      f"{tuple(hip_train.images.shape[2:])}, spacing {hip_train.spacing} mm")


def still(data, i, view):
    """A slice with a zero displacement: the warped contour coincides with the moving one."""
    img, lab = data.images[i, 0].numpy(), data.labels[i, 0].numpy()
    return slice_view(img, lab, np.zeros((3, *img.shape), np.float32), view, axcodes=data.axcodes)


n_show = min(6, len(hip_train.ids))
grid = [[still(hip_train, i, v) for i in range(n_show)] for v in ("sagittal", "axial")]
fig = plot_slice_grid(grid, col_labels=hip_train.ids[:n_show], row_labels=["sagittal", "axial"],
                      show_arrows=False, colorbar=False)
save_figure(fig, FIGURES_DIR / "data_hippocampus.png");

# %% [markdown]
# ## Ground-truth factors (phantoms only)
# The phantoms record the factors that generated them; notebook 07 measures how well the latent
# components recover them. Different factors have different variances on purpose: a PCA cannot separate
# directions of equal variance.

# %%
factor_summary = {}
for ds, cfg in cfgs.items():
    try:
        ids, names, values = read_factors(cfg.data.root)
    except (FileNotFoundError, OSError, ValueError) as e:  # real data carry no factors
        print(f"{ds}: no factors ({e})")
        continue
    factor_summary[ds] = {"names": list(names), "sd": np.asarray(values).std(0).round(4).tolist()}
    save_figure(plot_factor_histograms(names, values, title=f"{ds} phantom factors"),
                FIGURES_DIR / f"data_factors_{ds}.png")
factor_summary

# %% [markdown]
# ## Lung: inspiration / expiration pairs
# Each patient has an inspiration and an expiration volume with lung masks; training pairs never join two
# volumes of the same patient. Coronal slices of three patients, inspiration above expiration.

# %%
lung_train, lung_val = load_splits(cfgs["lung"].data)
by_group = {}
for i, g in enumerate(lung_train.groups):
    by_group.setdefault(g, []).append(i)
patients = [g for g, idx in by_group.items() if len(idx) >= 2][:3]
grid = [[still(lung_train, by_group[g][k], "coronal") for g in patients] for k in (0, 1)]
fig = plot_slice_grid(grid, col_labels=patients, row_labels=[lung_train.ids[by_group[patients[0]][k]]
                                                             for k in (0, 1)], show_arrows=False, colorbar=False)
save_figure(fig, FIGURES_DIR / "data_lung_pairs.png");

# %%
save_results(FIGURES_DIR, "01_data", {},
             hippocampus={"n_train": len(hip_train.ids), "n_val": len(hip_val.ids),
                          "shape": list(hip_train.images.shape[2:])},
             lung={"n_train": len(lung_train.ids), "n_val": len(lung_val.ids),
                   "shape": list(lung_train.images.shape[2:])},
             factors=factor_summary);
