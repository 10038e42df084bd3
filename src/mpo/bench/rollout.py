"""**rollout**: generated tokens/s of the HF engine on the train prompts (and of vLLM where it is installed and CUDA
is present; otherwise an explicit ``unavailable`` entry)."""

from __future__ import annotations

from mpo.bench.common import setup_inputs


def rollout(args) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from mpo.rollout import make_engine
    from mpo.train.batch import load_train_records, prepare_prompts
    from mpo.utils import resolve_dtype

    cfg, p, device, tok = setup_inputs(args)
    t = cfg["train"]
    dtype = resolve_dtype(cfg["dtype"], device)
    recs, _ = prepare_prompts(load_train_records(p["data_root"], p["dataset"]), tok,
                              cfg["models"][p["model"]]["family"], t["max_prompt_length"])
    n = cfg["bench"]["responses"] or t["batch_size"]
    prompts = [r["prompt_ids"] for r in recs[:n]]
    out = {"model": p["model"], "prompts": len(prompts), "max_new_tokens": t["max_response_length"],
           "temperature": 1.0, "device": device}
    model = AutoModelForCausalLM.from_pretrained(p["base"], dtype=dtype).to(device).eval()
    eng = make_engine("hf", model, tok, device=torch.device(device), dtype=dtype,
                      batch_size=t["generation_batch_size"])
    eng.generate(prompts[:1], n=1, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=0)  # warm-up
    tok0, sec0 = eng.tokens_generated, eng.generate_seconds
    eng.generate(prompts, n=1, max_new_tokens=t["max_response_length"], temperature=1.0, top_p=1.0, seed=cfg["seed"])
    toks, secs = eng.tokens_generated - tok0, eng.generate_seconds - sec0
    out["hf"] = {"tokens": toks, "seconds": secs, "tokens_per_s": toks / secs if secs > 0 else None}
    del eng, model
    try:
        import vllm  # noqa: F401
        have_vllm = True
    except ImportError:
        have_vllm = False
    if not (have_vllm and device == "cuda"):
        out["vllm"] = {"status": "unavailable",
                       "reason": "vllm is not installed" if not have_vllm else "no CUDA device"}
    else:
        eng = make_engine("vllm", None, tok, device=torch.device(device), dtype=dtype, model_dir=str(p["base"]),
                          seed=cfg["seed"], gpu_memory_utilization=0.5,
                          max_model_len=t["max_prompt_length"] + t["max_response_length"])
        eng.generate(prompts[:1], n=1, max_new_tokens=4, temperature=1.0, top_p=1.0, seed=0)
        tok0, sec0 = eng.tokens_generated, eng.generate_seconds
        eng.generate(prompts, n=1, max_new_tokens=t["max_response_length"], temperature=1.0, top_p=1.0,
                     seed=cfg["seed"])
        toks, secs = eng.tokens_generated - tok0, eng.generate_seconds - sec0
        out["vllm"] = {"tokens": toks, "seconds": secs, "tokens_per_s": toks / secs if secs > 0 else None}
        eng.close()
    return out
