"""The rules that compose with an optimiser in an `OptimiserChain`: weight
and sign decay, clipping (per array and global), gradient accumulation, and
the chain itself. Same protocol and conventions as `rules.py`."""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ._batch import Batch, Ctx, keep, per_leaf
from .rule import Hyper, Rule, cast
from .rules import Out, _nonneg, _zeros

__all__ = ["WeightDecay", "SignDecay", "ClipGrad", "ClipNorm", "ClipGlobalNorm", "AccumGrad", "OptimiserChain"]


# ---------------------------------------------------------------------------
# rules to compose with others


class WeightDecay(Rule):
    """L2 regularisation: `dx = dx + lambd*x` (Optimisers.jl's `lambda`); put
    it first in an OptimiserChain so that the next rule scales it.

    Args:
        lambd: decay, >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.OptimiserChain(fl.WeightDecay(0.42), fl.Adam(0.1))
        OptimiserChain(WeightDecay(lambd=0.42), Adam(eta=0.1, beta=(0.9, 0.999), epsilon=1e-08))
    """

    descent = False
    hyper = ("lambd",)
    needs_params = True

    def __init__(self, lambd: float = 5e-4) -> None:
        self.lambd = self.check("lambd", lambd, _nonneg, "must be >= 0")

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        return state, dx + cast(h["lambd"], dx.dtype) * x.astype(dx.dtype)


class SignDecay(Rule):
    """L1 regularisation: `dx = dx + lambd*sign(x)`.

    Args:
        lambd: decay, >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.SignDecay()
        SignDecay(lambd=0.001)
    """

    descent = False
    hyper = ("lambd",)
    needs_params = True

    def __init__(self, lambd: float = 1e-3) -> None:
        self.lambd = self.check("lambd", lambd, _nonneg, "must be >= 0")

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        return state, dx + cast(h["lambd"], dx.dtype) * jnp.sign(x).astype(dx.dtype)


class ClipGrad(Rule):
    """Clamps each gradient entry to `[-delta, delta]` (NaN passes through).

    Args:
        delta: the bound, >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.ClipGrad(0.5)
        ClipGrad(delta=0.5)
    """

    descent = False
    hyper = ("delta",)

    def __init__(self, delta: float = 10.0) -> None:
        self.delta = self.check("delta", delta, lambda v: v >= 0, "must be >= 0")

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        d = cast(h["delta"], dx.dtype)
        return state, jnp.clip(dx, -d, d)


# --- norms ---------------------------------------------------------------------


def _partial(dx: jax.Array, p: float) -> jax.Array:
    """One array's share of a p-norm, in at least float32."""
    a = jnp.abs(dx).astype(jnp.promote_types(dx.dtype, jnp.float32))
    if a.size == 0:
        return _identity(p, a.dtype)
    if p == 2:
        return jnp.sum(a * a)
    if p == 1:
        return jnp.sum(a)
    if p == math.inf:
        return jnp.max(a)
    if p == -math.inf:
        return jnp.min(a)
    if p == 0:
        return jnp.count_nonzero(a).astype(a.dtype)
    return jnp.sum(a**p)


def _identity(p: float, dtype: Any) -> jax.Array:
    return jnp.asarray(math.inf if p == -math.inf else 0, dtype)


def _combine(parts: list, p: float) -> jax.Array:
    dtype = jnp.result_type(*parts)
    parts = jnp.stack([jnp.asarray(q, dtype) for q in parts])
    if p == math.inf:
        return jnp.max(parts)
    if p == -math.inf:
        return jnp.min(parts)
    total = jnp.sum(parts)
    if p == 2:
        return jnp.sqrt(total)
    return total if p in (0, 1) else total ** (1 / p)


def _clipped(omega: Any, nrm: jax.Array, dx: jax.Array, throw: bool) -> jax.Array:
    """`dx * min(omega/nrm, 1)`; NaN everywhere if `throw` and the norm is not finite."""
    scale = jnp.minimum(jnp.asarray(omega, nrm.dtype) / nrm, 1).astype(dx.dtype)
    out = dx * scale
    return jnp.where(jnp.isfinite(nrm), out, jnp.nan) if throw else out


def _raise_now(bad: jax.Array, what: str, p: float, nrm: jax.Array) -> None:
    """Raise at once when the values are concrete (outside jax.jit)."""
    if not isinstance(bad, jax.core.Tracer) and bool(bad):
        raise FloatingPointError(
            f"{what} has {p}-norm {float(nrm)}; nothing was updated. Pass throw=False to scale it anyway."
        )


class _NormRule(Rule):
    descent = False
    hyper = ("omega",)
    static = ("p", "throw")

    def __init__(self, omega: float = 10.0, p: float = 2.0, *, throw: bool = True) -> None:
        self.omega = self.check("omega", omega, lambda v: v >= 0, "must be >= 0")
        if not _is_real(p):
            raise ValueError(f"{type(self).__name__}: p={p!r} must be a number (2, 1, inf, ...)")
        self.p = float(p)
        self.throw = bool(throw)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        nrm = _combine([_partial(dx, self.p)], self.p)
        if self.throw:
            _raise_now(~jnp.isfinite(nrm), f"{type(self).__name__}: a gradient of shape {tuple(dx.shape)}", self.p, nrm)
        return state, _clipped(h["omega"], nrm, dx, self.throw)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and not math.isnan(v)


class ClipNorm(_NormRule):
    """Scales each gradient array down so that its `p`-norm is at most `omega`:
    `dx = dx * min(omega/norm(dx, p), 1)`, per array as in Optimisers.jl (see
    ClipGlobalNorm for one norm over the whole model).

    A non-finite norm raises FloatingPointError unless `throw=False`, and
    nothing is updated (to look, `fl.update`/`fl.update_` wait for the step:
    one sync per step, only with `throw=True`). Inside `jax.jit` (your own
    step, or `fl.train_`) nothing can raise: the update of that array
    becomes NaN instead, so that the next loss is NaN and `train_` stops.
    With `throw=False` an infinite norm scales finite entries to 0 (and
    infinite ones to NaN), as in Optimisers.jl. Norms are computed in at
    least float32.

    Args:
        omega: the largest norm kept, >= 0.
        p: which norm (2, 1, inf, -inf, 0 or any other real); fixed at setup.
        throw: raise on a non-finite norm; fixed at setup.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = {"w": jnp.zeros(2)}
        >>> state = fl.setup(fl.ClipNorm(1.0), model)
        >>> fl.update(state, model, {"w": jnp.array([3.0, 4.0])})[1]["w"]
        Array([-0.6, -0.8], dtype=float32)
        >>> try:
        ...     fl.update(state, model, {"w": jnp.array([jnp.inf, 0.0])})
        ... except FloatingPointError as e:
        ...     print(e)
        ClipNorm: the gradient at model['w'] has 2.0-norm inf; nothing was updated. Pass throw=False to scale it anyway.
    """

    def run(self, batch: Batch, ctx: Ctx) -> Batch:
        out = []
        for k, (h, dx, ok) in enumerate(zip(batch.h, batch.dxs, batch.live)):
            nrm = _combine([_partial(dx, self.p)], self.p)
            out.append(_clipped(h["omega"], nrm, dx, self.throw))
            if self.throw:
                bad = ~jnp.isfinite(nrm)
                ctx.report(k, bad if ok is None else bad & ok, nrm)
        return batch._replace(dxs=out)


class ClipGlobalNorm(_NormRule):
    """Scales all gradient arrays by one factor so that their joint `p`-norm
    is at most `omega`: `dx = dx * min(omega/norm(all dx, p), 1)`, as
    `optax.clip_by_global_norm` (p = 2) and `torch.nn.utils.clip_grad_norm_`
    (which divides by `norm + 1e-6`).

    The norm covers the arrays being updated in this step: frozen Leafs and
    None gradients are left out. Each Leaf uses its own `omega` (adjustable
    per part). A non-finite norm behaves as in ClipNorm.

    Args:
        omega: the largest norm kept, >= 0.
        p: which norm (2, 1, inf, ...); fixed at setup.
        throw: raise on a non-finite norm; fixed at setup.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = {"a": jnp.zeros(1), "b": jnp.zeros(1)}
        >>> state = fl.setup(fl.ClipGlobalNorm(1.0), model)
        >>> new = fl.update(state, model, {"a": jnp.array([3.0]), "b": jnp.array([4.0])})[1]
        >>> new["a"], new["b"]
        (Array([-0.6], dtype=float32), Array([-0.8], dtype=float32))
    """

    def run(self, batch: Batch, ctx: Ctx) -> Batch:
        p = self.p
        parts = []
        for dx, ok in zip(batch.dxs, batch.live):
            q = _partial(dx, p)
            parts.append(q if ok is None else jnp.where(ok, q, _identity(p, q.dtype)))
        if not parts:
            return batch
        nrm = _combine(parts, p)
        if self.throw:
            _raise_now(~jnp.isfinite(nrm), "ClipGlobalNorm: the gradient of the whole model", p, nrm)
        out = []
        for k, (h, dx, ok) in enumerate(zip(batch.h, batch.dxs, batch.live)):
            out.append(_clipped(h["omega"], nrm, dx, self.throw))
            if self.throw:
                bad = ~jnp.isfinite(nrm)
                ctx.report(k, bad if ok is None else bad & ok, nrm)
        return batch._replace(dxs=out)


# ---------------------------------------------------------------------------
# accumulation and chains


class AccumGrad(Rule):
    """Accumulates `n` gradients and passes on their mean every `n`-th step;
    in between, the parameter and the state of every later rule in a chain
    stay as they are (Optimisers.jl's `nothing`).

    The counter is the Leaf's step count `t` (no state of its own but the
    sum), so `n` is data and adjustable without recompiling; windows are
    counted from the first step, so change `n` at a step count that both the
    old and the new `n` divide. Rules after it see the count of emitted
    steps, `(t - 1) // n + 1`, so Adam's bias correction advances once per
    window (exactly, while `n` is unchanged). Alone, it applies the mean unscaled.

    Args:
        n: how many gradients to average, an int >= 1.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = {"w": jnp.zeros(1)}
        >>> state = fl.setup(fl.OptimiserChain(fl.AccumGrad(2), fl.Descent(0.1)), model)
        >>> state, model = fl.update(state, model, {"w": jnp.array([1.0])})
        >>> model["w"]
        Array([0.], dtype=float32)
        >>> state, model = fl.update(state, model, {"w": jnp.array([3.0])})
        >>> model["w"]
        Array([-0.2], dtype=float32)
    """

    descent = False
    hyper = ("n",)
    types = {"n": int}

    def __init__(self, n: int) -> None:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
            raise TypeError(f"AccumGrad: n={n!r} must be an int, the number of gradients to average")
        if n <= 0 or n > 2**24:
            raise ValueError(f"AccumGrad: n={n!r} must be between 1 and 2**24 (it accumulates n gradients)")
        self.n = int(n)

    def state(self, x: jax.Array) -> jax.Array:
        return _zeros(x)

    def _n(self, h: Hyper, t: Any) -> Any:
        return jnp.round(jnp.asarray(h["n"])).astype(jnp.asarray(t).dtype)

    def _accumulate(self, h: Hyper, acc: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
        n = self._n(h, t)
        phase = (t - 1) % n
        part = dx / cast(h["n"], dx.dtype)
        acc = jnp.where(phase == 0, part, acc + part)
        return acc, phase == n - 1

    def apply(self, h: Hyper, acc: jax.Array, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        acc, emit = self._accumulate(h, acc, dx, t)
        return acc, jnp.where(emit, acc, jnp.zeros_like(acc))

    def t_after(self, h: Hyper, t: Any) -> Any:
        return (t - 1) // self._n(h, t) + 1

    def run(self, batch: Batch, ctx: Ctx) -> Batch:
        new_s, new_t, new_live = [], [], []
        ts = per_leaf(batch.ts, len(batch.dxs))
        for h, acc, dx, t, ok in zip(batch.h, batch.states, batch.dxs, ts, batch.live):
            hi = jnp.promote_types(acc.dtype, jnp.float32)
            acc2, emit = self._accumulate(h, acc.astype(hi), dx.astype(hi), t)
            acc2 = acc2.astype(acc.dtype)
            new_s.append(acc2 if ok is None else keep(ok, acc2, acc))
            new_t.append(self.t_after(h, t))
            new_live.append(emit if ok is None else ok & emit)
        return batch._replace(states=new_s, dxs=new_s, ts=new_t, live=new_live)


class OptimiserChain(Rule):
    """Applies rules in order, each to the previous one's output (all see the
    same parameter); the empty chain subtracts the gradient itself.

    Args:
        *rules: the rules, e.g. `ClipGrad(1.0), Adam()`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> rule = fl.OptimiserChain(fl.ClipGrad(1.0), fl.Descent(0.1))
        >>> rule
        OptimiserChain(ClipGrad(delta=1.0), Descent(eta=0.1))
        >>> model = {"w": jnp.zeros(3)}
        >>> fl.update(fl.setup(rule, model), model, {"w": jnp.array([0.3, 1.0, 7.0])})[1]["w"]
        Array([-0.03, -0.1 , -0.1 ], dtype=float32)
    """

    def __init__(self, *rules: Rule) -> None:
        for i, r in enumerate(rules):
            if not isinstance(r, Rule):
                raise TypeError(
                    f"OptimiserChain: argument {i} is {r!r}, not a fluxlike rule "
                    "(to mix in optax transformations, use optax.chain(...) and give it to fl.setup)"
                )
        self.opts = tuple(rules)

    @property
    def descent(self) -> bool:  # type: ignore[override]
        return any(r.descent for r in self.opts)

    def state(self, x: jax.Array) -> tuple:
        return tuple(r.state(x) for r in self.opts)

    def run(self, batch: Batch, ctx: Ctx) -> Batch:
        """Optimisers.jl's fold: each member's step on the previous one's output."""
        states, cur = [], batch
        for j, r in enumerate(self.opts):
            cur = r.run(cur._replace(h=batch.h, states=batch.states).member(j), ctx)
            states.append(cur.states)
        return cur._replace(h=batch.h, states=[tuple(s) for s in zip(*states)] if states else [() for _ in batch.dxs])

    def apply(self, h: Any, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        out = self.run(Batch([h], [state], [x], [dx], [t], [None]), Ctx(1, False))
        (s,), (d,), (ok,) = out.states, out.dxs, out.live
        return s, d if ok is None else jnp.where(ok, d, jnp.zeros_like(d))

    def __repr__(self) -> str:
        return f"OptimiserChain({', '.join(map(repr, self.opts))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OptimiserChain) and self.opts == other.opts

    def __hash__(self) -> int:
        return hash(self.opts)
