"""Benchmark: compile time and host memory of the compiled step against depth.

Issue 9, item 2. A Chain of `depth` x Dense(64, relu), batch 64, mse, Adam:
WALKTHROUGH 8b's step (`jax.jit`, `fl.withgradient` + `fl.update`, donated)
against the hand-written jax + optax step on a dict of arrays. Each
(implementation, depth) runs in a fresh process, which reports the traced
program's equations (counted into nested jaxprs), trace, lower and compile
seconds, the first call, the steady step, and the process's peak RSS.
Medians of three processes.

    PYTHONPATH=. python benchmarks/compile.py                 # depths 8, 64, 256: about 6 minutes
    PYTHONPATH=. python benchmarks/compile.py --depths 8,64   # fewer depths
    PYTHONPATH=. python benchmarks/compile.py --study         # why: per-Leaf scalars, in isolation

`--study` compiles 64 elementwise updates `m * s + g * (1 - s)` of 64x64
arrays whose scalar `s` is read in different ways. XLA:CPU compiles the
same work 7x slower when each update's scalar is a slice of one vector
(what a table of per-Leaf hyperparameters gives) than when all share one
scalar or each scalar is its own argument.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fluxlike as fl
from peers.runner import peak_rss_bytes

WIDTH, BATCH = 64, 64


def equations(jaxpr: Any) -> int:
    """Equations of a jaxpr, counting those of the jaxprs nested in it."""
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for p in eqn.params.values():
            for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    n += equations(inner)
    return n


def fluxlike_step(depth: int) -> tuple[Any, tuple]:
    fl.seed(0)
    model = fl.Chain(*[fl.Dense(WIDTH, WIDTH, fl.relu) for _ in range(depth)])
    state = fl.setup(fl.Adam(1e-3), model)
    loss = fl.losses.mse

    def step(model: Any, opt_state: Any, x: jax.Array, y: jax.Array) -> tuple:
        val, grads = fl.withgradient(lambda m: loss(m(x), y), model)
        opt_state, model = fl.update(opt_state, model, grads[0])
        return model, opt_state, val

    return jax.jit(step, donate_argnums=(0, 1)), (model, state)


def hand_step(depth: int) -> tuple[Any, tuple]:
    rng = np.random.default_rng(0)
    lim = np.sqrt(6 / (2 * WIDTH))
    params = {f"{i}": (jnp.asarray(rng.uniform(-lim, lim, (WIDTH, WIDTH)).astype("float32")),
                       jnp.zeros(WIDTH)) for i in range(depth)}
    opt = optax.adam(1e-3)

    def loss(p: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        for i in range(depth):
            w, b = p[f"{i}"]
            x = jax.nn.relu(x @ w.T + b)
        return jnp.mean((x - y) ** 2)

    def step(p: dict, s: Any, x: jax.Array, y: jax.Array) -> tuple:
        val, g = jax.value_and_grad(loss)(p, x, y)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, val

    return jax.jit(step, donate_argnums=(0, 1)), (params, opt.init(params))


def measure(impl: str, depth: int) -> dict[str, float]:
    """In this fresh process: one implementation at one depth."""
    step, (p, s) = (fluxlike_step if impl == "fluxlike" else hand_step)(depth)
    x = jnp.asarray(np.random.default_rng(1).normal(size=(BATCH, WIDTH)).astype("float32"))
    y = jnp.zeros((BATCH, WIDTH))
    jax.block_until_ready((p, s, x, y))
    before = peak_rss_bytes() / 1024
    t0 = time.perf_counter()
    traced = step.trace(p, s, x, y)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    lowered.compile()
    t3 = time.perf_counter()
    p, s, val = step(p, s, x, y)  # the jit's own first call: cached trace, compile again (XLA's cache)
    jax.block_until_ready(val)
    t4 = time.perf_counter()
    peak = peak_rss_bytes() / 1024
    times = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            p, s, val = step(p, s, x, y)
        jax.block_until_ready(val)
        times.append((time.perf_counter() - t) / 10)
    return {"eqns": equations(traced.jaxpr.jaxpr), "trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2,
            "first_call_s": t4 - t3, "build_s": t3 - t0, "step_ms": statistics.median(times) * 1e3,
            "rss_mb": peak / 1024, "rss_before_mb": before / 1024}


def study(n: int = 64) -> None:
    """Compile time of n elementwise updates against how their scalars are read."""
    ms = [jnp.ones((WIDTH, WIDTH)) for _ in range(n)]
    ways = {
        "one shared scalar (vec[0])": lambda vec, args: [vec[0]] * n,
        "a slice of one vector each (unstack)": lambda vec, args: list(jnp.unstack(vec)),
        "slices behind an optimization_barrier": lambda vec, args: list(
            jax.lax.optimization_barrier(tuple(jnp.unstack(vec)))),
        "a dynamic index each": lambda vec, args: [jax.lax.dynamic_index_in_dim(vec, i, keepdims=False)
                                                   for i in jnp.unstack(jnp.arange(n) + 0 * vec.astype(int))],
        "its own scalar argument each": lambda vec, args: args,
    }
    print(f"{n} updates of {WIDTH}x{WIDTH} arrays, m * s + g * (c - s); XLA compile seconds (median of 3)")
    jax.jit(lambda a: a + 1).lower(jnp.ones(2)).compile()  # XLA's one-time start-up, not counted
    for name, read in ways.items():
        times = []
        for rep in range(3):
            def f(ms: list, gs: list, vec: jax.Array, args: list, c: float = 1.0 + rep / 8) -> list:
                return [m * s + g * (c - s) for m, g, s in zip(ms, gs, read(vec, args))]  # c: a new program each time
            lowered = jax.jit(f).trace(ms, ms, jnp.full(n, 0.9), [jnp.float32(0.9)] * n).lower()
            t0 = time.perf_counter()
            lowered.compile()
            times.append(time.perf_counter() - t0)
        print(f"  {name:40s} {statistics.median(times):6.2f} s")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--depths", default="8,64,256")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--study", action="store_true", help="per-Leaf scalars and XLA's compile time, in isolation")
    args = ap.parse_args(argv)
    if args.study:
        return study()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}; Dense({WIDTH}) x depth, b{BATCH}, Adam; "
          f"medians of {args.repeats} fresh processes")
    print(f"{'depth':>5s} {'impl':>8s} {'eqns':>6s} {'trace':>7s} {'lower':>7s} {'compile':>8s} {'trace+lower+compile':>20s}"
          f" {'ratio':>6s} {'peak RSS':>9s} {'ratio':>6s} {'step':>9s} {'ratio':>6s}")
    for depth in map(int, args.depths.split(",")):
        res = {}
        for impl in ("hand", "fluxlike"):
            runs = []
            for _ in range(args.repeats):
                out = subprocess.run([sys.executable, __file__, "--one", impl, str(depth)],
                                     capture_output=True, text=True, timeout=900)
                if out.returncode != 0:
                    raise RuntimeError(out.stderr[-2000:])
                runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
            res[impl] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        h = res["hand"]
        for impl, r in res.items():
            print(f"{depth:5d} {impl:>8s} {r['eqns']:6.0f} {r['trace_s']:6.2f}s {r['lower_s']:6.2f}s "
                  f"{r['compile_s']:7.2f}s {r['build_s']:19.2f}s {r['build_s'] / h['build_s']:5.2f}x "
                  f"{r['rss_mb']:7.0f}MB {r['rss_mb'] / h['rss_mb']:5.2f}x {r['step_ms']:7.3f}ms "
                  f"{r['step_ms'] / h['step_ms']:5.2f}x")


if __name__ == "__main__":
    main()
