"""Pooling, resizing and reshaping layers: MaxPool, MeanPool, their Global and
Adaptive forms, Upsample, PixelShuffle, and `flatten`.

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
from .conv import calc_padding, check_rank, check_window, expand, kernel_tuple, maybe_tuple, pad_str, spatial_names

__all__ = [
    "MaxPool", "MeanPool", "GlobalMaxPool", "GlobalMeanPool", "AdaptiveMaxPool",
    "AdaptiveMeanPool", "Upsample", "PixelShuffle", "flatten",
]

Pads = tuple[tuple[int, int], ...]


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
    zero = jnp.array(0, x.dtype)
    total = lax.reduce_window(x, zero, lax.add, (1, *k, 1), (1, *stride, 1), ((0, 0), *pad, (0, 0)))
    return total / math.prod(k)


def _pool_opts(layer: Any) -> str:
    s = f"{layer.k}"
    if any(p for pair in layer.pad for p in pair):
        s += f", pad={pad_str(layer.pad)}"
    if layer.stride != layer.k:
        s += f", stride={maybe_tuple(layer.stride)}"
    return s


class _Pool:
    """Shared constructor and checks of MaxPool and MeanPool, which declare the
    fields themselves (a Module's field markers are not inherited)."""

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


class MaxPool(_Pool, Module):
    """Max pooling over windows of size `window` (Flux's `MaxPool`).

    Args:
        window: the window size, one int per spatial axis: `(2, 2)` for images (N, H, W, C).
        pad: as for `Conv` (an int, one per axis, (lo, hi) pairs, or `fl.SamePad()`);
            padded positions never win the max.
        stride: an int or one per axis; default the window (non-overlapping).

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.MaxPool((2, 2))
        MaxPool((2, 2))
        >>> fl.MaxPool((5, 5), pad=fl.SamePad())(jnp.ones((2, 100, 100, 7))).shape
        (2, 20, 20, 7)
        >>> layer = fl.MaxPool((5,), pad=2, stride=3)  # one spatial axis
        >>> layer, layer(jnp.ones((2, 100, 7))).shape
        (MaxPool((5,), pad=2, stride=3), (2, 34, 7))
    """

    k: tuple[int, ...] = field(static=True)
    pad: Pads = field(static=True)
    stride: tuple[int, ...] = field(static=True)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _max_pool(self._checked(x), self.k, self.stride, self.pad)


class MeanPool(_Pool, Module):
    """Mean pooling over windows of size `window` (Flux's `MeanPool`).

    Args:
        window: the window size, one int per spatial axis.
        pad: as for `Conv`. Padded positions count as zeros and the divisor is
            always the full window size (NNlib's default, PyTorch's
            `count_include_pad=True`), as in Flux.
        stride: an int or one per axis; default the window.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.MeanPool((2, 2))(jnp.arange(16.0).reshape(1, 4, 4, 1))[0, :, :, 0]
        Array([[ 2.5,  4.5],
               [10.5, 12.5]], dtype=float32)
        >>> fl.MeanPool((5, 5), pad=fl.SamePad())
        MeanPool((5, 5), pad=2)
    """

    k: tuple[int, ...] = field(static=True)
    pad: Pads = field(static=True)
    stride: tuple[int, ...] = field(static=True)

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

    Example:
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

    Example:
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


class _AdaptivePool:
    """Shared constructor and window rule of the adaptive pools (which declare `out`)."""

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


class AdaptiveMaxPool(_AdaptivePool, Module):
    """Max pooling with the window chosen so that the spatial output size is `out` (Flux's rule).

    Args:
        out: the output's spatial size, one int per spatial axis.

    Flux picks stride `in // out` and window `in - (out - 1) * stride`. When `out`
    divides `in` this is PyTorch's `AdaptiveMaxPool*d`; otherwise PyTorch uses
    windows of varying size and the results differ.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.AdaptiveMaxPool((25, 25))(jnp.ones((2, 100, 100, 3))).shape
        (2, 25, 25, 3)
    """

    out: tuple[int, ...] = field(static=True)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, k, stride = self._window(x)
        return _max_pool(x, k, stride, ((0, 0),) * len(k))


class AdaptiveMeanPool(_AdaptivePool, Module):
    """Mean pooling with the window chosen so that the spatial output size is `out` (Flux's rule).

    Args:
        out: the output's spatial size, one int per spatial axis.

    Windows as in `AdaptiveMaxPool`: PyTorch's `AdaptiveAvgPool*d` when `out` divides `in`.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> x = jnp.arange(16.0).reshape(1, 4, 4, 1)
        >>> bool((fl.AdaptiveMeanPool((2, 2))(x) == fl.MeanPool((2, 2))(x)).all())
        True
    """

    out: tuple[int, ...] = field(static=True)

    def __call__(self, x: jax.Array) -> jax.Array:
        x, k, stride = self._window(x)
        return _mean_pool(x, k, stride, ((0, 0),) * len(k))


def flatten(x: jax.Array) -> jax.Array:
    """Keep the batch axis (the first) and flatten the rest: (N, H, W, C) -> (N, H*W*C).

    Flux's (MLUtils') `flatten`, batch-first. A plain function: it sits in a
    `Chain` as it is.

    Args:
        x: an array whose first axis is the batch.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.flatten(jnp.ones((2, 3, 4, 5))).shape
        (2, 60)
    """
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("flatten: expected an array with a batch axis, got a scalar")
    return x.reshape(x.shape[0], -1)


# ---------------------------------------------------------------------------
# Upsample

_MODES = {"nearest": None, "bilinear": 2, "trilinear": 3}


def _linear_axis(x: jax.Array, axis: int, out: int, align_corners: bool) -> jax.Array:
    """Linear interpolation of `x` along `axis` to size `out`, NNlib's `source_idx_and_λ`."""
    n = x.shape[axis]
    if n == out:
        return x
    j = np.arange(out, dtype=np.float64)
    if align_corners:
        src = j * ((n - 1) / (out - 1) if out > 1 else 0.0)
    else:
        src = np.maximum(0.0, (j + 0.5) * (n / out) - 0.5)
    i0 = np.floor(src).astype(np.int32)
    i1 = np.where(i0 < n - 1, i0 + 1, i0)
    shape = [1] * x.ndim
    shape[axis] = out
    lam = jnp.asarray((src - i0).reshape(shape), x.dtype)
    return jnp.take(x, i0, axis=axis) * (1 - lam) + jnp.take(x, i1, axis=axis) * lam


def _nearest(x: jax.Array, scales: tuple[int, ...]) -> jax.Array:
    """Repeat each pixel `scale` times along each spatial axis (broadcast, then reshape)."""
    expanded = x.reshape(x.shape[0], *(d for s in x.shape[1:-1] for d in (s, 1)), x.shape[-1])
    target = (x.shape[0], *(d for s, r in zip(x.shape[1:-1], scales) for d in (s, r)), x.shape[-1])
    out = jnp.broadcast_to(expanded, target)
    return out.reshape(x.shape[0], *(s * r for s, r in zip(x.shape[1:-1], scales)), x.shape[-1])


class Upsample(Module):
    """Upsampling by a `scale` factor or to a `size` (Flux's `Upsample`).

    Args:
        mode_or_scale: the mode (`"nearest"`, `"bilinear"`, `"trilinear"`), as
            in Flux's `Upsample(:bilinear; scale=2)`, or the scale, as in Flux's
            `Upsample(2, :bilinear)`.
        mode: the mode, when the first argument is the scale. Default `"nearest"`.
        scale: a number, or one per spatial axis; integers for `"nearest"`. Linear
            modes accept reals: the output is `floor(scale * size)`.
        size: the output's spatial size instead (for `"nearest"`, a multiple of the input's).
        align_corners: linear modes only. True (NNlib's and Flux's behaviour):
            the corner pixels of input and output are aligned (PyTorch's
            `align_corners=True`); False samples at pixel centres (PyTorch's default).

    `"bilinear"` needs images (N, H, W, C), `"trilinear"` volumes (N, D, H, W, C);
    `"nearest"` works for any number of spatial axes.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> m = fl.Upsample(scale=(2, 3))
        >>> m, m(jnp.ones((1, 2, 2, 1))).shape
        (Upsample('nearest', scale=(2, 3)), (1, 4, 6, 1))
        >>> fl.Upsample("bilinear", size=(4, 5))(jnp.ones((1, 2, 2, 1))).shape
        (1, 4, 5, 1)
    """

    mode: str = field(static=True)
    scale: Any = field(static=True)
    size: tuple[int, ...] | None = field(static=True)
    align_corners: bool | None = field(static=True)

    def __init__(
        self,
        mode_or_scale: str | float | tuple[float, ...] = "nearest",
        mode: str | None = None,
        *,
        scale: float | tuple[float, ...] | None = None,
        size: tuple[int, ...] | None = None,
        align_corners: bool | None = None,
    ) -> None:
        if isinstance(mode_or_scale, str):
            if mode is not None:
                raise TypeError(f"Upsample: the mode was given twice ({mode_or_scale!r} and {mode!r})")
            mode = mode_or_scale
        else:
            if scale is not None:
                raise TypeError("Upsample: the scale was given twice (positionally and as scale=)")
            scale, mode = mode_or_scale, mode or "nearest"
        if mode not in _MODES:
            raise ValueError(f"Upsample: mode={mode!r} is not supported; use 'nearest', 'bilinear' or 'trilinear'")
        if (scale is None) == (size is None):
            raise ValueError("Upsample: give either scale or size (but not both)")
        if isinstance(scale, list):
            scale = tuple(scale)
        if isinstance(size, list):
            size = tuple(size)
        number = (int, float)
        if scale is not None:
            vals = scale if isinstance(scale, tuple) else (scale,)
            if not vals or not all(isinstance(v, number) and not isinstance(v, bool) and v > 0 for v in vals):
                raise ValueError(f"Upsample: scale must be a positive number or a tuple of them, got {scale!r}")
            if mode == "nearest" and not all(isinstance(v, int) for v in vals):
                raise ValueError(
                    f"Upsample: mode 'nearest' needs integer scales, got {scale!r}; use 'bilinear' for others"
                )
        if size is not None and not (
            isinstance(size, tuple) and size and all(isinstance(v, int) and v >= 1 for v in size)
        ):
            raise ValueError(
                f"Upsample: size must be a tuple of positive ints, one per spatial axis, got {size!r}"
            )
        if align_corners is not None and mode == "nearest":
            raise ValueError("Upsample: align_corners applies to the 'bilinear' and 'trilinear' modes only")
        self.mode, self.scale, self.size, self.align_corners = mode, scale, size, align_corners

    def _out_size(self, x: jax.Array) -> tuple[int, ...]:
        head = self._repr_head()
        n = x.ndim - 2
        want = _MODES[self.mode]
        if want is not None and n != want:
            raise ValueError(
                f"{head} expects a {want + 2}-d input (N, {spatial_names(want)}, C), got shape "
                f"{tuple(x.shape)}. Use mode 'bilinear' for images, 'trilinear' for volumes."
            )
        if n < 1:
            raise ValueError(f"{head} expects an input (N, spatial..., C), got shape {tuple(x.shape)}")
        spatial = x.shape[1:-1]
        if self.size is not None:
            if len(self.size) != n:
                raise ValueError(
                    f"{head}: size has {len(self.size)} entries but the input {tuple(x.shape)} "
                    f"has {n} spatial axes"
                )
            if self.mode == "nearest" and any(o % s for o, s in zip(self.size, spatial)):
                raise ValueError(
                    f"{head}: mode 'nearest' needs an output size that is a multiple of the "
                    f"input's spatial size {tuple(spatial)}; use 'bilinear' for others"
                )
            return self.size
        scale = self.scale if isinstance(self.scale, tuple) else (self.scale,) * n
        if len(scale) != n:
            raise ValueError(
                f"{head}: scale has {len(scale)} entries but the input {tuple(x.shape)} "
                f"has {n} spatial axes"
            )
        return tuple(math.floor(r * s) for r, s in zip(scale, spatial))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        if x.ndim < 3:
            raise ValueError(
                f"{self._repr_head()} expects an input (N, spatial..., C), got shape {tuple(x.shape)}"
            )
        out = self._out_size(x)
        if self.mode == "nearest":
            return _nearest(x, tuple(o // s for o, s in zip(out, x.shape[1:-1])))
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            x = x.astype(jnp.float32)
        align = True if self.align_corners is None else self.align_corners
        for axis, o in enumerate(out, start=1):
            x = _linear_axis(x, axis, o, align)
        return x

    def _repr_head(self) -> str:
        s = f"Upsample({self.mode!r}"
        if self.scale is not None:
            s += f", scale={self.scale}"
        if self.size is not None:
            s += f", size={self.size}"
        if self.align_corners is not None:
            s += f", align_corners={self.align_corners}"
        return s + ")"


class PixelShuffle(Module):
    """Pixel shuffle by `r` (Shi et al. 2016): (N, H, W, r*r*C) -> (N, r*H, r*W, C).

    Channel `c * r^d + i * r + j` (for 2 spatial axes) becomes the pixel at offset
    (i, j) of channel `c`'s r-by-r block: PyTorch's `PixelShuffle` on NCHW data,
    and NNlib's `pixel_shuffle`. Works for any number `d` of spatial axes.

    Args:
        r: the upscale factor.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.PixelShuffle(2)(jnp.ones((1, 3, 5, 8))).shape
        (1, 6, 10, 2)
    """

    r: int = field(static=True)

    def __init__(self, r: int) -> None:
        if not isinstance(r, int) or isinstance(r, bool) or r < 1:
            raise ValueError(f"PixelShuffle: r must be a positive int, got {r!r}")
        self.r = r

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.asarray(x)
        r, d = self.r, x.ndim - 2
        if d < 1 or x.shape[-1] % r**d:
            raise ValueError(
                f"{self._repr_head()} expects an input (N, spatial..., C) whose channels C are a "
                f"multiple of r^d = {r}^{max(d, 1)} = {r ** max(d, 1)}, got shape {tuple(x.shape)}"
            )
        n, spatial, c = x.shape[0], x.shape[1:-1], x.shape[-1] // r**d
        y = x.reshape(n, *spatial, c, *(r,) * d)
        # axes: 0, spatial 1..d, channel d+1, offsets d+2..2d+1 -> (0, s1, o1, s2, o2, ..., c)
        perm = (0, *(a for i in range(d) for a in (1 + i, d + 2 + i)), d + 1)
        return y.transpose(perm).reshape(n, *(s * r for s in spatial), c)

    def _repr_head(self) -> str:
        return f"PixelShuffle({self.r})"
