"""Everything done to a state tree after `setup`: `adjust`, `freeze`, `thaw`.

Hyperparameters and frozen flags are arrays inside the state, so these
change data: a jitted step that takes the state as an argument never
recompiles. The `_` forms rebind the arrays of the given tree in place; the
plain forms return a new whole state tree and leave the input untouched.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._tree import tracing
from .optax_rule import adjust_optax, learning_rate_optax
from .rule import Rule
from .state import Leaf, OptState, StateView, _indices, _make

__all__ = ["adjust", "adjust_", "freeze", "freeze_", "thaw", "thaw_", "learning_rate"]


def _target(tree: Any, fn: str) -> tuple[OptState, list[int]]:
    if isinstance(tree, OptState):
        return tree, list(range(len(tree._spec.index)))
    if isinstance(tree, StateView):
        return tree.root, list(_indices(tree.node))
    if isinstance(tree, Leaf):
        return tree.root, [tree.i]
    raise TypeError(
        f"{fn}: expected the state tree from fl.setup or a part of it (state.layers[0]), "
        f"got {type(tree).__name__}"
    )


def _validated(rule: Rule, name: str, value: Any, fn: str) -> Any:
    """`value` checked the way the rule's constructor checks it, as table
    entries (a tuple for pairs; NaN to bring back the rule's own schedule)."""
    if name in rule.static:
        raise ValueError(
            f"{fn}: {type(rule).__name__}'s {name} is fixed when the state is set up (it changes the "
            f"compiled step); call fl.setup again with {type(rule).__name__}(..., {name}={value!r})"
        )
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        if getattr(rule, name) is value:
            return math.nan  # back to the schedule given at setup
        raise ValueError(
            f"{fn}: {name}={value!r} is a schedule; schedules are part of the compiled step and are "
            "fixed at setup. Give a number to replace the schedule by a constant (no recompilation), "
            f"or call fl.setup again with {type(rule).__name__}({name}=schedule)"
        )
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{fn}: {name} is a traced value; adjust takes numbers, outside jax.jit. For a rate "
            "that changes inside a compiled step, give an optax schedule as eta"
        )
    kwargs = {n: getattr(rule, n) for n in (*rule.hyper, *rule.static)}
    kwargs[name] = value
    new = type(rule)(**kwargs)
    return getattr(new, name)


def _assignments(root: OptState, rows: list[int], eta: Any, hyper: dict, fn: str) -> tuple[list, list, list]:
    if eta is not None:
        hyper = {"eta": eta, **hyper}
    if not hyper:
        raise TypeError(
            f"{fn}: give a learning rate, {fn}(state, 0.01), or hyperparameters by name, "
            f"{fn}(state, beta=(0.8, 0.99))"
        )
    spec = root._spec
    r_idx, c_idx, vals = [], [], []
    found = {n: False for n in hyper}
    for i in rows:
        offset = 0
        for r in spec.rules[i].rules():
            for n in r.static:
                if n in hyper:
                    _validated(r, n, hyper[n], fn)
            for n, w in r.slots():
                if n in hyper:
                    v = _validated(r, n, hyper[n], fn)
                    vs = v if isinstance(v, tuple) else (v,)
                    if len(vs) != w:
                        raise ValueError(f"{fn}: {type(r).__name__}'s {n} has {w} values, got {hyper[n]!r}")
                    for k, e in enumerate(vs):
                        r_idx.append(i)
                        c_idx.append(offset + k)
                        vals.append(float(e))
                    found[n] = True
                offset += w
    missing = [n for n, ok in found.items() if not ok]
    if missing and rows:
        rules = {type(r).__name__: r for i in rows for r in spec.rules[i].rules()}
        names = sorted({n for r in rules.values() for n, _ in r.slots()})
        raise ValueError(
            f"{fn}: no rule in this part of the state has {', '.join(missing)}; "
            f"its rules ({', '.join(sorted(rules))}) have {', '.join(names) or 'no hyperparameters'}"
        )
    return r_idx, c_idx, vals


def _adjusted(tree: Any, eta: Any, hyper: dict, fn: str) -> tuple[OptState, Any, Any]:
    """The root and its new `(states, hyper)`."""
    root, rows = _target(tree, fn)
    if root._spec.kind == "optax":
        return root, adjust_optax(root, rows, eta, hyper, fn), root._hyper
    r, c, v = _assignments(root, rows, eta, hyper, fn)
    new = root._hyper
    if r:
        new = _scatter(new, np.asarray(r, np.int32), np.asarray(c, np.int32), np.asarray(v, new.dtype))
    return root, root._states, new


@jax.jit
def _scatter(table: jax.Array, rows: Any, cols: Any, vals: Any) -> jax.Array:
    """`table` with `vals` at `(rows, cols)`; the indices are arguments, so
    this compiles once per number of entries, not once per pattern."""
    return table.at[rows, cols].set(vals.astype(table.dtype))


def _no_trace(fn: str) -> None:
    if tracing():
        pure = fn.rstrip("_")
        raise RuntimeError(f"fl.{fn} changes the state in place and cannot run under jax.jit; use `state = fl.{pure}(state, ...)`")


def adjust_(tree: Any, eta: Any = None, **hyper: Any) -> None:
    """Change hyperparameters in place, on the whole state or any part of it.

    In an OptimiserChain, rules without that hyperparameter are left alone;
    a name that no rule in the subtree has is an error (Optimisers.jl
    ignores it). No recompilation follows: the values are data. A number
    given for a scheduled `eta` replaces the schedule; giving the same
    schedule object back restores it.

    For a state set up with an optax transformation, the names are optax's
    (`eta` means `learning_rate`), and only hyperparameters injected with
    `optax.inject_hyperparams` can change, on the whole state.

    Args:
        tree: the state from `fl.setup`, or a part of it (`state.layers.enc`, a Leaf).
        eta: the learning rate (positional, as `Optimisers.adjust!(tree, eta)`).
        **hyper: other hyperparameters by Optimisers.jl's names (`beta`,
            `rho`, `epsilon`, `lambd`, `delta`, `omega`, `n`, `couple`, ...).

    Example:
        >>> import fluxlike as fl
        >>> model = fl.Chain(enc=fl.Dense(3, 2), dec=fl.Dense(2, 3))
        >>> state = fl.setup(fl.Adam(0.02), model)
        >>> fl.adjust_(state.layers.enc, 0.03)
        >>> fl.adjust_(state, beta=(0.8, 0.99))
        >>> state.layers.enc.weight.rule, state.layers.dec.weight.rule
        (Adam(eta=0.03, beta=(0.8, 0.99), epsilon=1e-08), Adam(eta=0.02, beta=(0.8, 0.99), epsilon=1e-08))
        >>> fl.adjust_(state, rho=0.9)
        Traceback (most recent call last):
        ValueError: adjust_: no rule in this part of the state has rho; its rules (Adam) have beta, epsilon, eta
    """
    _no_trace("adjust_")
    root, states, new = _adjusted(tree, eta, hyper, "adjust_")
    root.__dict__["_states"], root.__dict__["_hyper"] = states, new


def adjust(tree: Any, eta: Any = None, **hyper: Any) -> OptState:
    """`adjust_` without changing the input: returns the new whole state tree.

    Args:
        tree: the state from `fl.setup`, or a part of it.
        eta: the learning rate. **hyper: other hyperparameters by name.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Descent(0.1), {"w": jnp.zeros(2)})
        >>> new = fl.adjust(state, 0.5)
        >>> new["w"].rule, state["w"].rule
        (Descent(eta=0.5), Descent(eta=0.1))
    """
    root, states, new = _adjusted(tree, eta, hyper, "adjust")
    return _make(states, new, root._counts, root._spec)


def learning_rate(tree: Any) -> float:
    """The learning rate the next update will use, for logging: the current
    `eta` of every Leaf in `tree`, with a schedule evaluated at the Leaf's step.

    For an optax transformation made with `optax.inject_hyperparams`, its
    `learning_rate` (for a schedule, optax keeps the value of the latest step).

    Args:
        tree: the state from `fl.setup`, or a part of it; its Leafs must agree.

    Example:
        >>> import jax.numpy as jnp, optax, fluxlike as fl
        >>> import fluxlike as fl
        >>> model = {"w": jnp.zeros(2)}
        >>> state = fl.setup(fl.Adam(optax.linear_schedule(0.1, 0.0, 10)), model)
        >>> for _ in range(5):
        ...     state, model = fl.update(state, model, {"w": jnp.ones(2)})
        >>> fl.learning_rate(state)
        0.05
    """
    fn = "learning_rate"
    root, rows = _target(tree, fn)
    if root._spec.kind == "optax":
        return learning_rate_optax(root, fn)
    spec = root._spec
    table, counts = np.asarray(root._hyper), np.asarray(root._counts)
    found: dict[float, list[str]] = {}
    for i in rows:
        t, offset, etas = int(counts[i, 0]) + 1, 0, []
        for r in spec.rules[i].rules():
            h, end = r.read(table[i], offset)
            if "eta" in h:
                v = float(h["eta"])
                etas.append(float(r.resolve(h, jnp.asarray(t, jnp.int32))["eta"]) if math.isnan(v) else v)
            t = int(r.t_after(h, t))
            offset = end
        if len(etas) != 1:
            what = "several rules with eta" if etas else "no rule with eta"
            raise ValueError(f"{fn}: the rule at {spec.paths[i] or '(root)'} has {what}: {spec.rules[i]!r}")
        found.setdefault(float(np.asarray(etas[0], table.dtype)), []).append(spec.paths[i])
    if len(found) != 1:
        if not found:
            raise ValueError(f"{fn}: this part of the state has no Leafs")
        parts = "; ".join(f"{v} at {', '.join(p)}" for v, p in found.items())
        raise ValueError(f"{fn}: the Leafs here have different learning rates ({parts}); ask a smaller part")
    return _pyfloat(next(iter(found)), table.dtype)


def _pyfloat(v: float, dtype: Any) -> float:
    return float(np.format_float_scientific(np.asarray(v, dtype)[()], unique=True))


def _frozen(tree: Any, flag: int, fn: str) -> tuple[OptState, Any]:
    root, rows = _target(tree, fn)
    counts = root._counts
    if rows:
        n = len(rows)
        counts = _scatter(counts, np.asarray(rows, np.int32), np.ones(n, np.int32), np.full(n, flag, np.int32))
    return root, counts


def freeze_(tree: Any) -> None:
    """Freeze every Leaf in `tree` (the whole state or a part): `update` then
    leaves those parameters and their optimiser state unchanged.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = {"a": jnp.ones(2), "b": jnp.ones(2)}
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> fl.freeze_(state["a"])
        >>> _, new = fl.update(state, model, {"a": jnp.ones(2), "b": jnp.ones(2)})
        >>> new["a"], new["b"]
        (Array([1., 1.], dtype=float32), Array([0.9, 0.9], dtype=float32))
    """
    _no_trace("freeze_")
    root, counts = _frozen(tree, 1, "freeze_")
    root.__dict__["_counts"] = counts


def thaw_(tree: Any) -> None:
    """Undo `freeze_` on every Leaf in `tree`.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Descent(), {"a": jnp.ones(2)})
        >>> fl.freeze_(state); fl.thaw_(state); state["a"].frozen
        False
    """
    _no_trace("thaw_")
    root, counts = _frozen(tree, 0, "thaw_")
    root.__dict__["_counts"] = counts


def freeze(tree: Any) -> OptState:
    """`freeze_` without changing the input: returns the new whole state tree.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Descent(), {"a": jnp.ones(2)})
        >>> fl.freeze(state)["a"].frozen, state["a"].frozen
        (True, False)
    """
    root, counts = _frozen(tree, 1, "freeze")
    return _make(root._states, root._hyper, counts, root._spec)


def thaw(tree: Any) -> OptState:
    """`thaw_` without changing the input: returns the new whole state tree.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.freeze(fl.setup(fl.Descent(), {"a": jnp.ones(2)}))
        >>> fl.thaw(state)["a"].frozen
        False
    """
    root, counts = _frozen(tree, 0, "thaw")
    return _make(root._states, root._hyper, counts, root._spec)
