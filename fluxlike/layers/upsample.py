"""Upsampling layers: Upsample (nearest or linear interpolation) and PixelShuffle.

Inputs are channels-last batches (N, spatial..., C), as for pooling.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..module import Module, field
from ._common import spatial_names

__all__ = ["Upsample", "PixelShuffle"]


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

    Examples:
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

    Examples:
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
