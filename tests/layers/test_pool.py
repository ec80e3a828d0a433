"""Pooling and flatten against PyTorch, numpy
transcriptions of NNlib's rules, and Flux's / NNlib's documented values.

Layout: fluxlike is NHWC, PyTorch NCHW. A Julia array (d1, d2, C, N) is
(N, d2, d1, C) here: Julia's first axis is our last spatial axis.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fluxlike as fl
from nhwc import from_torch, randn, shape_of, to_torch

RTOL = ATOL = 1e-5


def np_pool(x, k, stride, pads, op, fill):
    """Reference 2-d pooling on NHWC by explicit windows (numpy, float64)."""
    xp = np.pad(x.astype(np.float64), ((0, 0), *pads, (0, 0)), constant_values=fill)
    oh = (xp.shape[1] - k[0]) // stride[0] + 1
    ow = (xp.shape[2] - k[1]) // stride[1] + 1
    out = np.empty((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            win = xp[:, i * stride[0] : i * stride[0] + k[0], j * stride[1] : j * stride[1] + k[1], :]
            out[:, i, j, :] = op(win, axis=(1, 2))
    return out


# --------------------------------------------------------------------------
# MaxPool / MeanPool

POOLS = [((2, 2), None, 0), ((3, 3), 2, 1), ((3, 2), (1, 2), (1, 0))]


@pytest.mark.parametrize("k, stride, pad", POOLS)
def test_maxpool_matches_torch(k, stride, pad):
    x = randn(2, 7, 8, 3)
    y = fl.MaxPool(k, stride=stride, pad=pad)(x)
    ref = F.max_pool2d(to_torch(x), k, stride=stride or k, padding=pad)
    np.testing.assert_allclose(y, from_torch(ref), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("k, stride, pad", POOLS)
def test_meanpool_matches_torch_count_include_pad(k, stride, pad):
    x = randn(2, 7, 8, 3)
    y = fl.MeanPool(k, stride=stride, pad=pad)(x)
    ref = F.avg_pool2d(to_torch(x), k, stride=stride or k, padding=pad, count_include_pad=True)
    np.testing.assert_allclose(y, from_torch(ref), rtol=RTOL, atol=ATOL)


def test_samepad_pools_match_numpy():
    # SamePad on an even window pads (1, 0): asymmetric, which torch cannot express
    x = randn(2, 5, 6, 2)
    mp = fl.MaxPool((2, 2), pad=fl.SamePad())
    assert mp.pad == ((1, 0), (1, 0)) and repr(mp) == "MaxPool((2, 2), pad=((1, 0), (1, 0)))"
    np.testing.assert_allclose(mp(x), np_pool(x, (2, 2), (2, 2), mp.pad, np.max, -np.inf), rtol=RTOL)
    ap = fl.MeanPool((2, 2), pad=fl.SamePad())
    # Flux / NNlib: the divisor is always the window size, padding counts as zeros
    np.testing.assert_allclose(ap(x), np_pool(x, (2, 2), (2, 2), ap.pad, np.mean, 0.0), rtol=RTOL, atol=ATOL)
    assert ap(x).shape == (2, 3, 3, 2)


def test_pool1d_matches_torch():
    x = randn(2, 11, 3)
    np.testing.assert_allclose(
        fl.MaxPool((3,), stride=2, pad=1)(x),
        from_torch(F.max_pool1d(to_torch(x), 3, stride=2, padding=1)), rtol=RTOL,
    )
    np.testing.assert_allclose(
        fl.MeanPool((4,))(x), from_torch(F.avg_pool1d(to_torch(x), 4)), rtol=RTOL, atol=ATOL
    )


def test_pool_gradients_match_torch():
    x, r = randn(1, 6, 6, 2), randn(1, 3, 3, 2)
    for layer, tf in [
        (fl.MaxPool((2, 2)), lambda t: F.max_pool2d(t, 2)),
        (fl.MeanPool((3, 3), stride=2, pad=1), lambda t: F.avg_pool2d(t, 3, 2, 1)),
    ]:
        g = fl.gradient(lambda x: jnp.sum(layer(x) * r), jnp.asarray(x))[0]
        jitted = jax.jit(jax.grad(lambda x: jnp.sum(layer(x) * r)))(jnp.asarray(x))  # as train_ runs it
        tx = to_torch(x).requires_grad_(True)
        torch.sum(tf(tx) * to_torch(r)).backward()
        np.testing.assert_allclose(g, from_torch(tx.grad), rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(jitted, from_torch(tx.grad), rtol=RTOL, atol=ATOL)


def test_pool_docstring_shapes_and_repr():
    x = (2, 100, 100, 3)
    m = fl.Chain(fl.Conv((5, 5), 3, 7, pad=fl.SamePad()), fl.MaxPool((5, 5), pad=fl.SamePad()))
    assert repr(m[1]) == "MaxPool((5, 5), pad=2)"
    assert shape_of(m[0], x) == (2, 100, 100, 7)
    assert shape_of(m, x) == (2, 20, 20, 7)
    layer = fl.MaxPool((5,), pad=2, stride=(3,))
    assert repr(layer) == "MaxPool((5,), pad=2, stride=3)"
    assert shape_of(layer, (2, 100, 7)) == (2, 34, 7)
    m = fl.Chain(fl.Conv((5, 5), 3, 7), fl.MeanPool((5, 5), pad=fl.SamePad()))
    assert repr(m[1]) == "MeanPool((5, 5), pad=2)"
    assert shape_of(m[0], x) == (2, 96, 96, 7)
    assert shape_of(m, x) == (2, 20, 20, 7)
    assert repr(fl.MeanPool((2, 2), stride=1)) == "MeanPool((2, 2), stride=1)"


# --------------------------------------------------------------------------
# global and adaptive pooling, flatten


def test_global_pools_keep_spatial_axes():
    x = randn(2, 4, 5, 3)
    np.testing.assert_allclose(fl.GlobalMaxPool()(x), x.max(axis=(1, 2), keepdims=True))
    np.testing.assert_allclose(fl.GlobalMeanPool()(x), x.mean(axis=(1, 2), keepdims=True), rtol=RTOL, atol=ATOL)
    m = fl.Chain(fl.Conv((3, 3), 3, 7), fl.GlobalMaxPool())
    assert shape_of(m, (2, 100, 100, 3)) == (2, 1, 1, 7)
    assert shape_of(fl.GlobalMaxPool(), (7, 3, 5)) == (7, 1, 5)  # Flux: rand(3, 5, 7) -> (1, 5, 7)
    assert repr(fl.GlobalMeanPool()) == "GlobalMeanPool()"


def test_adaptive_pools_match_torch_when_divisible():
    x = randn(2, 8, 9, 3)
    np.testing.assert_allclose(
        fl.AdaptiveMeanPool((2, 3))(x), from_torch(F.adaptive_avg_pool2d(to_torch(x), (2, 3))),
        rtol=RTOL, atol=ATOL,
    )
    np.testing.assert_allclose(
        fl.AdaptiveMaxPool((4, 3))(x), from_torch(F.adaptive_max_pool2d(to_torch(x), (4, 3))), rtol=RTOL
    )


def test_adaptive_pools_follow_flux_rule_otherwise():
    # Flux: stride = in // out, window = in - (out - 1) * stride; 5 -> 3: stride 1, window 3
    x = randn(1, 5, 7, 2)
    ref_max = np_pool(x, (3, 3), (1, 2), ((0, 0), (0, 0)), np.max, 0.0)
    ref_mean = np_pool(x, (3, 3), (1, 2), ((0, 0), (0, 0)), np.mean, 0.0)
    np.testing.assert_allclose(fl.AdaptiveMaxPool((3, 3))(x), ref_max, rtol=RTOL)
    np.testing.assert_allclose(fl.AdaptiveMeanPool((3, 3))(x), ref_mean, rtol=RTOL, atol=ATOL)
    x = randn(2, 20, 20, 3)
    assert shape_of(fl.AdaptiveMaxPool((5, 5)), x.shape) == (2, 5, 5, 3)
    np.testing.assert_allclose(fl.AdaptiveMaxPool((5, 5))(x), fl.MaxPool((4, 4))(x))
    assert repr(fl.AdaptiveMaxPool((25, 25))) == "AdaptiveMaxPool((25, 25))"


def test_flatten_keeps_batch_axis():
    x = randn(3, 2, 4, 5)
    np.testing.assert_array_equal(fl.flatten(x), x.reshape(3, 40))
    assert fl.flatten(jnp.ones(4)).shape == (4, 1)


# --------------------------------------------------------------------------
# errors


def test_errors_name_layer_and_sizes():
    with pytest.raises(ValueError, match=r"MaxPool\(\(2, 2\)\) expects a 4-d input \(N, H, W, C\).*\(5, 4, 3\)"):
        fl.MaxPool((2, 2))(jnp.ones((5, 4, 3)))
    with pytest.raises(ValueError, match=r"MeanPool\(\(5, 5\)\): input spatial size \(4, 9\).*smaller than the win"):
        fl.MeanPool((5, 5))(jnp.ones((1, 4, 9, 1)))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool\(\(8, 8\)\).*exceeds.*\(4, 9\)"):
        fl.AdaptiveMaxPool((8, 8))(jnp.ones((1, 4, 9, 1)))
    with pytest.raises(ValueError, match="GlobalMaxPool.*at least one spatial axis"):
        fl.GlobalMaxPool()(jnp.ones((2, 3)))


def test_maxpool_gradient_under_jit_and_scan():
    """Regression: a traced init value hid the max monoid and broke autodiff."""
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    pool = fl.MaxPool((2, 2))
    g = jax.jit(jax.grad(lambda x: pool(x).sum()))(x)
    want = np.zeros((4, 4))
    want[1::2, 1::2] = 1  # each window's maximum is its bottom-right entry
    np.testing.assert_array_equal(np.asarray(g)[0, :, :, 0], want)
    _, gs = jax.lax.scan(lambda c, x: (c, jax.grad(lambda x: pool(x).sum())(x)), 0, x[None])
    np.testing.assert_array_equal(gs[0], g)


def test_maxpool_ties_route_the_gradient_to_the_first_maximum_like_torch():
    """The default MaxPool (stride = window) takes a reshape path; with ties
    and odd sizes it must still match torch's values and gradients."""
    rng = np.random.default_rng(3)
    x = rng.integers(0, 3, size=(2, 7, 9, 3)).astype("float32")  # many ties; 7 and 9 not multiples of 2 and 3
    pool = fl.MaxPool((2, 3))
    g_out = rng.normal(size=(2, 3, 3, 3)).astype("float32")
    y, vjp = jax.vjp(pool, jnp.asarray(x))
    (gx,) = vjp(jnp.asarray(g_out))
    xt = torch.tensor(x.transpose(0, 3, 1, 2), requires_grad=True)
    yt = F.max_pool2d(xt, (2, 3))
    yt.backward(torch.tensor(g_out.transpose(0, 3, 1, 2)))
    np.testing.assert_array_equal(np.asarray(y), yt.detach().numpy().transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(np.asarray(gx), xt.grad.numpy().transpose(0, 2, 3, 1))
