"""The containers Parallel, SkipConnection, PairwiseFusion, Maxout: numpy
compositions, and Flux's documented outputs and printing."""

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl

from nhwc import as64 as _np
from nhwc import randn as _randn


# --- Parallel ----------------------------------------------------------------


def test_parallel_follows_flux_rules():
    a, b, c = (_randn(3) for _ in range(3))
    p = fl.Parallel(operator.add, jnp.square, jnp.sin)
    np.testing.assert_allclose(p(a), a**2 + np.sin(a), rtol=1e-6)  # one input to every layer
    np.testing.assert_allclose(p(a, b), a**2 + np.sin(b), rtol=1e-6)  # one input per layer
    np.testing.assert_allclose(p((a, b)), a**2 + np.sin(b), rtol=1e-6)  # a tuple is splatted
    one = fl.Parallel(lambda *ys: jnp.stack(ys), jnp.exp)  # one layer, several inputs
    np.testing.assert_allclose(one(a, b, c), np.exp([a, b, c]), rtol=1e-6)
    three = fl.Parallel(operator.add, jnp.square, jnp.sin, jnp.cos)  # Julia's n-ary +
    np.testing.assert_allclose(three(a), a**2 + np.sin(a) + np.cos(a), rtol=1e-6)
    cat = fl.Parallel(lambda *ys: jnp.concatenate(ys, -1), jnp.square, jnp.sin)
    np.testing.assert_allclose(cat(a, b), np.concatenate([a**2, np.sin(b)]), rtol=1e-6)
    with pytest.raises(ValueError, match="Parallel with 3 sub-layers takes one input or 3 inputs, got 2"):
        three(a, b)


def test_parallel_named_layers_printing_and_gradient():
    p = fl.Parallel(operator.add, a=fl.Dense(10, 2, fl.tanh), b=fl.Dense(5, 2))
    assert p["a"] is p.layers.a is p[0] and p["b"] is p[1] and len(p) == 2
    lines = str(p).splitlines()  # Flux's docstring display, with `add` for `+`
    assert lines[:4] == [
        "Parallel(",
        "  add,",
        "  a = Dense(10 => 2, tanh),             # 22 parameters",
        "  b = Dense(5 => 2),                    # 12 parameters",
    ]
    assert lines[4].startswith(")") and "Total: 4 arrays, 34 parameters" in lines[4]
    x1, x2 = _randn(4, 10), _randn(4, 5)
    w1, b1, w2, b2 = (_np(t) for t in (p[0].weight, p[0].bias, p[1].weight, p[1].bias))
    y = jax.jit(lambda m, x1, x2: m(x1, x2))(p, x1, x2)
    np.testing.assert_allclose(y, np.tanh(x1 @ w1.T + b1) + x2 @ w2.T + b2, atol=1e-5)
    g = jax.jit(lambda p: fl.gradient(lambda m: m(x1, x2).sum(), p)[0])(p)
    np.testing.assert_allclose(g.layers.b.weight, np.tile(x2.sum(0), (2, 1)), rtol=1e-5)
    assert jax.tree.leaves(g.connection) == []
    with pytest.raises(KeyError, match="no layer named 'c'"):
        p["c"]


# --- SkipConnection ----------------------------------------------------------


def test_skipconnection():
    x = _randn(4, 3)
    m = fl.SkipConnection(fl.Dense(3, 3, bias=False), operator.add)
    assert repr(m) == "SkipConnection(Dense(3 => 3, bias=False), add)  # 9 parameters"
    np.testing.assert_allclose(m(x), x @ _np(m.layers.weight).T + x, atol=1e-5)
    np.testing.assert_allclose(fl.SkipConnection(jnp.tanh, operator.mul)(x), np.tanh(x) * x, rtol=1e-6)
    # Flux's docstring: a Bilinear recombines the block's output with the input
    block = fl.Chain(fl.Dense(5, 20, fl.tanh), fl.Dense(20, 9, fl.tanh))
    sc = fl.SkipConnection(block, fl.Bilinear((9, 5), 3, bias=False))
    assert sc(jnp.ones((32, 5))).shape == (32, 3)
    assert "Total: 5 arrays, 444 parameters" in str(sc)


# --- PairwiseFusion ----------------------------------------------------------


def test_pairwisefusion_follows_flux():
    x1, x2, x3 = (_randn(3) for _ in range(3))
    m = fl.PairwiseFusion(operator.add, jnp.square, jnp.sin, lambda h: 2 * h)
    y1 = x1**2
    y2 = np.sin(y1 + x2)
    y3 = 2 * (y2 + x3)
    for out in (m(x1, x2, x3), m((x1, x2, x3))):
        assert isinstance(out, tuple) and len(out) == 3
        for o, r in zip(out, (y1, y2, y3)):
            np.testing.assert_allclose(o, r, rtol=1e-6)
    y1 = x1**2  # one input, joined at every step
    y2 = np.sin(y1 + x1)
    y3 = 2 * (y2 + x1)
    for o, r in zip(m(x1), (y1, y2, y3)):
        np.testing.assert_allclose(o, r, rtol=1e-6)
    with pytest.raises(ValueError, match="PairwiseFusion with 3 sub-layers takes one input or 3 inputs, got 2"):
        m(x1, x2)
    named = fl.PairwiseFusion(operator.add, enc=fl.Dense(2, 2), dec=fl.Dense(2, 2))
    assert named["dec"] is named[1]
    assert repr(named) == "PairwiseFusion(add, enc=Dense(2 => 2), dec=Dense(2 => 2))  # 12 parameters"


# --- Maxout ------------------------------------------------------------------


def test_maxout():
    m = fl.Maxout(jnp.square, lambda x: x * 3)  # Flux's docstring
    np.testing.assert_array_equal(m(jnp.array([-2, -1, 0, 1, 2])), [4, 1, 0, 3, 6])
    m3 = fl.Maxout(lambda: fl.Dense(5, 7, fl.tanh), 3)
    lines = str(m3).splitlines()
    assert lines[:4] == ["Maxout("] + ["  Dense(5 => 7, tanh),                  # 42 parameters"] * 3
    assert "Total: 6 arrays, 126 parameters" in lines[4]
    x = _randn(11, 5)
    outs = [np.tanh(x @ _np(d.weight).T + _np(d.bias)) for d in m3.layers]
    assert not np.allclose(outs[0], outs[1])  # each layer is built with its own key
    np.testing.assert_allclose(m3(x), np.maximum(np.maximum(outs[0], outs[1]), outs[2]), atol=1e-5)
