"""Every fluxlike rule as an optax `GradientTransformation`: `rule.init` and
`rule.update` over any pytree, so rules work in `optax.chain` and in plain
optax loops. (The other direction, an optax transformation as the rule of a
state tree, is `optax_rule.py`.)

optax adds updates, so an optimiser's are `-dx`; a gradient transformation's
(ClipGrad, ClipNorm, WeightDecay, AccumGrad, ...) are `dx`, as optax's own
`clip` or `add_decayed_weights`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import _table
from ._batch import Batch, Ctx

__all__ = ["RuleState", "init", "update"]


class RuleState(NamedTuple):
    """A rule's optax state: the step count, the hyperparameter row and the per-array states.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> st = fl.Descent(0.1).init({"w": jnp.ones(2)})
        >>> isinstance(st, fl.RuleState), st.count, st.hyper
        (True, Array(0, dtype=int32), Array([0.1], dtype=float32))
    """

    count: jax.Array
    hyper: jax.Array
    inner: Any


def init(rule: Any, params: Any) -> RuleState:
    """The optax state of `rule` for a whole pytree of parameters."""
    return RuleState(
        jnp.zeros((), jnp.int32),
        jnp.asarray(_table.row(rule), jnp.result_type(float)),
        jax.tree.map(rule.state, params),
    )


def update(rule: Any, updates: Any, state: RuleState, params: Any = None) -> tuple[Any, RuleState]:
    """optax's `(updates, new_state)` for a whole pytree; global rules see every array."""
    leaves_u, treedef = jax.tree.flatten(updates)
    if params is None:
        needs = sorted({type(r).__name__ for r in _table.flat(rule) if r.needs_params})
        if needs:
            raise ValueError(
                f"{', '.join(needs)} reads the parameters: call update(grads, state, params), "
                "as optax's add_decayed_weights needs"
            )
        leaves_p = [None] * len(leaves_u)
    else:
        leaves_p = treedef.flatten_up_to(params)
    leaves_s = treedef.flatten_up_to(state.inner)
    t = state.count + 1
    h = _table.read(rule, state.hyper)[0]
    n = len(leaves_u)
    out = rule.run(Batch([h] * n, leaves_s, leaves_p, leaves_u, [t] * n, [None] * n), Ctx(n, False))
    dxs = [d if ok is None else jnp.where(ok, d, jnp.zeros_like(d)) for d, ok in zip(out.dxs, out.live)]
    if rule.descent:
        dxs = [-d for d in dxs]
    return (
        jax.tree.unflatten(treedef, dxs),
        RuleState(t, state.hyper, jax.tree.unflatten(treedef, list(out.states))),
    )
