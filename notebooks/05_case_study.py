# %% [markdown]
# # 05 — Case study (paper Fig 5)
#
# Every validation subject X of the hippocampus set is transformed into X' by a rotation of 20° about z, a
# translation along z (10 voxels at the paper's 64³, scaled to the working shape) and a zoom by 1.2 ("a
# scaling of 0.2"). Box plots show |a_j(X) - a_j(X')| for the first ten components. Paper: rotation and
# translation each move one component much more than the others, scaling two.

# %% tags=["parameters"]
PROFILE = "quick"
DATA_DIR = "data"
RUNS_DIR = "runs"
FIGURES_DIR = "figures"
SEED = 0
INTERACTIVE = True

# %%
from IPython.display import Markdown

from regexplain import pipeline, runs
from regexplain.analysis.casestudy import case_study, readout_rows, summarize_case_study
from regexplain.results import save_results, table_markdown
from regexplain.viz.figures import plot_delta_boxplots, save_figure

DATA_DIR, RUNS_DIR, FIGURES_DIR = pipeline.notebook_setup(DATA_DIR, RUNS_DIR, FIGURES_DIR)
hip = runs.load_run(PROFILE, "hippocampus_noskip", RUNS_DIR, DATA_DIR)
deltas = case_study(hip.model, hip.decomposition, hip.val.images)
{name: d.shape for name, d in deltas.items()}

# %%
fig = plot_delta_boxplots(deltas, 10, title=f"hippocampus without skip connections, {len(hip.val.ids)} subjects")
save_figure(fig, FIGURES_DIR / "fig5_case_study.png");

# %% [markdown]
# ## Which components respond?
# "top" is the component with the largest median |Δa_j|; "ratio" how many times larger its median is than
# the second largest; "active" how many components exceed twice the median of the medians.

# %%
full = summarize_case_study(deltas, hip.decomposition.sigma)
rows = readout_rows("hippocampus_noskip", full)
Markdown(table_markdown("case_study", rows))

# %%
save_results(FIGURES_DIR, "05_case_study", {"case_study": rows}, details={"hippocampus_noskip": full},
             models={hip.name: hip.origin});
