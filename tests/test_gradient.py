"""gradient / withgradient against jax.grad of hand-written functions."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl


def mlp_and_raw(key=0):
    m = fl.Chain(fl.Dense(3, 4, fl.tanh, key=key), fl.Dense(4, 2, key=key + 1))
    W1, b1, W2, b2 = (jnp.asarray(a) for a in jax.tree.leaves(m))

    def raw(W1, b1, W2, b2, x, y):
        return jnp.mean((jnp.tanh(x @ W1.T + b1) @ W2.T + b2 - y) ** 2)

    return m, (W1, b1, W2, b2), raw


X = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
Y = np.random.default_rng(1).normal(size=(5, 2)).astype("float32")


def test_gradient_matches_hand_written_jax_grad():
    m, p, raw = mlp_and_raw()
    (g,) = fl.gradient(lambda m: jnp.mean((m(X) - Y) ** 2), m)
    want = jax.grad(raw, argnums=(0, 1, 2, 3))(*p, X, Y)
    got = (g.layers[0].weight, g.layers[0].bias, g.layers[1].weight, g.layers[1].bias)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert isinstance(g, fl.Chain) and g.layers[0].activation is fl.tanh


def test_several_arguments_and_none_where_nothing_is_differentiable():
    m, p, raw = mlp_and_raw()
    gm, gx, gi, gs = fl.gradient(lambda m, x, i, s: jnp.mean((m(x) - Y) ** 2) * i, m, jnp.asarray(X), 2, "label")
    want_x = jax.grad(raw, argnums=4)(*p, X, Y)
    np.testing.assert_allclose(gx, 2 * want_x, rtol=1e-5)
    assert gi is None and gs is None  # an int and a string: nothing to differentiate
    assert gm.layers[0].weight.shape == (4, 3)


def test_state_positions_hold_none():
    net = fl.Chain(fl.Dense(2, 2), fl.Dropout(0.5))
    (g,) = fl.gradient(lambda m: m(jnp.ones(2)).sum(), net)
    assert g.layers[1].key is None and g.layers[0].weight is not None


def test_return_rules_tuple_dict_namedtuple():
    class Out(NamedTuple):
        loss: jax.Array
        extra: str

    x = jnp.array([1.0, 2.0])
    val, (g,) = fl.withgradient(lambda x: ((x**2).sum(), "aux"), x)
    assert val[1] == "aux" and float(val[0]) == 5.0
    np.testing.assert_allclose(g, 2 * x)
    val, (g,) = fl.withgradient(lambda x: {"loss": (x**3).sum(), "n": 2}, x)
    assert val["n"] == 2
    np.testing.assert_allclose(g, 3 * x**2)
    val, (g,) = fl.withgradient(lambda x: Out(x.sum(), "e"), x)
    assert isinstance(val, Out) and val.extra == "e"
    np.testing.assert_allclose(g, np.ones(2))
    with pytest.raises(KeyError, match="'loss'"):
        fl.withgradient(lambda x: {"total": x.sum()}, x)


def test_non_scalar_loss_is_an_error():
    with pytest.raises(ValueError, match=r"scalar loss.*shape \(2,\)"):
        fl.gradient(lambda x: x * 2, jnp.ones(2))


def test_implicit_style_raises_with_the_explicit_form():
    m = fl.Dense(2, 1)
    with pytest.raises(TypeError, match=r"fl\.gradient\(lambda m: loss\(m\(x\), y\), model\)"):
        fl.gradient(lambda: m(jnp.ones(2)).sum(), fl.params(m))
    with pytest.raises(TypeError, match="explicit"):
        fl.gradient(lambda m: m(jnp.ones(2)).sum())


def test_under_jit_equals_eager():
    m, _, _ = mlp_and_raw()
    f = lambda m, x: fl.withgradient(lambda m: jnp.mean((m(x) - Y) ** 2), m)
    v1, (g1,) = f(m, X)
    v2, (g2,) = jax.jit(f)(m, X)
    np.testing.assert_allclose(v1, v2, rtol=1e-6)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_train_mode_state_is_carried_out_eagerly_and_under_jit():
    drop = fl.Dropout(0.5, key=3)
    net = fl.Chain(fl.Dense(4, 4, key=0), drop)
    k0 = np.asarray(drop.key)
    fl.gradient(lambda m: m(jnp.ones(4)).sum(), net)
    k1 = np.asarray(net[1].key)
    # the key advanced exactly as one split would
    np.testing.assert_array_equal(k1, jax.random.split(jnp.asarray(k0))[0])

    @jax.jit
    def step(m):
        _, g = fl.withgradient(lambda m: m(jnp.ones(4)).sum(), m)
        return m

    net2 = step(net)
    np.testing.assert_array_equal(net2[1].key, jax.random.split(jnp.asarray(k1))[0])
    np.testing.assert_array_equal(net[1].key, k1)  # the input is untouched


def test_dropout_masks_scale_and_differ_between_steps():
    net = fl.Dropout(0.5, key=0)
    x = jnp.ones(1000)
    v1, (g1,) = fl.withgradient(lambda x: net(x).sum(), x)
    v2, (g2,) = fl.withgradient(lambda x: net(x).sum(), x)
    assert set(np.unique(np.asarray(g1))) <= {0.0, 2.0}
    assert 350 < int((np.asarray(g1) > 0).sum()) < 650
    assert not np.array_equal(g1, g2)
