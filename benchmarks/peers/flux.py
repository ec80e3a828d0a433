"""fluxlike, written as its WALKTHROUGH writes it.

- `fl_8b`: block 8b exactly (`@jax.jit`, no donation), looped over batches;
- `fl_8b_donate`: the same function under `jax.jit(step, donate_argnums=(0, 1))`;
- `fl_train_` (epoch workload): `fl.train_(loss, model, fl.DataLoader((X, Y), batchsize=32), state)`,
  which fuses the epoch into one `lax.scan`;
- `fl_train_unfused` (epoch workload): the same with `fuse=False`, one compiled call per batch;
- `fl_eager`: the seed page's first loop, no `jax.jit` written: `fl.withgradient(lambda m:
  loss(m(x), y), model)` then `fl.update_(state, model, grads[0])` per batch (issue 9);
- `fl_train_list` (epoch workload): `fl.train_` over a list of `(x, y)` device-array tuples,
  the natural JAX form of the seed's `train_set` (issue 9).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

import fluxlike as fl
from peers.hand import LR
from peers.runner import Runner, cycle, device_batches, xla_memory
from peers.workloads import CNN_CONVS, Workload

LOSSES = {"mse": fl.losses.mse, "logitcrossentropy": fl.losses.logitcrossentropy}


@functools.lru_cache(maxsize=1)
def maxpool_problem() -> str | None:
    """Why `fl.MaxPool` cannot be differentiated under `jax.jit` (None when it can)."""
    try:
        jax.jit(jax.grad(lambda x: fl.MaxPool((2, 2))(x).sum()))(jnp.ones((1, 4, 4, 1)))
    except Exception as e:  # report, and let the cnn run with a stand-in
        return f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return None


def _max_pool2(x: jax.Array) -> jax.Array:
    """Stand-in for `fl.MaxPool((2, 2))` while it cannot be differentiated: the same reduce_window
    with a Python-scalar init value (which lax recognises as a max monoid, with its gradient)."""
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def build(wl: Workload, weights: list) -> fl.Chain:
    """The workload's model as a fluxlike Chain holding `weights` (canonical layout is fluxlike's).

    Example:
        >>> from peers.flux import build
        >>> from peers.workloads import Workload, init_weights
        >>> wl = Workload("t", "mlp", (2, 4, 1), 8, "mse", 1, 1)
        >>> build(wl, init_weights(wl))
        Chain(Dense(2 => 4, relu), Dense(4 => 1))  # 17 parameters
    """
    w = [(jnp.asarray(a), jnp.asarray(b)) for a, b in weights]
    if wl.kind == "cnn":
        layers: list[Any] = []
        for i in range(len(CNN_CONVS)):
            pool = fl.MaxPool((2, 2)) if maxpool_problem() is None else _max_pool2
            layers += [fl.Conv(w[i][0], fl.relu, bias=w[i][1]), pool]
        return fl.Chain(*layers, fl.flatten, fl.Dense(w[-1][0], bias=w[-1][1]))
    n = len(w)
    return fl.Chain(*(fl.Dense(a, fl.relu if i < n - 1 else fl.identity, bias=b) for i, (a, b) in enumerate(w)))


def step_8b(wl: Workload) -> Any:
    """WALKTHROUGH block 8b for the workload's loss (not yet jitted)."""
    loss = LOSSES[wl.loss]

    def step(model, opt_state, x, y):
        val, grads = fl.withgradient(lambda m: loss(m(x), y), model)
        opt_state, model = fl.update(opt_state, model, grads[0])
        return model, opt_state, val

    return step


class _Flux(Runner):
    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        self.wl = wl
        self.model = build(wl, weights)
        self.state = fl.setup(fl.Adam(LR), self.model)

    def state_arrays(self) -> Any:
        return self.model

    def params(self) -> list:
        return [(np.asarray(a), np.asarray(b)) for a, b in zip(*[iter(jax.tree.leaves(self.model))] * 2)]


class Flux8b(_Flux):
    """WALKTHROUGH 8b: `@jax.jit def step(model, opt_state, x, y)`, looped over device batches."""

    name = "fl_8b"
    donate = False

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.batches = device_batches(data)
        self.jitted = jax.jit(step_8b(wl), donate_argnums=(0, 1) if self.donate else ())

    def run(self, k: int) -> list:
        m, s, step, out = self.model, self.state, self.jitted, []
        for x, y in cycle(self.batches, k):
            m, s, v = step(m, s, x, y)
            out.append(v)
        self.model, self.state = m, s
        return out

    def memory(self) -> dict[str, Any] | None:
        x, y = self.batches[0]
        return xla_memory(self.jitted, self.model, self.state, x, y)


class Flux8bDonate(Flux8b):
    """8b's step under `jax.jit(step, donate_argnums=(0, 1))`."""

    name = "fl_8b_donate"
    donate = True
    step_only = True


class FluxTrain(_Flux):
    """`fl.train_` over a `fl.DataLoader` of the epoch's arrays on the device (fused into one scan)."""

    name = "fl_train_"
    epoch_only = True
    fuse = True

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        x, y = data
        xs = jax.device_put(x.reshape(-1, *x.shape[2:]))
        ys = jax.device_put(y.reshape(-1, *y.shape[2:]))
        self.loader = fl.DataLoader((xs, ys), batchsize=wl.batch)
        self.nb = x.shape[0]
        loss = LOSSES[wl.loss]
        self.loss = lambda m, x, y: loss(m(x), y)

    def run(self, k: int) -> np.ndarray:
        if k != self.nb:
            raise ValueError(f"{self.name} runs whole epochs of {self.nb} steps, not {k}")
        return fl.train_(self.loss, self.model, self.loader, self.state, fuse=self.fuse)

    def memory(self) -> dict[str, Any] | None:
        return None  # train_'s compiled programs are private; see the step workloads' fl_8b rows


class FluxTrainUnfused(FluxTrain):
    """`fl.train_(..., fuse=False)`: one compiled call per batch."""

    name = "fl_train_unfused"
    fuse = False


class FluxEager(_Flux):
    """The seed's eager loop: `fl.withgradient` then `fl.update_`, once per device batch."""

    name = "fl_eager"
    step_only = True

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.batches = device_batches(data)
        self.loss = LOSSES[wl.loss]

    def run(self, k: int) -> list:
        loss, model, state, out = self.loss, self.model, self.state, []
        for x, y in cycle(self.batches, k):
            val, grads = fl.withgradient(lambda m: loss(m(x), y), model)
            fl.update_(state, model, grads[0])
            out.append(val)
        return out


class FluxTrainList(FluxTrain):
    """`fl.train_` over a list of `(x, y)` device-array tuples (stacked once, kept while unchanged)."""

    name = "fl_train_list"

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.loader = device_batches(data)


IMPLS = {c.name: c for c in (Flux8b, Flux8bDonate, FluxTrain, FluxTrainUnfused, FluxEager, FluxTrainList)}
