"""mpo.utils.tune_malloc: freed memory stays in the process, so repeated large allocations stop page-faulting."""

import os
import subprocess
import sys

import pytest

PROBE = """
import resource, torch
from mpo.utils import tune_malloc
applied = tune_malloc()
def churn():  # what an update does: many param-sized tensors allocated, touched and freed together
    xs = [torch.ones(750_000) for _ in range(20)]
    del xs
churn()
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    churn()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


def _probe(tuning: str) -> tuple[bool, int]:
    env = {**os.environ, "MPO_MALLOC_TUNING": tuning}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True).stdout
    applied, faults = out.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_malloc_stops_page_faults_of_repeated_large_allocations():
    on, faults_on = _probe("1")
    off, faults_off = _probe("0")
    assert on and not off
    # measured: ~4.4 k vs ~29 k minor faults (20 x 3 MB allocated and freed 5 times)
    assert faults_on * 3 < faults_off, (faults_on, faults_off)
