"""Embedding: torch with the same weights (padding_idx), Flux's documented
outputs and printing, and errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fluxlike as fl

RNG = np.random.default_rng(0)


def _randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


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
