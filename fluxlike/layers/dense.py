"""The affine layers of Flux's basic.jl: Dense, `activation(x @ weight.T + bias)`
on the last axis; Bilinear, a bilinear form of two inputs; and Scale, an
elementwise `activation(scale * x + bias)`."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

from .._keys import as_key
from .._tree import is_array
from ..activations import identity
from ..init import glorot_uniform, ones32
from ..module import Module, field
from ._common import act_name, make_bias, match_dtype

__all__ = ["Dense", "Bilinear", "Scale"]


def _suffix(activation: Callable, bias: jax.Array | None) -> str:
    """The printed options of an affine layer: its activation, and `bias=False` when it has none."""
    s = "" if activation is identity else f", {act_name(activation)}"
    return s + (", bias=False" if bias is None else "")


# ---------------------------------------------------------------------------
# Dense


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

    Examples:
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
        self.weight = weight
        self.bias = make_bias("Dense", bias, (weight.shape[0],), weight.dtype)
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
        return f"Dense({in_} => {out}{_suffix(self.activation, self.bias)})"


# ---------------------------------------------------------------------------
# Bilinear


class Bilinear(Module):
    """A bilinear form of two inputs, `z[o] = activation(x @ weight[o] @ y + bias[o])`.

    Args:
        in_: the input sizes `(in1, in2)` (Flux's `(in1, in2) => out`), or one
            int when both are equal, or a weight array of shape (out, in1, in2).
        out: output features (or the activation, when `in_` is a weight).
        activation: applied elementwise to the result (default identity).
        bias: True for a zero-initialised bias, False for none, or an array (out,).
        init: the weight's initialiser, `init(key, (out, in1, in2), dtype)`.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    Called as `m(x, y)`, `m((x, y))` (the form a Chain passes on) or `m(x)`,
    which means `m(x, x)`. `x` is (..., in1) and `y` is (..., in2) with the
    same leading (batch) axes; the result is (..., out). The weight has shape
    (out, in1, in2), as in Flux and `torch.nn.Bilinear`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> b = fl.Bilinear((5, 4), 7)
        >>> b
        Bilinear((5, 4) => 7)  # 147 parameters
        >>> b(jnp.ones((32, 5)), jnp.ones((32, 4))).shape
        (32, 7)
        >>> fl.Bilinear(3, 2, fl.tanh, bias=False)
        Bilinear(3 => 2, tanh, bias=False)  # 18 parameters
    """

    weight: jax.Array
    bias: jax.Array | None
    activation: Callable = field(static=True)

    def __init__(
        self,
        in_: int | tuple[int, int] | jax.Array,
        out: int | Callable | None = None,
        activation: Callable = identity,
        *,
        bias: bool | jax.Array = True,
        init: Callable = glorot_uniform,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        if is_array(in_):  # Bilinear(weight, activation), like Flux's Bilinear(W, bias, σ)
            if out is not None and not callable(out):
                raise TypeError("Bilinear(weight, activation): the second argument must be the activation")
            activation = activation if out is None else out
            weight = jnp.asarray(in_)
            if weight.ndim != 3:
                raise ValueError(
                    f"Bilinear(weight): weight must be a 3-array (out, in1, in2), got shape {weight.shape}"
                )
        else:
            ins = (in_, in_) if isinstance(in_, int) else tuple(in_)
            sizes = (*ins, out)
            if len(ins) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
                raise ValueError(
                    f"Bilinear((in1, in2), out): sizes must be positive ints, got in_={in_!r}, out={out!r}. "
                    "Flux's `Bilinear((5, 4) => 7)` is `fl.Bilinear((5, 4), 7)`."
                )
            weight = init(as_key(key), (out, *ins), dtype)
        if not callable(activation):
            raise TypeError(f"Bilinear: activation must be a function, got {activation!r}")
        self.weight = weight
        self.bias = make_bias("Bilinear", bias, weight.shape[:1], weight.dtype)
        self.activation = activation

    def __call__(self, x: Any, y: Any = None) -> jax.Array:
        if y is None and type(x) is tuple:
            if len(x) != 2:
                raise ValueError(f"{self._repr_head()} takes a tuple of 2 inputs (x, y), got {len(x)}")
            x, y = x
        y = x if y is None else y
        w = self.weight
        x, y = match_dtype("Bilinear", x, w.dtype), match_dtype("Bilinear", y, w.dtype)
        _, in1, in2 = w.shape
        if x.ndim == 0 or y.ndim == 0 or x.shape[-1] != in1 or y.shape[-1] != in2 or x.shape[:-1] != y.shape[:-1]:
            raise ValueError(
                f"{self._repr_head()} expects x of shape (..., {in1}) and y of shape (..., {in2}) with "
                f"the same batch axes, got {tuple(x.shape)} and {tuple(y.shape)}."
            )
        z = jnp.einsum("...i,oij,...j->...o", x, w, y)
        if self.bias is not None:
            z = z + self.bias
        return self.activation(z)

    def _repr_head(self) -> str:
        out, in1, in2 = self.weight.shape
        ins = f"{in1}" if in1 == in2 else f"({in1}, {in2})"
        return f"Bilinear({ins} => {out}{_suffix(self.activation, self.bias)})"


# ---------------------------------------------------------------------------
# Scale


class Scale(Module):
    """Elementwise `activation(scale * x + bias)`, with `scale` and `bias` of a fixed
    shape broadcast against the trailing axes of `x`.

    Args:
        size_act: the sizes of `scale` (the trailing axes of the input),
            optionally followed by the activation, as Flux's `Scale(2, 3, tanh)`;
            or a scale array, optionally followed by the activation.
        bias: True for a zero-initialised bias, False for none, or an array.
        init: the scale's initialiser, `init(key, size, dtype)` (default ones).
        key: a PRNG key or int seed for `init`; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> s = fl.Scale(2)
        >>> s
        Scale(2)  # 4 parameters
        >>> s(jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))  # 3 samples
        Array([[1., 2.],
               [3., 4.],
               [5., 6.]], dtype=float32)
        >>> fl.Scale(jnp.array([[1.0, 2.0, 3.0]]), fl.relu, bias=False)
        Scale(1, 3, relu, bias=False)  # 3 parameters
    """

    scale: jax.Array
    bias: jax.Array | None
    activation: Callable = field(static=True)

    def __init__(
        self,
        *size_act: int | Callable | jax.Array,
        bias: bool | jax.Array = True,
        init: Callable = ones32,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        args = list(size_act)
        activation: Callable = identity
        if args and callable(args[-1]) and not is_array(args[-1]):
            activation = args.pop()
        if len(args) == 1 and is_array(args[0]):
            scale = jnp.asarray(args[0])
        elif args and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in args):
            scale = init(as_key(key), tuple(args), dtype)
        else:
            raise ValueError(
                f"Scale(size..., [activation]): sizes must be positive ints (or one scale array), got {size_act!r}"
            )
        self.scale = scale
        self.bias = make_bias("Scale", bias, scale.shape, scale.dtype)
        self.activation = activation

    def __call__(self, x: jax.Array) -> jax.Array:
        x = match_dtype("Scale", x, self.scale.dtype)
        try:
            jnp.broadcast_shapes(x.shape, self.scale.shape)
        except ValueError:
            raise ValueError(
                f"{self._repr_head()} cannot broadcast its scale of shape {self.scale.shape} against an "
                f"input of shape {tuple(x.shape)}: the input's trailing axes must be "
                f"{self.scale.shape} (or 1)."
            ) from None
        y = self.scale * x
        if self.bias is not None:
            y = y + self.bias
        return self.activation(y)

    def _repr_head(self) -> str:
        sizes = ", ".join(map(str, self.scale.shape))
        return f"Scale({sizes}{_suffix(self.activation, self.bias)})"
