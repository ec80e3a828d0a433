"""Dropout: its PRNG key is state and advances on every train-mode call."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .._tree import as_key
from ..module import Module, field, is_training

__all__ = ["Dropout"]


class Dropout(Module):
    """Zeroes each entry with probability `p` in train mode and scales the
    rest by `1 / (1 - p)`; the identity in test mode.

    Args:
        p: the drop probability, in [0, 1].
        dims: the axes along which masks differ (None: every axis; e.g. -1
            drops whole features, the same for every sample... as Flux's `dims`).
        active: None for automatic mode (train inside `fl.gradient`), or
            True/False to force it (see `fl.trainmode_`).
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.

    The key is a state field: each train-mode call splits it, so successive
    steps draw different masks, and a jitted step that returns the model
    carries it forward.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> d = fl.Dropout(0.5, key=0)
        >>> d(jnp.ones(4))  # test mode outside gradient: the identity
        Array([1., 1., 1., 1.], dtype=float32)
        >>> fl.trainmode_(d)(jnp.ones(6)).tolist()
        [2.0, 2.0, 0.0, 2.0, 2.0, 2.0]
    """

    key: jax.Array = field(trainable=False)
    p: float = field(static=True)
    dims: Any = field(static=True)
    active: bool | None = field(static=True)

    def __init__(self, p: float, *, dims: Any = None, active: bool | None = None, key: Any = None) -> None:
        if not 0 <= p <= 1:
            raise ValueError(f"Dropout: p={p!r} must be in [0, 1]")
        self.p = float(p)
        self.dims = tuple(dims) if isinstance(dims, (list, tuple)) else dims
        self.active = active
        self.key = as_key(key)

    def __call__(self, x: jax.Array) -> jax.Array:
        if not is_training(self) or self.p == 0:
            return x
        key, sub = jax.random.split(self.key)
        self.key = key
        if self.p == 1:
            return jnp.zeros_like(x)
        if self.dims is None:
            shape = x.shape
        else:
            dims = (self.dims,) if isinstance(self.dims, int) else self.dims
            dims = {d % x.ndim for d in dims}
            shape = tuple(s if i in dims else 1 for i, s in enumerate(x.shape))
        keep = jax.random.bernoulli(sub, 1 - self.p, shape)
        return jnp.where(keep, x / (1 - self.p), 0).astype(x.dtype)

    def _repr_head(self) -> str:
        extra = "" if self.dims is None else f", dims={self.dims}"
        if self.active is not None:
            extra += f", active={self.active}"
        return f"Dropout({self.p:g}{extra})"
