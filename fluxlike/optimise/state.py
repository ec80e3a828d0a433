"""The optimiser state tree: `setup`, `update`, `update_`.

`fl.setup(rule, model)` returns an `OptState`: a tree that mirrors the model
(`state.layers[0].weight` is that array's `Leaf`). Its storage is laid out for
the compiled step rather than for the eye, because every pytree leaf that
crosses a jitted call costs time:

- one rule state per Leaf (Adam: the arrays `m` and `v`),
- one float table `hyper` with a row of hyperparameters per Leaf,
- one int32 table `counts` with a row `[step count, frozen]` per Leaf,
- and the static `spec`: the model's shape (for navigation and printing),
  which model leaves each Leaf owns (several when weights are tied), and the
  rules' static parts. Hyperparameter values are never static, so
  `adjust_`/`freeze_` change data and a jitted step never recompiles.
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from .._tree import is_array, keystr, tracing
from ..module import Module, level, set_leaves_, trainable_mask
from .rule import Rule

__all__ = ["OptState", "Leaf", "setup", "update", "update_"]

# mirror nodes: ("leaf", index or None) | ("node", kind, keys, children)
#   kind: "module" (attribute access), "seq" (index access), "named" (both), "dict" (item access)


class _Spec:
    """The static part of an OptState. Equal specs compile to the same program."""

    __slots__ = ("n", "index", "rules", "paths", "mirror", "kind", "_key", "_hash")

    def __init__(self, n: int, index: tuple, rules: tuple, paths: tuple, mirror: tuple, kind: str) -> None:
        self.n, self.index, self.rules, self.paths, self.mirror, self.kind = n, index, rules, paths, mirror, kind
        self._key = (n, index, tuple(r.key() for r in rules), mirror)
        self._hash = hash(self._key)

    def __eq__(self, other: object) -> bool:
        return self is other or (
            type(other) is _Spec and self._hash == other._hash and self._key == other._key
        )

    def __hash__(self) -> int:
        return self._hash

    def __repr__(self) -> str:
        return f"<spec: {len(self.index)} leaves>"


class OptState:
    """The state tree built by `fl.setup`: it mirrors the model, with a `Leaf`
    at each trainable array and None elsewhere.

    Navigate it like the model (`state.layers.enc`, `state.layers[0].weight`);
    pass it through `jax.jit` like any pytree.

    Example:
        >>> import fluxlike as fl
        >>> model = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1, bias=False))
        >>> state = fl.setup(fl.Adam(), model)
        >>> state.layers[0].weight
        Leaf(Adam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08), state=(3×2 float32, 3×2 float32))
        >>> state.layers[1].bias is None
        True
    """

    _states: tuple
    _hyper: jax.Array
    _counts: jax.Array
    _spec: _Spec

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _child(self, self.__dict__["_spec"].mirror, name, "")

    def __getitem__(self, i: Any) -> Any:
        return _child(self, self._spec.mirror, i, "")

    def leaves(self) -> list[Leaf]:
        """Every Leaf, in the model's order."""
        return [Leaf(self, i) for i in range(len(self._spec.index))]

    def __repr__(self) -> str:
        spec = self._spec
        lines = [f"OptState({len(spec.index)} leaves):"]
        for i, p in enumerate(spec.paths):
            lines.append(f"  {p or '(root)'}: {Leaf(self, i)!r}")
        return "\n".join(lines)


def _flatten(s: OptState) -> tuple:
    return (s._states, s._hyper, s._counts), s._spec


def _flatten_keys(s: OptState) -> tuple:
    k = jax.tree_util.GetAttrKey
    return ((k("_states"), s._states), (k("_hyper"), s._hyper), (k("_counts"), s._counts)), s._spec


def _make(states: Any, hyper: Any, counts: Any, spec: _Spec) -> OptState:
    s = object.__new__(OptState)
    d = s.__dict__
    d["_states"], d["_hyper"], d["_counts"], d["_spec"] = states, hyper, counts, spec
    return s


jax.tree_util.register_pytree_with_keys(
    OptState, _flatten_keys, lambda spec, ch: _make(*ch, spec), _flatten
)


class Leaf:
    """One trainable array's optimiser state: its rule (with the current
    hyperparameters), the rule's state, its step count and frozen flag.

    A view into its OptState: `fl.adjust_`/`fl.freeze_` on it change the tree.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Momentum(), {"w": jnp.zeros(3)})
        >>> leaf = state["w"]
        >>> leaf.rule, leaf.frozen, leaf.count
        (Momentum(eta=0.01, rho=0.9), False, 0)
        >>> fl.freeze_(leaf); leaf
        Leaf(Momentum(eta=0.01, rho=0.9), state=3 float32, frozen=True)
    """

    __slots__ = ("root", "i")

    def __init__(self, root: OptState, i: int) -> None:
        self.root, self.i = root, i

    @property
    def rule(self) -> Rule:
        r = self.root._spec.rules[self.i]
        return r.with_row(np.asarray(self.root._hyper[self.i]))

    @property
    def state(self) -> Any:
        return self.root._states[self.i]

    @property
    def frozen(self) -> bool:
        return bool(self.root._counts[self.i, 1])

    @property
    def count(self) -> int:
        return int(self.root._counts[self.i, 0])

    @property
    def path(self) -> str:
        return self.root._spec.paths[self.i]

    def __repr__(self) -> str:
        st = jax.tree.leaves(self.state)
        desc = ", ".join(f"{'×'.join(map(str, a.shape)) or 'scalar'} {a.dtype}" for a in st)
        desc = f"({desc})" if len(st) > 1 else desc or "()"
        return f"Leaf({self.rule!r}, state={desc}{', frozen=True' if self.frozen else ''})"


class StateView:
    """A subtree of an OptState (`state.layers.enc`): navigate it, or give it
    to `fl.adjust_`/`fl.freeze_`/`fl.thaw_` to change only its Leafs."""

    __slots__ = ("root", "node", "path")

    def __init__(self, root: OptState, node: tuple, path: str) -> None:
        self.root, self.node, self.path = root, node, path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _child(self.root, self.node, name, self.path)

    def __getitem__(self, i: Any) -> Any:
        return _child(self.root, self.node, i, self.path)

    def leaves(self) -> list[Leaf]:
        return [Leaf(self.root, i) for i in _indices(self.node)]

    def __repr__(self) -> str:
        lines = [f"StateView({self.path}):"]
        for leaf in self.leaves():
            lines.append(f"  {leaf.path}: {leaf!r}")
        return "\n".join(lines)


def _child(root: OptState, node: tuple, key: Any, path: str) -> Any:
    if node[0] == "leaf":
        raise TypeError(f"state{path} is a single Leaf; it has no {key!r}")
    _, kind, keys, children = node
    if isinstance(key, str):
        ok = kind in ("module", "named", "dict") and key in keys
        j = keys.index(key) if ok else -1
        sub = f".{key}" if kind != "dict" else f"[{key!r}]"
    elif isinstance(key, (int, np.integer)) and kind in ("seq", "named"):
        j = int(key) + (len(children) if key < 0 else 0)
        ok = 0 <= j < len(children)
        sub = f"[{int(key)}]"
    else:
        ok = False
    if not ok:
        raise AttributeError(
            f"state{path} has no {key!r}; it mirrors the model, whose entries here are {list(keys)}"
        )
    child = children[j]
    if child[0] == "leaf":
        return None if child[1] is None else Leaf(root, child[1])
    return StateView(root, child, path + sub)


def _indices(node: tuple) -> Iterator[int]:
    if node[0] == "leaf":
        if node[1] is not None:
            yield node[1]
        return
    for c in node[3]:
        yield from _indices(c)


# ---------------------------------------------------------------------------
# setup


def _mirror(tree: Any, mask: list[bool], leaves: list, pos: list[int], owner: dict, order: list) -> tuple:
    """The model's shape as nested tuples, assigning Leaf numbers to trainable
    arrays (one per distinct array object: ties share a Leaf)."""
    if tree is None:
        return ("leaf", None)
    if is_array(tree):
        p = pos[0]
        pos[0] += 1
        if not mask[p]:
            return ("leaf", None)
        key = id(leaves[p])
        if key not in owner:
            owner[key] = len(order)
            order.append([])
        order[owner[key]].append(p)
        return ("leaf", owner[key])
    if isinstance(tree, Module):
        names = type(tree)._fields
        kids = tuple(_mirror(tree.__dict__[n], mask, leaves, pos, owner, order) for n in names)
        return ("node", "module", names, kids)
    keys, children, _ = level(tree)
    if keys is None:  # a leaf that is not an array
        pos[0] += 1
        return ("leaf", None)
    kind = "seq"
    names: list[Any] = []
    for k in keys:
        if isinstance(k, jax.tree_util.GetAttrKey):
            kind = "named"
            names.append(k.name)
        elif isinstance(k, jax.tree_util.DictKey):
            kind = "dict"
            names.append(k.key)
        else:
            names.append(getattr(k, "idx", getattr(k, "key", None)))
    kids = tuple(_mirror(c, mask, leaves, pos, owner, order) for c in children)
    return ("node", kind, tuple(names), kids)


def setup(rule: Rule, model: Any) -> OptState:
    """The optimiser state for `model`: a Leaf per trainable array, holding
    `rule`, the rule's state, its hyperparameters and a frozen flag.

    The same array object at several places of the model (tied weights)
    gets one Leaf; `update` sums its gradients and writes the result to
    every place.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = fl.Chain(fl.Dense(784, 32, fl.relu), fl.Dense(32, 10))
        >>> opt_state = fl.setup(fl.Descent(0.01), model)
        >>> opt_state.layers[1].bias
        Leaf(Descent(eta=0.01), state=())
    """
    if not isinstance(rule, Rule):
        from .optax_rule import from_optax

        rule = from_optax(rule)
    if tracing():
        raise RuntimeError("fl.setup builds the state once, outside jax.jit; call it before your step function")
    pairs, _ = jax.tree_util.tree_flatten_with_path(model)
    leaves = [l for _, l in pairs]
    for path, leaf in pairs:
        if not is_array(leaf):
            raise TypeError(f"setup: model{keystr(path)} is a {type(leaf).__name__}, not an array")
    mask = trainable_mask(model)
    order: list[list[int]] = []
    mirror = _mirror(model, mask, leaves, [0], {}, order)
    index = tuple(tuple(o) for o in order)
    paths = tuple(keystr(pairs[o[0]][0]) for o in index)
    rules = tuple(rule for _ in index)
    states = tuple(rule.state(jnp.asarray(leaves[o[0]])) for o in index)
    width = max((r.width() for r in rules), default=0)
    rows = [r.row() + [0.0] * (width - r.width()) for r in rules]
    hyper = jnp.asarray(np.asarray(rows, dtype=np.float64).reshape(len(index), width), jnp.result_type(float))
    counts = jnp.zeros((len(index), 2), jnp.int32)
    return _make(states, hyper, counts, _Spec(len(leaves), index, rules, paths, mirror, "rule"))


# ---------------------------------------------------------------------------
# update


def _grads_like(treedef: Any, grads: Any, spec: _Spec) -> list:
    try:
        return treedef.flatten_up_to(grads)
    except (ValueError, TypeError) as e:
        raise ValueError(
            "update: the gradient does not have the model's structure. Pass the "
            "gradient of the model itself, e.g. `fl.gradient(lambda m: loss(m(x), y), "
            f"model)[0]`. ({e})"
        ) from None


def _update(state: OptState, model: Any, grads: Any) -> tuple[OptState, Any]:
    spec = state._spec
    leaves, treedef = jax.tree.flatten(model)
    if len(leaves) != spec.n:
        raise ValueError(
            f"update: the model has {len(leaves)} arrays but the state was set up for a "
            f"model with {spec.n}; call fl.setup again for this model"
        )
    if grads is None:
        return state, model
    if spec.kind != "rule":
        from .optax_rule import update_optax

        return update_optax(state, model, grads, leaves, treedef)
    g = _grads_like(treedef, grads, spec)
    new_leaves = list(leaves)
    states = list(state._states)
    hyper, counts = state._hyper, state._counts
    done, steps = [], []
    for i, (idx, rule) in enumerate(zip(spec.index, spec.rules)):
        gs = [g[p] for p in idx if g[p] is not None]
        if not gs:
            continue  # no gradient: skip this Leaf entirely
        x = leaves[idx[0]]
        dx = gs[0]
        for more in gs[1:]:
            dx = dx + more
        if tuple(dx.shape) != tuple(x.shape):
            raise ValueError(
                f"update: the gradient at model{spec.paths[i]} has shape {tuple(dx.shape)} "
                f"but the parameter has shape {tuple(x.shape)}"
            )
        x = jnp.asarray(x)
        dx = jnp.asarray(dx, x.dtype)
        t = counts[i, 0] + 1
        frozen = counts[i, 1] != 0
        s, upd = rule.apply(rule.read(hyper[i])[0], states[i], x, dx, t)
        xn = jnp.where(frozen, x, (x - upd).astype(x.dtype))
        states[i] = jax.tree.map(lambda old, new: jnp.where(frozen, old, new), states[i], s)
        for p in idx:
            new_leaves[p] = xn
        done.append(i)
        steps.append(jnp.where(frozen, t - 1, t))
    if done:
        counts = counts.at[np.asarray(done), 0].set(jnp.stack(steps))
    return _make(tuple(states), hyper, counts, spec), jax.tree.unflatten(treedef, new_leaves)


_update_jit = jax.jit(_update)


def _check_state(state: Any, fn: str) -> OptState:
    if isinstance(state, OptState):
        return state
    if isinstance(state, (StateView, Leaf)):
        raise TypeError(f"{fn}: pass the whole state tree from fl.setup, not the subtree at {state.path}")
    raise TypeError(f"{fn}: expected the state tree from fl.setup(rule, model), got {type(state).__name__}")


def update(state: OptState, model: Any, grads: Any) -> tuple[OptState, Any]:
    """One optimiser step: `(new_state, new_model)`, leaving the inputs untouched.

    Pure and jittable. A frozen Leaf keeps its parameter and state; a None
    gradient skips its Leaf (state and step count do not advance).

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = {"w": jnp.array([1.0, 2.0])}
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> state, new = fl.update(state, model, {"w": jnp.array([1.0, 1.0])})
        >>> new["w"], model["w"]
        (Array([0.9, 1.9], dtype=float32), Array([1., 2.], dtype=float32))
    """
    state = _check_state(state, "update")
    return _update(state, model, grads) if tracing() else _update_jit(state, model, grads)


def update_(state: OptState, model: Any, grads: Any) -> tuple[OptState, Any]:
    """`update` in place: rebinds the arrays inside `state` and `model` (which
    keep their identity) and returns them. Refuses to run under a trace.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = fl.Dense(2, 1)
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> grads = fl.gradient(lambda m: m(jnp.ones(2)).sum(), model)
        >>> s2, m2 = fl.update_(state, model, grads[0])
        >>> m2 is model, s2 is state, model.bias
        (True, True, Array([-0.1], dtype=float32))
    """
    state = _check_state(state, "update_")
    if tracing():
        raise RuntimeError(
            "fl.update_ changes its arguments in place and cannot run inside jax.jit or "
            "another transformation. Inside a compiled step use the pure form:\n"
            "    opt_state, model = fl.update(opt_state, model, grads)"
        )
    new_state, new_model = _update_jit(state, model, grads)
    assign_(state, new_state)
    if new_model is not model:
        new_leaves = jax.tree.leaves(new_model)
        for idx in state._spec.index:  # tied weights stay one object
            for p in idx[1:]:
                new_leaves[p] = new_leaves[idx[0]]
        out = set_leaves_(model, new_leaves)
        if out is not model:
            raise TypeError(
                "update_: the model is a tuple or an array, which cannot change in place; "
                "use `state, model = fl.update(state, model, grads)`"
            )
    return state, model


def assign_(state: OptState, new: OptState) -> None:
    """Rebind `state`'s arrays to `new`'s (same spec)."""
    d = state.__dict__
    d["_states"], d["_hyper"], d["_counts"] = new._states, new._hyper, new._counts
