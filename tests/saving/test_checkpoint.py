"""savecheckpoint / loadcheckpoint_: exact resume in a new process, and every
wrong checkpoint refused with the objects left as they were."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from safetensors.numpy import load_file

import fluxlike as fl

HERE = os.path.dirname(os.path.abspath(__file__))


def run(*args, timeout=240):
    env = {**os.environ, "XLA_FLAGS": ""}  # one device, as a user's run
    p = subprocess.run([sys.executable, os.path.join(HERE, "resume_run.py"), *args], capture_output=True,
                       text=True, timeout=timeout, env=env)
    assert p.returncode == 0, p.stderr[-3000:]


def test_resume_in_a_new_process_is_bit_identical_to_never_stopping(tmp_path):
    run("straight", str(tmp_path / "straight.npz"), str(tmp_path))
    run("resume", str(tmp_path / "resumed.npz"), str(tmp_path))
    a, b = np.load(tmp_path / "straight.npz"), np.load(tmp_path / "resumed.npz")
    assert sorted(a.files) == sorted(b.files)
    for rule in ("chain", "optax"):
        assert a[f"{rule}/losses"].size == 12 + 1  # 6 batches x 2 epochs, and the key stream's Dense
    for k in a.files:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), f"{k} differs after resuming"


def build(rule=None, seed=0):
    fl.seed(seed)
    model = fl.Chain(fl.Dense(2, 3, fl.relu), fl.BatchNorm(3), fl.Dense(3, 1))
    return model, fl.setup(rule or fl.Adam(), model)


def snapshot(*objs):
    return [np.array(a) for a in jax.tree.leaves(objs)]


@pytest.fixture
def ckpt(tmp_path):
    model, state = build()
    fl.adjust_(state, 0.05)
    fl.freeze_(state.layers[1])
    path = str(tmp_path / "run.safetensors")
    fl.savecheckpoint(path, model, state, step=7, metadata={"note": "x"})
    return model, state, path


def test_what_a_checkpoint_holds_under_its_names(ckpt):
    model, state, path = ckpt
    names = load_file(path)
    assert "model.layers.0.weight" in names and "model.layers.1.mean" in names
    assert "optimiser.hyper" in names and "optimiser.counts" in names and "fluxlike.keystream" in names
    np.testing.assert_array_equal(names["optimiser.counts"][:, 1], [0, 0, 1, 1, 0, 0])  # BatchNorm's Leafs frozen
    m2, s2 = build(seed=3)
    info = fl.loadcheckpoint_(path, m2, s2)
    assert info == {"step": 7, "metadata": {"note": "x"}, "path": path}
    assert all(np.array_equal(a, b) for a, b in zip(snapshot(model, state), snapshot(m2, s2)))
    assert fl.learning_rate(s2) == pytest.approx(0.05)


def refused(path, model, state, match, kind=ValueError, **kw):
    before = snapshot(model, state)
    with pytest.raises(kind, match=match):
        fl.loadcheckpoint_(path, model, state, **kw)
    assert all(np.array_equal(a, b) for a, b in zip(before, snapshot(model, state))), "a failed load changed something"


def test_another_rule_another_model_a_model_file_and_a_plain_file_are_refused(ckpt, tmp_path):
    model, state, path = ckpt
    m, _ = build(seed=2)
    refused(path, m, fl.setup(fl.Descent(0.1), m),
            r"run\.safetensors is a checkpoint of the rule Adam; this optimiser state was set up with Descent")
    refused(path, m, fl.setup(optax.adam(1e-3), m), r"checkpoint of the rule Adam; .* set up with optax ")
    other = fl.Chain(fl.Dense(2, 5, fl.relu), fl.BatchNorm(5), fl.Dense(5, 1))
    refused(path, other, fl.setup(fl.Adam(), other), r"layers\.0\.weight: shape \(5, 2\) in the model, \(3, 2\) in the checkpoint")
    modelfile = str(tmp_path / "weights.safetensors")
    fl.savemodel(modelfile, m)
    refused(modelfile, m, fl.setup(fl.Adam(), m), r"weights\.safetensors is a model file \(from fl\.savemodel\).*fl\.loadmodel_")
    from safetensors.numpy import save_file
    plain = str(tmp_path / "plain.safetensors")
    save_file({"a": np.zeros(1)}, plain)
    refused(plain, m, fl.setup(fl.Adam(), m), r"plain\.safetensors is a safetensors file but not a fluxlike checkpoint")


def test_a_state_of_another_model_and_loader_mismatches(ckpt, tmp_path):
    model, state, path = ckpt
    m, s = build(seed=2)
    with pytest.raises(ValueError, match=r"set up for a model with 8 arrays, this model has 4"):
        fl.loadcheckpoint_(path, fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1)), s)
    loader = fl.DataLoader(np.zeros((8, 2), np.float32), batchsize=4, shuffle=True, rng=1)
    refused(path, m, s, r"was saved without loader=", loader=loader)
    with_loader = str(tmp_path / "l.safetensors")
    fl.savecheckpoint(with_loader, model, state, loader=fl.DataLoader(np.zeros((8, 2)), batchsize=4))
    refused(with_loader, m, s, r"holds the state of a DataLoader with shuffle=False; the loader given has shuffle=True",
            loader=loader)
    with pytest.raises(TypeError, match=r"loader must be a fl\.DataLoader"):
        fl.savecheckpoint(with_loader, model, state, loader=[1, 2])


def test_the_loader_resumes_its_shuffled_order(tmp_path):
    model, state = build()
    loader = fl.DataLoader(np.arange(10.0), batchsize=5, shuffle=True, rng=4)
    list(loader)
    path = str(tmp_path / "l.safetensors")
    fl.savecheckpoint(path, model, state, loader=loader)
    want = [np.asarray(b) for b in loader]  # the next epoch's order
    other = fl.DataLoader(np.arange(10.0), batchsize=5, shuffle=True, rng=99)
    fl.loadcheckpoint_(path, model, state, loader=other)
    assert all(np.array_equal(a, b) for a, b in zip(want, other))


def test_save_under_a_trace_and_bad_arguments(tmp_path):
    model, state = build()
    path = str(tmp_path / "c.safetensors")

    @jax.jit
    def f(model, state):
        fl.savecheckpoint(path, model, state)
        return 0

    with pytest.raises(RuntimeError, match=r"savecheckpoint was called while JAX is tracing"):
        f(model, state)
    with pytest.raises(TypeError, match=r"pass the whole state tree from fl.setup, not the subtree at"):
        fl.savecheckpoint(path, model, state.layers[0])
    with pytest.raises(TypeError, match=r"step must be an int or None, got float"):
        fl.savecheckpoint(path, model, state, step=1.5)
    assert not os.path.exists(path)
    x = jnp.ones((4, 2))
    fl.savecheckpoint(path, model, state)  # after training too: arrays written by the compiled step
    fl.train_(lambda m, x: jnp.mean(m(x) ** 2), model, [(x,), (x,)], state)
    fl.savecheckpoint(path, model, state)
    m2, s2 = build(seed=5)
    fl.loadcheckpoint_(path, m2, s2)
    assert int(s2.layers[0].weight.count) == 2
