"""optax transformations as the rule of a fluxlike state tree.

`fl.setup(optax.adam(1e-3), model)` gives an OptState whose Leafs mirror the
model as usual (frozen flags and step counts per Leaf), but whose storage is
one optax state for the whole model: optax sees the trainable arrays as one
dict `{Leaf path: array}` (tied weights once), so global transformations
such as `optax.clip_by_global_norm` keep their global meaning.

A frozen Leaf (or one with a None gradient) gets a zero gradient, and every
part of the optax state shaped like the parameters keeps its old value at
that Leaf, as does the parameter; shared counters (optax's step count) do
advance.

Hyperparameters of a plain optax transformation are constants inside its
functions, so `adjust` cannot reach them; with `optax.inject_hyperparams`
they are arrays in the state, and `adjust` writes there.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from ._batch import keep
from ._engine import Engine, Update
from ._table import pyfloat

__all__ = ["Optax", "OptaxEngine", "is_optax"]


def is_optax(tx: Any) -> bool:
    """Whether `tx` looks like an optax GradientTransformation."""
    return callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))


class Optax:
    """An optax transformation as `Leaf.rule` shows it, with its injected
    hyperparameters' current values.

    Examples:
        >>> import jax.numpy as jnp, optax, fluxlike as fl
        >>> state = fl.setup(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1), {"w": jnp.ones(2)})
        >>> state["w"].rule
        optax.GradientTransformation(learning_rate=0.1)
    """

    def __init__(self, tx: Any, hyper: dict | None = None) -> None:
        self.tx = tx
        self.hyper = hyper or {}

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items()) or "..."
        return f"optax.GradientTransformation({inner})"


def _is_params(node: Any, keys: frozenset) -> bool:
    return isinstance(node, dict) and frozenset(node) == keys


def _is_inject(node: Any) -> bool:
    return isinstance(getattr(node, "hyperparams", None), dict) and hasattr(node, "inner_state")


def _injected(states: Any) -> list:
    return [n for n in jax.tree.leaves(states, is_leaf=_is_inject) if _is_inject(n)]


_WHY = (
    "the hyperparameters of an optax transformation are constants inside its functions. "
    "Build it with optax.inject_hyperparams to make them data, e.g. "
    "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3), or use the fluxlike rule (fl.Adam(1e-3))"
)


class OptaxEngine(Engine):
    """An optax transformation over the state tree: one optax state for the
    trainable arrays as a dict `{Leaf path: array}`, and an empty table."""

    def __init__(self, tx: Any, paths: tuple) -> None:
        self.tx, self.paths = tx, paths
        self._keys = frozenset(paths)

    def key(self) -> tuple:
        return (OptaxEngine, self.tx)

    def setup(self, xs: list) -> tuple[Any, jax.Array]:
        return self.tx.init(dict(zip(self.paths, xs))), jnp.zeros((len(xs), 0), jnp.result_type(float))

    def step(self, states: Any, table: jax.Array, u: Update) -> tuple[Any, list, Any]:
        """A frozen Leaf (or one with no gradient) gets a zero gradient, and
        every parameter-shaped part of the optax state keeps its value there,
        as does the parameter; shared counters advance unless `u.ok` is False."""
        keep_at: dict[str, Any] = {p: True for p in self.paths}
        params = {p: jnp.asarray(x) for p, x in zip(self.paths, u.params)}
        grads = {p: jnp.zeros_like(x) for p, x in params.items()}
        for k, i in enumerate(u.active):
            p = self.paths[i]
            keep_at[p] = u.frozen[k]
            grads[p] = jnp.where(u.frozen[k], jnp.zeros_like(u.dxs[k]), u.dxs[k])
        updates, new = self.tx.update(grads, states, params)

        def pick(old: Any, new: Any) -> Any:
            if not _is_params(old, self._keys):
                return new
            return {p: jax.tree.map(lambda a, b, f=keep_at[p]: a if f is True else jnp.where(f, a, b), old[p], new[p])
                    for p in old}

        new = jax.tree.map(pick, states, new, is_leaf=lambda n: _is_params(n, self._keys))
        if u.ok is not None:  # a skipped step keeps optax's own counters too
            new = keep(u.ok, new, states)
        new_xs = [jnp.where(u.frozen[k], x, (x + updates[self.paths[i]]).astype(x.dtype))
                  for k, (i, x) in enumerate(zip(u.active, u.xs))]
        return new, new_xs, None

    def leaf_state(self, states: Any, i: int) -> Any:
        """The parts of the optax state that belong to Leaf `i` (its entries in
        every parameter-shaped dict), as a tuple."""
        p = self.paths[i]
        found = [n[p] for n in jax.tree.leaves(states, is_leaf=lambda n: _is_params(n, self._keys))
                 if _is_params(n, self._keys)]
        found = [f for f in found if jax.tree.leaves(f)]
        return found[0] if len(found) == 1 else tuple(found)

    def describe(self, states: Any, table: Any, i: int) -> Optax:
        hyper: dict[str, Any] = {}
        for node in _injected(states):
            for k, v in node.hyperparams.items():
                hyper.setdefault(k, pyfloat(v) if jnp.ndim(v) == 0 else v)
        return Optax(self.tx, hyper)

    def adjust(self, states: Any, table: jax.Array, rows: list, eta: Any, hyper: dict, fn: str) -> tuple[Any, jax.Array]:
        """Injected hyperparameters set; `eta` is optax's `learning_rate`."""
        if eta is not None:
            if "learning_rate" in hyper:
                raise TypeError(f"{fn}: the learning rate given both positionally and as learning_rate=")
            hyper = {"learning_rate": eta, **hyper}
        if not hyper:
            raise TypeError(f"{fn}: give a learning rate, {fn}(state, 0.01), or optax hyperparameters by name")
        if len(rows) != len(self.paths):
            raise ValueError(
                f"{fn}: this state was set up with an optax transformation, whose hyperparameters are "
                "shared by the whole model; adjust the whole state, or set up with a fluxlike rule "
                "(fl.Adam, ...) to give parts of the model their own"
            )
        nodes = _injected(states)
        if not nodes:
            raise TypeError(f"{fn}: cannot change {', '.join(hyper)}: {_WHY}")
        for name, value in hyper.items():
            have = [n for n in nodes if name in n.hyperparams]
            if not have:
                names = sorted({k for n in nodes for k in n.hyperparams})
                raise ValueError(f"{fn}: the optax transformation has no injected hyperparameter {name!r}; it has {names}")
            if any(name in getattr(n, "hyperparams_states", {}) for n in have):
                raise ValueError(
                    f"{fn}: {name} is scheduled inside optax.inject_hyperparams, which recomputes it every "
                    "step, so setting it would have no effect; give it as a number to inject_hyperparams"
                )
            if callable(value) or jnp.ndim(value) != 0:
                raise ValueError(f"{fn}: {name}={value!r} must be a number")

        def set_(node: Any) -> Any:
            if not _is_inject(node):
                return node
            new = dict(node.hyperparams)
            for name, value in hyper.items():
                if name in new:
                    new[name] = jnp.asarray(value, jnp.asarray(new[name]).dtype)
            return node._replace(hyperparams=new)

        return jax.tree.map(set_, states, is_leaf=_is_inject), table

    def learning_rate(self, states: Any, table: Any, counts: Any, rows: list, fn: str) -> float:
        """The injected `learning_rate` (for a schedule: the value of the latest step, as optax keeps it)."""
        vals = {pyfloat(n.hyperparams["learning_rate"]) for n in _injected(states) if "learning_rate" in n.hyperparams}
        if not vals:
            raise TypeError(f"{fn}: the optax transformation has no injected learning_rate: {_WHY}")
        if len(vals) > 1:
            raise ValueError(f"{fn}: the optax transformation injects several learning rates: {sorted(vals)}")
        return vals.pop()
