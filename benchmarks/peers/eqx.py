"""Equinox + optax, written as Equinox's documentation writes it.

Models: `eqx.nn.MLP` (the MLP workloads all have one hidden width), and for
the cnn a Module of `eqx.nn.Conv2d` / `eqx.nn.MaxPool2d` / `eqx.nn.Linear`
on single CHW samples, batched with `jax.vmap` (the Equinox MNIST example's
shape). Three ways to compile the step:

- `eqx`: `@eqx.filter_jit` with `eqx.filter_value_and_grad` and
  `optim.init(eqx.filter(model, eqx.is_inexact_array))`, the documented idiom;
- `eqx_jit`: `eqx.partition(model, eqx.is_array)`, then plain
  `jax.jit(step, donate_argnums=(0, 1))` on the array part, combining inside;
- `eqx_flat`: the "Low-overhead training loops" trick of Equinox's docs
  (tricks.md): the filter_jit step takes and returns flattened leaves.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from peers.hand import LOSSES, LR
from peers.runner import Runner, cycle, device_batches, xla_memory
from peers.workloads import CNN_CONVS, Workload, nchw_dense_weight, nhwc_dense_weight


class CNN(eqx.Module):
    """conv -> relu -> 2x2 max pool, twice, then Linear, on one (C, H, W) sample."""

    convs: list
    pool: eqx.nn.MaxPool2d
    linear: eqx.nn.Linear

    def __init__(self, key: jax.Array) -> None:
        keys = jax.random.split(key, len(CNN_CONVS) + 1)
        self.convs = [eqx.nn.Conv2d(cin, cout, k, key=kk) for (k, cin, cout), kk in zip(CNN_CONVS, keys)]
        self.pool = eqx.nn.MaxPool2d(2, 2)
        self.linear = eqx.nn.Linear(800, 10, key=keys[-1])

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = self.pool(jax.nn.relu(conv(x)))
        return self.linear(jnp.ravel(x))


def build(wl: Workload, weights: list) -> eqx.Module:
    """The workload's Equinox model holding `weights`.

    Example:
        >>> from peers.eqx import build
        >>> from peers.workloads import Workload, init_weights
        >>> wl = Workload("t", "mlp", (2, 4, 4, 1), 8, "mse", 1, 1)
        >>> build(wl, init_weights(wl)).layers[0].weight.shape
        (4, 2)
    """
    key = jax.random.key(0)
    if wl.kind == "cnn":
        model = CNN(key)
        (k1, b1), (k2, b2), (wd, bd) = weights
        new = [jnp.asarray(k1.transpose(3, 2, 0, 1)), jnp.asarray(b1[:, None, None]),
               jnp.asarray(k2.transpose(3, 2, 0, 1)), jnp.asarray(b2[:, None, None]),
               jnp.asarray(nchw_dense_weight(wd)), jnp.asarray(bd)]
        where = lambda m: [m.convs[0].weight, m.convs[0].bias, m.convs[1].weight, m.convs[1].bias,
                           m.linear.weight, m.linear.bias]
        return eqx.tree_at(where, model, new)
    widths = set(wl.sizes[1:-1])
    if len(widths) != 1:
        raise ValueError(f"eqx.nn.MLP has one hidden width; workload {wl.name} has {sorted(widths)}")
    model = eqx.nn.MLP(wl.sizes[0], wl.sizes[-1], widths.pop(), wl.nlayers - 1, activation=jax.nn.relu, key=key)
    where = lambda m: [a for layer in m.layers for a in (layer.weight, layer.bias)]
    return eqx.tree_at(where, model, [jnp.asarray(a) for wb in weights for a in wb])


def canonical(wl: Workload, model: eqx.Module) -> list:
    """The model's weights back in the canonical layout."""
    if wl.kind == "cnn":
        c = [(np.asarray(l.weight).transpose(2, 3, 1, 0), np.asarray(l.bias).reshape(-1)) for l in model.convs]
        return c + [(nhwc_dense_weight(np.asarray(model.linear.weight)), np.asarray(model.linear.bias))]
    return [(np.asarray(l.weight), np.asarray(l.bias)) for l in model.layers]


def batches(wl: Workload, data: tuple) -> list:
    """Device batches; images as NCHW (Equinox's Conv2d takes CHW samples)."""
    x, y = data
    if wl.kind == "cnn":
        x = np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3))
    return device_batches((x, y))


def loss_fn(wl: Workload) -> Callable:
    """`loss(model, x, y)` on a batch, the model vmapped over it."""
    loss = LOSSES[wl.loss]
    return lambda model, x, y: loss(jax.vmap(model)(x), y)


class _Eqx(Runner):
    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        self.wl = wl
        self.model = build(wl, weights)
        self.optim = optax.adam(LR)
        self.opt_state = self.optim.init(eqx.filter(self.model, eqx.is_inexact_array))
        self.batches = batches(wl, data)

    def state_arrays(self) -> Any:
        return eqx.filter(self.model, eqx.is_array)

    def params(self) -> list:
        return canonical(self.wl, self.model)


class EqxFilterJit(_Eqx):
    """The documented idiom: `@eqx.filter_jit` step, `eqx.filter_value_and_grad`, `eqx.apply_updates`."""

    name = "eqx"
    step_only = True  # the epoch workload runs each library's fastest per-step variant

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        compute_loss, optim = loss_fn(wl), self.optim

        @eqx.filter_jit
        def make_step(model, opt_state, x, y):
            loss, grads = eqx.filter_value_and_grad(compute_loss)(model, x, y)
            updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, eqx.is_array))
            model = eqx.apply_updates(model, updates)
            return model, opt_state, loss

        self.make_step = make_step

    def run(self, k: int) -> list:
        model, opt_state, step, out = self.model, self.opt_state, self.make_step, []
        for x, y in cycle(self.batches, k):
            model, opt_state, loss = step(model, opt_state, x, y)
            out.append(loss)
        self.model, self.opt_state = model, opt_state
        return out

    def memory(self) -> dict[str, Any] | None:
        x, y = self.batches[0]
        return xla_memory(self.make_step, self.model, self.opt_state, x, y)


class EqxJaxJit(_Eqx):
    """`eqx.partition` once, then `jax.jit(step, donate_argnums=(0, 1))` on the arrays, `eqx.combine` inside."""

    name = "eqx_jit"

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.params_, static = eqx.partition(self.model, eqx.is_array)
        compute_loss, optim = loss_fn(wl), self.optim

        def step(params, opt_state, x, y):
            loss, grads = jax.value_and_grad(lambda p: compute_loss(eqx.combine(p, static), x, y))(params)
            updates, opt_state = optim.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, loss

        self.static = static
        self.jitted = jax.jit(step, donate_argnums=(0, 1))

    def run(self, k: int) -> list:
        p, s, step, out = self.params_, self.opt_state, self.jitted, []
        for x, y in cycle(self.batches, k):
            p, s, loss = step(p, s, x, y)
            out.append(loss)
        self.params_, self.opt_state = p, s
        return out

    def state_arrays(self) -> Any:
        return self.params_

    def params(self) -> list:
        return canonical(self.wl, eqx.combine(self.params_, self.static))

    def memory(self) -> dict[str, Any] | None:
        x, y = self.batches[0]
        return xla_memory(self.jitted, self.params_, self.opt_state, x, y)


class EqxFlat(_Eqx):
    """Equinox's low-overhead loop: a filter_jit step on flattened leaves, unflattened inside."""

    name = "eqx_flat"
    step_only = True

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.flat_model, treedef_model = jax.tree_util.tree_flatten(self.model)
        self.flat_opt, treedef_opt = jax.tree_util.tree_flatten(self.opt_state)
        self.treedef_model = treedef_model
        compute_loss, optim = loss_fn(wl), self.optim

        @eqx.filter_jit
        def make_step(flat_model, flat_opt_state, x, y):
            model = jax.tree_util.tree_unflatten(treedef_model, flat_model)
            opt_state = jax.tree_util.tree_unflatten(treedef_opt, flat_opt_state)
            loss, grads = eqx.filter_value_and_grad(compute_loss)(model, x, y)
            updates, opt_state = optim.update(grads, opt_state, eqx.filter(model, eqx.is_array))
            model = eqx.apply_updates(model, updates)
            return jax.tree_util.tree_leaves(model), jax.tree_util.tree_leaves(opt_state), loss

        self.make_step = make_step

    def run(self, k: int) -> list:
        fm, fo, step, out = self.flat_model, self.flat_opt, self.make_step, []
        for x, y in cycle(self.batches, k):
            fm, fo, loss = step(fm, fo, x, y)
            out.append(loss)
        self.flat_model, self.flat_opt = fm, fo
        return out

    def state_arrays(self) -> Any:
        return [a for a in self.flat_model if eqx.is_array(a)]

    def params(self) -> list:
        return canonical(self.wl, jax.tree_util.tree_unflatten(self.treedef_model, self.flat_model))

    def memory(self) -> dict[str, Any] | None:
        x, y = self.batches[0]
        return xla_memory(self.make_step, self.flat_model, self.flat_opt, x, y)


IMPLS = {c.name: c for c in (EqxFilterJit, EqxJaxJit, EqxFlat)}
