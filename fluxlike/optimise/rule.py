"""The rule protocol: a small value with two methods, `state` and `apply`.

A rule's hyperparameters (`eta`, `beta`, ...) are data: `fl.setup` copies
them into the state tree, and `apply` receives them as arrays in `h`, never
reading them from the rule object. So changing one with `fl.adjust_` changes
data, not the compiled program. Options that change the program's shape
(`centred`, `couple`) are static fields.

Each rule is also an optax `GradientTransformation` (`init`/`update` over
any pytree), so it works in `optax.chain` and in plain optax loops.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Rule", "RuleState"]

Hyper = dict[str, Any]


class RuleState(NamedTuple):
    """A rule's optax state: step count, hyperparameters, per-array states."""

    count: jax.Array
    hyper: jax.Array
    inner: Any


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class Rule:
    """Base class of the optimisation rules.

    Subclasses list their hyperparameters in `hyper` and options that change
    the program in `static`, and define:

    - `state(x) -> state`: the rule's state for one array (Optimisers.jl's `init`);
    - `apply(h, state, x, dx, t) -> (state, dx)`: the step for one array
      (Optimisers.jl's `apply!`), where `h` maps hyperparameter names to
      arrays (pairs to tuples of arrays) and `t` is the 1-based step count.
      The parameter becomes `x - dx`.

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> class Sign(fl.Rule):
        ...     hyper = ("eta",)
        ...     def __init__(self, eta=0.1):
        ...         self.eta = self.check_eta(eta)
        ...     def apply(self, h, state, x, dx, t):
        ...         return state, h["eta"] * jnp.sign(dx)
        >>> model = {"w": jnp.array([1.0, -1.0])}
        >>> state = fl.setup(Sign(), model)
        >>> state, model = fl.update(state, model, {"w": jnp.array([3.0, -0.5])})
        >>> model["w"]
        Array([ 0.9, -0.9], dtype=float32)
    """

    hyper: ClassVar[tuple[str, ...]] = ()
    static: ClassVar[tuple[str, ...]] = ()

    # --- the two methods ---------------------------------------------------

    def state(self, x: jax.Array) -> Any:
        """The rule's state for one array `x` (default: none)."""
        return ()

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        raise NotImplementedError

    # --- hyperparameters as data -------------------------------------------

    def rules(self) -> tuple[Rule, ...]:
        """The simple rules inside this one (itself, or a chain's members)."""
        return (self,)

    def slots(self) -> tuple[tuple[str, int], ...]:
        """(name, width) of each hyperparameter, in table order."""
        out = []
        for n in self.hyper:
            v = getattr(self, n)
            out.append((n, len(v) if isinstance(v, tuple) else 1))
        return tuple(out)

    def width(self) -> int:
        return sum(w for _, w in self.slots())

    def row(self) -> list[float]:
        """The hyperparameter values, flattened into one table row."""
        out: list[float] = []
        for n in self.hyper:
            v = getattr(self, n)
            out.extend(float(e) for e in (v if isinstance(v, tuple) else (v,)))
        return out

    def read(self, row: Any, offset: int = 0) -> tuple[Hyper, int]:
        """`h` for `apply` from a table row (an array), and the next offset."""
        h: Hyper = {}
        for n, w in self.slots():
            h[n] = row[offset] if w == 1 else tuple(row[offset + i] for i in range(w))
            offset += w
        return h, offset

    def with_row(self, row: Any, offset: int = 0) -> Rule:
        """A copy of this rule holding the values of a table row (for printing)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        for n, w in self.slots():
            vals = tuple(_pyfloat(row[offset + i]) for i in range(w))
            new.__dict__[n] = vals[0] if w == 1 else vals
            offset += w
        return new

    def key(self) -> tuple:
        """What the compiled program depends on: the type, static options and
        slot widths, never the hyperparameter values."""
        return (type(self), tuple(getattr(self, s) for s in self.static), self.slots())

    # --- construction helpers -----------------------------------------------

    def check_eta(self, eta: Any, name: str = "eta") -> Any:
        return self.check(name, eta, lambda v: v >= 0, "must be >= 0")

    def check(self, name: str, value: Any, ok: Callable[[float], bool], what: str) -> Any:
        """`value` if it is a number (or tuple of numbers) for which `ok` holds,
        else a ValueError naming the rule, the argument and the requirement."""
        for v in value if isinstance(value, tuple) else (value,):
            if not _is_number(v) or not ok(float(v)):
                raise ValueError(f"{type(self).__name__}: {name}={value!r} {what}")
        return value

    # --- printing ---------------------------------------------------------

    def __repr__(self) -> str:
        parts = [f"{n}={_fmt(getattr(self, n))}" for n in (*self.hyper, *self.static)]
        return f"{type(self).__name__}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, n) == getattr(other, n) for n in (*self.hyper, *self.static)
        )

    def __hash__(self) -> int:
        return hash((type(self), tuple(getattr(self, n) for n in (*self.hyper, *self.static))))

    # --- optax ------------------------------------------------------------

    def init(self, params: Any) -> RuleState:
        """optax: the state for a whole pytree of parameters.

        Example:
            >>> import jax.numpy as jnp, optax, fluxlike as fl
            >>> params = {"w": jnp.ones(2)}
            >>> opt = optax.chain(optax.clip(1.0), fl.Descent(0.1))
            >>> st = opt.init(params)
            >>> upd, st = opt.update({"w": jnp.array([5.0, -0.5])}, st, params)
            >>> optax.apply_updates(params, upd)["w"]
            Array([0.9 , 1.05], dtype=float32)
        """
        return RuleState(
            jnp.zeros((), jnp.int32),
            jnp.asarray(self.row(), jnp.result_type(float)),
            jax.tree.map(self.state, params),
        )

    def update(self, updates: Any, state: RuleState, params: Any = None) -> tuple[Any, RuleState]:
        """optax: `(updates, state)`; optax adds updates, so they are `-dx`."""
        t = state.count + 1
        h = self.read(state.hyper)[0]
        leaves_u, treedef = jax.tree.flatten(updates)
        if params is None:
            leaves_p = leaves_u
        else:
            leaves_p = treedef.flatten_up_to(params)
        leaves_s = treedef.flatten_up_to(state.inner)
        new_u, new_s = [], []
        for u, p, s in zip(leaves_u, leaves_p, leaves_s):
            s2, dx = self.apply(h, s, p, u, t)
            new_u.append(-dx)
            new_s.append(s2)
        return (
            jax.tree.unflatten(treedef, new_u),
            RuleState(t, state.hyper, jax.tree.unflatten(treedef, new_s)),
        )


def _pyfloat(v: Any) -> float:
    """The shortest Python float that round-trips at the table's precision
    (0.01 stored in float32 reads back as 0.01)."""
    a = np.asarray(v)
    return float(np.format_float_scientific(a[()], unique=True)) if a.dtype.kind == "f" else float(a)


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(e) for e in v) + ")"
    return repr(v)


def cast(h: Any, dtype: Any) -> Any:
    """Hyperparameters in the parameter's dtype (Optimisers.jl's `T(o.eta)`)."""
    if isinstance(h, tuple):
        return tuple(cast(e, dtype) for e in h)
    return jnp.asarray(h, dtype)
