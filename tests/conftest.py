import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def pytest_configure(config):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


def snakemake_cmd(*args: str) -> list[str]:
    return [str(VENV_BIN / "snakemake"), *args]


def run(cmd, cwd=REPO, timeout=900, env=None, check=True):
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\nSTDOUT:\n{proc.stdout[-4000:]}\nSTDERR:\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def smoke_model_dir(tmp_path_factory) -> Path:
    """The smoke config's tiny random model, prepared once per test session."""
    from mpo.config import load_config
    from mpo.model_prep import prepare_model

    out = tmp_path_factory.mktemp("models") / "tiny-llama"
    prepare_model(load_config(REPO / "config" / "smoke.yaml"), "tiny-llama", out)
    return out
