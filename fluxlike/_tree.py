"""The bottom of the package: asking whether JAX is tracing, classifying
pytree leaves, and formatting key paths.

Nothing here knows about layers or optimisers, and this file imports nothing
from fluxlike.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

try:  # the cheapest way to ask "is a transformation tracing right now?"
    from jax._src.core import eval_trace as _EVAL_TRACE
    from jax._src.core import trace_ctx as _TRACE_CTX

    def tracing() -> bool:
        """True while JAX traces (inside jit, grad, vmap, scan, ...)."""
        return _TRACE_CTX.trace is not _EVAL_TRACE

except ImportError:  # pragma: no cover - older or newer JAX internals
    _TRACE_CTX = _EVAL_TRACE = None

    def tracing() -> bool:
        return not jax.core.trace_state_clean()


Tracer = jax.core.Tracer


def is_array(x: Any) -> bool:
    """True for a JAX or numpy array (the only kinds of pytree leaf we allow)."""
    return isinstance(x, (jax.Array, np.ndarray, np.generic))


def is_float(x: Any) -> bool:
    """True for an array with a floating or complex dtype (a differentiable leaf)."""
    dt = getattr(x, "dtype", None)
    return dt is not None and jnp.issubdtype(dt, jnp.inexact)


def explicit_spec(x: Any) -> Any:
    """The PartitionSpec of an array (or tracer) split over an Explicit mesh
    axis, else None (whole arrays, Auto meshes, one device)."""
    if not isinstance(x, jax.Array):
        return None
    spec = getattr(getattr(jax.typeof(x), "sharding", None), "spec", None)
    return spec if spec is not None and any(p is not None for p in spec) else None


def reshard_like(x: Any, ref: Any) -> Any:
    """`x` split as `ref` is on its Explicit mesh (whole when `ref` is whole
    and `x` is split); unchanged when neither is split."""
    if explicit_spec(ref) is None and explicit_spec(x) is None:
        return x
    return jax.sharding.reshard(x, jax.typeof(ref).sharding)


def keystr(path: tuple) -> str:
    """`.layers[0].weight` for a JAX key path."""
    out = []
    for k in path:
        if isinstance(k, jax.tree_util.GetAttrKey):
            out.append(f".{k.name}")
        elif isinstance(k, jax.tree_util.SequenceKey):
            out.append(f"[{k.idx}]")
        elif isinstance(k, jax.tree_util.DictKey):
            out.append(f"[{k.key!r}]")
        elif isinstance(k, jax.tree_util.FlattenedIndexKey):
            out.append(f"[{k.key}]")
        else:
            out.append(str(k))
    return "".join(out)
