"""The batch engine: a rule applied to all the Leafs one update changes, at once.

`update` hands a rule a `Batch` (the hyperparameters as vectors, and per
Leaf its state, parameter, gradient, step count and whether it updates) and
gets one back. `Rule.run(batch, ctx)` is that step; its default, `each`,
applies the rule's per-array `apply` (or `advance`/`output`) to every Leaf.
Rules that need all arrays at once (ClipGlobalNorm), a report (ClipNorm) or
that hold later rules back (AccumGrad) override `run`; a chain folds its
members' `run` over the batch.

Per-step scalars derived from the hyperparameters (schedules' values, Adam's
`beta^t` and bias corrections) are computed here once for all Leafs, as
vectors: one small kernel instead of one per Leaf.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from . import _table

__all__ = ["Batch", "Ctx", "Derived", "H", "HVec", "each", "keep", "per_leaf", "select"]


class Batch(NamedTuple):
    """What one rule sees in one update: per Leaf (lists of one length),

    - `h`: the hyperparameters (an `HVec`, or a list of `h` dicts),
    - `states`: the rule's states,
    - `xs`, `dxs`: the parameters and the incoming gradients,
    - `ts`: the 1-based step counts,
    - `live`: None (always updating) or a boolean scalar, False where the
      Leaf is frozen or an AccumGrad before this rule is still accumulating
      (the state is then kept bit-identical).

    A rule's `run` returns the batch with new `states` and `dxs` (and, for
    AccumGrad, the `ts` and `live` the rules after it see).
    """

    h: Any
    states: list
    xs: list
    dxs: list
    ts: Any
    live: list

    def member(self, j: int) -> Batch:
        """The part of a chain's batch that its `j`-th member sees."""
        h = self.h.member(j) if isinstance(self.h, HVec) else [h[j] for h in self.h]
        return self._replace(h=h, states=[s[j] for s in self.states])


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


class Derived(NamedTuple):
    """Adam's per-step scalars for one Leaf: `powers = (b1^t, b2^t)` and the
    bias corrections `corrections = (1/(1-b1^t), 1/(1-b2^t))`."""

    powers: tuple
    corrections: tuple


class H(dict):
    """One Leaf's hyperparameters, `{name: scalar}` (pairs as tuples), plus
    the `derived` scalars the engine computed for it (None if none)."""

    derived: Derived | None = None


class HVec:
    """The hyperparameters of several Leafs as vectors, one entry per Leaf
    (what `update` reads from the table, a column at a time). Indexing gives
    one Leaf's `h`; a column a rule reads is split into its Leafs' scalars
    once, by one `unstack` (indexing each Leaf's entry would be two traced
    equations per Leaf and hyperparameter, a third of a deep model's step)."""

    __slots__ = ("vec", "derived", "n", "_columns", "_derived", "_members")

    def __init__(self, vec: Any, n: int, derived: Derived | None = None) -> None:
        self.vec, self.n, self.derived = vec, n, derived
        self._columns: dict = {}
        self._derived: Any = None
        self._members: list | None = None  # a chain's, made once

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, k: int) -> Any:
        if isinstance(self.vec, dict):
            return _LazyH(self, k)
        return [m[k] for m in self.members()]  # a chain: one h per member

    def __iter__(self) -> Any:
        return (self[k] for k in range(self.n))

    def member(self, j: int) -> HVec:
        """A chain member's hyperparameters."""
        return self.members()[j]

    def members(self) -> list[HVec]:
        if self._members is None:
            self._members = [HVec(v, self.n) for v in self.vec]
        return self._members

    def column(self, name: str) -> Any:
        """Hyperparameter `name` of every Leaf: its vectors split into lists of scalars."""
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = jax.tree.map(lambda a: per_leaf(a, self.n), self.vec[name])
        return col

    def derived_column(self) -> Any:
        """The `Derived` scalars of every Leaf, split like `column`."""
        if self._derived is None and self.derived is not None:
            self._derived = jax.tree.map(lambda a: per_leaf(a, self.n), self.derived)
        return self._derived


def per_leaf(v: Any, n: int) -> list:
    """A vector over the Leafs as a list of scalars, split by one traced
    equation; a list stays as it is and a scalar is shared."""
    if isinstance(v, list):
        return v
    if jnp.ndim(v) == 0:
        return [v] * n
    return list(jnp.unstack(v)) if n > 1 else [jnp.reshape(v, ())]


def _pick(col: Any, k: int) -> Any:
    return jax.tree.map(lambda c: c[k], col, is_leaf=lambda c: isinstance(c, list))


class _LazyH(H):
    """One Leaf's `h`: its entries of the split columns, taken when first read."""

    __slots__ = ("_hv", "_k", "_mine")

    def __init__(self, hv: HVec, k: int) -> None:
        super().__init__()  # empty until read
        self._hv, self._k, self._mine = hv, k, None

    @property  # type: ignore[override]
    def derived(self) -> Derived | None:
        """This Leaf's entries of the derived vectors."""
        if self._mine is None and self._hv.derived is not None:
            self._mine = _pick(self._hv.derived_column(), self._k)
        return self._mine

    def __missing__(self, name: str) -> Any:
        v = _pick(self._hv.column(name), self._k)
        self[name] = v
        return v

    def __contains__(self, name: object) -> bool:
        return name in self._hv.vec

    def keys(self) -> Any:
        return self._hv.vec.keys()

    def __iter__(self) -> Any:
        return iter(self._hv.vec)

    def __len__(self) -> int:
        return len(self._hv.vec)

    def items(self) -> Any:
        return ((n, self[n]) for n in self._hv.vec)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self._hv.vec else default


# ---------------------------------------------------------------------------
# the default run: the per-array step on every Leaf


def each(rule: Any, batch: Batch, ctx: Ctx) -> Batch:
    """`rule`'s per-array step on every Leaf of `batch` (the default `Rule.run`).

    A rule with `advance`/`output` keeps a frozen Leaf's state before the
    output reads it, which lets XLA update the state in place."""
    hs = prepared(rule, batch.h, batch.ts)
    split = rule.split
    new_s, new_d = [], []
    ts = per_leaf(batch.ts, len(batch.xs))
    for h, s, x, dx, t, ok in zip(hs, batch.states, batch.xs, batch.dxs, ts, batch.live):
        if split:
            s2 = precise(rule.advance, h, s, x, dx, t, s)
            if ok is not None:
                s2 = keep(ok, s2, s)
            d2 = precise(rule.output, h, s2, x, dx, t, dx)
        else:
            s2, d2 = precise(rule.apply, h, s, x, dx, t, (s, dx))
            if ok is not None:
                s2 = keep(ok, s2, s)
        new_s.append(s2)
        new_d.append(d2)
    return batch._replace(states=new_s, dxs=new_d)


def prepared(rule: Any, hs: Any, ts: Any) -> HVec:
    """The batch's hyperparameters as vectors over its Leafs, schedules
    evaluated and Adam's `Derived` scalars computed once for all Leafs
    (the table is read a column at a time, not a Leaf at a time)."""
    n = len(hs)
    if not n:
        return HVec({}, 0)
    tv = ts if isinstance(ts, jax.Array) and ts.ndim == 1 else jnp.stack([jnp.asarray(t) for t in ts])
    if isinstance(hs, HVec):
        hv = hs.vec
    else:
        hv = jax.tree.map(lambda *v: jnp.stack([jnp.asarray(e) for e in v]), *hs)
    hv = resolve(rule, hv, tv)
    derived = None
    if "beta" in rule.hyper and isinstance(hv.get("beta"), tuple):
        tt = tv.astype(jnp.promote_types(hv["beta"][0].dtype, jnp.float32))
        bt = tuple(jnp.asarray(b, tt.dtype) ** tt for b in hv["beta"])
        derived = Derived(bt, tuple(1 / (1 - b) for b in bt))
    return HVec(hv, n, derived)


def resolve(rule: Any, h: dict, t: jax.Array) -> dict:
    """`h` with every scheduled hyperparameter evaluated at step `t - 1`
    (optax's convention: the first update sees `schedule(0)`), unless
    `adjust` has since written a number in its place (the table holds NaN
    while the schedule is in force)."""
    sched = _table.schedules(rule)
    if not sched:
        return h
    h = dict(h)
    for n, fn in sched:
        v = h[n]
        h[n] = jnp.where(jnp.isnan(v), jnp.asarray(fn(t - 1), v.dtype), v)
    return h


def precise(fn: Callable, h: Any, state: Any, x: Any, dx: jax.Array, t: jax.Array, like: Any) -> Any:
    """`fn(h, state, x, dx, t)` with half-precision arrays computed in float32,
    the result cast back to the dtypes of `like` (the state keeps its dtype).

    In bfloat16, 0.999 rounds to 1, so Adam's `1 - b2` would be 0;
    Optimisers.jl computes in the array's type and floors `epsilon` at 1e-7
    for float16, which we keep, since the state is stored in float16."""
    lo = dx.dtype
    if jnp.dtype(lo) == jnp.float16 and "epsilon" in h:
        e = h["epsilon"]
        derived = getattr(h, "derived", None)
        h = H({**h, "epsilon": jnp.where(e == 0, e, jnp.maximum(e, 1e-7))})
        h.derived = derived
    hi = jnp.promote_types(lo, jnp.float32)
    if hi == lo:
        return fn(h, state, x, dx, t)
    up = lambda a: a.astype(hi) if jnp.issubdtype(a.dtype, jnp.floating) else a
    out = fn(h, jax.tree.map(up, state), None if x is None else up(x), up(dx), t)
    return jax.tree.map(lambda a, old: a.astype(old.dtype), out, like)


def keep(ok: jax.Array, new: Any, old: Any) -> Any:
    """`new` where `ok`, else `old`, leaf by leaf (a skipped step keeps its state bit-identical)."""
    return jax.tree.map(lambda n, o: select(ok, n, o), new, old)


def select(ok: jax.Array, new: jax.Array, old: jax.Array) -> jax.Array:
    """`where(ok, new, old)` for a scalar `ok` and arrays of one shape and
    dtype: `lax.select_n` with the scalar predicate, one traced equation
    (`jnp.where` is a nested jitted call and broadcasts `ok` first, which
    costs compile time on deep models)."""
    if new is old:
        return new
    return jax.lax.select_n(ok, old, new)
