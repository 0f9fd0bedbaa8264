# %% [markdown]
# # 08 — Beyond the paper: which basis explains the latent space best, and do trainings agree?
#
# The paper decomposes the latent space with PCA and reads the components by eye. Other tools find latent
# directions differently: GANSpace offers ICA and sparse PCA, SeFa reads them from the decoder's first layer
# with no data, InterFaceGAN regresses known attributes (here: the phantoms' factors, an upper bound). Each
# basis is scored exactly like notebook 07's PCA, every score beside the basis' own null (random rotations
# of its coordinates with matched variances), and the random orthonormal basis itself is the null of the
# contest.
#
# Then: is an elementary transformation a property of the data or an accident of one training? Models of
# the same architecture trained with different seeds (the seed study's, `make study`) are compared through
# their decoded fields D(σ_j u_j) − D(0) over the foreground, matched by the Hungarian algorithm on |cos|,
# beside random directions of each run's subspace decoded the same way.

# %% tags=["parameters"]
PROFILE = "quick"
DATA_DIR = "data"
RUNS_DIR = "runs"
FIGURES_DIR = "figures"
SEED = 0
INTERACTIVE = True
STUDY_DIR = "study"      # `regexplain study --out` (the seed study's runs); skipped when absent
REGIME = "calibrated"     # the default phantoms (`regexplain study --regime both`: calibrated and pose)

# %%
from IPython.display import Markdown, display

from regexplain import pipeline, runs
from regexplain.analysis.comparison import compare_bases, comparison_rows, reading, winners
from regexplain.analysis.matching import match_figure, match_runs
from regexplain.analysis.study import study_runs
from regexplain.data.synthetic import read_factors
from regexplain.results import save_results, table_markdown
from regexplain.viz.figures import plot_observed_vs_null, save_figure

DATA_DIR, RUNS_DIR, FIGURES_DIR, STUDY_DIR = pipeline.notebook_setup(DATA_DIR, RUNS_DIR, FIGURES_DIR,
                                                                     STUDY_DIR)
hip = runs.load_run(PROFILE, "hippocampus_noskip", RUNS_DIR, DATA_DIR)
N_NULL = hip.cfg.latent.null_draws // 2     # half notebook 07's: eight bases, each with its own null
bases = compare_bases(hip.model, hip.train, hip.val, read_factors(hip.cfg.data.root), k=hip.decomposition.n_components,
                      n_null=N_NULL, n_boot=N_NULL, seed=SEED)
basis_rows = comparison_rows(bases)
Markdown(table_markdown("basis_comparison", basis_rows))

# %% [markdown]
# ## Which basis wins on what

# %%
best = winners(bases)
Markdown(table_markdown("basis_winners", best) + "\n\n" + reading(best))

# %%
plotted = {b: {k: v for k, v in sec["scores"].items() if v.get("family") != "informativeness"}
           for b, sec in bases.items()}
fig = plot_observed_vs_null(plotted, title="hippocampus, no skip: every basis against its null")
save_figure(fig, FIGURES_DIR / "basis_comparison.png");

# %% [markdown]
# ## The same transformation across trainings
# The seed study's no-skip runs (seed 0 is the reference). Shown: the reference's component 1 and the
# component of each other seed matched to it, as D(σ u) − D(0) on one validation subject.

# %%
opened = study_runs(STUDY_DIR, REGIME, "noskip")
cross_rows = []
if len(opened) >= 2:
    similarity = match_runs(opened, n_null=N_NULL * 2, seed=SEED)   # 8 components, or as many as the runs have
    cross_rows = [{"model": f"no skip, {len(opened)} seeds ({REGIME})", **c} for c in similarity["components"]]
    fig = match_figure(opened, similarity, suptitle="the same elementary transformation across seeds")
    save_figure(fig, FIGURES_DIR / "cross_seed_component1.png")
    display(Markdown(table_markdown("cross_seed", cross_rows)))
else:
    print(f"no seed study in {STUDY_DIR / REGIME}: run `make study` (or `regexplain study`) to compare trainings")

# %% [markdown]
# Reading the cross-seed table: the null is far from 0, because random directions of a run's subspace decode
# to fields that already resemble one another, and the Hungarian matching picks the best of them. A component
# recurs across trainings only where its matched |cos| lies above the null's 95 %.

# %%
save_results(FIGURES_DIR, "08_bases_and_seeds",
             {"basis_comparison": basis_rows, "basis_winners": best, "cross_seed": cross_rows},
             texts={"basis_winners": reading(best)});
