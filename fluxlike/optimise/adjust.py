"""Everything done to a state tree after `setup`: `adjust`, `freeze`, `thaw`.

Hyperparameters and frozen flags are arrays inside the state, so these
change data: a jitted step that takes the state as an argument never
recompiles. The `_` forms rebind the arrays of the given tree in place; the
plain forms return a new whole state tree and leave the input untouched.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from .._tree import tracing
from .rule import Rule
from .state import Leaf, OptState, StateView, _indices, _make

__all__ = ["adjust", "adjust_", "freeze", "freeze_", "thaw", "thaw_"]


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


def _validated(rule: Rule, name: str, value: Any) -> Any:
    """Check `value` the way the rule's constructor would."""
    kwargs = {n: getattr(rule, n) for n in (*rule.hyper, *rule.static)}
    kwargs[name] = value
    new = type(rule)(**kwargs)
    return getattr(new, name)


def _assignments(root: OptState, rows: list[int], eta: Any, hyper: dict) -> tuple[list, list, list]:
    if eta is not None:
        if "eta" in hyper:
            raise TypeError("adjust: eta given both positionally and by keyword")
        hyper = {"eta": eta, **hyper}
    if not hyper:
        raise TypeError("adjust: give a learning rate, adjust(state, 0.01), or hyperparameters by name, adjust(state, beta=(0.8, 0.99))")
    spec = root._spec
    r_idx, c_idx, vals = [], [], []
    found = {n: False for n in hyper}
    for i in rows:
        offset = 0
        for r in spec.rules[i].rules():
            for n, w in r.slots():
                if n in hyper:
                    v = _validated(r, n, hyper[n])
                    vs = v if isinstance(v, tuple) else (v,)
                    if len(vs) != w:
                        raise ValueError(f"adjust: {type(r).__name__}'s {n} has {w} values, got {hyper[n]!r}")
                    for k, e in enumerate(vs):
                        r_idx.append(i)
                        c_idx.append(offset + k)
                        vals.append(float(e))
                    found[n] = True
                offset += w
    missing = [n for n, ok in found.items() if not ok]
    if missing and rows:
        names = sorted({n for i in rows for r in spec.rules[i].rules() for n, _ in r.slots()})
        raise ValueError(
            f"adjust: no rule in this part of the state has {', '.join(missing)}; "
            f"its rules ({', '.join(sorted({type(r).__name__ for i in rows for r in spec.rules[i].rules()}))}) "
            f"have {', '.join(names) or 'no hyperparameters'}"
        )
    return r_idx, c_idx, vals


def _adjusted(tree: Any, eta: Any, hyper: dict, fn: str) -> tuple[OptState, Any]:
    root, rows = _target(tree, fn)
    r, c, v = _assignments(root, rows, eta, hyper)
    new = root._hyper
    if r:
        new = new.at[np.asarray(r), np.asarray(c)].set(jnp.asarray(v, new.dtype))
    return root, new


def _no_trace(fn: str) -> None:
    if tracing():
        pure = fn.rstrip("_")
        raise RuntimeError(f"fl.{fn} changes the state in place and cannot run under jax.jit; use `state = fl.{pure}(state, ...)`")


def adjust_(tree: Any, eta: Any = None, **hyper: Any) -> None:
    """Change hyperparameters in place, on the whole state or any part of it.

    `eta` is positional, the rest by Optimisers.jl's names (`beta`, `rho`,
    `epsilon`, `lambd`, ...). In an OptimiserChain, rules without that
    hyperparameter are left alone; a name that no rule in the subtree has is
    an error. No recompilation follows: the values are data.

    Example:
        >>> import fluxlike as fl
        >>> model = fl.Chain(enc=fl.Dense(3, 2), dec=fl.Dense(2, 3))
        >>> state = fl.setup(fl.Adam(0.02), model)
        >>> fl.adjust_(state.layers.enc, 0.03)
        >>> fl.adjust_(state, beta=(0.8, 0.99))
        >>> state.layers.enc.weight.rule, state.layers.dec.weight.rule
        (Adam(eta=0.03, beta=(0.8, 0.99), epsilon=1e-08), Adam(eta=0.02, beta=(0.8, 0.99), epsilon=1e-08))
    """
    _no_trace("adjust_")
    root, new = _adjusted(tree, eta, hyper, "adjust_")
    root.__dict__["_hyper"] = new


def adjust(tree: Any, eta: Any = None, **hyper: Any) -> OptState:
    """`adjust_` without changing the input: returns the new whole state tree.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Descent(0.1), {"w": jnp.zeros(2)})
        >>> new = fl.adjust(state, 0.5)
        >>> new["w"].rule, state["w"].rule
        (Descent(eta=0.5), Descent(eta=0.1))
    """
    root, new = _adjusted(tree, eta, hyper, "adjust")
    return _make(root._states, new, root._counts, root._spec)


def _frozen(tree: Any, flag: int, fn: str) -> tuple[OptState, Any]:
    root, rows = _target(tree, fn)
    counts = root._counts
    if rows:
        counts = counts.at[np.asarray(rows), 1].set(flag)
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
