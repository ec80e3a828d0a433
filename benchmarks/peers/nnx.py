"""Flax NNX + optax, written as Flax's documentation writes it.

Models: a Module holding an `nnx.List` of `nnx.Linear`, or `nnx.Conv` (NHWC,
'VALID') + `nnx.max_pool` + `nnx.Linear`; `nnx.Optimizer(model, optax.adam,
wrt=nnx.Param)`; the step calls `nnx.value_and_grad` and `optimizer.update`.
The ways to compile it:

- `nnx_jit`: `@nnx.jit` (graph mode, flax 0.12's default), as in the MNIST tutorial;
- `nnx_cached`: `nnx.cached_partial(train_step, model, optimizer)` (Performance guide);
- `nnx_tree`: tree mode, `graph=False` on `nnx.jit`, `nnx.value_and_grad` and
  `nnx.Optimizer` (FLIP 5310);
- `nnx_jit_partial`: `nnx.jit_partial(train_step, model, optimizer, graph=False)`
  (flax's benchmarks/nnx_simple_training.py);
- `nnx_split`: the Performance guide's functional loop: `nnx.split` once, plain
  `jax.jit` (here with `donate_argnums=(1,)`), `nnx.merge` / `nnx.state` inside.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from peers.hand import LOSSES, LR
from peers.runner import Runner, cycle, device_batches, xla_memory
from peers.workloads import CNN_CONVS, Workload, cnn_dense_in


class MLP(nnx.Module):
    """Linear layers with relu between them."""

    def __init__(self, sizes: tuple[int, ...], rngs: nnx.Rngs) -> None:
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:])])

    def __call__(self, x: jax.Array) -> jax.Array:
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < n - 1:
                x = nnx.relu(x)
        return x


class CNN(nnx.Module):
    """conv -> relu -> 2x2 max pool, twice, then Linear, on NHWC batches."""

    def __init__(self, rngs: nnx.Rngs) -> None:
        self.convs = nnx.List([nnx.Conv(cin, cout, kernel_size=(k, k), padding="VALID", rngs=rngs)
                               for k, cin, cout in CNN_CONVS])
        self.linear = nnx.Linear(cnn_dense_in(), 10, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = nnx.max_pool(nnx.relu(conv(x)), window_shape=(2, 2), strides=(2, 2))
        return self.linear(x.reshape(x.shape[0], -1))


def _linears(model: nnx.Module) -> list:
    return list(model.convs) + [model.linear] if isinstance(model, CNN) else list(model.layers)


def build(wl: Workload, weights: list) -> nnx.Module:
    """The workload's NNX model holding `weights` (Linear kernels are (in, out): transposed).

    Example:
        >>> from peers.nnx import build
        >>> from peers.workloads import Workload, init_weights
        >>> wl = Workload("t", "mlp", (2, 4, 1), 8, "mse", 1, 1)
        >>> build(wl, init_weights(wl)).layers[0].kernel.shape
        (2, 4)
    """
    rngs = nnx.Rngs(0)
    model = CNN(rngs) if wl.kind == "cnn" else MLP(wl.sizes, rngs)
    for layer, (w, b) in zip(_linears(model), weights):
        layer.kernel[...] = jnp.asarray(w if w.ndim == 4 else w.T)
        layer.bias[...] = jnp.asarray(b)
    return model


def canonical(model: nnx.Module) -> list:
    """The model's weights in the canonical layout."""
    out = []
    for layer in _linears(model):
        k = np.asarray(layer.kernel[...])
        out.append((k if k.ndim == 4 else k.T, np.asarray(layer.bias[...])))
    return out


def train_step_fn(wl: Workload, graph: bool | None = None) -> Callable:
    """`train_step(model, optimizer, x, y) -> loss`, updating both in place (not yet compiled)."""
    loss = LOSSES[wl.loss]
    kw = {} if graph is None else {"graph": graph}

    def train_step(model, optimizer, x, y):
        def loss_fn(model):
            return loss(model(x), y)

        val, grads = nnx.value_and_grad(loss_fn, **kw)(model)
        optimizer.update(model, grads)
        return val

    return train_step


class _NNX(Runner):
    graph: bool | None = None

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        self.wl = wl
        self.model = build(wl, weights)
        kw = {} if self.graph is None else {"graph": self.graph}
        self.optimizer = nnx.Optimizer(self.model, optax.adam(LR), wrt=nnx.Param, **kw)
        self.batches = device_batches(data)

    def state_arrays(self) -> Any:
        return nnx.state(self.model)

    def params(self) -> list:
        return canonical(self.model)


class NNXJit(_NNX):
    """`@nnx.jit def train_step(model, optimizer, x, y)` (graph mode), as in the MNIST tutorial."""

    name = "nnx_jit"
    step_only = True  # the epoch workload runs each library's fastest per-step variants

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.step = nnx.jit(train_step_fn(wl, self.graph), **({} if self.graph is None else {"graph": self.graph}))

    def run(self, k: int) -> list:
        model, opt, step, out = self.model, self.optimizer, self.step, []
        for x, y in cycle(self.batches, k):
            out.append(step(model, opt, x, y))
        return out

    def memory(self) -> dict[str, Any] | None:
        x, y = self.batches[0]
        return xla_memory(self.step, self.model, self.optimizer, x, y)


class NNXTree(NNXJit):
    """Tree mode: `graph=False` on `nnx.jit`, `nnx.value_and_grad` and `nnx.Optimizer`."""

    name = "nnx_tree"
    graph = False


class NNXCached(NNXJit):
    """`nnx.cached_partial(nnx.jit(train_step), model, optimizer)`: graph traversal cached."""

    name = "nnx_cached"

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.jit_step = self.step
        self.cached = nnx.cached_partial(self.step, self.model, self.optimizer)

    def run(self, k: int) -> list:
        step, out = self.cached, []
        for x, y in cycle(self.batches, k):
            out.append(step(x, y))
        return out

    def memory(self) -> dict[str, Any] | None:
        return None  # the same program as nnx_jit


class NNXJitPartial(_NNX):
    """`nnx.jit_partial(train_step, model, optimizer, graph=False)` (tree mode, pre-flattened arguments)."""

    name = "nnx_jit_partial"
    graph = False
    step_only = False

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.step = nnx.jit_partial(train_step_fn(wl, False), self.model, self.optimizer, graph=False)

    def run(self, k: int) -> list:
        step, out = self.step, []
        for x, y in cycle(self.batches, k):
            out.append(step(x, y))
        return out


class NNXSplit(_NNX):
    """The Performance guide's functional loop: split once, `jax.jit` a step that merges, donated state."""

    name = "nnx_split"
    step_only = False

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.graphdef, self.state = nnx.split((self.model, self.optimizer))
        train_step = train_step_fn(wl)

        def jax_train_step(graphdef, state, x, y):
            model, optimizer = nnx.merge(graphdef, state)
            loss = train_step(model, optimizer, x, y)
            return loss, nnx.state((model, optimizer))

        self.jitted = jax.jit(jax_train_step, donate_argnums=(1,))

    def run(self, k: int) -> list:
        g, state, step, out = self.graphdef, self.state, self.jitted, []
        for x, y in cycle(self.batches, k):
            loss, state = step(g, state, x, y)
            out.append(loss)
        self.state = state
        return out

    def state_arrays(self) -> Any:
        return self.state

    def params(self) -> list:
        nnx.update((self.model, self.optimizer), self.state)
        return canonical(self.model)

    def memory(self) -> dict[str, Any] | None:
        x, y = self.batches[0]
        return xla_memory(self.jitted, self.graphdef, self.state, x, y)


IMPLS = {c.name: c for c in (NNXJit, NNXCached, NNXTree, NNXJitPartial, NNXSplit)}
