"""Flux-style printing of models: one line for small models, and Flux's
multi-line form (one layer a line, parameter counts, a total) for larger ones.

This file sits below `module.py` (it imports only `_tree`), so that
`Module.__repr__` can call `show` with a plain top-level import and no import
cycle. It therefore never names `Module`: it prints any object that has the
layer hooks documented on `Module` (the `Layer` protocol below), and counts
parameters from the per-class field tables `_fields` and `_state_fields`
that `Module.__init_subclass__` builds.
"""

from __future__ import annotations

from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import jax
import numpy as np

from ._tree import is_array, is_float


@runtime_checkable
class Layer(Protocol):
    """What printing needs of a layer: the hooks every `fl.Module` has."""

    _fields: ClassVar[tuple[str, ...]]
    _state_fields: ClassVar[frozenset[str]]

    def _repr_head(self) -> str: ...

    def _children(self) -> list | None: ...


class Counts(NamedTuple):
    """Array and element counts of a model, split into trainable and other."""

    arrays: int
    params: int
    other_arrays: int
    other_params: int


def count_params(tree: Any) -> Counts:
    """Count the arrays of `tree`: trainable ones are floating arrays outside
    `fl.field(trainable=False)` fields (the rule of `fl.params` and
    `fl.gradient`), the rest are "other".

    Examples:
        >>> import fluxlike as fl
        >>> count_params(fl.BatchNorm(3))
        Counts(arrays=2, params=6, other_arrays=2, other_params=6)
    """
    out = [0, 0, 0, 0]
    _count_into(tree, True, out)
    return Counts(*out)


def _count_into(tree: Any, trainable: bool, out: list[int]) -> None:
    if isinstance(tree, Layer):
        d, state = tree.__dict__, type(tree)._state_fields
        for name in type(tree)._fields:
            _count_into(d[name], trainable and name not in state, out)
        return
    for leaf in jax.tree.leaves(tree, is_leaf=lambda x: x is not tree and isinstance(x, Layer)):
        if isinstance(leaf, Layer):
            _count_into(leaf, trainable, out)
        else:
            i = 0 if trainable and is_float(leaf) else 2
            out[i] += 1
            out[i + 1] += int(np.prod(np.shape(leaf)))


def nbytes(tree: Any) -> int:
    """Bytes held by the arrays of `tree`.

    Examples:
        >>> import jax.numpy as jnp
        >>> nbytes({"a": jnp.zeros(3), "b": jnp.zeros(2, jnp.int8)})
        14
    """
    return sum(int(np.prod(l.shape)) * l.dtype.itemsize for l in jax.tree.leaves(tree) if is_array(l))


def underscorise(n: int) -> str:
    """`25450` -> `"25_450"`, as Flux prints parameter counts.

    Examples:
        >>> underscorise(25450)
        '25_450'
    """
    return f"{n:_}"


def format_bytes(n: int) -> str:
    """Julia's `Base.format_bytes`.

    Examples:
        >>> format_bytes(101800), format_bytes(12)
        ('99.414 KiB', '12 bytes')
    """
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    x = float(n)
    while x >= 1024 and i < len(units) - 1:
        x /= 1024
        i += 1
    return f"{n} bytes" if i == 0 else f"{x:.3f} {units[i]}"


_ONE_LINE = 80


def _counts_comment(layer: Any, top: bool) -> str:
    _, npar, _, nother = count_params(layer)
    if npar == 0:  # as Flux: layers without parameters get no comment
        return ""
    s = f"# {underscorise(npar)} parameters"
    if nother:
        s += f", plus {underscorise(nother)}" + (" non-trainable" if top else "")
    where = placement(layer) if top else None
    return s + (f"; {where}" if where else "")


def _mesh_placed(x: Any) -> Any:
    """`x`'s NamedSharding when `x` is a concrete array on a mesh of several
    devices, else None. Reads only metadata: never the data, so printing a
    model whose arrays span several processes fetches nothing."""
    if not isinstance(x, jax.Array) or isinstance(x, jax.core.Tracer):
        return None
    sharding = getattr(x, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding) and sharding.mesh.size > 1:
        return sharding
    return None


def spec_note(x: Any) -> str:
    """`" @P('data', None)"` for an array split over a mesh, else `""`.

    Examples:
        >>> import jax, numpy as np
        >>> from jax.sharding import NamedSharding, PartitionSpec as P
        >>> mesh = jax.make_mesh((8,), ("data",))
        >>> spec_note(jax.device_put(np.zeros((8, 2)), NamedSharding(mesh, P("data"))))
        " @P('data',)"
        >>> spec_note(np.zeros(3))
        ''
    """
    sharding = _mesh_placed(x)
    if sharding is None or sharding.is_fully_replicated:
        return ""
    return f" @{sharding.spec}"


def placement(tree: Any) -> str | None:
    """`"on mesh(data=8): 3 of 4 arrays split, 120 bytes per device"` for a
    tree with arrays on a mesh of several devices, else None. Metadata only.

    Examples:
        >>> import jax, fluxlike as fl
        >>> m = fl.shard(fl.Dense(2, 8), jax.make_mesh((8,), ("data",)), fl.FSDP("data", min_size=1))
        >>> placement(m)
        'on mesh(data=8): 2 of 2 arrays split, 12 bytes per device'
    """
    placed = [(x, s) for x in jax.tree.leaves(tree) if (s := _mesh_placed(x)) is not None]
    if not placed:
        return None
    meshes = {s.mesh.shape_tuple for _, s in placed}
    where = "; ".join("mesh(" + ", ".join(f"{n}={k}" for n, k in m) + ")" for m in sorted(meshes))
    split = sum(not s.is_fully_replicated for _, s in placed)
    per_device = sum(int(np.prod(s.shard_shape(x.shape))) * x.dtype.itemsize for x, s in placed)
    return (f"on {where}: {split} of {len(placed)} arrays split, "
            f"{format_bytes(per_device)} per device")


def one_line(layer: Any) -> str:
    """`Chain(Dense(2 => 3, relu), Dense(3 => 1))` with no counts."""
    if isinstance(layer, Layer):
        kids = layer._children()
        if kids is None:
            return layer._repr_head()
        head = layer._repr_head()
        inner = ", ".join(
            (f"{k}={one_line(v)}" if isinstance(k, str) else one_line(v)) for k, v in kids
        )
        return head.replace("(…)", f"({inner})", 1)
    if hasattr(layer, "shape") and hasattr(layer, "dtype"):
        return f"{'×'.join(map(str, layer.shape)) or 'scalar'} {layer.dtype}{spec_note(layer)}"
    return repr(layer)


def _nested(layer: Layer) -> bool:
    kids = layer._children()
    return kids is not None and any(
        isinstance(v, Layer) and v._children() is not None for _, v in kids
    )


def show(layer: Layer) -> str:
    """The repr of a Module: one line when short and flat, else `big_show`."""
    line = one_line(layer)
    comment = _counts_comment(layer, True)
    if layer._children() is None or (len(line) + 2 + len(comment) <= _ONE_LINE and not _nested(layer)):
        return f"{line}  {comment}" if comment else line
    return big_show(layer)


def big_show(layer: Layer) -> str:
    """Flux's REPL display: one layer a line with its parameter count, then a total.

    Examples:
        >>> import fluxlike as fl
        >>> print(fl.Chain(fl.Dense(784, 32, fl.relu), fl.Dense(32, 10)))
        Chain(
          Dense(784 => 32, relu),               # 25_120 parameters
          Dense(32 => 10),                      # 330 parameters
        )                   # Total: 4 arrays, 25_450 parameters, 99.414 KiB.
    """
    lines: list[str] = []
    _big(layer, 0, None, lines)
    return "\n".join(lines)


def _big(layer: Any, indent: int, name: str | None, out: list[str]) -> None:
    prefix = "" if name is None else f"{name} = "
    kids = layer._children() if isinstance(layer, Layer) else None
    if kids is None:
        s = prefix + one_line(layer)
        line = " " * indent + s + ("" if indent == 0 else ",")
        comment = _counts_comment(layer, indent == 0)
        if comment:
            line += " " * max(2, (20 if indent == 0 else 39) - indent - len(s)) + comment
        out.append(line)
        return
    head = layer._repr_head()
    pre = head.split("(…)", 1)[0] + "("
    out.append(" " * indent + prefix + pre)
    for k, v in kids:
        _big(v, indent + 2, k if isinstance(k, str) else None, out)
    if indent == 0:
        out.append(")" + " " * 1 + _finale(layer))
    else:
        out.append(" " * indent + "),")


def _finale(layer: Layer) -> str:
    na, npar, no, nother = count_params(layer)
    size = format_bytes(nbytes(layer))
    where = placement(layer)
    where = f"\n{' ' * 10}# {where}." if where else ""
    if no:
        return (
            f"{' ' * 8}# Total: {na} trainable arrays, {underscorise(npar)} parameters,\n"
            f"{' ' * 10}# plus {no} non-trainable, {underscorise(nother)} parameters, "
            f"summarysize {size}.{where}"
        )
    return f"{' ' * 18}# Total: {na} arrays, {underscorise(npar)} parameters, {size}.{where}"


__all__ = ["Layer", "Counts", "count_params", "nbytes", "underscorise", "format_bytes", "show", "big_show", "one_line",
           "spec_note", "placement"]
