"""Everything done to a state tree after `setup`: `adjust`, `freeze`, `thaw`.

Hyperparameters and frozen flags are arrays inside the state, so these
change data: a jitted step that takes the state as an argument never
recompiles. The `_` forms rebind the arrays of the given tree in place; the
plain forms return a new whole state tree and leave the input untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._tree import tracing
from ._engine import scatter
from .state import OptState, arrays, engine, rebind_, rebuilt, target

__all__ = ["adjust", "adjust_", "freeze", "freeze_", "thaw", "thaw_", "learning_rate"]


def _adjusted(tree: Any, eta: Any, hyper: dict, fn: str) -> tuple[OptState, Any, Any]:
    """The root and its new `(states, hyper)`."""
    root, rows = target(tree, fn)
    states, table, _ = arrays(root)
    return (root, *engine(root).adjust(states, table, rows, eta, hyper, fn))


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

    Examples:
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
    rebind_(root, states, new)


def adjust(tree: Any, eta: Any = None, **hyper: Any) -> OptState:
    """`adjust_` without changing the input: returns the new whole state tree.

    Args:
        tree: the state from `fl.setup`, or a part of it.
        eta: the learning rate. **hyper: other hyperparameters by name.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Descent(0.1), {"w": jnp.zeros(2)})
        >>> new = fl.adjust(state, 0.5)
        >>> new["w"].rule, state["w"].rule
        (Descent(eta=0.5), Descent(eta=0.1))
    """
    root, states, new = _adjusted(tree, eta, hyper, "adjust")
    return rebuilt(root, states, new)


def learning_rate(tree: Any) -> float:
    """The learning rate the next update will use, for logging: the current
    `eta` of every Leaf in `tree`, with a schedule evaluated at the Leaf's step.

    For an optax transformation made with `optax.inject_hyperparams`, its
    `learning_rate` (for a schedule, optax keeps the value of the latest step).

    Args:
        tree: the state from `fl.setup`, or a part of it; its Leafs must agree.

    Examples:
        >>> import jax.numpy as jnp, optax, fluxlike as fl
        >>> model = {"w": jnp.zeros(2)}
        >>> state = fl.setup(fl.Adam(optax.linear_schedule(0.1, 0.0, 10)), model)
        >>> for _ in range(5):
        ...     state, model = fl.update(state, model, {"w": jnp.ones(2)})
        >>> fl.learning_rate(state)
        0.05
    """
    root, rows = target(tree, "learning_rate")
    return engine(root).learning_rate(*arrays(root), rows, "learning_rate")


def _frozen(tree: Any, flag: int, fn: str) -> tuple[OptState, Any]:
    root, rows = target(tree, fn)
    counts = arrays(root)[2]
    if rows:
        n = len(rows)
        counts = scatter(counts, np.asarray(rows, np.int32), np.ones(n, np.int32), np.full(n, flag, np.int32))
    return root, counts


def freeze_(tree: Any) -> None:
    """Freeze every Leaf in `tree` (the whole state or a part): `update` then
    leaves those parameters and their optimiser state unchanged.

    Examples:
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
    rebind_(root, counts=counts)


def thaw_(tree: Any) -> None:
    """Undo `freeze_` on every Leaf in `tree`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Descent(), {"a": jnp.ones(2)})
        >>> fl.freeze_(state); fl.thaw_(state); state["a"].frozen
        False
    """
    _no_trace("thaw_")
    root, counts = _frozen(tree, 0, "thaw_")
    rebind_(root, counts=counts)


def freeze(tree: Any) -> OptState:
    """`freeze_` without changing the input: returns the new whole state tree.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Descent(), {"a": jnp.ones(2)})
        >>> fl.freeze(state)["a"].frozen, state["a"].frozen
        (True, False)
    """
    root, counts = _frozen(tree, 1, "freeze")
    return rebuilt(root, counts=counts)


def thaw(tree: Any) -> OptState:
    """`thaw_` without changing the input: returns the new whole state tree.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.freeze(fl.setup(fl.Descent(), {"a": jnp.ones(2)}))
        >>> fl.thaw(state)["a"].frozen
        False
    """
    root, counts = _frozen(tree, 0, "thaw")
    return rebuilt(root, counts=counts)
