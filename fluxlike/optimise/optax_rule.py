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

from .rule import _pyfloat

__all__ = ["setup_optax", "update_optax", "adjust_optax", "learning_rate_optax", "describe", "leaf_state"]


class Optax:
    """The spec's record of an optax transformation (static: its functions).

    Example:
        >>> import optax
        >>> from fluxlike.optimise.optax_rule import Optax
        >>> Optax(optax.sgd(0.1))
        optax.GradientTransformation(...)
    """

    def __init__(self, tx: Any, hyper: dict | None = None) -> None:
        self.tx = tx
        self.hyper = hyper or {}

    def key(self) -> tuple:
        return (Optax, self.tx)

    def rules(self) -> tuple:
        return ()

    def checks(self) -> bool:
        return False

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.hyper.items()) or "..."
        return f"optax.GradientTransformation({inner})"


def setup_optax(tx: Any, xs: list, paths: tuple) -> tuple[Any, Optax]:
    """optax's state for the trainable arrays `xs`, keyed by their Leaf paths."""
    return tx.init(dict(zip(paths, xs))), Optax(tx)


def _is_params(node: Any, keys: frozenset) -> bool:
    return isinstance(node, dict) and frozenset(node) == keys


def update_optax(state: Any, leaves: list, active: list, xs: list, dxs: list, frozen: Any) -> tuple[Any, list]:
    """One optax step: `(new optax state, new arrays of the active Leafs)`."""
    spec = state._spec
    tx = spec.rules[0].tx
    keep: dict[str, Any] = {p: True for p in spec.paths}
    params: dict[str, Any] = {p: jnp.asarray(leaves[idx[0]]) for p, idx in zip(spec.paths, spec.index)}
    grads = {p: jnp.zeros_like(x) for p, x in params.items()}
    for k, i in enumerate(active):
        p = spec.paths[i]
        keep[p] = frozen[k]
        grads[p] = jnp.where(frozen[k], jnp.zeros_like(dxs[k]), dxs[k])
    updates, new = tx.update(grads, state._states, params)
    keys = frozenset(spec.paths)

    def pick(old: Any, new: Any) -> Any:
        if not _is_params(old, keys):
            return new
        return {p: jax.tree.map(lambda a, b, f=keep[p]: a if f is True else jnp.where(f, a, b), old[p], new[p])
                for p in old}

    new = jax.tree.map(pick, state._states, new, is_leaf=lambda n: _is_params(n, keys))
    new_xs = []
    for k, (i, x) in enumerate(zip(active, xs)):
        u = updates[spec.paths[i]]
        new_xs.append(jnp.where(frozen[k], x, (x + u).astype(x.dtype)))
    return new, new_xs


def leaf_state(root: Any, i: int) -> Any:
    """The parts of the optax state that belong to Leaf `i` (its entries in
    every parameter-shaped dict), as a tuple."""
    keys = frozenset(root._spec.paths)
    p = root._spec.paths[i]
    found = [n[p] for n in jax.tree.leaves(root._states, is_leaf=lambda n: _is_params(n, keys))
             if _is_params(n, keys)]
    found = [f for f in found if jax.tree.leaves(f)]
    return found[0] if len(found) == 1 else tuple(found)


def _is_inject(node: Any) -> bool:
    return isinstance(getattr(node, "hyperparams", None), dict) and hasattr(node, "inner_state")


def _injected(states: Any) -> list:
    return [n for n in jax.tree.leaves(states, is_leaf=_is_inject) if _is_inject(n)]


def describe(root: Any) -> Optax:
    """The optax rule with its injected hyperparameters' current values (for printing)."""
    hyper: dict[str, Any] = {}
    for node in _injected(root._states):
        for k, v in node.hyperparams.items():
            hyper.setdefault(k, _pyfloat(v) if jnp.ndim(v) == 0 else v)
    return Optax(root._spec.rules[0].tx, hyper)


_WHY = (
    "the hyperparameters of an optax transformation are constants inside its functions. "
    "Build it with optax.inject_hyperparams to make them data, e.g. "
    "optax.inject_hyperparams(optax.adam)(learning_rate=1e-3), or use the fluxlike rule (fl.Adam(1e-3))"
)


def adjust_optax(root: Any, rows: list, eta: Any, hyper: dict, fn: str) -> Any:
    """The optax state with injected hyperparameters set; `eta` is optax's `learning_rate`."""
    if eta is not None:
        if "learning_rate" in hyper:
            raise TypeError(f"{fn}: the learning rate given both positionally and as learning_rate=")
        hyper = {"learning_rate": eta, **hyper}
    if not hyper:
        raise TypeError(f"{fn}: give a learning rate, {fn}(state, 0.01), or optax hyperparameters by name")
    if len(rows) != len(root._spec.index):
        raise ValueError(
            f"{fn}: this state was set up with an optax transformation, whose hyperparameters are "
            "shared by the whole model; adjust the whole state, or set up with a fluxlike rule "
            "(fl.Adam, ...) to give parts of the model their own"
        )
    nodes = _injected(root._states)
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

    return jax.tree.map(set_, root._states, is_leaf=_is_inject)


def learning_rate_optax(root: Any, fn: str) -> float:
    """The injected `learning_rate` (for a schedule: the value of the latest step, as optax keeps it)."""
    vals = {_pyfloat(n.hyperparams["learning_rate"]) for n in _injected(root._states) if "learning_rate" in n.hyperparams}
    if not vals:
        raise TypeError(f"{fn}: the optax transformation has no injected learning_rate: {_WHY}")
    if len(vals) > 1:
        raise ValueError(f"{fn}: the optax transformation injects several learning rates: {sorted(vals)}")
    return vals.pop()
