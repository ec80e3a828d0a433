"""One optimiser step on the state tree: `update` (pure, jittable) and `update_` (in place).

`update` gathers the Leafs that have a gradient (summing tied places), hands
them to the state's engine as one `Update`, and writes the new arrays back
to every place of the model. `train_`'s compiled steps use `traced_update`, which
can skip a step inside the engine (every Leaf acts frozen) at no cost.
"""

from __future__ import annotations

from typing import Any

import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np

from .._tree import explicit_spec, reshard_like, tracing
from .._walk import set_leaves_
from ._engine import RuleEngine, Update
from .state import OptState, _Spec, arrays, assign_, engine, rebuilt, spec_of, whole_state

__all__ = ["update", "update_"]

def _grads_like(treedef: Any, grads: Any) -> list:
    try:
        return treedef.flatten_up_to(grads)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "update: the gradient does not have the model's structure. Pass the "
            "gradient of the model itself, e.g. `fl.gradient(lambda m: loss(m(x), y), "
            f"model)[0]`. ({e})"
        ) from None


def _gathered(spec: _Spec, leaves: list, g: list) -> tuple[list, list, list]:
    """The Leafs that have a gradient: their indices, parameters and gradients
    (summed over tied places, in the parameter's dtype)."""
    active, xs, dxs = [], [], []
    for i, idx in enumerate(spec.index):
        gs = [g[p] for p in idx if g[p] is not None]
        if not gs:
            continue  # no gradient: skip this Leaf entirely
        x = jnp.asarray(leaves[idx[0]])
        dx = jnp.asarray(gs[0])
        for more in gs[1:]:
            dx = dx + more
        if tuple(dx.shape) != tuple(x.shape):
            raise ValueError(
                f"update: the gradient at model{spec.paths[i]} has shape {tuple(dx.shape)} "
                f"but the parameter has shape {tuple(x.shape)}"
            )
        active.append(i)
        xs.append(x)
        dxs.append(dx.astype(x.dtype))
    return active, xs, dxs


def _state_placement(engine: Any, states: Any, active: list, xs: list) -> list | None:
    """For each active Leaf, a state array split differently from its
    parameter on an Explicit mesh (ZeRO-1), or None; None when there is none."""
    if not isinstance(engine, RuleEngine):
        return None
    out, any_split = [], False
    for i, x in zip(active, xs):
        ref = next((a for a in jax.tree.leaves(engine.leaf_state(states, i))
                    if getattr(a, "shape", None) == x.shape and explicit_spec(a) != explicit_spec(x)), None)
        out.append(ref)
        any_split |= ref is not None
    return out if any_split else None


def _step(state: OptState, model: Any, grads: Any, collect: bool, ok: Any = None) -> tuple[OptState, Any, Any]:
    """`(new_state, new_model, report)`; `report` is None or, for rules that
    raise on a non-finite norm, `(bad, norm)` vectors over the Leafs. With
    `ok` (a boolean scalar) False, every Leaf behaves as frozen: train_ skips
    a non-finite step this way, inside the rule, where it costs nothing."""
    spec = spec_of(state)
    leaves, treedef = jax.tree.flatten(model)
    if len(leaves) != spec.n:
        raise ValueError(
            f"update: the model has {len(leaves)} arrays but the state was set up for a "
            f"model with {spec.n}; call fl.setup again for this model"
        )
    if grads is None:
        return state, model, None
    g = _grads_like(treedef, grads)
    active, xs, dxs = _gathered(spec, leaves, g)
    if not active:
        return state, model, None
    states, table, counts = arrays(state)
    sel = slice(None) if len(active) == len(spec.index) else np.asarray(active)
    frozen = counts[sel, 1] != 0
    if ok is not None:
        frozen = frozen | ~ok
    params = [leaves[idx[0]] for idx in spec.index]
    placed = _state_placement(spec.engine, states, active, xs)
    if placed:  # ZeRO-1 on an Explicit mesh: the rule runs split as its state is
        xs = [reshard_like(x, ref) if ref is not None else x for x, ref in zip(xs, placed)]
        dxs = [reshard_like(d, ref) if ref is not None else d for d, ref in zip(dxs, placed)]
    u = Update(active, sel, xs, dxs, counts[sel, 0] + 1, frozen, ok, params, collect)
    states, new_xs, report = spec.engine.step(states, table, u)
    if placed:  # the new parameters placed as the old ones were
        new_xs = [reshard_like(xn, leaves[spec.index[i][0]]) if ref is not None else xn
                  for i, xn, ref in zip(active, new_xs, placed)]
    new_leaves = list(leaves)
    for i, xn in zip(active, new_xs):
        for p in spec.index[i]:
            new_leaves[p] = xn
    step = (~frozen).astype(counts.dtype)
    if isinstance(sel, slice):  # every Leaf: one elementwise add, done in place
        counts = counts + jnp.stack([step, jnp.zeros_like(step)], axis=1)
    else:
        counts = counts.at[sel, 0].add(step)
    return rebuilt(state, states, counts=counts), jax.tree.unflatten(treedef, new_leaves), report


def traced_update(state: OptState, model: Any, grads: Any, ok: Any = None) -> tuple[OptState, Any]:
    """One step, pure and traceable (the body of `update` and of train_'s
    step); `ok` False skips it (see `_step`)."""
    new_state, new_model, _ = _step(state, model, grads, False, ok)
    return new_state, new_model


_update_jit = jax.jit(lambda state, model, grads: _step(state, model, grads, True))
# update_'s step when nothing but the model and the state holds their arrays: they are
# donated, so the new arrays reuse their buffers (on XLA:CPU a small-model step costs
# half as much; issue 9)
_update_jit_donating = jax.jit(lambda state, model, grads: _step(state, model, grads, True),
                               donate_argnums=(0, 1))

def _refcounts(arrays: list) -> list[int]:
    return [sys.getrefcount(a) for a in arrays]


def _held_once() -> int:
    """What `_refcounts` reports for an array held by one container and the
    list passed in, measured here rather than assumed (interpreters differ)."""
    holder = {"a": object()}  # any object: a refcount does not depend on the type
    return _refcounts(list(holder.values()))[0]


_HELD_ONCE = _held_once() if hasattr(sys, "getrefcount") else -1


@functools.cache
def _array_type() -> type:
    """The concrete jax array type (jaxlib's ArrayImpl), found on first use:
    making an array at import would start JAX's backend before a multi-host
    script's `jax.distributed.initialize()`."""
    return type(jnp.zeros(()))


def _donatable(state: OptState, leaves: list) -> bool:
    """Whether the arrays of the model (`leaves`, a list made for this call)
    and of the state can be donated: jax arrays, each held by nothing but its
    one place in the model or the state (no tied weights, no reference kept
    by the caller, no snapshot)."""
    held = [*jax.tree.leaves(arrays(state)[0]), arrays(state)[2]]  # no local name holds an array
    array = _array_type()
    ok = lambda xs: all(type(a) is array for a in xs) and max(_refcounts(xs), default=0) <= _HELD_ONCE
    return ok(leaves) and ok(held)


def update(state: OptState, model: Any, grads: Any) -> tuple[OptState, Any]:
    """One optimiser step: `(new_state, new_model)`, leaving the inputs untouched.

    Pure and jittable. A frozen Leaf keeps its parameter and state; a None
    gradient skips its Leaf (state and step count do not advance).

    Args:
        state: from `fl.setup(rule, model)`.
        model: the model.
        grads: the gradient of the model, e.g. `fl.gradient(f, model)[0]`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = {"w": jnp.array([1.0, 2.0])}
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> state, new = fl.update(state, model, {"w": jnp.array([1.0, 1.0])})
        >>> new["w"], model["w"]
        (Array([0.9, 1.9], dtype=float32), Array([1., 2.], dtype=float32))
    """
    state = whole_state(state, "update")
    if tracing():
        return traced_update(state, model, grads)
    if grads is None:
        return state, model
    new_state, new_model, report = _update_jit(state, model, grads)
    engine(state).raise_bad(report)
    return new_state, new_model


def update_(state: OptState, model: Any, grads: Any) -> tuple[OptState, Any]:
    """`update` in place: rebinds the arrays inside `state` and `model` (which
    keep their identity) and returns them. Refuses to run under a trace.

    Tied weights get one new array object at all their places. When nothing
    else holds the old arrays (no `w = model.weight` kept, no snapshot of the
    state), their buffers are reused for the new ones; an array you keep a
    reference to is never touched.

    Args:
        state: from `fl.setup(rule, model)`.
        model: the model (a Module or a dict/list of arrays).
        grads: the gradient of the model.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = fl.Dense(2, 1)
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> grads = fl.gradient(lambda m: m(jnp.ones(2)).sum(), model)
        >>> s2, m2 = fl.update_(state, model, grads[0])
        >>> m2 is model, s2 is state, model.bias
        (True, True, Array([-0.1], dtype=float32))
    """
    state = whole_state(state, "update_")
    if tracing():
        raise RuntimeError(
            "fl.update_ changes its arguments in place and cannot run inside jax.jit or "
            "another transformation. Inside a compiled step use the pure form:\n"
            "    opt_state, model = fl.update(opt_state, model, grads)"
        )
    if grads is None:
        return state, model
    leaves = jax.tree.leaves(model)
    donate = not engine(state).checks and _donatable(state, leaves)
    del leaves
    new_state, new_model, report = (_update_jit_donating if donate else _update_jit)(state, model, grads)
    engine(state).raise_bad(report)
    if new_model is not model:
        new_leaves = jax.tree.leaves(new_model)
        for idx in spec_of(state).index:  # tied weights stay one object
            for p in idx[1:]:
                new_leaves[p] = new_leaves[idx[0]]
        out = set_leaves_(model, new_leaves)
        if out is not model:
            raise TypeError(
                "update_: the model is a tuple or an array, which cannot change in place; "
                "use `state, model = fl.update(state, model, grads)`"
            )
    assign_(state, new_state)
    return state, model


