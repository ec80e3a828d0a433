"""Convolutions: Conv (a cross-correlation), ConvTranspose and DepthwiseConv.

Layout: batch first, channels last (NWC, NHWC, NDHWC); the kernel size tuple's
length decides the number of spatial axes, as in Flux. Kernels are stored in
Flux's order, (spatial..., in/groups, out): HWIO for images. Every per-axis
option (kernel size, stride, dilation, padding) lists the spatial axes in the
array's order, (H, W) for NHWC. Flux's WHCN arrays list them the other way
round, so a Flux `Conv((5, 3), ...)` on (W, H, C, N) data is `Conv((3, 5), ...)`
on the same data as (N, H, W, C). Padding is an int, per-axis ints or (lo, hi)
pairs, or `fl.SamePad()` (in `_common.py`, shared with pooling).

Example: a small convolutional classifier for 28x28 grey images.
    >>> import jax.numpy as jnp, fluxlike as fl
    >>> model = fl.Chain(
    ...     fl.Conv((3, 3), 1, 16, fl.relu, pad=fl.SamePad()), fl.MaxPool((2, 2)),
    ...     fl.Conv((3, 3), 16, 32, fl.relu, pad=1), fl.GlobalMeanPool(), fl.flatten,
    ...     fl.Dense(32, 10))
    >>> print(model)
    Chain(
      Conv((3, 3), 1 => 16, relu, pad=1),   # 160 parameters
      MaxPool((2, 2)),
      Conv((3, 3), 16 => 32, relu, pad=1),  # 4_640 parameters
      GlobalMeanPool(),
      flatten,
      Dense(32 => 10),                      # 330 parameters
    )  ...
    >>> model(jnp.ones((4, 28, 28, 1))).shape
    (4, 10)
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from jax import lax

from .._keys import as_key
from .._tree import is_array
from ..activations import identity
from ..init import glorot_uniform
from ..module import Module, field
from ._common import (
    Pads, SamePad, act_name, calc_padding, check_rank, check_window, expand, kernel_tuple, make_bias,
    match_dtype, maybe_tuple, pad_str,
)

__all__ = ["Conv", "ConvTranspose", "DepthwiseConv"]


# ---------------------------------------------------------------------------
# construction and printing shared by Conv and ConvTranspose


def dimension_numbers(n: int) -> lax.ConvDimensionNumbers:
    """NWC / NHWC / NDHWC inputs and outputs with (spatial..., in, out) kernels."""
    act = (0, n + 1, *range(1, n + 1))
    return lax.ConvDimensionNumbers(lhs_spec=act, rhs_spec=(n + 1, n, *range(n)), out_spec=act)


_PER_CHANNEL = " (one per output channel)"


def _weight_form(
    layer: str, weight: Any, second: Any, third: Any, activation: Callable
) -> tuple[jax.Array, Callable]:
    """`Layer(weight, activation)`: the array and the activation."""
    if third is not None or (second is not None and not callable(second)):
        raise TypeError(
            f"{layer}(weight, activation): after a weight array, the only positional "
            f"argument is the activation"
        )
    w = jnp.asarray(weight)
    if w.ndim < 3:
        raise ValueError(
            f"{layer}(weight): the kernel must be (spatial..., in, out) with at least one "
            f"spatial axis, got shape {w.shape}"
        )
    return w, (second if second is not None else activation)


def _channels(layer: str, in_: Any, out: Any, groups: int) -> None:
    for name, v in (("in", in_), ("out", out)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(
                f"{layer}(kernel, in, out): channel counts must be positive ints, got {name}={v!r}"
            )
    if not isinstance(groups, int) or groups < 1 or in_ % groups or out % groups:
        raise ValueError(
            f"{layer}: groups={groups!r} must be a positive int dividing both in={in_} and out={out}"
        )


def _conv_opts(layer: Any) -> str:
    """Flux's `_print_conv_opt`: the options that differ from their defaults."""
    s = ""
    if layer.activation is not identity:
        s += f", {act_name(layer.activation)}"
    if any(p for pair in layer.pad for p in pair):
        s += f", pad={pad_str(layer.pad)}"
    if any(v != 1 for v in layer.stride):
        s += f", stride={maybe_tuple(layer.stride)}"
    if any(v != 1 for v in layer.dilation):
        s += f", dilation={maybe_tuple(layer.dilation)}"
    if layer.groups != 1:
        s += f", groups={layer.groups}"
    if layer.bias is None:
        s += ", bias=False"
    return s


# ---------------------------------------------------------------------------


class Conv(Module):
    """A convolution layer: `activation(crosscor(x, weight) + bias)` on channels-last batches.

    This is a cross-correlation, as in PyTorch, JAX and Flax: Flux's `Conv`
    flips the kernel, and its `CrossCor` is this layer. Shapes and options are
    Flux's; a Flux kernel reversed along its spatial axes gives the same result.

    Args:
        kernel: the kernel size, a tuple with one int per spatial axis: `(3, 3)`
            for images (N, H, W, C), `(3,)` for sequences (N, W, C), `(3, 3, 3)`
            for volumes (N, D, H, W, C). Or a weight array (spatial..., in/groups, out),
            Flux's `Conv(weight, ...)`; then the next positional argument is the activation.
        in_: input channels (Flux's `in` of `in => out`).
        out: output channels.
        activation: applied elementwise after the bias (default identity).
        stride: an int or one per spatial axis.
        pad: an int, one int per spatial axis, one (lo, hi) pair per spatial
            axis, or `fl.SamePad()`.
        dilation: an int or one per spatial axis.
        groups: split the channels into this many independent groups (it divides in and out).
        bias: True for a zero-initialised bias, False for none, or an array (out,).
        init: the kernel's initialiser, `init(key, (*kernel, in_ // groups, out), dtype)`.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    The output's spatial size is `(n + lo + hi - (k - 1) * dilation - 1) // stride + 1`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> layer = fl.Conv((5, 5), 3, 7, fl.relu, bias=False)
        >>> layer
        Conv((5, 5), 3 => 7, relu, bias=False)  # 525 parameters
        >>> layer(jnp.ones((2, 100, 100, 3))).shape
        (2, 96, 96, 7)
        >>> fl.Conv((5, 5), 3, 7, stride=2, pad=fl.SamePad())(jnp.ones((2, 100, 100, 3))).shape
        (2, 50, 50, 7)
    """

    weight: jax.Array
    bias: jax.Array | None
    activation: Callable = field(static=True)
    stride: tuple[int, ...] = field(static=True)
    pad: Pads = field(static=True)
    dilation: tuple[int, ...] = field(static=True)
    groups: int = field(static=True)

    def __init__(
        self,
        kernel: tuple[int, ...] | jax.Array,
        in_: int | Callable | None = None,
        out: int | None = None,
        activation: Callable = identity,
        *,
        stride: int | tuple[int, ...] = 1,
        pad: Any = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool | jax.Array = True,
        init: Callable = glorot_uniform,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        if is_array(kernel):
            weight, activation = _weight_form("Conv", kernel, in_, out, activation)
            k = weight.shape[:-2]
            if not isinstance(groups, int) or groups < 1 or weight.shape[-1] % groups:
                raise ValueError(
                    f"Conv(weight): groups={groups!r} must divide the output channels {weight.shape[-1]}"
                )
        else:
            k = kernel_tuple("Conv", kernel)
            _channels("Conv", in_, out, groups)
            weight = jnp.asarray(init(as_key(key), (*k, in_ // groups, out), dtype))
            if weight.shape != (*k, in_ // groups, out):
                raise ValueError(f"Conv: init returned shape {weight.shape}, expected {(*k, in_ // groups, out)}")
        if not callable(activation):
            raise TypeError(f"Conv: activation must be a function, got {activation!r}")
        n = len(k)
        self.weight = weight
        self.bias = make_bias("Conv", bias, (weight.shape[-1],), weight.dtype, _PER_CHANNEL)
        self.activation = activation
        self.stride = expand("Conv", "stride", stride, n)
        self.dilation = expand("Conv", "dilation", dilation, n)
        self.pad = calc_padding("Conv", pad, k, self.dilation)
        self.groups = groups

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.weight
        n = w.ndim - 2
        x = match_dtype("Conv", x, w.dtype)
        check_rank(self, x, n, w.shape[-2] * self.groups)
        extent = tuple((k - 1) * d + 1 for k, d in zip(w.shape[:n], self.dilation))
        check_window(self, x, extent, self.pad, "dilated kernel")
        y = lax.conv_general_dilated(
            x, w, self.stride, self.pad, rhs_dilation=self.dilation,
            dimension_numbers=dimension_numbers(n), feature_group_count=self.groups,
        )
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)

    def _repr_head(self) -> str:
        w = self.weight
        return f"Conv({tuple(w.shape[:-2])}, {w.shape[-2] * self.groups} => {w.shape[-1]}{_conv_opts(self)})"


def DepthwiseConv(
    kernel: tuple[int, ...],
    in_: int,
    out: int,
    activation: Callable = identity,
    *,
    stride: int | tuple[int, ...] = 1,
    pad: Any = 0,
    dilation: int | tuple[int, ...] = 1,
    bias: bool | jax.Array = True,
    init: Callable = glorot_uniform,
    key: Any = None,
    dtype: Any = jnp.float32,
) -> Conv:
    """A depthwise convolution: a `Conv` with `groups = in_`, each input channel
    convolved with `out // in_` filters of its own (Flux's `DepthwiseConv`).

    Args:
        kernel: the kernel size, one int per spatial axis.
        in_: input channels.
        out: output channels, a multiple of `in_`.
        activation: as for `Conv`.
        stride: as for `Conv`.
        pad: as for `Conv`.
        dilation: as for `Conv`.
        bias: as for `Conv`.
        init: as for `Conv`.
        key: as for `Conv`.
        dtype: as for `Conv`.

    Returns a `Conv` (as Flux does), which prints with `groups=in_`. For a given
    weight array use `fl.Conv(weight, groups=in_)`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> layer = fl.DepthwiseConv((5, 5), 3, 6, fl.relu, bias=False)
        >>> layer
        Conv((5, 5), 3 => 6, relu, groups=3, bias=False)  # 150 parameters
        >>> layer(jnp.ones((2, 100, 100, 3))).shape
        (2, 96, 96, 6)
    """
    if not (isinstance(in_, int) and isinstance(out, int) and in_ >= 1 and out >= 1 and out % in_ == 0):
        raise ValueError(
            f"DepthwiseConv(kernel, in, out): out must be a positive multiple of in "
            f"(each input channel gets out // in filters), got in={in_!r}, out={out!r}"
        )
    return Conv(
        kernel, in_, out, activation, stride=stride, pad=pad, dilation=dilation, groups=in_,
        bias=bias, init=init, key=key, dtype=dtype,
    )


class ConvTranspose(Module):
    """A transposed convolution: the adjoint (input gradient) of `Conv`, which
    upsamples by `stride` (Flux's `ConvTranspose`, PyTorch's `ConvTranspose*d`).

    Args:
        kernel: the kernel size, a tuple with one int per spatial axis, or a
            weight array (spatial..., out/groups, in); then the next positional
            argument is the activation.
        in_: input channels (Flux's `in` of `in => out`).
        out: output channels.
        activation: applied elementwise after the bias.
        stride: of the `Conv` this layer transposes.
        dilation: of the `Conv` this layer transposes.
        groups: of the `Conv` this layer transposes.
        pad: as for `Conv`; it crops the output. `fl.SamePad()` makes the output
            size `input * stride`.
        outpad: extra size added at the high end of each spatial axis, an int or
            one per axis (to invert a strided `Conv` whose input size was not a multiple).
        bias: True for a zero-initialised bias, False for none, or an array (out,).
        init: the kernel's initialiser, `init(key, (*kernel, out // groups, in_), dtype)`.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    The weight is stored as (spatial..., out/groups, in), Flux's layout: the
    kernel of the `Conv(out, in)` whose adjoint this layer computes. PyTorch's
    `ConvTranspose2d` weight `(in, out/groups, kH, kW)` is this weight transposed
    by `(3, 2, 0, 1)`, with no flip (Flux's differs by a spatial flip, as for
    `Conv`). The output's spatial size is
    `(n - 1) * stride + (k - 1) * dilation + 1 - lo - hi + outpad`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> layer = fl.ConvTranspose((5, 5), 3, 7, fl.relu)
        >>> layer
        ConvTranspose((5, 5), 3 => 7, relu)  # 532 parameters
        >>> layer(jnp.ones((2, 100, 100, 3))).shape
        (2, 104, 104, 7)
        >>> fl.ConvTranspose((5, 5), 3, 7, stride=2, outpad=1)(jnp.ones((2, 100, 100, 3))).shape
        (2, 204, 204, 7)
    """

    weight: jax.Array
    bias: jax.Array | None
    activation: Callable = field(static=True)
    stride: tuple[int, ...] = field(static=True)
    pad: Pads = field(static=True)
    outpad: tuple[int, ...] = field(static=True)
    dilation: tuple[int, ...] = field(static=True)
    groups: int = field(static=True)

    def __init__(
        self,
        kernel: tuple[int, ...] | jax.Array,
        in_: int | Callable | None = None,
        out: int | None = None,
        activation: Callable = identity,
        *,
        stride: int | tuple[int, ...] = 1,
        pad: Any = 0,
        outpad: int | tuple[int, ...] = 0,
        dilation: int | tuple[int, ...] = 1,
        groups: int = 1,
        bias: bool | jax.Array = True,
        init: Callable = glorot_uniform,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        if is_array(kernel):
            weight, activation = _weight_form("ConvTranspose", kernel, in_, out, activation)
            k = weight.shape[:-2]
            if not isinstance(groups, int) or groups < 1 or weight.shape[-1] % groups:
                raise ValueError(
                    f"ConvTranspose(weight): groups={groups!r} must divide the input channels "
                    f"{weight.shape[-1]}"
                )
        else:
            k = kernel_tuple("ConvTranspose", kernel)
            _channels("ConvTranspose", in_, out, groups)
            shape = (*k, out // groups, in_)
            weight = jnp.asarray(init(as_key(key), shape, dtype))
            if weight.shape != shape:
                raise ValueError(f"ConvTranspose: init returned shape {weight.shape}, expected {shape}")
        if not callable(activation):
            raise TypeError(f"ConvTranspose: activation must be a function, got {activation!r}")
        n = len(k)
        self.weight = weight
        self.bias = make_bias("ConvTranspose", bias, (weight.shape[-2] * groups,), weight.dtype, _PER_CHANNEL)
        self.activation = activation
        self.stride = expand("ConvTranspose", "stride", stride, n)
        self.dilation = expand("ConvTranspose", "dilation", dilation, n)
        self.outpad = expand("ConvTranspose", "outpad", outpad, n, minimum=0)
        # Flux: SamePad of a kernel k - stride + 1
        pad_k = tuple(ki - si + 1 for ki, si in zip(k, self.stride)) if isinstance(pad, SamePad) else k
        self.pad = calc_padding("ConvTranspose", pad, pad_k, self.dilation)
        self.groups = groups

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.weight
        n = w.ndim - 2
        x = match_dtype("ConvTranspose", x, w.dtype)
        k, (cout_g, cin), g = w.shape[:n], w.shape[n:], self.groups
        check_rank(self, x, n, cin)
        extent = [(ki - 1) * d + 1 for ki, d in zip(k, self.dilation)]
        out_size = [
            (size - 1) * s + e - lo - hi + op
            for size, s, e, (lo, hi), op in zip(x.shape[1:-1], self.stride, extent, self.pad, self.outpad)
        ]
        if min(out_size) < 1:
            raise ValueError(
                f"{self._repr_head()}: input shape {tuple(x.shape)} gives output spatial size {tuple(out_size)}; "
                f"the padding {pad_str(self.pad)} crops more than the output has. Use less padding."
            )
        # The adjoint of the strided cross-correlation: a cross-correlation of the
        # stride-dilated input with the flipped kernel, in and out swapped per group.
        wt = jnp.flip(w, axis=tuple(range(n)))
        wt = wt.reshape(*k, cout_g, g, cin // g).swapaxes(n, n + 2).reshape(*k, cin // g, g * cout_g)
        pads = tuple((e - 1 - lo, e - 1 - hi + op) for e, (lo, hi), op in zip(extent, self.pad, self.outpad))
        y = lax.conv_general_dilated(
            x, wt, (1,) * n, pads, lhs_dilation=self.stride, rhs_dilation=self.dilation,
            dimension_numbers=dimension_numbers(n), feature_group_count=g,
        )
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)

    def _repr_head(self) -> str:
        w = self.weight
        s = f"ConvTranspose({tuple(w.shape[:-2])}, {w.shape[-1]} => {w.shape[-2] * self.groups}{_conv_opts(self)}"
        if any(self.outpad):
            s += f", outpad={self.outpad}"
        return s + ")"
