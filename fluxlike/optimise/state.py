"""The optimiser state tree: `setup`, `OptState` and its views (`Leaf`, `StateView`).

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

What the states and the table mean is the spec's engine (`_engine.py`): a
fluxlike rule's (one state and one table row per Leaf) or an optax
transformation's (one optax state for the whole model, `optax_rule.py`).
`update` hands the engine all Leafs at once, which lets global rules such as
ClipGlobalNorm see every gradient, and AccumGrad hold back the rules after it.

The rest of the package reaches an OptState's storage only through the
functions at the end of this file (`arrays`, `spec_of`, `engine`,
`positions`, `rebuilt`, `rebind_`, `assign_`, `target`, `whole_state`).
"""

from __future__ import annotations

from typing import Any, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from .._show import placement, spec_note
from .._tree import is_array, keystr, tracing
from .._walk import level, trainable_mask
from ..module import Module
from . import _table
from ._engine import Engine, RuleEngine
from .optax_rule import OptaxEngine, is_optax
from .rule import Rule

__all__ = ["OptState", "Leaf", "StateView", "setup"]

# mirror nodes: ("leaf", index or None) | ("node", kind, keys, children)
#   kind: "module" (attribute access), "seq" (index access), "named" (both), "dict" (item access)


class _Spec:
    """The static part of an OptState. Equal specs compile to the same program.

    `n` is the model's number of arrays, `index[i]` the model positions Leaf
    `i` owns (several when weights are tied), `paths[i]` its path, `mirror`
    the model's shape, and `engine` what the states and the table mean."""

    __slots__ = ("n", "index", "paths", "mirror", "engine", "positions", "_key", "_hash")

    def __init__(self, n: int, index: tuple, paths: tuple, mirror: tuple, engine: Engine) -> None:
        self.n, self.index, self.paths, self.mirror, self.engine = n, index, paths, mirror, engine
        self.positions = frozenset(p for idx in index for p in idx)
        self._key = (n, index, engine.key(), mirror)
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

    Examples:
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

        Examples:
            >>> import jax.numpy as jnp, fluxlike as fl
            >>> [leaf.path for leaf in fl.setup(fl.Adam(), {"a": jnp.ones(1), "b": jnp.ones(2)}).leaves()]
            ["['a']", "['b']"]
        """
        return [Leaf(self, i) for i in range(len(self._spec.index))]

    def __repr__(self) -> str:
        spec = self._spec
        where = placement(self._states)
        lines = [f"OptState({len(spec.index)} leaves{'; rule states ' + where if where else ''}):"]
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
    As a pytree it is the arrays of its rule's state (Optimisers.jl's
    `Leaf.state`), so `jax.tree.map` over a part of the state works on the
    moments; a Leaf that `jax.tree.map` builds holds only that state.

    Examples:
        >>> import jax, jax.numpy as jnp, fluxlike as fl
        >>> state = fl.setup(fl.Momentum(), {"w": jnp.zeros(3)})
        >>> leaf = state["w"]
        >>> leaf.rule, leaf.hyper, leaf.frozen, leaf.count
        (Momentum(eta=0.01, rho=0.9), {'eta': 0.01, 'rho': 0.9}, False, 0)
        >>> fl.freeze_(leaf); leaf
        Leaf(Momentum(eta=0.01, rho=0.9), state=3 float32, frozen=True)
        >>> jax.tree.leaves(leaf)
        [Array([0., 0., 0.], dtype=float32)]
    """

    __slots__ = ("root", "i", "_path", "_state")

    def __init__(self, root: OptState | None, i: int, path: str | None = None, state: Any = None) -> None:
        self.root, self.i, self._state = root, i, state
        self._path = root.__dict__["_spec"].paths[i] if path is None else path

    def _attached(self, what: str) -> OptState:
        if self.root is None:
            raise AttributeError(
                f"this Leaf (at {self._path}) was built by a pytree function such as jax.tree.map and holds "
                f"only its rule's state; ask the state tree from fl.setup for its {what}"
            )
        return self.root

    @property
    def rule(self) -> Any:
        """The rule, holding this Leaf's current hyperparameters."""
        root = self._attached("rule")
        return root._spec.engine.describe(root._states, root._hyper, self.i)

    @property
    def hyper(self) -> Any:
        """The current hyperparameters, `{name: value}` (a schedule in force
        shows as the schedule); for an OptimiserChain a tuple of such dicts,
        one per rule in it; for an optax transformation, its injected ones."""
        rule = self.rule
        if not isinstance(rule, Rule):
            return dict(rule.hyper)
        out = tuple({n: getattr(r, n) for n in r.hyper} for r in _table.flat(rule))
        return out[0] if len(out) == 1 and not hasattr(rule, "opts") else out

    @property
    def state(self) -> Any:
        """The rule's state for this array (Optimisers.jl's `Leaf.state`)."""
        if self.root is None:
            return self._state
        return self.root._spec.engine.leaf_state(self.root._states, self.i)

    @property
    def frozen(self) -> bool:
        """Whether `fl.freeze_` froze this Leaf."""
        return bool(np.asarray(self._attached("frozen flag")._counts)[self.i, 1])

    @property
    def count(self) -> int:
        """How many updates this Leaf has taken."""
        return int(np.asarray(self._attached("step count")._counts)[self.i, 0])

    @property
    def path(self) -> str:
        """Where this Leaf's array is in the model (`.layers[0].weight`)."""
        return self._path

    def __repr__(self) -> str:
        st = jax.tree.leaves(self.state)
        desc = ", ".join(f"{'×'.join(map(str, np.shape(a))) or 'scalar'} {getattr(a, 'dtype', type(a).__name__)}"
                         f"{spec_note(a)}" for a in st)
        desc = f"({desc})" if len(st) > 1 else desc or "()"
        if self.root is None:
            return f"Leaf({self._path}, state={desc})"
        return f"Leaf({self.rule!r}, state={desc}{', frozen=True' if self.frozen else ''})"


jax.tree_util.register_pytree_with_keys(
    Leaf, lambda l: (((jax.tree_util.GetAttrKey("state"), l.state),), (l.i, l._path)),
    lambda aux, ch: Leaf(None, aux[0], aux[1], ch[0]), lambda l: ((l.state,), (l.i, l._path)),
)


class StateView:
    """A subtree of an OptState (`state.layers.enc`): navigate it, or give it
    to `fl.adjust_`/`fl.freeze_`/`fl.thaw_` to change only its Leafs.

    As a pytree it is the tree of its Leafs (Optimisers.jl's subtree), whose
    arrays are their rules' states: `jax.tree.map(jnp.copy, state.layers.enc)`
    snapshots them, and it maps together with a later view of the same part.

    Examples:
        >>> import fluxlike as fl
        >>> state = fl.setup(fl.Descent(0.1), fl.Chain(fl.Dense(2, 2), fl.Dense(2, 1)))
        >>> state.layers[1]
        StateView(.layers[1]):
          .layers[1].weight: Leaf(Descent(eta=0.1), state=())
          .layers[1].bias: Leaf(Descent(eta=0.1), state=())
    """

    __slots__ = ("root", "node", "path", "_kids")

    def __init__(self, root: OptState | None, node: tuple, path: str, kids: tuple | None = None) -> None:
        self.root, self.node, self.path, self._kids = root, node, path, kids

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _child(self.root, self.node, name, self.path, kids=self._kids)

    def __getitem__(self, i: Any) -> Any:
        return _child(self.root, self.node, i, self.path, True, self._kids)

    def leaves(self) -> list[Leaf]:
        """Every Leaf in this subtree, in the model's order."""
        if self._kids is not None:
            return [l for l in jax.tree.leaves(self._kids, is_leaf=lambda x: isinstance(x, Leaf))]
        return [Leaf(self.root, i) for i in _indices(self.node)]

    def __repr__(self) -> str:
        lines = [f"StateView({self.path}):"]
        for leaf in self.leaves():
            lines.append(f"  {leaf.path}: {leaf!r}")
        return "\n".join(lines)


def _view_children(v: StateView) -> tuple:
    if v._kids is not None:
        return v._kids
    return tuple(_at(v.root, c, f"{v.path}{_sub(v.node[1], k)}") for k, c in zip(v.node[2], v.node[3]))


def _view_keys(v: StateView) -> tuple:
    kind, keys = v.node[1], v.node[2]
    tu = jax.tree_util
    mk = (lambda k: tu.DictKey(k)) if kind == "dict" else (lambda k: tu.SequenceKey(k)) if kind == "seq" \
        else (lambda k: tu.SequenceKey(k) if isinstance(k, int) else tu.GetAttrKey(k))
    return tuple((mk(k), c) for k, c in zip(keys, _view_children(v))), (v.node, v.path)


jax.tree_util.register_pytree_with_keys(
    StateView, _view_keys, lambda aux, ch: StateView(None, aux[0], aux[1], tuple(ch)),
    lambda v: (_view_children(v), (v.node, v.path)),
)


def _sub(kind: str, key: Any) -> str:
    if isinstance(key, str):
        return f"[{key!r}]" if kind == "dict" else f".{key}"
    return f"[{int(key)}]"


def _at(root: OptState | None, child: tuple, path: str) -> Any:
    """The state at a mirror node: None, a Leaf or a StateView."""
    if child[0] == "leaf":
        return None if child[1] is None else Leaf(root, child[1])
    return StateView(root, child, path)


def _child(root: OptState | None, node: tuple, key: Any, path: str, item: bool = False, kids: tuple | None = None) -> Any:
    """The part of the state at `key` below `node` (a Leaf, None or a StateView;
    `kids` are a detached view's children).

    `item` (from `[...]`): a module with a single container field is indexed
    through it, as `model[0]` indexes a Chain's `layers`."""
    if node[0] == "leaf":
        raise TypeError(f"state{path} is a single Leaf; it has no {key!r}")
    _, kind, keys, children = node
    if isinstance(key, str):
        ok = kind in ("module", "named", "dict") and key in keys
        j = keys.index(key) if ok else -1
    elif isinstance(key, (int, np.integer)) and kind in ("seq", "named"):
        j = int(key) + (len(children) if key < 0 else 0)
        ok = 0 <= j < len(children)
    else:
        ok = False
    if not ok and item and kind == "module" and len(children) == 1 and children[0][0] == "node":
        inner = None if kids is None else kids[0]._kids
        return _child(root, children[0], key, f"{path}.{keys[0]}", item, inner)
    if not ok:
        raise AttributeError(
            f"state{path} has no {key!r}; it mirrors the model, whose entries here are {list(keys)}"
        )
    if kids is not None:
        return kids[j]
    return _at(root, children[j], path + _sub(kind, key))


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

    Examples:
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
    if not isinstance(rule, Rule) and not is_optax(rule):
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
    engine = RuleEngine(rule, paths) if isinstance(rule, Rule) else OptaxEngine(rule, paths)
    states, hyper = engine.setup(xs)
    counts = jnp.zeros((len(index), 2), jnp.int32)
    mesh = _mesh_of(xs)
    if mesh is not None:  # a model on a mesh: the tables, and any state not placed by its parameter, replicated
        states, hyper, counts = _on_mesh((states, hyper, counts), mesh)
    return _make(states, hyper, counts, _Spec(len(leaves), index, paths, mirror, engine))


def _mesh_of(xs: list) -> Any:
    """The mesh the model's arrays are placed on (`fl.shard`), or None."""
    for x in xs:
        s = getattr(x, "sharding", None)
        if isinstance(s, jax.sharding.NamedSharding):
            return s.mesh
    return None


def _on_mesh(tree: Any, mesh: Any) -> Any:
    rep = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())

    def put(x: Any) -> Any:
        if isinstance(getattr(x, "sharding", None), jax.sharding.NamedSharding):
            return x
        return jax.device_put(x, rep)

    return jax.tree.map(put, tree)


# ---------------------------------------------------------------------------
# the internal API: how the rest of the package reads and rebuilds an OptState


def arrays(state: OptState) -> tuple[Any, jax.Array, jax.Array]:
    """`(states, hyper, counts)`: the rule states, the hyperparameter table
    (a row per Leaf) and the `[step count, frozen]` table."""
    d = state.__dict__
    return d["_states"], d["_hyper"], d["_counts"]


def spec_of(state: OptState) -> _Spec:
    """The static part: the model's shape, each Leaf's model positions and path, the engine."""
    return state.__dict__["_spec"]


def engine(state: OptState) -> Engine:
    """What the states and the hyperparameter table mean (`_engine.py`)."""
    return state.__dict__["_spec"].engine


def positions(state: OptState) -> frozenset:
    """The model positions (flat leaf numbers) whose arrays the optimiser updates."""
    return state.__dict__["_spec"].positions


def rebuilt(state: OptState, states: Any = None, hyper: Any = None, counts: Any = None) -> OptState:
    """A new OptState with the same spec and the given arrays replaced."""
    old = arrays(state)
    return _make(old[0] if states is None else states, old[1] if hyper is None else hyper,
                 old[2] if counts is None else counts, state.__dict__["_spec"])


def rebind_(state: OptState, states: Any = None, hyper: Any = None, counts: Any = None) -> None:
    """Replace the given arrays of `state` in place."""
    d = state.__dict__
    for name, v in (("_states", states), ("_hyper", hyper), ("_counts", counts)):
        if v is not None:
            d[name] = v


def assign_(state: OptState, new: OptState) -> None:
    """Rebind `state`'s arrays to `new`'s (same spec)."""
    rebind_(state, *arrays(new))


def target(tree: Any, fn: str) -> tuple[OptState, list[int]]:
    """The whole state and the Leaf numbers of `tree` (the state, a StateView or a Leaf)."""
    if isinstance(tree, OptState):
        return tree, list(range(len(tree._spec.index)))
    if isinstance(tree, (StateView, Leaf)) and tree.root is None:
        raise TypeError(
            f"{fn}: this part of the state (at {tree.path}) was built by a pytree function such as "
            "jax.tree.map and is not attached to a state tree; pass a part of the state from fl.setup"
        )
    if isinstance(tree, StateView):
        return tree.root, list(_indices(tree.node))
    if isinstance(tree, Leaf):
        return tree.root, [tree.i]
    raise TypeError(
        f"{fn}: expected the state tree from fl.setup or a part of it (state.layers[0]), "
        f"got {type(tree).__name__}"
    )


def whole_state(state: Any, fn: str) -> OptState:
    """`state` if it is a whole OptState, else a TypeError saying what to pass."""
    if isinstance(state, OptState):
        return state
    if isinstance(state, (StateView, Leaf)):
        raise TypeError(f"{fn}: pass the whole state tree from fl.setup, not the subtree at {state.path}")
    raise TypeError(f"{fn}: expected the state tree from fl.setup(rule, model), got {type(state).__name__}")
