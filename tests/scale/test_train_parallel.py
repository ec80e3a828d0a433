"""train_ on 8 virtual CPU devices with a DataLoader(mesh=...): results equal
one device's, parameters and moments placed as planned, the batch split on
its batch axis, collectives in the program, and no recompiles across
epochs, adjust_ and freeze_. A covering set of {model} x {rule} x {mesh
kind} x {layout}, not the full product."""

from __future__ import annotations

import copy

import jax
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import fluxlike as fl
from fluxlike.optimise.state import arrays

rng = np.random.default_rng(0)


def mlp():
    return (fl.Chain(fl.Dense(6, 16, fl.relu), fl.BatchNorm(16), fl.Dropout(0.2), fl.Dense(16, 2)),
            rng.normal(size=(64, 6)).astype("float32"), rng.normal(size=(64, 2)).astype("float32"))


def cnn():
    return (fl.Chain(fl.Conv((3, 3), 1, 8, fl.relu), fl.BatchNorm(8), fl.Dropout(0.1), fl.flatten,
                     fl.Dense(8 * 4 * 4, 2)),
            rng.normal(size=(32, 6, 6, 1)).astype("float32"), rng.normal(size=(32, 2)).astype("float32"))


def lstm():
    return (fl.Chain(fl.LSTM(3, 8), lambda h: h[:, -1], fl.Dense(8, 2)),
            rng.normal(size=(32, 5, 3)).astype("float32"), rng.normal(size=(32, 2)).astype("float32"))


RULES = {
    "adam": lambda: fl.Adam(0.01),
    "chain": lambda: fl.OptimiserChain(fl.ClipGlobalNorm(1.0), fl.AccumGrad(2), fl.Adam(0.01)),
    "optax": lambda: optax.inject_hyperparams(optax.adamw)(learning_rate=0.01),  # adjust_-able
}

CASES = [  # (model, rule, mesh kind, layout)
    (mlp, "adam", AxisType.Auto, "replicate"),
    (mlp, "adam", AxisType.Explicit, "fsdp"),
    (mlp, "chain", AxisType.Explicit, "zero1"),
    (mlp, "optax", AxisType.Auto, "fsdp"),
    (cnn, "adam", AxisType.Explicit, "fsdp"),
    (lstm, "chain", AxisType.Auto, "replicate"),
    (lstm, "optax", AxisType.Explicit, "fsdp"),
]


def loss(m, x, y):
    return fl.losses.mse(m(x), y)


def place(model, state_rule, mesh, layout):
    if layout == "replicate":
        m = fl.shard(model, mesh)
        return m, fl.setup(state_rule(), m)
    if layout == "fsdp":
        m = fl.shard(model, mesh, fl.FSDP("data", min_size=1))
        return m, fl.setup(state_rule(), m)
    m = fl.shard(model, mesh)  # zero1: the parameters whole, the optimiser state split
    return m, fl.shard(fl.setup(state_rule(), m), mesh, fl.FSDP("data", min_size=1))


@pytest.mark.parametrize("make, rule, kind, layout", CASES,
                         ids=[f"{m.__name__}-{r}-{k.name}-{l}" for m, r, k, l in CASES])
def test_two_epochs_equal_one_device(make, rule, kind, layout, count_compiles):
    assert len(jax.devices()) == 8
    mesh = jax.make_mesh((8,), ("data",), axis_types=(kind,))
    fl.seed(0)
    model, X, Y = make()
    ref = copy.deepcopy(model)
    ref_state = fl.setup(RULES[rule](), ref)
    ref_loader = fl.DataLoader((X, Y), batchsize=16, shuffle=True, rng=3)
    want = [fl.train_(loss, ref, ref_loader, ref_state) for _ in range(2)]

    m, state = place(model, RULES[rule], mesh, layout)
    loader = fl.DataLoader((X, Y), batchsize=16, shuffle=True, rng=3, mesh=mesh)
    got = [fl.train_(loss, m, loader, state) for _ in range(2)]
    np.testing.assert_allclose(np.concatenate(got), np.concatenate(want), rtol=1e-6, atol=1e-6)
    for a, b in zip(jax.tree.leaves(fl.gather(m)), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

    # placement as planned, kept across epochs
    w = jax.tree.leaves(m)[0]
    assert w.sharding.is_fully_replicated == (layout != "fsdp")
    split = [a for a in jax.tree.leaves(arrays(state)[0]) if a.ndim and not a.sharding.is_fully_replicated]
    assert bool(split) == (layout in ("fsdp", "zero1"))
    assert all(a.sharding.is_fully_replicated for a in arrays(state)[1:])   # the tables
    batches, _ = loader.stacked()
    assert jax.tree.leaves(batches)[0].sharding.spec == P(None, ("data",))  # split on the batch axis

    # nothing recompiles across epochs, adjust_ and freeze_ (their own small programs warmed first)
    fl.adjust_(state, 0.005)
    fl.freeze_(state.layers[0]); fl.thaw_(state)
    fl.train_(loss, m, loader, state)
    with count_compiles() as seen:
        fl.adjust_(state, 0.002)
        fl.train_(loss, m, loader, state)
        fl.freeze_(state.layers[0])
        fl.train_(loss, m, loader, state)
    assert seen == []


@pytest.mark.parametrize("layout, collective", [("replicate", "all-reduce"), ("fsdp", "all-gather")])
def test_the_step_program_holds_the_collectives(layout, collective):
    mesh = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Explicit,))
    fl.seed(0)
    model, X, Y = mlp()
    m, state = place(model, RULES["adam"], mesh, layout)
    put = lambda a: jax.device_put(a[:16], NamedSharding(mesh, P("data")))  # noqa: E731

    def step(model, state, x, y):
        val, grads = fl.withgradient(lambda mm: loss(mm, x, y), model)
        state, model = fl.update(state, model, grads[0])
        return model, state, val

    hlo = jax.jit(step).lower(m, state, put(X), put(Y)).compile().as_text()
    assert collective in hlo


def test_mesh_loader_errors():
    mesh = jax.make_mesh((8,), ("data",))
    X = np.zeros((40, 2), np.float32)
    with pytest.raises(ValueError, match=r"batchsize=12 is the global batch, split over the mesh's 8 devices, which do not divide it"):
        fl.DataLoader(X, batchsize=12, mesh=mesh)
    with pytest.raises(ValueError, match=r"the last batch would hold 4 of the 36 observations, which the mesh's 8 devices do not divide; pass partial=False"):
        fl.DataLoader(X[:36], batchsize=16, mesh=mesh)
    assert len(fl.DataLoader(X[:36], batchsize=16, mesh=mesh, partial=False)) == 2
    last = list(fl.DataLoader(X, batchsize=16, mesh=mesh))[-1]   # 40 = 16 + 16 + 8: a partial batch of 8
    assert last.shape == (8, 2) and last.sharding.spec == P(("data",))
    with pytest.raises(TypeError, match=r"mesh must be a jax\.sharding\.Mesh"):
        fl.DataLoader(X, batchsize=8, mesh="data")
    with pytest.raises(TypeError, match=r"mesh= needs array data"):
        fl.DataLoader(list(X), batchsize=8, mesh=mesh)


def test_unsplit_batches_for_a_model_on_a_mesh_warn():
    mesh = jax.make_mesh((8,), ("data",))
    fl.seed(0)
    model, X, Y = mlp()
    m = fl.shard(model, mesh)
    state = fl.setup(fl.Adam(), m)
    with pytest.warns(UserWarning, match=r"the model is placed on a mesh but the batches are not split over it"):
        fl.train_(loss, m, fl.DataLoader((X, Y), batchsize=16), state)
    with pytest.warns(UserWarning, match=r"pass fl\.DataLoader\(data, batchsize=B, mesh=mesh\)"):
        fl.train_(loss, m, [(X[:16], Y[:16]), (X[16:32], Y[16:32])], state, fuse=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fl.train_(loss, m, fl.DataLoader((X, Y), batchsize=16, mesh=mesh), state)
