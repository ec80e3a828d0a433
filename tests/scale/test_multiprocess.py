"""Two real `jax.distributed` processes on loopback (gloo, 2 x 4 CPU devices)
train the same script as one process with 8 devices: the same losses and
weights, each process reading only the rows of its own devices, reprs that
fetch nothing, and data of unequal lengths ending in an error on both
processes instead of a hang. Every process is started in its own session
and killed by PID when the run fails or overruns."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.numpy import load_file

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "multiprocess_run.py")
TIMEOUT = 240  # seconds for a whole run, all processes together
GRACE = 30  # seconds the others get after one process failed, before they are killed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(mode: str, nproc: int, out: str, ok: tuple[int, ...] = (0,)) -> list[int]:
    """Run `nproc` workers; return their exit codes. A worker that exits with
    a code outside `ok` gives the others GRACE seconds, then every one still
    running is killed (its whole process group, by PID); so is everything at
    TIMEOUT. Fails the test with the workers' logs when anything was killed."""
    port = free_port() if nproc > 1 else 0
    env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={8 // nproc}"}
    procs, logs = [], []
    for rank in range(nproc):
        log = open(f"{out}{rank}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([sys.executable, WORKER, mode, str(rank), str(nproc), str(port),
                                       f"{out}{rank}"], stdout=log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True))
    deadline, killed = time.monotonic() + TIMEOUT, False
    try:
        while any(p.poll() is None for p in procs):
            if any(p.returncode is not None and p.returncode not in ok for p in procs):
                deadline = min(deadline, time.monotonic() + GRACE)
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                killed = True
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        for log in logs:
            log.close()
    codes = [p.returncode for p in procs]
    if killed or any(c not in ok for c in codes):
        text = "\n".join(f"--- rank {r} (exit {c}):\n" + open(f"{out}{r}.log").read()[-3000:]
                         for r, c in enumerate(codes))
        pytest.fail(f"{mode} run with {nproc} processes: exit codes {codes}"
                    f"{' (killed: overran or hung)' if killed else ''}\n{text}")
    return codes


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("mp")
    launch("train", 1, str(d / "one"))
    launch("train", 2, str(d / "two"))
    return np.load(d / "one0.npz"), [np.load(d / f"two{r}.npz") for r in range(2)], d


LAYOUTS = ("replicate", "fsdp")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_two_processes_train_as_one_process_with_eight_devices(runs, layout):
    one, two, _ = runs
    n_leaves = sum(k.startswith(f"{layout}/leaf") for k in one.files)
    assert one[f"{layout}/losses"].shape == (8,) and n_leaves == 9  # 4 steps x 2 epochs; Dense, BN, Dense
    for rank, got in enumerate(two):
        np.testing.assert_allclose(got[f"{layout}/losses"], one[f"{layout}/losses"], rtol=1e-6, atol=1e-6,
                                   err_msg=f"process {rank}")
        for i in range(n_leaves):
            np.testing.assert_allclose(got[f"{layout}/leaf{i}"], one[f"{layout}/leaf{i}"], rtol=1e-6,
                                       atol=1e-6, err_msg=f"process {rank}, array {i}")


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_process_reads_only_the_rows_of_its_devices(runs, layout):
    # The order, drawn independently: DataLoader(shuffle=True, rng=3) draws
    # one permutation per epoch; a batch of 16 is split over the 8 devices in
    # mesh order, the first 4 of which belong to process 0.
    gen = np.random.default_rng(3)
    order = np.concatenate([gen.permutation(64) for _ in range(2)]).reshape(8, 16)
    halves = [order[:, :8], order[:, 8:]]
    one, two, _ = runs
    assert sorted(one[f"{layout}/seen"].tolist()) == sorted(order.reshape(-1).tolist())
    for rank, got in enumerate(two):
        for field in ("seen", "seen_y"):
            assert sorted(got[f"{layout}/{field}"].tolist()) == sorted(halves[rank].reshape(-1).tolist()), \
                f"process {rank} read rows outside its devices' ({field})"


@pytest.mark.parametrize("layout", LAYOUTS)
def test_numpy_batches_fed_to_a_model_spanning_processes_raise_on_every_process(runs, layout):
    one, two, _ = runs
    msg = str(one[f"{layout}/numpy_error"])
    assert msg.startswith("UserWarning") and "not split over it" in msg  # one process: a warning
    for got in two:
        msg = str(got[f"{layout}/numpy_error"])
        assert msg.startswith("ValueError") and "not split over it" in msg and "replicas would diverge" in msg


def test_reprs_of_models_and_states_spanning_processes_show_their_placement(runs):
    _, two, _ = runs
    for got in two:
        model, state = str(got["fsdp/repr_model"]), str(got["fsdp/repr_state"])
        assert "Dense(6 => 16, relu)" in model and "on mesh(data=8)" in model
        assert "@P('data', None)" in state  # the first weight's moments, split like it
        assert "on mesh(data=8): 0 of" in str(got["replicate/repr_model"])


def test_a_checkpoint_saved_by_two_processes_resumes_on_both_as_on_one(runs):
    one, two, folder = runs
    for rank, got in enumerate([one, *two]):
        assert got["resumed/steps"].tolist() == [3]  # step 2 pruned once, by process 0
        assert str(got["resumed/spec"]) == "P('data', None)"  # loaded into the FSDP placement
        np.testing.assert_allclose(got["resumed/losses"], got["continued/losses"], rtol=1e-6, atol=1e-6,
                                   err_msg=f"run {rank}: the epoch after restoring differs from going on")
        np.testing.assert_allclose(got["resumed/losses"], one["continued/losses"], rtol=1e-6, atol=1e-6)
    files = [load_file(str(folder / f"ckpt{n}" / "step-000000003.safetensors")) for n in (1, 2)]
    assert sorted(files[0]) == sorted(files[1])
    for name in files[0]:
        np.testing.assert_allclose(files[1][name], files[0][name], rtol=1e-6, atol=1e-6, err_msg=name)


def test_processes_holding_data_of_different_lengths_both_stop_with_an_error(tmp_path):
    codes = launch("unequal", 2, str(tmp_path / "bad"), ok=(3,))
    assert codes == [3, 3]  # the loader raised ValueError on both, no hang
    for rank in range(2):
        msg = open(tmp_path / f"bad{rank}.txt").read()
        assert "different lengths [64, 48]" in msg and f"process {rank}: {64 if rank == 0 else 48}" in msg


def test_importing_fluxlike_starts_no_backend():
    # A multi-host script imports, then calls jax.distributed.initialize(),
    # which refuses to run once anything has started XLA's backend.
    code = ("import jax._src.xla_bridge as xb, fluxlike, fluxlike.saving, fluxlike.sharding\n"
            "assert not xb._backends, 'importing fluxlike started the backend'\n"
            f"jax = __import__('jax'); jax.distributed.initialize('localhost:{free_port()}', num_processes=1, "
            "process_id=0)\n"
            "print(jax.process_count())\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "1", p.stderr[-2000:]
