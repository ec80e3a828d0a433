"""The rule protocol: a small value with two methods, `state` and `apply`.

A rule's hyperparameters (`eta`, `beta`, ...) are data: `fl.setup` copies
them into the state tree, and `apply` receives them as arrays in `h`, never
reading them from the rule object. So changing one with `fl.adjust_` changes
data, not the compiled program. Options that change the program's shape
(`centred`, ClipNorm's `p` and `throw`) are static fields, fixed at setup.

`eta` may also be an optax schedule (a function of the step count): it is
evaluated inside the compiled step. Its table entry is NaN while the schedule
is in force; `fl.adjust_(state, 0.01)` writes a number there and replaces the
schedule with a constant, again without recompiling.

Each rule is also an optax `GradientTransformation` (`init`/`update` over
any pytree), so it works in `optax.chain` and in plain optax loops.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Rule", "RuleState"]

Hyper = dict[str, Any]


class RuleState(NamedTuple):
    """A rule's optax state: step count, hyperparameter row, per-array states."""

    count: jax.Array
    hyper: jax.Array
    inner: Any


class Ctx:
    """What one update collects while it is traced: for each Leaf being
    updated, whether a rule with `throw=True` met a non-finite norm, and the norm."""

    __slots__ = ("bad", "norm")

    def __init__(self, n: int, collect: bool) -> None:
        self.bad: list | None = [None] * n if collect else None
        self.norm: list = [None] * n

    def report(self, k: int, bad: jax.Array, norm: jax.Array) -> None:
        """Record for the `k`-th Leaf being updated whether `norm` was non-finite."""
        if self.bad is None:
            return
        if self.bad[k] is None:
            self.bad[k], self.norm[k] = bad, norm
        else:  # keep the first non-finite norm
            self.norm[k] = jnp.where(self.bad[k], self.norm[k], norm)
            self.bad[k] = self.bad[k] | bad


def _is_number(v: Any) -> bool:
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    return isinstance(v, (np.ndarray, jax.Array)) and v.shape == () and not isinstance(v, jax.core.Tracer) \
        and (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating))


def _pyfloat(v: Any) -> float:
    """The shortest Python float that round-trips at the table's precision
    (0.01 stored in float32 reads back as 0.01)."""
    a = np.asarray(v)
    return float(np.format_float_scientific(a[()], unique=True)) if a.dtype.kind == "f" else float(a)


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(e) for e in v) + ")"
    if callable(v):
        name = getattr(v, "__qualname__", type(v).__name__).split(".<locals>")[0]
        return f"<schedule {name}>"
    return repr(v)


def keep(ok: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `ok`, else `old`, leaf by leaf (a skipped step keeps its state bit-identical)."""
    return jax.tree.map(lambda n, o: select(ok, n, o), new, old)


def select(ok: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """`where(ok, new, old)` for a scalar `ok` and arrays of one shape and
    dtype: `lax.select` directly (`jnp.where` is a nested jitted call in the
    traced program, which costs compile time on deep models)."""
    if new is old:
        return new
    return jax.lax.select(jnp.broadcast_to(ok, jnp.shape(new)), new, old)


class Rule:
    """Base class of the optimisation rules.

    Subclasses list their hyperparameters in `hyper` (in table order) and the
    options that change the program in `static`, and define:

    - `state(x) -> state`: the rule's state for one array (Optimisers.jl's `init`);
    - `apply(h, state, x, dx, t) -> (state, dx)`: the step for one array
      (Optimisers.jl's `apply!`), where `h` maps hyperparameter names to
      scalar arrays (pairs to tuples of them) and `t` is the 1-based step
      count. The parameter becomes `x - dx`.

    Read hyperparameters only from `h`, never from `self`: `h` is data, so
    `fl.adjust_` never recompiles. `self`'s values are used once, by `state`
    and to fill the table at setup.

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
        >>> Sign(0.5)
        Sign(eta=0.5)
    """

    hyper: ClassVar[tuple[str, ...]] = ()
    static: ClassVar[tuple[str, ...]] = ()
    #: hyperparameters read back from the float table as bool or int
    types: ClassVar[dict[str, type]] = {}
    #: whether `apply` reads the parameter `x` (optax's `params` is then required)
    needs_params: ClassVar[bool] = False
    #: an optimiser (its optax updates are `-dx`), not a gradient transformation
    #: such as clipping or decay (whose optax updates are `dx`, like optax.clip's)
    descent: ClassVar[bool] = True

    # --- the two methods ---------------------------------------------------

    def state(self, x: jax.Array) -> Any:
        """The rule's state for one array `x` (default: none)."""
        return ()

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        """The step for one array: `(new_state, dx_out)`; the parameter becomes `x - dx_out`.

        A rule whose output depends only on its new state (Adam, Momentum, ...)
        may instead define `advance(h, state, x, dx, t) -> new_state` and
        `output(h, new_state, x, dx, t) -> dx_out`: then a frozen Leaf's kept
        state feeds the output, which lets XLA update the state in place."""
        if self.split:
            state = self.advance(h, state, x, dx, t)
            return state, self.output(h, state, x, dx, t)
        raise NotImplementedError(f"{type(self).__name__} defines no apply(h, state, x, dx, t)")

    def advance(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Any:
        raise NotImplementedError

    def output(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> jax.Array:
        raise NotImplementedError

    @property
    def split(self) -> bool:
        """Whether this rule defines `advance` and `output` instead of `apply`."""
        return type(self).advance is not Rule.advance

    def prepare(self, h: Hyper, t: jax.Array) -> Hyper:
        """Per-step scalars derived from the hyperparameters, computed once for
        all Leafs as vectors (one small kernel instead of one per Leaf): the
        schedules' values, and for rules with `beta`, `h["beta^t"]` and the
        bias corrections `h["1/(1-beta^t)"]` (multiplying by a per-Leaf
        reciprocal computed here keeps XLA from launching a scalar kernel per
        Leaf)."""
        h = self.resolve(h, t)
        if "beta" in self.hyper and isinstance(h.get("beta"), tuple):
            tt = t.astype(jnp.promote_types(h["beta"][0].dtype, jnp.float32))
            bt = tuple(jnp.asarray(b, tt.dtype) ** tt for b in h["beta"])
            h = {**h, "beta^t": bt, "1/(1-beta^t)": tuple(1 / (1 - b) for b in bt)}
        return h

    # --- all Leafs at once ---------------------------------------------------

    def run(self, hs: list, states: list, xs: list, dxs: list, ts: list, live: list, ctx: Ctx) -> tuple[list, list, list, list]:
        """`apply` over the Leafs being updated, as lists: returns `(states, dxs, ts, live)`.

        `live[k]` is None (always updating) or a boolean scalar: where False
        (a frozen Leaf, or AccumGrad still accumulating) the state is kept.
        Chains, AccumGrad and global rules override this.
        """
        hs = _prepared(self, hs, ts)
        new_s, new_d = [], []
        for h, s, x, dx, t, ok in zip(hs, states, xs, dxs, ts, live):
            if self.split:
                s2 = _precise(self.advance, h, s, x, dx, t, s)
                if ok is not None:
                    s2 = keep(ok, s2, s)
                d2 = _precise(self.output, h, s2, x, dx, t, dx)
            else:
                s2, d2 = self.apply_precise(h, s, x, dx, t)
                if ok is not None:
                    s2 = keep(ok, s2, s)
            new_s.append(s2)
            new_d.append(d2)
        return new_s, new_d, ts, live

    def apply_precise(self, h: Hyper, state: Any, x: Any, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        """`apply` with half-precision arrays computed in float32 and the
        results returned in their own dtypes (the state keeps its dtype).

        In bfloat16, 0.999 rounds to 1, so Adam's `1 - b2` would be 0;
        Optimisers.jl computes in the array's type and floors `epsilon` at
        1e-7 for float16, which we keep, since the state is stored in float16.
        """
        return _precise(self.apply, h, state, x, dx, t, (state, dx))

    def resolve(self, h: Hyper, t: jax.Array) -> Hyper:
        """`h` with every scheduled hyperparameter evaluated at step `t - 1`
        (optax's convention: the first update sees `schedule(0)`), unless
        `adjust` has since written a number in its place."""
        sched = self.schedules()
        if not sched:
            return h
        h = dict(h)
        for n, fn in sched:
            v = h[n]
            h[n] = jnp.where(jnp.isnan(v), jnp.asarray(fn(t - 1), v.dtype), v)
        return h

    def t_after(self, h: Hyper, t: Any) -> Any:
        """The step count the rules after this one in a chain see (AccumGrad changes it)."""
        return t

    # --- hyperparameters as data -------------------------------------------

    def rules(self) -> tuple[Rule, ...]:
        """The simple rules inside this one (itself, or a chain's members)."""
        return (self,)

    def schedules(self) -> tuple[tuple[str, Callable], ...]:
        """(name, schedule) of each hyperparameter given as a function of the step."""
        return tuple((n, getattr(self, n)) for n in self.hyper if callable(getattr(self, n)))

    def uses_params(self) -> bool:
        """Whether some rule inside reads the parameter (optax's `params` is then required)."""
        return any(r.needs_params for r in self.rules())

    def slots(self) -> tuple[tuple[str, int], ...]:
        """(name, width) of each hyperparameter, in table order."""
        out = []
        for n in self.hyper:
            v = getattr(self, n)
            out.append((n, len(v) if isinstance(v, tuple) else 1))
        return tuple(out)

    def width(self) -> int:
        """The number of table columns this rule uses."""
        return sum(w for _, w in self.slots())

    def row(self) -> list[float]:
        """The hyperparameter values, flattened into one table row (NaN for a schedule)."""
        out: list[float] = []
        for n in self.hyper:
            v = getattr(self, n)
            if callable(v):
                out.append(math.nan)
            else:
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
            if w == 1 and math.isnan(vals[0]) and callable(getattr(self, n)):
                pass  # the schedule is in force
            else:
                conv = self.types.get(n, float)
                vals = tuple(conv(v) for v in vals)
                new.__dict__[n] = vals[0] if w == 1 else vals
            offset += w
        return new

    def key(self) -> tuple:
        """What the compiled program depends on: the type, static options,
        slot widths and schedules, never the hyperparameter values."""
        return (type(self), tuple(getattr(self, s) for s in self.static), self.slots(), self.schedules())

    def checks(self) -> bool:
        """Whether this rule raises on a non-finite norm (so `update` must look)."""
        return any(getattr(r, "throw", False) for r in self.rules())

    # --- construction helpers -----------------------------------------------

    def check_eta(self, eta: Any, name: str = "eta", schedule: bool = True) -> Any:
        """A learning rate: a number >= 0, or (if `schedule`) a function of the step count."""
        if schedule and callable(eta) and not isinstance(eta, (jax.Array, np.ndarray)):
            return eta
        return self.check(name, eta, lambda v: v >= 0 and math.isfinite(v), "must be a finite number >= 0"
                          + (" or an optax schedule" if schedule else ""))

    def check(self, name: str, value: Any, ok: Callable[[float], bool], what: str) -> float:
        """`float(value)` if it is a number for which `ok` holds, else a
        ValueError naming the rule, the argument and the requirement."""
        if not _is_number(value) or not ok(float(value)):
            raise ValueError(f"{type(self).__name__}: {name}={value!r} {what}")
        return float(value)

    def check_pair(self, name: str, value: Any, ok: Callable[[float], bool], what: str) -> tuple[float, float]:
        """A pair of numbers for which `ok` holds (like `beta=(0.9, 0.999)`)."""
        if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_number(v) for v in value):
            raise ValueError(f"{type(self).__name__}: {name} must be a pair of numbers, got {value!r}")
        if not all(ok(float(v)) for v in value):
            raise ValueError(f"{type(self).__name__}: {name}={tuple(value)!r} {what}")
        return (float(value[0]), float(value[1]))

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
        """optax: `(updates, new_state)` for a whole pytree. Global rules
        (ClipGlobalNorm) see every array.

        optax adds updates, so an optimiser's are `-dx`; a gradient
        transformation's (ClipGrad, ClipNorm, WeightDecay, AccumGrad, ...) are
        `dx`, as optax's own `clip` or `add_decayed_weights`, so that
        `optax.chain(fl.ClipGrad(1.0), optax.adam(1e-3))` works as well as
        `optax.chain(optax.clip(1.0), fl.Adam())`. Between emissions, AccumGrad
        passes on zeros (optax.MultiSteps wraps the optimiser instead).

        Example:
            >>> import jax.numpy as jnp, fluxlike as fl
            >>> opt = fl.Momentum(0.1, 0.9)
            >>> params = {"a": jnp.ones(2), "b": jnp.zeros(())}
            >>> st = opt.init(params)
            >>> upd, st = opt.update({"a": jnp.ones(2), "b": jnp.ones(())}, st, params)
            >>> upd["a"], st.count
            (Array([-0.1, -0.1], dtype=float32), Array(1, dtype=int32))
        """
        leaves_u, treedef = jax.tree.flatten(updates)
        if params is None:
            if self.uses_params():
                names = sorted({type(r).__name__ for r in self.rules() if r.needs_params})
                raise ValueError(
                    f"{', '.join(names)} reads the parameters: call update(grads, state, params), "
                    "as optax's add_decayed_weights needs"
                )
            leaves_p = [None] * len(leaves_u)
        else:
            leaves_p = treedef.flatten_up_to(params)
        leaves_s = treedef.flatten_up_to(state.inner)
        t = state.count + 1
        h = self.read(state.hyper)[0]
        n = len(leaves_u)
        new_s, dxs, _, live = self.run([h] * n, leaves_s, leaves_p, leaves_u, [t] * n, [None] * n, Ctx(n, False))
        out = [d if ok is None else jnp.where(ok, d, jnp.zeros_like(d)) for d, ok in zip(dxs, live)]
        if self.descent:
            out = [-d for d in out]
        return (
            jax.tree.unflatten(treedef, out),
            RuleState(t, state.hyper, jax.tree.unflatten(treedef, new_s)),
        )


class HVec:
    """The hyperparameters of several Leafs as vectors, one entry per Leaf
    (what `update` reads from the table, a column at a time). Indexing gives
    one Leaf's `h`, whose entries are sliced out only when a rule reads them."""

    __slots__ = ("vec", "n")

    def __init__(self, vec: Any, n: int) -> None:
        self.vec, self.n = vec, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> Any:
        return _leaf_h(self.vec, k)

    def __iter__(self) -> Any:
        return (self[k] for k in range(self.n))

    def member(self, j: int) -> HVec:
        """A chain member's hyperparameters."""
        return HVec(self.vec[j], self.n)


class _LazyH(dict):
    """One Leaf's `h`: entries of the vectors, sliced when first read."""

    __slots__ = ("_vec", "_k")

    def __init__(self, vec: dict, k: int) -> None:
        super().__init__()  # empty until read
        self._vec, self._k = vec, k

    def __missing__(self, name: str) -> Any:
        v = jax.tree.map(lambda a: a[self._k], self._vec[name])
        self[name] = v
        return v

    def __contains__(self, name: object) -> bool:
        return name in self._vec

    def keys(self) -> Any:
        return self._vec.keys()

    def __iter__(self) -> Any:
        return iter(self._vec)

    def __len__(self) -> int:
        return len(self._vec)

    def items(self) -> Any:
        return ((n, self[n]) for n in self._vec)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self._vec else default


def _leaf_h(vec: Any, k: int) -> Any:
    if isinstance(vec, dict):
        return _LazyH(vec, k)
    return [_leaf_h(v, k) for v in vec]  # a chain: one h per member


def _prepared(rule: Rule, hs: Any, ts: Any) -> Any:
    """`rule.prepare` on all Leafs at once, as vectors; each Leaf then reads
    its own entries (the table is read a column at a time, not a Leaf at a time)."""
    if not len(hs):
        return hs
    tv = ts if isinstance(ts, jax.Array) and ts.ndim == 1 else jnp.stack([jnp.asarray(t) for t in ts])
    if isinstance(hs, HVec):
        hv = hs.vec
    else:
        hv = jax.tree.map(lambda *v: jnp.stack([jnp.asarray(e) for e in v]), *hs)
    return HVec(rule.prepare(hv, tv), len(hs))


def _precise(fn: Callable, h: Hyper, state: Any, x: Any, dx: jax.Array, t: jax.Array, like: Any) -> Any:
    """`fn(h, state, x, dx, t)` with half-precision arrays computed in float32
    (epsilon floored at 1e-7 for float16, as Optimisers.jl), the result cast
    back to the dtypes of `like`."""
    lo = dx.dtype
    if jnp.dtype(lo) == jnp.float16 and "epsilon" in h:
        e = h["epsilon"]
        h = {**h, "epsilon": jnp.where(e == 0, e, jnp.maximum(e, 1e-7))}
    hi = jnp.promote_types(lo, jnp.float32)
    if hi == lo:
        return fn(h, state, x, dx, t)
    up = lambda a: a.astype(hi) if jnp.issubdtype(a.dtype, jnp.floating) else a
    out = fn(h, jax.tree.map(up, state), None if x is None else up(x), up(dx), t)
    return jax.tree.map(lambda a, old: a.astype(old.dtype), out, like)


def cast(h: Any, dtype: Any) -> Any:
    """Hyperparameters in the parameter's dtype (Optimisers.jl's `T(o.eta)`)."""
    if isinstance(h, tuple):
        return tuple(cast(e, dtype) for e in h)
    return jnp.asarray(h, dtype)


def corrections(h: Hyper, t: jax.Array, dtype: Any) -> tuple[jax.Array, ...]:
    """Adam's bias corrections `(1/(1-b1^t), 1/(1-b2^t))` in `dtype`."""
    if "1/(1-beta^t)" in h:
        return tuple(jnp.asarray(c).astype(dtype) for c in h["1/(1-beta^t)"])
    return tuple(1 / (1 - b) for b in powers(h, t, dtype))


def powers(h: Hyper, t: jax.Array, dtype: Any) -> tuple[jax.Array, ...]:
    """`(b1^t, b2^t)` (the running products of `beta` in Optimisers.jl) in
    `dtype`: from `prepare` when it ran, else computed here in at least float32."""
    if "beta^t" in h:
        return tuple(jnp.asarray(b).astype(dtype) for b in h["beta^t"])
    hi = jnp.promote_types(dtype, jnp.float32)
    return tuple((jnp.asarray(b, hi) ** jnp.asarray(t).astype(hi)).astype(dtype) for b in h["beta"])
