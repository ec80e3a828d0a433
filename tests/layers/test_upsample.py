"""Upsample and PixelShuffle against PyTorch and Flux's / NNlib's documented values.

Layout: fluxlike is NHWC, PyTorch NCHW. A Julia array (d1, d2, C, N) is
(N, d2, d1, C) here: Julia's first axis is our last spatial axis.
"""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fluxlike as fl
from nhwc import from_torch, randn, shape_of, to_torch

RTOL = ATOL = 1e-5


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


def test_upsample_errors_name_layer_and_sizes():
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
