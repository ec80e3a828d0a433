"""fluxlike's default PRNG key stream: layers and initialisers take `key=`
(a PRNG key or an int) or draw the next key from here; `fl.seed` resets it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._tree import is_array, tracing

__all__ = ["seed", "as_key"]

_DEFAULT_SEED = 0


class _KeyStream:
    """The stream holds a seed until a key is first needed: making a key
    starts JAX's backend, which importing fluxlike must not do (a multi-host
    script calls `jax.distributed.initialize()` after its imports)."""

    def __init__(self, seed: int) -> None:
        self.reset(seed)

    def reset(self, seed: int) -> None:
        self._seed, self._k = seed, None

    @property
    def _key(self) -> jax.Array:
        if self._k is None:
            self._k = jax.random.PRNGKey(self._seed)
        return self._k

    @_key.setter
    def _key(self, key: jax.Array) -> None:
        self._k = key

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


def stream_key() -> jax.Array:
    """The key stream's current key (what a checkpoint saves), without advancing it."""
    return _STREAM._key


def set_stream_key(key: Any) -> None:
    """Put the key stream at `key` (raw key data, uint32 of shape (2,)), as a checkpoint restores it."""
    _STREAM._key = jnp.asarray(key, jnp.uint32)


def seed(n: int) -> None:
    """Reseed fluxlike's default key stream, so that layers built without
    `key=` are reproducible.

    Examples:
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
