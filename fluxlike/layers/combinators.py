"""Containers: Chain, Parallel, PairwiseFusion, SkipConnection and Maxout,
and `Fn`, the wrapper that lets plain functions sit in them.

Containers keep their sublayers in data fields (a tuple, or a namedtuple when
the layers are named) and their `connection` as a layer too: a plain function
is wrapped in `fl.Fn` (static, so it must be hashable), and a layer with
parameters (a `Bilinear` joining a skip connection) is trained like any other
sublayer.
"""

from __future__ import annotations

import collections
import functools
import operator
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ..module import Module, field
from ._common import act_name

__all__ = ["Chain", "Fn", "Parallel", "SkipConnection", "PairwiseFusion", "Maxout"]


class Fn(Module):
    """A plain function as a layer with no parameters, so it can sit in a Chain.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.Chain(fl.Dense(2, 3), jnp.tanh)
        Chain(Dense(2 => 3), tanh)  # 9 parameters
    """

    fn: Callable = field(static=True)

    def __init__(self, fn: Callable) -> None:
        if not callable(fn):
            raise TypeError(f"Fn: expected a function, got {fn!r}")
        self.fn = fn

    def __call__(self, *args: Any, **kw: Any) -> Any:
        return self.fn(*args, **kw)

    def _repr_head(self) -> str:
        return act_name(self.fn)


@functools.cache
def _layer_names(names: tuple[str, ...]) -> type:
    """One namedtuple type per set of names, so equal Chains have equal treedefs."""
    return collections.namedtuple("Layers", names)


def _as_layer(x: Any, where: str, owner: str = "Chain") -> Module:
    """`x` as a layer: Modules as they are, plain functions wrapped in `Fn`."""
    if isinstance(x, Module):
        return x
    if callable(x):
        return Fn(x)
    raise TypeError(f"{owner}: {where} is a {type(x).__name__}, not a layer or a function")


class Chain(Module):
    """Apply layers in sequence: `Chain(a, b, c)(x) == c(b(a(x)))`.

    Layers may be given positionally (`model.layers[0]`, `model[0]`) or by
    name (`model.layers.enc`, `model["enc"]`, and also `model[0]`). Plain
    functions are wrapped as parameter-free layers.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> m = fl.Chain(fl.Dense(784, 32, fl.relu), fl.Dense(32, 10))
        >>> m
        Chain(Dense(784 => 32, relu), Dense(32 => 10))  # 25_450 parameters
        >>> m(jnp.ones((4, 784))).shape
        (4, 10)
        >>> ed = fl.Chain(enc=fl.Dense(3, 2), dec=fl.Dense(2, 3))
        >>> ed.layers.enc is ed[0] is ed["enc"]
        True
    """

    layers: tuple

    def __init__(self, *layers: Any, **named: Any) -> None:
        if layers and named:
            raise TypeError("Chain: give layers either positionally or by name, not both")
        if len(layers) == 1 and isinstance(layers[0], (list, tuple)) and not isinstance(layers[0], Module):
            layers = tuple(layers[0])
        if named:
            self.layers = _layer_names(tuple(named))(
                *(_as_layer(v, f"layer {k!r}") for k, v in named.items())
            )
        else:
            self.layers = tuple(_as_layer(v, f"layer {i}") for i, v in enumerate(layers))

    def __call__(self, x: Any) -> Any:
        for layer in self.layers:
            x = layer(x)
        return x

    def __getitem__(self, i: int | str | slice) -> Any:
        if isinstance(i, str):
            if not hasattr(self.layers, "_fields") or i not in self.layers._fields:
                raise KeyError(f"Chain has no layer named {i!r}; its names are {getattr(self.layers, '_fields', ())}")
            return getattr(self.layers, i)
        if isinstance(i, slice):
            if hasattr(self.layers, "_fields"):
                return Chain(**dict(zip(self.layers._fields[i], self.layers[i])))
            return Chain(*self.layers[i])
        return self.layers[i]

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def _repr_head(self) -> str:
        return "Chain(…)"

    def _children(self) -> list[tuple[Any, Module]]:
        return _listing(self.layers)


# ---------------------------------------------------------------------------
# containers that join branches

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

    Examples:
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

    Examples:
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

    Examples:
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

    Examples:
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
