"""What an OptState's storage is and how it changes: one protocol, two engines.

An `OptState` holds three arrays (the rule states, a float table of
hyperparameters with a row per Leaf, an int32 table of `[step count, frozen]`
rows) and a static spec holding an `Engine`. The engine decides what the
first two mean:

- `RuleEngine` (here): a fluxlike rule. One rule state per Leaf; the
  hyperparameter table is the rule's row per Leaf (`_table.py`), so every
  Leaf can be adjusted on its own.
- `OptaxEngine` (`optax_rule.py`): an optax transformation. One optax state
  for the whole model; the table is empty, and hyperparameters injected with
  `optax.inject_hyperparams` live in the optax state.

`state.py` (setup, update) and `adjust.py` (adjust, freeze, learning_rate)
call only the methods of `Engine`. Engines are static: equal engines compile
to the same program, so they compare by `key`, never by hyperparameter values.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import _table
from ._batch import Batch, Ctx, HVec, per_leaf, resolve, select

__all__ = ["Engine", "RuleEngine", "Update", "scatter"]


class Update(NamedTuple):
    """One update as `update` hands it to an engine.

    - `active`: the Leaf numbers that have a gradient; `sel` indexes their
      table rows (a slice when every Leaf is active);
    - `xs`, `dxs`: their parameters and gradients (tied places summed);
    - `ts`: their 1-based step counts; `frozen`: their frozen flags (a
      vector, already True everywhere when the step is skipped);
    - `ok`: None, or a scalar that skips the whole step when False;
    - `params`: every Leaf's parameter (an optax transformation sees them all);
    - `collect`: whether to report non-finite norms.
    """

    active: list
    sel: Any
    xs: list
    dxs: list
    ts: jax.Array
    frozen: jax.Array
    ok: Any
    params: list
    collect: bool


class Engine:
    """The protocol. `states` and `table` are the OptState's arrays, `rows`
    are Leaf numbers, `fn` is the public function's name for error messages."""

    #: whether `step` may report a non-finite norm (then `update` looks, one sync)
    checks: bool = False

    def key(self) -> tuple:
        """What the compiled program depends on."""
        raise NotImplementedError

    def setup(self, xs: list) -> tuple[Any, jax.Array]:
        """`(states, table)` for the Leafs' arrays `xs`."""
        raise NotImplementedError

    def step(self, states: Any, table: jax.Array, u: Update) -> tuple[Any, list, Any]:
        """One update: `(states, new arrays of the active Leafs, report)`;
        `report` is None or `(bad, norm)` vectors over all Leafs."""
        raise NotImplementedError

    def adjust(self, states: Any, table: jax.Array, rows: list, eta: Any, hyper: dict, fn: str) -> tuple[Any, jax.Array]:
        """`(states, table)` with hyperparameters set on the Leafs `rows`."""
        raise NotImplementedError

    def describe(self, states: Any, table: Any, i: int) -> Any:
        """The rule of Leaf `i` holding its current hyperparameters (for printing)."""
        raise NotImplementedError

    def leaf_state(self, states: Any, i: int) -> Any:
        """Leaf `i`'s part of the states."""
        raise NotImplementedError

    def learning_rate(self, states: Any, table: Any, counts: Any, rows: list, fn: str) -> float:
        """The learning rate the next update of the Leafs `rows` uses."""
        raise NotImplementedError

    def raise_bad(self, report: Any) -> None:
        """Raise if `step`'s report says a rule met a non-finite norm."""

    def __eq__(self, other: object) -> bool:
        return self is other or (type(other) is type(self) and self.key() == other.key())

    def __hash__(self) -> int:
        return hash(self.key())


class RuleEngine(Engine):
    """A fluxlike rule over the state tree: per-Leaf states and table rows."""

    def __init__(self, rule: Any, paths: tuple) -> None:
        self.rule, self.paths = rule, paths
        self.checks = _table.checks(rule)
        self._key = (RuleEngine, _table.key(rule))

    def key(self) -> tuple:
        return self._key

    def setup(self, xs: list) -> tuple[Any, jax.Array]:
        states = tuple(self.rule.state(x) for x in xs)
        row = _table.row(self.rule)
        table = np.asarray([row] * len(xs), dtype=np.float64).reshape(len(xs), len(row))
        return states, jnp.asarray(table, jnp.result_type(float))

    def step(self, states: Any, table: jax.Array, u: Update) -> tuple[Any, list, Any]:
        rule, active, sel, xs = self.rule, u.active, u.sel, u.xs
        rows = table if isinstance(sel, slice) else table[sel]
        h = HVec(_table.read(rule, rows.T)[0], len(active))  # a column at a time, not a Leaf at a time
        ctx = Ctx(len(active), u.collect and self.checks)
        batch = Batch(h, [states[i] for i in active], xs, u.dxs, u.ts, per_leaf(~u.frozen, len(active)))
        out = rule.run(batch, ctx)
        new = list(states)
        new_xs = []
        for k, i in enumerate(active):
            new[i] = out.states[k]
            new_xs.append(select(out.live[k], (xs[k] - out.dxs[k]).astype(xs[k].dtype), xs[k]))
        report = None
        if ctx.bad is not None:
            n, no = len(self.paths), jnp.zeros((), bool)
            bad = jnp.zeros(n, bool).at[sel].set(jnp.stack([no if b is None else b for b in ctx.bad]))
            nrm = jnp.zeros(n).at[sel].set(jnp.stack([0.0 if v is None else v for v in ctx.norm]))
            report = (bad, nrm)
        return tuple(new), new_xs, report

    def raise_bad(self, report: Any) -> None:
        """Optimisers.jl's DomainError, before anything changes (one sync, only
        for rules with `throw=True`)."""
        if report is None:
            return
        bad, nrm = jax.device_get(report)
        if not bad.any():
            return
        i = int(np.argmax(bad))
        throwing = [r for r in _table.flat(self.rule) if getattr(r, "throw", False)]
        names = " or ".join(dict.fromkeys(type(r).__name__ for r in throwing))
        where = "of the whole model" if all(type(r).__name__ == "ClipGlobalNorm" for r in throwing) \
            else f"at model{self.paths[i]}"
        raise FloatingPointError(
            f"{names}: the gradient {where} has {throwing[0].p}-norm {float(nrm[i])}; nothing was updated. "
            "Pass throw=False to scale it anyway."
        )

    def adjust(self, states: Any, table: jax.Array, rows: list, eta: Any, hyper: dict, fn: str) -> tuple[Any, jax.Array]:
        r, c, v = self._assignments(rows, eta, hyper, fn)
        if r:
            table = scatter(table, np.asarray(r, np.int32), np.asarray(c, np.int32), np.asarray(v, table.dtype))
        return states, table

    def _assignments(self, rows: list, eta: Any, hyper: dict, fn: str) -> tuple[list, list, list]:
        """The table entries `(rows, columns, values)` that `hyper` sets."""
        if eta is not None:
            hyper = {"eta": eta, **hyper}
        if not hyper:
            raise TypeError(
                f"{fn}: give a learning rate, {fn}(state, 0.01), or hyperparameters by name, "
                f"{fn}(state, beta=(0.8, 0.99))"
            )
        rules = _table.flat(self.rule)
        cols, found = [], {n: False for n in hyper}  # (column, value) pairs, the same for every row
        offset = 0
        for r in rules:
            for n in r.static:
                if n in hyper:
                    _validated(r, n, hyper[n], fn)
            for n, w in _table.slots(r):
                if n in hyper:
                    v = _validated(r, n, hyper[n], fn)
                    vs = v if isinstance(v, tuple) else (v,)
                    if len(vs) != w:
                        raise ValueError(f"{fn}: {type(r).__name__}'s {n} has {w} values, got {hyper[n]!r}")
                    cols.extend((offset + k, float(e)) for k, e in enumerate(vs))
                    found[n] = True
                offset += w
        missing = [n for n, ok in found.items() if not ok]
        if missing and rows:
            names = sorted({n for r in rules for n, _ in _table.slots(r)})
            raise ValueError(
                f"{fn}: no rule in this part of the state has {', '.join(missing)}; "
                f"its rules ({', '.join(sorted({type(r).__name__ for r in rules}))}) have "
                f"{', '.join(names) or 'no hyperparameters'}"
            )
        r_idx = [i for i in rows for _ in cols]
        return r_idx, [c for _ in rows for c, _ in cols], [v for _ in rows for _, v in cols]

    def describe(self, states: Any, table: Any, i: int) -> Any:
        return _table.with_row(self.rule, np.asarray(table)[i])

    def leaf_state(self, states: Any, i: int) -> Any:
        return states[i]

    def learning_rate(self, states: Any, table: Any, counts: Any, rows: list, fn: str) -> float:
        table, counts = np.asarray(table), np.asarray(counts)
        found: dict[float, list[str]] = {}
        for i in rows:
            t, offset, etas = int(counts[i, 0]) + 1, 0, []
            for r in _table.flat(self.rule):
                h, end = _table.read(r, table[i], offset)
                if "eta" in h:
                    v = float(h["eta"])
                    etas.append(float(resolve(r, h, jnp.asarray(t, jnp.int32))["eta"]) if math.isnan(v) else v)
                t = int(r.t_after(h, t))
                offset = end
            if len(etas) != 1:
                what = "several rules with eta" if etas else "no rule with eta"
                raise ValueError(f"{fn}: the rule at {self.paths[i] or '(root)'} has {what}: {self.rule!r}")
            found.setdefault(float(np.asarray(etas[0], table.dtype)), []).append(self.paths[i])
        if len(found) != 1:
            if not found:
                raise ValueError(f"{fn}: this part of the state has no Leafs")
            parts = "; ".join(f"{v} at {', '.join(p)}" for v, p in found.items())
            raise ValueError(f"{fn}: the Leafs here have different learning rates ({parts}); ask a smaller part")
        return _table.pyfloat(np.asarray(next(iter(found)), table.dtype))


def _validated(rule: Any, name: str, value: Any, fn: str) -> Any:
    """`value` checked the way the rule's constructor checks it, as table
    entries (a tuple for pairs; NaN to bring back the rule's own schedule)."""
    if name in rule.static:
        raise ValueError(
            f"{fn}: {type(rule).__name__}'s {name} is fixed when the state is set up (it changes the "
            f"compiled step); call fl.setup again with {type(rule).__name__}(..., {name}={value!r})"
        )
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray)):
        if getattr(rule, name) is value:
            return math.nan  # back to the schedule given at setup
        raise ValueError(
            f"{fn}: {name}={value!r} is a schedule; schedules are part of the compiled step and are "
            "fixed at setup. Give a number to replace the schedule by a constant (no recompilation), "
            f"or call fl.setup again with {type(rule).__name__}({name}=schedule)"
        )
    if isinstance(value, jax.core.Tracer):
        raise TypeError(
            f"{fn}: {name} is a traced value; adjust takes numbers, outside jax.jit. For a rate "
            "that changes inside a compiled step, give an optax schedule as eta"
        )
    kwargs = {n: getattr(rule, n) for n in (*rule.hyper, *rule.static)}
    kwargs[name] = value
    new = type(rule)(**kwargs)
    return getattr(new, name)


@jax.jit
def scatter(table: jax.Array, rows: Any, cols: Any, vals: Any) -> jax.Array:
    """`table` with `vals` at `(rows, cols)`; the indices are arguments, so
    this compiles once per number of entries, not once per pattern."""
    return table.at[rows, cols].set(vals.astype(table.dtype))
