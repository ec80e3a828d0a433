"""Benchmark suite: workloads x implementations, timed interleaved.

    python benchmarks/suite.py            # full run, under ~10 minutes on 2 cores
    python benchmarks/suite.py --quick    # smoke run: no deep workload, no 2-thread PyTorch, few rounds
    python benchmarks/suite.py --json out.json --markdown out.md --only tiny,cnn

Implementations (benchmarks/peers/, one module per library; the peers come
from the `bench` extra, `pip install -e .[bench]`, and are skipped with a note
when missing): fluxlike (WALKTHROUGH 8b as written, the same step donated,
`train_` fused and unfused, the seed's eager loop `fl_eager`, `train_` over
a list of device arrays `fl_train_list`), the hand-written jax + optax step on a dict
(`hand`: jax.jit + donation, the reference of every ratio; `hand_scan`: the
epoch as one lax.scan), Equinox (filter_jit, jax.jit on the partitioned
arrays, the low-overhead flat loop), Flax NNX (nnx.jit, cached_partial, tree
mode, jit_partial, split/merge + jax.jit) and PyTorch eager (Adam default,
foreach, fused).

Workloads: `tiny` 2-16-16-1 b32 mse; `deep` 64 x Dense(64) b64 mse; `mlp`
784-512-512-10 b128 logitcrossentropy; `cnn` two (3x3 conv, relu, 2x2 max
pool) then Dense, 28x28x1 b64 logitcrossentropy; `epoch` the tiny MLP over
60,000 samples at b32 (1875 steps). Adam(1e-3) everywhere. Every
implementation starts from the same weights (numpy, benchmarks/peers/workloads.py)
and must reproduce the hand-written losses and parameters before it is timed.

Method: a sample is k steps (or one epoch) ended by one wait for the device,
divided by k; k is the workload's step count, lowered for slow implementations
so that a sample lasts about 0.1 s (at least 3 steps). Each round takes one sample of every implementation, in an order
rotated every round, so machine drift hits all alike; the tables give the
median and min-max over rounds, and ratios to `hand` as the ratio of medians
and the median of per-round ratios. "First call" is the first k-step sample's
time minus k median steps: tracing + compilation (+ first-run costs).
Peak memory: for jax, XLA's memory_analysis of the step's compiled program
(arguments + outputs - donated aliases + temporaries); for torch, the
profiler's memory timeline (live tensors) over one step.

Fresh processes: every row is also started alone in a new Python process
(importing only its own library), which reports its first call (building
the runner, then the first check steps up to the device: everything a user
waits for before training runs at speed, with no cache warmed by another
row) and the process's peak resident memory (VmHWM, imports and data
included), next to hand-written's in the same conditions. `--no-fresh`
skips this pass.

Then scaling: per-step time, compile time and (fresh processes) first call
and peak RSS of fluxlike (8b, donated) and hand against depth (8, 64, 256
Dense(64) layers, b64), and `train_`'s time
per step against epoch length (100, 1,000, 10,000 batches of the tiny MLP).

`--cnn-study` runs, instead, the study of XLA's CPU convolutions against
PyTorch (benchmarks/peers/cnn_study.py).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
import warnings
from typing import Any, Callable

import numpy as np

from peers.runner import Runner, Unsupported, peak_rss_bytes
from peers.workloads import Workload, deep, init_weights, make_batches

TINY = (2, 16, 16, 1)
FULL = (
    Workload("tiny", "mlp", TINY, 32, "mse", 200, 15),
    Workload("deep", "mlp", (64,) * 65, 64, "mse", 40, 11),
    Workload("mlp", "mlp", (784, 512, 512, 10), 128, "logitcrossentropy", 20, 11),
    Workload("cnn", "cnn", (), 64, "logitcrossentropy", 10, 11),
    Workload("epoch", "mlp", TINY, 32, "mse", 0, 5, epoch=60_000),
)
QUICK = (  # no deep (its fluxlike compile alone takes ~15 s); the scaling run's 8 layers stand in
    Workload("tiny", "mlp", TINY, 32, "mse", 100, 5),
    Workload("mlp", "mlp", (784, 512, 512, 10), 128, "logitcrossentropy", 5, 3),
    Workload("cnn", "cnn", (), 64, "logitcrossentropy", 3, 3),
    Workload("epoch", "mlp", TINY, 32, "mse", 0, 2, epoch=12_800),
)
SCALING_DEPTHS = {"full": (8, 64, 256), "quick": (8,)}
QUICK_SKIPS = ("torch", "torch_foreach", "torch_fused")  # 2-thread PyTorch: slow and erratic on a busy machine
SCALING_EPOCHS = {"full": (100, 1_000, 10_000), "quick": (100, 1_000)}  # batches of 32

PEER_MODULES = ("peers.hand", "peers.flux", "peers.eqx", "peers.nnx", "peers.pytorch")
REFERENCE = "hand"
EPOCH_REFERENCE = "hand_scan"
FLUX = ("fl_8b", "fl_8b_donate")
# step / hand targets: compute-bound workloads get the tight one
STEP_TARGET = {"mlp": 1.02, "cnn": 1.02}
STEP_TARGET_DEFAULT = 1.10
EPOCH_TARGET = 1.20
EAGER_TARGET = 2.0       # the seed's eager loop / hand (issue 9)
LIST_EPOCH_TARGET = 1.3  # train_ over a list of device arrays / hand_scan (issue 9)
FIRST_LIST_TARGET = 2.0  # its first epoch / the scan's first call, fresh processes (issue 9)
RSS_LIST_TARGET = 1.2    # its peak RSS / the scan's, fresh processes (issue 9)
COMPILE_TARGET = 1.3     # deep scaling: fl_8b_donate first call / hand's, fresh processes (issue 9)
RSS_TARGET = 1.15        # deep scaling: peak RSS / hand's, fresh processes (issue 9)
MEMORY_TARGET = 1.10
AHEAD_ON = ("tiny", "deep", "mlp", "epoch")
SAMPLE_S = 0.1     # target length of a step sample, seconds
MIN_STEPS = 3      # fewest steps in a step sample
LOSS_RTOL = 1e-4   # first losses, relative, against hand
PARAM_ATOL = 1e-4  # parameters after the check steps, absolute (Adam moves each by ~1e-3 a step)


# ---------------------------------------------------------------------------
# implementations


def load_impls(log: Callable[[str], None]) -> tuple[dict[str, type[Runner]], dict[str, str]]:
    """Every runner class by name, and the peer modules that could not be imported (name -> why)."""
    impls: dict[str, type[Runner]] = {}
    missing: dict[str, str] = {}
    for mod in PEER_MODULES:
        try:
            impls.update(importlib.import_module(mod).IMPLS)
        except ImportError as e:
            missing[mod] = f"{e} (pip install -e .[bench])"
            log(f"skipping {mod}: {missing[mod]}")
    return impls, missing


def applies(cls: type[Runner], wl: Workload) -> bool:
    """Whether a runner runs on a workload: epoch-only runners on epochs, step-only ones on steps.

    Example:
        >>> from peers.hand import HandScan, HandStep
        >>> from peers.workloads import Workload
        >>> step = Workload("t", "mlp", (2, 1), 4, "mse", 5, 1)
        >>> applies(HandScan, step), applies(HandStep, step)
        (False, True)
    """
    return not (cls.epoch_only and not wl.epoch) and not (cls.step_only and wl.epoch)


# ---------------------------------------------------------------------------
# timing


def timed(r: Runner, k: int) -> tuple[float, Any]:
    """Seconds for `r.run(k)` up to the device having finished, and its output."""
    t0 = time.perf_counter()
    out = r.run(k)
    r.wait(out)
    return time.perf_counter() - t0, out


def interleave(samplers: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every sampler once per round, rotating the order each round.

    Example:
        >>> interleave({"a": lambda: 1.0, "b": lambda: 2.0}, 2)
        {'a': [1.0, 1.0], 'b': [2.0, 2.0]}
    """
    names = list(samplers)
    out: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        shift = r % len(names) if names else 0
        for n in names[shift:] + names[:shift]:
            gc.collect()
            out[n].append(samplers[n]())
    return out


def summary(ts: list[float]) -> dict[str, float]:
    """Median, min and max of seconds-per-step samples, in microseconds, and steps per second.

    Example:
        >>> summary([1e-6, 2e-6, 4e-6])["median_us"]
        2.0
    """
    us = [t * 1e6 for t in ts]
    med = statistics.median(us)
    return {"median_us": med, "min_us": min(us), "max_us": max(us), "steps_per_s": 1e6 / med, "n": len(us)}


def ratio(times: dict[str, list[float]], a: str, b: str) -> dict[str, float] | None:
    """`a / b`: the ratio of medians and the median of per-round ratios (None if either is missing).

    Example:
        >>> ratio({"a": [2.0, 4.0], "b": [1.0, 2.0]}, "a", "b")
        {'of_medians': 2.0, 'paired': 2.0}
    """
    if a not in times or b not in times:
        return None
    return {"of_medians": statistics.median(times[a]) / statistics.median(times[b]),
            "paired": statistics.median(x / y for x, y in zip(times[a], times[b]))}


# ---------------------------------------------------------------------------
# one workload


def compare(res: dict[str, Any], ref: dict[str, Any], nfirst: int) -> dict[str, float]:
    """How far an implementation's check run is from the reference's."""
    l, lr = res["losses"], ref["losses"]
    first = float(np.max(np.abs(l[:nfirst] - lr[:nfirst]) / np.abs(lr[:nfirst])))
    allrel = float(np.max(np.abs(l - lr) / np.abs(lr))) if l.shape == lr.shape else float("nan")
    perr = max(float(np.max(np.abs(a - b))) for pa, pb in zip(res["params"], ref["params"]) for a, b in zip(pa, pb))
    return {"first_losses_rel": first, "all_losses_rel": allrel, "params_abs": perr}


def run_workload(wl: Workload, impls: dict[str, type[Runner]], names: list[str] | None,
                 log: Callable[[str], None], memory_of: Callable[[str], bool] = lambda name: True,
                 fresh: bool = True) -> dict[str, Any]:
    """Build, check, measure and time every applicable implementation on `wl`.

    `names` limits the implementations (the reference always runs); `memory_of(name)`
    says whose peak memory to measure (for XLA that is one more compilation);
    `fresh` runs each implementation again alone in a new process, for its
    first call and peak RSS (`run_fresh`)."""
    weights = init_weights(wl)
    data = make_batches(wl)
    k = wl.nbatches if wl.epoch else wl.steps
    kcheck = wl.nbatches if wl.epoch else 3
    ref_name = EPOCH_REFERENCE if wl.epoch else REFERENCE
    errors: dict[str, str] = {}
    runners: dict[str, Runner] = {}
    checks: dict[str, dict[str, Any]] = {}
    first_s: dict[str, float] = {}
    memory: dict[str, Any] = {}
    todo = [n for n, c in impls.items() if applies(c, wl) and (names is None or n in names or n == ref_name)]
    for name in todo:
        try:
            r = impls[name](wl, weights, data)
            first_s[name], out = timed(r, kcheck)
            checks[name] = {"losses": r.losses(out), "params": r.params()}
            memory[name] = r.memory() if memory_of(name) else None
            runners[name] = r
        except Unsupported:
            continue
        except Exception as e:  # record and go on: one broken peer must not stop the suite
            errors[name] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            log(f"  {name}: FAILED {errors[name]}")
            log("    " + traceback.format_exc().strip().splitlines()[-3])
    if ref_name not in checks:
        raise RuntimeError(f"{wl.name}: the reference {ref_name} failed: {errors.get(ref_name)}")
    agree = {n: compare(c, checks[ref_name], 3) for n, c in checks.items()}
    bad = {n: a for n, a in agree.items() if not (a["first_losses_rel"] < LOSS_RTOL and (wl.epoch or a["params_abs"] < PARAM_ATOL))}
    worst = {key: max(a[key] for a in agree.values()) for key in ("first_losses_rel", "params_abs")}
    log(f"  check ({kcheck} steps from the same weights): first losses agree to {worst['first_losses_rel']:.1e} "
        f"(relative), parameters to {worst['params_abs']:.1e}" + (f"; DISAGREE: {sorted(bad)}" if bad else ""))

    samplers, ks = {}, {}
    for name, r in runners.items():
        warm = timed(r, k)[0] / k  # every path has run with these shapes and this k
        # a step sample lasts about SAMPLE_S (at least MIN_STEPS steps, at most k); an epoch sample is one epoch
        ks[name] = k if wl.epoch else max(min(MIN_STEPS, k), min(k, round(SAMPLE_S / warm)))
        samplers[name] = (lambda r=r, kk=ks[name]: timed(r, kk)[0] / kk)
    times = interleave(samplers, wl.rounds)
    stats = {n: summary(t) for n, t in times.items()}
    compile_s = {n: max(0.0, first_s[n] - kcheck * stats[n]["median_us"] * 1e-6) for n in runners}
    ratios = {n: ratio(times, n, ref_name) for n in runners}
    fresh_res = run_fresh(wl, impls, list(runners), log) if fresh else {}
    if wl.epoch:
        ratios_loop = {n: ratio(times, n, REFERENCE) for n in runners}
    else:
        ratios_loop = {}
    return {
        "workload": {"name": wl.name, "kind": wl.kind, "sizes": wl.sizes, "batch": wl.batch, "loss": wl.loss,
                     "optimiser": "Adam(1e-3)", "steps_per_sample": k, "rounds": wl.rounds, "epoch_samples": wl.epoch},
        "steps_per_sample": ks,
        "reference": ref_name,
        "check": {"agreement": agree, "disagree": sorted(bad),
                  "losses": {n: c["losses"][:10].tolist() for n, c in checks.items()}},
        "errors": errors,
        "first_call_s": first_s,
        "compile_s": compile_s,
        "memory": memory,
        "fresh": fresh_res,
        "samples_s_per_step": times,
        "stats": stats,
        "ratio_to_reference": ratios,
        "ratio_to_hand_loop": ratios_loop,
    }


# ---------------------------------------------------------------------------
# fresh processes: first call and peak RSS


def fresh_one(spec: dict[str, Any]) -> dict[str, Any]:
    """In this (new) process: build one runner, time its first call, read the peak RSS.

    `spec` holds the runner's module and name and the workload's fields. The
    first call is the runner's construction plus its first check steps up to
    the device; then the timed sample's steps run once more (what a
    measurement round allocates), and the peak RSS is read."""
    import jax

    wl = Workload(**{**spec["workload"], "sizes": tuple(spec["workload"]["sizes"])})
    cls = importlib.import_module(spec["module"]).IMPLS[spec["impl"]]
    weights, data = init_weights(wl), make_batches(wl)
    jax.block_until_ready(jax.numpy.zeros(1) + 1)  # the backend's own start-up is not the runner's
    base = peak_rss_bytes()
    k = wl.nbatches if wl.epoch else wl.steps
    kcheck = wl.nbatches if wl.epoch else 3
    t0 = time.perf_counter()
    r = cls(wl, weights, data)
    build = time.perf_counter() - t0
    first = timed(r, kcheck)[0]
    timed(r, k)
    return {"first_call_s": build + first, "build_s": build, "peak_rss": peak_rss_bytes(), "base_rss": base}


def run_fresh(wl: Workload, impls: dict[str, type[Runner]], names: list[str], log: Callable[[str], None],
              timeout: float = 600.0) -> dict[str, Any]:
    """`fresh_one` for each named implementation on `wl`, each in its own process (name -> result or error)."""
    out: dict[str, Any] = {}
    wfields = {f: getattr(wl, f) for f in ("name", "kind", "sizes", "batch", "loss", "steps", "rounds", "epoch")}
    for name in names:
        spec = {"module": impls[name].__module__, "impl": name, "workload": to_json(wfields)}
        try:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--fresh-one", json.dumps(spec)],
                               capture_output=True, text=True, timeout=timeout,
                               cwd=os.path.dirname(os.path.abspath(__file__)))
            if p.returncode != 0:
                raise RuntimeError((p.stderr.strip().splitlines() or ["no output"])[-1])
            out[name] = json.loads(p.stdout.strip().splitlines()[-1])
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            out[name] = {"error": f"{type(e).__name__}: {e}"}
            log(f"  fresh {name}: FAILED {out[name]['error']}")
    return out


# ---------------------------------------------------------------------------
# scaling


def run_scaling(mode: str, impls: dict[str, type[Runner]], log: Callable[[str], None], fresh: bool = True) -> dict[str, Any]:
    """Step time and compile time against depth; train_'s time per step against epoch length."""
    out: dict[str, Any] = {"depth": {}, "epoch_length": {}}
    quick = mode == "quick"
    for d in SCALING_DEPTHS[mode]:
        steps = max(4, (800 if not quick else 200) // d)
        wl = deep(d, steps, 5 if quick else 9)
        log(f"scaling: depth {d}")
        out["depth"][d] = run_workload(wl, impls, ["fl_8b_donate", "hand"], log, lambda n: False, fresh=fresh)
    for nb in SCALING_EPOCHS[mode]:
        wl = Workload(f"epoch{nb}", "mlp", TINY, 32, "mse", 0, 3 if quick else (9 if nb < 10_000 else 5), epoch=32 * nb)
        log(f"scaling: epoch of {nb} batches")
        out["epoch_length"][nb] = run_workload(wl, impls, ["fl_train_", "hand_scan"], log, lambda n: False, fresh=False)
    return out


# ---------------------------------------------------------------------------
# report


def mib(b: int | None) -> str:
    """Bytes as MiB with 3 significant digits, or a dash.

    Example:
        >>> mib(3 * 2**20), mib(12345), mib(None)
        ('3', '0.0118', '—')
    """
    return "—" if b is None else f"{b / 2**20:.3g}"


def workload_table(res: dict[str, Any]) -> list[str]:
    """One workload's Markdown table, fastest first."""
    ref = res["reference"]
    fresh = res.get("fresh") or {}
    rows = ["| implementation | first call − steady (s) | median µs/step [min–max] | steps/s | peak MiB (XLA) "
            f"| × {ref} (medians) | × {ref} (paired) | first call, fresh (s) | peak RSS MiB, fresh (× {ref}) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in sorted(res["stats"].items(), key=lambda kv: kv[1]["median_us"]):
        r = res["ratio_to_reference"][name]
        mem = res["memory"].get(name)
        flag = " ⚠ disagrees" if name in res["check"]["disagree"] else ""
        rows.append(f"| {name}{flag} | {res['compile_s'][name]:.2f} | {s['median_us']:.1f} [{s['min_us']:.1f}–{s['max_us']:.1f}] "
                    f"| {s['steps_per_s']:.0f} | {mib(mem['bytes'] if mem else None)} "
                    f"| {r['of_medians']:.2f} | {r['paired']:.2f} | {fresh_cells(fresh, name, ref)} |")
    for name, e in res["errors"].items():
        rows.append(f"| {name} | failed: {e} | | | | | | | |")
    return rows


def fresh_ratio(fresh: dict[str, Any], a: str, b: str, key: str) -> float | None:
    """`fresh[a][key] / fresh[b][key]`, or None when either run is missing or failed.

    Example:
        >>> fresh_ratio({"a": {"peak_rss": 3.0}, "b": {"peak_rss": 2.0}}, "a", "b", "peak_rss")
        1.5
    """
    x, y = fresh.get(a, {}).get(key), fresh.get(b, {}).get(key)
    return None if x is None or y is None else x / y


def fresh_cells(fresh: dict[str, Any], name: str, ref: str) -> str:
    """The two fresh-process cells of a row: first call (× ref) and peak RSS (× ref).

    Example:
        >>> fresh_cells({"a": {"first_call_s": 2.0, "peak_rss": 2**21}, "h": {"first_call_s": 1.0, "peak_rss": 2**20}}, "a", "h")
        '2.00 (2.00×) | 2 (2.00×)'
    """
    f = fresh.get(name)
    if not f:
        return "— | —"
    if "error" in f:
        return f"failed: {f['error'][:60]} | —"
    rt, rm = fresh_ratio(fresh, name, ref, "first_call_s"), fresh_ratio(fresh, name, ref, "peak_rss")
    return (f"{f['first_call_s']:.2f}" + (f" ({rt:.2f}×)" if rt is not None else "") + " | "
            + mib(f["peak_rss"]) + (f" ({rm:.2f}×)" if rm is not None else ""))


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every target of issues 5 and 9 that the workloads can judge, with the measured value."""
    out = []
    for name, res in results.items():
        st, rt = res["stats"], res["ratio_to_reference"]
        if res["workload"]["epoch_samples"]:
            for fl_name, lim in (("fl_train_", EPOCH_TARGET), ("fl_train_list", LIST_EPOCH_TARGET)):
                r = rt.get(fl_name)
                if r:
                    out.append({"target": f"{name}: {fl_name} / hand_scan ≤ {lim}", "value": r["of_medians"],
                                "paired": r["paired"], "ok": r["of_medians"] <= lim})
            out += fresh_targets(res, name, "fl_train_list", EPOCH_REFERENCE, FIRST_LIST_TARGET, RSS_LIST_TARGET)
            rl = res["ratio_to_hand_loop"].get("fl_8b")
            if rl:
                out.append({"target": f"{name}: fl_8b loop / hand loop ≤ {STEP_TARGET_DEFAULT}", "value": rl["of_medians"],
                            "paired": rl["paired"], "ok": rl["of_medians"] <= STEP_TARGET_DEFAULT})
            ours = [n for n in ("fl_train_", "fl_train_list") if n in st]
        else:
            lim = STEP_TARGET.get(name, STEP_TARGET_DEFAULT)
            for fl_name in FLUX:
                if rt.get(fl_name):
                    out.append({"target": f"{name}: {fl_name} / hand ≤ {lim}", "value": rt[fl_name]["of_medians"],
                                "paired": rt[fl_name]["paired"], "ok": rt[fl_name]["of_medians"] <= lim})
            ours = [n for n in FLUX if n in st]
            if rt.get("fl_eager"):
                out.append({"target": f"{name}: fl_eager / hand ≤ {EAGER_TARGET}", "value": rt["fl_eager"]["of_medians"],
                            "paired": rt["fl_eager"]["paired"], "ok": rt["fl_eager"]["of_medians"] <= EAGER_TARGET})
            r = rt.get("fl_8b") and ratio(res["samples_s_per_step"], "fl_8b", "hand_nodonate")
            if r:
                out.append({"target": f"{name}: fl_8b / hand_nodonate (like for like, no target)", "value": r["of_medians"],
                            "paired": r["paired"], "ok": None})
            for fl_name, ref_name in (("fl_8b", "hand_nodonate"), ("fl_8b_donate", REFERENCE)):
                m, ref_mem = res["memory"].get(fl_name), res["memory"].get(ref_name)
                if m and ref_mem:
                    v = m["bytes"] / ref_mem["bytes"]
                    out.append({"target": f"{name}: peak memory {fl_name} / {ref_name} ≤ {MEMORY_TARGET}", "value": v,
                                "paired": None, "ok": v <= MEMORY_TARGET})
        peers = {n: s["median_us"] for n, s in st.items() if not n.startswith(("fl_", "hand"))}
        if ours and peers:
            best = min(ours, key=lambda n: st[n]["median_us"])
            fastest = min(peers, key=peers.get)
            v = st[best]["median_us"] / peers[fastest]
            out.append({"target": f"{name}: {best} ahead of every peer (fastest: {fastest})", "value": v,
                        "paired": None, "ok": v < 1.0 if name in AHEAD_ON else None})
    return out


def fresh_targets(res: dict[str, Any], label: str, impl: str, ref: str, first_lim: float,
                  rss_lim: float) -> list[dict[str, Any]]:
    """Issue 9's fresh-process targets of one workload: `impl`'s first call and
    peak RSS against `ref`'s.

    Example:
        >>> res = {"fresh": {"a": {"first_call_s": 2.0, "peak_rss": 1.0}, "h": {"first_call_s": 1.0, "peak_rss": 1.0}}}
        >>> [t["ok"] for t in fresh_targets(res, "w", "a", "h", 1.3, 1.15)]
        [False, True]
    """
    out = []
    fr = res.get("fresh") or {}
    for key, lim, what in (("first_call_s", first_lim, "first call"), ("peak_rss", rss_lim, "peak RSS")):
        v = fresh_ratio(fr, impl, ref, key)
        if v is not None:
            out.append({"target": f"{label}: {impl} {what} / {ref}'s, fresh process ≤ {lim}",
                        "value": v, "paired": None, "ok": v <= lim})
    return out


def scaling_targets(sc: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 9's depth targets: first call (trace + compile) and peak RSS against hand, fresh processes."""
    return [t for d, res in sc["depth"].items()
            for t in fresh_targets(res, f"deep{d}", "fl_8b_donate", REFERENCE, COMPILE_TARGET, RSS_TARGET)]


def scaling_tables(sc: dict[str, Any]) -> list[str]:
    """Markdown tables of the scaling runs."""
    rows = ["| layers | fl_8b_donate µs/step | hand µs/step | difference µs (per layer) | fl_8b_donate / hand "
            "| compile s fl_8b_donate / hand | first call s, fresh: fl_8b_donate / hand | peak RSS MiB, fresh: fl_8b_donate / hand |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    nan = float("nan")
    for d, res in sc["depth"].items():
        st, c, fr = res["stats"], res["compile_s"], res.get("fresh") or {}
        f, h = (st.get(n, {}).get("median_us", nan) for n in ("fl_8b_donate", "hand"))
        ff, fh = (fr.get(n, {}) for n in ("fl_8b_donate", "hand"))
        rt, rm = (fresh_ratio(fr, "fl_8b_donate", "hand", k) for k in ("first_call_s", "peak_rss"))
        rows.append(f"| {d} | {f:.1f} | {h:.1f} | {f - h:.1f} ({(f - h) / int(d):.2f}) | {f / h:.2f} "
                    f"| {c.get('fl_8b_donate', nan):.2f} / {c.get('hand', nan):.2f} "
                    f"| {ff.get('first_call_s', nan):.2f} / {fh.get('first_call_s', nan):.2f} ({rt or nan:.2f}×) "
                    f"| {mib(ff.get('peak_rss'))} / {mib(fh.get('peak_rss'))} ({rm or nan:.2f}×) |")
    rows += ["", "| epoch batches | fl_train_ µs/step | hand_scan µs/step | fl_train_ / hand_scan | fl_train_ first call s |",
             "|---:|---:|---:|---:|---:|"]
    for nb, res in sc["epoch_length"].items():
        st = res["stats"]
        f, h = (st.get(n, {}).get("median_us", float("nan")) for n in ("fl_train_", "hand_scan"))
        rows.append(f"| {nb} | {f:.1f} | {h:.1f} | {f / h:.2f} | {res['first_call_s'].get('fl_train_', float('nan')):.2f} |")
    return rows


def machine() -> dict[str, Any]:
    """The CPU, core count, load and library versions."""
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for mod in ("jax", "jaxlib", "optax", "numpy", "equinox", "flax", "torch", "fluxlike"):
        try:
            versions[mod] = importlib.metadata.version(mod)
        except importlib.metadata.PackageNotFoundError:
            versions[mod] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=os.path.dirname(os.path.abspath(__file__))).stdout.strip()
    except OSError:
        commit = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "versions": versions, "fluxlike_commit": commit, "load_average_start": os.getloadavg(),
            "xla_flags": os.environ.get("XLA_FLAGS", "")}


def report(out: dict[str, Any]) -> str:
    """The whole run as Markdown."""
    m = out["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cores']} cores; load average {m['load_average_start'][0]:.1f} at start, "
             f"{m['load_average_end'][0]:.1f} at end. " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
             + f" (commit {m['fluxlike_commit']}). Mode: {out['mode']}, {out['wall_s']:.0f} s."
             + (f" XLA_FLAGS={m['xla_flags']}" if m["xla_flags"] else "")]
    for name, res in out["workloads"].items():
        w = res["workload"]
        what = f"{w['epoch_samples']} samples, one epoch per sample" if w["epoch_samples"] else f"{w['steps_per_sample']} steps per sample"
        lines += ["", f"### {name} (b{w['batch']}, {w['loss']}; {what}, {w['rounds']} rounds)", ""]
        lines += workload_table(res)
    lines += ["", "### Targets", "", "| target | measured (medians) | paired | met |", "|---|---:|---:|:-:|"]
    for t in out["targets"]:
        ok = "—" if t["ok"] is None else ("yes" if t["ok"] else "**no**")
        p = "" if t["paired"] is None else f"{t['paired']:.2f}"
        lines.append(f"| {t['target']} | {t['value']:.2f} | {p} | {ok} |")
    if out.get("scaling"):
        lines += ["", "### Scaling", ""] + scaling_tables(out["scaling"])
    if out["notes"]:
        lines += [""] + [f"- {n}" for n in out["notes"]]
    return "\n".join(lines)


def to_json(x: Any) -> Any:
    """Numpy values and tuples as plain JSON values."""
    if isinstance(x, dict):
        return {str(k): to_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_json(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run the suite, print the Markdown report and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer steps and rounds, smaller epoch")
    ap.add_argument("--only", default="", help="comma-separated workloads (tiny,deep,mlp,cnn,epoch)")
    ap.add_argument("--impls", default="", help="comma-separated implementations (the reference always runs)")
    ap.add_argument("--no-scaling", action="store_true", help="skip the depth and epoch-length scaling runs")
    ap.add_argument("--no-fresh", action="store_true", help="skip the fresh-process pass (first call, peak RSS)")
    ap.add_argument("--fresh-one", help=argparse.SUPPRESS)  # a child of run_fresh: one runner, as JSON
    ap.add_argument("--cnn-study", action="store_true",
                    help="instead of the suite: XLA flags, layouts and conv lowerings against PyTorch on the cnn step")
    ap.add_argument("--json", default="benchmarks/results.json", help="where to write all raw numbers")
    ap.add_argument("--markdown", default="", help="also write the Markdown report here")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if args.fresh_one:
        print(json.dumps(fresh_one(json.loads(args.fresh_one))))
        return 0
    log = lambda s: print(s, flush=True)
    mode = "quick" if args.quick else "full"
    if args.cnn_study:
        from peers import cnn_study
        study = cnn_study.main(args.quick, log)
        text = "\n".join(cnn_study.table(study))
        print("\n" + text)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(text + "\n")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(to_json({"machine": machine(), "cnn_study": study}), f, indent=1)
        return 0
    impls, missing = load_impls(log)
    names = [n for n in args.impls.split(",") if n] or None
    if args.quick and names is None:
        names = [n for n in impls if n not in QUICK_SKIPS]
    only = [n for n in args.only.split(",") if n]
    # peak memory costs a compilation per implementation: quick runs measure only fluxlike and hand
    memory_of = (lambda n: n.startswith(("fl_", "hand"))) if args.quick else (lambda n: True)
    out: dict[str, Any] = {"mode": mode, "machine": machine(), "workloads": {}, "notes": []}
    from peers import flux
    if flux.maxpool_problem():
        out["notes"].append("fl.MaxPool cannot be differentiated under jax.jit "
                            f"({flux.maxpool_problem()}); fluxlike's cnn uses the same reduce_window as a plain "
                            "function in its Chain until that is fixed.")
    for mod, why in missing.items():
        out["notes"].append(f"{mod} not run: {why}")
    t0 = time.perf_counter()
    for wl in QUICK if args.quick else FULL:
        if only and wl.name not in only:
            continue
        log(f"{wl.name}: {wl}")
        out["workloads"][wl.name] = run_workload(wl, impls, names, log, memory_of, fresh=not args.no_fresh)
        log("\n".join(workload_table(out["workloads"][wl.name])))
    if not args.no_scaling and not only:
        out["scaling"] = run_scaling(mode, impls, log, fresh=not args.no_fresh)
    out["targets"] = targets(out["workloads"]) + (scaling_targets(out["scaling"]) if out.get("scaling") else [])
    out["machine"]["load_average_end"] = os.getloadavg()
    out["wall_s"] = time.perf_counter() - t0
    text = report(out)
    print("\n" + text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(to_json(out), f, indent=1)
        log(f"\nwrote {args.json} ({out['wall_s']:.0f} s)")
    disagree = [n for res in out["workloads"].values() for n in res["check"]["disagree"]]
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
