# %% [markdown]
# # 07 — Beyond the paper: how interpretable is the decomposition, measured?
#
# The phantoms record their generating factors, so the latent components can be scored against ground
# truth: informativeness (R² of the factors from the first components), SAP, DCI, MIG, the case-study
# selectivity, the affine share of each elementary transformation and the bootstrap stability of the
# components. Every score stands beside a **null**: random orthonormal bases of the same PCA subspace with
# matched variances — a score only says something about the PCA axes when it beats that null. The same
# scores for a PCA of deformation *fields* (registrations to a template) are the baseline.

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
from regexplain.analysis.casestudy import selectivity_rows
from regexplain.analysis.report import interpretability_report, report_score_rows, report_sections
from regexplain.data.synthetic import read_factors
from regexplain.results import records_markdown, save_results, table_markdown
from regexplain.viz.figures import plot_component_bars, plot_observed_vs_null, plot_selectivity_by_strength, save_figure

DATA_DIR, RUNS_DIR, FIGURES_DIR = pipeline.notebook_setup(DATA_DIR, RUNS_DIR, FIGURES_DIR)
hip = runs.load_run(PROFILE, "hippocampus_noskip", RUNS_DIR, DATA_DIR)
N_NULL = hip.cfg.latent.null_draws
report = interpretability_report(hip.model, hip.decomposition, hip.train, hip.val, read_factors(hip.cfg.data.root),
                                 n_null=N_NULL, n_boot=N_NULL, seed=SEED)

# The skip-connection model scored the same way (the paper's Fig 8 as numbers).
skip = runs.load_run(PROFILE, "hippocampus_skip", RUNS_DIR, DATA_DIR)
report_skip = interpretability_report(skip.model, skip.decomposition, skip.train, skip.val,
                                      read_factors(skip.cfg.data.root), n_null=N_NULL, n_boot=N_NULL, seed=SEED,
                                      field_baseline=False)
sections = {**report_sections("hippocampus_noskip", report), **report_sections("hippocampus_skip", report_skip)}
rows = report_score_rows("hippocampus_noskip", report) + report_score_rows("hippocampus_skip", report_skip)
Markdown(table_markdown("scores", rows))

# %%
plotted = {b: {k: v for k, v in s["scores"].items() if v.get("family") != "informativeness"}
           for b, s in sections.items()}
fig = plot_observed_vs_null(plotted, title="hippocampus: interpretability scores against random-basis nulls")
save_figure(fig, FIGURES_DIR / "quantitative.png");

# %% [markdown]
# ## Selectivity against the size of the transform
# The paper's case-study transforms are large for these phantoms (the 5-voxel shift at 32³ is 2.3 population
# standard deviations of the z translation, the 20° rotation 2, the zoom 1.2 three). Two readings of the
# standardised response z = Δa / σ: **per subject** (median top share of each subject's z) and **mean
# response** (top share of the average z over subjects: the transform's direction in the latent space).
# *Coherence* is the share of the per-subject response energy that this average direction carries.
# Shaded: between the null's mean and its 95th percentile (random bases of matched variances).

# %%
sweeps = {"no skip": report["latent"]["selectivity_by_strength"],
          "skip": report_skip["latent"]["selectivity_by_strength"]}
fig = plot_selectivity_by_strength(sweeps, key="mean_top_share", title="mean response: top share")
save_figure(fig, FIGURES_DIR / "selectivity_by_strength.png");
fig = plot_selectivity_by_strength(sweeps, key="top_share", title="per subject: median top share")
save_figure(fig, FIGURES_DIR / "selectivity_by_strength_per_subject.png");
strength_rows = (selectivity_rows("hippocampus_noskip", sweeps["no skip"])
                 + selectivity_rows("hippocampus_skip", sweeps["skip"]))
Markdown(table_markdown("selectivity_by_strength", strength_rows))

# %% [markdown]
# ## Affine fraction of each elementary transformation
# Share of the displacement energy of D(σ_i u_i) - D(0) inside the hippocampus explained by an affine map,
# split into translation, rotation, scale and shear (the paper reads components 1-2 as rotation and
# translation by eye).

# %%
parts = ("translation", "rotation", "scale", "shear")
comps = report["latent"]["affine"]["components"]
fractions = {p: [c.get(p, 0.0) for c in comps] for p in parts if p in comps[0]}
fig = plot_component_bars(fractions, ylabel="share of displacement energy", title="affine content per component")
save_figure(fig, FIGURES_DIR / "affine_fractions.png");
Markdown(records_markdown([{"component": i + 1, **{p: v[i] for p, v in fractions.items()},
                           "non-affine": c.get("nonaffine")} for i, c in enumerate(comps)], 2))

# %%
save_results(FIGURES_DIR, "07_quantitative",
             {"scores": rows, "selectivity_by_strength": strength_rows},
             affine_fractions=fractions, report=report, report_skip=report_skip);
