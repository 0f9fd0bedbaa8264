# %% [markdown]
# # 03 — Linear decomposition of the latent space
#
# Every volume is encoded on its own; its bottleneck code (channels and space together, not channel-wise)
# is one row of an N x F matrix of the training set. A PCA with K = 32 components (fewer when the training
# set is smaller) gives principal vectors u_1..u_K. Paper: 32 components cover 95 % (lungs) and 93 %
# (hippocampus) of the variance, the first four 42 % and 62 %.

# %% tags=["parameters"]
PROFILE = "quick"
DATA_DIR = "data"
RUNS_DIR = "runs"
FIGURES_DIR = "figures"
SEED = 0
INTERACTIVE = True
BASIS = "pca"            # the paper's; or ica, sparse_pca, sefa, supervised, random_orthonormal (notebook 08)

# %%
from IPython.display import Markdown

from regexplain import pipeline, runs
from regexplain.results import save_results, table_markdown
from regexplain.viz.figures import plot_explained_variance, save_figure

DATA_DIR, RUNS_DIR, FIGURES_DIR = pipeline.notebook_setup(DATA_DIR, RUNS_DIR, FIGURES_DIR)
models = {name: runs.load_run(PROFILE, name, RUNS_DIR, DATA_DIR, basis=BASIS) for name in runs.MODELS}
for name, run in models.items():
    d = run.decomposition
    print(f"{name}: {d.components.shape[1]} latent features {d.latent_shape}, K = {d.n_components}, "
          f"fitted on {d.meta.get('n_train')} training volumes")

# %% [markdown]
# ## Explained variance
# Left: the share of each component; right: the cumulative share, with the paper's values as stars.
# Another `BASIS` orders its components by training variance too; only PCA maximises the leading shares,
# so only PCA's numbers compare with the paper's stars.

# %%
ratios = {name: run.decomposition.explained_variance_ratio for name, run in models.items()}
fig = plot_explained_variance(ratios, runs.PAPER["explained_variance"])
save_figure(fig, FIGURES_DIR / "explained_variance.png");

# %%
summary = {name: run.decomposition.summary() for name, run in models.items()}
rows = []
for name, s in summary.items():
    paper = runs.PAPER["explained_variance"].get(name, {})
    rows.append({"model": name, "K": s["K"], "total": s["total"], "first4": s["first4"],
                 "paper_K32": paper.get("K32"), "paper_first4": paper.get("first4")})
Markdown(table_markdown("explained_variance", rows))

# %% [markdown]
# With fewer training volumes than 33 (smoke profile) K is capped at N - 1 and "all K" covers everything
# by construction; the comparison with the paper is meaningful from the quick profile on.

# %%
save_results(FIGURES_DIR, "03_decompose", {"explained_variance": rows},
             models={name: run.origin for name, run in models.items()},
             explained_variance_ratio={name: s["explained_variance_ratio"] for name, s in summary.items()});
