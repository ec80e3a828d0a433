"""`train_`, `train`, `trainstep_`: Flux's `train!` as compiled steps.

The step is one jitted function of the model's arrays, the optimiser state
and a batch. It is cached by what the loss function *is* (its code, closure
and the globals it reads), not by the function object, so the fresh lambda
of `fl.train_(lambda m, x, y: ..., ...)` in every epoch reuses one compiled
program. The epoch loop never waits for the device: a non-finite loss
disables the remaining updates on the device, and the host finds out once,
at the end of the epoch.
"""

from __future__ import annotations

import collections
import time
import functools
import types
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from ._tree import tracing
from .gradient import withgradient
from ._walk import set_leaves_
from .optimise.rule import select
from .optimise.state import OptState, _check_state, _make, _update, assign_

__all__ = ["train_", "train", "trainstep_"]


# ---------------------------------------------------------------------------
# what a loss function is


def _ident(v: Any, depth: int = 0) -> Any:
    if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
        return (type(v), v)
    if isinstance(v, types.FunctionType) and depth < 3:
        return _fn_key(v, depth + 1)
    return ("id", id(v))


def _fn_key(f: Callable, depth: int = 0) -> Any:
    """A hashable key equal for two functions that compute the same thing:
    same code, same closure values, same globals read, same defaults."""
    if isinstance(f, functools.partial):
        return ("partial", _ident(f.func, depth), tuple(_ident(a, depth) for a in f.args),
                tuple(sorted((k, _ident(v, depth)) for k, v in f.keywords.items())))
    if not isinstance(f, types.FunctionType):
        return ("id", id(f))
    code = f.__code__
    cells = tuple(_ident(c.cell_contents, depth) for c in f.__closure__ or ())
    g = f.__globals__
    globs = tuple((n, _ident(g[n], depth)) for n in code.co_names if n in g)
    defaults = tuple(_ident(d, depth) for d in f.__defaults__ or ())
    kwdefaults = tuple(sorted((k, _ident(v, depth)) for k, v in (f.__kwdefaults__ or {}).items()))
    return (code, cells, globs, defaults, kwdefaults)


def _referents(f: Callable) -> tuple:
    """Objects whose ids the key uses, kept alive so ids are not reused."""
    out: list[Any] = [f]
    if isinstance(f, types.FunctionType):
        out += [f.__globals__.get(n) for n in f.__code__.co_names]
    return tuple(out)


class _Steps:
    """The compiled steps for one loss function, and its references."""

    def __init__(self, loss: Callable) -> None:
        self.refs = _referents(loss)
        self.loss = loss
        self.jitted: dict[tuple, Any] = {}

    def get(self, kind: str, treedef: Any, where: tuple, splat: bool) -> Any:
        """The jitted step of this kind for one model structure: the static
        parts are bound here once, so a call hashes no static arguments."""
        key = (kind, treedef, where, splat)
        fn = self.jitted.get(key)
        if fn is None:
            if kind == "single":
                fn = jax.jit(functools.partial(_single_step, self.loss, treedef=treedef, splat=splat))
            else:
                body = _epoch_step if kind == "epoch" else _loop_steps
                fn = jax.jit(
                    functools.partial(body, self.loss, treedef=treedef, where=where, splat=splat),
                    donate_argnums=(0, 1, 2),
                )
            fn = self.jitted[key] = fn
        return fn

    def cache_size(self, kind: str) -> int:
        """How many programs of this kind were compiled (for tests)."""
        return sum(f._cache_size() for k, f in self.jitted.items() if k[0] == kind)


_CACHE: collections.OrderedDict[Any, _Steps] = collections.OrderedDict()
_CACHE_SIZE = 64


def _steps(loss: Callable) -> _Steps:
    if not callable(loss):
        raise TypeError(f"train_: the first argument must be the loss function loss(model, x, y), got {loss!r}")
    key = _fn_key(loss)
    try:
        hit = _CACHE[key]
        _CACHE.move_to_end(key)
        return hit
    except TypeError:  # unhashable key: compile per function object
        return _Steps(loss)
    except KeyError:
        pass
    steps = _CACHE[key] = _Steps(loss)
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return steps


# ---------------------------------------------------------------------------
# the step


def _call(loss: Callable, m: Any, batch: Any, splat: bool) -> Any:
    return loss(m, *batch) if splat else loss(m, batch)


def _grad_step(loss: Callable, leaves: list, state: OptState, batch: Any, treedef: Any, splat: bool, ok: Any) -> tuple:
    """`(loss, new_state, new_leaves)`; `ok(val)` says whether to update."""
    model = jax.tree.unflatten(treedef, leaves)
    val, grads = withgradient(lambda m: _call(loss, m, batch, splat), model)
    if isinstance(val, (tuple, dict)):
        val = val[0] if isinstance(val, tuple) else val["loss"]
    go = ok(val)
    new_state, new_model = _update(state, model, grads[0], go)
    if state._spec.kind != "rule":  # optax keeps counts of its own: restore them all
        new_state = jax.tree.map(lambda old, new: select(go, new, old), state, new_state)
    new_leaves = jax.tree.leaves(new_model)
    # the rule kept the parameters of a skipped step; layer state (BatchNorm
    # statistics, Dropout keys) is restored here
    ruled = _ruled(state._spec)
    new_leaves = [n if p in ruled else select(go, n, o) for p, (n, o) in enumerate(zip(new_leaves, leaves))]
    return val, new_state, new_leaves


@functools.lru_cache(maxsize=64)
def _ruled(spec: Any) -> frozenset:
    """The model positions whose arrays the optimiser updates."""
    return frozenset(p for idx in spec.index for p in idx)


def _epoch_step(
    loss: Callable, uleaves: tuple, state: OptState, buf: jax.Array,
    batch: Any, treedef: Any, where: tuple, splat: bool,
) -> tuple:
    """One step of an epoch on the unique arrays of the model.

    `buf` holds the losses, then three counters (one array crossing the
    call instead of two): this item's index, the first non-finite item or
    -1, and the index of the item in `buf[0]`. After a non-finite loss every
    later step is a no-op, so the epoch ends with the model as it was before
    that item. (Counters in the float buffer are exact up to 2^24 items.)
    """
    leaves = [uleaves[j] for j in where]
    cap = buf.shape[0] - 3
    i, bad, base = (buf[cap + k].astype(jnp.int32) for k in range(3))
    val, new_state, new_leaves = _grad_step(
        loss, leaves, state, batch, treedef, splat, lambda v: jnp.isfinite(v) & (bad < 0)
    )
    new_u = tuple(new_leaves[p] for p in _first(where))
    bad = jnp.where((bad < 0) & ~jnp.isfinite(val), i, bad)
    tail = jnp.stack([i + 1, bad]).astype(buf.dtype)
    buf = buf.at[i - base].set(val.astype(buf.dtype)).at[cap:cap + 2].set(tail)
    return (new_u, new_state, buf), val


def _loop_steps(
    loss: Callable, uleaves: tuple, state: OptState, buf: jax.Array, batches: Any,
    lo: jax.Array, hi: jax.Array, treedef: Any, where: tuple, splat: bool,
) -> tuple:
    """Steps `lo` to `hi` of an epoch in one compiled call: `_epoch_step` in a
    loop over batches stacked on a leading axis and held on the device. The
    bounds are data, so any chunking of the epoch reuses one program.
    Returns the carry and the sum of these steps' losses."""

    def body(i: jax.Array, carry: tuple) -> tuple:
        batch = jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, i, keepdims=False), batches)
        inner, val = _epoch_step(loss, *carry[0], batch, treedef, where, splat)
        return inner, carry[1] + val.astype(carry[1].dtype)

    return jax.lax.fori_loop(lo, hi, body, ((uleaves, state, buf), jnp.zeros((), buf.dtype)))


@functools.lru_cache(maxsize=256)
def _first(where: tuple) -> tuple:
    """For each unique array, the first model position that holds it."""
    out: dict[int, int] = {}
    for p, j in enumerate(where):
        out.setdefault(j, p)
    return tuple(out[j] for j in range(len(out)))


def _single_step(loss: Callable, leaves: tuple, state: OptState, batch: Any, treedef: Any, splat: bool) -> tuple:
    val, new_state, new_leaves = _grad_step(loss, list(leaves), state, batch, treedef, splat, jnp.isfinite)
    return val, new_state, tuple(new_leaves)


# ---------------------------------------------------------------------------
# public API


def _unique(leaves: list) -> tuple[list, tuple]:
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

_FUSE_BYTES = 2**30  # stack at most this much data on the device at once


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
    first = data[0]
    leaves0, treedef = jax.tree.flatten(first)
    if not leaves0 or not all(hasattr(l, "shape") and hasattr(l, "dtype") for l in leaves0):
        return None
    sig = [(l.shape, l.dtype) for l in leaves0]
    nbytes = sum(l.nbytes for l in leaves0) * len(data)
    if nbytes > _FUSE_BYTES:
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
    stack = lambda c: jnp.stack(c) if isinstance(c[0], jax.Array) else np.stack(c)
    return jax.tree.unflatten(treedef, [stack(c) for c in columns]), []


def _splat(d: Any) -> bool:
    return type(d) is tuple


class NonFiniteLoss(FloatingPointError):
    """A loss was NaN or infinite; training stopped before that item."""

    def __init__(self, msg: str, item: int, losses: np.ndarray) -> None:
        super().__init__(msg)
        self.item, self.losses = item, losses


class _Bar:
    """tqdm's bar showing completed steps and the running loss, or nothing.
    Reading a loss waits only for a step that was dispatched a while ago."""

    def __init__(self, on: bool, total: int | None, fn: str) -> None:
        self.bar = None
        self.pending: list = []
        if on:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                raise ImportError(f"{fn}(progress=True) needs tqdm: pip install tqdm") from None
            self.bar = tqdm(total=total, desc=fn, unit="step", leave=False)

    def update(self, steps: int, loss: Any = None) -> None:
        if self.bar is None:
            return
        if loss is not None:
            self.pending.append(loss)
        if len(self.pending) > 1:  # show the previous report's loss: it is ready by now
            self.bar.set_postfix(loss=f"{float(self.pending.pop(0)):.4g}", refresh=False)
        self.bar.update(steps)

    def close(self) -> None:
        if self.bar is not None:
            if self.pending:
                self.bar.set_postfix(loss=f"{float(self.pending[-1]):.4g}", refresh=False)
            self.bar.close()


def _run_epoch(
    loss: Callable, model: Any, data: Iterable, state: OptState, fn: str, fuse: bool, progress: bool,
) -> tuple[list, OptState, np.ndarray, Any]:
    if tracing():
        raise RuntimeError(
            f"fl.{fn} runs whole epochs and cannot be called inside jax.jit; "
            "compile a step of your own instead (WALKTHROUGH 8b)"
        )
    state = _check_state(state, fn)
    steps = _steps(loss)
    leaves, treedef = jax.tree.flatten(model)
    uniq, where = _unique(leaves)
    # work on copies: donation then never invalidates arrays the caller holds
    carry = _copy((tuple(uniq), state))
    try:
        n = len(data)  # type: ignore[arg-type]
    except TypeError:
        n = None
    dtype = jnp.result_type(float)
    cap = n if n else 1024
    if n is not None and n >= 2**24:
        raise ValueError(f"{fn}: an epoch of {n} items is longer than 2^24; split the data into shorter epochs")
    carry = (*carry, jnp.zeros(cap + 3, dtype).at[cap + 1].set(-1))
    buffers: list = []
    bar = _Bar(progress, n, fn)
    fused = _stackable(data) if fuse and n else None
    count = 0
    if fused is not None:
        batches, rest = fused
        lead = jax.tree.leaves(batches)[0].shape[0]
        loop = steps.get("loop", treedef, where, _splat(batches))
        if not progress:
            carry, _ = loop(*carry, batches, np.int32(0), np.int32(lead))
        else:  # chunks of about a quarter of a second, whatever a step costs
            batches = jax.device_put(batches)
            lo, chunk, t0 = 0, max(1, lead // 200), time.perf_counter()
            while lo < lead:
                hi = min(lead, lo + chunk)
                carry, total = loop(*carry, batches, np.int32(lo), np.int32(hi))
                bar.update(hi - lo, total / (hi - lo))
                lo, now = hi, time.perf_counter()
                chunk = max(1, min(lead, int(chunk * 0.25 / max(now - t0, 1e-4))))
                t0 = now
        for d in rest:
            carry = steps.get("epoch", treedef, where, _splat(d))(*carry, d)[0]
        count = lead + len(rest)
    else:
        every = max(1, (n or 1000) // 50)
        step, kind = None, None
        for d in data:
            if type(d) is not kind:
                kind = type(d)
                step = steps.get("epoch", treedef, where, kind is tuple)
            if count and count % cap == 0:
                if n is not None:
                    raise RuntimeError(f"{fn}: data yielded more items than its len() = {n}")
                old = carry[2]
                buffers.append(old)
                fresh = jnp.zeros(cap + 3, dtype).at[cap:cap + 2].set(old[cap:cap + 2]).at[cap + 2].set(count)
                carry = (*carry[:2], fresh)
            carry, val = step(*carry, d)
            count += 1
            if count % every == 0:
                bar.update(every, val)
    bar.close()
    uniq, st, buf = carry
    buffers.append(buf)
    if count == 0:
        return leaves, state, np.zeros(0, dtype), None
    host = jax.device_get(buffers)
    bad = int(host[-1][cap + 1])
    losses = np.concatenate([b[:cap] for b in host])[:count]
    new_leaves = [uniq[j] for j in where]
    if bad >= 0:
        return new_leaves, st, losses, NonFiniteLoss(
            f"{fn}: the loss is {losses[bad]} on data item {bad} (0-based), stopping training; "
            "the model and optimiser state are as they were before that item",
            bad, losses[:bad + 1],
        )
    return new_leaves, st, losses, None


def train_(
    loss: Callable, model: Any, data: Iterable, state: OptState, *, fuse: bool = True, progress: bool = False
) -> np.ndarray:
    """One epoch of training, in place, like Flux's `train!`; returns the losses.

    For each item `d` of `data`, computes the gradient of `loss(model, *d)`
    (when `d` is a plain tuple) or `loss(model, d)` (anything else: arrays,
    dicts, NamedTuples) and updates `model` and `state` with it. The step is
    compiled once and reused across epochs, even for a fresh lambda each time.
    A non-finite loss stops training with a `FloatingPointError` naming the
    item; model and state are then as they were before it.

    Args:
        loss: `loss(model, *item)`, returning a scalar (or a tuple/dict whose
            first element / "loss" is the scalar).
        model: the model; its arrays are rebound in place.
        data: an iterable of items, e.g. a `fl.DataLoader` or `list(zip(X, Y))`.
        state: from `fl.setup(rule, model)`; rebound in place.
        fuse: run the whole epoch as one compiled `lax.scan` when the items
            can be stacked (a `fl.DataLoader`, or a list of items of one
            shape). Same results; far less per-step overhead. The stacked
            epoch must fit in device memory (lists over 1 GiB are not fused).
        progress: show a tqdm bar with completed steps and the running loss.

    Returns:
        The loss of every item, as a numpy array.

    Example:
        >>> import numpy as np, jax.numpy as jnp, fluxlike as fl
        >>> model = fl.Dense(1, 1)
        >>> x = np.linspace(-1, 1, 64, dtype="float32")[:, None]
        >>> data = fl.DataLoader((x, 3 * x), batchsize=16)
        >>> state = fl.setup(fl.Adam(0.1), model)
        >>> for epoch in range(30):
        ...     losses = fl.train_(lambda m, x, y: fl.losses.mse(m(x), y), model, data, state)
        >>> losses.shape, bool(losses.mean() < 0.01)
        ((4,), True)
    """
    leaves, st, losses, err = _run_epoch(loss, model, data, state, "train_", fuse, progress)
    if st is not state:
        assign_(state, st)
        set_leaves_(model, leaves)
    if err is not None:
        raise err
    return losses


def train(
    loss: Callable, model: Any, data: Iterable, state: OptState, *, fuse: bool = True, progress: bool = False
) -> tuple[Any, OptState, np.ndarray]:
    """`train_` without changing its inputs: returns `(model, state, losses)`.

    Example:
        >>> import numpy as np, fluxlike as fl
        >>> model = fl.Dense(1, 1)
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> data = [(np.ones((4, 1), "float32"), np.zeros((4, 1), "float32"))]
        >>> new, state2, losses = fl.train(lambda m, x, y: fl.losses.mse(m(x), y), model, data, state)
        >>> new is model, bool((new.weight != model.weight).all())
        (False, True)
    """
    leaves, st, losses, err = _run_epoch(loss, model, data, state, "train", fuse, progress)
    if err is not None:
        raise err
    _, treedef = jax.tree.flatten(model)
    return jax.tree.unflatten(treedef, leaves), st if st is not state else _make(
        state._states, state._hyper, state._counts, state._spec), losses


def trainstep_(loss: Callable, model: Any, batch: Any, state: OptState) -> jax.Array:
    """One compiled training step in place, for loops of one's own; returns
    the loss (a device scalar: reading it waits for the step).

    The batch is splatted if it is a plain tuple, as in `train_`. If the loss
    is not finite the update is skipped (model and state unchanged) and the
    returned loss shows it.

    Example:
        >>> import numpy as np, fluxlike as fl
        >>> model = fl.Dense(1, 1)
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> batch = (np.ones((4, 1), "float32"), np.zeros((4, 1), "float32"))
        >>> l1 = fl.trainstep_(lambda m, x, y: fl.losses.mse(m(x), y), model, batch, state)
        >>> l2 = fl.trainstep_(lambda m, x, y: fl.losses.mse(m(x), y), model, batch, state)
        >>> bool(l2 < l1)
        True
    """
    if tracing():
        raise RuntimeError("fl.trainstep_ changes the model in place and cannot run inside jax.jit; use fl.withgradient and fl.update there")
    state = _check_state(state, "trainstep_")
    steps = _steps(loss)
    leaves, treedef = jax.tree.flatten(model)
    val, st, new = steps.get("single", treedef, (), _splat(batch))(tuple(leaves), state, batch)
    assign_(state, st)
    set_leaves_(model, list(new))
    return val
