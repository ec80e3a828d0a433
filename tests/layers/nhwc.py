"""Helpers shared by the layer tests that compare with PyTorch: random
float32 data, and moving activations between fluxlike's channels-last
layout (NHWC) and PyTorch's channels-first one (NCHW)."""

import jax
import jax.numpy as jnp
import numpy as np
import torch

_rng = np.random.default_rng(1)


def randn(*shape):
    """Standard normal float32 data of `shape`."""
    return _rng.standard_normal(shape).astype(np.float32)


def as64(a):
    """`a` as a float64 numpy array (for numpy references)."""
    return np.asarray(a, dtype=np.float64)


def to_torch(x):
    """A channels-last numpy array as a channels-first torch tensor."""
    n = x.ndim
    return torch.tensor(np.transpose(x, (0, n - 1, *range(1, n - 1))))


def from_torch(t):
    """A channels-first torch tensor as a channels-last numpy array."""
    a = t.detach().numpy()
    return np.transpose(a, (0, *range(2, a.ndim), 1))


def shape_of(layer, shape):
    """The output shape of `layer` on a float32 input of `shape` (traced, not run)."""
    return jax.eval_shape(lambda m, x: m(x), layer, jax.ShapeDtypeStruct(shape, jnp.float32)).shape
