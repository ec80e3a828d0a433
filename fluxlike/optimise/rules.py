"""The optimisation rules, with Optimisers.jl's formulas, defaults and field names.

Each block: docstring, constructor (validating), `state`, `apply`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from .rule import Hyper, Rule, cast

__all__ = ["Descent", "Momentum", "Adam", "WeightDecay", "ClipGrad", "ClipNorm", "OptimiserChain"]


def _zeros(x: jax.Array) -> jax.Array:
    return jnp.zeros_like(x)


class Descent(Rule):
    """Plain gradient descent: `x -= eta * dx`.

    Example:
        >>> import fluxlike as fl
        >>> fl.Descent(0.01)
        Descent(eta=0.01)
    """

    hyper = ("eta",)

    def __init__(self, eta: float = 0.1) -> None:
        self.eta = self.check_eta(eta)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        return state, cast(h["eta"], dx.dtype) * dx


class Momentum(Rule):
    """Gradient descent with momentum: `v = rho * v + eta * dx; x -= v`
    (Optimisers.jl keeps `eta` inside the velocity).

    Example:
        >>> import fluxlike as fl
        >>> fl.Momentum(0.01, 0.9)
        Momentum(eta=0.01, rho=0.9)
    """

    hyper = ("eta", "rho")

    def __init__(self, eta: float = 0.01, rho: float = 0.9) -> None:
        self.eta = self.check_eta(eta)
        self.rho = self.check("rho", rho, lambda v: 0 <= v <= 1, "must be in [0, 1]")

    def state(self, x: jax.Array) -> jax.Array:
        return _zeros(x)

    def apply(self, h: Hyper, v: jax.Array, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        eta, rho = cast(h["eta"], dx.dtype), cast(h["rho"], dx.dtype)
        v = rho * v + eta * dx
        return v, v


class Adam(Rule):
    """Adam (Kingma & Ba): `m = b1*m + (1-b1)*dx; v = b2*v + (1-b2)*dx^2;
    x -= eta * m/(1-b1^t) / (sqrt(v/(1-b2^t)) + epsilon)`.

    The bias corrections use the step count `t` with the current `beta`
    (Optimisers.jl keeps running products of `beta` instead; they agree
    unless `beta` is adjusted mid-run).

    Example:
        >>> import fluxlike as fl
        >>> fl.Adam()
        Adam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)
    """

    hyper = ("eta", "beta", "epsilon")

    def __init__(self, eta: float = 0.001, beta: tuple[float, float] = (0.9, 0.999), epsilon: float = 1e-8) -> None:
        self.eta = self.check_eta(eta)
        self.beta = self.check("beta", tuple(beta), lambda v: 0 <= v < 1, "must be a pair in [0, 1)")
        if len(self.beta) != 2:
            raise ValueError(f"Adam: beta must be a pair, got {beta!r}")
        self.epsilon = self.check("epsilon", epsilon, lambda v: v >= 0, "must be >= 0")

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        T = dx.dtype
        eta, eps = cast(h["eta"], T), cast(h["epsilon"], T)
        b1, b2 = cast(h["beta"], T)
        m, v = state
        m = b1 * m + (1 - b1) * dx
        v = b2 * v + (1 - b2) * jnp.square(dx)
        tt = t.astype(T)
        mhat = m / (1 - b1**tt)
        vhat = v / (1 - b2**tt)
        return (m, v), eta * mhat / (jnp.sqrt(vhat) + eps)


class WeightDecay(Rule):
    """Adds `lambd * x` to the gradient (L2 regularisation); Optimisers.jl's `lambda`.

    Example:
        >>> import fluxlike as fl
        >>> fl.OptimiserChain(fl.WeightDecay(0.42), fl.Adam(0.1))
        OptimiserChain(WeightDecay(lambd=0.42), Adam(eta=0.1, beta=(0.9, 0.999), epsilon=1e-08))
    """

    hyper = ("lambd",)

    def __init__(self, lambd: float = 5e-4) -> None:
        self.lambd = self.check("lambd", lambd, lambda v: v >= 0, "must be >= 0")

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        return state, dx + cast(h["lambd"], dx.dtype) * x.astype(dx.dtype)


class ClipGrad(Rule):
    """Clamps each gradient entry to `[-delta, delta]`.

    Example:
        >>> import fluxlike as fl
        >>> fl.ClipGrad(0.5)
        ClipGrad(delta=0.5)
    """

    hyper = ("delta",)

    def __init__(self, delta: float = 10.0) -> None:
        self.delta = self.check("delta", delta, lambda v: v >= 0, "must be >= 0")

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        d = cast(h["delta"], dx.dtype)
        return state, jnp.clip(dx, -d, d)


class ClipNorm(Rule):
    """Scales each gradient array down so that its `p`-norm is at most `omega`
    (per array, as in Optimisers.jl).

    Example:
        >>> import fluxlike as fl
        >>> fl.ClipNorm(1.0)
        ClipNorm(omega=1.0, p=2.0, throw=True)
    """

    hyper = ("omega", "p")
    static = ("throw",)

    def __init__(self, omega: float = 10.0, p: float = 2.0, *, throw: bool = True) -> None:
        self.omega = self.check("omega", omega, lambda v: v >= 0, "must be >= 0")
        self.p = self.check("p", float(p), lambda v: v > 0, "must be > 0")
        self.throw = bool(throw)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        T = dx.dtype
        omega, p = cast(h["omega"], T), cast(h["p"], T)
        a = jnp.abs(dx)
        nrm = jnp.where(jnp.isinf(p), jnp.max(a), jnp.sum(a**p) ** (1 / p))
        scale = jnp.minimum(omega / nrm, 1)
        return state, dx * scale


class OptimiserChain(Rule):
    """Applies rules in order, each to the previous one's output.

    Example:
        >>> import fluxlike as fl
        >>> fl.OptimiserChain(fl.ClipGrad(0.5), fl.Descent(0.1))
        OptimiserChain(ClipGrad(delta=0.5), Descent(eta=0.1))
    """

    def __init__(self, *rules: Rule) -> None:
        for i, r in enumerate(rules):
            if not isinstance(r, Rule):
                raise TypeError(f"OptimiserChain: argument {i} is {r!r}, not a fluxlike rule")
        self.opts = tuple(rules)

    def rules(self) -> tuple[Rule, ...]:
        return tuple(s for r in self.opts for s in r.rules())

    def slots(self) -> tuple[tuple[str, int], ...]:
        return tuple(s for r in self.opts for s in r.slots())

    def read(self, row: Any, offset: int = 0) -> tuple[Any, int]:
        hs = []
        for r in self.opts:
            h, offset = r.read(row, offset)
            hs.append(h)
        return hs, offset

    def row(self) -> list[float]:
        return [v for r in self.opts for v in r.row()]

    def with_row(self, row: Any, offset: int = 0) -> Rule:
        opts = []
        for r in self.opts:
            opts.append(r.with_row(row, offset))
            offset += r.width()
        return OptimiserChain(*opts)

    def key(self) -> tuple:
        return (OptimiserChain, tuple(r.key() for r in self.opts))

    def state(self, x: jax.Array) -> tuple:
        return tuple(r.state(x) for r in self.opts)

    def apply(self, h: Any, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        new = []
        for r, hr, s in zip(self.opts, h, state):
            s, dx = r.apply(hr, s, x, dx, t)
            new.append(s)
        return tuple(new), dx

    def __repr__(self) -> str:
        return f"OptimiserChain({', '.join(map(repr, self.opts))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OptimiserChain) and self.opts == other.opts

    def __hash__(self) -> int:
        return hash(self.opts)
