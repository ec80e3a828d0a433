"""One process of a `jax.distributed` run on loopback, started by
test_multiprocess.py: `python multiprocess_run.py MODE RANK NPROC PORT OUT`.

NPROC=1 is the reference: one process with 8 devices and no jax.distributed.
NPROC=2: two processes of 4 CPU devices each, joined over gloo on
localhost:PORT, so the mesh of 8 devices spans both. Every process builds the
same model and loader from the same global data (DataLoader(mesh=...) reads
only the rows of its own devices) and trains two epochs in each of two
layouts; OUT.npz gets the losses, the trained weights (fl.gather), the rows
this process read and the reprs. The FSDP run is then checkpointed through a
CheckpointManager in OUT's folder, restored into new objects, and both go on
for one epoch.

MODE `unequal`: rank 1 holds fewer observations than rank 0; the loader must
raise on every process, at construction, instead of the run hanging in a
collective later. OUT.txt gets the error.
"""

from __future__ import annotations

import os
import sys
import warnings

import jax
import numpy as np

import fluxlike as fl


class Recording(np.ndarray):
    """A numpy array that records which rows it was indexed with."""

    def __array_finalize__(self, obj):
        self.seen = getattr(obj, "seen", None)

    def __getitem__(self, idx):
        if self.seen is not None and isinstance(idx, np.ndarray) and idx.dtype.kind == "i":
            self.seen.extend(idx.reshape(-1).tolist())
        return np.asarray(super().__getitem__(idx))


def recording(x: np.ndarray) -> Recording:
    r = x.view(Recording)
    r.seen = []
    return r


def loss(m, x, y):
    return fl.losses.mse(m(x), y)


LAYOUTS = {  # the model's layout, and the rule
    "replicate": (fl.Replicate(), lambda: fl.Adam(0.01)),
    "fsdp": (fl.FSDP("data", min_size=1), lambda: fl.OptimiserChain(fl.ClipGlobalNorm(1.0), fl.Adam(0.01))),
}


def main(mode: str, rank: int, nproc: int, port: str, out: str) -> None:
    # The launcher sets XLA_FLAGS to 8 // nproc devices before jax starts.
    if nproc > 1:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(f"localhost:{port}", num_processes=nproc, process_id=rank,
                                   initialization_timeout=60)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 6)).astype("float32")
    Y = rng.normal(size=(64, 2)).astype("float32")
    assert jax.device_count() == 8 and jax.process_count() == nproc, (jax.device_count(), jax.process_count())
    mesh = jax.make_mesh((8,), ("data",))  # Explicit axes, jax's default

    if mode == "unequal":
        n = 64 if rank == 0 else 48
        try:
            fl.DataLoader((X[:n], Y[:n]), batchsize=16, shuffle=True, rng=3, mesh=mesh)
        except ValueError as e:
            with open(out + ".txt", "w") as f:
                f.write(str(e))
            sys.exit(3)
        sys.exit("no error: the loader accepted data of different lengths on the processes")

    saved = {}
    for name, (layout, rule) in LAYOUTS.items():
        fl.seed(0)
        model = fl.shard(fl.Chain(fl.Dense(6, 16, fl.relu), fl.BatchNorm(16), fl.Dropout(0.2),
                                  fl.Dense(16, 2)), mesh, layout)
        state = fl.setup(rule(), model)
        rx, ry = recording(X), recording(Y)
        loader = fl.DataLoader((rx, ry), batchsize=16, shuffle=True, rng=3, mesh=mesh)
        losses = [np.asarray(fl.train_(loss, model, loader, state)) for _ in range(2)]
        saved[f"{name}/losses"] = np.concatenate(losses)
        saved[f"{name}/seen"] = np.asarray(rx.seen)
        saved[f"{name}/seen_y"] = np.asarray(ry.seen)
        for i, w in enumerate(jax.tree.leaves(fl.gather(model))):
            saved[f"{name}/leaf{i}"] = np.asarray(w)
        try:  # per-process numpy batches: each process would train on its own, and the replicas diverge
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # one process warns: stop there, leaving the model as it is
                fl.train_(loss, model, [(X[:16], Y[:16])], state)
            saved[f"{name}/numpy_error"] = np.asarray("trained")
        except (ValueError, UserWarning) as e:
            saved[f"{name}/numpy_error"] = np.asarray(f"{type(e).__name__}: {e}")
        saved[f"{name}/repr_model"] = np.asarray(repr(model))
        saved[f"{name}/repr_state"] = np.asarray(repr(state))
    # A checkpoint of the FSDP run, saved by every process (process 0 writes)
    # into the folder they share, then loaded into new objects built from
    # other seeds, which train one more epoch.
    folder = os.path.dirname(out)
    manager = fl.CheckpointManager(os.path.join(folder, f"ckpt{nproc}"), keep=1)
    manager.save(2, model, state, loader=loader)
    manager.save(3, model, state, loader=loader)  # prunes step 2: process 0 alone removes it
    saved["continued/losses"] = np.asarray(fl.train_(loss, model, loader, state))
    fl.seed(5)
    model = fl.shard(fl.Chain(fl.Dense(6, 16, fl.relu), fl.BatchNorm(16), fl.Dropout(0.2),
                              fl.Dense(16, 2)), mesh, LAYOUTS["fsdp"][0])
    state = fl.setup(LAYOUTS["fsdp"][1](), model)
    loader = fl.DataLoader((X, Y), batchsize=16, shuffle=True, rng=9, mesh=mesh)
    manager.restore_(model, state, loader=loader)
    saved["resumed/losses"] = np.asarray(fl.train_(loss, model, loader, state))
    saved["resumed/steps"] = np.asarray(manager.steps())
    saved["resumed/spec"] = np.asarray(str(model.layers[0].weight.sharding.spec))
    np.savez(out + ".npz", **saved)
    print(rank, "done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
