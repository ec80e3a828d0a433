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

An optax transformation given to `setup` keeps its own state (one optax
state for the whole model, see `optax_rule.py`) in place of the rule states.

`update` runs the rule over all Leafs at once (`Rule.run`), which lets
global rules such as ClipGlobalNorm see every gradient, and AccumGrad hold
back the rules after it.
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from .._tree import is_array, keystr, tracing
from .._walk import level, set_leaves_, trainable_mask
from ..module import Module
from .optax_rule import describe, leaf_state, setup_optax, update_optax
from .rule import Ctx, HVec, Rule, select

__all__ = ["OptState", "Leaf", "setup", "update", "update_"]

# mirror nodes: ("leaf", index or None) | ("node", kind, keys, children)
#   kind: "module" (attribute access), "seq" (index access), "named" (both), "dict" (item access)


class _Spec:
    """The static part of an OptState. Equal specs compile to the same program.

    `kind` is "rule" (a fluxlike rule, one per Leaf in `rules`) or "optax"
    (`rules` holds the optax wrapper, and the states are optax's)."""

    __slots__ = ("n", "index", "rules", "paths", "mirror", "kind", "checks", "_key", "_hash")

    def __init__(self, n: int, index: tuple, rules: tuple, paths: tuple, mirror: tuple, kind: str) -> None:
        self.n, self.index, self.rules, self.paths, self.mirror, self.kind = n, index, rules, paths, mirror, kind
        self.checks = kind == "rule" and bool(rules) and rules[0].checks()
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

    _states: Any
    _hyper: jax.Array
    _counts: jax.Array
    _spec: _Spec

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _child(self, self.__dict__["_spec"].mirror, name, "")

    def __getitem__(self, i: Any) -> Any:
        return _child(self, self._spec.mirror, i, "", True)

    def leaves(self) -> list[Leaf]:
        """Every Leaf, in the model's order.

        Example:
            >>> import jax.numpy as jnp, fluxlike as fl
            >>> [leaf.path for leaf in fl.setup(fl.Adam(), {"a": jnp.ones(1), "b": jnp.ones(2)}).leaves()]
            ["['a']", "['b']"]
        """
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
    def rule(self) -> Any:
        """The rule, holding this Leaf's current hyperparameters."""
        spec = self.root._spec
        if spec.kind == "optax":
            return describe(self.root)
        return spec.rules[self.i].with_row(np.asarray(self.root._hyper)[self.i])

    @property
    def state(self) -> Any:
        """The rule's state for this array (Optimisers.jl's `Leaf.state`)."""
        if self.root._spec.kind == "optax":
            return leaf_state(self.root, self.i)
        return self.root._states[self.i]

    @property
    def frozen(self) -> bool:
        return bool(np.asarray(self.root._counts)[self.i, 1])

    @property
    def count(self) -> int:
        """How many updates this Leaf has taken."""
        return int(np.asarray(self.root._counts)[self.i, 0])

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
    to `fl.adjust_`/`fl.freeze_`/`fl.thaw_` to change only its Leafs.

    Example:
        >>> import fluxlike as fl
        >>> state = fl.setup(fl.Descent(0.1), fl.Chain(fl.Dense(2, 2), fl.Dense(2, 1)))
        >>> state.layers[1]
        StateView(.layers[1]):
          .layers[1].weight: Leaf(Descent(eta=0.1), state=())
          .layers[1].bias: Leaf(Descent(eta=0.1), state=())
    """

    __slots__ = ("root", "node", "path")

    def __init__(self, root: OptState, node: tuple, path: str) -> None:
        self.root, self.node, self.path = root, node, path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _child(self.root, self.node, name, self.path)

    def __getitem__(self, i: Any) -> Any:
        return _child(self.root, self.node, i, self.path, True)

    def leaves(self) -> list[Leaf]:
        """Every Leaf in this subtree, in the model's order."""
        return [Leaf(self.root, i) for i in _indices(self.node)]

    def __repr__(self) -> str:
        lines = [f"StateView({self.path}):"]
        for leaf in self.leaves():
            lines.append(f"  {leaf.path}: {leaf!r}")
        return "\n".join(lines)


def _child(root: OptState, node: tuple, key: Any, path: str, item: bool = False) -> Any:
    """The part of the state at `key` below `node` (a Leaf, None or a StateView).

    `item` (from `[...]`): a module with a single container field is indexed
    through it, as `model[0]` indexes a Chain's `layers`."""
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
    if not ok and item and kind == "module" and len(children) == 1 and children[0][0] == "node":
        return _child(root, children[0], key, f"{path}.{keys[0]}", item)
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


def _is_optax(tx: Any) -> bool:
    return callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))


def setup(rule: Any, model: Any) -> OptState:
    """The optimiser state for `model`: a Leaf per trainable array, holding
    `rule`, the rule's state, its hyperparameters and a frozen flag.

    The same array object at several places of the model (tied weights)
    gets one Leaf; `update` sums its gradients and writes the result to
    every place.

    Args:
        rule: a fluxlike rule (`fl.Adam()`, `fl.OptimiserChain(...)`), or
            any optax `GradientTransformation`, which then sees the model's
            trainable arrays as one dict keyed by path (so global rules
            like `optax.clip_by_global_norm` stay global).
        model: the model (any pytree of arrays; trainable arrays get Leafs).

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = fl.Chain(fl.Dense(784, 32, fl.relu), fl.Dense(32, 10))
        >>> opt_state = fl.setup(fl.Descent(0.01), model)
        >>> opt_state.layers[1].bias
        Leaf(Descent(eta=0.01), state=())
    """
    if isinstance(rule, type) and issubclass(rule, Rule):
        raise TypeError(
            f"setup: fl.{rule.__name__} is a rule class; pass fl.{rule.__name__}() (an instance), "
            f"e.g. fl.setup(fl.{rule.__name__}(), model)"
        )
    if not isinstance(rule, Rule) and not _is_optax(rule):
        raise TypeError(
            f"setup: expected a fluxlike rule such as fl.Adam() or an optax GradientTransformation, got {rule!r}"
        )
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
    xs = [jnp.asarray(leaves[o[0]]) for o in index]
    counts = jnp.zeros((len(index), 2), jnp.int32)
    dtype = jnp.result_type(float)
    if not isinstance(rule, Rule):
        states, wrapper = setup_optax(rule, xs, paths)
        hyper = jnp.zeros((len(index), 0), dtype)
        return _make(states, hyper, counts, _Spec(len(leaves), index, (wrapper,) * len(index), paths, mirror, "optax"))
    states = tuple(rule.state(x) for x in xs)
    row = rule.row()
    hyper = jnp.asarray(np.asarray([row] * len(index), dtype=np.float64).reshape(len(index), len(row)), dtype)
    return _make(states, hyper, counts, _Spec(len(leaves), index, (rule,) * len(index), paths, mirror, "rule"))


# ---------------------------------------------------------------------------
# update


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


def _step(state: OptState, model: Any, grads: Any, collect: bool, ok: Any = None) -> tuple[OptState, Any, Any]:
    """`(new_state, new_model, report)`; `report` is None or, for rules that
    raise on a non-finite norm, `(bad, norm)` vectors over the Leafs. With
    `ok` (a boolean scalar) False, every Leaf behaves as frozen: train_ skips
    a non-finite step this way, inside the rule, where it costs nothing."""
    spec = state._spec
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
    counts = state._counts
    sel = slice(None) if len(active) == len(spec.index) else np.asarray(active)
    frozen = counts[sel, 1] != 0
    if ok is not None:
        frozen = frozen | ~ok
    if spec.kind == "optax":
        states, new_xs = update_optax(state, leaves, active, xs, dxs, frozen)
        report = None
    else:
        states, new_xs, report = _run_rule(state, active, sel, xs, dxs, frozen, collect)
    new_leaves = list(leaves)
    for i, xn in zip(active, new_xs):
        for p in spec.index[i]:
            new_leaves[p] = xn
    step = (~frozen).astype(counts.dtype)
    if isinstance(sel, slice):  # every Leaf: one elementwise add, done in place
        counts = counts + jnp.stack([step, jnp.zeros_like(step)], axis=1)
    else:
        counts = counts.at[sel, 0].add(step)
    return _make(states, state._hyper, counts, spec), jax.tree.unflatten(treedef, new_leaves), report


def _run_rule(state: OptState, active: list, sel: Any, xs: list, dxs: list, frozen: Any, collect: bool) -> tuple:
    """The rule over the active Leafs: `(all states, their new arrays, report)`."""
    spec = state._spec
    rule, counts = spec.rules[0], state._counts
    table = state._hyper if isinstance(sel, slice) else state._hyper[sel]
    hs = HVec(rule.read(table.T)[0], len(active))  # a column at a time, not a Leaf at a time
    ts = counts[sel, 0] + 1
    ctx = Ctx(len(active), collect and spec.checks)
    sts = [state._states[i] for i in active]
    new_s, out, _, live = rule.run(hs, sts, xs, dxs, ts, [~f for f in frozen], ctx)
    states = list(state._states)
    new_xs = []
    for k, i in enumerate(active):
        states[i] = new_s[k]
        new_xs.append(select(live[k], (xs[k] - out[k]).astype(xs[k].dtype), xs[k]))
    report = None
    if ctx.bad is not None:
        no = jnp.zeros((), bool)
        bad = jnp.zeros(len(spec.index), bool).at[sel].set(jnp.stack([no if b is None else b for b in ctx.bad]))
        nrm = jnp.zeros(len(spec.index)).at[sel].set(jnp.stack([0.0 if v is None else v for v in ctx.norm]))
        report = (bad, nrm)
    return tuple(states), new_xs, report


def _update(state: OptState, model: Any, grads: Any, ok: Any = None) -> tuple[OptState, Any]:
    """One step, pure and traceable (the body of `update` and of train_'s
    step); `ok` False skips it (see `_step`)."""
    new_state, new_model, _ = _step(state, model, grads, False, ok)
    return new_state, new_model


_update_jit = jax.jit(lambda state, model, grads: _step(state, model, grads, True))


def _raise_nonfinite(spec: _Spec, report: Any) -> None:
    """Raise if a rule with `throw=True` met a non-finite norm (one sync, only
    for such rules): Optimisers.jl's DomainError, before anything changes."""
    if report is None:
        return
    bad, nrm = jax.device_get(report)
    if not bad.any():
        return
    i = int(np.argmax(bad))
    throwing = [r for r in spec.rules[i].rules() if getattr(r, "throw", False)]
    names = " or ".join(dict.fromkeys(type(r).__name__ for r in throwing))
    where = "of the whole model" if all(type(r).__name__ == "ClipGlobalNorm" for r in throwing) \
        else f"at model{spec.paths[i]}"
    raise FloatingPointError(
        f"{names}: the gradient {where} has {throwing[0].p}-norm {float(nrm[i])}; nothing was updated. "
        "Pass throw=False to scale it anyway."
    )


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

    Args:
        state: from `fl.setup(rule, model)`.
        model: the model.
        grads: the gradient of the model, e.g. `fl.gradient(f, model)[0]`.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = {"w": jnp.array([1.0, 2.0])}
        >>> state = fl.setup(fl.Descent(0.1), model)
        >>> state, new = fl.update(state, model, {"w": jnp.array([1.0, 1.0])})
        >>> new["w"], model["w"]
        (Array([0.9, 1.9], dtype=float32), Array([1., 2.], dtype=float32))
    """
    state = _check_state(state, "update")
    if tracing():
        return _update(state, model, grads)
    if grads is None:
        return state, model
    new_state, new_model, report = _update_jit(state, model, grads)
    _raise_nonfinite(state._spec, report)
    return new_state, new_model


def update_(state: OptState, model: Any, grads: Any) -> tuple[OptState, Any]:
    """`update` in place: rebinds the arrays inside `state` and `model` (which
    keep their identity) and returns them. Refuses to run under a trace.

    Tied weights get one new array object at all their places.

    Args:
        state: from `fl.setup(rule, model)`.
        model: the model (a Module or a dict/list of arrays).
        grads: the gradient of the model.

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
    if grads is None:
        return state, model
    new_state, new_model, report = _update_jit(state, model, grads)
    _raise_nonfinite(state._spec, report)
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
    assign_(state, new_state)
    return state, model


def assign_(state: OptState, new: OptState) -> None:
    """Rebind `state`'s arrays to `new`'s (same spec)."""
    d = state.__dict__
    d["_states"], d["_hyper"], d["_counts"] = new._states, new._hyper, new._counts
