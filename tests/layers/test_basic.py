"""Bilinear, Scale, Embedding and the containers Parallel, SkipConnection,
PairwiseFusion, Maxout: torch with the same weights, numpy compositions, and
Flux's documented outputs and printing."""

import operator

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fluxlike as fl

RNG = np.random.default_rng(0)


def _randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _np(a):
    return np.asarray(a, dtype=np.float64)


# --- Bilinear ----------------------------------------------------------------


def test_bilinear_matches_torch_forward_and_gradient():
    tb = torch.nn.Bilinear(5, 4, 3)
    w, b = tb.weight.detach().numpy(), tb.bias.detach().numpy()
    m = fl.Bilinear(jnp.asarray(w), fl.tanh, bias=jnp.asarray(b))
    x, y = _randn(6, 5), _randn(6, 4)
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    out = torch.tanh(tb(tx, ty))
    np.testing.assert_allclose(m(x, y), out.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(m((x, y)), out.detach().numpy(), atol=1e-5)  # a tuple, as a Chain passes
    out.pow(2).sum().backward()
    g = jax.jit(lambda m: fl.gradient(lambda m: jnp.sum(m(x, y) ** 2), m)[0])(m)
    np.testing.assert_allclose(g.weight, tb.weight.grad.numpy(), atol=1e-5)
    np.testing.assert_allclose(g.bias, tb.bias.grad.numpy(), atol=1e-5)


def test_bilinear_one_input_and_batch_axes():
    m = fl.Bilinear(3, 2)
    w, x = _np(m.weight), _randn(2, 4, 3)  # two batch axes
    ref = np.einsum("abi,oij,abj->abo", x, w, x)  # no bias: zeros
    np.testing.assert_allclose(m(x), ref, atol=1e-5)
    msg = r"Bilinear\(3 => 2\) expects x of shape \(\.\.\., 3\) .* got \(2, 4, 3\) and \(2, 4\)"
    with pytest.raises(ValueError, match=msg):
        m(x, x[..., 0])
    with pytest.raises(ValueError, match="same batch axes"):
        m(x, x[:1])


def test_bilinear_repr_follows_flux():
    assert repr(fl.Bilinear((5, 5), 7)) == "Bilinear(5 => 7)  # 182 parameters"  # Flux's docstring
    w = jnp.zeros((4, 8, 16))
    assert repr(fl.Bilinear(w, fl.tanh, bias=False)) == "Bilinear((8, 16) => 4, tanh, bias=False)  # 512 parameters"
    with pytest.raises(ValueError, match=r"fl.Bilinear\(\(5, 4\), 7\)"):
        fl.Bilinear((5, 4, 3), 7)


# --- Scale -------------------------------------------------------------------


def test_scale_flux_docstring_examples():
    s = fl.Scale(2)
    assert repr(s) == "Scale(2)  # 4 parameters"
    np.testing.assert_array_equal(s.scale, [1, 1])
    np.testing.assert_array_equal(s.bias, [0, 0])
    np.testing.assert_array_equal(s(jnp.array([[1, 1], [2, 2], [3, 3]])), [[1, 1], [2, 2], [3, 3]])
    b = fl.Scale(jnp.array([[1.0, 2.0, 3.0, 4.0]]), jnp.square, bias=False)
    assert repr(b) == "Scale(1, 4, square, bias=False)  # 4 parameters"
    np.testing.assert_array_equal(b(jnp.array([[1.0], [10.0]])), [[1, 4, 9, 16], [100, 400, 900, 1600]])


def test_scale_elementwise_over_trailing_axes():
    s = fl.Scale(3, 4, fl.tanh)
    s.scale, s.bias = jnp.asarray(_randn(3, 4)), jnp.asarray(_randn(3, 4))
    x = _randn(5, 3, 4)
    np.testing.assert_allclose(s(x), np.tanh(_np(s.scale) * x + _np(s.bias)), atol=1e-6)
    with pytest.raises(ValueError, match=r"Scale\(3, 4, tanh\) cannot broadcast .* \(3, 4\) .* \(5, 3, 5\)"):
        s(jnp.ones((5, 3, 5)))


# --- Embedding ---------------------------------------------------------------


def test_embedding_matches_torch_with_padding_idx():
    te = torch.nn.Embedding(10, 3, padding_idx=2)
    e = fl.Embedding(jnp.asarray(te.weight.detach().numpy()), padding_idx=2)
    idx = np.array([[0, 2, 9, 2, 5], [1, 1, 2, 7, 3]])
    out = te(torch.from_numpy(idx))
    np.testing.assert_allclose(e(idx), out.detach().numpy(), atol=0)
    G = _randn(2, 5, 3)
    (out * torch.from_numpy(G)).sum().backward()
    grad = jax.jit(lambda e, x: fl.gradient(lambda m: jnp.sum(m(x) * G), e)[0].weight)
    g = grad(e, idx)
    np.testing.assert_allclose(g, te.weight.grad.numpy(), atol=1e-6)
    assert np.all(np.asarray(g)[2] == 0)  # the padding row gets no gradient
    # one-hot rows (fl.onehotbatch's output) give the same, padding included
    oh = fl.onehotbatch(idx, range(10))
    np.testing.assert_allclose(e(oh), out.detach().numpy(), atol=1e-6)
    g = grad(e, oh)
    np.testing.assert_allclose(g, te.weight.grad.numpy(), atol=1e-6)


def test_embedding_flux_docstring_example():
    # Flux: Embedding(26 => 4, init=Flux.identity_init(gain=22)), 1-based indices
    e = fl.Embedding(26, 4, init=lambda key, shape, dtype: 22 * jnp.eye(*shape, dtype=dtype))
    np.testing.assert_array_equal(e(1), [0, 22, 0, 0])  # Flux's emb(2)
    y = e(jnp.array([3, 1, 20, 14, 4, 15, 7]) - 1)
    flux = np.zeros((4, 7))
    flux[0, 1], flux[2, 0], flux[3, 4] = 22, 22, 22  # the 4x7 matrix Flux prints
    np.testing.assert_array_equal(y, flux.T)
    oh = fl.onehotbatch("cat&dog", "abcdefghijklmnopqrstuvwxyz", default="n")
    np.testing.assert_array_equal(e(oh), flux.T)
    assert e(jnp.zeros((10, 1, 12), jnp.int32)).shape == (10, 1, 12, 4)  # three batch axes


def test_embedding_constructor_and_repr():
    e = fl.Embedding(26, 4, padding_idx=-1)
    assert repr(e) == "Embedding(26 => 4, padding_idx=25)  # 104 parameters"
    w = np.asarray(e.weight)
    assert np.all(w[25] == 0) and np.all(w[:25] != 0)
    assert abs(w[:25].std() - 1) < 0.3  # standard normal, as Flux's randn32 and torch
    np.testing.assert_array_equal(e(3), w[3])  # a single index
    assert repr(fl.Embedding(26, 4)) == "Embedding(26 => 4)  # 104 parameters"


def test_embedding_errors_and_out_of_range_under_jit():
    e = fl.Embedding(5, 2)
    with pytest.raises(IndexError, match=r"Embedding\(5 => 2\): index 5 is out of range; indices are 0-based, in 0..4"):
        e(jnp.array([0, 5]))
    with pytest.raises(IndexError, match="index -1"):
        e(jnp.array([-1, 2]))
    with pytest.raises(ValueError, match=r"one-hot rows of length 5 .* got a float32 array of shape \(3, 4\)"):
        e(jnp.ones((3, 4)))
    with pytest.raises(ValueError, match="padding_idx=5 must be"):
        fl.Embedding(5, 2, padding_idx=5)
    y = jax.jit(lambda m, x: m(x))(e, jnp.array([1, 5, -1]))  # cannot raise: NaN rows
    assert np.all(np.isfinite(y[0])) and np.all(np.isnan(y[1:]))


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
