"""A model's arrays by name, the way PyTorch names a module's: attribute
paths joined by dots (`layers.0.weight`, `layers.enc.bias`), and loading a
{name: array} mapping back into a model with every mismatch reported at once.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._tree import is_array
from .._walk import set_leaves_

__all__ = ["dotted", "named_arrays", "match_named", "load_named_"]


def dotted(path: tuple) -> str:
    """`layers.0.weight` for a JAX key path.

    Examples:
        >>> import jax, fluxlike as fl
        >>> from fluxlike.saving._names import dotted
        >>> [dotted(p) for p, _ in jax.tree_util.tree_flatten_with_path(fl.Chain(fl.Dense(1, 1)))[0]]
        ['layers.0.weight', 'layers.0.bias']
    """
    out = []
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            out.append(k.name)
        elif isinstance(k, jax.tree_util.SequenceKey):
            out.append(str(k.idx))
        elif isinstance(k, jax.tree_util.DictKey):
            out.append(str(k.key))
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            out.append(str(k.key))
        else:
            out.append(str(k).strip(".[]'\""))
    return ".".join(out)


def _is_key(x: Any) -> bool:
    return jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)


def named_arrays(tree: Any, fn: str, what: str = "model") -> tuple[list[tuple[str, Any]], list[int]]:
    """`([(name, array)], group)`: every array of `tree` under its dotted name
    (typed PRNG keys as their key data), and for each position the position
    of the first array it is tied to (the same object: shared weights).

    Raises ValueError when two positions get one name (a dict key holding a
    dot) and TypeError for a leaf that is not an array."""
    pairs, _ = jax.tree_util.tree_flatten_with_path(tree)
    out, seen, group, first = [], {}, [], {}
    for i, (path, leaf) in enumerate(pairs):
        name = dotted(path)
        if not is_array(leaf):
            raise TypeError(f"{fn}: {what} entry {name} is a {type(leaf).__name__}, not an array")
        if isinstance(leaf, jax.core.Tracer):
            raise RuntimeError(f"{fn}: {what} entry {name} is being traced (inside jax.jit, grad or vmap); "
                               "save and load outside the compiled function")
        if name in seen:
            raise ValueError(f"{fn}: two entries of the {what} are both named {name!r} (a dict key with a dot?); "
                             "rename one so that every array has its own name")
        seen[name] = i
        group.append(first.setdefault(id(leaf), i))
        out.append((name, jax.random.key_data(leaf) if _is_key(leaf) else leaf))
    return out, group


def load_named_(model: Any, src: dict[str, Any], strict: bool, fn: str, where: str) -> list[str]:
    """`match_named`, then the new arrays into `model`, in place; the model's
    names that were not loaded."""
    new, skipped = match_named(model, src, strict, fn, where)
    set_leaves_(model, new)
    return skipped


def match_named(model: Any, src: dict[str, Any], strict: bool, fn: str, where: str,
                what: str = "the model") -> tuple[list[Any], list[str]]:
    """The arrays `src` gives `model` (in `jax.tree.leaves` order) and the
    model's names it does not give, after checking everything: every missing key and unexpected key (with `strict`), shape
    and dtype mismatch is reported in one error and nothing changes (as
    PyTorch's `load_state_dict`, `strict=False` forgives names only); the
    model's names that were not loaded are returned.
    Tied arrays stay tied (their source entries must agree). `where` names
    the source in messages ("the file m.safetensors"), `what` the target."""
    named, group = named_arrays(model, fn)
    leaves = jax.tree.leaves(model)
    problems: list[tuple[type, str]] = []
    new: list[Any] = list(leaves)
    names = [n for n, _ in named]
    missing = [n for n in names if n not in src]
    unexpected = sorted(set(src) - set(names))
    skipped = list(missing)
    if missing and strict:
        problems.append((LookupError, f"missing from {where}: {_few(missing)}"))
    if unexpected and strict:
        problems.append((LookupError, f"in {where} but not in {what}: {_few(unexpected)}"))
    for i, (name, dst) in enumerate(named):
        if name not in src:
            continue
        s = src[name]
        if not is_array(s):
            problems.append((TypeError, f"{name}: {where} holds a {type(s).__name__}, not an array"))
            continue
        if tuple(s.shape) != tuple(dst.shape):
            problems.append((ValueError, f"{name}: shape {tuple(dst.shape)} in {what}, {tuple(s.shape)} in {where}"))
            skipped.append(name)
            continue
        if np.dtype(s.dtype) != np.dtype(dst.dtype):
            problems.append((TypeError, f"{name}: dtype {np.dtype(dst.dtype)} in {what}, {np.dtype(s.dtype)} in {where} "
                                        "(dtypes are never converted: convert the model with fl.f16/fl.f32 or the source)"))
            skipped.append(name)
            continue
        if group[i] != i:  # tied to an earlier position: one array for both, if the source agrees
            j = group[i]
            if names[j] in src and not np.array_equal(np.asarray(src[names[j]]), np.asarray(s)):
                problems.append((ValueError, f"{name} is tied to {names[j]} in {what} (one array), "
                                             f"but {where} holds different values for them"))
            new[i] = new[j]
            continue
        arr = _placed_like(s, dst)
        new[i] = jax.random.wrap_key_data(arr, impl=jax.random.key_impl(leaves[i])) if _is_key(leaves[i]) else arr
    if problems:  # LookupError: missing or unexpected names (only with strict); raised as ValueError
        real = problems
        if real:
            kinds = {ValueError if k is LookupError else k for k, _ in real}
            kind = kinds.pop() if len(kinds) == 1 else ValueError
            if len(real) == 1:
                raise kind(f"{fn}: {real[0][1]}; nothing was loaded")
            lines = "\n  ".join(m for _, m in real)
            raise kind(f"{fn}: {len(real)} problems, so nothing was loaded:\n  {lines}")
    return new, skipped


def _placed_like(src: Any, dst: Any) -> jax.Array:
    """`src` as a jax array placed as `dst` is when `dst` lives on a mesh
    (a checkpoint loads into a sharded model sharded), else on the default device."""
    sharding = getattr(dst, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.device_put(np.asarray(src), sharding)
    return jnp.asarray(src)


def _few(names: list[str], n: int = 12) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")
