"""Bilinear and Scale (Dense's neighbours in dense.py): torch with the same
weights, numpy compositions, and Flux's documented outputs and printing."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fluxlike as fl

from nhwc import as64 as _np
from nhwc import randn as _randn


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
