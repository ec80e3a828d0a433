"""Chain, and the wrapper that lets plain functions sit in one."""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable

from ..module import Module, field
from .dense import act_name

__all__ = ["Chain", "Fn"]


class Fn(Module):
    """A plain function as a layer with no parameters, so it can sit in a Chain.

    Example:
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

    Example:
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
        names = getattr(self.layers, "_fields", None)
        if names is None:
            return list(enumerate(self.layers))
        return list(zip(names, self.layers))


