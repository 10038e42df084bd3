"""Checkpoint manifests, the run lock and the non-finite parameter check (mpo.integrity)."""

import multiprocessing as mp
import os

import pytest
import torch

from mpo.integrity import (MANIFEST, RunLock, RunLockedError, newest_verified, nonfinite_parameters,
                           verify_checkpoint, write_manifest)


def _ckpt(root, name, payload=b"x" * 200_000):
    d = root / name
    (d / "sub").mkdir(parents=True)
    (d / "model.safetensors").write_bytes(payload)
    (d / "sub" / "optimizer.bin").write_bytes(payload[::-1] + b"opt")
    write_manifest(d, step=int(name[-1]))
    return d


def test_manifest_verifies_and_catches_zeroed_block(tmp_path):
    d = _ckpt(tmp_path, "checkpoint-1", os.urandom(200_000))
    assert verify_checkpoint(d) == []
    data = bytearray((d / "model.safetensors").read_bytes())
    data[1000:1000 + 65536] = bytes(65536)  # 64 KB zeroed in place: same size, other content
    (d / "model.safetensors").write_bytes(bytes(data))
    problems = verify_checkpoint(d)
    assert problems == ["model.safetensors: SHA-256 differs from the manifest"]


@pytest.mark.parametrize("damage", ["truncate", "delete", "add", "no_manifest", "bad_manifest"])
def test_every_kind_of_damage_is_named(tmp_path, damage):
    d = _ckpt(tmp_path, "checkpoint-1")
    opt = d / "sub" / "optimizer.bin"
    if damage == "truncate":
        opt.write_bytes(opt.read_bytes()[:10])
    elif damage == "delete":
        opt.unlink()
    elif damage == "add":
        (d / "stray.bin").write_bytes(b"1")
    elif damage == "no_manifest":
        (d / MANIFEST).unlink()
    else:
        (d / MANIFEST).write_text("{not json")
    problems = verify_checkpoint(d)
    assert len(problems) == 1, problems
    want = {"truncate": "sub/optimizer.bin", "delete": "sub/optimizer.bin: missing", "add": "stray.bin",
            "no_manifest": "never completed", "bad_manifest": "unreadable manifest"}[damage]
    assert want in problems[0]


def test_newest_verified_falls_back_and_names_damaged(tmp_path):
    c1, c2, c3 = (_ckpt(tmp_path, f"checkpoint-{i}") for i in (1, 2, 3))
    (c3 / "model.safetensors").write_bytes(b"y" * 200_000)
    (c2 / MANIFEST).unlink()
    best, damaged = newest_verified([c1, c3, c2])
    assert best == c1
    assert [d for d, _ in damaged] == [c3, c2]
    assert newest_verified([c3]) == (None, [(c3, verify_checkpoint(c3))])


def _try_lock(folder, q):
    try:
        RunLock(folder).acquire()
        q.put("acquired")
    except RunLockedError as e:
        q.put(str(e))


def test_run_lock_is_exclusive_across_processes(tmp_path):
    q = mp.get_context("fork").Queue()
    with RunLock(tmp_path):
        p = mp.get_context("fork").Process(target=_try_lock, args=(tmp_path, q))
        p.start()
        p.join(30)
        msg = q.get(timeout=5)
        assert "another trainer" in msg and f"pid {os.getpid()}" in msg and str(tmp_path) in msg
    p = mp.get_context("fork").Process(target=_try_lock, args=(tmp_path, q))
    p.start()
    p.join(30)
    assert q.get(timeout=5) == "acquired"


def test_nonfinite_parameters_names_them():
    m = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 2))
    assert nonfinite_parameters(m) == []
    with torch.no_grad():
        m[1].bias[0] = float("nan")
        m[0].weight[1, 1] = float("inf")
    assert nonfinite_parameters(m, None) == ["0.weight", "1.bias"]
