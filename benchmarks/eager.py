"""Benchmark: the loops users write first, against the hand-written jitted step.

Issue 9's rows, measured in one run on the same data:

- `eager`: the seed page's first loop, no `jax.jit` written:
  `grads = fl.gradient(lambda m: loss(m(x), y), model); fl.update_(state, model, grads[0])`;
- `train_ list`: `fl.train_` over a list of `(x, y)` device-array tuples
  (steady epoch, and the first epoch: trace + compile + stack);
- `hand`: value_and_grad + optax.adam on a dict of arrays, `jax.jit` with
  donation, called in a Python loop over the same list (steady, and the
  first epoch). (Issue 9's 15 ms epoch is one hand-written `lax.scan`; this
  reference is the Python loop a user writes.)

Workloads: tiny 2-16-16-1 b32 (mse) and mlp 784-512-512-10 b128 (logit
cross-entropy), Adam(1e-3). Per-step times are medians over rounds, each
round timing every implementation once in a rotated order; ratios are paired
(the median of per-round ratios to `hand`).

    PYTHONPATH=. python benchmarks/eager.py            # about 2 minutes on 2 cores
    PYTHONPATH=. python benchmarks/eager.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fluxlike as fl

WORKLOADS = {"tiny": ((2, 16, 16, 1), 32, "mse"), "mlp": ((784, 512, 512, 10), 128, "ce")}


def make(sizes: tuple, seed: int) -> fl.Chain:
    fl.seed(seed)
    n = len(sizes) - 1
    return fl.Chain(*[fl.Dense(a, b, fl.relu if i < n - 1 else fl.identity)
                      for i, (a, b) in enumerate(zip(sizes, sizes[1:]))])


def data(sizes: tuple, batch: int, kind: str, n: int) -> list:
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        x = rng.normal(size=(batch, sizes[0])).astype("float32")
        if kind == "mse":
            y = rng.normal(size=(batch, sizes[-1])).astype("float32")
        else:
            y = np.eye(sizes[-1], dtype="float32")[rng.integers(0, sizes[-1], batch)]
        out.append((jnp.asarray(x), jnp.asarray(y)))
    return out


def loss_fn(kind: str) -> Callable:
    return fl.losses.mse if kind == "mse" else fl.losses.logitcrossentropy


def hand(model: fl.Chain, kind: str) -> tuple[Callable, Any]:
    """The reference: a dict of arrays, value_and_grad + optax.adam, jitted with donation."""
    params = {f"{i}": (jnp.array(l.weight), jnp.array(l.bias)) for i, l in enumerate(model.layers)}
    n = len(params)
    opt = optax.adam(1e-3)

    def forward(p: dict, x: jax.Array) -> jax.Array:
        for i in range(n):
            w, b = p[f"{i}"]
            x = x @ w.T + b
            if i < n - 1:
                x = jax.nn.relu(x)
        return x

    def loss(p: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        out = forward(p, x)
        if kind == "mse":
            return jnp.mean((out - y) ** 2)
        return -jnp.mean(jnp.sum(y * jax.nn.log_softmax(out), axis=-1))

    def step(p: dict, s: Any, x: jax.Array, y: jax.Array) -> tuple:
        val, g = jax.value_and_grad(loss)(p, x, y)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, val

    return jax.jit(step, donate_argnums=(0, 1)), (params, opt.init(params))


def run_eager(model: Any, state: Any, batches: list, loss: Callable) -> None:
    for x, y in batches:  # the seed page's loop, as written
        grads = fl.gradient(lambda m: loss(m(x), y), model)
        fl.update_(state, model, grads[0])
    jax.block_until_ready(jax.tree.leaves(model))


def run_train(loss: Callable, model: Any, state: Any, batches: list) -> None:
    fl.train_(loss, model, batches, state)
    jax.block_until_ready(jax.tree.leaves(model))


def run_hand(step: Callable, carry: list, batches: list) -> None:
    p, s = carry
    for x, y in batches:
        p, s, val = step(p, s, x, y)
    jax.block_until_ready(p)
    carry[:] = [p, s]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    args = ap.parse_args(argv)
    rounds, steps, epoch = (3, 5, 100) if args.quick else (7, 20, 1875)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; rounds {rounds}, eager steps {steps}, epoch {epoch}")
    for name, (sizes, batch, kind) in WORKLOADS.items():
        loss = loss_fn(kind)
        batches = data(sizes, batch, kind, epoch)
        tloss = lambda m, x, y: loss(m(x), y)

        # first epoch: trace + compile (+ stack) on fresh objects, for train_ and hand
        model = make(sizes, 1)
        state = fl.setup(fl.Adam(1e-3), model)
        t0 = time.perf_counter()
        fl.train_(tloss, model, batches, state)
        jax.block_until_ready(jax.tree.leaves(model))
        first_train = time.perf_counter() - t0
        step, carry0 = hand(make(sizes, 1), kind)
        carry = list(carry0)
        t0 = time.perf_counter()
        run_hand(step, carry, batches)
        first_hand = time.perf_counter() - t0

        em = make(sizes, 2)
        es = fl.setup(fl.Adam(1e-3), em)
        run_eager(em, es, batches[:2], loss)  # warm
        tm = make(sizes, 3)
        ts = fl.setup(fl.Adam(1e-3), tm)
        fl.train_(tloss, tm, batches, ts)  # warm
        times: dict[str, list[float]] = {"eager": [], "train_ list": [], "hand": [], "hand epoch": []}
        impls = {
            "eager": lambda: run_eager(em, es, batches[:steps], loss) or steps,
            "train_ list": lambda: run_train(tloss, tm, ts, batches) or epoch,
            "hand": lambda: run_hand(step, carry, batches[:steps]) or steps,
            "hand epoch": lambda: run_hand(step, carry, batches) or epoch,
        }
        order = list(impls)
        for r in range(rounds):
            for k in order[r % len(order):] + order[:r % len(order)]:
                t0 = time.perf_counter()
                n = impls[k]()
                times[k].append((time.perf_counter() - t0) / n)
        med = {k: statistics.median(v) for k, v in times.items()}

        def paired(k: str, ref: str) -> float:
            return statistics.median(a / b for a, b in zip(times[k], times[ref]))

        print(f"\n{name} {'-'.join(map(str, sizes))} b{batch}: ms per step (median), paired ratio")
        print(f"  eager loop (fl.gradient + fl.update_) {med['eager'] * 1e3:8.3f}   x{paired('eager', 'hand'):6.2f} of hand")
        print(f"  hand jitted step, Python loop        {med['hand'] * 1e3:8.3f}")
        print(f"  train_ over a list, steady epoch     {med['train_ list'] * 1e3 * epoch:8.1f} ms/epoch"
              f"   x{paired('train_ list', 'hand epoch'):6.2f} of hand's epoch ({med['hand epoch'] * 1e3 * epoch:.1f} ms)")
        print(f"  first epoch (trace+compile): train_ {first_train:6.2f} s, hand {first_hand:6.2f} s"
              f"   x{first_train / first_hand:5.1f}")


if __name__ == "__main__":
    main()
