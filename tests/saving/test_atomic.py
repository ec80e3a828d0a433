"""Atomic, durable saves: a writer SIGKILLed at random moments of its saves
always leaves a whole, loadable file (the previous one or the new one),
never a torn one, and its temporary file is cleared by the next save."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fluxlike as fl
from fluxlike.saving import _atomic

WRITER = r"""
import sys, numpy as np, fluxlike as fl
path = sys.argv[1]
big = np.zeros((1024, 1024), np.float32)   # 4 MB: a save takes a while
k = 0
while True:
    k += 1
    fl.savemodel(path, {"w": big + k, "k": np.int64(k)}, metadata={"k": str(k)})
    print(k, flush=True)
"""


def check_whole(path):
    """The file loads, and its arrays are the ones its metadata says it holds (no mixture)."""
    tree = {"w": np.zeros((1024, 1024), np.float32), "k": np.int64(0)}
    fl.loadmodel_(tree, path)
    from safetensors import safe_open
    with safe_open(path, "numpy") as f:
        k = int(f.metadata()["k"])
    assert int(tree["k"]) == k and float(tree["w"][0, 0]) == k and float(tree["w"][-1, -1]) == k
    return k


def test_a_writer_killed_at_random_moments_never_leaves_a_torn_file(tmp_path):
    path = str(tmp_path / "m.safetensors")
    rng = np.random.default_rng(0)
    seen = []
    for trial in range(8):
        p = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "XLA_FLAGS": ""})
        try:
            first = p.stdout.readline()  # one save has finished: from now on a kill can land anywhere
            assert first.strip(), "the writer did not start"
            time.sleep(rng.uniform(0.0, 0.25))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
        seen.append(check_whole(path))
        assert len(_atomic.temp_files(path)) <= 1  # at most the killed save's
    assert max(seen) > 1  # kills landed after saves had replaced earlier files
    fl.savemodel(path, {"w": np.zeros((1024, 1024), np.float32), "k": np.int64(0)}, metadata={"k": "0"})
    assert _atomic.temp_files(path) == []  # the dead writer's temporary file is gone
    assert sorted(os.listdir(tmp_path)) == ["m.safetensors"]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "a.bin")
    _atomic.write_atomic(path, lambda f: f.write(b"old"))

    def boom(f):
        f.write(b"partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic.write_atomic(path, boom)
    assert open(path, "rb").read() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_a_live_writers_temporary_file_is_left_alone(tmp_path):
    path = str(tmp_path / "a.bin")
    live = tmp_path / f".a.bin.{os.getppid()}.abcd1234.tmp"   # our parent: alive
    dead = tmp_path / ".a.bin.999999999.abcd1234.tmp"          # no such process
    live.write_bytes(b"x")
    dead.write_bytes(b"x")
    _atomic.write_atomic(path, lambda f: f.write(b"new"))
    assert live.exists() and not dead.exists()
