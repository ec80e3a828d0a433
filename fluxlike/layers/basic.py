"""Flux's other basic layers: Bilinear, Scale and Embedding, and the containers
Parallel, SkipConnection, PairwiseFusion and Maxout.

Containers keep their sublayers in data fields (a tuple, or a namedtuple when
the layers are named, as `Chain` does) and their `connection` as a layer too:
a plain function is wrapped in `fl.Fn` (static, so it must be hashable), and a
layer with parameters (a `Bilinear` joining a skip connection) is trained like
any other sublayer.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp

from .._keys import as_key
from .._tree import Tracer, is_array
from ..activations import identity
from ..init import glorot_uniform, ones32, randn32, zeros32
from ..module import Module, field
from .combinators import Fn, _as_layer, _layer_names
from .dense import act_name, match_dtype

__all__ = ["Bilinear", "Scale", "Embedding", "Parallel", "SkipConnection", "PairwiseFusion", "Maxout"]


def _is_array(x: Any) -> bool:
    return is_array(x) or isinstance(x, Tracer)


def _make_bias(layer: str, bias: bool | jax.Array | None, shape: tuple[int, ...], dtype: Any) -> jax.Array | None:
    """Flux's `create_bias`: True gives zeros, False/None no bias, an array is checked."""
    if bias is True:
        return zeros32(None, shape, dtype)
    if bias is False or bias is None:
        return None
    b = jnp.asarray(bias, dtype)
    if b.shape != shape:
        raise ValueError(f"{layer}: bias must have shape {shape}, got {b.shape}")
    return b


def _suffix(activation: Callable, bias: jax.Array | None) -> str:
    s = "" if activation is identity else f", {act_name(activation)}"
    return s + (", bias=False" if bias is None else "")


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

    Example:
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
        self.bias = _make_bias("Bilinear", bias, weight.shape[:1], weight.dtype)
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

    Example:
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
        self.bias = _make_bias("Scale", bias, scale.shape, scale.dtype)
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


# ---------------------------------------------------------------------------
# Embedding


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

    Example:
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
        if not _is_array(x):
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


# ---------------------------------------------------------------------------
# containers

# Julia's `+`, `*`, `max`, `min` take any number of arguments; their Python
# twins take two, so a connection that is one of these folds over the outputs.
_NARY = frozenset({operator.add, operator.mul, jnp.add, jnp.multiply, jnp.maximum, jnp.minimum})


def _connect(connection: Module, ys: list[Any]) -> Any:
    if type(connection) is Fn and connection.fn in _NARY:
        return functools.reduce(connection.fn, ys)
    return connection(*ys)


def _sublayers(owner: str, layers: tuple, named: dict[str, Any]) -> tuple:
    """A tuple of layers, or a namedtuple when they are named (as Chain stores them)."""
    if layers and named:
        raise TypeError(f"{owner}: give sub-layers either positionally or by name, not both")
    if not layers and not named:
        raise ValueError(f"{owner}: needs at least one sub-layer")
    if named:
        return _layer_names(tuple(named))(*(_as_layer(v, f"layer {k!r}", owner) for k, v in named.items()))
    return tuple(_as_layer(v, f"layer {i}", owner) for i, v in enumerate(layers))


def _listing(layers: tuple) -> list[tuple[Any, Module]]:
    names = getattr(layers, "_fields", None)
    return list(enumerate(layers)) if names is None else list(zip(names, layers))


class _Fused(Module):
    """The shared part of Parallel and PairwiseFusion: a connection and layers,
    indexed like Chain, printed as Flux prints them (the connection first)."""

    connection: Module
    layers: tuple

    def _setup(self, connection: Any, layers: tuple, named: dict[str, Any]) -> None:
        name = type(self).__name__
        self.connection = _as_layer(connection, "the connection", name)
        self.layers = _sublayers(name, layers, named)

    def __getitem__(self, i: int | str | slice) -> Any:
        names = getattr(self.layers, "_fields", None)
        if isinstance(i, str):
            if names is None or i not in names:
                raise KeyError(f"{type(self).__name__} has no layer named {i!r}; its names are {names or ()}")
            return getattr(self.layers, i)
        if isinstance(i, slice):
            if names is not None:
                return type(self)(self.connection, **dict(zip(names[i], self.layers[i])))
            return type(self)(self.connection, *self.layers[i])
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def _repr_head(self) -> str:
        return f"{type(self).__name__}(…)"

    def _children(self) -> list[tuple[Any, Module]]:
        return [(None, self.connection), *_listing(self.layers)]


class Parallel(_Fused):
    """Pass the input(s) to each layer and join the outputs with `connection`.

    Args:
        connection: a function of all the outputs, `connection(y1, y2, ...)`,
            or a layer. `operator.add`, `operator.mul`, `jnp.add`,
            `jnp.multiply`, `jnp.maximum` and `jnp.minimum` fold over any
            number of outputs, as Julia's `+`, `*`, `max`, `min` do.
        layers: the branches, positionally (`m[0]`) or by name (`m["a"]`,
            `m.layers.a`); plain functions are wrapped as parameter-free layers.

    Flux's rules: with one input `x`, `connection(l1(x), l2(x), ...)`; with as
    many inputs as layers, `connection(l1(x1), l2(x2), ...)`; with one layer
    and several inputs, `connection(l(x1), l(x2), ...)`. A single tuple
    argument is always splatted, so a Chain can feed several inputs.

    Example:
        >>> import operator, jax.numpy as jnp, fluxlike as fl
        >>> p = fl.Parallel(operator.add, jnp.square, jnp.sqrt)
        >>> p(jnp.array([3.0]), jnp.array([4.0]))  # 3^2 + sqrt(4)
        Array([11.], dtype=float32)
        >>> p(jnp.array([4.0]))  # one input to both: 4^2 + sqrt(4)
        Array([18.], dtype=float32)
        >>> cat = lambda *ys: jnp.concatenate(ys, axis=-1)  # Flux's vcat
        >>> m = fl.Chain(fl.Dense(3, 5), fl.Parallel(cat, fl.Dense(5, 4), fl.Dense(5, 4)), fl.Dense(8, 17))
        >>> m(jnp.ones((2, 3))).shape
        (2, 17)
        >>> fl.Parallel(operator.add, a=fl.Dense(10, 2, fl.tanh), b=fl.Dense(5, 2))
        Parallel(add, a=Dense(10 => 2, tanh), b=Dense(5 => 2))  # 34 parameters
    """

    def __init__(self, connection: Callable | Module, *layers: Any, **named: Any) -> None:
        self._setup(connection, layers, named)

    def __call__(self, *xs: Any) -> Any:
        if len(xs) == 1 and type(xs[0]) is tuple:  # a tuple is always splatted
            xs = xs[0]
        layers = tuple(self.layers)
        if not xs:
            raise ValueError("Parallel cannot take 0 inputs")
        if len(xs) == 1:
            ys = [layer(xs[0]) for layer in layers]
        elif len(layers) == 1:
            ys = [layers[0](x) for x in xs]
        elif len(xs) == len(layers):
            ys = [layer(x) for layer, x in zip(layers, xs)]
        else:
            raise ValueError(
                f"Parallel with {len(layers)} sub-layers takes one input or {len(layers)} inputs, got {len(xs)}"
            )
        return _connect(self.connection, ys)


class PairwiseFusion(_Fused):
    """Run layers in turn, joining each output with the next input: returns the
    tuple of every layer's output.

    Args:
        connection: a function of two arguments `connection(y_prev, x_next)`, or a layer.
        layers: the layers, positionally or by name.

    With inputs `(x1, x2, x3)` (a tuple, or three arguments), as in Flux:
    `y1 = l1(x1)`, `y2 = l2(connection(y1, x2))`, `y3 = l3(connection(y2, x3))`,
    and the result is `(y1, y2, y3)`. With one input `x`, every `xi` is `x`.

    Example:
        >>> import operator, jax.numpy as jnp, fluxlike as fl
        >>> m = fl.PairwiseFusion(operator.add, jnp.square, jnp.negative)
        >>> m(jnp.array([3.0]), jnp.array([1.0]))  # (3^2, -(9 + 1))
        (Array([9.], dtype=float32), Array([-10.], dtype=float32))
        >>> fl.PairwiseFusion(operator.add, fl.Dense(2, 2), fl.Dense(2, 2))
        PairwiseFusion(add, Dense(2 => 2), Dense(2 => 2))  # 12 parameters
    """

    def __init__(self, connection: Callable | Module, *layers: Any, **named: Any) -> None:
        self._setup(connection, layers, named)

    def __call__(self, *xs: Any) -> tuple:
        layers = tuple(self.layers)
        if len(xs) == 1 and type(xs[0]) is tuple:
            xs = xs[0]
        elif len(xs) == 1:  # one input, fed to every step
            xs = (xs[0],) * len(layers)
        if len(xs) != len(layers):
            raise ValueError(
                f"PairwiseFusion with {len(layers)} sub-layers takes one input or {len(layers)} inputs, got {len(xs)}"
            )
        ys: list[Any] = []
        for i, layer in enumerate(layers):
            h = xs[0] if i == 0 else _connect(self.connection, [ys[-1], xs[i]])
            ys.append(layer(h))
        return tuple(ys)


class SkipConnection(Module):
    """`connection(layers(x), x)`: a block and a shortcut around it.

    Args:
        layers: the block (a layer, a Chain, or a function).
        connection: a function of two arguments, `connection(block_output, x)`,
            or a layer (e.g. a `Bilinear` that recombines the two).

    Example:
        >>> import operator, jax.numpy as jnp, fluxlike as fl
        >>> m = fl.SkipConnection(fl.Dense(3, 3, bias=False), operator.add)  # a residual block
        >>> m
        SkipConnection(Dense(3 => 3, bias=False), add)  # 9 parameters
        >>> x = jnp.ones((2, 3))
        >>> bool(jnp.allclose(m(x), m.layers(x) + x))
        True
        >>> cat = lambda a, b: jnp.concatenate([a, b], axis=-1)
        >>> fl.SkipConnection(fl.Dense(3, 7), cat)(x).shape
        (2, 10)
    """

    layers: Module
    connection: Module

    def __init__(self, layers: Any, connection: Callable | Module) -> None:
        self.layers = _as_layer(layers, "the layer", "SkipConnection")
        self.connection = _as_layer(connection, "the connection", "SkipConnection")

    def __call__(self, x: Any) -> Any:
        return _connect(self.connection, [self.layers(x), x])

    def _repr_head(self) -> str:
        return "SkipConnection(…)"

    def _children(self) -> list[tuple[Any, Module]]:
        return [(None, self.layers), (None, self.connection)]


class Maxout(Module):
    """The elementwise maximum of several layers' outputs on the same input.

    Args:
        layers: the layers (or functions); or a zero-argument constructor and a
            count, `Maxout(f, n)`, which builds `n` layers with `f()`.

    Maxout over linear layers is a universal approximator (Goodfellow et al.,
    "Maxout Networks", 2013).

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> m = fl.Maxout(jnp.square, lambda x: 3 * x)
        >>> m(jnp.array([-2, -1, 0, 1, 2]))
        Array([4, 1, 0, 3, 6], dtype=int32)
        >>> m3 = fl.Maxout(lambda: fl.Dense(5, 7, fl.tanh), 3)
        >>> m3(jnp.ones((11, 5))).shape
        (11, 7)
    """

    layers: tuple

    def __init__(self, *layers: Any) -> None:
        if len(layers) == 2 and not isinstance(layers[0], Module) and type(layers[1]) is int:
            f, n = layers
            if not callable(f) or n < 1:
                raise ValueError(f"Maxout(f, n): f must build a layer and n must be positive, got {f!r}, {n!r}")
            layers = tuple(f() for _ in range(n))
        self.layers = _sublayers("Maxout", layers, {})

    def __call__(self, x: Any) -> jax.Array:
        return functools.reduce(jnp.maximum, [layer(x) for layer in self.layers])

    def _repr_head(self) -> str:
        return "Maxout(…)"

    def _children(self) -> list[tuple[Any, Module]]:
        return _listing(self.layers)
