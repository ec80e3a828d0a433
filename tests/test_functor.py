"""params, fmap, destructure, precision, state/loadmodel_."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl


def test_params_are_the_trainable_arrays_once():
    shared = fl.Dense(2, 2)
    m = fl.Chain(shared, fl.Dropout(0.5), shared)
    ps = fl.params(m)
    assert len(ps) == 2 and ps[0] is shared.weight and ps[1] is shared.bias


def test_fmap_with_gradients_and_none():
    m = fl.testmode_(fl.Chain(fl.Dense(2, 2), fl.Dropout(0.5)))
    g = fl.gradient(lambda m: m(jnp.ones(2)).sum(), m)[0]
    new = fl.fmap(lambda p, g: p - 0.5 * g, m, g)
    np.testing.assert_allclose(new[0].weight, np.asarray(m[0].weight) - 0.5 * np.ones((2, 2)))
    assert new[1].key is m[1].key  # None gradient: passed through


def test_destructure_round_trip_and_order():
    m = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1))
    flat, re = fl.destructure(m)
    want = np.concatenate([np.ravel(a) for a in jax.tree.leaves(m)])
    np.testing.assert_array_equal(flat, want)
    m2 = re(flat * 2)
    np.testing.assert_allclose(m2[1].weight, 2 * np.asarray(m[1].weight))
    with pytest.raises(ValueError, match="length 13"):
        re(jnp.zeros(3))


def test_precision_changes_floats_only():
    m = fl.Chain(fl.Dense(2, 2), fl.Dropout(0.5))
    h = fl.f16(m)
    assert h[0].weight.dtype == jnp.float16 and h[1].key.dtype == jnp.uint32
    assert fl.f32(h)[0].weight.dtype == jnp.float32
    assert m[0].weight.dtype == jnp.float32


class _Mixed(fl.Module):
    w: jax.Array
    stats: tuple
    _keep_float32 = ("stats",)

    def __init__(self):
        self.w = jnp.ones(2)
        self.stats = (jnp.zeros(2), {"n": jnp.zeros((), jnp.int32), "s": jnp.ones(3)})

    def __call__(self, x):
        return self.w * x


def test_f16_keeps_the_fields_a_module_names_in_keep_float32_at_any_depth():
    m = fl.Chain(fl.Dense(2, 2), fl.Chain(_Mixed()))
    h = fl.f16(m)
    inner = h[1][0]
    assert h[0].weight.dtype == inner.w.dtype == jnp.float16
    assert inner.stats[0].dtype == inner.stats[1]["s"].dtype == jnp.float32
    assert inner.stats[1]["n"].dtype == jnp.int32  # not floating: left alone
    back = fl.f32(h)
    assert back[0].weight.dtype == back[1][0].w.dtype == back[1][0].stats[0].dtype == jnp.float32
    with jax.enable_x64(True):
        assert fl.f64(m)[1][0].stats[1]["s"].dtype == jnp.float64  # only f16 treats the hook specially


def test_keep_float32_must_name_data_fields():
    with pytest.raises(TypeError, match=r"Bad\._keep_float32 names \['nope'\], which are not data fields"):
        class Bad(fl.Module):
            w: jax.Array
            _keep_float32 = ("nope",)


def test_state_and_loadmodel():
    a, b = fl.Chain(fl.Dense(2, 2, key=1)), fl.Chain(fl.Dense(2, 2, key=2))
    out = fl.loadmodel_(b, fl.state(a))
    assert out is b
    np.testing.assert_array_equal(a[0].weight, b[0].weight)
    with pytest.raises(ValueError, match=r"layers\.0\.weight: shape \(2, 2\) in the model, \(3, 2\) in the source"):
        fl.loadmodel_(b, fl.Chain(fl.Dense(2, 3)))


def test_loadmodel_refuses_other_dtypes_and_changes_nothing():
    """DESIGN: dtypes are never silently converted; strict loading reports
    every mismatch in one error and changes nothing."""
    a, b = fl.Chain(fl.Dense(2, 2, key=1)), fl.Chain(fl.Dense(2, 2, key=2))
    before = [np.asarray(x) for x in jax.tree.leaves(b)]
    src = fl.state(a)
    src.layers[0].bias = np.zeros(2, np.float16)  # one dtype wrong, one entry right
    with pytest.raises(TypeError, match=r"layers\.0\.bias: dtype float32 in the model, float16 in the source .*; nothing was loaded"):
        fl.loadmodel_(b, src)
    with pytest.raises(TypeError, match=r"2 problems, so nothing was loaded:\n  layers\.0\.weight: dtype float32 in the model, float16 in the source"):
        fl.loadmodel_(b, fl.f16(a))
    for x, y in zip(jax.tree.leaves(b), before):  # the right entry was not loaded either
        np.testing.assert_array_equal(x, y)
