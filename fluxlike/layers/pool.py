"""Pooling and reshaping layers: MaxPool, MeanPool, their Global and Adaptive
forms, and `flatten`.

Inputs are channels-last batches (N, spatial..., C); the window tuple's length
decides the number of spatial axes, as in Flux. Per-axis options list the
spatial axes in the array's order, (H, W) for NHWC.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..module import Module, field
from ._common import Pads, calc_padding, check_rank, check_window, expand, kernel_tuple, maybe_tuple, pad_str

__all__ = [
    "MaxPool", "MeanPool", "GlobalMaxPool", "GlobalMeanPool", "AdaptiveMaxPool", "AdaptiveMeanPool", "flatten",
]


def _max_pool(x: jax.Array, k: tuple[int, ...], stride: tuple[int, ...], pad: Pads) -> jax.Array:
    """Max over windows; padding never wins (it is -inf)."""
    if stride == k and all(p == (0, 0) for p in pad) and jnp.issubdtype(x.dtype, jnp.floating):
        return _max_pool_tiled(x, k)
    # a numpy constant, so that JAX recognises the max monoid (and can
    # differentiate it) also while tracing, e.g. inside lax.scan
    if jnp.issubdtype(x.dtype, jnp.floating):
        init = np.array(-np.inf, x.dtype)
    else:
        init = np.array(np.iinfo(x.dtype).min, x.dtype)
    return lax.reduce_window(x, init, lax.max, (1, *k, 1), (1, *stride, 1), ((0, 0), *pad, (0, 0)))


def _max_pool_tiled(x: jax.Array, k: tuple[int, ...]) -> jax.Array:
    """Max over non-overlapping windows (the default MaxPool), as a reshape
    into windows and a one-hot select of each window's first maximum.

    Same values and the same gradient as `reduce_window` (the first maximum
    of a window takes all of it, as in Flux and PyTorch), but XLA's CPU
    backend runs `reduce_window`'s gradient slowly: in benchmarks/suite.py's
    CNN this took a training step from 12.1 to 7.3 ms."""
    n, *sizes, c = x.shape
    outs = [s // kk for s, kk in zip(sizes, k)]
    x = x[(slice(None), *(slice(0, o * kk) for o, kk in zip(outs, k)))]  # VALID: drop the rest
    d = len(k)
    x = x.reshape(n, *(v for o, kk in zip(outs, k) for v in (o, kk)), c)
    # (n, o1, k1, o2, k2, ..., c) -> (n, o1, o2, ..., c, k1, k2, ...)
    order = (0, *(1 + 2 * i for i in range(d)), 1 + 2 * d, *(2 + 2 * i for i in range(d)))
    w = x.transpose(order).reshape(n, *outs, c, -1)
    first = jax.nn.one_hot(jnp.argmax(w, axis=-1), w.shape[-1], dtype=bool)
    return jnp.where(first, w, jnp.zeros((), w.dtype)).sum(-1)


def _mean_pool(x: jax.Array, k: tuple[int, ...], stride: tuple[int, ...], pad: Pads) -> jax.Array:
    """Mean over windows, dividing by the full window size (padding counts as zeros)."""
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        x = x.astype(jnp.float32)
    zero = np.zeros((), x.dtype)  # concrete even under jit, so JAX sees a differentiable window sum
    total = lax.reduce_window(x, zero, lax.add, (1, *k, 1), (1, *stride, 1), ((0, 0), *pad, (0, 0)))
    return total / math.prod(k)


def _pool_opts(layer: Any) -> str:
    s = f"{layer.k}"
    if any(p for pair in layer.pad for p in pair):
        s += f", pad={pad_str(layer.pad)}"
    if layer.stride != layer.k:
        s += f", stride={maybe_tuple(layer.stride)}"
    return s


class _Pool(Module):
    """The fields, constructor and checks shared by MaxPool and MeanPool."""

    k: tuple[int, ...] = field(static=True)
    pad: Pads = field(static=True)
    stride: tuple[int, ...] = field(static=True)

    def __init__(
        self, window: tuple[int, ...], *, pad: Any = 0, stride: int | tuple[int, ...] | None = None
    ) -> None:
        name = type(self).__name__
        self.k = kernel_tuple(name, window, "the window size")
        self.stride = self.k if stride is None else expand(name, "stride", stride, len(self.k))
        self.pad = calc_padding(name, pad, self.k, (1,) * len(self.k))

    def _checked(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        check_rank(self, x, len(self.k))
        check_window(self, x, self.k, self.pad, "window")
        return x

    def _repr_head(self) -> str:
        return f"{type(self).__name__}({_pool_opts(self)})"


class MaxPool(_Pool):
    """Max pooling over windows of size `window` (Flux's `MaxPool`).

    Args:
        window: the window size, one int per spatial axis: `(2, 2)` for images (N, H, W, C).
        pad: as for `Conv` (an int, one per axis, (lo, hi) pairs, or `fl.SamePad()`);
            padded positions never win the max.
        stride: an int or one per axis; default the window (non-overlapping).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.MaxPool((2, 2))
        MaxPool((2, 2))
        >>> fl.MaxPool((5, 5), pad=fl.SamePad())(jnp.ones((2, 100, 100, 7))).shape
        (2, 20, 20, 7)
        >>> layer = fl.MaxPool((5,), pad=2, stride=3)  # one spatial axis
        >>> layer, layer(jnp.ones((2, 100, 7))).shape
        (MaxPool((5,), pad=2, stride=3), (2, 34, 7))
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        return _max_pool(self._checked(x), self.k, self.stride, self.pad)


class MeanPool(_Pool):
    """Mean pooling over windows of size `window` (Flux's `MeanPool`).

    Args:
        window: the window size, one int per spatial axis.
        pad: as for `Conv`. Padded positions count as zeros and the divisor is
            always the full window size (NNlib's default, PyTorch's
            `count_include_pad=True`), as in Flux.
        stride: an int or one per axis; default the window.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.MeanPool((2, 2))(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
        Array([[ 2.5,  4.5],
               [10.5, 12.5]], dtype=float32)
        >>> fl.MeanPool((5, 5), pad=fl.SamePad())
        MeanPool((5, 5), pad=2)
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        return _mean_pool(self._checked(x), self.k, self.stride, self.pad)


class _GlobalPool(Module):
    def __init__(self) -> None:
        pass

    def _axes(self, x: jax.Array) -> tuple[int, ...]:
        if x.ndim < 3:
            raise ValueError(
                f"{self._repr_head()} expects an input (N, spatial..., C) with at least one "
                f"spatial axis, got shape {tuple(x.shape)}"
            )
        return tuple(range(1, x.ndim - 1))

    def _repr_head(self) -> str:
        return f"{type(self).__name__}()"


class GlobalMaxPool(_GlobalPool):
    """Max over all spatial axes, kept with size 1: (N, H, W, C) -> (N, 1, 1, C), as Flux.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.GlobalMaxPool()(jnp.ones((2, 10, 10, 7))).shape
        (2, 1, 1, 7)
        >>> fl.GlobalMaxPool()(jnp.ones((7, 3, 5))).shape  # one spatial axis
        (7, 1, 5)
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.max(x, axis=self._axes(x), keepdims=True)


class GlobalMeanPool(_GlobalPool):
    """Mean over all spatial axes, kept with size 1: (N, H, W, C) -> (N, 1, 1, C), as Flux.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> m = fl.Chain(fl.Conv((3, 3), 3, 7), fl.GlobalMeanPool(), fl.flatten)
        >>> m(jnp.ones((2, 10, 10, 3))).shape
        (2, 7)
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(jnp.float32)
        return jnp.mean(x, axis=self._axes(x), keepdims=True)


class _AdaptivePool(Module):
    """The field, constructor and window rule shared by the adaptive pools."""

    out: tuple[int, ...] = field(static=True)

    def __init__(self, out: tuple[int, ...]) -> None:
        self.out = kernel_tuple(type(self).__name__, out, "the output size")

    def _window(self, x: jax.Array) -> tuple[jax.Array, tuple[int, ...], tuple[int, ...]]:
        """Flux's rule: stride `in // out`, window `in - (out - 1) * stride`."""
        x = jnp.asarray(x)
        check_rank(self, x, len(self.out))
        size = x.shape[1:-1]
        if any(o > s for o, s in zip(self.out, size)):
            raise ValueError(
                f"{self._repr_head()}: the output size {self.out} exceeds the input's spatial size "
                f"{tuple(size)} (shape {tuple(x.shape)}); adaptive pooling only shrinks. "
                f"Use Upsample to enlarge."
            )
        stride = tuple(s // o for s, o in zip(size, self.out))
        k = tuple(s - (o - 1) * st for s, o, st in zip(size, self.out, stride))
        return x, k, stride

    def _repr_head(self) -> str:
        return f"{type(self).__name__}({self.out})"


class AdaptiveMaxPool(_AdaptivePool):
    """Max pooling with the window chosen so that the spatial output size is `out` (Flux's rule).

    Args:
        out: the output's spatial size, one int per spatial axis.

    Flux picks stride `in // out` and window `in - (out - 1) * stride`. When `out`
    divides `in` this is PyTorch's `AdaptiveMaxPool*d`; otherwise PyTorch uses
    windows of varying size and the results differ.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.AdaptiveMaxPool((25, 25))(jnp.ones((2, 100, 100, 3))).shape
        (2, 25, 25, 3)
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        x, k, stride = self._window(x)
        return _max_pool(x, k, stride, ((0, 0),) * len(k))


class AdaptiveMeanPool(_AdaptivePool):
    """Mean pooling with the window chosen so that the spatial output size is `out` (Flux's rule).

    Args:
        out: the output's spatial size, one int per spatial axis.

    Windows as in `AdaptiveMaxPool`: PyTorch's `AdaptiveAvgPool*d` when `out` divides `in`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        >>> bool((fl.AdaptiveMeanPool((2, 2))(x) == fl.MeanPool((2, 2))(x)).all())
        True
    """

    def __call__(self, x: jax.Array) -> jax.Array:
        x, k, stride = self._window(x)
        return _mean_pool(x, k, stride, ((0, 0),) * len(k))


def flatten(x: jax.Array) -> jax.Array:
    """Keep the batch axis (the first) and flatten the rest: (N, H, W, C) -> (N, H*W*C).

    Flux's (MLUtils') `flatten`, batch-first. A plain function: it sits in a
    `Chain` as it is.

    Args:
        x: an array whose first axis is the batch.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.flatten(jnp.ones((2, 3, 4, 5))).shape
        (2, 60)
    """
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("flatten: expected an array with a batch axis, got a scalar")
    return x.reshape(x.shape[0], -1)
