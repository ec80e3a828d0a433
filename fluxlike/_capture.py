"""What a function reads from outside itself: a key, and the arrays in it.

`fl.gradient(lambda m: loss(m(x), y), model)` builds a fresh lambda at every
step, closing over (or, at a script's top level, reading as globals) the
step's batch. To compile such a call once, the function is described by a
key that holds everything except those arrays, and the arrays become
arguments of the compiled program:

- numbers, strings and None are part of the key by value;
- arrays (jax, numpy) are *holes*: the key says only "an array here", and
  their values travel as arguments;
- pytrees that hold arrays (tuples, dicts, Modules, ...) keep their
  structure in the key; their arrays are holes;
- nested functions that are closures, lambdas or partials are described the
  same way, to depth 3; other functions, modules and objects by identity.

`rebuild` makes a copy of the function whose holes hold other values (the
tracers of a compiled call). The globals and cells of `f` read anywhere in
its code, nested comprehensions and generators included, are walked.
"""

from __future__ import annotations

import functools
import types
from typing import Any, Callable, Iterator, NamedTuple

import jax

from ._fncache import global_names
from ._tree import is_array
from .module import Module

__all__ = ["Captured", "capture", "rebuild"]

_MAX_DEPTH = 3
_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_OPAQUE = (types.ModuleType, type, types.BuiltinFunctionType, types.BuiltinMethodType)
_HOLE = "hole"


class Captured(NamedTuple):
    """`key`: hashable, equal for two functions that compute the same thing
    up to the values of their holes; `arrays`: the holes' values, in walk
    order; `keep`: the objects whose ids the key uses (keep them alive with
    the key); `mutables`: the lists, dicts and sets the function can reach
    by identity (a function that changes one has side effects)."""

    key: Any
    arrays: list
    keep: list
    mutables: list


def _plain_object(v: Any) -> bool:
    """An instance whose attributes a function could change (not a module,
    class or function, which are read by identity)."""
    return hasattr(v, "__dict__") and not isinstance(v, (*_OPAQUE, types.FunctionType, types.MethodType))


def _nested(f: types.FunctionType) -> bool:
    """Whether `f` is described by value: a closure or a function defined
    inside another (a fresh object each time its definition runs)."""
    return f.__closure__ is not None or "<" in f.__qualname__


class _Walk:
    """One walk over a function. Without `values` it describes; with them it
    also builds the copy whose holes take the next value."""

    def __init__(self, values: Iterator[Any] | None = None) -> None:
        self.arrays: list = []
        self.keep: list = []
        self.mutables: list = []
        self.modules: list[tuple[Any, Any]] = []  # (original, copy) of pytrees holding Modules
        self.values = values

    def hole(self, v: Any) -> Any:
        self.arrays.append(v)
        return v if self.values is None else next(self.values)

    def value(self, v: Any, depth: int) -> tuple[Any, Any]:
        """`(description, value in the copy)` of one value read by the function."""
        t = type(v)
        if t in _SCALARS:
            return (t, v), v
        if is_array(v):
            return _HOLE, self.hole(v)
        if t is types.FunctionType:
            if depth < _MAX_DEPTH and _nested(v):
                return self.function(v, depth + 1)
            return self.ident(v)
        if t is functools.partial and depth < _MAX_DEPTH:
            fd, fn = self.value(v.func, depth + 1)
            ad = [self.value(a, depth + 1) for a in v.args]
            kd = {k: self.value(a, depth + 1) for k, a in sorted(v.keywords.items())}
            desc = ("partial", fd, tuple(d for d, _ in ad), tuple((k, d) for k, (d, _) in kd.items()))
            if self.values is None:
                return desc, v
            return desc, functools.partial(fn, *(a for _, a in ad), **{k: a for k, (_, a) in kd.items()})
        if t is types.MethodType and depth < _MAX_DEPTH:
            fd, fn = self.value(v.__func__, depth + 1)
            sd, sv = self.value(v.__self__, depth + 1)
            return ("method", fd, sd), (v if self.values is None else types.MethodType(fn, sv))
        if isinstance(v, _OPAQUE) or callable(v) and not isinstance(v, Module):
            return self.ident(v)
        return self.tree(v, depth)

    def ident(self, v: Any) -> tuple[Any, Any]:
        self.keep.append(v)
        if isinstance(v, (list, dict, set)) or _plain_object(v):
            self.mutables.append(v)
        return ("id", id(v)), v

    def tree(self, v: Any, depth: int) -> tuple[Any, Any]:
        """A pytree: its structure in the key, its arrays holes. A pytree
        without arrays (an empty list, a dict of options) is read by identity
        and structure, and the copy shares it."""
        try:
            leaves, treedef = jax.tree.flatten(v)
        except RecursionError:  # pragma: no cover - a container that holds itself
            return self.ident(v)
        if len(leaves) == 1 and leaves[0] is v:  # not a container: an opaque object
            return self.ident(v)
        if not any(is_array(l) for l in leaves):
            if isinstance(v, (list, dict, set)):
                self.mutables.append(v)
            self.keep.append(v)
            return ("tree", treedef, id(v), tuple(self.value(l, depth + 1)[0] for l in leaves)), v
        parts = [self.value(l, depth + 1) for l in leaves]
        desc = ("tree", treedef, tuple(d for d, _ in parts))
        if self.values is None:
            return desc, v
        copy = jax.tree.unflatten(treedef, [c for _, c in parts])
        if any(isinstance(l, Module) for l in jax.tree.leaves(v, is_leaf=lambda x: isinstance(x, Module))):
            self.modules.append((v, copy))
        return desc, copy

    def function(self, f: types.FunctionType, depth: int) -> tuple[Any, Any]:
        code = f.__code__
        cells = []
        for c in f.__closure__ or ():
            try:
                cells.append(self.value(c.cell_contents, depth))
            except ValueError:  # an empty cell: a name assigned later in the enclosing function
                cells.append((("empty",), c))
        g = f.__globals__
        globs = [(n, self.value(g[n], depth)) for n in global_names(code) if n in g]
        defaults = [self.value(d, depth) for d in f.__defaults__ or ()]
        kw = sorted((f.__kwdefaults__ or {}).items())
        kwd = [(k, self.value(d, depth)[0]) for k, d in kw]
        desc = ("fn", code, tuple(d for d, _ in cells), tuple((n, d) for n, (d, _) in globs),
                tuple(d for d, _ in defaults), tuple(kwd))
        if self.values is None:
            return desc, f
        return desc, _copy_function(f, cells, globs, defaults)


def _copy_function(f: types.FunctionType, cells: list, globs: list, defaults: list) -> types.FunctionType:
    """`f` with the given cell, global and default values (shared objects where unchanged)."""
    g = f.__globals__
    changed = {n: c for n, (_, c) in globs if c is not g[n]}
    if changed:
        g = {**g, **changed}
    closure = tuple(c if d == ("empty",) else types.CellType(c) for d, c in cells) or None
    new = types.FunctionType(f.__code__, g, f.__name__, tuple(c for _, c in defaults) or None, closure)
    new.__kwdefaults__ = f.__kwdefaults__
    new.__dict__.update(f.__dict__)
    return new


def capture(f: Callable) -> Captured:
    """Describe `f` for a cache: its key and its holes' values.

    Examples:
        >>> import jax.numpy as jnp
        >>> from fluxlike._capture import capture
        >>> step = lambda x: (lambda m: (m * x).sum())
        >>> a, b = capture(step(jnp.ones(2))), capture(step(jnp.zeros(2)))
        >>> a.key == b.key, [v.tolist() for v in b.arrays]
        (True, [[0.0, 0.0]])
    """
    w = _Walk()
    desc, _ = w.function(f, 0) if isinstance(f, types.FunctionType) else w.value(f, 0)
    return Captured(desc, w.arrays, w.keep, w.mutables)


def rebuild(f: Callable, values: list) -> tuple[Callable, list[tuple[Any, Any]]]:
    """A copy of `f` whose holes hold `values` (in `capture`'s order), and the
    `(original, copy)` pairs of the pytrees holding Modules it copied (their
    state, changed in the copy, belongs in the original).

    Examples:
        >>> import jax.numpy as jnp
        >>> from fluxlike._capture import rebuild
        >>> x = jnp.ones(2)
        >>> g, _ = rebuild(lambda m: (m * x).sum(), [jnp.full(2, 3.0)])
        >>> float(g(jnp.ones(2)))
        6.0
    """
    w = _Walk(iter(values))
    _, new = w.function(f, 0) if isinstance(f, types.FunctionType) else w.value(f, 0)
    return new, w.modules
