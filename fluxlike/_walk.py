"""Walking a model: the Module-aware tree functions that sit above `module.py`.

`jax.tree` functions see a model as a flat list of arrays; these also know
where the Modules are, which fields are state (`fl.field(trainable=False)`)
and which layers have a train/test mode (a static `active` field).
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import jax
import numpy as np

from ._tree import Tracer, is_array, is_float
from .module import Module

__all__ = [
    "modules", "trainable_mask", "keep_float32_mask", "level", "set_leaves_", "trainmode_", "testmode_",
]

_MISSING = object()
_LEAVES = (jax.Array, np.ndarray, np.generic, Tracer)  # what a tree's array leaves can be


def _is_module(x: Any) -> bool:
    return isinstance(x, Module)


def modules(tree: Any) -> Iterator[Module]:
    """Every Module in `tree`, parents before children.

    Examples:
        >>> import fluxlike as fl
        >>> [type(m).__name__ for m in fl.modules(fl.Chain(fl.Dense(1, 2), fl.Dense(2, 1)))]
        ['Chain', 'Dense', 'Dense']
    """
    if isinstance(tree, Module):
        yield tree
        for name in type(tree)._fields:
            yield from modules(tree.__dict__[name])
    else:
        for node in jax.tree.leaves(tree, is_leaf=_is_module):
            if isinstance(node, Module):
                yield from modules(node)


def trainable_mask(tree: Any) -> list[bool]:
    """One flag per leaf of `tree` (in `jax.tree.leaves` order): True where the
    leaf is a trainable floating array (inside a Module: a field not marked
    `trainable=False`)."""
    return _field_flags(
        tree, True,
        lambda mod, name, flag: flag and name not in type(mod)._state_fields,
        lambda leaf, flag: flag and (is_float(leaf) if is_array(leaf) or isinstance(leaf, Tracer)
                                     else isinstance(leaf, (float, complex))),
    )


def keep_float32_mask(tree: Any) -> list[bool]:
    """One flag per leaf of `tree` (in `jax.tree.leaves` order): True where the
    leaf lies in a field that its Module names in `_keep_float32` (at any
    depth: a Chain's BatchNorm, or a sublayer inside such a field)."""
    return _field_flags(
        tree, False, lambda mod, name, flag: flag or name in type(mod)._keep_float32, lambda leaf, flag: flag
    )


def _field_flags(tree: Any, flag: bool, down: Callable, at_leaf: Callable) -> list[bool]:
    """One flag per leaf: `flag` carried down the tree, changed at each Module
    field by `down(module, field name, flag)`, and read at each leaf by
    `at_leaf(leaf, flag)` (a leaf may be a non-array, such as a Python number)."""
    out: list[bool] = []

    def walk(t: Any, f: bool) -> None:
        if isinstance(t, Module):
            d = t.__dict__
            for name in type(t)._fields:
                walk(d[name], down(t, name, f))
        elif is_array(t) or isinstance(t, Tracer):
            out.append(at_leaf(t, f))
        else:
            keys, children, _ = level(t)
            if keys is None:  # a leaf that is not an array: a Python number, ...
                out.append(at_leaf(t, f))
            for child in children:
                walk(child, f)

    walk(tree, flag)
    return out


def level(tree: Any) -> tuple[list | None, list, Any]:
    """One level of a container that is not a Module: (keys, children,
    treedef); keys is None when `tree` is itself a leaf."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is not tree)
    if len(pairs) == 1 and pairs[0][0] == ():
        return None, [], treedef
    return [p[0] for p, _ in pairs], [c for _, c in pairs], treedef


def set_leaves_(tree: Any, leaves: list[Any]) -> Any:
    """Rebind, in place, the arrays of `tree` to `leaves` (in `jax.tree.leaves`
    order): Module fields, dict and list entries change in place; tuples are
    rebuilt. Returns the tree (the same object unless it is a tuple or an array)."""
    it = iter(leaves)
    out = _set_into(tree, it)
    if next(it, _MISSING) is not _MISSING:
        raise ValueError("set_leaves_: more leaves than the tree has")
    return out


def _set_into(tree: Any, it: Iterator[Any]) -> Any:
    t = type(tree)
    if isinstance(tree, Module):
        d = tree.__dict__
        for name in t._fields:
            old = d[name]
            new = next(it) if isinstance(old, _LEAVES) else _set_into(old, it)
            if new is not old:
                tree.__setattr__(name, new)
        return tree
    if isinstance(tree, _LEAVES):
        return next(it)
    if t is dict:  # mutable containers change in place
        for k in sorted(tree):
            tree[k] = _set_into(tree[k], it)
        return tree
    if t is list:
        for i, v in enumerate(tree):
            tree[i] = _set_into(v, it)
        return tree
    if t is tuple:
        new = tuple(_set_into(c, it) for c in tree)
        return tree if all(a is b for a, b in zip(new, tree)) else new
    if tree is None:
        return tree
    keys, children, treedef = level(tree)
    if keys is None:
        return next(it)
    if not children:
        return tree
    new = [_set_into(c, it) for c in children]
    if all(a is b for a, b in zip(new, children)):
        return tree
    return jax.tree.unflatten(treedef, new)


def _set_mode(tree: Any, value: bool | None, fn: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{fn}: mode must be True, False or None (automatic), got {value!r}")
    for m in modules(tree):
        if "active" in type(m)._static:
            m.__setattr__("active", value)


def trainmode_(model: Any, mode: bool | None = True) -> Any:
    """Force train mode on every layer of `model` that has one (Dropout,
    BatchNorm, ...); `mode=None` restores automatic mode, `False` forces test mode.

    Returns `model`, changed in place. The mode is static configuration:
    a jitted function retraces once for each mode it sees.

    Examples:
        >>> import fluxlike as fl
        >>> net = fl.Chain(fl.Dense(2, 2), fl.Dropout(0.5))
        >>> fl.trainmode_(net)[1]
        Dropout(0.5, active=True)
        >>> fl.trainmode_(net, None)[1]
        Dropout(0.5)
    """
    _set_mode(model, mode, "trainmode_")
    return model


def testmode_(model: Any, mode: bool | None = True) -> Any:
    """Force test mode on every layer of `model` that has one; `mode=None`
    restores automatic mode (train inside `fl.gradient`, test outside),
    `False` forces train mode. Returns `model`, changed in place.

    Examples:
        >>> import fluxlike as fl
        >>> net = fl.Chain(fl.Dense(2, 2), fl.Dropout(0.5))
        >>> fl.testmode_(net)[1]
        Dropout(0.5, active=False)
        >>> fl.testmode_(net, None)[1]
        Dropout(0.5)
    """
    _set_mode(model, None if mode is None else not mode, "testmode_")
    return model
