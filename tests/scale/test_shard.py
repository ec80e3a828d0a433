"""fl.shard / shard_ / Replicate / FSDP / gather on 8 virtual CPU devices
(conftest sets the device count before JAX starts): placement as planned,
fresh buffers, ties, the optimiser state's placement (ZeRO-1 included), and
data-parallel training equal to one device."""

from __future__ import annotations

import contextlib
import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

import fluxlike as fl
from fluxlike.optimise.state import arrays


def mesh8(kind=AxisType.Auto):
    assert len(jax.devices()) == 8, "these tests need 8 devices (XLA_FLAGS=--xla_force_host_platform_device_count=8)"
    return jax.make_mesh((8,), ("data",), axis_types=(kind,))


def use(mesh):
    setter = getattr(jax.sharding, "use_mesh", None) or getattr(jax, "set_mesh", None)
    return setter(mesh) if setter else contextlib.nullcontext()


def spec(x):
    return x.sharding.spec


def test_fsdp_splits_the_largest_divisible_axis_and_replicates_small_arrays():
    mesh = mesh8()
    model = fl.Chain(fl.Dense(64, 256, fl.relu), fl.Dense(256, 10), fl.Dropout(0.1))
    placed = fl.shard(model, mesh, fl.FSDP("data"))
    w0, b0, w1 = placed.layers[0].weight, placed.layers[0].bias, placed.layers[1].weight
    assert spec(w0) == P("data", None)          # (256, 64): 256 is the largest, divisible by 8
    assert spec(w1) == P(None, "data")          # (10, 256): 10 is not divisible, 256 is
    assert spec(b0) == P()                      # 256 elements < min_size
    assert spec(placed.layers[2].key) == P()    # the Dropout key: an integer array, replicated
    for x in (w0, w1):
        assert {s.data.nbytes for s in x.addressable_shards} == {x.nbytes // 8}   # per-device bytes = total / 8
    np.testing.assert_array_equal(fl.gather(placed).layers[0].weight, np.asarray(model.layers[0].weight))


def test_placed_arrays_have_their_own_buffers_and_ties_stay_one_object():
    mesh = mesh8()
    w = jnp.ones((8, 8))
    model = fl.Chain(fl.Dense(w), fl.Dense(w))
    placed = fl.shard(model, mesh)                  # Replicate: device_put alone would alias device 0's buffer
    assert placed.layers[0].weight is placed.layers[1].weight
    jax.jit(lambda t: jax.tree.map(lambda a: a + 1, t), donate_argnums=0)({"w": placed.layers[0].weight})
    np.testing.assert_array_equal(w, np.ones((8, 8)))   # the user's array survives the donation
    same = fl.shard_(model, mesh, fl.FSDP("data", min_size=1))
    assert same is model and spec(model.layers[0].weight) == P("data", None)
    assert model.layers[0].weight is model.layers[1].weight


def test_regex_and_callable_layouts_and_their_errors():
    mesh = mesh8()
    model = fl.Chain(fl.Dense(16, 32), fl.Dense(32, 8))
    placed = fl.shard(model, mesh, {r"layers\.0\.weight": P(None, "data")})
    assert spec(placed.layers[0].weight) == P(None, "data") and spec(placed.layers[1].weight) == P()
    placed = fl.shard(model, mesh, lambda path, x: P("data") if path.endswith("bias") else P())
    assert spec(placed.layers[0].bias) == P("data") and spec(placed.layers[0].weight) == P()
    with pytest.raises(ValueError, match=r"the spec P\(None, 'model'\) for layers\.0\.weight names the axis 'model'; the mesh has \('data',\)"):
        fl.shard(model, mesh, {r"weight": P(None, "model")})
    with pytest.raises(ValueError, match=r"layers\.0\.weight has size 12 on dimension 0, which the mesh axes \('data',\) \(size 8\) do not divide"):
        fl.shard(fl.Chain(fl.Dense(3, 12)), mesh, {r"weight": P("data")})
    with pytest.raises(TypeError, match=r"rule must be fl\.Replicate\(\), fl\.FSDP\(axis\)"):
        fl.shard(model, mesh, "fsdp")
    with pytest.raises(TypeError, match=r"mesh must be a jax\.sharding\.Mesh"):
        fl.shard(model, jax.devices())
    with pytest.raises(ValueError, match=r"the mesh has axes \('data',\), not 'model'"):
        fl.shard(model, mesh, fl.FSDP("model"))


def test_setup_on_a_sharded_model_and_zero1():
    mesh = mesh8()
    model = fl.shard(fl.Chain(fl.Dense(64, 128), fl.Dense(128, 8)), mesh, fl.FSDP("data"))
    state = fl.setup(fl.Adam(), model)
    m, v = state.layers[0].weight.state
    assert spec(m) == spec(v) == P("data", None)            # moments follow their parameter
    _, hyper, counts = arrays(state)
    assert isinstance(hyper.sharding, NamedSharding) and spec(hyper) == P() and spec(counts) == P()
    replicated = fl.shard(fl.Chain(fl.Dense(64, 128), fl.Dense(128, 8)), mesh)
    zero1 = fl.shard(fl.setup(fl.Adam(), replicated), mesh, fl.FSDP("data"))   # ZeRO-1: only the state split
    assert spec(replicated.layers[0].weight) == P()
    assert spec(zero1.layers[0].weight.state[0]) == P("data", None)
    assert spec(arrays(zero1)[1]) == P()
    optax_state = fl.setup(__import__("optax").adam(1e-3), model)
    assert all(isinstance(a.sharding, NamedSharding) for a in jax.tree.leaves(arrays(optax_state)))


def batches():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 32, 6)).astype("float32")
    y = rng.normal(size=(4, 32, 2)).astype("float32")
    return [(x[i], y[i]) for i in range(4)]


def train_8b(model, state, data, put=lambda a: a, steps_context=contextlib.nullcontext):
    @jax.jit
    def step(model, state, x, y):
        val, grads = fl.withgradient(lambda m: fl.losses.mse(m(x), y), model)
        state, model = fl.update(state, model, grads[0])
        return model, state, val

    losses = []
    with steps_context():
        for _ in range(2):
            for x, y in data:
                model, state, val = step(model, state, put(x), put(y))
                losses.append(float(val))
    return model, losses


@pytest.mark.parametrize("kind", [AxisType.Auto, AxisType.Explicit])
def test_data_parallel_training_equals_one_device(kind):
    mesh = mesh8(kind)
    fl.seed(0)
    model = fl.Chain(fl.Dense(6, 16, fl.relu), fl.BatchNorm(16), fl.Dense(16, 2))
    ref_model, ref_losses = train_8b(copy.deepcopy(model), fl.setup(fl.Adam(0.01), model), batches())
    dp = fl.shard(model, mesh)
    put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))  # noqa: E731
    dp_model, losses = train_8b(dp, fl.setup(fl.Adam(0.01), dp), batches(), put, lambda: use(mesh))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6, atol=1e-7)
    for a, b in zip(jax.tree.leaves(fl.gather(dp_model)), jax.tree.leaves(ref_model)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert dp_model.layers[0].weight.sharding.is_fully_replicated


def test_fsdp_training_on_an_auto_mesh_equals_one_device():
    mesh = mesh8(AxisType.Auto)
    fl.seed(0)
    model = fl.Chain(fl.Dense(6, 16, fl.relu), fl.Dense(16, 2))
    ref_model, ref_losses = train_8b(copy.deepcopy(model), fl.setup(fl.Adam(0.01), model), batches())
    sharded = fl.shard(model, mesh, fl.FSDP("data", min_size=1))
    state = fl.setup(fl.Adam(0.01), sharded)
    put = lambda a: jax.device_put(a, NamedSharding(mesh, P("data")))  # noqa: E731
    out, losses = train_8b(sharded, state, batches(), put)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6, atol=1e-7)
    assert spec(out.layers[0].weight) == P("data", None)


def test_checkpoints_save_from_and_load_into_any_mesh(tmp_path):
    mesh = mesh8(AxisType.Explicit)
    fl.seed(0)
    model = fl.shard(fl.Chain(fl.Dense(6, 16, fl.relu), fl.BatchNorm(16), fl.Dense(16, 2)), mesh, fl.FSDP("data", min_size=1))
    state = fl.setup(fl.Adam(0.01), model)
    path = str(tmp_path / "run.safetensors")
    fl.savecheckpoint(path, model, state, step=1)
    fl.seed(1)
    one = fl.Chain(fl.Dense(6, 16, fl.relu), fl.BatchNorm(16), fl.Dense(16, 2))    # one device
    one_state = fl.setup(fl.Adam(0.01), one)
    fl.loadcheckpoint_(path, one, one_state)
    for a, b in zip(jax.tree.leaves(fl.gather((model, state))), jax.tree.leaves((one, one_state))):
        np.testing.assert_array_equal(a, np.asarray(b))
    fl.seed(2)
    other = fl.shard(fl.Chain(fl.Dense(6, 16, fl.relu), fl.BatchNorm(16), fl.Dense(16, 2)), mesh, fl.FSDP("data", min_size=1))
    other_state = fl.setup(fl.Adam(0.01), other)
    fl.loadcheckpoint_(path, other, other_state)
    assert spec(other.layers[0].weight) == P("data", None)                   # loaded into its placement
    assert spec(other_state.layers[0].weight.state[0]) == P("data", None)
    for a, b in zip(jax.tree.leaves(fl.gather((model, state))), jax.tree.leaves(fl.gather((other, other_state)))):
        np.testing.assert_array_equal(a, b)


def test_reprs_show_the_mesh_the_specs_and_bytes_per_device():
    mesh = jax.make_mesh((8,), ("data",))
    model = fl.Chain(fl.Dense(6, 16), fl.BatchNorm(16), fl.Dense(16, 3))
    plain = repr(model)
    m = fl.shard(model, mesh, fl.FSDP("data", min_size=1))
    # What each device holds, from the shapes: every array with an axis of 16
    # is split 8 ways (Dense weights 16x6 and 3x16, biases and BatchNorm's four
    # 16-vectors); the last bias (3) is whole on every device.
    split = [16 * 6, 16, 16, 16, 16, 16, 3 * 16]
    per_device = 4 * (sum(split) // 8 + 3)
    text = repr(m)
    assert text.startswith(plain)  # the Flux layout is unchanged; the placement is one more line
    assert text.endswith(f"# on mesh(data=8): 7 of 8 arrays split, {per_device} bytes per device.")
    state = repr(fl.setup(fl.Adam(), m))
    assert state.splitlines()[1].endswith("state=(16×6 float32 @P('data', None), 16×6 float32 @P('data', None)))")
    assert state.splitlines()[-1].endswith("state=(3 float32, 3 float32))")  # replicated: no spec
    replicated = repr(fl.shard(fl.Dense(2, 8), mesh))
    assert replicated == "Dense(2 => 8)  # 24 parameters; on mesh(data=8): 0 of 2 arrays split, 96 bytes per device"
    assert "mesh" not in repr(fl.Dense(2, 8))
