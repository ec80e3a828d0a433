"""Initialisers: pure functions of `(key, shape, dtype)`, with Flux's formulas and fan rules.

A Dense weight has shape (out, in); a convolution kernel (spatial..., in, out),
as in Flux, so `nfan` and every formula below read shapes as Flux does. Options
(`gain`, `std`, `sparsity`, ...) are keywords; to give a layer an initialiser
with options, bind them with `functools.partial` (Flux's `init=kaiming_normal(gain=2)`
is `init=partial(fl.kaiming_normal, gain=2)`).

`key` is a PRNG key or an int seed; `None` draws from `fl.seed`'s stream.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ._keys import as_key

__all__ = [
    "nfan", "glorot_uniform", "glorot_normal", "kaiming_uniform", "kaiming_normal",
    "truncated_normal", "lecun_normal", "orthogonal", "sparse_init", "identity_init",
    "zeros32", "ones32", "rand32", "randn32",
]

Shape = Sequence[int]


def _shape(shape: Shape, fn: str) -> tuple[int, ...]:
    """`shape` as a tuple of non-negative ints, or a clear error naming `fn`."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape
    ):
        raise TypeError(f"{fn}: shape must be a tuple of ints, got {shape!r}")
    if any(s < 0 for s in shape):
        raise ValueError(f"{fn}: shape must hold non-negative ints, got {tuple(shape)!r}")
    return tuple(int(s) for s in shape)


def _draw(sample: Any, key: Any, shape: tuple[int, ...], dtype: Any, *args: Any) -> jax.Array:
    """`sample(key, shape, dtype, *args)`, cheaply compiled: eager jax.random compiles
    once per (shape, dtype), about a second on a small CPU, and a model has many
    weight shapes. So draw a flat power-of-two length in at least float32, then
    slice, reshape and cast. With JAX's default (partitionable) threefry the
    values equal those of a direct draw of `shape`."""
    n = math.prod(shape)
    size = 1 << max(4, (n - 1).bit_length())
    wide = jnp.dtype(dtype) if jnp.dtype(dtype).itemsize >= 4 else jnp.dtype(jnp.float32)
    return sample(as_key(key), (size,), wide, *args)[:n].reshape(shape).astype(dtype)


def _uniform(key: Any, shape: tuple[int, ...], dtype: Any, lo: float = 0.0, hi: float = 1.0) -> jax.Array:
    return _draw(jax.random.uniform, key, shape, dtype, lo, hi)


def _normal(key: Any, shape: tuple[int, ...], dtype: Any) -> jax.Array:
    return _draw(jax.random.normal, key, shape, dtype)


def nfan(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight, as Flux's `nfan`: (out, in) for a matrix,
    (spatial..., in, out) for a kernel, (n,) for a vector.

    Args:
        shape: the weight's shape.

    Examples:
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


def glorot_uniform(key: Any, shape: Shape, dtype: Any = jnp.float32, *, gain: float = 1.0) -> jax.Array:
    """Uniform on `[-l, l]` with `l = gain * sqrt(6 / (fan_in + fan_out))` (Flux's default init).

    Args:
        key: a PRNG key or int seed.
        shape: the array's shape; fans from `nfan(shape)`.
        dtype: a float dtype.
        gain: scales the bound.

    Examples:
        >>> import jax, fluxlike as fl
        >>> w = fl.glorot_uniform(jax.random.PRNGKey(0), (3, 4))
        >>> w.shape, bool(abs(w).max() <= (6 / 7) ** 0.5)
        ((3, 4), True)
    """
    shape = _shape(shape, "glorot_uniform")
    fan_in, fan_out = nfan(shape)
    limit = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return _uniform(key, shape, dtype, -limit, limit)


def glorot_normal(key: Any, shape: Shape, dtype: Any = jnp.float32, *, gain: float = 1.0) -> jax.Array:
    """Normal with std `gain * sqrt(2 / (fan_in + fan_out))` (Xavier normal).

    Args:
        key: a PRNG key or int seed.
        shape: the array's shape; fans from `nfan(shape)`.
        dtype: a float dtype.
        gain: scales the standard deviation.

    Examples:
        >>> import jax, fluxlike as fl
        >>> fl.glorot_normal(jax.random.PRNGKey(0), (300, 200)).std().round(2)
        Array(0.06, dtype=float32)
    """
    shape = _shape(shape, "glorot_normal")
    fan_in, fan_out = nfan(shape)
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    return std * _normal(key, shape, dtype)


def kaiming_uniform(key: Any, shape: Shape, dtype: Any = jnp.float32, *, gain: float = math.sqrt(2)) -> jax.Array:
    """Uniform on `[-b, b]` with `b = gain * sqrt(3 / fan_in)` (He uniform).

    Args:
        key: a PRNG key or int seed.
        shape: the array's shape; `fan_in` from `nfan(shape)`.
        dtype: a float dtype.
        gain: scales the bound; Flux's default `sqrt(2)` suits relu.

    Examples:
        >>> import fluxlike as fl
        >>> w = fl.kaiming_uniform(0, (100, 6))
        >>> bool(abs(w).max() <= 1.0), bool(abs(w).max() > 0.9)
        (True, True)
    """
    shape = _shape(shape, "kaiming_uniform")
    bound = gain * math.sqrt(3.0 / nfan(shape)[0])
    return _uniform(key, shape, dtype, -bound, bound)


def kaiming_normal(key: Any, shape: Shape, dtype: Any = jnp.float32, *, gain: float = math.sqrt(2)) -> jax.Array:
    """Normal with std `gain / sqrt(fan_in)` (He normal).

    Args:
        key: a PRNG key or int seed.
        shape: the array's shape; `fan_in` from `nfan(shape)`.
        dtype: a float dtype.
        gain: scales the standard deviation; Flux's default `sqrt(2)` suits relu.

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.kaiming_normal(0, (1000, 200)).std()), 2)  # sqrt(2 / 200)
        0.1
    """
    shape = _shape(shape, "kaiming_normal")
    std = gain / math.sqrt(nfan(shape)[0])
    return std * _normal(key, shape, dtype)


def truncated_normal(
    key: Any,
    shape: Shape,
    dtype: Any = jnp.float32,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    lo: float = -2.0,
    hi: float = 2.0,
) -> jax.Array:
    """Normal with `mean` and `std`, truncated to `[lo, hi]` (bounds in the values' units, as Flux).

    Args:
        key: a PRNG key or int seed.
        shape: the array's shape.
        dtype: a float dtype.
        mean: of the normal before truncation.
        std: of the normal before truncation.
        lo: the lower end of the interval kept.
        hi: the upper end of the interval kept.

    Examples:
        >>> import fluxlike as fl
        >>> w = fl.truncated_normal(0, (10_000,))
        >>> bool(w.min() >= -2), bool(w.max() <= 2)
        (True, True)
    """
    shape = _shape(shape, "truncated_normal")
    if not lo < hi:
        raise ValueError(f"truncated_normal: need lo < hi, got lo={lo}, hi={hi}")
    if std <= 0:
        raise ValueError(f"truncated_normal: std must be positive, got {std}")
    if mean < lo - 2 * std or mean > hi + 2 * std:
        warnings.warn(
            "truncated_normal: the mean is more than 2 std outside [lo, hi], so the "
            "distribution of values may be inaccurate",
            stacklevel=2,
        )
    sample = lambda k, s, d: jax.random.truncated_normal(k, (lo - mean) / std, (hi - mean) / std, s, d)  # noqa: E731
    return jnp.clip(_draw(sample, key, shape, jnp.float32) * std + mean, lo, hi).astype(dtype)


def lecun_normal(key: Any, shape: Shape, dtype: Any = jnp.float32, *, gain: float = 1.0) -> jax.Array:
    """Truncated normal with std `gain * sqrt(1 / fan_in)` on `[-2, 2]` (Flux's `lecun_normal`, for selu).

    The bounds are Flux's: the values -2 and 2, not 2 standard deviations.

    Args:
        key: a PRNG key or int seed.
        shape: the array's shape; `fan_in` from `nfan(shape)`.
        dtype: a float dtype.
        gain: scales the standard deviation.

    Examples:
        >>> import fluxlike as fl
        >>> round(float(fl.lecun_normal(0, (1000, 100)).std()), 2)
        0.1
    """
    shape = _shape(shape, "lecun_normal")
    std = gain * math.sqrt(1.0 / nfan(shape)[0])
    return truncated_normal(key, shape, dtype, mean=0.0, std=std, lo=-2.0, hi=2.0)


def orthogonal(key: Any, shape: Shape, dtype: Any = jnp.float32, *, gain: float = 1.0) -> jax.Array:
    """A (semi-)orthogonal matrix times `gain` (Saxe et al. 2014), reshaped to `shape`.

    For `shape = (rows, cols)` the rows are orthonormal when `rows <= cols`
    (`W @ W.T == I`), else the columns (`W.T @ W == I`). For more than two axes,
    as in Flux, the matrix is `prod(shape[:-1])` by `shape[-1]`: a kernel's
    output channels are orthonormal vectors.

    Args:
        key: a PRNG key or int seed.
        shape: at least two axes.
        dtype: a float dtype.
        gain: scales the matrix.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> import fluxlike as fl
        >>> w = fl.orthogonal(0, (5, 7))
        >>> bool(jnp.allclose(w @ w.T, jnp.eye(5), atol=1e-5))
        True
    """
    shape = _shape(shape, "orthogonal")
    if len(shape) < 2:
        raise ValueError(f"orthogonal: cannot build a vector; shape needs at least 2 axes, got {shape}")
    rows, cols = math.prod(shape[:-1]), shape[-1]
    q = _orthonormal_columns(as_key(key), jnp.asarray(gain, jnp.float32), max(rows, cols), min(rows, cols))
    return (q.T if rows < cols else q).reshape(shape).astype(dtype)


@functools.partial(jax.jit, static_argnums=(2, 3))
def _orthonormal_columns(key: jax.Array, gain: jax.Array, n: int, m: int) -> jax.Array:
    # one compiled program per (n, m): eagerly, each of these ops would compile on its own
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, m), jnp.float32))  # reduced: q is (n, m)
    return q * jnp.sign(jnp.diagonal(r)) * gain  # the sign fix makes q Haar-distributed


def sparse_init(
    key: Any, shape: Shape, dtype: Any = jnp.float32, *, sparsity: float, std: float = 0.01
) -> jax.Array:
    """A matrix whose every column has `ceil(sparsity * rows)` zeros at random places,
    the rest normal with std `std` (Martens 2010).

    Args:
        key: a PRNG key or int seed.
        shape: `(rows, cols)`; a Dense weight `(out, in)` gets the zeros per input.
        dtype: a float dtype.
        sparsity: the fraction of zeros per column (required, as in Flux).
        std: of the non-zero entries.

    Examples:
        >>> import functools, fluxlike as fl
        >>> import fluxlike as fl
        >>> w = fl.sparse_init(0, (10, 3), sparsity=0.5)
        >>> (w == 0).sum(axis=0).tolist()
        [5, 5, 5]
        >>> fl.Dense(3, 10, init=functools.partial(fl.sparse_init, sparsity=0.5))
        Dense(3 => 10)  # 40 parameters
    """
    shape = _shape(shape, "sparse_init")
    if len(shape) != 2:
        raise ValueError(f"sparse_init: only 2-d (rows, cols) shapes are supported, got {shape}")
    if sparsity < 0:
        raise ValueError(f"sparse_init: sparsity must be >= 0, got {sparsity}")
    n_zeros = math.ceil(min(1.0, sparsity) * shape[0])
    return _sparse(as_key(key), jnp.asarray(std, jnp.float32), jnp.asarray(n_zeros), shape).astype(dtype)


@functools.partial(jax.jit, static_argnums=(3,))
def _sparse(key: jax.Array, std: jax.Array, n_zeros: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    k_val, k_perm = jax.random.split(key)
    values = std * jax.random.normal(k_val, shape, jnp.float32)
    rank = jnp.argsort(jnp.argsort(jax.random.uniform(k_perm, shape), axis=0), axis=0)
    return jnp.where(rank < n_zeros, 0.0, values)


def identity_init(
    key: Any, shape: Shape, dtype: Any = jnp.float32, *, gain: float = 1.0, shift: int | Sequence[int] = 0
) -> jax.Array:
    """An array that makes a layer the identity map (times `gain`); the key is ignored.

    A vector is zeros (a bias); a matrix is `gain * eye(rows, cols)`; a kernel
    (spatial..., in, out) has `gain` at the centre tap of channel i -> i. The
    centre is index `k // 2`, so a `Conv` with `pad=SamePad()` (our Conv is a
    cross-correlation) is the identity, as Flux's (flipped) Conv is with its
    centre `cld(k, 2)`. `shift` rolls the result like Julia's `circshift`: an
    int shifts axis 0, a tuple the leading axes.

    Args:
        key: ignored (for a uniform signature).
        shape: the array's shape.
        dtype: the dtype.
        gain: the value on the diagonal / centre taps.
        shift: circular shift, as `jnp.roll`.

    Examples:
        >>> import fluxlike as fl
        >>> fl.identity_init(None, (2, 3)).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """
    shape = _shape(shape, "identity_init")
    if len(shape) <= 1:
        return jnp.zeros(shape, dtype)
    if len(shape) == 2:
        w = gain * jnp.eye(shape[0], shape[1], dtype=dtype)
    else:
        n = min(shape[-2], shape[-1])
        centre = tuple(k // 2 for k in shape[:-2])
        idx = jnp.arange(n)
        w = jnp.zeros(shape, dtype).at[(*centre, idx, idx)].set(gain)
    if shift != 0:
        shifts = (shift,) if isinstance(shift, int) else tuple(shift)
        w = jnp.roll(w, shifts, axis=tuple(range(len(shifts))))
    return w


def zeros32(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Zeros (the key is ignored); Flux's default bias init.

    Args:
        key: ignored.
        shape: the array's shape.
        dtype: the dtype.

    Examples:
        >>> import jax, fluxlike as fl
        >>> fl.zeros32(None, (2,))
        Array([0., 0.], dtype=float32)
    """
    return jnp.zeros(_shape(shape, "zeros32"), dtype)


def ones32(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Ones (the key is ignored).

    Args:
        key: ignored.
        shape: the array's shape.
        dtype: the dtype.

    Examples:
        >>> import jax, fluxlike as fl
        >>> fl.ones32(None, (2,))
        Array([1., 1.], dtype=float32)
    """
    return jnp.ones(_shape(shape, "ones32"), dtype)


def rand32(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Uniform on `[0, 1)`, like Flux's `rand32`.

    Args:
        key: a PRNG key or int seed.
        shape: the array's shape.
        dtype: a float dtype.

    Examples:
        >>> import fluxlike as fl
        >>> w = fl.rand32(0, (1000,))
        >>> bool(w.min() >= 0), bool(w.max() < 1)
        (True, True)
    """
    return _uniform(key, _shape(shape, "rand32"), dtype)


def randn32(key: Any, shape: Shape, dtype: Any = jnp.float32) -> jax.Array:
    """Standard normal, like Flux's `randn32`.

    Args:
        key: a PRNG key or int seed.
        shape: the array's shape.
        dtype: a float dtype.

    Examples:
        >>> import fluxlike as fl
        >>> fl.randn32(0, (2, 3)).shape
        (2, 3)
    """
    return _normal(key, _shape(shape, "randn32"), dtype)
