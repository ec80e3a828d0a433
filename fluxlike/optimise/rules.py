"""The optimisers, with Optimisers.jl's formulas, defaults and field names
(the rules that compose with them, clipping, decay, accumulation and
chains, live in `transforms.py`).

Each block: docstring (with the formula), constructor (validating), `state`
(Optimisers.jl's `init`) and `apply` (its `apply!`). `dx` is what gets
subtracted: the parameter becomes `x - dx`. Hyperparameters come from `h`
(data in the state tree), cast to the parameter's dtype.

Where these differ from Optimisers.jl, the docstring says so. One
difference is shared by the Adam family: Optimisers.jl keeps running
products `beta^t` in the state, we compute `beta^t` from the Leaf's step
count, so they agree unless `beta` is adjusted mid-run.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from .rule import Hyper, Rule, cast, corrections, powers

__all__ = [
    "Descent", "Momentum", "Nesterov", "Rprop", "RMSProp", "Adam", "RAdam", "AdaMax", "OAdam",
    "AdaGrad", "AdaDelta", "AMSGrad", "NAdam", "AdamW", "AdaBelief", "Lion",
]

Eta = float | Callable[[jax.Array], jax.Array]
Out = tuple[Any, jax.Array]


def _zeros(x: jax.Array) -> jax.Array:
    return jnp.zeros_like(x)


def _unit(v: float) -> bool:
    return 0 <= v < 1


def _nonneg(v: float) -> bool:
    return v >= 0 and math.isfinite(v)


def _moments(h: Hyper, m: jax.Array, v: jax.Array, dx: jax.Array) -> tuple:
    """Adam's two moving averages: `m = b1*m + (1-b1)*dx`, `v = b2*v + (1-b2)*dx^2`."""
    b1, b2 = cast(h["beta"], dx.dtype)
    return b1 * m + (1 - b1) * dx, b2 * v + (1 - b2) * jnp.square(dx)


class _AdamLike(Rule):
    """Shared constructor of the rules with `eta, beta, epsilon`."""

    hyper = ("eta", "beta", "epsilon")

    def __init__(self, eta: Eta = 0.001, beta: tuple[float, float] = (0.9, 0.999), epsilon: float = 1e-8) -> None:
        self.eta = self.check_eta(eta)
        self.beta = self.check_pair("beta", beta, _unit, "must be in [0, 1)")
        self.epsilon = self.check("epsilon", epsilon, _nonneg, "must be >= 0")

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Two moment arrays, zeros (rules with other state override this)."""
        return _zeros(x), _zeros(x)


# ---------------------------------------------------------------------------
# gradient descent

class Descent(Rule):
    """Plain gradient descent: `dx = eta * dx`.

    Args:
        eta: learning rate (>= 0, or an optax schedule). Optimisers.jl's
            default is the Float32 `0.1f0`; ours is 0.1, the same in float32.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.Descent(0.01)
        Descent(eta=0.01)
        >>> st, dx = fl.Descent(0.5).apply({"eta": 0.5}, (), None, jnp.array([2.0]), 1)
        >>> dx
        Array([1.], dtype=float32)
    """

    hyper = ("eta",)

    def __init__(self, eta: Eta = 0.1) -> None:
        self.eta = self.check_eta(eta)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        return state, dx * cast(h["eta"], dx.dtype)


class Momentum(Rule):
    """Gradient descent with momentum: `v = rho*v + eta*dx; dx = v`.

    As in Optimisers.jl, `eta` is inside the velocity (so a changed `eta`
    acts gradually); optax and torch scale the velocity by the current rate.

    Args:
        eta: learning rate. rho: momentum, in [0, 1].

    Examples:
        >>> import fluxlike as fl
        >>> fl.Momentum(0.01, 0.9)
        Momentum(eta=0.01, rho=0.9)
    """

    hyper = ("eta", "rho")

    def __init__(self, eta: Eta = 0.01, rho: float = 0.9) -> None:
        self.eta = self.check_eta(eta)
        self.rho = self.check("rho", rho, lambda v: 0 <= v <= 1, "must be in [0, 1]")

    def state(self, x: jax.Array) -> jax.Array:
        return _zeros(x)

    def advance(self, h: Hyper, v: jax.Array, x: jax.Array, dx: jax.Array, t: jax.Array) -> jax.Array:
        eta, rho = cast(h["eta"], dx.dtype), cast(h["rho"], dx.dtype)
        return rho * v + eta * dx

    def output(self, h: Hyper, v: jax.Array, x: jax.Array, dx: jax.Array, t: jax.Array) -> jax.Array:
        return v


class Nesterov(Rule):
    """Nesterov momentum: `dx = -rho^2*vel + (1+rho)*eta*dx; vel = rho*vel - eta*dx`
    (the state holds the negated velocity, as in Optimisers.jl).

    Args:
        eta: learning rate (default 0.001, smaller than Momentum's). rho: momentum, in [0, 1].

    Examples:
        >>> import fluxlike as fl
        >>> fl.Nesterov()
        Nesterov(eta=0.001, rho=0.9)
    """

    hyper = ("eta", "rho")

    def __init__(self, eta: Eta = 0.001, rho: float = 0.9) -> None:
        self.eta = self.check_eta(eta)
        self.rho = self.check("rho", rho, lambda v: 0 <= v <= 1, "must be in [0, 1]")

    def state(self, x: jax.Array) -> jax.Array:
        return _zeros(x)

    def apply(self, h: Hyper, vel: jax.Array, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        eta, rho = cast(h["eta"], dx.dtype), cast(h["rho"], dx.dtype)
        out = -(rho * rho) * vel + (1 + rho) * eta * dx
        return rho * vel - eta * dx, out


class Rprop(Rule):
    """Resilient backpropagation: each entry keeps its own step size, grown by
    `ell[1]` while the gradient's sign holds and shrunk by `ell[0]` when it
    flips (then that entry does not move), clamped to `gamma = (min, max)`;
    `dx = step * sign(dx)`.

    Args:
        eta: the initial step size (it is only used by `fl.setup`, as in
            Optimisers.jl: adjusting it later changes nothing, and it cannot be a schedule).
        ell: (decrease, increase), with 0 < decrease <= 1 <= increase.
        gamma: (min, max) step size.

    Examples:
        >>> import fluxlike as fl
        >>> fl.Rprop()
        Rprop(eta=0.001, ell=(0.5, 1.2), gamma=(1e-06, 50.0))
    """

    hyper = ("eta", "ell", "gamma")

    def __init__(self, eta: float = 0.001, ell: tuple[float, float] = (0.5, 1.2), gamma: tuple[float, float] = (1e-6, 50.0)) -> None:
        self.eta = self.check_eta(eta, schedule=False)
        self.ell = self.check_pair("ell", ell, lambda v: v > 0 and math.isfinite(v), "must be positive")
        if not self.ell[0] <= 1 <= self.ell[1]:
            raise ValueError(f"Rprop: ell={tuple(ell)!r} must be (decrease <= 1, increase >= 1)")
        self.gamma = self.check_pair("gamma", gamma, _nonneg, "must be >= 0")
        if self.gamma[0] > self.gamma[1]:
            raise ValueError(f"Rprop: gamma={tuple(gamma)!r} must be (min, max) with min <= max")

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), jnp.full_like(x, self.eta)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        (down, up), (lo, hi) = cast(h["ell"], dx.dtype), cast(h["gamma"], dx.dtype)
        g, step = state
        prod = g * dx
        step = jnp.where(prod > 0, jnp.minimum(step * up, hi), jnp.where(prod < 0, jnp.maximum(step * down, lo), step))
        g = jnp.where(prod < 0, jnp.zeros_like(dx), dx)
        return (g, step), step * jnp.sign(g)


# ---------------------------------------------------------------------------
# adaptive rules


class RMSProp(Rule):
    """RMSProp: `quad = rho*quad + (1-rho)*dx^2; dx = eta*dx / (sqrt(quad - lin^2) + epsilon)`,
    where `lin` (centred only) is the moving mean of `dx`; epsilon is outside the sqrt.

    Args:
        eta: learning rate. rho: decay, in [0, 1]. epsilon: >= 0.
        centred: normalise by the variance instead of the second moment; it
            changes the state, so it is fixed at setup (as in Optimisers.jl).

    Examples:
        >>> import fluxlike as fl
        >>> fl.RMSProp(centred=True)
        RMSProp(eta=0.001, rho=0.9, epsilon=1e-08, centred=True)
    """

    hyper = ("eta", "rho", "epsilon")
    static = ("centred",)

    def __init__(self, eta: Eta = 0.001, rho: float = 0.9, epsilon: float = 1e-8, *, centred: bool = False) -> None:
        self.eta = self.check_eta(eta)
        self.rho = self.check("rho", rho, lambda v: 0 <= v <= 1, "must be in [0, 1]")
        self.epsilon = self.check("epsilon", epsilon, _nonneg, "must be >= 0")
        self.centred = bool(centred)

    def state(self, x: jax.Array) -> Any:
        return (_zeros(x), _zeros(x)) if self.centred else _zeros(x)

    def advance(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Any:
        rho = cast(h["rho"], dx.dtype)
        quad = rho * (state[0] if self.centred else state) + (1 - rho) * jnp.square(dx)
        if self.centred:
            return quad, rho * state[1] + (1 - rho) * dx
        return quad

    def output(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> jax.Array:
        T = dx.dtype
        eta, e = cast(h["eta"], T), cast(h["epsilon"], T)
        var = state[0] - jnp.square(state[1]) if self.centred else state
        return dx * eta / (jnp.sqrt(var) + e)


class Adam(_AdamLike):
    """Adam: `m = b1*m + (1-b1)*dx; v = b2*v + (1-b2)*dx^2;
    dx = eta * m/(1-b1^t) / (sqrt(v/(1-b2^t)) + epsilon)`.

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.Adam()
        Adam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def advance(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Any:
        return _moments(h, *state, dx)

    def output(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> jax.Array:
        T = dx.dtype
        eta, e = cast(h["eta"], T), cast(h["epsilon"], T)
        (m, v), (c1, c2) = state, corrections(h, t, T)
        return m * c1 / (jnp.sqrt(v * c2) + e) * eta


class RAdam(_AdamLike):
    """Rectified Adam: Adam's step times `r` once the variance estimate is
    trustworthy (`rho > 4`), else the bias-corrected momentum alone:
    `rho_inf = 2/(1-b2) - 1; rho = rho_inf - 2t*b2^t/(1-b2^t);
    r = sqrt((rho-4)(rho-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho))`.

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.RAdam(0.01)
        RAdam(eta=0.01, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        eta, e = cast(h["eta"], T), cast(h["epsilon"], T)
        m, v = _moments(h, *state, dx)
        b2c, (bt1, bt2) = cast(h["beta"][1], T), powers(h, t, T)
        rho_inf = 2 / (1 - b2c) - 1
        rho = rho_inf - 2 * t.astype(T) * bt2 / (1 - bt2)
        r = jnp.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        mhat = m / (1 - bt1)
        out = jnp.where(rho > 4, mhat / (jnp.sqrt(v / (1 - bt2)) + e) * eta * r, mhat * eta)
        return (m, v), out


class AdaMax(_AdamLike):
    """AdaMax, Adam with the infinity norm: `u = max(b2*u, |dx|);
    dx = eta/(1-b1^t) * m / (u + epsilon)` (epsilon outside the max, as in Optimisers.jl).

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.AdaMax()
        AdaMax(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = cast(h["beta"], T), cast(h["eta"], T), cast(h["epsilon"], T)
        m, u = state
        m = b1 * m + (1 - b1) * dx
        u = jnp.maximum(b2 * u, jnp.abs(dx))
        return (m, u), (eta / (1 - powers(h, t, T)[0])) * m / (u + e)


class OAdam(_AdamLike):
    """Optimistic Adam: `term = eta * mhat / (sqrt(vhat) + epsilon); dx = 2*term - previous term`.

    Args:
        eta: learning rate. beta: (b1, b2), default (0.5, 0.9). epsilon: >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.OAdam()
        OAdam(eta=0.001, beta=(0.5, 0.9), epsilon=1e-08)
    """

    def __init__(self, eta: Eta = 0.001, beta: tuple[float, float] = (0.5, 0.9), epsilon: float = 1e-8) -> None:
        super().__init__(eta, beta, epsilon)

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return _zeros(x), _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        eta, e = cast(h["eta"], T), cast(h["epsilon"], T)
        m, v, prev = state
        m, v = _moments(h, m, v, dx)
        term = eta * m / (1 - powers(h, t, T)[0]) / (jnp.sqrt(v / (1 - powers(h, t, T)[1])) + e)
        return (m, v, term), 2 * term - prev


class AdaGrad(Rule):
    """AdaGrad: `acc += dx^2; dx = eta*dx / (sqrt(acc) + epsilon)`, with the
    accumulator starting at epsilon (as in Optimisers.jl).

    Args:
        eta: learning rate (default 0.1). epsilon: >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.AdaGrad()
        AdaGrad(eta=0.1, epsilon=1e-08)
    """

    hyper = ("eta", "epsilon")

    def __init__(self, eta: Eta = 0.1, epsilon: float = 1e-8) -> None:
        self.eta = self.check_eta(eta)
        self.epsilon = self.check("epsilon", epsilon, _nonneg, "must be >= 0")

    def state(self, x: jax.Array) -> jax.Array:
        return jnp.full_like(x, self.epsilon)

    def apply(self, h: Hyper, acc: jax.Array, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        acc = acc + jnp.square(dx)
        return acc, dx * cast(h["eta"], T) / (jnp.sqrt(acc) + cast(h["epsilon"], T))


class AdaDelta(Rule):
    """AdaDelta, which has no learning rate: `acc = rho*acc + (1-rho)*dx^2;
    dx = dx * sqrt(dacc + epsilon) / sqrt(acc + epsilon); dacc = rho*dacc + (1-rho)*dx^2`.

    Args:
        rho: decay, in [0, 1]. epsilon: >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.AdaDelta()
        AdaDelta(rho=0.9, epsilon=1e-08)
    """

    hyper = ("rho", "epsilon")

    def __init__(self, rho: float = 0.9, epsilon: float = 1e-8) -> None:
        self.rho = self.check("rho", rho, lambda v: 0 <= v <= 1, "must be in [0, 1]")
        self.epsilon = self.check("epsilon", epsilon, _nonneg, "must be >= 0")

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        rho, e = cast(h["rho"], T), cast(h["epsilon"], T)
        acc, dacc = state
        acc = rho * acc + (1 - rho) * jnp.square(dx)
        out = dx * jnp.sqrt(dacc + e) / jnp.sqrt(acc + e)
        return (acc, rho * dacc + (1 - rho) * jnp.square(out)), out


class AMSGrad(_AdamLike):
    """AMSGrad: Adam's moments with `vhat = max(vhat, v); dx = eta*m / (sqrt(vhat) + epsilon)`,
    with no bias correction and all three states starting at epsilon (as in Optimisers.jl).

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.AMSGrad()
        AMSGrad(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        e = jnp.full_like(x, self.epsilon)
        return e, e, e

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        m, v, vhat = state
        m, v = _moments(h, m, v, dx)
        vhat = jnp.maximum(vhat, v)
        return (m, v, vhat), cast(h["eta"], T) * m / (jnp.sqrt(vhat) + cast(h["epsilon"], T))


class NAdam(_AdamLike):
    """Nesterov Adam (Dozat's Algorithm 2, as Optimisers.jl):
    `dx = eta * (b1*m/(1-b1^(t+1)) + (1-b1)*dx/(1-b1^t)) / (sqrt(b2*v/(1-b2^t)) + epsilon)`.

    The `b2` inside the sqrt is Optimisers.jl's; optax.nadam lacks it
    (`optax.nadam(eta/sqrt(b2), eps=epsilon/sqrt(b2))` is the same rule).

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: >= 0.

    Examples:
        >>> import fluxlike as fl
        >>> fl.NAdam()
        NAdam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = cast(h["beta"], T), cast(h["eta"], T), cast(h["epsilon"], T)
        m, v = _moments(h, *state, dx)
        bt1, bt2 = powers(h, t, T)[0], powers(h, t, T)[1]
        num = b1 * m / (1 - b1 * bt1) + (1 - b1) * dx / (1 - bt1)
        return (m, v), num / (jnp.sqrt(v * b2 / (1 - bt2)) + e) * eta


class AdamW(Rule):
    """Adam with weight decay: with `a` Adam's step for `eta = 1`,
    `dx = eta * (a + lambd*x)` when `couple` (PyTorch's AdamW, the default),
    else `dx = eta*a + lambd*x` (decoupled from eta, as in the paper).

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1).
        lambd: decay (Optimisers.jl's `lambda`), default 0. epsilon: >= 0.
        couple: whether the decay is scaled by eta; data, so adjustable.

    Examples:
        >>> import fluxlike as fl
        >>> fl.AdamW(lambd=0.01)
        AdamW(eta=0.001, beta=(0.9, 0.999), lambd=0.01, epsilon=1e-08, couple=True)
    """

    hyper = ("eta", "beta", "lambd", "epsilon", "couple")
    types = {"couple": bool}
    needs_params = True

    def __init__(self, eta: Eta = 0.001, beta: tuple[float, float] = (0.9, 0.999), lambd: float = 0.0,
                 epsilon: float = 1e-8, *, couple: bool = True) -> None:
        self.eta = self.check_eta(eta)
        self.beta = self.check_pair("beta", beta, _unit, "must be in [0, 1)")
        self.lambd = self.check("lambd", lambd, _nonneg, "must be >= 0")
        self.epsilon = self.check("epsilon", epsilon, _nonneg, "must be >= 0")
        if not isinstance(couple, (bool, np.bool_)):
            raise ValueError(f"AdamW: couple={couple!r} must be True or False")
        self.couple = bool(couple)

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), _zeros(x)

    def advance(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Any:
        return _moments(h, *state, dx)

    def output(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> jax.Array:
        T = dx.dtype
        eta, e, lam = cast(h["eta"], T), cast(h["epsilon"], T), cast(h["lambd"], T)
        (m, v), (c1, c2) = state, corrections(h, t, T)
        a = m * c1 / (jnp.sqrt(v * c2) + e)
        decay = lam * x.astype(T)
        return jnp.where(h["couple"] != 0, eta * (a + decay), eta * a + decay)


class AdaBelief(_AdamLike):
    """AdaBelief: Adam with the variance of the gradient around its mean,
    `s = b2*s + (1-b2)*(dx - m)^2 + epsilon; dx = eta * mhat / (sqrt(shat) + epsilon)`.

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: default 1e-16.

    Examples:
        >>> import fluxlike as fl
        >>> fl.AdaBelief()
        AdaBelief(eta=0.001, beta=(0.9, 0.999), epsilon=1e-16)
    """

    def __init__(self, eta: Eta = 0.001, beta: tuple[float, float] = (0.9, 0.999), epsilon: float = 1e-16) -> None:
        super().__init__(eta, beta, epsilon)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = cast(h["beta"], T), cast(h["eta"], T), cast(h["epsilon"], T)
        m, s = state
        m = b1 * m + (1 - b1) * dx
        s = b2 * s + (1 - b2) * jnp.square(dx - m) + e
        bt1, bt2 = powers(h, t, T)[0], powers(h, t, T)[1]
        return (m, s), eta * m / (1 - bt1) / (jnp.sqrt(s / (1 - bt2)) + e)


class Lion(Rule):
    """Lion (Chen et al. 2023, Algorithm 2): `dx = eta * sign(b1*m + (1-b1)*dx);
    m = b2*m + (1-b2)*dx`.

    This is the paper's formula (and optax.lion's with `weight_decay=0`).
    Optimisers.jl's code differs: it updates `m = b2*dx + (1-b2)*m` (the
    weights swapped) and steps by `sign((b2-b1)*dx + b1*m)`, which equals the
    paper only when `b2 = 0.5`; with its defaults it is nearly sign descent.
    The defaults are Optimisers.jl's, `beta = (0.9, 0.999)` (the paper uses
    (0.9, 0.99)). For the paper's decoupled weight decay, chain a
    `WeightDecay(eta*lambda)` after Lion.

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1).

    Examples:
        >>> import fluxlike as fl
        >>> fl.Lion()
        Lion(eta=0.001, beta=(0.9, 0.999))
    """

    hyper = ("eta", "beta")

    def __init__(self, eta: Eta = 0.001, beta: tuple[float, float] = (0.9, 0.999)) -> None:
        self.eta = self.check_eta(eta)
        self.beta = self.check_pair("beta", beta, _unit, "must be in [0, 1)")

    def state(self, x: jax.Array) -> jax.Array:
        return _zeros(x)

    def apply(self, h: Hyper, m: jax.Array, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta = cast(h["beta"], T), cast(h["eta"], T)
        out = eta * jnp.sign(b1 * m + (1 - b1) * dx)
        return b2 * m + (1 - b2) * dx, out
