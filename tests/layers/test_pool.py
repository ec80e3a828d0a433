"""Pooling, Upsample, PixelShuffle and flatten against PyTorch, numpy
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

RTOL = ATOL = 1e-5
rng = np.random.default_rng(1)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def to_torch(x):
    n = x.ndim
    return torch.tensor(np.transpose(x, (0, n - 1, *range(1, n - 1))))


def from_torch(t):
    a = t.detach().numpy()
    return np.transpose(a, (0, *range(2, a.ndim), 1))


def shape_of(layer, shape):
    return jax.eval_shape(lambda m, x: m(x), layer, jax.ShapeDtypeStruct(shape, jnp.float32)).shape


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
        tx = to_torch(x).requires_grad_(True)
        torch.sum(tf(tx) * to_torch(r)).backward()
        np.testing.assert_allclose(g, from_torch(tx.grad), rtol=RTOL, atol=ATOL)


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
# Upsample


def test_upsample_nearest_matches_torch():
    x = randn(2, 3, 4, 2)
    np.testing.assert_array_equal(
        fl.Upsample(scale=(2, 3))(x), from_torch(F.interpolate(to_torch(x), scale_factor=(2, 3), mode="nearest"))
    )
    np.testing.assert_array_equal(
        fl.Upsample(size=(6, 4))(x), from_torch(F.interpolate(to_torch(x), size=(6, 4), mode="nearest"))
    )


@pytest.mark.parametrize("align", [True, False])
def test_upsample_bilinear_matches_torch(align):
    x = randn(2, 3, 4, 2)
    layer = fl.Upsample("bilinear", size=(7, 5), align_corners=align)
    ref = F.interpolate(to_torch(x), size=(7, 5), mode="bilinear", align_corners=align)
    np.testing.assert_allclose(layer(x), from_torch(ref), rtol=RTOL, atol=ATOL)
    layer = fl.Upsample(2, "bilinear", align_corners=align)
    ref = F.interpolate(to_torch(x), scale_factor=2, mode="bilinear", align_corners=align)
    np.testing.assert_allclose(layer(x), from_torch(ref), rtol=RTOL, atol=ATOL)


def test_upsample_bilinear_gradient_matches_torch():
    x, r = randn(1, 3, 4, 2), randn(1, 7, 5, 2)
    g = fl.gradient(lambda x: jnp.sum(fl.Upsample("bilinear", size=(7, 5))(x) * r), jnp.asarray(x))[0]
    tx = to_torch(x).requires_grad_(True)
    torch.sum(F.interpolate(tx, size=(7, 5), mode="bilinear", align_corners=True) * to_torch(r)).backward()
    np.testing.assert_allclose(g, from_torch(tx.grad), rtol=RTOL, atol=ATOL)


def test_upsample_trilinear_matches_torch():
    x = randn(1, 2, 3, 2, 2)
    ref = F.interpolate(to_torch(x), scale_factor=(2, 1, 3), mode="trilinear", align_corners=True)
    np.testing.assert_allclose(fl.Upsample((2, 1, 3), "trilinear")(x), from_torch(ref), rtol=RTOL, atol=ATOL)


def test_upsample_bilinear_nnlib_docstring_values():
    # NNlib: x = [1 2 3; 4 5 6] as 2x3x1x1; upsample_bilinear(x, (2, 3)) is 4x9 with
    # row i = (1 + (i-1)) .+ (0:8) / 4: first row 1.0 1.25 ... 3.0, last 4.0 ... 6.0
    x = np.array([[1, 2, 3], [4, 5, 6]], np.float32).T.reshape(1, 3, 2, 1)  # (N, d2, d1, C)
    y = np.asarray(fl.Upsample((3, 2), "bilinear")(x))[0, :, :, 0].T  # back to Julia's (d1, d2)
    julia = np.array([[1 + i + j / 4 for j in range(9)] for i in range(4)])
    np.testing.assert_allclose(y, julia, rtol=RTOL)
    # non-integer scales: upsample_bilinear(x, (2.5, 3.5)) is 5x10
    y = np.asarray(fl.Upsample((3.5, 2.5), "bilinear")(x))[0, :, :, 0].T
    assert y.shape == (5, 10)
    np.testing.assert_allclose(y[0, :5], [1.0, 1.22222, 1.44444, 1.66667, 1.88889], atol=1e-5)
    np.testing.assert_allclose(y[:, 0], [1.0, 1.75, 2.5, 3.25, 4.0], atol=1e-5)


def test_upsample_docstring_and_repr():
    m = fl.Upsample(scale=(2, 3))
    assert repr(m) == "Upsample('nearest', scale=(2, 3))"
    assert shape_of(m, (1, 2, 2, 1)) == (1, 4, 6, 1)
    m = fl.Upsample("bilinear", size=(4, 5))
    assert repr(m) == "Upsample('bilinear', size=(4, 5))"
    assert shape_of(m, (1, 2, 2, 1)) == (1, 4, 5, 1)


# --------------------------------------------------------------------------
# PixelShuffle


def test_pixel_shuffle_matches_torch():
    x = randn(2, 3, 4, 12)
    np.testing.assert_array_equal(fl.PixelShuffle(2)(x), from_torch(F.pixel_shuffle(to_torch(x), 2)))


def test_pixel_shuffle_flux_docstring():
    # Flux: xs = [2row + col + channel/10 for row in 1:2, col in 1:2, channel in 1:4, n in 1:1]
    x = np.array(
        [[[2 * row + col + ch / 10 for ch in range(1, 5)] for row in (1, 2)] for col in (1, 2)], np.float32
    )[None]  # (N, col, row, C): Julia's first axis (row) is our last spatial axis
    julia = np.array([[3.1, 3.3, 4.1, 4.3], [3.2, 3.4, 4.2, 4.4], [5.1, 5.3, 6.1, 6.3], [5.2, 5.4, 6.2, 6.4]])
    np.testing.assert_allclose(np.asarray(fl.PixelShuffle(2)(x))[0, :, :, 0].T, julia, rtol=1e-6)
    # NNlib, 1-d: y = [i + channel/10 for i in 1:3, channel in 1:6, batch in 1:1]; pixel_shuffle(y, 2)
    y = np.array([[i + c / 10 for c in range(1, 7)] for i in (1, 2, 3)], np.float32)[None]
    out = np.asarray(fl.PixelShuffle(2)(y))[0]
    julia1 = np.array(
        [[1.1, 1.3, 1.5], [1.2, 1.4, 1.6], [2.1, 2.3, 2.5], [2.2, 2.4, 2.6], [3.1, 3.3, 3.5], [3.2, 3.4, 3.6]]
    )
    np.testing.assert_allclose(out, julia1, rtol=1e-6)
    assert repr(fl.PixelShuffle(2)) == "PixelShuffle(2)"


# --------------------------------------------------------------------------
# errors


def test_errors_name_layer_and_sizes():
    with pytest.raises(ValueError, match=r"MaxPool\(\(2, 2\)\) expects a 4-d input \(N, H, W, C\).*\(5, 4, 3\)"):
        fl.MaxPool((2, 2))(jnp.ones((5, 4, 3)))
    with pytest.raises(ValueError, match=r"MeanPool\(\(5, 5\)\): input spatial size \(4, 9\).*smaller than the win"):
        fl.MeanPool((5, 5))(jnp.ones((1, 4, 9, 1)))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool\(\(8, 8\)\).*exceeds.*\(4, 9\)"):
        fl.AdaptiveMaxPool((8, 8))(jnp.ones((1, 4, 9, 1)))
    with pytest.raises(ValueError, match=r"Upsample\('bilinear', scale=2\) expects a 4-d input"):
        fl.Upsample(2, "bilinear")(jnp.ones((1, 4, 1)))
    with pytest.raises(ValueError, match=r"PixelShuffle\(2\).*multiple of r\^d = 2\^2 = 4.*\(1, 3, 3, 6\)"):
        fl.PixelShuffle(2)(jnp.ones((1, 3, 3, 6)))
    with pytest.raises(ValueError, match="integer scales"):
        fl.Upsample(1.5)
    with pytest.raises(ValueError, match="either scale or size"):
        fl.Upsample("bilinear")
    with pytest.raises(ValueError, match="align_corners applies"):
        fl.Upsample(2, align_corners=False)
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
