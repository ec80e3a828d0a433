"""Embedding: a lookup table of vectors, indexed by integers or one-hot rows."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from .._keys import as_key
from .._tree import Tracer, is_array
from ..init import randn32
from ..module import Module, field
from ._common import is_arraylike

__all__ = ["Embedding"]


class Embedding(Module):
    """A lookup table of `in_` vectors of size `out`: integer index `i` gives `weight[i]`.

    Args:
        in_: the vocabulary size (indices are 0-based: `0 .. in_-1`), or a
            weight array of shape (in_, out).
        out: the embedding size.
        init: the weight's initialiser, `init(key, (in_, out), dtype)`
            (default standard normal, as Flux's `randn32` and PyTorch).
        padding_idx: an index whose embedding is all zeros and receives no
            gradient, so it stays zero through training (a padding token), as
            PyTorch's `padding_idx` and Flux's. Negative values count from the end.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    Input is an integer array of any shape `s` (batch axes first), giving
    (*s, out); or one-hot rows (a float or bool array (*s, in_), e.g.
    `fl.onehotbatch`'s output), giving `x @ weight`, also (*s, out).

    The weight is (in_, out), one embedding per row as in PyTorch (Flux keeps
    (out, in), one per column: the contiguous layout in each language). The
    `padding_idx` row is set to zero at construction (unless a weight is given),
    and the output at padding positions is masked to zero, as Flux does, so
    that row's gradient is zero (PyTorch returns the row itself, which agrees
    while the row is zero). Out-of-range indices raise an error when the
    input is concrete; under `jax.jit` they cannot, and give NaN rows instead.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> e = fl.Embedding(26, 4, padding_idx=0)
        >>> e
        Embedding(26 => 4, padding_idx=0)  # 104 parameters
        >>> e(jnp.array([[3, 1, 0], [2, 2, 0]])).shape  # 2 sequences of length 3
        (2, 3, 4)
        >>> e(0)
        Array([0., 0., 0., 0.], dtype=float32)
        >>> bool((e(fl.onehotbatch([3, 1], range(26))) == e(jnp.array([3, 1]))).all())
        True
    """

    weight: jax.Array
    padding_idx: int | None = field(static=True)

    def __init__(
        self,
        in_: int | jax.Array,
        out: int | None = None,
        *,
        init: Callable = randn32,
        padding_idx: int | None = None,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        if is_array(in_):
            weight = jnp.asarray(in_)
            if weight.ndim != 2 or out is not None:
                raise ValueError(f"Embedding(weight): give one matrix (in, out), got shape {weight.shape}")
        else:
            if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in (in_, out)):
                raise ValueError(
                    f"Embedding(in, out): sizes must be positive ints, got in={in_!r}, out={out!r}. "
                    "Flux's `Embedding(26 => 4)` is `fl.Embedding(26, 4)`."
                )
            weight = init(as_key(key), (in_, out), dtype)
        n = weight.shape[0]
        if padding_idx is not None:
            if not isinstance(padding_idx, int) or isinstance(padding_idx, bool) or not -n <= padding_idx < n:
                raise ValueError(f"Embedding: padding_idx={padding_idx!r} must be an int index in 0..{n - 1} (0-based)")
            padding_idx %= n
            if not is_array(in_):
                weight = weight.at[padding_idx].set(0)
        self.weight = weight
        self.padding_idx = padding_idx

    def __call__(self, x: Any) -> jax.Array:
        w, pad = self.weight, self.padding_idx
        n = w.shape[0]
        if not is_arraylike(x):
            x = jnp.asarray(x)
        if jnp.issubdtype(x.dtype, jnp.integer):
            lo, hi = (int(x.min()), int(x.max())) if x.size and not isinstance(x, Tracer) else (0, 0)
            if lo < 0 or hi >= n:
                bad = lo if lo < 0 else hi
                raise IndexError(
                    f"{self._repr_head()}: index {bad} is out of range; indices are 0-based, in 0..{n - 1}."
                )
            y = jnp.take(w, jnp.where(x < 0, n, x), axis=0, mode="fill", fill_value=jnp.nan)
            if pad is not None:
                y = jnp.where((x == pad)[..., None], jnp.zeros((), y.dtype), y)
            return y
        if (x.dtype == jnp.bool_ or jnp.issubdtype(x.dtype, jnp.inexact)) and x.ndim and x.shape[-1] == n:
            x = x.astype(w.dtype)
            y = x @ w
            if pad is not None:
                y = y * (1 - x[..., pad])[..., None]
            return y
        raise ValueError(
            f"{self._repr_head()} expects integer indices (any shape, 0-based) or one-hot rows of "
            f"length {n} (float or bool, e.g. fl.onehotbatch), got a {x.dtype} array of shape {tuple(x.shape)}."
        )

    def _repr_head(self) -> str:
        n, out = self.weight.shape
        pad = "" if self.padding_idx is None else f", padding_idx={self.padding_idx}"
        return f"Embedding({n} => {out}{pad})"
