"""The losses of an epoch and its counters, in one float array.

Every array crossing a jitted call costs time (DESIGN's cost model), so an
epoch's step carries one buffer instead of a loss array and counters:

    [loss of item base, loss of item base + 1, ..., ITEM, BAD, BASE]

- `ITEM`: the index of the item this step trains on (0-based in the epoch);
- `BAD`: the first item whose loss was not finite, or -1;
- `BASE`: the index of the item whose loss is in slot 0 (an epoch of unknown
  length fills several buffers, each continuing the counters of the last).

Counters stored in the float buffer are exact up to 2^24 items per epoch;
`MAX_ITEMS` is that bound.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LossBuffer"]


class LossBuffer:
    """Functions over the buffer (it is a plain array, so it donates and
    crosses `jax.jit` as one leaf).

    Examples:
        >>> import jax.numpy as jnp
        >>> from fluxlike._lossbuffer import LossBuffer
        >>> buf = LossBuffer.new(2, jnp.float32)
        >>> buf = LossBuffer.record(LossBuffer.record(buf, jnp.float32(0.5)), jnp.float32(jnp.nan))
        >>> losses, bad = LossBuffer.read([buf], 2)
        >>> losses.tolist(), bad
        ([0.5, nan], 1)
    """

    ITEM, BAD, BASE = 0, 1, 2  # offsets of the counters after the losses
    MAX_ITEMS = 2**24

    @staticmethod
    def capacity(buf: Any) -> int:
        """How many losses the buffer holds."""
        return buf.shape[0] - 3

    @staticmethod
    def new(cap: int, dtype: Any, item: int = 0, bad: int = -1) -> jax.Array:
        """An empty buffer for `cap` losses whose first slot is item `item`."""
        return jnp.zeros(cap + 3, dtype).at[cap:].set(jnp.asarray([item, bad, item], dtype))

    @staticmethod
    def following(buf: jax.Array) -> jax.Array:
        """A fresh buffer continuing where the full `buf` stops."""
        cap = LossBuffer.capacity(buf)
        item = buf[cap + LossBuffer.ITEM]
        return jnp.zeros_like(buf).at[cap:].set(jnp.stack([item, buf[cap + LossBuffer.BAD], item]))

    @staticmethod
    def item(buf: jax.Array) -> jax.Array:
        """The index of the next item, an int32 scalar."""
        return buf[LossBuffer.capacity(buf) + LossBuffer.ITEM].astype(jnp.int32)

    @staticmethod
    def bad(buf: jax.Array) -> jax.Array:
        """The first non-finite item so far, or -1, an int32 scalar."""
        return buf[LossBuffer.capacity(buf) + LossBuffer.BAD].astype(jnp.int32)

    @staticmethod
    def record(buf: jax.Array, val: jax.Array) -> jax.Array:
        """The buffer with the next item's loss stored and the counters advanced (traceable)."""
        cap = LossBuffer.capacity(buf)
        i, bad = LossBuffer.item(buf), LossBuffer.bad(buf)
        base = buf[cap + LossBuffer.BASE].astype(jnp.int32)
        bad = jnp.where((bad < 0) & ~jnp.isfinite(val), i, bad)
        tail = jnp.stack([i + 1, bad]).astype(buf.dtype)
        return buf.at[i - base].set(val.astype(buf.dtype)).at[cap + LossBuffer.ITEM:cap + LossBuffer.BAD + 1].set(tail)

    @staticmethod
    def read(buffers: list, count: int) -> tuple[np.ndarray, int]:
        """`(losses of the first `count` items, first non-finite item or -1)`,
        from the buffers of one epoch in order (one transfer)."""
        host = jax.device_get(buffers)
        cap = LossBuffer.capacity(host[-1])
        losses = np.concatenate([b[:cap] for b in host])[:count]
        return losses, int(host[-1][cap + LossBuffer.BAD])
