"""Why XLA's CPU convolutions lose to PyTorch's on the cnn workload, and what closes the gap.

    python benchmarks/suite.py --cnn-study [--quick]

Each XLA flag setting runs in its own process (XLA reads XLA_FLAGS once);
inside a process, every variant of the hand-written cnn step (Adam, b64,
donated) and PyTorch's eager step are timed interleaved, so each setting's
numbers come with their own PyTorch anchor. Variants:

- conv lowering: `lax.conv` NHWC/HWIO (what fl.Conv emits), `lax.conv`
  NCHW/OIHW, im2col by `lax.conv_general_dilated_patches` + one matmul,
  im2col by kh*kw shifted slices concatenated + one matmul;
- pooling: `lax.reduce_window` max (its gradient is XLA's select-and-scatter),
  or a reshape to (N, H/2, 2, W/2, 2, C) and a max over the window axes (its
  gradient is a compare-and-select fused with the rest; tied maxima share the
  gradient), or the same reshape with an argmax so the first maximum takes
  the whole gradient, as select-and-scatter does;
- the pieces timed alone (forward only; forward + backward without Adam) to
  show where the time goes.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

FLAG_SETS = {
    "default": "",
    "onednn": "--xla_cpu_use_onednn=true",
    "onednn_custom_call": "--xla_cpu_experimental_onednn_custom_call=true",
    "xnnpack": "--xla_cpu_use_xnnpack=true",
    "xnn_graph_greedy": "--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY",
    "eigen_1_thread": "--xla_cpu_multi_thread_eigen=false",
}


def _variants() -> dict[str, Callable]:
    """name -> step(params, opt_state, x_nhwc, x_nchw, y) for each lowering, built lazily (jax imported in workers)."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax

    from peers.hand import logitcrossentropy

    def conv_nhwc(x, w):
        return lax.conv_general_dilated(x, w, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))

    def conv_patches(x, w):
        kh, kw, cin, cout = w.shape
        p = lax.conv_general_dilated_patches(x, (kh, kw), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        # patches' features are ordered (cin, kh, kw)
        return p @ w.transpose(2, 0, 1, 3).reshape(cin * kh * kw, cout)

    def conv_slices(x, w):
        kh, kw, cin, cout = w.shape
        h, wd = x.shape[1] - kh + 1, x.shape[2] - kw + 1
        cols = jnp.concatenate([x[:, i:i + h, j:j + wd, :] for i in range(kh) for j in range(kw)], axis=-1)
        return cols @ w.reshape(kh * kw * cin, cout)

    def pool_window(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def pool_reshape(x):
        n, h, w, c = x.shape
        h2, w2 = h // 2, w // 2
        return x[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))

    def pool_argmax(x):
        # the gradient goes to the first maximum of each window, as with select-and-scatter
        n, h, w, c = x.shape
        h2, w2 = h // 2, w // 2
        win = x[:, :2 * h2, :2 * w2, :].reshape(n, h2, 2, w2, 2, c).transpose(0, 1, 3, 5, 2, 4).reshape(n, h2, w2, c, 4)
        first = jax.nn.one_hot(jnp.argmax(win, axis=-1), 4, dtype=bool)
        return jnp.where(first, win, 0).sum(axis=-1)

    def pool_reshape_nchw(x):
        n, c, h, w = x.shape
        h2, w2 = h // 2, w // 2
        return x[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2).max(axis=(3, 5))

    def conv_nchw(x, w):  # x NCHW, w HWIO (transposed inside, as a layout change would do it)
        return lax.conv_general_dilated(x, w.transpose(3, 2, 0, 1), (1, 1), "VALID",
                                        dimension_numbers=("NCHW", "OIHW", "NCHW"))

    def pool_window_nchw(x):
        return lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")

    def forward(conv, pool, nchw=False):
        def f(p, x):
            for i in range(2):
                b = p[f"b{i}"][:, None, None] if nchw else p[f"b{i}"]
                x = pool(jax.nn.relu(conv(x, p[f"w{i}"]) + b))
            if nchw:
                x = x.transpose(0, 2, 3, 1)
            x = x.reshape(x.shape[0], -1)
            return x @ p["w2"].T + p["b2"]
        return f

    opt = optax.adam(1e-3)

    def step_of(fwd, nchw=False):
        def step(p, s, x, xc, y):
            xin = xc if nchw else x
            val, g = jax.value_and_grad(lambda p: logitcrossentropy(fwd(p, xin), y))(p)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s, val
        return jax.jit(step, donate_argnums=(0, 1))

    def grad_of(fwd):
        return jax.jit(lambda p, s, x, xc, y: (p, s, jax.grad(lambda p: logitcrossentropy(fwd(p, x), y))(p)["b0"].sum()))

    def fwd_of(fwd):
        return jax.jit(lambda p, s, x, xc, y: (p, s, logitcrossentropy(fwd(p, x), y)))

    base = forward(conv_nhwc, pool_window)
    return {
        "lax.conv NHWC + reduce_window (fl.Conv, baseline)": step_of(base),
        "lax.conv NCHW + reduce_window": step_of(forward(conv_nchw, pool_window_nchw, nchw=True), nchw=True),
        "lax.conv NHWC + reshape-max pool": step_of(forward(conv_nhwc, pool_reshape)),
        "lax.conv NHWC + reshape-argmax pool (first max takes the gradient)": step_of(forward(conv_nhwc, pool_argmax)),
        "lax.conv NCHW + reshape-max pool": step_of(forward(conv_nchw, pool_reshape_nchw, nchw=True), nchw=True),
        "im2col patches + reduce_window": step_of(forward(conv_patches, pool_window)),
        "im2col patches + reshape-max pool": step_of(forward(conv_patches, pool_reshape)),
        "im2col slices + reshape-max pool": step_of(forward(conv_slices, pool_reshape)),
        "piece: forward only (baseline)": fwd_of(base),
        "piece: forward + backward, no Adam (baseline)": grad_of(base),
        "piece: forward + backward, no Adam (lax.conv + reshape-max)": grad_of(forward(conv_nhwc, pool_reshape)),
    }


# the variants worth timing under every flag setting (the rest run with the default flags only)
CORE = ("lax.conv NHWC + reduce_window (fl.Conv, baseline)", "lax.conv NCHW + reduce_window",
        "lax.conv NHWC + reshape-argmax pool (first max takes the gradient)", "lax.conv NCHW + reshape-max pool",
        "im2col slices + reshape-max pool")


def worker(quick: bool, everything: bool = True) -> None:
    """Time the variants (all, or `CORE`) and PyTorch in this process; print one JSON line of medians (µs per step)."""
    import jax
    import numpy as np

    from peers import pytorch
    from peers.hand import to_params
    from peers.workloads import Workload, init_weights, make_batches
    import optax

    wl = Workload("cnn", "cnn", (), 64, "logitcrossentropy", 4, 1)
    weights = init_weights(wl)
    x, y = make_batches(wl)
    xb = jax.device_put(x[0])
    xc = jax.device_put(np.ascontiguousarray(x[0].transpose(0, 3, 1, 2)))
    yb = jax.device_put(y[0])
    variants = {n: f for n, f in _variants().items() if everything or n in CORE}
    carries: dict[str, Any] = {}
    ref_loss = None
    losses = {}
    for name, fn in variants.items():
        p = to_params(weights)
        s = optax.adam(1e-3).init(p)
        p, s, v = fn(p, s, xb, xc, yb)
        losses[name] = float(v)
        carries[name] = (p, s)
    ref_loss = losses["lax.conv NHWC + reduce_window (fl.Conv, baseline)"]
    torch_runners = {"torch eager (1 thread)": pytorch.TorchOneThread(wl, weights, (x, y))}
    if everything:
        torch_runners[f"torch eager ({pytorch.CORES} threads)"] = pytorch.TorchAdam(wl, weights, (x, y))
    k = 3 if quick else 5
    rounds = 3 if quick else 9
    times: dict[str, list[float]] = {n: [] for n in [*variants, *torch_runners]}

    def sample(name: str) -> float:
        if name in torch_runners:
            r = torch_runners[name]
            t0 = time.perf_counter()
            r.run(k)
            return (time.perf_counter() - t0) / k
        fn = variants[name]
        p, s = carries[name]
        t0 = time.perf_counter()
        for _ in range(k):
            p, s, v = fn(p, s, xb, xc, yb)
        jax.block_until_ready((p, s, v))
        dt = time.perf_counter() - t0
        carries[name] = (p, s)
        return dt / k

    names = list(times)
    for n in names:
        sample(n)
    for r in range(rounds):
        shift = r % len(names)
        for n in names[shift:] + names[:shift]:
            times[n].append(sample(n))
    out = {n: statistics.median(t) * 1e6 for n, t in times.items()}
    agree = {n: abs(l - ref_loss) / abs(ref_loss) for n, l in losses.items() if not n.startswith("piece")}
    print(json.dumps({"median_us": out, "loss_rel_diff": agree}))


def main(quick: bool = False, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every flag set in its own worker process (twice in full mode, alternating); the results by flag set."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in FLAG_SETS}
    for rep in range(1 if quick else 2):
        for name, flags in FLAG_SETS.items():
            code = (f"import sys; sys.path.insert(0, {here!r}); from peers.cnn_study import worker; "
                    f"worker({quick}, {name == 'default'})")
            env = dict(os.environ, XLA_FLAGS=flags)
            t0 = time.perf_counter()
            p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
            line = next((l for l in p.stdout.splitlines() if l.startswith("{")), None)
            if p.returncode or line is None:
                err = (p.stderr.strip().splitlines() or ["?"])[-1]
                log(f"cnn study: {name} ({flags}) failed: {err}")
                results[name].append({"error": err})
                continue
            results[name].append(json.loads(line))
            log(f"cnn study: {name} done in {time.perf_counter() - t0:.0f} s")
    return {"flags": FLAG_SETS, "runs": results}


def table(study: dict[str, Any]) -> list[str]:
    """Markdown: for each flag set and variant, µs per step (median over runs) and the ratio to PyTorch (1 thread)."""
    rows = ["| XLA flags | variant | µs/step | × torch 1 thread (same process) | loss vs baseline |",
            "|---|---|---:|---:|---:|"]
    for name, runs in study["runs"].items():
        ok = [r for r in runs if "median_us" in r]
        if not ok:
            rows.append(f"| {name} | failed: {runs[0].get('error', '?') if runs else '?'} | | | |")
            continue
        variants = list(ok[0]["median_us"])
        torch1 = [k for k in variants if k.startswith("torch eager (1")][0]
        for v in variants:
            us = statistics.median(r["median_us"][v] for r in ok)
            rel = statistics.median(r["median_us"][v] / r["median_us"][torch1] for r in ok)
            d = ok[0]["loss_rel_diff"].get(v)
            rows.append(f"| {name} | {v} | {us:.0f} | {rel:.2f} | {'' if d is None else f'{d:.0e}'} |")
    return rows
