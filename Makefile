# regexplain: `make reproduce` (main job) and `make test` create or refresh .venv themselves.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= quick
export MPLBACKEND := Agg

.PHONY: venv reproduce study test test-fast figures sync lab bench lint browser clean gpu-check pretrained realcheck

# torch is installed first and pinned to the CPU wheel, so nothing later pulls CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -e ".[notebooks,test,dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

reproduce: venv
	$(BIN)/regexplain reproduce --profile $(PROFILE)

# The seed study (5 seeds x no skip / skip + untrained baselines, calibrated and pose phantoms; every verdict
# also recomputed with each seed left out): verdicts in
# figures/STUDY_<regime>.md and in RESULTS.md at the next `make reproduce`. Resumes where it stopped.
# PROFILE=fast (here and for reproduce): half the steps on a cosine rate, within issue 21's time goals on 2 cores.
study: venv
	$(BIN)/regexplain study --profile $(PROFILE)

# Re-make the trained quick models shipped in regexplain/weights (reuses finished runs under runs/quick/;
# `regexplain pretrained make --force` trains them again), then check them as the tests do.
pretrained: venv
	$(BIN)/regexplain pretrained make --profile quick
	$(BIN)/regexplain pretrained check

# Debian's Chromium for the browser test of the explorer app (never a downloaded browser build).
# .ci/apt-get waits up to APT_LOCK_WAIT seconds (default 600) for a package lock another installation holds,
# saying what it waits for, instead of stopping with "Could not get lock" (exit 100).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "make browser: installing Debian's chromium (apt-get waits for the package locks if another installation holds them)"; \
	  $$sudo env APT_LOCK_WAIT=$${APT_LOCK_WAIT:-600} .ci/apt-get update -qq && \
	  $$sudo env APT_LOCK_WAIT=$${APT_LOCK_WAIT:-600} .ci/apt-get install -y -qq chromium >/dev/null; }

# The real-anatomy check (benchmarks/real_anatomy.py): hippocampus crops of packaged T1 templates, labels from
# Debian's mricron-data (AAL, Colin27) and the realdata extra's wheels (MNI152 2009a, 6th generation); then the
# main job's quick models scored on them. Never part of `make test` or the main job's requirements.
realcheck: venv
	@test -f /usr/share/mricron/templates/aal.nii.gz || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq mricron-data >/dev/null; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq mricron-data >/dev/null; fi; }
	$(BIN)/python -m pip install -q -e ".[realdata]"
	$(BIN)/python benchmarks/real_anatomy.py

test: venv browser sync
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not slow and not browser and not notebook"

# jupytext: the py:percent scripts are the source of truth; the .ipynb are generated.
sync: venv
	@for f in notebooks/[0-9]*.py; do [ -e "$$f" ] && $(BIN)/jupytext --quiet --set-kernel python3 --to ipynb "$$f" -o "$${f%.py}.ipynb" ; done; true

figures: reproduce

# JupyterLab on the numbered notebooks (generated from the py:percent sources, python3 kernel set).
lab: sync
	env -u MPLBACKEND $(BIN)/jupyter lab notebooks/   # the inline backend, not the exported Agg

bench: venv
	$(BIN)/python -m pip install -q -e ".[bench]"
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

# On a CUDA machine (with a CUDA build of torch==2.13.0 in .venv): the tests marked cuda, then 200 paper-profile
# steps float32 vs bf16 AMP (channels_last_3d): s/step, the 15 000 steps projected, peak memory, Dice.
# Without CUDA it says so and exits 0.
gpu-check: venv
	$(BIN)/python benchmarks/gpu_check.py

lint: venv
	$(BIN)/ruff check regexplain tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
