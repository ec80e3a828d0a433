"""Initialisers: pure functions of `(key, shape, dtype)`, with Flux's fan rules.

A Dense weight has shape (out, in); a convolution kernel (spatial..., in, out).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

__all__ = ["nfan", "glorot_uniform", "glorot_normal", "zeros32", "ones32"]

Shape = Sequence[int]


def nfan(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight, as Flux's `nfan`: (out, in) for a matrix,
    (spatial..., in, out) for a kernel, (n,) for a vector.

    Example:
        >>> import fluxlike as fl
        >>> fl.nfan((32, 784)), fl.nfan((3, 3, 8, 16))
        ((784, 32), (72, 144))
    """
    shape = tuple(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    if len(shape) == 2:
        return shape[1], shape[0]
    k = math.prod(shape[:-2])
    return k * shape[-2], k * shape[-1]


def glorot_uniform(key: jax.Array, shape: Shape, dtype: jnp.dtype = jnp.float32, gain: float = 1.0) -> jax.Array:
    """Uniform on `[-l, l]` with `l = gain * sqrt(6 / (fan_in + fan_out))` (Flux's default init).

    Example:
        >>> import jax, fluxlike as fl
        >>> w = fl.glorot_uniform(jax.random.PRNGKey(0), (3, 4))
        >>> w.shape, bool(abs(w).max() <= (6 / 7) ** 0.5)
        ((3, 4), True)
    """
    fan_in, fan_out = nfan(shape)
    limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, tuple(shape), dtype, -limit, limit)


def glorot_normal(key: jax.Array, shape: Shape, dtype: jnp.dtype = jnp.float32, gain: float = 1.0) -> jax.Array:
    """Normal with std `gain * sqrt(2 / (fan_in + fan_out))`.

    Example:
        >>> import jax, fluxlike as fl
        >>> fl.glorot_normal(jax.random.PRNGKey(0), (300, 200)).std().round(2)
        Array(0.06, dtype=float32)
    """
    fan_in, fan_out = nfan(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return std * jax.random.normal(key, tuple(shape), dtype)


def zeros32(key: jax.Array, shape: Shape, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Zeros (the key is ignored); Flux's default bias init.

    Example:
        >>> import jax, fluxlike as fl
        >>> fl.zeros32(None, (2,))
        Array([0., 0.], dtype=float32)
    """
    return jnp.zeros(tuple(shape), dtype)


def ones32(key: jax.Array, shape: Shape, dtype: jnp.dtype = jnp.float32) -> jax.Array:
    """Ones (the key is ignored).

    Example:
        >>> import jax, fluxlike as fl
        >>> fl.ones32(None, (2,))
        Array([1., 1.], dtype=float32)
    """
    return jnp.ones(tuple(shape), dtype)
