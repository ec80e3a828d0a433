"""Dropout and AlphaDropout: their PRNG key is state and advances on every
train-mode call."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._keys import as_key
from ..module import Module, field, is_training

__all__ = ["Dropout", "AlphaDropout"]


def _check_p(name: str, p: Any) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
        raise ValueError(f"{name}: p={p!r} must be a number in [0, 1]")
    return float(p)


def _next_key(layer: Module) -> jax.Array:
    """Split the layer's key: keep one half as its new state, return the other."""
    key, sub = jax.random.split(layer.key)
    layer.key = key
    return sub


class Dropout(Module):
    """Zeroes each entry with probability `p` in train mode and scales the
    rest by `1 / (1 - p)`; the identity in test mode.

    Args:
        p: the drop probability, in [0, 1].
        dims: the axes along which the mask varies; it is shared along the
            others (None: every entry independently). As Flux's `dims`, with
            our axes: batch first, channels last. `dims=(0, -1)` on NHWC
            images drops whole channels of each sample (2-d dropout; Flux's
            `dims=(3, 4)` on WHCN); `dims=-1` drops the same channels in
            every sample (Flux's `dims=3`).
        active: None for automatic mode (train inside `fl.gradient`), or
            True/False to force it (see `fl.trainmode_`).
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.

    The key is a state field: each train-mode call splits it, so successive
    steps draw different masks, and a jitted step that returns the model
    carries it forward.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> d = fl.Dropout(0.5, key=0)
        >>> d(jnp.ones(4))  # test mode outside gradient: the identity
        Array([1., 1., 1., 1.], dtype=float32)
        >>> y = fl.trainmode_(d)(jnp.ones((1000,)))
        >>> sorted(set(y.tolist())), float(y.mean()) == 2 * float((y > 0).mean())
        ([0.0, 2.0], True)
        >>> fl.Dropout(0.2, dims=(0, -1))
        Dropout(0.2, dims=(0, -1))
    """

    key: jax.Array = field(trainable=False)
    p: float = field(static=True)
    dims: int | tuple[int, ...] | None = field(static=True)
    active: bool | None = field(static=True)

    def __init__(
        self, p: float, *, dims: int | tuple[int, ...] | None = None, active: bool | None = None, key: Any = None
    ) -> None:
        self.p = _check_p("Dropout", p)
        if isinstance(dims, list):
            dims = tuple(dims)
        if not (dims is None or _is_int(dims) or (isinstance(dims, tuple) and all(map(_is_int, dims)))):
            raise TypeError(f"Dropout: dims must be None, an axis or a tuple of axes, got {dims!r}")
        self.dims = dims
        self.active = active
        self.key = as_key(key)

    def _mask_shape(self, x: jax.Array) -> tuple[int, ...]:
        if self.dims is None:
            return x.shape
        dims = (self.dims,) if _is_int(self.dims) else self.dims
        bad = [d for d in dims if not -x.ndim <= d < x.ndim]
        if bad:
            raise ValueError(
                f"{self._repr_head()}: axes {bad} do not exist in an input of shape {tuple(x.shape)} "
                f"({x.ndim} axes, numbered 0..{x.ndim - 1} or -{x.ndim}..-1)"
            )
        keep = {d % x.ndim for d in dims}
        return tuple(s if i in keep else 1 for i, s in enumerate(x.shape))

    def __call__(self, x: jax.Array) -> jax.Array:
        if not is_training(self) or self.p == 0:
            return x
        x = jnp.asarray(x)
        shape = self._mask_shape(x)
        sub = _next_key(self)
        if self.p == 1:
            return jnp.zeros_like(x)
        keep = jax.random.bernoulli(sub, 1 - self.p, shape)
        return jnp.where(keep, x / (1 - self.p), 0).astype(x.dtype)

    def _repr_head(self) -> str:
        extra = "" if self.dims is None else f", dims={self.dims}"
        if self.active is not None:
            extra += f", active={self.active}"
        return f"Dropout({self.p:g}{extra})"


def _is_int(d: Any) -> bool:
    return isinstance(d, int) and not isinstance(d, bool)


# SELU's saturation value, selu(-inf) = -λα
_ALPHA_PRIME = -1.7580993408473766


class AlphaDropout(Module):
    """Dropout for self-normalising networks (SELU): keeps the mean and
    variance of its input, as in Klambauer et al. (2017) and Flux.

    In train mode each entry is replaced, with probability `p`, by SELU's
    saturation value `α' = -λα ≈ -1.758`, and the result is mapped by
    `A·y + B` with `A = 1 / sqrt((1 - p)(1 + p α'²))` and `B = -A α' p`,
    so that inputs of zero mean and unit variance keep them. The identity
    in test mode.

    Args:
        p: the drop probability, in [0, 1].
        active: None for automatic mode (train inside `fl.gradient`), or
            True/False to force it (see `fl.trainmode_`).
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.

    Examples:
        >>> import jax, jax.numpy as jnp, fluxlike as fl
        >>> x = jax.random.normal(jax.random.PRNGKey(1), (10_000,))
        >>> y = fl.AlphaDropout(0.2, active=True, key=0)(x)
        >>> bool(abs(y.mean()) < 0.05), bool(abs(y.std() - 1) < 0.05)
        (True, True)
    """

    key: jax.Array = field(trainable=False)
    p: float = field(static=True)
    active: bool | None = field(static=True)

    def __init__(self, p: float, *, active: bool | None = None, key: Any = None) -> None:
        self.p = _check_p("AlphaDropout", p)
        self.active = active
        self.key = as_key(key)

    def __call__(self, x: jax.Array) -> jax.Array:
        if not is_training(self) or self.p == 0:
            return x
        x = jnp.asarray(x)
        sub = _next_key(self)
        if self.p == 1:
            return jnp.sign(x) * 0  # as Flux: zeros, keeping NaNs
        p, a = self.p, _ALPHA_PRIME
        A = 1 / ((1 - p) * (1 + p * a**2)) ** 0.5
        B = -A * a * p
        noise = jax.random.uniform(sub, x.shape)
        return (A * jnp.where(noise > p, x, a) + B).astype(x.dtype)

    def _repr_head(self) -> str:
        extra = "" if self.active is None else f", active={self.active}"
        return f"AlphaDropout({self.p:g}{extra})"
