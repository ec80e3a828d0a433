"""Conv, ConvTranspose, DepthwiseConv and SamePad against PyTorch with the same
weights, Flux's documented shapes and printing, and finite differences.

Layout: fluxlike is NHWC with HWIO kernels; PyTorch is NCHW with OIHW kernels
(ConvTranspose: (in, out/groups, kH, kW)). Flux's WHCN docstring shapes
(W, H, C, N) read (N, H, W, C) here.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fluxlike as fl
from nhwc import from_torch, to_torch

RTOL = ATOL = 1e-5
rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def torch_conv_weight(w):
    """(spatial..., in/g, out) -> (out, in/g, spatial...)."""
    n = w.ndim
    return torch.tensor(np.transpose(w, (n - 1, n - 2, *range(n - 2))))


def torch_pad(pads):
    """Our ((lo, hi) per spatial axis, in order) -> F.pad's (last axis first) tuple."""
    return tuple(p for lo_hi in reversed(pads) for p in lo_hi)


def shape_of(layer, shape):
    """The output shape, without computing it."""
    return jax.eval_shape(lambda m, x: m(x), layer, jax.ShapeDtypeStruct(shape, jnp.float32)).shape


# --------------------------------------------------------------------------
# forward passes against PyTorch

CONV2D = [
    # kernel, in, out, stride, pad, dilation, groups
    ((3, 3), 4, 6, 1, 0, 1, 1),
    ((3, 2), 4, 6, (2, 1), (1, 2), 1, 2),
    ((3, 3), 4, 8, 2, 1, 2, 4),
    ((2, 3), 2, 3, (1, 2), ((1, 0), (2, 1)), (2, 1), 1),
]


@pytest.mark.parametrize("k, cin, cout, stride, pad, dilation, groups", CONV2D)
def test_conv2d_matches_torch(k, cin, cout, stride, pad, dilation, groups):
    w, b = randn(*k, cin // groups, cout), randn(cout)
    layer = fl.Conv(jnp.asarray(w), fl.relu, bias=b, stride=stride, pad=pad, dilation=dilation, groups=groups)
    x = randn(2, 7, 8, cin)
    pads = layer.pad
    ref = F.conv2d(
        F.pad(to_torch(x), torch_pad(pads)), torch_conv_weight(w), torch.tensor(b),
        stride=stride, dilation=dilation, groups=groups,
    )
    np.testing.assert_allclose(layer(x), from_torch(torch.relu(ref)), rtol=RTOL, atol=ATOL)


def test_conv1d_and_conv3d_match_torch():
    w, b = randn(3, 4, 5), randn(5)
    layer = fl.Conv(jnp.asarray(w), bias=b, stride=2, pad=1, dilation=2)
    x = randn(3, 11, 4)
    ref = F.conv1d(to_torch(x), torch_conv_weight(w), torch.tensor(b), stride=2, padding=1, dilation=2)
    np.testing.assert_allclose(layer(x), from_torch(ref), rtol=RTOL, atol=ATOL)

    w3 = randn(2, 3, 2, 2, 3)
    layer3 = fl.Conv(jnp.asarray(w3), bias=False, pad=(1, 0, 1))
    x3 = randn(2, 4, 5, 3, 2)
    ref3 = F.conv3d(to_torch(x3), torch_conv_weight(w3), padding=(1, 0, 1))
    np.testing.assert_allclose(layer3(x3), from_torch(ref3), rtol=RTOL, atol=ATOL)


def test_depthwise_matches_torch():
    layer = fl.DepthwiseConv((3, 3), 3, 6, stride=2, pad=1, key=1)
    w = np.asarray(layer.weight)
    assert w.shape == (3, 3, 1, 6)
    x = randn(2, 9, 9, 3)
    ref = F.conv2d(to_torch(x), torch_conv_weight(w), stride=2, padding=1, groups=3)
    np.testing.assert_allclose(layer(x), from_torch(ref), rtol=RTOL, atol=ATOL)


CONVT2D = [
    # kernel, in, out, stride, pad, outpad, dilation, groups
    ((3, 3), 4, 6, 2, 1, 1, 1, 1),
    ((3, 2), 4, 6, (2, 3), 0, (1, 0), (1, 2), 2),
    ((4, 4), 2, 3, 3, (2, 1), 0, 1, 1),
]


@pytest.mark.parametrize("k, cin, cout, stride, pad, outpad, dilation, groups", CONVT2D)
def test_conv_transpose2d_matches_torch(k, cin, cout, stride, pad, outpad, dilation, groups):
    w, b = randn(*k, cout // groups, cin), randn(cout)
    layer = fl.ConvTranspose(
        jnp.asarray(w), bias=b, stride=stride, pad=pad, outpad=outpad, dilation=dilation, groups=groups
    )
    x = randn(2, 5, 4, cin)
    # torch's ConvTranspose2d weight is (in, out/groups, kH, kW): ours transposed, not flipped
    ref = F.conv_transpose2d(
        to_torch(x), torch.tensor(np.transpose(w, (3, 2, 0, 1))), torch.tensor(b),
        stride=stride, padding=pad, output_padding=outpad, dilation=dilation, groups=groups,
    )
    np.testing.assert_allclose(layer(x), from_torch(ref), rtol=RTOL, atol=ATOL)


def test_conv_transpose1d_matches_torch_and_is_convs_adjoint():
    w = randn(3, 2, 4)  # (k, out, in): the kernel of a Conv(2 => 4)
    layer = fl.ConvTranspose(jnp.asarray(w), bias=False, stride=2, pad=1)
    x = randn(2, 6, 4)
    ref = F.conv_transpose1d(to_torch(x), torch.tensor(np.transpose(w, (2, 1, 0))), stride=2, padding=1)
    y = np.asarray(layer(x))
    np.testing.assert_allclose(y, from_torch(ref), rtol=RTOL, atol=ATOL)
    # adjoint identity: <conv(u), x> == <u, convT(x)>, with u of convT's output shape
    conv = fl.Conv(jnp.asarray(w), bias=False, stride=2, pad=1)
    u = randn(*y.shape)
    np.testing.assert_allclose(np.vdot(np.asarray(conv(u)), x), np.vdot(u, y), rtol=1e-4)


def test_asymmetric_samepad_conv_transpose_matches_torch_cropped():
    # SamePad with stride 2, kernel 3: pad ((1, 0), ...) -- torch has only symmetric padding,
    # so compare against its unpadded output cropped by (lo, hi).
    layer = fl.ConvTranspose((3, 3), 2, 3, stride=2, pad=fl.SamePad(), key=2)
    assert layer.pad == ((1, 0), (1, 0))
    w, b = np.asarray(layer.weight), np.asarray(layer.bias)
    x = randn(1, 4, 5, 2)
    tw = torch.tensor(np.transpose(w, (3, 2, 0, 1)))
    full = from_torch(F.conv_transpose2d(to_torch(x), tw, torch.tensor(b), stride=2))
    y = layer(x)
    assert y.shape == (1, 8, 10, 3)  # input * stride
    np.testing.assert_allclose(y, full[:, 1:, 1:, :], rtol=RTOL, atol=ATOL)


def test_gradients_match_torch_autograd():
    w, b = randn(3, 3, 2, 4), randn(4)
    x = randn(2, 6, 6, 2)
    layer = fl.Conv(jnp.asarray(w), fl.tanh, bias=b, stride=2, pad=1)
    gm, gx = fl.gradient(lambda m, x: jnp.sum(m(x) ** 2), layer, jnp.asarray(x))
    tw, tb, tx = (
        torch.tensor(a, requires_grad=True)
        for a in (np.transpose(w, (3, 2, 0, 1)), b, np.transpose(x, (0, 3, 1, 2)))
    )
    torch.sum(torch.tanh(F.conv2d(tx, tw, tb, stride=2, padding=1)) ** 2).backward()
    np.testing.assert_allclose(gm.weight, np.transpose(tw.grad.numpy(), (2, 3, 1, 0)), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gm.bias, tb.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gx, np.transpose(tx.grad.numpy(), (0, 2, 3, 1)), rtol=1e-4, atol=1e-5)


def test_conv_transpose_gradients_match_torch_autograd():
    w, x = randn(3, 2, 3, 4), randn(1, 4, 3, 4)  # (k, k, out/groups, in), groups 2
    layer = fl.ConvTranspose(jnp.asarray(w), bias=False, stride=2, pad=1, outpad=1, groups=2)
    gm, gx = fl.gradient(lambda m, x: jnp.sum(m(x) ** 2), layer, jnp.asarray(x))
    tw = torch.tensor(np.transpose(w, (3, 2, 0, 1)), requires_grad=True)
    tx = torch.tensor(np.transpose(x, (0, 3, 1, 2)), requires_grad=True)
    torch.sum(F.conv_transpose2d(tx, tw, stride=2, padding=1, output_padding=1, groups=2) ** 2).backward()
    np.testing.assert_allclose(gm.weight, np.transpose(tw.grad.numpy(), (2, 3, 1, 0)), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gx, np.transpose(tx.grad.numpy(), (0, 2, 3, 1)), rtol=1e-4, atol=1e-4)


def test_gradient_matches_finite_differences():
    w, b = randn(3, 3, 2, 3), randn(3)
    x = jnp.asarray(randn(1, 5, 5, 2))

    def loss(w):  # quadratic in w: central differences are exact up to rounding
        return float(jnp.sum(fl.Conv(jnp.asarray(w), bias=b, stride=2, pad=1)(x) ** 2))

    layer = fl.Conv(jnp.asarray(w), bias=b, stride=2, pad=1)
    g = np.asarray(fl.gradient(lambda m: jnp.sum(m(x) ** 2), layer)[0].weight)
    eps = 1e-2
    for idx in [(0, 0, 0, 0), (1, 2, 1, 2), (2, 1, 0, 1), (1, 1, 1, 0)]:
        wp, wm = w.copy(), w.copy()
        wp[idx] += eps
        wm[idx] -= eps
        fd = (loss(wp) - loss(wm)) / (2 * eps)
        assert fd == pytest.approx(g[idx], rel=1e-2, abs=1e-3)


def test_jit_matches_eager_and_integer_input_is_converted():
    layer = fl.Conv((3, 3), 1, 2, fl.relu, pad=1, key=0)
    x = jnp.arange(16).reshape(1, 4, 4, 1)
    y = jax.jit(lambda m, x: m(x))(layer, x)
    np.testing.assert_allclose(y, layer(x.astype(jnp.float32)), rtol=RTOL, atol=ATOL)
    assert y.dtype == jnp.float32


# --------------------------------------------------------------------------
# Flux's documented shapes and printing (WHCN -> NHWC)

X = (2, 100, 100, 3)  # Flux: rand(Float32, 100, 100, 3, 50), two samples suffice


def test_conv_docstring_shapes():
    layer = fl.Conv((5, 5), 3, 7, fl.relu, bias=False)
    assert repr(layer) == "Conv((5, 5), 3 => 7, relu, bias=False)  # 525 parameters"
    assert shape_of(layer, X) == (2, 96, 96, 7)
    assert shape_of(fl.Conv((5, 5), 3, 7, stride=2), X) == (2, 48, 48, 7)
    assert shape_of(fl.Conv((5, 5), 3, 7, stride=2, pad=fl.SamePad()), X) == (2, 50, 50, 7)
    assert shape_of(fl.Conv((1, 1), 3, 7, pad=((20, 10), (0, 0))), X) == (2, 130, 100, 7)
    assert shape_of(fl.Conv((5, 5), 3, 7, stride=2, dilation=4), X) == (2, 42, 42, 7)
    layer = fl.Conv(jnp.ones((3, 4, 5)), fl.sigmoid, bias=np.zeros(5, np.float32))
    assert repr(layer) == "Conv((3,), 4 => 5, sigmoid)  # 65 parameters"
    assert shape_of(layer, (64, 100, 4)) == (64, 98, 5)
    assert len(fl.params(layer)) == 2


def test_samepad_docstring():
    layer = fl.Conv((2, 2), 3, 7, pad=fl.SamePad())
    assert repr(layer) == "Conv((2, 2), 3 => 7, pad=((1, 0), (1, 0)))  # 91 parameters"
    assert shape_of(layer, X) == (2, 100, 100, 7)
    assert shape_of(fl.Conv((2, 2), 3, 7), X) == (2, 99, 99, 7)
    layer3 = fl.Conv((5, 5), 3, 7, stride=2, pad=fl.SamePad())
    assert repr(layer3) == "Conv((5, 5), 3 => 7, pad=2, stride=2)  # 532 parameters"
    assert shape_of(layer3, X) == (2, 50, 50, 7)


@pytest.mark.parametrize("n, k, stride, dilation", [(7, 3, 1, 1), (7, 4, 2, 1), (10, 3, 3, 2), (9, 2, 4, 3)])
def test_samepad_output_is_ceil_input_over_stride(n, k, stride, dilation):
    layer = fl.Conv((k,), 1, 1, stride=stride, dilation=dilation, pad=fl.SamePad())
    assert shape_of(layer, (1, n, 1)) == (1, -(-n // stride), 1)
    pool = fl.MaxPool((k,), stride=stride, pad=fl.SamePad())
    assert shape_of(pool, (1, n, 1)) == (1, -(-n // stride), 1)
    convt = fl.ConvTranspose((max(k, stride),), 1, 1, stride=stride, pad=fl.SamePad())
    assert shape_of(convt, (1, n, 1)) == (1, n * stride, 1)


def test_conv_transpose_docstring_shapes():
    layer = fl.ConvTranspose((5, 5), 3, 7, fl.relu)
    assert repr(layer) == "ConvTranspose((5, 5), 3 => 7, relu)  # 532 parameters"
    assert shape_of(layer, X) == (2, 104, 104, 7)
    assert shape_of(fl.ConvTranspose((5, 5), 3, 7, stride=2), X) == (2, 203, 203, 7)
    layer = fl.ConvTranspose((5, 5), 3, 7, stride=2, outpad=1)
    assert repr(layer) == "ConvTranspose((5, 5), 3 => 7, stride=2, outpad=(1, 1))  # 532 parameters"
    assert shape_of(layer, X) == (2, 204, 204, 7)
    assert shape_of(fl.ConvTranspose((5, 5), 3, 7, stride=3, pad=fl.SamePad()), X) == (2, 300, 300, 7)
    layer = fl.ConvTranspose(jnp.ones((3, 4, 5)), fl.sigmoid, bias=np.zeros(4, np.float32))
    assert repr(layer) == "ConvTranspose((3,), 5 => 4, sigmoid)  # 64 parameters"
    assert shape_of(layer, (64, 100, 5)) == (64, 102, 4)


def test_depthwise_docstring_shapes():
    layer = fl.DepthwiseConv((5, 5), 3, 6, fl.relu, bias=False)
    assert repr(layer) == "Conv((5, 5), 3 => 6, relu, groups=3, bias=False)  # 150 parameters"
    assert shape_of(layer, X) == (2, 96, 96, 6)
    assert shape_of(fl.DepthwiseConv((5, 5), 3, 9, stride=2, pad=2), X) == (2, 50, 50, 9)


def test_repr_of_options():
    assert repr(fl.Conv((3, 3), 2, 4, pad=(1, 2), stride=(1, 2), dilation=2, groups=2)) == (
        "Conv((3, 3), 2 => 4, pad=(1, 2), stride=(1, 2), dilation=2, groups=2)  # 40 parameters"
    )
    chain = fl.Chain(fl.Conv((3, 3), 1, 4, fl.relu), fl.MaxPool((2, 2)), fl.flatten)
    assert repr(chain) == "Chain(Conv((3, 3), 1 => 4, relu), MaxPool((2, 2)), flatten)  # 40 parameters"


def test_init_gets_flux_kernel_shape():
    seen = []

    def init(key, shape, dtype):
        seen.append(shape)
        return jnp.zeros(shape, dtype)

    fl.Conv((3, 2), 6, 4, groups=2, init=init)
    fl.ConvTranspose((3, 2), 6, 4, groups=2, init=init)
    assert seen == [(3, 2, 3, 4), (3, 2, 2, 6)]


def test_key_makes_construction_reproducible():
    a = fl.Conv((3, 3), 2, 3, key=7).weight
    b = fl.Conv((3, 3), 2, 3, key=7).weight
    c = fl.Conv((3, 3), 2, 3, key=8).weight
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# --------------------------------------------------------------------------
# errors that name the layer and the sizes


def test_size_errors():
    layer = fl.Conv((3, 3), 3, 8)
    with pytest.raises(ValueError, match=r"Conv\(\(3, 3\), 3 => 8\) expects 3 input channels.*\(2, 9, 9, 4\)"):
        layer(jnp.ones((2, 9, 9, 4)))
    with pytest.raises(ValueError, match=r"expects a 4-d input \(N, H, W, C=3\).*\(9, 9, 3\).*x\[None\]"):
        layer(jnp.ones((9, 9, 3)))
    with pytest.raises(ValueError, match=r"Conv\(\(3, 3\), 3 => 8\): input spatial size \(2, 9\).*smaller"):
        layer(jnp.ones((1, 2, 9, 3)))
    with pytest.raises(ValueError, match=r"ConvTranspose\(\(3,\), 2 => 1\) expects 2 input channels"):
        fl.ConvTranspose((3,), 2, 1)(jnp.ones((1, 5, 3)))
    with pytest.raises(ValueError, match=r"crops more"):
        fl.ConvTranspose((1,), 1, 1, pad=3)(jnp.ones((1, 2, 1)))


def test_constructor_errors():
    with pytest.raises(ValueError, match="kernel size must be a tuple"):
        fl.Conv(3, 1, 2)
    with pytest.raises(ValueError, match="groups=2 must be a positive int dividing both in=3 and out=4"):
        fl.Conv((3, 3), 3, 4, groups=2)
    with pytest.raises(ValueError, match=r"pad=\(\(1, 2\), \(3, 4\)\)"):
        fl.Conv((3, 3), 1, 1, pad=(1, 2, 3, 4))  # Flux's flat form: the message shows ours
    with pytest.raises(ValueError, match="stride must be an int >= 1 or a tuple of 2"):
        fl.Conv((3, 3), 1, 1, stride=(1, 2, 3))
    with pytest.raises(ValueError, match="DepthwiseConv.*multiple of in"):
        fl.DepthwiseConv((3, 3), 3, 4)
    with pytest.raises(ValueError, match=r"bias must have shape \(4,\)"):
        fl.Conv((3, 3), 1, 4, bias=np.zeros(3))
