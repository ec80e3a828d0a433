"""One epoch of training on the device, as `train_` and `train` run it.

Two loops over the same compiled step (`_step.py`):

- fused: when the items stack (a `fl.DataLoader`, or a list of items of one
  structure and shape, under 1 GiB), batches are stacked on a leading axis
  (a list on the host, in one transfer, and kept for the next epoch while
  the list is unchanged), held on the device, and run by one compiled
  `fori_loop` whose bounds are
  data (so `progress=True` runs chunks of about a quarter second through the
  same program, each shown once it has run);
- item by item: anything else (generators, ragged items, `fuse=False`) calls
  the compiled step once per item.

Neither waits on the device between steps: losses and counters travel in a
`LossBuffer`, read once at the end of the epoch.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable, Iterable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._lossbuffer import LossBuffer
from ._step import Steps, check_call, splat
from .optimise.state import OptState

__all__ = ["Epoch", "run_epoch", "unique", "NonFiniteLoss"]

_FUSE_BYTES = 2**30  # stack at most this much data on the device at once


class NonFiniteLoss(FloatingPointError):
    """A loss was NaN or infinite, so training stopped before that item.

    `item` is the item's index in the epoch (0-based) and `losses` the
    losses up to and including it; the model and optimiser state are as they
    were before that item.

    Examples:
        >>> import numpy as np, fluxlike as fl
        >>> model = fl.Dense(1, 1)
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> data = [(np.ones((2, 1), "float32"), np.full((2, 1), y, "float32")) for y in (0.0, np.nan)]
        >>> try:
        ...     fl.train_(lambda m, x, y: fl.losses.mse(m(x), y), model, data, state)
        ... except fl.NonFiniteLoss as e:
        ...     print(e.item, len(e.losses))
        1 2
    """

    def __init__(self, msg: str, item: int, losses: np.ndarray) -> None:
        super().__init__(msg)
        self.item, self.losses = item, losses


class Epoch(NamedTuple):
    """What an epoch left: the model's new leaves, the new state, the losses,
    and the error to raise (a NonFiniteLoss) or None."""

    leaves: list
    state: OptState
    losses: np.ndarray
    error: NonFiniteLoss | None


def unique(leaves: list) -> tuple[list, tuple]:
    """Distinct arrays (tied weights appear once, so donation is safe) and,
    for each model position, the index of its array among them."""
    seen: dict[int, int] = {}
    uniq: list = []
    where = []
    for leaf in leaves:
        j = seen.get(id(leaf))
        if j is None:
            j = seen[id(leaf)] = len(uniq)
            uniq.append(leaf)
        where.append(j)
    return uniq, tuple(where)


_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def _stackable(data: Any) -> tuple[Any, list] | None:
    """The epoch as (batches stacked on axis 0, leftover items), or None when
    the items cannot be stacked (different structures or shapes, not arrays,
    no length)."""
    if hasattr(data, "stacked"):
        try:
            batches, rest = data.stacked()
        except (TypeError, ValueError):
            return None
        return batches, ([] if rest is None else [rest])
    if not isinstance(data, (list, tuple)) or len(data) < 2:
        return None
    hit = _STACKED.get(data)
    if hit is not None:
        return hit, []
    first = data[0]
    leaves0, treedef = jax.tree.flatten(first)
    if not leaves0 or not all(hasattr(l, "shape") and hasattr(l, "dtype") for l in leaves0):
        return None
    sig = [(l.shape, l.dtype) for l in leaves0]
    if sum(l.nbytes for l in leaves0) * len(data) > _FUSE_BYTES:
        return None
    columns = [[l] for l in leaves0]
    for d in data[1:]:
        if type(d) is not type(first):
            return None
        leaves, td = jax.tree.flatten(d)
        if td != treedef or [(getattr(l, "shape", None), getattr(l, "dtype", None)) for l in leaves] != sig:
            return None
        for c, l in zip(columns, leaves):
            c.append(l)
    stacked = jax.tree.unflatten(treedef, [_stack(c) for c in columns])
    if all(isinstance(l, jax.Array) for l in leaves0) and isinstance(first, tuple):
        _STACKED.put(data, stacked)  # immutable items: the stacked epoch stays valid while the list does
    return stacked, []


def _stack(column: list) -> Any:
    """One array from a column of same-shape arrays, stacked on the host (a
    device-side stack of N operands compiles an N-operand program: seconds and
    hundreds of MB for an epoch) and moved to the first item's device once.
    The result is committed to that device only when the items are: jit
    compiles committed and uncommitted arguments as different programs, so
    a list of ordinary arrays must give what a DataLoader gives."""
    if not isinstance(column[0], jax.Array):
        return np.stack(column)
    devices = column[0].devices()
    if len(devices) > 1:  # sharded items: stack where they live
        return jnp.stack(column)
    host = np.stack(jax.device_get(column))
    return jax.device_put(host, next(iter(devices))) if column[0].committed else jnp.asarray(host)


class _StackedLists:
    """The stacked epochs of the last few lists of device arrays, so that an
    epoch over a list that has not changed stacks nothing. A list is the same
    when it is the same object holding the same items (tuples of immutable
    jax.Arrays); the entry holds the items, so their ids cannot be reused."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self.entries: list[tuple[Any, list, Any]] = []  # (list, its items, stacked), newest last

    def get(self, data: Any) -> Any:
        for k, (obj, items, stacked) in enumerate(self.entries):
            if obj is data and len(data) == len(items) and all(a is b for a, b in zip(data, items)):
                self.entries.append(self.entries.pop(k))
                return stacked
        return None

    def put(self, data: Any, stacked: Any) -> None:
        self.entries = [e for e in self.entries if e[0] is not data][-(self.size - 1):] if self.size > 1 else []
        self.entries.append((data, list(data), stacked))


_STACKED = _StackedLists()


class _Bar:
    """tqdm's bar showing completed steps and the running loss, or nothing.
    A loss given as a float is shown at once; one given as an array is shown
    at the next update, so reading it waits only for a step dispatched a
    while ago."""

    def __init__(self, on: bool, total: int | None, fn: str) -> None:
        self.bar = None
        self.pending: list = []
        if on:
            try:
                from tqdm.auto import tqdm  # optional dependency: imported only when asked for
            except ImportError:
                raise ImportError(f"{fn}(progress=True) needs tqdm: pip install tqdm") from None
            self.bar = tqdm(total=total, desc=fn, unit="step", leave=False)

    def update(self, steps: int, loss: Any = None) -> None:
        if self.bar is None:
            return
        if isinstance(loss, float):  # already read from the device: show it now
            self.pending = [loss]
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        elif loss is not None:
            self.pending.append(loss)
            if len(self.pending) > 1:  # show the previous report's loss: it is ready by now
                self.bar.set_postfix(loss=f"{float(self.pending.pop(0)):.4g}", refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            if self.pending:
                self.bar.set_postfix(loss=f"{float(self.pending[-1]):.4g}", refresh=False)
            self.bar.close()


class _Run(NamedTuple):
    """The static parts of one epoch's calls."""

    steps: Steps
    loss: Callable
    treedef: Any
    where: tuple
    fn: str


def _fused(run: _Run, carry: tuple, batches: Any, rest: list, bar: _Bar) -> tuple[tuple, int]:
    """The stacked batches in one compiled loop (chunked by time when a bar is
    shown), then any leftover item one step at a time: `(carry, items)`."""
    lead = jax.tree.leaves(batches)[0].shape[0]
    check_call(run.loss, batches, 0, run.fn)
    loop = run.steps.get("loop", run.treedef, run.where, splat(batches))
    if bar.bar is None:
        carry, _ = loop(*carry, batches, np.int32(0), np.int32(lead))
    else:  # chunks of about a quarter of a second, whatever a step costs
        carry = _chunked(loop, carry, jax.device_put(batches), lead, bar)
    for k, d in enumerate(rest):
        check_call(run.loss, d, lead + k, run.fn)
        carry = run.steps.get("epoch", run.treedef, run.where, splat(d))(*carry, d)[0]
    return carry, lead + len(rest)


def _chunked(loop: Callable, carry: tuple, batches: Any, lead: int, bar: _Bar) -> tuple:
    """Run `loop` over `batches` in chunks, showing each chunk on the bar once
    it has run. Dispatch returns before the device is done, so a chunk is
    timed from the end of the one before it to its own end, read by waiting
    on its loss while the next chunk is already queued: the device never
    idles, and the bar never runs ahead of it."""
    lo, chunk, pending, done_at = 0, max(1, lead // 200), None, None
    while lo < lead or pending is not None:
        queued = None
        if lo < lead:
            hi = min(lead, lo + chunk)
            carry, total = loop(*carry, batches, np.int32(lo), np.int32(hi))
            queued, lo = (hi - lo, total), hi
        if pending is not None:
            n, total = pending
            mean = float(total) / n  # waits for the chunk
            now = time.perf_counter()
            if done_at is not None:  # the device ran n steps since the last chunk ended
                chunk = max(1, min(lead, int(n * 0.25 / max(now - done_at, 1e-4))))
            done_at = now
            bar.update(n, mean)
        pending = queued
    return carry


def _itemwise(run: _Run, carry: tuple, data: Iterable, n: int | None, bar: _Bar, full: list) -> tuple[tuple, int]:
    """One compiled call per item: `(carry, items)`. Buffers that fill up (an
    epoch of unknown length) are appended to `full`."""
    every = max(1, (n or 1000) // 50)
    cap = LossBuffer.capacity(carry[2])
    step, kind, count = None, None, 0
    for d in data:
        form = (type(d), len(d)) if splat(d) else type(d)
        if form != kind:  # checked again only when the items change form
            check_call(run.loss, d, count, run.fn)
            kind = form
            step = run.steps.get("epoch", run.treedef, run.where, splat(d))
        if count and count % cap == 0:
            if n is not None:
                raise RuntimeError(f"{run.fn}: data yielded more items than its len() = {n}")
            full.append(carry[2])
            carry = (*carry[:2], LossBuffer.following(carry[2]))
        carry, val = step(*carry, d)
        count += 1
        if count % every == 0:
            bar.update(every, val)
    return carry, count


def _length(data: Any, fn: str) -> int | None:
    if isinstance(data, (str, bytes)) or not (hasattr(data, "__iter__") or hasattr(data, "__getitem__")):
        raise TypeError(
            f"{fn}: data must be an iterable of items, such as fl.DataLoader((X, Y), batchsize=32) "
            f"or list(zip(X, Y)); got {type(data).__name__} {data!r:.60}"
        )
    try:
        n = len(data)  # type: ignore[arg-type]
    except TypeError:
        return None
    if n >= LossBuffer.MAX_ITEMS:
        raise ValueError(f"{fn}: an epoch of {n} items is longer than 2^24; split the data into shorter epochs")
    return n


def _spread(x: Any) -> bool:
    """Whether an array lives on several devices (a mesh)."""
    return isinstance(x, jax.Array) and len(x.sharding.device_set) > 1


def _check_batches(leaves: list, batches: Any, data: Any, fn: str) -> None:
    """A model on a mesh fed batches that are not split over it: every device
    would compute the whole batch (one process: a warning) or each process
    its own different batch, silently diverging (several processes: an error)."""
    if not any(_spread(l) for l in leaves):
        return
    if batches is None:
        if not isinstance(data, (list, tuple)) or not data:
            return
        batches = data[0]
    arrays = [a for a in jax.tree.leaves(batches) if hasattr(a, "shape")]
    if not arrays or any(_spread(a) for a in arrays):
        return
    msg = (f"{fn}: the model is placed on a mesh but the batches are not split over it, so every device "
           "computes every whole batch (no data parallelism); pass fl.DataLoader(data, batchsize=B, "
           "mesh=mesh), or batches placed with jax.device_put(x, NamedSharding(mesh, P('data')))")
    if jax.process_count() > 1:
        raise ValueError(msg + "; with several processes each would train on its own batches and the "
                         "replicas would diverge")
    warnings.warn(msg, stacklevel=4)


def run_epoch(steps: Steps, loss: Callable, model: Any, data: Iterable, state: OptState,
              fn: str, fuse: bool, progress: bool) -> Epoch:
    """Train one epoch on copies of the model's and state's arrays (donation
    then never invalidates arrays the caller holds)."""
    n = _length(data, fn)
    leaves, treedef = jax.tree.flatten(model)
    uniq, where = unique(leaves)
    run = _Run(steps, loss, treedef, where, fn)
    cap = n if n else 1024
    carry = (*_copy((tuple(uniq), state)), LossBuffer.new(cap, jnp.result_type(float)))
    bar = _Bar(progress, n, fn)
    full: list = []
    fused = _stackable(data) if fuse and n else None
    _check_batches(leaves, fused[0] if fused is not None else None, data, fn)
    if fused is not None:
        carry, count = _fused(run, carry, *fused, bar)
    else:
        carry, count = _itemwise(run, carry, data, n, bar, full)
    bar.close()
    if count == 0:
        return Epoch(leaves, state, np.zeros(0, jnp.result_type(float)), None)
    uniq, new_state, buf = carry
    losses, bad = LossBuffer.read([*full, buf], count)
    new_leaves = [uniq[j] for j in where]
    err = None
    if bad >= 0:
        err = NonFiniteLoss(
            f"{fn}: the loss is {losses[bad]} on data item {bad} (0-based), stopping training; "
            "the model and optimiser state are as they were before that item",
            bad, losses[:bad + 1],
        )
    return Epoch(new_leaves, new_state, losses, err)
