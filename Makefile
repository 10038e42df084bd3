# mpo-repro: the two set-up commands are `make reproduce` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CONFIG ?= config/config.yaml
CORES ?= all
SNAKE_ARGS ?=
# the run's results folder is results/<config name>; the report is written there (recursive: read after the venv exists)
REPORT ?= $(shell $(VPY) -c "import yaml; print('results/' + yaml.safe_load(open('$(CONFIG)'))['name'] + '/report.html')")

.PHONY: venv reproduce smoke test test-dist lint dryrun-paper lock envs bench clean-results

$(STAMP): requirements/cpu.lock.txt requirements/nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -r requirements/cpu.lock.txt
	$(VPY) -m pip install --no-deps -r requirements/nodeps.txt
	$(VPY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

## venv: create .venv from the CPU lock (torch 2.13.0 CPU)
venv: $(STAMP)

## reproduce: run the whole pipeline on CONFIG (default: config/config.yaml), offline, CPU, then build its report.html
reproduce: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile $(CONFIG) $(SNAKE_ARGS)
	$(VENV)/bin/snakemake --cores 1 --configfile $(CONFIG) --report $(REPORT)

## smoke: the CI-scale pipeline (tiny random model)
smoke: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/smoke.yaml $(SNAKE_ARGS)

## test: the test suite (what CI runs)
test: $(STAMP)
	$(VPY) -m pytest -q

## test-dist: two CPU processes (gloo, torchrun) train PPO and MPO K=3 sharded (FSDP2) and equal one process
test-dist: $(STAMP)
	$(VPY) -m pytest -q tests/test_dist.py tests/test_fsdp.py

## lint: snakemake --lint
lint: $(STAMP)
	$(VENV)/bin/snakemake --lint

## dryrun-paper: the paper-scale DAG (no network needed)
dryrun-paper: $(STAMP)
	$(VENV)/bin/snakemake -n --configfile config/paper.yaml

## bench: update-step time/memory of PPO, GRPO, MPO K=2/3/5 (identical batch), rollout and warm-up throughput,
## then the per-rule wall times of everything that ran (results/<name>/benchmarks/)
bench: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile $(CONFIG) bench $(SNAKE_ARGS)
	$(VENV)/bin/snakemake --cores 1 --configfile $(CONFIG) pipeline_times --forcerun pipeline_times $(SNAKE_ARGS)

## lock: regenerate both lock files and envs/*.yaml from requirements/*.in (needs PyPI access)
lock: $(STAMP)
	$(VPY) -m pip install -q uv==0.13.9
	$(VENV)/bin/uv pip compile requirements/cpu.in -o requirements/cpu.lock.txt --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --find-links /opt/wheels --no-header
	$(VENV)/bin/uv pip compile requirements/gpu.in -o requirements/gpu.lock.txt --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --override requirements/gpu.overrides.txt --no-header
	$(VPY) -m mpo.envs write

## envs: regenerate envs/*.yaml from the lock files
envs: $(STAMP)
	$(VPY) -m mpo.envs write
