"""Normalisation layers: BatchNorm, InstanceNorm, GroupNorm, LayerNorm.

Channels (features) live on the LAST axis and the batch on the first, so
Flux's "dimension N-1" of a WHCN array is axis -1 of an NHWC one, and
Flux's LayerNorm over "the first dims" normalises the last axes here.
BatchNorm and InstanceNorm keep running statistics as state fields; in
train mode they assign new arrays to them, which `fl.gradient` carries out.

Mixed precision, as Flux (`_keep_f32_under_halfprec` in its normalise.jl):
BatchNorm, InstanceNorm and GroupNorm name their arrays in the Module hook
`_keep_float32`, so `fl.f16` leaves them in float32; a float16 input is
normalised in float32 and the result returned in float16. LayerNorm
converts fully, as Flux's.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from .._keys import as_key
from ..activations import identity
from ..init import ones32, zeros32
from ..module import Module, field, is_training
from ._common import act_name, is_arraylike, match_dtype

__all__ = ["BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm"]


# ---------------------------------------------------------------------------
# shared pieces


def _moments(x: jax.Array, axes: tuple[int, ...]) -> tuple[jax.Array, jax.Array]:
    """Mean and biased variance over `axes`, kept as size-1 axes."""
    mean = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=axes, keepdims=True)
    return mean, var


def _affine_params(
    name: str, channels: int, affine: bool, init_bias: Callable, init_scale: Callable, key: Any, dtype: Any
) -> tuple[jax.Array | None, jax.Array | None]:
    """The (bias, scale) pair of a normalisation layer, or (None, None).

    A key is drawn only when an initialiser is not one of the constant defaults,
    so default-built norm layers do not consume fluxlike's key stream."""
    if not isinstance(channels, int) or isinstance(channels, bool) or channels < 1:
        raise ValueError(f"{name}(channels): channels must be a positive int, got {channels!r}")
    if not affine:
        return None, None
    if key is None and init_bias is zeros32 and init_scale is ones32:
        kb = ks = None
    else:
        kb, ks = jax.random.split(as_key(key))
    return init_bias(kb, (channels,), dtype), init_scale(ks, (channels,), dtype)


def _check_activation(name: str, activation: Any) -> None:
    if not callable(activation):
        raise TypeError(f"{name}: activation must be a function, got {activation!r}")


def _layer_dtype(layer: Module, x: Any) -> Any:
    """The float dtype a layer computes in: its arrays', else the input's (float32 for ints)."""
    for leaf in jax.tree.leaves(layer):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.dtype
    dt = jnp.result_type(x)
    return dt if jnp.issubdtype(dt, jnp.floating) else jnp.float32


def _norm_input(layer: Module, x: Any) -> tuple[jax.Array, Any]:
    """`x` in the dtype the layer computes in, and the dtype of its output.

    A half-precision input (float16) is normalised in float32 (the layer's
    dtype if wider), the dtype `fl.f16` keeps the statistics and affine
    parameters in, and the output has the input's dtype, as NNlib's (and
    cuDNN's) mixed-precision kernels behind Flux's norm layers. Other inputs
    are converted to the layer's dtype, the output's dtype too."""
    name = type(layer).__name__
    if is_arraylike(x) and jnp.issubdtype(x.dtype, jnp.floating) and jnp.finfo(x.dtype).bits < 32:
        out = x.dtype
        return match_dtype(name, x, jnp.promote_types(_layer_dtype(layer, x), jnp.float32)), out
    x = match_dtype(name, x, _layer_dtype(layer, x))
    return x, x.dtype


def _head(name: str, sizes: str, activation: Callable, affine: bool, active: bool | None) -> str:
    s = f"{name}({sizes}"
    if activation is not identity:
        s += f", {act_name(activation)}"
    if not affine:
        s += ", affine=False"
    if active is not None:
        s += f", active={active}"
    return s + ")"


# ---------------------------------------------------------------------------
# BatchNorm and InstanceNorm: per-channel statistics, optionally tracked


class _StatsNorm(Module):
    """The fields and forward pass shared by BatchNorm and InstanceNorm: an
    optional affine `bias` and `scale`, and optional running statistics
    `mean` and `var` (state), all kept in float32 by `fl.f16`."""

    _keep_float32 = ("bias", "scale", "mean", "var")

    bias: jax.Array | None
    scale: jax.Array | None
    mean: jax.Array | None = field(trainable=False)
    var: jax.Array | None = field(trainable=False)
    channels: int = field(static=True)
    activation: Callable = field(static=True)
    eps: float = field(static=True)
    momentum: float = field(static=True)
    affine: bool = field(static=True)
    track_stats: bool = field(static=True)
    active: bool | None = field(static=True)

    # train mode on one value per channel: an error (Flux's BatchNorm), or only
    # when tracking statistics, whose unbiased variance would divide by zero
    _one_value_is_error = True

    def _setup(
        self, channels: int, activation: Callable, init_bias: Callable, init_scale: Callable, affine: bool,
        track_stats: bool, eps: float, momentum: float, active: bool | None, key: Any, dtype: Any,
    ) -> None:
        name = type(self).__name__
        _check_activation(name, activation)
        if not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum={momentum!r} must be in [0, 1]")
        self.bias, self.scale = _affine_params(name, channels, affine, init_bias, init_scale, key, dtype)
        self.mean = jnp.zeros(channels, dtype) if track_stats else None
        self.var = jnp.ones(channels, dtype) if track_stats else None
        self.channels, self.activation = channels, activation
        self.eps, self.momentum = float(eps), float(momentum)
        self.affine, self.track_stats, self.active = bool(affine), bool(track_stats), active

    def _axes(self, x: jax.Array) -> tuple[int, ...]:
        """The axes each statistic is computed over."""
        raise NotImplementedError

    def _input(self, x: Any, min_ndim: int, layout: str) -> tuple[jax.Array, Any]:
        """`x` in the computing dtype and the output's dtype (see `_norm_input`)."""
        x, out = _norm_input(self, x)
        if x.ndim < min_ndim or x.shape[-1] != self.channels:
            raise ValueError(
                f"{self._repr_head()} expects an input with {self.channels} channels on its last "
                f"axis, {layout}; got shape {tuple(x.shape)}."
            )
        return x, out

    def _forward(self, x: jax.Array, out: Any) -> jax.Array:
        axes = self._axes(x)
        training = is_training(self)
        if training or not self.track_stats:
            m = math.prod(x.shape[a] for a in axes)
            if training and m == 1 and (self._one_value_is_error or self.track_stats):
                raise ValueError(
                    f"{self._repr_head()} got input of shape {tuple(x.shape)}: one value per channel "
                    "for its statistics in train mode, whose unbiased variance is undefined. Use a "
                    "larger batch, or fl.testmode_(model) for inference."
                )
            mean, var = _moments(x, axes)
            if training and self.track_stats:
                self._track(mean, var, m)
        else:
            mean, var = self.mean, self.var
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.scale + self.bias
        return self.activation(y.astype(out))

    def _track(self, mean: jax.Array, var: jax.Array, m: int) -> None:
        """Flux's update: `μ ← (1-mtm)μ + mtm·mean`, `σ² ← (1-mtm)σ² + mtm·m/(m-1)·var`,
        with the batch statistics averaged over samples (InstanceNorm) and not
        differentiated."""
        mtm = self.momentum
        mean = jax.lax.stop_gradient(mean).reshape(-1, self.channels).mean(0)
        var = jax.lax.stop_gradient(var).reshape(-1, self.channels).mean(0)
        self.mean = ((1 - mtm) * self.mean + mtm * mean).astype(self.mean.dtype)
        self.var = ((1 - mtm) * self.var + mtm * (m / (m - 1)) * var).astype(self.var.dtype)

    def _repr_head(self) -> str:
        return _head(type(self).__name__, str(self.channels), self.activation, self.affine, self.active)


class BatchNorm(_StatsNorm):
    """Batch normalisation: each channel (last axis) normalised by its mean
    and variance over the batch and all other axes.

    Args:
        channels: the size of the input's last axis.
        activation: applied elementwise to the result (default identity).
        init_bias: the shift β's initialiser, `init(key, (channels,), dtype)`.
        init_scale: the scale γ's initialiser.
        affine: learn the per-channel `bias` (β) and `scale` (γ).
        track_stats: keep running `mean` and `var` (state) in train mode and
            use them in test mode; without them test mode uses batch statistics.
        eps: added to the variance.
        momentum: weight of the new batch in the running statistics,
            `mean = (1 - momentum) mean + momentum batch_mean`; the running
            variance uses the unbiased batch variance (as Flux and PyTorch).
        active: None for automatic mode (train inside `fl.gradient`), or
            True/False to force it (see `fl.trainmode_`).
        key: a PRNG key or int seed, used only by random initialisers.
        dtype: the parameters' and statistics' dtype.

    Inputs are (batch, features) or NHWC images (batch, ..., channels). In
    train mode the running statistics are updated and written back to the
    model (or carried out of `fl.gradient`); the update is not differentiated.
    `fl.f16` keeps the statistics and β, γ in float32; a float16 input is
    normalised in float32 and returned in float16 (Flux's mixed precision).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> bn = fl.BatchNorm(2, fl.relu)
        >>> bn
        BatchNorm(2, relu)  # 4 parameters, plus 4 non-trainable
        >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
        >>> fl.trainmode_(bn)(x).round(4)  # normalised with the batch statistics
        Array([[0., 0.],
               [1., 1.]], dtype=float32)
        >>> bn.mean, bn.var  # 0.9 * (0, 1) + 0.1 * (mean, unbiased var)
        (Array([0.2, 2. ], dtype=float32), Array([ 1.1, 20.9], dtype=float32))
    """

    def __init__(
        self,
        channels: int,
        activation: Callable = identity,
        *,
        init_bias: Callable = zeros32,
        init_scale: Callable = ones32,
        affine: bool = True,
        track_stats: bool = True,
        eps: float = 1e-5,
        momentum: float = 0.1,
        active: bool | None = None,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        self._setup(channels, activation, init_bias, init_scale, affine, track_stats, eps, momentum, active, key, dtype)

    def _axes(self, x: jax.Array) -> tuple[int, ...]:
        return tuple(range(x.ndim - 1))

    def __call__(self, x: jax.Array) -> jax.Array:
        x, out = self._input(x, 2, f"(batch, {self.channels}) or NHWC images (batch, height, width, {self.channels})")
        return self._forward(x, out)


class InstanceNorm(_StatsNorm):
    """Instance normalisation: each channel of each sample normalised by its
    mean and variance over the spatial axes.

    Args:
        channels: the size of the input's last axis.
        activation: applied elementwise to the result (default identity).
        init_bias: the shift β's initialiser, `init(key, (channels,), dtype)`.
        init_scale: the scale γ's initialiser.
        affine: learn a per-channel `bias` and `scale` (default False, as Flux).
        track_stats: keep running `mean` and `var` (averaged over the batch) in
            train mode and use them in test mode (default False, as Flux).
        eps: added to the variance.
        momentum: weight of the new batch in the running statistics.
        active: None for automatic mode, or True/False to force it.
        key: a PRNG key or int seed, used only by random initialisers.
        dtype: the parameters' and statistics' dtype.

    Inputs are (batch, spatial..., channels), e.g. NHWC images. Under
    `fl.f16` its arrays stay float32, as BatchNorm's.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> m = fl.InstanceNorm(2)
        >>> m
        InstanceNorm(2, affine=False)
        >>> x = jnp.arange(12.0).reshape(1, 3, 2, 2)  # one 3x2 image, 2 channels
        >>> y = m(x)
        >>> y.mean(axis=(1, 2)), y.std(axis=(1, 2))
        (Array([[0., 0.]], dtype=float32), Array([[0.99999..., 0.99999...]], dtype=float32))
    """

    def __init__(
        self,
        channels: int,
        activation: Callable = identity,
        *,
        init_bias: Callable = zeros32,
        init_scale: Callable = ones32,
        affine: bool = False,
        track_stats: bool = False,
        eps: float = 1e-5,
        momentum: float = 0.1,
        active: bool | None = None,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        self._setup(channels, activation, init_bias, init_scale, affine, track_stats, eps, momentum, active, key, dtype)

    _one_value_is_error = False

    def _axes(self, x: jax.Array) -> tuple[int, ...]:
        return tuple(range(1, x.ndim - 1))

    def __call__(self, x: jax.Array) -> jax.Array:
        x, out = self._input(x, 3, f"with at least one spatial axis: (batch, length, {self.channels}) or "
                                   f"NHWC images (batch, height, width, {self.channels})")
        return self._forward(x, out)


# ---------------------------------------------------------------------------
# GroupNorm and LayerNorm: per-sample statistics, no state


class GroupNorm(Module):
    """Group normalisation: the channels (last axis) split into `groups`
    contiguous groups, each normalised per sample over its channels and the
    spatial axes.

    Args:
        channels: the size of the input's last axis; a multiple of `groups`.
        groups: the number of groups.
        activation: applied elementwise to the result (default identity).
        init_bias: the shift β's initialiser, `init(key, (channels,), dtype)`.
        init_scale: the scale γ's initialiser.
        affine: learn a per-channel `bias` and `scale`.
        eps: added to the variance.
        active: kept for Flux's interface (`trainmode_`); GroupNorm computes
            the same in both modes.
        key: a PRNG key or int seed, used only by random initialisers.
        dtype: the parameters' dtype.

    Inputs are (batch, channels) or (batch, spatial..., channels). Under
    `fl.f16` `bias` and `scale` stay float32, as BatchNorm's.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> m = fl.GroupNorm(4, 2)
        >>> m
        GroupNorm(4, 2)  # 8 parameters
        >>> m(jnp.array([[1.0, 3.0, 10.0, 30.0]])).round(4)  # groups (1, 3) and (10, 30)
        Array([[-1., 1., -1., 1.]], dtype=float32)
    """

    bias: jax.Array | None
    scale: jax.Array | None
    channels: int = field(static=True)
    groups: int = field(static=True)
    activation: Callable = field(static=True)
    eps: float = field(static=True)
    affine: bool = field(static=True)
    active: bool | None = field(static=True)

    _keep_float32 = ("bias", "scale")  # under fl.f16, as Flux

    def __init__(
        self,
        channels: int,
        groups: int,
        activation: Callable = identity,
        *,
        init_bias: Callable = zeros32,
        init_scale: Callable = ones32,
        affine: bool = True,
        eps: float = 1e-5,
        active: bool | None = None,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        _check_activation("GroupNorm", activation)
        if not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
            raise ValueError(f"GroupNorm(channels, groups): groups must be a positive int, got {groups!r}")
        self.bias, self.scale = _affine_params("GroupNorm", channels, affine, init_bias, init_scale, key, dtype)
        if channels % groups:
            raise ValueError(
                f"GroupNorm: the number of groups ({groups}) must divide the number of channels ({channels})")
        self.channels, self.groups, self.activation = channels, groups, activation
        self.eps, self.affine, self.active = float(eps), bool(affine), active

    def __call__(self, x: jax.Array) -> jax.Array:
        x, out = _norm_input(self, x)
        if x.ndim < 2 or x.shape[-1] != self.channels:
            raise ValueError(
                f"{self._repr_head()} expects an input with {self.channels} channels on its last axis, "
                f"(batch, {self.channels}) or NHWC images (batch, height, width, {self.channels}); "
                f"got shape {tuple(x.shape)}."
            )
        g = self.groups
        xg = x.reshape(*x.shape[:-1], g, self.channels // g)
        axes = (*range(1, xg.ndim - 2), xg.ndim - 1)
        mean, var = _moments(xg, axes)
        y = ((xg - mean) * jax.lax.rsqrt(var + self.eps)).reshape(x.shape)
        if self.affine:
            y = y * self.scale + self.bias
        return self.activation(y.astype(out))

    def _repr_head(self) -> str:
        return _head("GroupNorm", f"{self.channels}, {self.groups}", self.activation, self.affine, self.active)


class LayerNorm(Module):
    """Layer normalisation: each sample normalised over its last axes, whose
    shape is `size`, then an elementwise `scale` and `bias` of that shape.

    Args:
        *size: the trailing shape to normalise over, as ints or one tuple
            (`LayerNorm(5)` normalises the last axis of a (batch, 5) input,
            `LayerNorm(4, 5)` the last two of (batch, 4, 5)), optionally
            followed by an activation, as Flux's `LayerNorm(size..., λ)`.
        affine: learn an elementwise `scale` (ones) and `bias` (zeros) of shape `size`.
        eps: added to the variance.
        dtype: the parameters' dtype.

    Flux normalises the first `length(size)` axes of its column-major arrays;
    those are the last axes here, written in the order of `x.shape` (as
    PyTorch's `normalized_shape`).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> m = fl.LayerNorm(3)
        >>> m
        LayerNorm(3)  # 6 parameters
        >>> m(jnp.array([[1.0, 2.0, 3.0], [10.0, 10.0, 40.0]]))
        Array([[-1.22..., 0. , 1.22...],
               [-0.70..., -0.70..., 1.41...]], dtype=float32)
    """

    scale: jax.Array | None
    bias: jax.Array | None
    size: tuple[int, ...] = field(static=True)
    activation: Callable = field(static=True)
    eps: float = field(static=True)
    affine: bool = field(static=True)

    def __init__(self, *size: Any, affine: bool = True, eps: float = 1e-5, dtype: Any = jnp.float32) -> None:
        activation: Callable = identity
        if size and callable(size[-1]):
            *size, activation = size  # type: ignore[assignment]
        if len(size) == 1 and isinstance(size[0], (tuple, list)):
            size = tuple(size[0])
        if not size or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
            raise ValueError(
                f"LayerNorm(size..., activation): size must be positive ints, e.g. LayerNorm(5) or "
                f"LayerNorm(4, 5, relu), got {size!r}"
            )
        self.size = tuple(size)
        self.activation = activation
        self.eps, self.affine = float(eps), bool(affine)
        self.scale = jnp.ones(self.size, dtype) if affine else None
        self.bias = jnp.zeros(self.size, dtype) if affine else None

    def __call__(self, x: jax.Array) -> jax.Array:
        x = match_dtype("LayerNorm", x, _layer_dtype(self, x))
        k = len(self.size)
        if x.ndim < k or tuple(x.shape[x.ndim - k:]) != self.size:
            raise ValueError(
                f"{self._repr_head()} normalises the last {k} ax{'i' if k == 1 else 'e'}s, which must "
                f"have shape {self.size}; got an input of shape {tuple(x.shape)}. Batches put the "
                f"sample first: (batch, {', '.join(map(str, self.size))})."
            )
        mean, var = _moments(x, tuple(range(x.ndim - k, x.ndim)))
        y = (x - mean) * jax.lax.rsqrt(var + self.eps)
        if self.affine:
            y = y * self.scale + self.bias
        return self.activation(y)

    def _repr_head(self) -> str:
        return _head("LayerNorm", ", ".join(map(str, self.size)), self.activation, self.affine, None)
