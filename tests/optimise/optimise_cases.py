"""The rules every optimiser test runs through, with their numpy oracles.

`ORACLE`: (name, fluxlike rule, reference rule) for every rule of
Optimisers.jl, with hyperparameters away from the defaults so that each one
matters. `CONTRACT`: (name, fluxlike rule) for the shared contracts (the
defaults where they converge on the small problem within a few hundred
steps, like Optimisers.jl's RULES list). `PROBLEM`: that regression problem,
with its gradient written out in numpy.
"""

from __future__ import annotations

import numpy as np
import optax

import reference as R
import fluxlike as F

B = (0.8, 0.99)

# Epsilons are large enough (1e-3) that putting them elsewhere (inside a
# sqrt, inside a max) would show in float32. The chains are those of
# CONTRACT, so the compiled updates are shared.
ORACLE = [
    ("Descent", F.Descent(0.05), R.make("Descent", 0.05)),
    ("Momentum", F.Momentum(0.05, 0.8), R.make("Momentum", 0.05, 0.8)),
    ("Nesterov", F.Nesterov(0.05, 0.8), R.make("Nesterov", 0.05, 0.8)),
    ("Rprop", F.Rprop(0.01, (0.4, 1.3), (1e-4, 0.05)), R.make("Rprop", 0.01, (0.4, 1.3), (1e-4, 0.05))),
    ("RMSProp", F.RMSProp(0.01, 0.8, 1e-3), R.make("RMSProp", 0.01, 0.8, 1e-3)),
    ("RMSProp-centred", F.RMSProp(0.01, 0.8, 1e-3, centred=True), R.make("RMSProp", 0.01, 0.8, 1e-3, centred=True)),
    ("Adam", F.Adam(0.01, B, 1e-3), R.make("Adam", 0.01, B, 1e-3)),
    ("RAdam", F.RAdam(0.01, (0.8, 0.999), 1e-3), R.make("RAdam", 0.01, (0.8, 0.999), 1e-3)),
    ("AdaMax", F.AdaMax(0.01, B, 1e-3), R.make("AdaMax", 0.01, B, 1e-3)),
    ("OAdam", F.OAdam(0.01, (0.6, 0.95), 1e-3), R.make("OAdam", 0.01, (0.6, 0.95), 1e-3)),
    ("AdaGrad", F.AdaGrad(0.1, 1e-3), R.make("AdaGrad", 0.1, 1e-3)),
    ("AdaDelta", F.AdaDelta(0.8, 1e-4), R.make("AdaDelta", 0.8, 1e-4)),
    ("AMSGrad", F.AMSGrad(0.01, B, 1e-3), R.make("AMSGrad", 0.01, B, 1e-3)),
    ("NAdam", F.NAdam(0.01, B, 1e-3), R.make("NAdam", 0.01, B, 1e-3)),
    ("AdamW", F.AdamW(0.01, B, 0.1, 1e-3), R.make("AdamW", 0.01, B, 0.1, 1e-3)),
    ("AdamW-decoupled", F.AdamW(0.01, B, 0.1, 1e-3, couple=False), R.make("AdamW", 0.01, B, 0.1, 1e-3, couple=False)),
    ("AdaBelief", F.AdaBelief(0.01, B, 1e-6), R.make("AdaBelief", 0.01, B, 1e-6)),
    ("Lion", F.Lion(0.01, (0.8, 0.95)), R.make("Lion_paper", 0.01, (0.8, 0.95))),
    ("SignDecay+Adam", F.OptimiserChain(F.SignDecay(0.1), F.Adam(0.01, B)),
     R.make("OptimiserChain", R.make("SignDecay", 0.1), R.make("Adam", 0.01, B))),
    ("ClipNorm+Adam", F.OptimiserChain(F.ClipNorm(4.0), F.Adam(0.01, B, 1e-3)),
     R.make("OptimiserChain", R.make("ClipNorm", 4.0), R.make("Adam", 0.01, B, 1e-3))),
    ("ClipGrad+Momentum", F.OptimiserChain(F.ClipGrad(1.5), F.Momentum(0.05, 0.8)),
     R.make("OptimiserChain", R.make("ClipGrad", 1.5), R.make("Momentum", 0.05, 0.8))),
    ("WeightDecay+OAdam+ClipGrad", F.OptimiserChain(F.WeightDecay(0.1), F.OAdam(0.01, (0.6, 0.95)), F.ClipGrad(0.005)),
     R.make("OptimiserChain", R.make("WeightDecay", 0.1), R.make("OAdam", 0.01, (0.6, 0.95)), R.make("ClipGrad", 0.005))),
    ("AccumGrad+Adam", F.OptimiserChain(F.AccumGrad(3), F.Adam(0.01, B)),
     R.make("OptimiserChain", R.make("AccumGrad", 3), R.make("Adam", 0.01, B))),
]

# Optimisers.jl's RULES (defaults, a few chains, the non-default variants),
# with learning rates that converge within 300 steps, plus our additions.
CONTRACT = [
    ("Descent", F.Descent()),
    ("Momentum", F.Momentum()),
    ("Nesterov", F.Nesterov(0.01)),
    ("Rprop", F.Rprop()),
    ("RMSProp", F.RMSProp(0.01)),
    ("RMSProp-centred", F.RMSProp(0.01, centred=True)),
    ("Adam", F.Adam(0.01)),
    ("RAdam", F.RAdam(0.05)),
    ("AdaMax", F.AdaMax(0.01)),
    ("OAdam", F.OAdam(0.01)),
    ("AdaGrad", F.AdaGrad()),
    ("AdaDelta", F.AdaDelta(0.9, 1e-3)),
    ("AMSGrad", F.AMSGrad(0.01)),
    ("NAdam", F.NAdam(0.01)),
    ("AdamW", F.AdamW(0.01, lambd=1e-4)),
    ("AdamW-decoupled", F.AdamW(0.01, lambd=1e-5, couple=False)),
    ("AdaBelief", F.AdaBelief(0.01)),
    ("Lion", F.Lion(0.01)),
    ("SignDecay+Adam", F.OptimiserChain(F.SignDecay(1e-4), F.Adam(0.01))),
    ("ClipNorm+Adam", F.OptimiserChain(F.ClipNorm(1.0), F.Adam(0.01))),
    ("ClipGrad+Momentum", F.OptimiserChain(F.ClipGrad(0.5), F.Momentum())),
    ("WeightDecay+OAdam+ClipGrad", F.OptimiserChain(F.WeightDecay(), F.OAdam(0.01), F.ClipGrad(1.0))),
    ("AccumGrad+Adam", F.OptimiserChain(F.AccumGrad(2), F.Adam(0.02))),
    ("ClipGlobalNorm+Descent", F.OptimiserChain(F.ClipGlobalNorm(1.0), F.Descent())),
    ("Descent-schedule", F.Descent(optax.exponential_decay(0.1, 100, 0.5))),
]


class Problem:
    """Least squares `mean((x @ w.T - y)^2)` for `w` (5, 3)."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.x = rng.normal(size=(32, 3))
        self.w_true = rng.normal(size=(5, 3))
        self.y = self.x @ self.w_true.T
        self.w0 = rng.normal(size=(5, 3)) * 0.1

    def loss(self, w: np.ndarray) -> float:
        return float(np.mean((self.x @ np.asarray(w, np.float64).T - self.y) ** 2))


PROBLEM = Problem()


def gradients(steps: int = 24, seed: int = 1, shape: tuple = (5, 3)) -> list[np.ndarray]:
    """Random gradients, every fourth one four times larger (so clipping acts)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(size=shape) * (4.0 if t % 4 == 3 else 1.0) for t in range(steps)]


def model(w: np.ndarray) -> dict:
    """The model every rule test uses, so each rule compiles its update once:
    `w` in float32 (compared with the oracles) and two small arrays in
    bfloat16 and float16 (for the dtype contract)."""
    import jax.numpy as jnp

    return {
        "w": jnp.asarray(w, jnp.float32),
        "h": jnp.asarray([0.5, -0.5], jnp.bfloat16),
        "q": jnp.asarray([0.5, -0.5], jnp.float16),
    }


def grad_dict(gw: np.ndarray, m: dict) -> dict:
    """A gradient for `model`: the given `w` part, and `x - 0.25` for the small arrays."""
    import jax.numpy as jnp

    return {"w": jnp.asarray(gw, jnp.float32), "h": m["h"] - 0.25, "q": m["q"] - 0.25}
