"""Helpers shared by the layer files: how activations print, input dtype
conversion, the bias builder, and the parsing and checks of the per-axis
options (kernel or window size, stride, padding) of convolution and pooling.

`SamePad`, the one public name here, is the padding option those layers accept.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from .._tree import Tracer, is_array
from ..init import zeros32
from ..module import Module

Pads = tuple[tuple[int, int], ...]


def act_name(f: Callable) -> str:
    """How an activation prints: its function name."""
    return getattr(f, "__name__", None) or repr(f)


def is_arraylike(x: Any) -> bool:
    """A concrete array or a tracer of one."""
    return is_array(x) or isinstance(x, Tracer)


def match_dtype(layer: str, x: Any, dtype: jnp.dtype) -> jax.Array:
    """`x` as an array of the layer's float dtype (integers and other floats are
    converted, as Flux converts to the weight's eltype)."""
    if not is_arraylike(x):
        x = jnp.asarray(x)
    if x.dtype != dtype:
        x = x.astype(dtype)
    return x


def make_bias(
    layer: str, bias: bool | jax.Array | None, shape: tuple[int, ...], dtype: Any, what: str = ""
) -> jax.Array | None:
    """Flux's `create_bias`: True gives zeros of `shape`, False/None no bias, and
    an array is converted to `dtype` and checked against `shape` (`what` adds
    a hint to the error, e.g. " (one per output channel)")."""
    if bias is True:
        return zeros32(None, shape, dtype)
    if bias is False or bias is None:
        return None
    b = jnp.asarray(bias, dtype)
    if b.shape != shape:
        raise ValueError(f"{layer}: bias must have shape {shape}{what}, got {b.shape}")
    return b


# ---------------------------------------------------------------------------
# per-axis options of the convolution and pooling layers


class SamePad:
    """Padding option that keeps the size: output size `ceil(input / stride)`
    (Flux's `SamePad()`), for Conv, ConvTranspose (output `input * stride`) and pooling.

    The layer computes the padding when it is built and prints it. An odd total
    puts the extra element at the low end of the axis, as Flux does (PyTorch's
    and TensorFlow's "same" put it at the high end).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> layer = fl.Conv((2, 2), 3, 7, pad=fl.SamePad())
        >>> layer
        Conv((2, 2), 3 => 7, pad=((1, 0), (1, 0)))  # 91 parameters
        >>> layer(jnp.ones((1, 10, 10, 3))).shape
        (1, 10, 10, 7)
    """

    def __repr__(self) -> str:
        return "SamePad()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SamePad)

    def __hash__(self) -> int:
        return hash(SamePad)


def spatial_names(n: int) -> str:
    """`"H, W"` for 2 spatial axes: how error messages name an input's axes."""
    return {1: "W", 2: "H, W", 3: "D, H, W"}.get(n, ", ".join(f"S{i}" for i in range(n)))


def expand(layer: str, name: str, value: Any, n: int, minimum: int = 1) -> tuple[int, ...]:
    """An int, or a tuple of `n` ints, as a tuple of `n` ints `>= minimum` (Flux's `expand`)."""
    vals = (value,) * n if isinstance(value, int) else value
    ok = isinstance(vals, (tuple, list)) and len(vals) == n and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in vals
    )
    if not ok:
        raise ValueError(
            f"{layer}: {name} must be an int >= {minimum} or a tuple of {n} such ints "
            f"(one per spatial axis), got {value!r}"
        )
    return tuple(vals)


def calc_padding(layer: str, pad: Any, k: tuple[int, ...], dilation: tuple[int, ...]) -> Pads:
    """Padding as one (lo, hi) pair per spatial axis, from an int, a tuple of ints
    (one per axis), a tuple of (lo, hi) pairs, or `SamePad()` (total `(k - 1) * dilation`
    per axis, the odd one low, as Flux's `calc_padding`)."""
    n = len(k)
    if isinstance(pad, SamePad):
        totals = [(ki - 1) * di for ki, di in zip(k, dilation)]
        return tuple((-(-t // 2), t // 2) for t in totals)
    if isinstance(pad, int) and not isinstance(pad, bool) and pad >= 0:
        return ((pad, pad),) * n
    if isinstance(pad, (tuple, list)) and len(pad) == n:
        if all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in pad):
            return tuple((p, p) for p in pad)
        if all(
            isinstance(p, (tuple, list)) and len(p) == 2
            and all(isinstance(q, int) and not isinstance(q, bool) and q >= 0 for q in p)
            for p in pad
        ):
            return tuple((p[0], p[1]) for p in pad)
    hint = ""
    if isinstance(pad, (tuple, list)) and len(pad) == 2 * n:
        pairs = tuple(tuple(pad[i : i + 2]) for i in range(0, 2 * n, 2))
        hint = f" For Flux's flat form (lo1, hi1, lo2, hi2, ...) write pad={pairs!r}."
    raise ValueError(
        f"{layer}: pad must be a non-negative int, a tuple of {n} ints (one per spatial "
        f"axis), a tuple of {n} (lo, hi) pairs, or fl.SamePad(); got {pad!r}.{hint}"
    )


def maybe_tuple(t: tuple) -> str:
    """Flux's `_maybetuple_string`: `2` for `(2, 2)`, else the tuple."""
    return str(t[0]) if len(set(t)) == 1 else str(t)


def pad_str(pad: Pads) -> str:
    """How padding prints: an int when all equal, a tuple when each axis is
    symmetric, else the (lo, hi) pairs; each form is accepted by `pad=`."""
    flat = {p for pair in pad for p in pair}
    if len(flat) == 1:
        return str(flat.pop())
    if all(lo == hi for lo, hi in pad):
        return str(tuple(lo for lo, _ in pad))
    return str(pad)


def kernel_tuple(layer: str, kernel: Any, what: str = "the kernel size") -> tuple[int, ...]:
    """The kernel (or window, or output) size as a non-empty tuple of positive ints."""
    if isinstance(kernel, list):
        kernel = tuple(kernel)
    if not (
        isinstance(kernel, tuple) and kernel
        and all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in kernel)
    ):
        raise ValueError(
            f"{layer}: {what} must be a tuple of positive ints, one per spatial axis, e.g. "
            f"(3, 3) for images (N, H, W, C) or (3,) for sequences (N, W, C); got {kernel!r}"
        )
    return kernel


def check_rank(layer: Module, x: jax.Array, n: int, channels: int | None = None) -> None:
    """Raise unless `x` is a batch with `n` spatial axes (and `channels` channels last)."""
    c = "C" if channels is None else f"C={channels}"
    if x.ndim != n + 2:
        raise ValueError(
            f"{layer._repr_head()} expects a {n + 2}-d input (N, {spatial_names(n)}, {c}): batch "
            f"first, channels last; got shape {tuple(x.shape)}. For a single sample use x[None]."
        )
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(
            f"{layer._repr_head()} expects {channels} input channels on the last axis (N, "
            f"{spatial_names(n)}, {c}), got shape {tuple(x.shape)}. Channels-first data "
            f"(N, C, {spatial_names(n)}) must be transposed to channels-last."
        )


def check_window(layer: Module, x: jax.Array, extent: Sequence[int], pad: Pads, what: str) -> None:
    """Raise if a window of `extent` does not fit in the padded spatial size on some axis."""
    for i, (size, e, (lo, hi)) in enumerate(zip(x.shape[1:-1], extent, pad)):
        if size + lo + hi < e:
            raise ValueError(
                f"{layer._repr_head()}: input spatial size {tuple(x.shape[1:-1])} (shape "
                f"{tuple(x.shape)}) is smaller than the {what} {tuple(extent)} on spatial axis "
                f"{i} ({size} + padding {lo}+{hi} < {e}). Use a larger input, padding or a "
                f"smaller {what}."
            )
