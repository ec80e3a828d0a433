"""Tree utilities shared by the whole package: tracing checks, formatting of
paths and sizes, and the key stream.

Nothing here knows about layers or optimisers.
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


def underscorise(n: int) -> str:
    """`25450` -> `"25_450"`, as Flux prints parameter counts."""
    return f"{n:_}"


def format_bytes(n: int) -> str:
    """Julia's `Base.format_bytes`: `101800` -> `"99.414 KiB"`."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    x = float(n)
    while x >= 1024 and i < len(units) - 1:
        x /= 1024
        i += 1
    return f"{n} bytes" if i == 0 else f"{x:.3f} {units[i]}"


# ---------------------------------------------------------------------------
# The key stream: layers take `key=` (a PRNG key or an int) or draw from here.

_DEFAULT_SEED = 0


class _KeyStream:
    def __init__(self, seed: int) -> None:
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self._key = jax.random.PRNGKey(seed)

    def next(self) -> jax.Array:
        if tracing():
            raise RuntimeError(
                "fluxlike's default key stream was used while JAX is tracing "
                "(inside jax.jit, grad or vmap): the key would be baked into the "
                "compiled program. Build layers outside the traced function, or "
                "pass `key=` explicitly."
            )
        self._key, sub = jax.random.split(self._key)
        return sub


_STREAM = _KeyStream(_DEFAULT_SEED)


def seed(n: int) -> None:
    """Reseed fluxlike's default key stream, so that layers built without
    `key=` are reproducible.

    Example:
        >>> import fluxlike as fl
        >>> fl.seed(1); a = fl.Dense(2, 3).weight
        >>> fl.seed(1); b = fl.Dense(2, 3).weight
        >>> bool((a == b).all())
        True
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"seed: expected an int, got {type(n).__name__} {n!r}")
    _STREAM.reset(int(n))


def as_key(key: Any) -> jax.Array:
    """A PRNG key from `key`: None draws from the stream, an int seeds one,
    a key array is used as it is."""
    if key is None:
        return _STREAM.next()
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.PRNGKey(int(key))
    if is_array(key):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
            return jax.random.key_data(key)
        if key.dtype == jnp.uint32 and key.shape == (2,):
            return jnp.asarray(key)
    raise TypeError(
        f"key must be None, an int or a PRNG key (jax.random.PRNGKey(n) or "
        f"jax.random.key(n)), got {type(key).__name__} {key!r}"
    )
