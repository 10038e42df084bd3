"""The paper's reported numbers (src/mpo/reported.yaml), for the "paper" columns next to our measurements."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml

REPORTED_PATH = Path(__file__).with_name("reported.yaml")


@lru_cache(maxsize=1)
def _load() -> dict:
    with open(REPORTED_PATH) as f:
        return yaml.safe_load(f)


def load_reported() -> dict:
    """A fresh copy of reported.yaml as a dict (callers may modify it)."""
    import copy

    return copy.deepcopy(_load())
