"""Dense: `y = activation(x @ weight.T + bias)` on the last axis."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from .._keys import as_key
from .._tree import is_array
from ..activations import identity
from ..init import glorot_uniform, zeros32
from ..module import Module, field

__all__ = ["Dense"]


def act_name(f: Callable) -> str:
    """How an activation prints: its function name."""
    return getattr(f, "__name__", None) or repr(f)


def match_dtype(layer: str, x: Any, dtype: jnp.dtype) -> jax.Array:
    """`x` as an array of the layer's float dtype (integers and other floats are
    converted, as Flux converts to the weight's eltype)."""
    if not (is_array(x) or isinstance(x, jax.core.Tracer)):
        x = jnp.asarray(x)
    if x.dtype != dtype:
        x = x.astype(dtype)
    return x


class Dense(Module):
    """A fully connected layer, `activation(x @ weight.T + bias)` on the last axis.

    Args:
        in_: input features (the size of `x`'s last axis).
        out: output features.
        activation: applied elementwise to the result (default identity).
        bias: True for a zero-initialised bias, False for none, or an array.
        init: the weight's initialiser, `init(key, (out, in_), dtype)`.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    The weight has shape (out, in), as in Flux and PyTorch; any leading axes of
    `x` are batch axes, so a single vector works too.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> d = fl.Dense(784, 32, fl.relu)
        >>> d
        Dense(784 => 32, relu)  # 25_120 parameters
        >>> d(jnp.ones((5, 784))).shape
        (5, 32)
    """

    weight: jax.Array
    bias: jax.Array | None
    activation: Callable = field(static=True)

    def __init__(
        self,
        in_: int | jax.Array,
        out: int | None = None,
        activation: Callable = identity,
        *,
        bias: bool | jax.Array = True,
        init: Callable = glorot_uniform,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        if is_array(in_):  # Dense(weight, ...) like Flux's Dense(W, b, σ)
            if out is not None and not callable(out):
                raise TypeError("Dense(weight, activation): the second argument must be the activation")
            if out is not None:
                activation = out
            weight = jnp.asarray(in_)
            if weight.ndim != 2:
                raise ValueError(f"Dense(weight): weight must be a matrix (out, in), got shape {weight.shape}")
        else:
            if not isinstance(out, int) or not isinstance(in_, int) or in_ < 1 or out < 1:
                raise ValueError(f"Dense(in, out): sizes must be positive ints, got in={in_!r}, out={out!r}")
            weight = init(as_key(key), (out, in_), dtype)
        if not callable(activation):
            raise TypeError(f"Dense: activation must be a function, got {activation!r}")
        n_out = weight.shape[0]
        if bias is True:
            b = zeros32(None, (n_out,), weight.dtype)
        elif bias is False or bias is None:
            b = None
        else:
            b = jnp.asarray(bias, weight.dtype)
            if b.shape != (n_out,):
                raise ValueError(f"Dense: bias must have shape ({n_out},), got {b.shape}")
        self.weight = weight
        self.bias = b
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.weight
        x = match_dtype("Dense", x, w.dtype)
        if x.ndim == 0 or x.shape[-1] != w.shape[1]:
            raise ValueError(
                f"{self._repr_head()} expects an input whose last axis has {w.shape[1]} "
                f"features, got shape {tuple(x.shape)}. Batches put the sample index first: "
                f"(batch, {w.shape[1]})."
            )
        y = x @ w.T
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)

    def _repr_head(self) -> str:
        out, in_ = self.weight.shape
        s = f"Dense({in_} => {out}"
        if self.activation is not identity:
            s += f", {act_name(self.activation)}"
        if self.bias is None:
            s += ", bias=False"
        return s + ")"
