"""Whole-model functions: `params`, `fmap`, `destructure`, precision and
device moves, and `state` (what `fl.loadmodel_`, in saving/model.py, reads)."""

from __future__ import annotations

import warnings
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from ._tree import is_array, is_float, keystr
from ._walk import keep_float32_mask, set_leaves_, trainable_mask

__all__ = ["params", "fmap", "destructure", "f16", "f32", "f64", "cpu", "gpu", "state"]


def params(model: Any) -> list[jax.Array]:
    """The trainable arrays of `model`, in order (for penalties; each tied
    array once).

    Examples:
        >>> import fluxlike as fl
        >>> [p.shape for p in fl.params(fl.Dense(3, 2))]
        [(2, 3), (2,)]
    """
    seen: set[int] = set()
    out = []
    for leaf, m in zip(jax.tree.leaves(model), trainable_mask(model)):
        if m and id(leaf) not in seen:
            seen.add(id(leaf))
            out.append(leaf)
    return out


def fmap(f: Callable, model: Any, *others: Any) -> Any:
    """A new model with `f` applied to every array (with the matching leaves of
    `others`, trees of the same shape such as gradients; None there passes
    the array through unchanged).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> m = fl.Dense(2, 1, init=lambda k, s, d: jnp.ones(s, d))
        >>> g = fl.gradient(lambda m: m(jnp.array([1.0, 2.0])).sum(), m)[0]
        >>> fl.fmap(lambda p, g: p - 0.1 * g, m, g).weight
        Array([[0.9, 0.8]], dtype=float32)
    """
    leaves, treedef = jax.tree.flatten(model)
    rest = [treedef.flatten_up_to(o) for o in others]
    out = []
    for i, leaf in enumerate(leaves):
        extra = [r[i] for r in rest]
        out.append(leaf if any(e is None for e in extra) else f(leaf, *extra))
    return jax.tree.unflatten(treedef, out)


def destructure(model: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """`(flat, re)`: the trainable arrays concatenated into one vector, and a
    function that rebuilds the model from such a vector.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> flat, re = fl.destructure(fl.Dense(2, 1))
        >>> flat.shape
        (3,)
        >>> re(jnp.zeros(3)).weight
        Array([[0., 0.]], dtype=float32)
    """
    leaves, treedef = jax.tree.flatten(model)
    mask = trainable_mask(model)
    train = [l for l, m in zip(leaves, mask) if m]
    shapes = [l.shape for l in train]
    sizes = [int(np.prod(s)) for s in shapes]
    dtype = jnp.result_type(*train) if train else jnp.float32
    flat = jnp.concatenate([jnp.ravel(l).astype(dtype) for l in train]) if train else jnp.zeros(0, dtype)

    def re(v: jax.Array) -> Any:
        v = jnp.asarray(v)
        if v.shape != (sum(sizes),):
            raise ValueError(f"destructure: expected a vector of length {sum(sizes)}, got shape {v.shape}")
        parts, off = [], 0
        for s, n, old in zip(shapes, sizes, train):
            parts.append(v[off:off + n].reshape(s).astype(old.dtype))
            off += n
        it = iter(parts)
        return jax.tree.unflatten(treedef, [next(it) if m else l for l, m in zip(leaves, mask)])

    return flat, re


def _to_float(model: Any, dtype: Any) -> Any:
    """`model` with its floating arrays in `dtype`. Below 32 bits (f16), the
    fields a Module names in `_keep_float32` go to float32 instead, as Flux's
    `_paramtype` hands `_keep_f32_under_halfprec` layers to `f32`."""
    leaves, treedef = jax.tree.flatten(model)
    half = jnp.finfo(dtype).bits < 32
    keep = keep_float32_mask(model) if half else [False] * len(leaves)
    out = [
        x.astype(jnp.float32 if k else dtype) if is_float(x) else x
        for x, k in zip(leaves, keep)
    ]
    return jax.tree.unflatten(treedef, out)


def f16(model: Any) -> Any:
    """A copy of `model` with every floating array in float16, except in
    mixed-precision layers, as Flux's `f16`: BatchNorm, InstanceNorm and
    GroupNorm keep their statistics (`mean`, `var`) and affine parameters
    (`bias`, `scale`) in float32, while the data flowing through them stays
    float16 (their output has the input's dtype). LayerNorm converts fully.
    A layer opts in with the `Module` hook `_keep_float32`.

    Examples:
        >>> import fluxlike as fl
        >>> fl.f16(fl.Dense(2, 1)).weight.dtype
        dtype('float16')
        >>> m = fl.f16(fl.Chain(fl.Dense(2, 3), fl.BatchNorm(3)))
        >>> m[0].weight.dtype, m[1].scale.dtype, m[1].mean.dtype
        (dtype('float16'), dtype('float32'), dtype('float32'))
        >>> m(jnp.ones((4, 2), jnp.float16)).dtype
        dtype('float16')
    """
    return _to_float(model, jnp.float16)


def f32(model: Any) -> Any:
    """A copy of `model` with every floating array in float32 (undoes `f16`,
    the mixed-precision layers included).

    Examples:
        >>> import fluxlike as fl
        >>> fl.f32(fl.f16(fl.Dense(2, 1))).weight.dtype
        dtype('float32')
    """
    return _to_float(model, jnp.float32)


def f64(model: Any) -> Any:
    """A copy of `model` with every floating array in float64, the
    normalisation layers' statistics included (as Flux's `f64`; needs
    `jax.config.update("jax_enable_x64", True)`, else JAX keeps float32
    and this raises).

    Examples:
        >>> import fluxlike as fl
        >>> fl.f64(fl.Dense(2, 1))  # doctest: +SKIP
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError('f64: JAX runs in 32-bit mode; call jax.config.update("jax_enable_x64", True) first')
    return _to_float(model, jnp.float64)


def cpu(model: Any) -> Any:
    """A copy of `model` with every array on the first CPU device.

    Examples:
        >>> import fluxlike as fl
        >>> fl.cpu(fl.Dense(2, 1)).weight.devices()
        {CpuDevice(id=0)}
    """
    return jax.device_put(model, jax.devices("cpu")[0])


def gpu(model: Any) -> Any:
    """A copy of `model` on the default accelerator (GPU or TPU), or unchanged
    with a warning when there is none, as Flux's `gpu` does.

    Examples:
        >>> import fluxlike as fl
        >>> m = fl.gpu(fl.Dense(2, 1))  # doctest: +SKIP
    """
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        warnings.warn("gpu: no GPU or TPU found; the model stays on the CPU", stacklevel=2)
    return jax.device_put(model, dev)


def state(model: Any) -> Any:
    """Every array of `model` (parameters and state such as BatchNorm
    statistics) in a tree of the model's shape, as plain arrays: what you
    save, and what `loadmodel_` reads.

    Examples:
        >>> import fluxlike as fl
        >>> s = fl.state(fl.Dense(2, 1))
        >>> s.weight.shape
        (1, 2)
    """
    return jax.tree.map(lambda x: x, model)
