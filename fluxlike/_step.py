"""The compiled training steps behind `train_`, `train` and `trainstep_`.

A step is one jitted function of the model's arrays, the optimiser state and
a batch. The programs for one loss function live in a `Steps` entry, found
through a cache keyed by what the function is (`_fncache.py`), so the fresh
lambda of every epoch in Flux's loops reuses one compiled program.

Each step takes `ok(loss) -> bool scalar`: where False the update is skipped
inside the rule (every Leaf acts frozen, which costs nothing on the device),
and the layer state the forward pass changed (BatchNorm statistics, Dropout
keys) is restored here.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

import jax
import jax.numpy as jnp

from ._fncache import FnCache
from ._lossbuffer import LossBuffer
from .gradient import _pick_loss, withgradient
from .optimise._batch import select
from .optimise.state import OptState, positions
from .optimise.update import traced_update

__all__ = ["Steps", "steps_for", "check_call", "splat"]


def splat(d: Any) -> bool:
    """Whether a data item is splatted into the loss: only a plain tuple is
    (NamedTuples and dicts are passed whole, as Flux passes NamedTuples)."""
    return type(d) is tuple


def check_call(loss: Callable, d: Any, item: int, fn: str) -> None:
    """Raise a TypeError naming the item and how it was passed when `loss`
    cannot take it (checked on the host, before anything is traced)."""
    try:
        sig = inspect.signature(loss)
    except (TypeError, ValueError):
        return
    args = (None, *d) if splat(d) else (None, d)
    try:
        sig.bind(*args)
    except TypeError as e:
        if splat(d):
            names = ", ".join(f"d[{i}]" for i in range(len(d)))
            how = f"a tuple of {len(d)}, splatted as loss(model, {names})"
        else:
            how = f"a {type(d).__name__}, passed whole as loss(model, d)"
        raise TypeError(
            f"{fn}: data item {item} is {how}, but the loss has the signature {sig} ({e}). "
            "Make the loss take the model and then the item's parts, e.g. loss(m, x, y) for "
            "(x, y) tuples; wrap other items in a 1-tuple to splat them."
        ) from None


def _grad_step(loss: Callable, leaves: list, state: OptState, batch: Any, treedef: Any,
               splatted: bool, ok: Callable) -> tuple:
    """`(loss, new_state, new_leaves)`; `ok(val)` says whether to update."""
    model = jax.tree.unflatten(treedef, leaves)
    call = (lambda m: loss(m, *batch)) if splatted else (lambda m: loss(m, batch))
    out, grads = withgradient(call, model)
    val = _pick_loss(out)
    go = ok(val)
    new_state, new_model = traced_update(state, model, grads[0], go)
    new_leaves = jax.tree.leaves(new_model)
    # the optimiser kept the parameters and its state of a skipped step; layer state is restored here
    ruled = positions(state)
    new_leaves = [n if p in ruled else select(go, n, o) for p, (n, o) in enumerate(zip(new_leaves, leaves))]
    return val, new_state, new_leaves


@functools.lru_cache(maxsize=256)
def _first(where: tuple) -> tuple:
    """For each unique array, the first model position that holds it."""
    out: dict[int, int] = {}
    for p, j in enumerate(where):
        out.setdefault(j, p)
    return tuple(out[j] for j in range(len(out)))


def _epoch_step(loss: Callable, uleaves: tuple, state: OptState, buf: jax.Array,
                batch: Any, treedef: Any, where: tuple, splatted: bool) -> tuple:
    """One step of an epoch on the unique arrays of the model (`where` maps
    model positions to them). After a non-finite loss every later step is a
    no-op, so the epoch ends with the model as it was before that item."""
    leaves = [uleaves[j] for j in where]
    bad = LossBuffer.bad(buf)
    val, new_state, new_leaves = _grad_step(
        loss, leaves, state, batch, treedef, splatted, lambda v: jnp.isfinite(v) & (bad < 0)
    )
    new_u = tuple(new_leaves[p] for p in _first(where))
    return (new_u, new_state, LossBuffer.record(buf, val)), val


def _loop_steps(loss: Callable, uleaves: tuple, state: OptState, buf: jax.Array, batches: Any,
                lo: jax.Array, hi: jax.Array, treedef: Any, where: tuple, splatted: bool) -> tuple:
    """Steps `lo` to `hi` of an epoch in one compiled call: `_epoch_step` in a
    loop over batches stacked on a leading axis and held on the device. The
    bounds are data, so any chunking of the epoch reuses one program.
    Returns the carry and the sum of these steps' losses."""

    def body(i: jax.Array, carry: tuple) -> tuple:
        batch = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), batches)
        inner, val = _epoch_step(loss, *carry[0], batch, treedef, where, splatted)
        return inner, carry[1] + val.astype(carry[1].dtype)

    return jax.lax.fori_loop(lo, hi, body, ((uleaves, state, buf), jnp.zeros((), buf.dtype)))


def _single_step(loss: Callable, leaves: tuple, state: OptState, batch: Any, treedef: Any, splatted: bool) -> tuple:
    val, new_state, new_leaves = _grad_step(loss, list(leaves), state, batch, treedef, splatted, jnp.isfinite)
    return val, new_state, tuple(new_leaves)


class Steps:
    """The compiled steps for one loss function, by kind and model structure:

    - `"single"`: `trainstep_`'s step, `(leaves, state, batch) -> (loss, state, leaves)`;
    - `"epoch"`: one item of an epoch, on the unique arrays, with the loss buffer;
    - `"loop"`: a range of stacked items in one call (a fused epoch).
    """

    def __init__(self, loss: Callable) -> None:
        self.loss = loss
        self.jitted: dict[tuple, Any] = {}

    def get(self, kind: str, treedef: Any, where: tuple, splatted: bool) -> Any:
        """The jitted step of this kind for one model structure: the static
        parts are bound here once, so a call hashes no static arguments."""
        key = (kind, treedef, where, splatted)
        fn = self.jitted.get(key)
        if fn is None:
            if kind == "single":
                fn = jax.jit(functools.partial(_single_step, self.loss, treedef=treedef, splatted=splatted))
            else:
                body = _epoch_step if kind == "epoch" else _loop_steps
                fn = jax.jit(
                    functools.partial(body, self.loss, treedef=treedef, where=where, splatted=splatted),
                    donate_argnums=(0, 1, 2),
                )
            self.jitted[key] = fn
        return fn

    def cache_size(self, kind: str) -> int:
        """How many programs of this kind were compiled (for tests)."""
        return sum(f._cache_size() for k, f in self.jitted.items() if k[0] == kind)


_CACHE: FnCache[Steps] = FnCache(Steps, size=64)


def steps_for(loss: Callable, fn: str) -> Steps:
    """The compiled steps of `loss`, shared by every function that computes the same."""
    if not callable(loss):
        raise TypeError(f"{fn}: the first argument must be the loss function loss(model, x, y), got {loss!r}")
    return _CACHE.get(loss)
