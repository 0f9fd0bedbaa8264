# %% [markdown]
# # 02 — Training the three registration networks
#
# The paper trains the same encoder-decoder twice on the hippocampus (without and with skip connections)
# and once on the lungs. Each network encodes both volumes independently, subtracts the codes and decodes
# positive spatial gradients that integrate into a deformation (no folding along the axes). Loss: LNCC +
# Dice + 0.1 smoothness (+ Jacobian for the lungs), in both directions.
#
# A finished run under `RUNS_DIR/<profile>/<model>` is reused, an unfinished one resumed. The profile sets
# the steps: `quick` trains for minutes on two CPU cores at a lower resolution than the paper, so the
# numbers below are expected to sit under the paper's.

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
from regexplain.results import save_results, table_markdown
from regexplain.viz.figures import plot_loss_curves, save_figure

DATA_DIR, RUNS_DIR, FIGURES_DIR = pipeline.notebook_setup(DATA_DIR, RUNS_DIR, FIGURES_DIR)
for name in runs.MODELS:
    cfg = runs.model_config(PROFILE, name, DATA_DIR, SEED)
    print(runs.ensure_data(cfg))
    print(runs.ensure_trained(cfg, runs.run_dir(RUNS_DIR, PROFILE, name)))

# %% [markdown]
# ## Loss curves
# Training loss per step (faint) with its running mean, and the validation Dice measured during training.

# %%
logs, metrics = {}, {}
for name in runs.MODELS:
    rd = runs.run_dir(RUNS_DIR, PROFILE, name)
    logs[name], metrics[name] = runs.read_log(rd), runs.read_metrics(rd)
fig = plot_loss_curves(logs, key="loss", val_key="dice_after")
save_figure(fig, FIGURES_DIR / "loss_curves.png");

# %% [markdown]
# ## Dice before / after registration, beside the paper
# Mean foreground Dice over fixed validation pairs of different subjects. Paper: hippocampus 0.59 -> 0.76
# without skip connections, 0.85 with them; lungs 0.74 -> 0.90 (0.92 with skip connections, not trained
# here).

# %%
rows = []
for name, m in metrics.items():
    paper = runs.PAPER["dice"][name]
    rows.append({"model": name, "steps": m.get("steps"), "dice_before": m["dice_before"],
                 "dice_after": m["dice_after"], "paper_before": paper["before"], "paper_after": paper["after"],
                 "folding_pct": m.get("folding_pct"), "sdlogj": m.get("sdlogj"),
                 "minutes": m.get("wall_seconds", 0) / 60})
Markdown(table_markdown("dice", rows))

# %% [markdown]
# ## Better than a trivial baseline, in every direction?
# A registration model should beat translating the moving label by the difference of the label centroids,
# and recover the offset between the structures along x, y and z (the slope of the recovered against the
# true label-centroid offset: 1 all of it, 0 none). A model that learnt one axis only can look fine on
# Dice and still describe a one-dimensional latent space.

# %%
from regexplain.data.pairs import validation_pairs
from regexplain.registration.evaluation import baseline_row

base_rows = []
for name in runs.MODELS:
    run = runs.load_run(PROFILE, name, RUNS_DIR, DATA_DIR)
    pairs = validation_pairs(run.val, run.cfg.train.n_val_pairs, run.cfg.data.seed)
    base_rows.append(baseline_row(run.model, run.val, pairs, run.cfg.data.num_labels, name))
Markdown(table_markdown("baseline", base_rows))

# %% [markdown]
# ## On real anatomy it has never seen
# The same columns on the real-anatomy check: hippocampus crops cut from the T1 brain templates that
# packages ship (Colin27 from Debian's `mricron-data`, the MNI152 2009a and 6th-generation averages from the
# `realdata` extra's wheels; AAL labels split into head and body), with random offsets of up to 4 mm and
# rotations of up to 5 degrees. Nothing is downloaded: without those packages the check is skipped and the
# line below names what to install (`make realcheck` installs them).

# %%
from IPython.display import display

from regexplain.data.real_anatomy import ensure as ensure_real_anatomy
from regexplain.registration.evaluation import real_anatomy_row

REAL_DIR = DATA_DIR / "real_anatomy"
print(ensure_real_anatomy(REAL_DIR))
real_rows = []
if (REAL_DIR / "dataset.json").is_file():
    for name, (dataset, _) in runs.MODELS.items():
        if dataset == "hippocampus":
            run = runs.load_run(PROFILE, name, RUNS_DIR, DATA_DIR)
            real_rows.append(real_anatomy_row(run.model, run.cfg, REAL_DIR, name))
    display(Markdown(table_markdown("baseline_real", real_rows)))

# %%
save_results(FIGURES_DIR, "02_train", {"dice": rows, "baseline": base_rows, "baseline_real": real_rows});
