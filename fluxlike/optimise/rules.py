"""The optimisation rules, with Optimisers.jl's formulas, defaults and field names.

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

from .rule import Ctx, Hyper, Rule, cast, keep, power

__all__ = [
    "Descent", "Momentum", "Nesterov", "Rprop", "RMSProp", "Adam", "RAdam", "AdaMax", "OAdam",
    "AdaGrad", "AdaDelta", "AMSGrad", "NAdam", "AdamW", "AdaBelief", "Lion",
    "WeightDecay", "SignDecay", "ClipGrad", "ClipNorm", "ClipGlobalNorm", "AccumGrad", "OptimiserChain",
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


# ---------------------------------------------------------------------------
# gradient descent


class Descent(Rule):
    """Plain gradient descent: `dx = eta * dx`.

    Args:
        eta: learning rate (>= 0, or an optax schedule). Optimisers.jl's
            default is the Float32 `0.1f0`; ours is 0.1, the same in float32.

    Example:
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

    Example:
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

    def apply(self, h: Hyper, v: jax.Array, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        eta, rho = cast(h["eta"], dx.dtype), cast(h["rho"], dx.dtype)
        v = rho * v + eta * dx
        return v, v


class Nesterov(Rule):
    """Nesterov momentum: `dx = -rho^2*vel + (1+rho)*eta*dx; vel = rho*vel - eta*dx`
    (the state holds the negated velocity, as in Optimisers.jl).

    Args:
        eta: learning rate (default 0.001, smaller than Momentum's). rho: momentum, in [0, 1].

    Example:
        >>> from fluxlike.optimise.rules import Nesterov
        >>> Nesterov()
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

    Example:
        >>> from fluxlike.optimise.rules import Rprop
        >>> Rprop()
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

    Example:
        >>> from fluxlike.optimise.rules import RMSProp
        >>> RMSProp(centred=True)
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

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        eta, rho, e = cast(h["eta"], T), cast(h["rho"], T), cast(h["epsilon"], T)
        quad = state[0] if self.centred else state
        quad = rho * quad + (1 - rho) * jnp.square(dx)
        if self.centred:
            lin = rho * state[1] + (1 - rho) * dx
            return (quad, lin), dx * eta / (jnp.sqrt(quad - jnp.square(lin)) + e)
        return quad, dx * eta / (jnp.sqrt(quad) + e)


class Adam(_AdamLike):
    """Adam: `m = b1*m + (1-b1)*dx; v = b2*v + (1-b2)*dx^2;
    dx = eta * m/(1-b1^t) / (sqrt(v/(1-b2^t)) + epsilon)`.

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: >= 0.

    Example:
        >>> import fluxlike as fl
        >>> fl.Adam()
        Adam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = h["beta"], cast(h["eta"], T), cast(h["epsilon"], T)
        m, v = _moments(h, *state, dx)
        out = m / (1 - power(b1, t, T)) / (jnp.sqrt(v / (1 - power(b2, t, T))) + e) * eta
        return (m, v), out


class RAdam(_AdamLike):
    """Rectified Adam: Adam's step times `r` once the variance estimate is
    trustworthy (`rho > 4`), else the bias-corrected momentum alone:
    `rho_inf = 2/(1-b2) - 1; rho = rho_inf - 2t*b2^t/(1-b2^t);
    r = sqrt((rho-4)(rho-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho))`.

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: >= 0.

    Example:
        >>> from fluxlike.optimise.rules import RAdam
        >>> RAdam(0.01)
        RAdam(eta=0.01, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = h["beta"], cast(h["eta"], T), cast(h["epsilon"], T)
        m, v = _moments(h, *state, dx)
        b2c, bt1, bt2 = cast(b2, T), power(b1, t, T), power(b2, t, T)
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

    Example:
        >>> from fluxlike.optimise.rules import AdaMax
        >>> AdaMax()
        AdaMax(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = cast(h["beta"], T), cast(h["eta"], T), cast(h["epsilon"], T)
        m, u = state
        m = b1 * m + (1 - b1) * dx
        u = jnp.maximum(b2 * u, jnp.abs(dx))
        return (m, u), (eta / (1 - power(h["beta"][0], t, T))) * m / (u + e)


class OAdam(_AdamLike):
    """Optimistic Adam: `term = eta * mhat / (sqrt(vhat) + epsilon); dx = 2*term - previous term`.

    Args:
        eta: learning rate. beta: (b1, b2), default (0.5, 0.9). epsilon: >= 0.

    Example:
        >>> from fluxlike.optimise.rules import OAdam
        >>> OAdam()
        OAdam(eta=0.001, beta=(0.5, 0.9), epsilon=1e-08)
    """

    def __init__(self, eta: Eta = 0.001, beta: tuple[float, float] = (0.5, 0.9), epsilon: float = 1e-8) -> None:
        super().__init__(eta, beta, epsilon)

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        return _zeros(x), _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = h["beta"], cast(h["eta"], T), cast(h["epsilon"], T)
        m, v, prev = state
        m, v = _moments(h, m, v, dx)
        term = eta * m / (1 - power(b1, t, T)) / (jnp.sqrt(v / (1 - power(b2, t, T))) + e)
        return (m, v, term), 2 * term - prev


class AdaGrad(Rule):
    """AdaGrad: `acc += dx^2; dx = eta*dx / (sqrt(acc) + epsilon)`, with the
    accumulator starting at epsilon (as in Optimisers.jl).

    Args:
        eta: learning rate (default 0.1). epsilon: >= 0.

    Example:
        >>> from fluxlike.optimise.rules import AdaGrad
        >>> AdaGrad()
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

    Example:
        >>> from fluxlike.optimise.rules import AdaDelta
        >>> AdaDelta()
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

    Example:
        >>> from fluxlike.optimise.rules import AMSGrad
        >>> AMSGrad()
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

    Example:
        >>> from fluxlike.optimise.rules import NAdam
        >>> NAdam()
        NAdam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)
    """

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = cast(h["beta"], T), cast(h["eta"], T), cast(h["epsilon"], T)
        m, v = _moments(h, *state, dx)
        bt1, bt2 = power(h["beta"][0], t, T), power(h["beta"][1], t, T)
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

    Example:
        >>> from fluxlike.optimise.rules import AdamW
        >>> AdamW(lambd=0.01)
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

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e, lam = h["beta"], cast(h["eta"], T), cast(h["epsilon"], T), cast(h["lambd"], T)
        m, v = _moments(h, *state, dx)
        a = m / (1 - power(b1, t, T)) / (jnp.sqrt(v / (1 - power(b2, t, T))) + e)
        decay = lam * x.astype(T)
        return (m, v), jnp.where(h["couple"] != 0, eta * (a + decay), eta * a + decay)


class AdaBelief(_AdamLike):
    """AdaBelief: Adam with the variance of the gradient around its mean,
    `s = b2*s + (1-b2)*(dx - m)^2 + epsilon; dx = eta * mhat / (sqrt(shat) + epsilon)`.

    Args:
        eta: learning rate. beta: (b1, b2), each in [0, 1). epsilon: default 1e-16.

    Example:
        >>> from fluxlike.optimise.rules import AdaBelief
        >>> AdaBelief()
        AdaBelief(eta=0.001, beta=(0.9, 0.999), epsilon=1e-16)
    """

    def __init__(self, eta: Eta = 0.001, beta: tuple[float, float] = (0.9, 0.999), epsilon: float = 1e-16) -> None:
        super().__init__(eta, beta, epsilon)

    def state(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        return _zeros(x), _zeros(x)

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        T = dx.dtype
        (b1, b2), eta, e = cast(h["beta"], T), cast(h["eta"], T), cast(h["epsilon"], T)
        m, s = state
        m = b1 * m + (1 - b1) * dx
        s = b2 * s + (1 - b2) * jnp.square(dx - m) + e
        bt1, bt2 = power(h["beta"][0], t, T), power(h["beta"][1], t, T)
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

    Example:
        >>> from fluxlike.optimise.rules import Lion
        >>> Lion()
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


# ---------------------------------------------------------------------------
# rules to compose with others


class WeightDecay(Rule):
    """L2 regularisation: `dx = dx + lambd*x` (Optimisers.jl's `lambda`); put
    it first in an OptimiserChain so that the next rule scales it.

    Args:
        lambd: decay, >= 0.

    Example:
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

    Example:
        >>> from fluxlike.optimise.rules import SignDecay
        >>> SignDecay()
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

    Example:
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

    Example:
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

    def run(self, hs: list, states: list, xs: list, dxs: list, ts: list, live: list, ctx: Ctx) -> tuple[list, list, list, list]:
        out = []
        for k, (h, dx, ok) in enumerate(zip(hs, dxs, live)):
            nrm = _combine([_partial(dx, self.p)], self.p)
            out.append(_clipped(h["omega"], nrm, dx, self.throw))
            if self.throw:
                bad = ~jnp.isfinite(nrm)
                ctx.report(k, bad if ok is None else bad & ok, nrm)
        return states, out, ts, live


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

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> from fluxlike.optimise.rules import ClipGlobalNorm
        >>> model = {"a": jnp.zeros(1), "b": jnp.zeros(1)}
        >>> state = fl.setup(ClipGlobalNorm(1.0), model)
        >>> new = fl.update(state, model, {"a": jnp.array([3.0]), "b": jnp.array([4.0])})[1]
        >>> new["a"], new["b"]
        (Array([-0.6], dtype=float32), Array([-0.8], dtype=float32))
    """

    def run(self, hs: list, states: list, xs: list, dxs: list, ts: list, live: list, ctx: Ctx) -> tuple[list, list, list, list]:
        p = self.p
        parts = []
        for dx, ok in zip(dxs, live):
            q = _partial(dx, p)
            parts.append(q if ok is None else jnp.where(ok, q, _identity(p, q.dtype)))
        if not parts:
            return states, dxs, ts, live
        nrm = _combine(parts, p)
        if self.throw:
            _raise_now(~jnp.isfinite(nrm), "ClipGlobalNorm: the gradient of the whole model", p, nrm)
        out = []
        for k, (h, dx, ok) in enumerate(zip(hs, dxs, live)):
            out.append(_clipped(h["omega"], nrm, dx, self.throw))
            if self.throw:
                bad = ~jnp.isfinite(nrm)
                ctx.report(k, bad if ok is None else bad & ok, nrm)
        return states, out, ts, live


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

    Example:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> from fluxlike.optimise.rules import AccumGrad
        >>> model = {"w": jnp.zeros(1)}
        >>> state = fl.setup(fl.OptimiserChain(AccumGrad(2), fl.Descent(0.1)), model)
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

    def run(self, hs: list, states: list, xs: list, dxs: list, ts: list, live: list, ctx: Ctx) -> tuple[list, list, list, list]:
        new_s, new_t, new_live = [], [], []
        for h, acc, dx, t, ok in zip(hs, states, dxs, ts, live):
            hi = jnp.promote_types(acc.dtype, jnp.float32)
            acc2, emit = self._accumulate(h, acc.astype(hi), dx.astype(hi), t)
            acc2 = acc2.astype(acc.dtype)
            new_s.append(acc2 if ok is None else keep(ok, acc2, acc))
            new_t.append(self.t_after(h, t))
            new_live.append(emit if ok is None else ok & emit)
        return new_s, new_s, new_t, new_live


class OptimiserChain(Rule):
    """Applies rules in order, each to the previous one's output (all see the
    same parameter); the empty chain subtracts the gradient itself.

    Args:
        *rules: the rules, e.g. `ClipGrad(1.0), Adam()`.

    Example:
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

    def rules(self) -> tuple[Rule, ...]:
        return tuple(s for r in self.opts for s in r.rules())

    @property
    def descent(self) -> bool:  # type: ignore[override]
        return any(r.descent for r in self.opts)

    def slots(self) -> tuple[tuple[str, int], ...]:
        return tuple(s for r in self.opts for s in r.slots())

    def schedules(self) -> tuple:
        return ()

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

    def t_after(self, h: Any, t: Any) -> Any:
        for r, hr in zip(self.opts, h):
            t = r.t_after(hr, t)
        return t

    def run(self, hs: list, states: list, xs: list, dxs: list, ts: list, live: list, ctx: Ctx) -> tuple[list, list, list, list]:
        new: list[list] = [[] for _ in dxs]
        for j, r in enumerate(self.opts):
            sub, dxs, ts, live = r.run([h[j] for h in hs], [s[j] for s in states], xs, dxs, ts, live, ctx)
            for acc, s in zip(new, sub):
                acc.append(s)
        return [tuple(s) for s in new], dxs, ts, live

    def apply(self, h: Any, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Out:
        (s,), (d,), _, (ok,) = self.run([h], [state], [x], [dx], [t], [None], Ctx(1, False))
        return s, d if ok is None else jnp.where(ok, d, jnp.zeros_like(d))

    def __repr__(self) -> str:
        return f"OptimiserChain({', '.join(map(repr, self.opts))})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OptimiserChain) and self.opts == other.opts

    def __hash__(self) -> int:
        return hash(self.opts)
