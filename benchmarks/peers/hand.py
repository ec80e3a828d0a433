"""The reference: the step written by hand with jax + optax on a dict of arrays.

`hand` is `jax.jit(step, donate_argnums=(0, 1))`, the number every ratio is
taken against; `hand_nodonate` is the same without donation (the like-for-like
of WALKTHROUGH 8b as written). On the epoch workload, `hand_scan` runs the
whole epoch as one `lax.scan` over batches held on the device (what a fused
`train_` should approach), and `hand` is a Python loop of its steps. On the
cnn, `hand_reshape_pool` swaps `lax.reduce_window` pooling for a reshape (see
`max_pool2_reshape`), which removes most of the gap to PyTorch.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from peers.runner import Runner, Unsupported, cycle, device_batches, xla_memory
from peers.workloads import CNN_CONVS, Workload

LR = 1e-3


def mse(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Mean of squared errors over all entries.

    Example:
        >>> import jax.numpy as jnp
        >>> from peers.hand import mse
        >>> float(mse(jnp.array([1.0, 3.0]), jnp.array([0.0, 0.0])))
        5.0
    """
    return jnp.mean(jnp.square(y_hat - y))


def logitcrossentropy(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Mean over the batch of `-sum(y * log_softmax(y_hat))` (one-hot or soft targets on the last axis).

    Example:
        >>> import jax.numpy as jnp
        >>> from peers.hand import logitcrossentropy
        >>> round(float(logitcrossentropy(jnp.zeros((1, 4)), jnp.eye(4)[:1])), 4)
        1.3863
    """
    return jnp.mean(-jnp.sum(y * jax.nn.log_softmax(y_hat, axis=-1), axis=-1))


LOSSES: dict[str, Callable] = {"mse": mse, "logitcrossentropy": logitcrossentropy}


def to_params(weights: list) -> dict[str, jax.Array]:
    """Canonical weights as `{"w0": ..., "b0": ..., ...}` on the device.

    Example:
        >>> import numpy as np
        >>> from peers.hand import to_params
        >>> sorted(to_params([(np.zeros((2, 3)), np.zeros(2))]))
        ['b0', 'w0']
    """
    out = {}
    for i, (w, b) in enumerate(weights):
        out[f"w{i}"], out[f"b{i}"] = jnp.asarray(w), jnp.asarray(b)
    return out


def max_pool2(x: jax.Array) -> jax.Array:
    """2x2 max pooling, stride 2, NHWC (a trailing odd row/column is dropped), as `lax.reduce_window`."""
    return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def max_pool2_reshape(x: jax.Array) -> jax.Array:
    """The same pooling as a reshape into windows and a masked sum, whose gradient is an
    elementwise select instead of XLA's select-and-scatter; the first maximum of a
    window takes the whole gradient, as with `max_pool2`.

    Example:
        >>> import numpy as np, jax, jax.numpy as jnp
        >>> from peers.hand import max_pool2, max_pool2_reshape
        >>> x = jnp.asarray(np.random.default_rng(0).integers(0, 3, (2, 5, 5, 3)), jnp.float32)
        >>> bool((max_pool2(x) == max_pool2_reshape(x)).all())
        True
        >>> g = lambda f: jax.grad(lambda x: (f(x) * jnp.arange(24.0).reshape(2, 2, 2, 3)).sum())(x)
        >>> bool((g(max_pool2) == g(max_pool2_reshape)).all())
        True
    """
    n, h, w, c = x.shape
    h2, w2 = h // 2, w // 2
    win = x[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h2, w2, c, 4)
    first = jax.nn.one_hot(jnp.argmax(win, axis=-1), 4, dtype=bool)
    return jnp.where(first, win, 0).sum(axis=-1)


def forward(wl: Workload, p: dict[str, jax.Array], x: jax.Array, pool: Callable = max_pool2) -> jax.Array:
    """The workload's model: Dense layers with relu between, or the conv stack then Dense.

    Example:
        >>> import numpy as np, jax.numpy as jnp
        >>> from peers.hand import forward, to_params
        >>> from peers.workloads import Workload, init_weights
        >>> wl = Workload("t", "mlp", (2, 4, 1), 8, "mse", 1, 1)
        >>> forward(wl, to_params(init_weights(wl)), jnp.ones((8, 2))).shape
        (8, 1)
    """
    n = wl.nlayers
    if wl.kind == "cnn":
        for i in range(len(CNN_CONVS)):
            x = lax.conv_general_dilated(x, p[f"w{i}"], (1, 1), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
            x = pool(jax.nn.relu(x + p[f"b{i}"]))
        x = x.reshape(x.shape[0], -1)
        return x @ p[f"w{n - 1}"].T + p[f"b{n - 1}"]
    for i in range(n):
        x = x @ p[f"w{i}"].T + p[f"b{i}"]
        if i < n - 1:
            x = jax.nn.relu(x)
    return x


def make_step(wl: Workload, opt: optax.GradientTransformation, pool: Callable = max_pool2) -> Callable:
    """`step(params, opt_state, x, y) -> (params, opt_state, loss)`: value_and_grad + an optax update."""
    loss = LOSSES[wl.loss]

    def step(params, opt_state, x, y):
        val, grads = jax.value_and_grad(lambda p: loss(forward(wl, p, x, pool), y))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, val

    return step


class _Hand(Runner):
    pool: Callable = staticmethod(max_pool2)

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        self.wl = wl
        self.opt = optax.adam(LR)
        self.p = to_params(weights)
        self.s = self.opt.init(self.p)
        self.step_fn = make_step(wl, self.opt, self.pool)

    def state_arrays(self) -> Any:
        return self.p

    def params(self) -> list:
        return [(np.asarray(self.p[f"w{i}"]), np.asarray(self.p[f"b{i}"])) for i in range(self.wl.nlayers)]


class HandStep(_Hand):
    """`jax.jit(step, donate_argnums=(0, 1))` over batches on the device (the reference)."""

    name = "hand"
    donate = True

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.batches = device_batches(data)
        self.jitted = jax.jit(self.step_fn, donate_argnums=(0, 1) if self.donate else ())

    def run(self, k: int) -> list:
        p, s, step, out = self.p, self.s, self.jitted, []
        for x, y in cycle(self.batches, k):
            p, s, v = step(p, s, x, y)
            out.append(v)
        self.p, self.s = p, s
        return out

    def memory(self) -> dict[str, Any] | None:
        x, y = self.batches[0]
        return xla_memory(self.jitted, self.p, self.s, x, y)


class HandStepNoDonate(HandStep):
    """`jax.jit(step)`, no donation: the like-for-like of WALKTHROUGH 8b as written."""

    name = "hand_nodonate"
    donate = False
    step_only = True


class HandReshapePool(HandStep):
    """`hand` with `max_pool2_reshape`: what the cnn step costs without select-and-scatter (cnn only)."""

    name = "hand_reshape_pool"
    step_only = True
    pool = staticmethod(max_pool2_reshape)

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        if wl.kind != "cnn":
            raise Unsupported("hand_reshape_pool only differs from hand on the cnn")
        super().__init__(wl, weights, data)


class HandScan(_Hand):
    """The whole epoch as one `lax.scan` of the hand step, batches stacked on the device, donated."""

    name = "hand_scan"
    epoch_only = True

    def __init__(self, wl: Workload, weights: list, data: tuple) -> None:
        super().__init__(wl, weights, data)
        self.xs, self.ys = jax.block_until_ready(jax.device_put(data))
        step = self.step_fn

        def epoch(p, s, xs, ys):
            def body(carry, batch):
                p, s, v = step(*carry, *batch)
                return (p, s), v

            (p, s), vals = lax.scan(body, (p, s), (xs, ys))
            return p, s, vals

        self.jitted = jax.jit(epoch, donate_argnums=(0, 1))

    def run(self, k: int) -> jax.Array:
        if k != self.xs.shape[0]:
            raise ValueError(f"hand_scan runs whole epochs of {self.xs.shape[0]} steps, not {k}")
        self.p, self.s, vals = self.jitted(self.p, self.s, self.xs, self.ys)
        return vals

    def memory(self) -> dict[str, Any] | None:
        return xla_memory(self.jitted, self.p, self.s, self.xs, self.ys)


IMPLS = {c.name: c for c in (HandStep, HandStepNoDonate, HandReshapePool, HandScan)}
