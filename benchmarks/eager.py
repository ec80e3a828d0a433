"""Benchmark: the loops users write first, against hand-written jax + optax.

Issue 9's rows, measured in one run on the same data:

- `eager`: the seed page's first loop, no `jax.jit` written:
  `grads = fl.gradient(lambda m: loss(m(x), y), model); fl.update_(state, model, grads[0])`;
- `train_ list`: `fl.train_` over a list of `(x, y)` device-array tuples;
- `train_ loader`: `fl.train_` over a `fl.DataLoader` of the same arrays;
- `hand`: value_and_grad + optax.adam on a dict of arrays, `jax.jit` with
  donation, called in a Python loop (the reference of the eager loop);
- `hand scan`: the same step over the whole epoch as one jitted `lax.scan`
  over the list stacked with numpy (the reference of the epochs).

Workloads: tiny 2-16-16-1 b32 (mse) and mlp 784-512-512-10 b128 (logit
cross-entropy), Adam(1e-3), 1,875 batches an epoch. Steady times are
medians over rounds, each round timing every implementation once in a
rotated order; ratios are paired (the median of per-round ratios). First
epochs (trace + compile + stack + run) and their peak RSS run each in a
fresh process, three times, medians.

    PYTHONPATH=. python benchmarks/eager.py            # about 4 minutes on 2 cores
    PYTHONPATH=. python benchmarks/eager.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fluxlike as fl

WORKLOADS = {"tiny": ((2, 16, 16, 1), 32, "mse"), "mlp": ((784, 512, 512, 10), 128, "ce")}
FIRSTS = ("eager", "train_ list", "train_ loader", "hand", "hand scan")


def make(sizes: tuple, seed: int) -> fl.Chain:
    fl.seed(seed)
    n = len(sizes) - 1
    return fl.Chain(*[fl.Dense(a, b, fl.relu if i < n - 1 else fl.identity)
                      for i, (a, b) in enumerate(zip(sizes, sizes[1:]))])


def arrays(sizes: tuple, batch: int, kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n * batch, sizes[0])).astype("float32")
    if kind == "mse":
        y = rng.normal(size=(n * batch, sizes[-1])).astype("float32")
    else:
        y = np.eye(sizes[-1], dtype="float32")[rng.integers(0, sizes[-1], n * batch)]
    return x, y


def batches(x: np.ndarray, y: np.ndarray, batch: int) -> list:
    """The natural JAX form of the seed's train_set: a list of device-array tuples."""
    return [(jnp.asarray(x[i:i + batch]), jnp.asarray(y[i:i + batch])) for i in range(0, len(x), batch)]


def loss_fn(kind: str) -> Callable:
    return fl.losses.mse if kind == "mse" else fl.losses.logitcrossentropy


def hand(model: fl.Chain, kind: str) -> tuple[Callable, Callable, Any]:
    """The reference: a dict of arrays, value_and_grad + optax.adam; the step
    jitted with donation, and the whole epoch as one jitted lax.scan."""
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

    def epoch(p: dict, s: Any, xs: jax.Array, ys: jax.Array) -> tuple:
        def body(carry: tuple, xy: tuple) -> tuple:
            p, s, val = step(*carry, *xy)
            return (p, s), val
        (p, s), vals = jax.lax.scan(body, (p, s), (xs, ys))
        return p, s, vals

    return (jax.jit(step, donate_argnums=(0, 1)), jax.jit(epoch, donate_argnums=(0, 1)),
            (params, opt.init(params)))


def stack(data: list) -> tuple[jax.Array, jax.Array]:
    """What a hand-writer does before a scan: stack with numpy, one transfer."""
    return (jnp.asarray(np.stack([np.asarray(x) for x, _ in data])),
            jnp.asarray(np.stack([np.asarray(y) for _, y in data])))


def runners(name: str, data: list, x: np.ndarray, y: np.ndarray) -> dict[str, Callable[[int], int]]:
    """Each implementation as `run(steps) -> steps run`, on its own model copy."""
    sizes, batch, kind = WORKLOADS[name]
    loss = loss_fn(kind)
    tloss = lambda m, x, y: loss(m(x), y)
    loader = fl.DataLoader((x, y), batchsize=batch)
    em, tm, lm = make(sizes, 1), make(sizes, 1), make(sizes, 1)
    es, ts, ls = (fl.setup(fl.Adam(1e-3), m) for m in (em, tm, lm))
    step, epoch, carry0 = hand(make(sizes, 1), kind)
    carry = list(carry0)
    scan_carry = list(jax.tree.map(jnp.copy, carry0))

    def eager(k: int) -> int:
        for x, y in data[:k]:  # the seed page's loop, as written
            grads = fl.gradient(lambda m: loss(m(x), y), em)
            fl.update_(es, em, grads[0])
        jax.block_until_ready(jax.tree.leaves(em))
        return k

    def train_list(k: int) -> int:
        fl.train_(tloss, tm, data, ts)
        jax.block_until_ready(jax.tree.leaves(tm))
        return len(data)

    def train_loader(k: int) -> int:
        fl.train_(tloss, lm, loader, ls)
        jax.block_until_ready(jax.tree.leaves(lm))
        return len(data)

    def hand_loop(k: int) -> int:
        p, s = carry
        for x, y in data[:k]:
            p, s, val = step(p, s, x, y)
        jax.block_until_ready(p)
        carry[:] = [p, s]
        return k

    stacked: list = []

    def hand_scan(k: int) -> int:
        if not stacked:  # once, as a hand-written script stacks its epoch before the loop
            stacked.extend(stack(data))
        p, s, vals = epoch(*scan_carry, *stacked)
        jax.block_until_ready(p)
        scan_carry[:] = [p, s]
        return len(data)

    return {"eager": eager, "train_ list": train_list, "train_ loader": train_loader,
            "hand": hand_loop, "hand scan": hand_scan}


def rss_mb() -> float:
    """This process's resident memory now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakRSS:
    """The highest resident memory seen while the block runs (sampled every 2 ms)."""

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = rss_mb()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss_mb())


def first(name: str, impl: str, n: int) -> None:
    """One implementation's first epoch (or first 20 eager steps) in this fresh process."""
    sizes, batch, kind = WORKLOADS[name]
    x, y = arrays(sizes, batch, kind, n)
    data = batches(x, y, batch)
    run = runners(name, data, x, y)[impl]
    jax.block_until_ready(data)
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        run(20)
        dt = time.perf_counter() - t0
    print(json.dumps({"s": dt, "rss_mb": mem.peak, "before_mb": mem.before}))


def firsts(name: str, n: int, repeats: int) -> dict[str, dict[str, float]]:
    out = {}
    for impl in FIRSTS:
        runs = []
        for _ in range(repeats):
            cmd = [sys.executable, __file__, "--first", name, impl, str(n)]
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if res.returncode != 0:
                raise RuntimeError(f"{name} {impl}: {res.stderr[-2000:]}")
            runs.append(json.loads(res.stdout.strip().splitlines()[-1]))
        out[impl] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and rounds")
    ap.add_argument("--first", nargs=3, metavar=("WORKLOAD", "IMPL", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.first:
        return first(args.first[0], args.first[1], int(args.first[2]))
    rounds, steps, n, repeats = (3, 10, 100, 1) if args.quick else (7, 40, 1875, 3)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; rounds {rounds}, eager steps {steps}, "
          f"epoch {n} batches")
    for name, (sizes, batch, kind) in WORKLOADS.items():
        x, y = arrays(sizes, batch, kind, n)
        data = batches(x, y, batch)
        run = runners(name, data, x, y)
        for r in run.values():  # warm: compile everything once
            r(2)
        times: dict[str, list[float]] = {k: [] for k in run}
        order = list(run)
        for r in range(rounds):
            for k in order[r % len(order):] + order[:r % len(order)]:
                t0 = time.perf_counter()
                done = run[k](steps)
                times[k].append((time.perf_counter() - t0) / done)
        med = {k: statistics.median(v) for k, v in times.items()}

        def paired(k: str, ref: str) -> float:
            return statistics.median(a / b for a, b in zip(times[k], times[ref]))

        fs = firsts(name, n, repeats)
        print(f"\n{name} {'-'.join(map(str, sizes))} b{batch}, {n} batches an epoch")
        print(f"  {'':34s} {'steady':>12s} {'ratio':>7s} {'first':>8s} {'ratio':>6s} {'peak RSS, +first':>16s} {'ratio':>6s}")
        for k, ref, unit, scale in (("eager", "hand", "ms/step", 1e3), ("hand", "hand", "ms/step", 1e3),
                                    ("train_ list", "hand scan", "ms/epoch", 1e3 * n),
                                    ("train_ loader", "hand scan", "ms/epoch", 1e3 * n),
                                    ("hand scan", "hand scan", "ms/epoch", 1e3 * n)):
            f, fr = fs[k], fs[ref]
            grow, grow_ref = f["rss_mb"] - f["before_mb"], fr["rss_mb"] - fr["before_mb"]
            print(f"  {k + ' (' + unit + ')':34s} {med[k] * scale:12.3f} {paired(k, ref):6.2f}x {f['s']:7.2f}s "
                  f"{f['s'] / fr['s']:5.2f}x {f['rss_mb']:5.0f}MB +{grow:4.0f} {grow / max(grow_ref, 1):5.2f}x")
    print("\nratios: eager and hand to hand (the jitted step in a Python loop); epochs to hand scan."
          "\nfirst: eager and hand run 20 steps, the others one epoch, in a fresh process (median of "
          f"{repeats}); peak RSS of that process, and how much the first run added to the peak\n"
          "(the data, the model and JAX itself are already loaded); the ratio is of the added peaks.")


if __name__ == "__main__":
    main()
