"""`train_`, `train`, `trainstep_`: Flux's `train!` as compiled steps.

The step is one jitted function of the model's arrays, the optimiser state
and a batch (`_step.py`), cached by what the loss function *is* (its code,
closure and the globals it reads; `_fncache.py`), so the fresh lambda of
`fl.train_(lambda m, x, y: ..., ...)` in every epoch reuses one compiled
program. An epoch (`_epoch.py`) never waits for the device: a non-finite
loss disables the remaining updates on the device, and the host finds out
once, at the end of the epoch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import jax
import numpy as np

from ._epoch import NonFiniteLoss, run_epoch
from ._step import check_call, splat, steps_for
from ._tree import tracing
from ._walk import set_leaves_
from .optimise.state import OptState, assign_, rebuilt, whole_state

__all__ = ["train_", "train", "trainstep_", "NonFiniteLoss"]


def _epoch(loss: Callable, model: Any, data: Iterable, state: OptState, fn: str, fuse: bool, progress: bool) -> Any:
    if tracing():
        raise RuntimeError(
            f"fl.{fn} runs whole epochs and cannot be called inside jax.jit; "
            "compile a step of your own instead (WALKTHROUGH 8b)"
        )
    state = whole_state(state, fn)
    return run_epoch(steps_for(loss, fn), loss, model, data, state, fn, fuse, progress)


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
        fuse: run the whole epoch as one compiled loop (a `lax.fori_loop`
            over the stacked batches, its bounds data) when the items
            can be stacked (a `fl.DataLoader`, or a list of items of one
            shape). Same results; far less per-step overhead. The stacked
            epoch must fit in device memory (lists over 1 GiB are not fused).
        progress: show a tqdm bar with completed steps and the running loss.

    Returns:
        The loss of every item, as a numpy array.

    Examples:
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
    leaves, st, losses, err = _epoch(loss, model, data, state, "train_", fuse, progress)
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

    Examples:
        >>> import numpy as np, fluxlike as fl
        >>> model = fl.Dense(1, 1)
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> data = [(np.ones((4, 1), "float32"), np.zeros((4, 1), "float32"))]
        >>> new, state2, losses = fl.train(lambda m, x, y: fl.losses.mse(m(x), y), model, data, state)
        >>> new is model, bool((new.weight != model.weight).all())
        (False, True)
    """
    leaves, st, losses, err = _epoch(loss, model, data, state, "train", fuse, progress)
    if err is not None:
        raise err
    _, treedef = jax.tree.flatten(model)
    return jax.tree.unflatten(treedef, leaves), st if st is not state else rebuilt(state), losses


def trainstep_(loss: Callable, model: Any, batch: Any, state: OptState) -> jax.Array:
    """One compiled training step in place, for loops of one's own; returns
    the loss (a device scalar: reading it waits for the step).

    The batch is splatted if it is a plain tuple, as in `train_`. If the loss
    is not finite the update is skipped (model and state unchanged) and the
    returned loss shows it.

    Examples:
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
    state = whole_state(state, "trainstep_")
    steps = steps_for(loss, "trainstep_")
    check_call(loss, batch, 0, "trainstep_")
    leaves, treedef = jax.tree.flatten(model)
    val, st, new = steps.get("single", treedef, (), splat(batch))(tuple(leaves), state, batch)
    assign_(state, st)
    set_leaves_(model, list(new))
    return val
