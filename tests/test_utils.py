"""mpo.utils.tune_malloc: freed memory stays in the process, so repeated large allocations stop page-faulting."""

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, statistics, torch
from mpo.utils import tune_malloc
applied = tune_malloc()
def churn():  # what an update does: large tensors allocated, touched and freed together
    xs = [torch.ones(16_000_000) for _ in range(4)]  # 4 x 64 MB, above glibc's largest dynamic mmap threshold
    del xs
for _ in range(4):
    churn()
per_round = []
for _ in range(7):
    r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    churn()
    per_round.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
print(applied, statistics.median(per_round))
"""


def _probe(tuning: str) -> tuple[bool, float]:
    env = {**os.environ, "MPO_MALLOC_TUNING": tuning}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied == "True", float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_malloc_stops_page_faults_of_repeated_large_allocations():
    on, faults_on = _probe("1")
    off, faults_off = _probe("0")
    assert on and not off
    # minor faults per round of 4 x 64 MB allocated, touched and freed (after four rounds): measured 0 tuned, 62.5 k
    # untuned (every page of every block, mmapped afresh)
    assert faults_off > 30000 and faults_on * 10 < faults_off, (faults_on, faults_off)
