"""Benchmark: fluxlike's compiled step (WALKTHROUGH 8b) and `fl.train_` against
the same step written by hand with jax + optax on a dict of arrays.

Two workloads, each an MLP trained with Adam(1e-3) on random float32 data that
is on the device before timing starts:

- `mlp`:  784-512-512-10, relu, batch 128, logitcrossentropy (one-hot targets)
- `tiny`: 2-16-16-1, relu, batch 32, mse

Implementations, timed in the same run and interleaved (each round times every
implementation once, in a rotated order, so machine drift hits all alike):

- `8b`: the WALKTHROUGH 8b step exactly as written (`jax.jit`, no donation);
- `8b_donate`: the same function, `jax.jit(step, donate_argnums=(0, 1))`;
- `hand` / `hand_donate`: value_and_grad + optax.adam on a dict, jitted
  without / with `donate_argnums=(0, 1)`: the references;
- `train_`: one epoch of `fl.train_` over a list of N batches;
- `train_iter`: the same over a generator of the N batches (train_ cannot
  see the whole epoch in advance, so it takes one compiled call per batch);
- `hand_loop`: a Python loop over the same N batches calling `hand_donate`,
  keeping the losses; both epochs end with one `block_until_ready`.

A step sample is the time per step of a loop of K steps ended by one
`block_until_ready`; an epoch sample is the epoch's time divided by N. Each
sample records wall and process CPU time. The tables give the wall-time
median and min-max over rounds and the CPU-time median; ratios are given as
the ratio of wall medians, the median of per-round (paired) wall ratios, which
drift affects least, and the ratio of CPU medians. Before timing, every
implementation runs 3 steps from the same initial weights (fluxlike's, copied
into the dict) and must give the same losses and parameters. The first
(compiling) call is timed separately, and each jitted step's compiled program
is summarised: kernels launched per call, the copies among them, and XLA's
estimate of the bytes it reads and writes.

`--profile` adds where fluxlike spends time beyond the hand-written step on
the tiny workload (pytree leaves and nodes crossing the jit boundary, host
flatten/unflatten, a compiled call with trivial compute, a 2x2 split of
gradient and update, train_'s programs and fixed cost per epoch, the Python
run per call) and, on the MLP, what donating the optimiser state costs.

    python benchmarks/step.py [--quick] [--profile] [--only mlp|tiny] [--json out.json]
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import functools
import gc
import json
import os
import platform
import pstats
import re
import statistics
import subprocess
import sys
import time
import timeit
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

import fluxlike as fl

# the module that defines train_ (the profile looks at its compiled programs)

# ---------------------------------------------------------------------------
# workloads


@dataclass(frozen=True)
class Workload:
    """One benchmark problem and how long to time it.

    Args:
        name: label in the tables.
        sizes: layer widths, input first.
        batch: batch size.
        loss: "mse" or "logitcrossentropy".
        nbatches: batches in a timed epoch (train_ and hand_loop).
        steps: steps in one timed step sample (K).
        rounds: interleaved rounds.

    Example:
        >>> Workload("t", (2, 4, 1), 8, "mse", 10, 5, 3).nlayers
        2
    """

    name: str
    sizes: tuple[int, ...]
    batch: int
    loss: str
    nbatches: int
    steps: int
    rounds: int

    @property
    def nlayers(self) -> int:
        return len(self.sizes) - 1


FULL = (
    Workload("mlp", (784, 512, 512, 10), 128, "logitcrossentropy", 200, 20, 9),
    Workload("tiny", (2, 16, 16, 1), 32, "mse", 1000, 400, 31),
)
QUICK = (
    Workload("mlp", (784, 512, 512, 10), 128, "logitcrossentropy", 40, 10, 3),
    Workload("tiny", (2, 16, 16, 1), 32, "mse", 200, 200, 7),
)
TARGETS = {"tiny": 1.10, "mlp": 1.02, "train_": 1.05}


def make_data(wl: Workload, seed: int = 0) -> list[tuple[jax.Array, jax.Array]]:
    """`wl.nbatches` random float32 batches `(x, y)`, already on the device.

    Example:
        >>> b = make_data(Workload("t", (2, 4, 3), 8, "logitcrossentropy", 2, 1, 1))
        >>> len(b), b[0][0].shape, float(b[0][1].sum())
        (2, (8, 2), 8.0)
    """
    rng = np.random.default_rng(seed)
    n_in, n_out = wl.sizes[0], wl.sizes[-1]
    out = []
    for _ in range(wl.nbatches):
        x = rng.standard_normal((wl.batch, n_in), dtype=np.float32)
        if wl.loss == "logitcrossentropy":
            y = np.eye(n_out, dtype=np.float32)[rng.integers(0, n_out, wl.batch)]
        else:
            y = rng.random((wl.batch, n_out), dtype=np.float32)
        out.append((x, y))
    return jax.block_until_ready(jax.device_put(out))


def make_model(wl: Workload, seed: int = 0) -> fl.Chain:
    """The fluxlike model: Dense layers with relu between them.

    Example:
        >>> make_model(Workload("t", (2, 4, 1), 8, "mse", 1, 1, 1))
        Chain(Dense(2 => 4, relu), Dense(4 => 1))  # 17 parameters
    """
    fl.seed(seed)
    n = wl.nlayers
    return fl.Chain(*(fl.Dense(a, b, fl.relu if i < n - 1 else fl.identity)
                      for i, (a, b) in enumerate(zip(wl.sizes[:-1], wl.sizes[1:]))))


def copy_tree(tree: Any) -> Any:
    """A copy of `tree` with fresh device buffers (so donating one leaves the other valid)."""
    return jax.tree.map(jnp.copy, tree)


# ---------------------------------------------------------------------------
# the two ways of writing a step

FL_LOSSES: dict[str, Callable] = {"mse": fl.losses.mse, "logitcrossentropy": fl.losses.logitcrossentropy}


def hand_mse(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error over all entries."""
    return jnp.mean(jnp.square(y_hat - y))


def hand_logitcrossentropy(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Mean over the batch of `-sum(y * log_softmax(y_hat))`."""
    return jnp.mean(-jnp.sum(y * jax.nn.log_softmax(y_hat, axis=-1), axis=-1))


HAND_LOSSES: dict[str, Callable] = {"mse": hand_mse, "logitcrossentropy": hand_logitcrossentropy}


def fl_step_8b(loss: Callable) -> Callable:
    """WALKTHROUGH block 8b for `loss`, as a user writes it (to be wrapped in jax.jit)."""

    def step(model, opt_state, x, y):
        val, grads = fl.withgradient(lambda m: loss(m(x), y), model)
        opt_state, model = fl.update(opt_state, model, grads[0])
        return model, opt_state, val

    return step


def hand_params(model: fl.Chain) -> dict[str, jax.Array]:
    """fluxlike's weights copied into a dict `{"w0", "b0", "w1", ...}` (weights (out, in))."""
    out = {}
    for i, layer in enumerate(model.layers):
        out[f"w{i}"] = jnp.copy(layer.weight)
        out[f"b{i}"] = jnp.copy(layer.bias)
    return out


def hand_forward(params: dict[str, jax.Array], x: jax.Array, nlayers: int) -> jax.Array:
    """`x @ W.T + b` per layer, relu between layers."""
    for i in range(nlayers):
        x = x @ params[f"w{i}"].T + params[f"b{i}"]
        if i < nlayers - 1:
            x = jax.nn.relu(x)
    return x


def hand_step(loss: Callable, nlayers: int, opt: optax.GradientTransformation) -> Callable:
    """The reference step: value_and_grad + an optax update on a dict of arrays."""

    def step(params, opt_state, x, y):
        val, grads = jax.value_and_grad(lambda p: loss(hand_forward(p, x, nlayers), y))(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, val

    return step


def train_loss(loss: Callable) -> Callable:
    """`loss(m, x, y)` for `fl.train_`."""
    return lambda m, x, y: loss(m(x), y)


def model_arrays(model: Any) -> list[jax.Array]:
    """The parameters in layer order [w0, b0, w1, b1, ...] of a Chain or a hand dict."""
    if isinstance(model, dict):
        n = len(model) // 2
        return [model[f"{k}{i}"] for i in range(n) for k in ("w", "b")]
    return jax.tree.leaves(model)


# ---------------------------------------------------------------------------
# samplers: each call times one sample and returns (wall, CPU) seconds per step

Sample = tuple[float, float]



def step_sampler(step: Callable, carry: tuple, batches: list) -> Callable[[], Sample]:
    """A sampler running `step` over `batches` from its own `(model, state)` carry."""
    model, state = carry

    def sample() -> Sample:
        nonlocal model, state
        p, s = model, state
        t0, c0 = time.perf_counter(), time.process_time()
        for x, y in batches:
            p, s, val = step(p, s, x, y)
        jax.block_until_ready((p, s, val))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        model, state = p, s
        return dt / len(batches), dc / len(batches)

    return sample


def hand_loop_sampler(step: Callable, carry: tuple, batches: list) -> Callable[[], Sample]:
    """A sampler for a whole epoch of the hand-written step, keeping every loss."""
    model, state = carry

    def sample() -> Sample:
        nonlocal model, state
        p, s = model, state
        vals = []
        t0, c0 = time.perf_counter(), time.process_time()
        for x, y in batches:
            p, s, val = step(p, s, x, y)
            vals.append(val)
        jax.block_until_ready((p, s, vals))
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        model, state = p, s
        return dt / len(batches), dc / len(batches)

    return sample


def train_sampler(loss: Callable, model: Any, state: Any, batches: list, as_iter: bool = False) -> Callable[[], Sample]:
    """A sampler for one epoch of `fl.train_` (in place on `model`, `state`)
    over the list `batches`, or over a generator of them if `as_iter`."""

    def sample() -> Sample:
        t0, c0 = time.perf_counter(), time.process_time()
        fl.train_(loss, model, (b for b in batches) if as_iter else batches, state)
        jax.block_until_ready((model, state))
        n = len(batches)
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n

    return sample


def interleave(samplers: dict[str, Callable[[], Sample]], rounds: int) -> dict[str, list[Sample]]:
    """Run every sampler once per round, rotating the order each round.

    Example:
        >>> interleave({"a": lambda: (1.0, 1.0), "b": lambda: (2.0, 1.5)}, 2)
        {'a': [(1.0, 1.0), (1.0, 1.0)], 'b': [(2.0, 1.5), (2.0, 1.5)]}
    """
    names = list(samplers)
    out: dict[str, list[Sample]] = {n: [] for n in names}
    for r in range(rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            gc.collect()
            out[n].append(samplers[n]())
    return out


def summary(samples: list[Sample]) -> dict[str, float]:
    """Median, min and max wall time per step, and the median CPU time, in µs.

    Example:
        >>> summary([(1e-6, 2e-6), (3e-6, 2e-6), (2e-6, 4e-6)])
        {'median_us': 2.0, 'min_us': 1.0, 'max_us': 3.0, 'cpu_median_us': 2.0, 'n': 3}
    """
    wall = [w * 1e6 for w, _ in samples]
    cpu = [c * 1e6 for _, c in samples]
    return {"median_us": statistics.median(wall), "min_us": min(wall), "max_us": max(wall),
            "cpu_median_us": statistics.median(cpu), "n": len(samples)}


def ratios(times: dict[str, list[Sample]], a: str, b: str) -> dict[str, float]:
    """`a / b` three ways: wall-time medians, the median of the per-round
    (paired) wall-time ratios, and CPU-time medians.

    Example:
        >>> ratios({"a": [(2.0, 1.0), (4.0, 1.0)], "b": [(1.0, 1.0), (4.0, 2.0)]}, "a", "b")
        {'wall': 1.2, 'paired': 1.5, 'cpu': 0.6666666666666666}
    """
    med = lambda n, k: statistics.median(s[k] for s in times[n])
    return {
        "wall": med(a, 0) / med(b, 0),
        "paired": statistics.median(x[0] / y[0] for x, y in zip(times[a], times[b])),
        "cpu": med(a, 1) / med(b, 1),
    }


# ---------------------------------------------------------------------------
# one workload


def first_call(fn: Callable, *args: Any) -> tuple[float, Any]:
    """Seconds for the first (compiling) call of `fn`, blocked, and its result."""
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0, out


def run_workload(wl: Workload, log: Callable[[str], None]) -> dict[str, Any]:
    """Check, compile and time every implementation on `wl`; the results as a dict."""
    batches = make_data(wl)
    model0 = make_model(wl)
    nl = wl.nlayers
    fl_loss, h_loss = FL_LOSSES[wl.loss], HAND_LOSSES[wl.loss]
    opt = optax.adam(1e-3)
    step8b = fl_step_8b(fl_loss)
    hstep = hand_step(h_loss, nl, opt)
    jits = {
        "8b": jax.jit(step8b),
        "8b_donate": jax.jit(step8b, donate_argnums=(0, 1)),
        "hand": jax.jit(hstep),
        "hand_donate": jax.jit(hstep, donate_argnums=(0, 1)),
    }
    tloss = train_loss(fl_loss)

    def fresh(name: str) -> tuple:
        if name.startswith("hand"):
            p = hand_params(model0)
            return p, opt.init(p)
        m = copy_tree(model0)
        return m, fl.setup(fl.Adam(1e-3), m)

    # --- same losses and parameters for 3 steps; first-call (compile) times
    compile_s: dict[str, float] = {}
    losses: dict[str, np.ndarray] = {}
    finals: dict[str, list] = {}
    for name, fn in jits.items():
        p, s = fresh(name)
        vals = []
        for k, (x, y) in enumerate(batches[:3]):
            dt, (p, s, v) = first_call(fn, p, s, x, y)
            if k == 0:
                compile_s[name] = dt
            vals.append(float(v))
        losses[name] = np.asarray(vals)
        finals[name] = [np.asarray(a) for a in model_arrays(p)]
    for name, data in (("train_", batches[:3]), ("train_iter", (b for b in batches[:3]))):
        m, s = fresh(name)
        t0 = time.perf_counter()
        losses[name] = np.asarray(fl.train_(tloss, m, data, s))
        compile_s[f"{name} (3-step epoch)"] = time.perf_counter() - t0
        finals[name] = [np.asarray(a) for a in model_arrays(m)]
    ref_l, ref_p = losses["hand_donate"], finals["hand_donate"]
    loss_err = max(float(np.max(np.abs(l - ref_l) / np.abs(ref_l))) for l in losses.values())
    param_err = max(float(np.abs(a - b).max()) for f in finals.values() for a, b in zip(f, ref_p))
    check = {"losses": {k: v.tolist() for k, v in losses.items()},
             "max_rel_loss_diff": loss_err, "max_abs_param_diff": param_err}
    if not (loss_err < 1e-5 and param_err < 1e-5):
        raise AssertionError(f"{wl.name}: implementations disagree after 3 steps: {check}")
    log(f"  3-step check: losses agree to {loss_err:.1e} (relative), parameters to {param_err:.1e}")

    # --- the compiled programs
    x, y = batches[0]
    hlo = {name: hlo_stats(fn, *fresh(name), x, y) for name, fn in jits.items()}

    # --- timing
    ksteps = batches[:wl.steps]
    samplers = {name: step_sampler(fn, fresh(name), ksteps) for name, fn in jits.items()}
    m, s = fresh("train_")
    samplers["train_"] = train_sampler(tloss, m, s, batches)
    m, s = fresh("train_iter")
    samplers["train_iter"] = train_sampler(tloss, m, s, batches, as_iter=True)
    samplers["hand_loop"] = hand_loop_sampler(jits["hand_donate"], fresh("hand"), batches)
    for f in samplers.values():  # warm: every path has run once with these shapes
        f()
    times = interleave(samplers, wl.rounds)
    return {
        "workload": {"sizes": wl.sizes, "batch": wl.batch, "loss": wl.loss, "optimiser": "Adam(1e-3)",
                     "epoch_batches": wl.nbatches, "steps_per_sample": wl.steps, "rounds": wl.rounds},
        "check": check,
        "compile_s": compile_s,
        "hlo": hlo,
        "times": {k: summary(v) for k, v in times.items()},
        "ratios": {
            "8b / hand": ratios(times, "8b", "hand"),
            "8b_donate / hand_donate": ratios(times, "8b_donate", "hand_donate"),
            "train_ / hand_loop": ratios(times, "train_", "hand_loop"),
            "train_iter / hand_loop": ratios(times, "train_iter", "hand_loop"),
        },
    }


def report_workload(name: str, res: dict[str, Any], log: Callable[[str], None]) -> None:
    """Print one workload's tables."""
    rounds = res["workload"]["rounds"]
    log(f"\n{name}: µs per step over {rounds} rounds: wall median [min-max], CPU median")
    for impl, s in res["times"].items():
        log(f"  {impl:12s} {s['median_us']:9.1f} [{s['min_us']:.1f}-{s['max_us']:.1f}]  cpu {s['cpu_median_us']:.1f}")
    log(f"{name}: ratios: wall medians, paired (median of per-round ratios), CPU medians")
    for k, r in res["ratios"].items():
        target = TARGETS["train_"] if k.startswith("train_") else TARGETS[name]
        ok = "ok" if r["paired"] <= target else "ABOVE TARGET"
        log(f"  {k:24s} {r['wall']:.3f}  {r['paired']:.3f}  {r['cpu']:.3f}   target <= {target:.2f} (paired): {ok}")
    log(f"{name}: compiled programs, and first call (trace + compile + run) in s")
    for k, h in res["hlo"].items():
        log(f"  {k:12s} {hlo_line(h)}")
    for k, v in res["compile_s"].items():
        log(f"  {k:25s} {v:.2f} s")


# ---------------------------------------------------------------------------
# profile (tiny workload): where fluxlike's time goes


def tree_stats(tree: Any) -> dict[str, int]:
    """Leaves and nodes of a pytree (as `jax.jit` flattens it).

    Example:
        >>> tree_stats({"a": 1, "b": (2, 3)})
        {'leaves': 3, 'nodes': 5}
    """
    leaves, treedef = jax.tree.flatten(tree)
    return {"leaves": len(leaves), "nodes": treedef.num_nodes}


def micro_us(fn: Callable[[], Any], number: int = 2000, repeat: int = 7) -> float:
    """Microseconds per call of `fn`: the minimum over `repeat` timings of `number` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


_NOT_WORK = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}


def hlo_stats(jitted: Callable, *args: Any) -> dict[str, Any]:
    """What a compiled program does: StableHLO op count; in the compiled HLO,
    the kernels launched per call (ops of the entry computation and of loop
    bodies, outside fusions), the copies among them and their bytes; and
    XLA's estimate of the bytes read and written."""
    t0 = time.perf_counter()
    lowered = jitted.lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    text = lowered.as_text()
    ops = collections.Counter(m.group(1) for m in re.finditer(r"(?<![#\w])((?:stablehlo|chlo|func)\.[a-z_]+)", text))
    hlo = compiled.as_text()
    # kernels run from the entry computation and from loop bodies / branches;
    # the inside of a fusion (or of a reduction's `to_apply`) is part of one kernel
    launched = set(re.findall(r"(?:body|condition)=%?([\w.\-]+)", hlo))
    for group in re.findall(r"branch_computations=\{([^}]*)\}", hlo):
        launched.update(n.strip().lstrip("%") for n in group.split(","))
    kernels: collections.Counter[str] = collections.Counter()
    copies: list[str] = []
    for comp in re.split(r"\n(?=\S)", hlo):  # one top-level computation each
        name = comp.split(" ", 2)[1 if comp.startswith("ENTRY") else 0].lstrip("%")
        if not (comp.startswith("ENTRY") or name in launched):
            continue
        for m in re.finditer(r"= (\S+) ([a-z\-]+)\(", comp):
            kernels[m.group(2)] += 1
            if m.group(2) == "copy":
                copies.append(m.group(1))
    cost = compiled.cost_analysis()
    if isinstance(cost, list):
        cost = cost[0]
    return {
        "lower_s": t1 - t0, "compile_s": t2 - t1,
        "stablehlo_ops": sum(v for k, v in ops.items() if k not in ("func.func", "func.return")),
        "kernels": sum(v for k, v in kernels.items() if k not in _NOT_WORK),
        "copies": len(copies),
        "copied_bytes": sum(_nbytes(t) for t in copies),
        "bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
        "flops": float(cost.get("flops", float("nan"))),
        "kernels_by_op": dict(kernels.most_common()),
    }


def _nbytes(hlo_type: str) -> int:
    """Bytes of an HLO array type such as `f32[16,2]{1,0}`."""
    m = re.match(r"([a-z]+)(\d+)\[([\d,]*)\]", hlo_type)
    if not m:
        return 0
    dims = [int(d) for d in m.group(3).split(",") if d]
    return int(np.prod(dims)) * int(m.group(2)) // 8 if m.group(1) != "pred" else int(np.prod(dims))


def hlo_line(h: dict[str, Any]) -> str:
    """One line summarising `hlo_stats`."""
    return (f"stablehlo ops {h['stablehlo_ops']:4d}, kernels {h['kernels']:3d} "
            f"(copies {h['copies']:2d}, {h['copied_bytes'] / 1e6:.2f} MB), "
            f"accessed {h['bytes_accessed'] / 1e6:.2f} MB")


def context_switches() -> int | None:
    """Voluntary context switches so far, summed over this process's threads
    (Linux), or None where /proc is not available. A compiled call that hands
    kernels to XLA's worker threads shows up here: each hand-off wakes a thread."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{os.getpid()}/task"):
            with open(f"/proc/{os.getpid()}/task/{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
    except OSError:
        return None
    return total


def switches_per_step(step: Callable, carry: tuple, batches: list, repeat: int = 5) -> float | None:
    """Voluntary context switches per call of a compiled step, over `repeat`
    passes through `batches`."""
    p, s = carry
    before = context_switches()
    for _ in range(repeat):
        for x, y in batches:
            p, s, v = step(p, s, x, y)
    jax.block_until_ready((p, s, v))
    after = context_switches()
    return None if before is None or after is None else (after - before) / (repeat * len(batches))


def python_calls_per_step(step: Callable, carry: tuple, batch: tuple, n: int = 1000) -> list[dict[str, Any]]:
    """The Python functions run per call of a compiled step (cProfile over `n`
    calls after warming up), most expensive first."""
    p, s = carry
    x, y = batch
    for _ in range(3):
        p, s, v = step(p, s, x, y)
    jax.block_until_ready((p, s, v))
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        p, s, v = step(p, s, x, y)
    jax.block_until_ready((p, s, v))
    prof.disable()
    rows = []
    for (file, line, fn), (_, nc, tt, _, _) in pstats.Stats(prof).stats.items():  # type: ignore[attr-defined]
        if nc < n:
            continue
        where = f"{os.path.basename(file)}:{line}({fn})" if file.startswith("/") else fn
        rows.append({"function": where, "calls_per_step": nc / n, "tottime_us_per_step": tt / n * 1e6})
    rows.sort(key=lambda r: -r["tottime_us_per_step"])
    return rows


def profile_tiny(wl: Workload, log: Callable[[str], None]) -> dict[str, Any]:
    """Where fluxlike's step and train_ spend time beyond the hand-written step."""
    batches = make_data(wl)
    x, y = batches[0]
    model0 = make_model(wl)
    nl = wl.nlayers
    fl_loss, h_loss = FL_LOSSES[wl.loss], HAND_LOSSES[wl.loss]
    opt = optax.adam(1e-3)
    out: dict[str, Any] = {}

    def fl_carry() -> tuple:
        m = copy_tree(model0)
        return m, fl.setup(fl.Adam(1e-3), m)

    def hand_carry() -> tuple:
        p = hand_params(model0)
        return p, opt.init(p)

    # 1. what crosses the jit boundary
    fm, fs = fl_carry()
    hp, hs = hand_carry()
    val = jnp.zeros(())
    out["boundary"] = {
        "fluxlike": {"model": tree_stats(fm), "state": tree_stats(fs),
                     "args": tree_stats((fm, fs, x, y)), "outputs": tree_stats((fm, fs, val))},
        "hand": {"model": tree_stats(hp), "state": tree_stats(hs),
                 "args": tree_stats((hp, hs, x, y)), "outputs": tree_stats((hp, hs, val))},
    }
    log("\nprofile (tiny) 1. pytree leaves/nodes crossing the jit boundary")
    for who, d in out["boundary"].items():
        log(f"  {who:9s} " + "  ".join(f"{k} {v['leaves']}/{v['nodes']}" for k, v in d.items()))

    # 2. flatten / unflatten on the host (jit flattens the arguments and
    #    unflattens the outputs on every call)
    flat: dict[str, dict[str, float]] = {}
    for who, args, outs in (("fluxlike", (fm, fs, x, y), (fm, fs, val)), ("hand", (hp, hs, x, y), (hp, hs, val))):
        out_leaves, out_def = jax.tree.flatten(outs)
        m_leaves, m_def = jax.tree.flatten(args[0])
        s_leaves, s_def = jax.tree.flatten(args[1])
        flat[who] = {
            "flatten args": micro_us(lambda: jax.tree.flatten(args)),
            "unflatten outputs": micro_us(lambda: jax.tree.unflatten(out_def, out_leaves)),
            "flatten model": micro_us(lambda: jax.tree.flatten(args[0])),
            "unflatten model": micro_us(lambda: jax.tree.unflatten(m_def, m_leaves)),
            "flatten state": micro_us(lambda: jax.tree.flatten(args[1])),
            "unflatten state": micro_us(lambda: jax.tree.unflatten(s_def, s_leaves)),
        }
    out["host_pytree_us"] = flat
    log("profile (tiny) 2. host pytree work per call, µs (min of 7 x 2000)")
    for k in flat["fluxlike"]:
        log(f"  {k:18s} fluxlike {flat['fluxlike'][k]:5.2f}   hand {flat['hand'][k]:5.2f}")

    # 3. dispatch with trivial compute: the step's structures in and out, each leaf + 1
    def touch(m, s, x, y):
        return jax.tree.map(lambda a: a + 1, m), jax.tree.map(lambda a: a + 1, s), x[0, 0]

    xs = [(x, y)] * 1000
    samplers = {}
    for who, make in (("fluxlike", fl_carry), ("hand", hand_carry)):
        samplers[who] = step_sampler(jax.jit(touch), make(), xs)
        samplers[f"{who}_donate"] = step_sampler(jax.jit(touch, donate_argnums=(0, 1)), make(), xs)
    for f in samplers.values():
        f()
    out["dispatch_us"] = {k: summary(v) for k, v in interleave(samplers, 9).items()}
    log("profile (tiny) 3. a compiled call with the step's structures and trivial compute "
        "(one add per leaf), µs: wall median [min-max], CPU median")
    for k, s in out["dispatch_us"].items():
        log(f"  {k:16s} {s['median_us']:6.1f} [{s['min_us']:.1f}-{s['max_us']:.1f}]  cpu {s['cpu_median_us']:.1f}")

    # 4. which half costs: gradient (fluxlike / hand) x update (fluxlike / optax)
    def fl_grad_optax(m, s, x, y):
        val, g = fl.withgradient(lambda m: fl_loss(m(x), y), m)
        upd, s = opt.update(g[0], s, m)
        return optax.apply_updates(m, upd), s, val

    def hand_grad_fl(p, s, x, y):
        val, g = jax.value_and_grad(lambda p: h_loss(hand_forward(p, x, nl), y))(p)
        s, p = fl.update(s, p, g)
        return p, s, val

    def opt_carry() -> tuple:
        m = copy_tree(model0)
        return m, opt.init(m)

    def dict_fl_carry() -> tuple:
        p = hand_params(model0)
        return p, fl.setup(fl.Adam(1e-3), p)

    variants = {
        "fl grad + fl update (8b)": (fl_step_8b(fl_loss), fl_carry, (0, 1)),
        "fl grad + fl update, donate model only": (fl_step_8b(fl_loss), fl_carry, (0,)),
        "fl grad + optax": (fl_grad_optax, opt_carry, (0, 1)),
        "hand grad + fl update": (hand_grad_fl, dict_fl_carry, (0, 1)),
        "hand grad + optax (hand)": (hand_step(h_loss, nl, opt), hand_carry, (0, 1)),
    }
    samplers = {}
    hlo: dict[str, Any] = {}
    switches: dict[str, float | None] = {}
    for name, (fn, make, donate) in variants.items():
        j = jax.jit(fn, donate_argnums=donate)
        carry = make()
        hlo[name] = hlo_stats(j, *carry, x, y)
        switches[name] = switches_per_step(j, make(), batches[:wl.steps])
        samplers[name] = step_sampler(j, carry, batches[:wl.steps])
    for f in samplers.values():
        f()
    t = interleave(samplers, 21)
    out["split_us"] = {k: summary(v) for k, v in t.items()}
    out["split_context_switches_per_step"] = switches
    log("profile (tiny) 4. gradient x update, donated unless said: µs per step, wall median [min], "
        "paired ratio to hand; thread wake-ups (voluntary context switches) per step; compiled program")
    for k, s in out["split_us"].items():
        r = ratios(t, k, "hand grad + optax (hand)")["paired"]
        sw = "  n/a" if switches[k] is None else f"{switches[k]:5.2f}"
        log(f"  {k:40s} {s['median_us']:6.1f} [{s['min_us']:5.1f}] x{r:.2f}  {sw}  {hlo_line(hlo[k])}")

    # 5. train_'s compiled programs (private internals: skipped if they change)
    try:
        from fluxlike._epoch import unique
        from fluxlike._lossbuffer import LossBuffer
        from fluxlike._step import steps_for
        steps = steps_for(train_loss(fl_loss), "benchmark")
        m, s = fl_carry()
        leaves, treedef = jax.tree.flatten(m)
        uniq, where = unique(leaves)
        buf = LossBuffer.new(wl.nbatches, jnp.result_type(float))
        args = (tuple(copy_tree(uniq)), copy_tree(s), buf, (x, y))
        hlo["train_ step (one call per batch)"] = hlo_stats(steps.get("epoch", treedef, where, True), *args)
        stacked = jax.tree.map(lambda *a: jnp.stack(a), *batches[:wl.nbatches])
        args = (tuple(copy_tree(uniq)), copy_tree(s), buf, stacked, np.int32(0), np.int32(wl.nbatches))
        hlo["train_ loop (whole epoch)"] = hlo_stats(steps.get("loop", treedef, where, True), *args)
        for k in ("train_ step (one call per batch)", "train_ loop (whole epoch)"):
            log(f"  {k:40s} {'':28s} {hlo_line(hlo[k])}")
    except (AttributeError, TypeError, ImportError) as e:
        log(f"  train_'s programs: not inspected ({type(e).__name__}: {e})")
    out["hlo"] = hlo

    # 6. train_: fixed cost per epoch and cost per step, t(N) = a + b N
    tloss = train_loss(fl_loss)
    jhand = jax.jit(hand_step(h_loss, nl, opt), donate_argnums=(0, 1))
    lengths = (100, 1000)
    samplers = {}
    for n in lengths:
        for name in ("train_", "train_iter"):
            m, s = fl_carry()
            samplers[f"{name} N={n}"] = train_sampler(tloss, m, s, batches[:n], as_iter=name == "train_iter")
        samplers[f"hand_loop N={n}"] = hand_loop_sampler(jhand, hand_carry(), batches[:n])
    for f in samplers.values():
        f()
    t = interleave(samplers, 9)

    def fit(prefix: str) -> dict[str, float]:
        (n1, n2) = lengths
        t1, t2 = (min(w for w, _ in t[f"{prefix} N={n}"]) * n for n in lengths)  # min: least disturbed
        b = (t2 - t1) / (n2 - n1)
        return {"fixed_us_per_epoch": (t1 - n1 * b) * 1e6, "us_per_step": b * 1e6}

    out["epoch_fit"] = {k: fit(k) for k in ("train_", "train_iter", "hand_loop")}
    out["epoch_samples_us"] = {k: summary(v) for k, v in t.items()}
    log(f"profile (tiny) 6. epoch wall time = fixed + N x per step (fit to the fastest epochs at N = {lengths})")
    for k, f in out["epoch_fit"].items():
        log(f"  {k:10s} fixed {f['fixed_us_per_epoch']:7.0f} µs/epoch, {f['us_per_step']:6.1f} µs/step")

    # 7. Python run per call of the compiled 8b step (donated), under cProfile
    rows = python_calls_per_step(jax.jit(fl_step_8b(fl_loss), donate_argnums=(0, 1)), fl_carry(), (x, y))
    hand_rows = python_calls_per_step(jax.jit(hand_step(h_loss, nl, opt), donate_argnums=(0, 1)), hand_carry(), (x, y))
    out["python_per_step"] = {
        "fluxlike": rows, "hand": hand_rows,
        "fluxlike_calls": sum(r["calls_per_step"] for r in rows),
        "hand_calls": sum(r["calls_per_step"] for r in hand_rows),
    }
    log(f"profile (tiny) 7. Python functions run per compiled call (cProfile): fluxlike "
        f"{out['python_per_step']['fluxlike_calls']:.0f} calls, hand {out['python_per_step']['hand_calls']:.0f}; "
        "fluxlike's, by time (calls/step, µs/step under cProfile):")
    for r in rows[:8]:
        log(f"  {r['calls_per_step']:4.0f}  {r['tottime_us_per_step']:5.2f}  {r['function']}")
    return out


def profile_donation(wl: Workload, log: Callable[[str], None]) -> dict[str, Any]:
    """Donation and the optimiser state: the 8b step donating model and state,
    the model only, or nothing, against the hand-written step, with what the
    compiled programs copy."""
    batches = make_data(wl)[:wl.steps]
    x, y = batches[0]
    model0 = make_model(wl)
    opt = optax.adam(1e-3)

    def fl_carry() -> tuple:
        m = copy_tree(model0)
        return m, fl.setup(fl.Adam(1e-3), m)

    def hand_carry() -> tuple:
        p = hand_params(model0)
        return p, opt.init(p)

    step8b = fl_step_8b(FL_LOSSES[wl.loss])
    hstep = hand_step(HAND_LOSSES[wl.loss], wl.nlayers, opt)
    variants = {
        "8b, donate model + state": (step8b, fl_carry, (0, 1)),
        "8b, donate model only": (step8b, fl_carry, (0,)),
        "8b, no donation": (step8b, fl_carry, ()),
        "hand, donate params + state": (hstep, hand_carry, (0, 1)),
    }
    samplers, hlo = {}, {}
    for name, (fn, make, donate) in variants.items():
        j = jax.jit(fn, donate_argnums=donate)
        carry = make()
        hlo[name] = hlo_stats(j, *carry, x, y)
        samplers[name] = step_sampler(j, carry, batches)
    for f in samplers.values():
        f()
    t = interleave(samplers, wl.rounds)
    out = {"times": {k: summary(v) for k, v in t.items()}, "hlo": hlo}
    log(f"\nprofile ({wl.name}) donation: µs per step, wall median [min], paired ratio to hand; compiled program")
    for k, s in out["times"].items():
        r = ratios(t, k, "hand, donate params + state")["paired"]
        log(f"  {k:28s} {s['median_us']:8.1f} [{s['min_us']:8.1f}] x{r:.3f}  {hlo_line(hlo[k])}")
    return out


# ---------------------------------------------------------------------------
# main


def machine() -> dict[str, Any]:
    """The software and hardware the numbers come from."""
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {"python": platform.python_version(), "jax": jax.__version__, "optax": optax.__version__,
            "device": str(jax.devices()[0]), "cpus": os.cpu_count(), "platform": platform.platform(),
            "loadavg_at_start": load, "fluxlike": source_version()}


def source_version() -> str:
    """The git commit fluxlike was imported from, with a note if its files differ from it."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "fluxlike"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" + uncommitted changes in fluxlike/" if dirty else "")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print the tables and return the results."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer batches and rounds (a smoke run)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile where fluxlike's time goes (tiny) and what donation costs (mlp)")
    ap.add_argument("--only", choices=[w.name for w in FULL], help="run one workload")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)
    log = functools.partial(print, flush=True)
    warnings.filterwarnings("error", message=".*[Dd]onat")  # "donated buffers were not usable"
    res: dict[str, Any] = {"machine": machine(), "quick": args.quick, "workloads": {}}
    mach = res["machine"]
    load = "" if mach["loadavg_at_start"] is None else f", load average {mach['loadavg_at_start'][0]:.1f}"
    log(f"fluxlike {mach['fluxlike']}, jax {jax.__version__} on {mach['device']}, {mach['cpus']} CPUs{load}")
    t0 = time.perf_counter()
    for wl in QUICK if args.quick else FULL:
        if args.only and wl.name != args.only:
            continue
        log(f"\n== {wl.name}: {' -> '.join(map(str, wl.sizes))}, batch {wl.batch}, {wl.loss}, Adam; "
            f"{wl.rounds} rounds, {wl.steps} steps per step sample, {wl.nbatches}-batch epochs")
        r = run_workload(wl, log)
        res["workloads"][wl.name] = r
        report_workload(wl.name, r, log)
    if args.profile:
        wls = {w.name: w for w in (QUICK if args.quick else FULL)}
        if args.only in (None, "tiny"):
            res["profile_tiny"] = profile_tiny(wls["tiny"], log)
        if args.only in (None, "mlp"):
            res["profile_donation_mlp"] = profile_donation(wls["mlp"], log)
    res["wall_s"] = time.perf_counter() - t0
    log(f"\ntotal {res['wall_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=str)
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
