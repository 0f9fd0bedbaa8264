# %% [markdown]
# # 06 — Do skip connections spread the information? (paper Fig 8)
#
# The case study of notebook 05 for both hippocampus networks, side by side per component: without skip
# connections in blue, with them in pink. Paper: only one or two components respond without skip
# connections, many with them — the bottleneck of the skip network does not need to carry the whole
# deformation, so its decomposition is less interpretable. The two latent spaces have different scales;
# a second panel normalises each model by its own median.
#
# Read the table below against notebook 07, which scores the same responses against a random-basis null:
# on the quick-profile phantoms the skip model's latent PCA is *not* less selective or less disentangled
# than the no-skip one (its bottleneck still carries the global pose), so this figure is where our
# measurements and the paper's claim part ways.

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
from regexplain.viz.figures import plot_skip_ablation, save_figure

DATA_DIR, RUNS_DIR, FIGURES_DIR = pipeline.notebook_setup(DATA_DIR, RUNS_DIR, FIGURES_DIR)
models = {name: runs.load_run(PROFILE, name, RUNS_DIR, DATA_DIR) for name in ("hippocampus_noskip",
                                                                              "hippocampus_skip")}
deltas = {name: case_study(run.model, run.decomposition, run.val.images) for name, run in models.items()}

# %%
fig = plot_skip_ablation(deltas["hippocampus_noskip"], deltas["hippocampus_skip"], 10)
save_figure(fig, FIGURES_DIR / "fig8_skip_ablation.png");

# %%
fig = plot_skip_ablation(deltas["hippocampus_noskip"], deltas["hippocampus_skip"], 10, normalise=True)
save_figure(fig, FIGURES_DIR / "fig8_skip_ablation_normalised.png");

# %%
rows = [r for name, d in deltas.items()
        for r in readout_rows(name, summarize_case_study(d, models[name].decomposition.sigma))]
Markdown(table_markdown("case_study", rows))

# %%
save_results(FIGURES_DIR, "06_skip_ablation", {"case_study": rows},
             models={name: run.origin for name, run in models.items()});
