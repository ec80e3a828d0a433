"""Placing a model (or an optimiser state) on a device mesh: `shard`,
`shard_`, the layouts `Replicate` and `FSDP`, and `gather` for host reads.

Only `jax.sharding` is used: a `Mesh` you build (`jax.make_mesh`), a
`NamedSharding` per array, `PartitionSpec`s. A layout is `Replicate()`,
`FSDP(axis)`, a dict `{path regex: PartitionSpec}` (first match wins, on
the dotted names `layers.0.weight`; unmatched arrays replicated) or a
callable `(path, array) -> PartitionSpec`.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ._tree import is_array, tracing
from ._walk import set_leaves_
from .optimise.state import OptState, arrays, assign_, rebuilt
from .saving._names import dotted

__all__ = ["Replicate", "FSDP", "shard", "shard_", "gather"]


class Replicate:
    """Every array whole on every device of the mesh: data parallelism.

    Examples:
        >>> import fluxlike as fl
        >>> fl.Replicate()
        Replicate()
    """

    def __call__(self, path: str, x: Any, mesh: Mesh) -> P:
        return P()

    def __repr__(self) -> str:
        return "Replicate()"


class FSDP:
    """Fully sharded data parallelism: each array split over mesh axis `axis`
    on its largest dimension that the axis size divides; arrays with fewer
    than `min_size` elements, or with no such dimension, stay replicated.
    Integer arrays (PRNG keys, counters) are always replicated.

    Examples:
        >>> import fluxlike as fl
        >>> fl.FSDP("data")
        FSDP('data', min_size=1024)
    """

    def __init__(self, axis: str = "data", *, min_size: int = 1024) -> None:
        if not isinstance(axis, str):
            raise TypeError(f"FSDP: axis must be a mesh axis name (a str), got {axis!r}")
        self.axis, self.min_size = axis, int(min_size)

    def __call__(self, path: str, x: Any, mesh: Mesh) -> P:
        if self.axis not in mesh.shape:
            raise ValueError(f"FSDP: the mesh has axes {tuple(mesh.shape)}, not {self.axis!r}")
        n = mesh.shape[self.axis]
        if not jnp.issubdtype(x.dtype, jnp.inexact) or x.size < self.min_size or x.ndim == 0:
            return P()
        best = None
        for d in sorted(range(x.ndim), key=lambda d: (-x.shape[d], d)):
            if x.shape[d] % n == 0:
                best = d
                break
        if best is None:
            return P()
        return P(*[self.axis if d == best else None for d in range(x.ndim)])

    def __repr__(self) -> str:
        return f"FSDP({self.axis!r}, min_size={self.min_size})"


def _layout(rule: Any, fn: str) -> Callable[[str, Any, Mesh], P]:
    if isinstance(rule, (Replicate, FSDP)):
        return rule
    if isinstance(rule, dict):
        pats = []
        for k, v in rule.items():
            if not isinstance(v, P):
                raise TypeError(f"{fn}: a layout dict maps path regexes to PartitionSpecs; {k!r} maps to {v!r}")
            pats.append((re.compile(k), v))
        return lambda path, x, mesh: next((v for pat, v in pats if pat.search(path)), P())
    if callable(rule):
        return lambda path, x, mesh: rule(path, x)
    raise TypeError(f"{fn}: rule must be fl.Replicate(), fl.FSDP(axis), a dict {{path regex: PartitionSpec}} "
                    f"or a callable (path, array) -> PartitionSpec; got {rule!r}")


def _check_spec(spec: Any, path: str, x: Any, mesh: Mesh, fn: str) -> P:
    if not isinstance(spec, P):
        raise TypeError(f"{fn}: the layout gave {spec!r} for {path}, not a jax.sharding.PartitionSpec")
    if len(spec) > x.ndim:
        raise ValueError(f"{fn}: {path} has {x.ndim} dimensions {tuple(x.shape)}, the spec {spec} names {len(spec)}")
    for d, axes in enumerate(spec):
        names = () if axes is None else (axes if isinstance(axes, tuple) else (axes,))
        size = 1
        for a in names:
            if a not in mesh.shape:
                raise ValueError(f"{fn}: the spec {spec} for {path} names the axis {a!r}; the mesh has {tuple(mesh.shape)}")
            size *= mesh.shape[a]
        if x.shape[d] % size:
            raise ValueError(f"{fn}: {path} has size {x.shape[d]} on dimension {d}, which the mesh axes "
                             f"{names} (size {size}) do not divide; spec {spec}")
    return spec


def _buffers(x: Any) -> set:
    try:
        return {s.data.unsafe_buffer_pointer() for s in x.addressable_shards}
    except Exception:  # deleted, or a backend without pointers: assume shared
        return {None}


def _place(x: Any, sharding: NamedSharding) -> jax.Array:
    """`x` on `sharding` in buffers of its own (never the source's, so that
    donating it cannot delete the caller's array: `device_put` to a
    replicated sharding reuses the source's buffer on its device, even with
    `may_alias=False` in jax 0.10)."""
    placed = jax.device_put(x, sharding)
    if isinstance(x, jax.Array) and _buffers(placed) & _buffers(x):
        placed = jax.jit(jnp.copy, out_shardings=sharding)(placed)
    return placed


def _placed(tree: Any, mesh: Mesh, layout: Callable, fn: str) -> list:
    pairs, _ = jax.tree_util.tree_flatten_with_path(tree)
    out, seen = [], {}
    for path, x in pairs:
        name = dotted(path)
        if not is_array(x):
            raise TypeError(f"{fn}: {name} is a {type(x).__name__}, not an array")
        if id(x) in seen:  # tied: one placement for every position
            out.append(seen[id(x)])
            continue
        spec = P() if not jnp.issubdtype(x.dtype, jnp.inexact) else _check_spec(layout(name, x, mesh), name, x, mesh, fn)
        seen[id(x)] = placed = _place(x, NamedSharding(mesh, spec))
        out.append(placed)
    return out


def _state_placed(state: OptState, mesh: Mesh, layout: Callable, fn: str) -> OptState:
    """An OptState on the mesh: rule states by the layout (ZeRO-1 when the model
    stays replicated), the hyperparameter and counts tables replicated."""
    states, hyper, counts = arrays(state)
    rep = NamedSharding(mesh, P())
    new_states = jax.tree.unflatten(jax.tree.structure(states), _placed(states, mesh, layout, fn))
    return rebuilt(state, new_states, _place(hyper, rep), _place(counts, rep))


def _check(mesh: Any, fn: str) -> None:
    if tracing():
        raise RuntimeError(f"{fn} places arrays on devices and runs outside jax.jit; call it before the step")
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{fn}: mesh must be a jax.sharding.Mesh (e.g. jax.make_mesh((8,), ('data',))), "
                        f"got {type(mesh).__name__}")


def shard(tree: Any, mesh: Mesh, rule: Any = None) -> Any:
    """A copy of `tree` (a model, an optimiser state or any pytree of arrays)
    with every array placed on `mesh` by `rule` (default `fl.Replicate()`).

    Arrays are copied into buffers of their own, so the original stays
    valid when the placed one is donated. Tied arrays (one object at several
    places) get one placement. Integer arrays (Dropout keys, counters) are
    replicated. An `fl.setup` state is placed with its rule states by
    `rule` and its tables replicated: `shard(state, mesh, fl.FSDP("data"))`
    of a replicated model's state is ZeRO-1 (optimiser state sharded,
    parameters whole).

    Examples:
        >>> import jax, fluxlike as fl
        >>> mesh = jax.make_mesh((8,), ("data",))
        >>> model = fl.shard(fl.Chain(fl.Dense(64, 256), fl.Dense(256, 10)), mesh, fl.FSDP("data"))
        >>> model.layers[0].weight.sharding.spec, model.layers[1].bias.sharding.spec
        (P('data', None), P())
    """
    _check(mesh, "shard")
    layout = _layout(Replicate() if rule is None else rule, "shard")
    if isinstance(tree, OptState):
        return _state_placed(tree, mesh, layout, "shard")
    leaves = _placed(tree, mesh, layout, "shard")
    return jax.tree.unflatten(jax.tree.structure(tree), leaves)


def shard_(tree: Any, mesh: Mesh, rule: Any = None) -> Any:
    """`shard` in place: the model's (or state's) arrays are rebound to their
    placed copies; returns the same object.

    Examples:
        >>> import jax, fluxlike as fl
        >>> model = fl.Dense(2, 8)
        >>> fl.shard_(model, jax.make_mesh((8,), ("data",))) is model
        True
    """
    _check(mesh, "shard_")
    layout = _layout(Replicate() if rule is None else rule, "shard_")
    if isinstance(tree, OptState):
        assign_(tree, _state_placed(tree, mesh, layout, "shard_"))
        return tree
    return set_leaves_(tree, _placed(tree, mesh, layout, "shard_"))


def gather(tree: Any) -> Any:
    """`tree` with every array as a numpy array on the host, whole (what a
    sharded array holds across all its devices).

    Examples:
        >>> import jax, fluxlike as fl
        >>> m = fl.shard(fl.Dense(2, 8), jax.make_mesh((8,), ("data",)), fl.FSDP("data", min_size=1))
        >>> type(fl.gather(m).weight).__name__, fl.gather(m).weight.shape
        ('ndarray', (8, 2))
    """
    def host(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            from jax.experimental import multihost_utils
            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(jax.device_get(x)) if is_array(x) else x

    if isinstance(tree, OptState):
        states, hyper, counts = arrays(tree)
        return rebuilt(tree, jax.tree.map(host, states), host(hyper), host(counts))
    return jax.tree.map(host, tree)
