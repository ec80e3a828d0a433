"""Data-parallel and FSDP training: the digits classifier (scikit-learn's 8x8
digits, 1797 real images) on every device of a mesh, three ways, against
the same run on one device: replicated weights (data parallelism), weights
split over the devices (FSDP) and the optimiser state split (ZeRO-1).

    python examples/data_parallel.py            # 8 virtual CPU devices when there is no accelerator
    python examples/data_parallel.py --short    # 2 epochs, no figures (CI)

On a machine with several GPUs it runs unchanged on all of them. On CPU the
8 devices are simulated (`--xla_force_host_platform_device_count=8`), so the
point is correctness and placement, not speed: on 2 cores 8 devices are
slower than one. The full run draws every layout's loss curve over one
device's, and the bytes each device holds.
"""

from __future__ import annotations

import os
import sys
import time

if "jax" not in sys.modules and "--xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import copy  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from _common import options, pyplot, savefig  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

import fluxlike as fl  # noqa: E402


def per_device_bytes(tree) -> int:
    """Bytes the first device holds of `tree`'s arrays."""
    return sum(x.addressable_shards[0].data.nbytes for x in jax.tree.leaves(tree) if isinstance(x, jax.Array))


def main(argv: list[str] | None = None) -> bool:
    args = options(__doc__, argv)
    epochs = 2 if args.short else 10
    digits = load_digits()
    X = (digits.data / 16.0).astype("float32")
    y = digits.target
    perm = np.random.default_rng(0).permutation(len(X))
    train, test = perm[:1408], perm[1408:]        # 1408 = 22 batches of 64
    Y = np.asarray(fl.onehotbatch(y, range(10)))
    n = len(jax.devices())
    mesh = jax.make_mesh((n,), ("data",))
    print(f"{n} {jax.devices()[0].platform} devices; mesh {dict(mesh.shape)}")

    fl.seed(0)
    # no bias before BatchNorm (it would cancel it): its exact gradient is 0, and Adam would turn
    # rounding-level differences between layouts into full-size steps
    base = fl.Chain(fl.Dense(64, 128, bias=False), fl.BatchNorm(128, fl.relu), fl.Dropout(0.2), fl.Dense(128, 10))

    def loss(m, x, y):
        return fl.losses.logitcrossentropy(m(x), y)

    def run(name, model, state, loader):
        t0 = time.perf_counter()
        every = []
        for epoch in range(1, epochs + 1):
            losses = fl.train_(loss, model, loader, state)
            every.append(np.asarray(losses))
        held[name] = (per_device_bytes(model), per_device_bytes(state))
        judge = fl.testmode_(fl.gather(model))  # whole weights on the host: an FSDP layer's weights are split
        acc = float(jnp.mean(fl.onecold(judge(X[test])) == y[test]))
        w = jax.tree.leaves(model)[0]
        print(f"  {name:18s} last epoch loss {losses.mean():.5f}  test acc {acc:.3f}  "
              f"first weight {w.sharding.spec if hasattr(w.sharding, 'spec') else 'one device'}, "
              f"{w.addressable_shards[0].data.nbytes} of {w.nbytes} bytes per device  "
              f"({time.perf_counter() - t0:.1f} s)")
        return np.concatenate(every), model

    results, held = {}, {}
    one = copy.deepcopy(base)
    results["one device"] = run("one device", one, fl.setup(fl.Adam(1e-3), one),
                                fl.DataLoader((X[train], Y[train]), batchsize=64, shuffle=True, rng=0))
    for name, rule, zero1 in (("data parallel", fl.Replicate(), False), ("FSDP", fl.FSDP("data"), False),
                              ("ZeRO-1", fl.Replicate(), True)):
        model = fl.shard(base, mesh, rule)
        state = fl.setup(fl.Adam(1e-3), model)
        if zero1:
            state = fl.shard(state, mesh, fl.FSDP("data"))
        loader = fl.DataLoader((X[train], Y[train]), batchsize=64, shuffle=True, rng=0, mesh=mesh)
        results[name] = run(name, model, state, loader)
    ref_losses, ref_model = results["one device"]
    ref_logits = np.asarray(fl.testmode_(fl.gather(ref_model))(X[test]))
    ok = True
    for name, (losses, model) in list(results.items())[1:]:
        diff = float(np.max(np.abs(np.asarray(losses) - np.asarray(ref_losses))))
        logits = float(np.max(np.abs(np.asarray(fl.testmode_(fl.gather(model))(X[test])) - ref_logits)))
        wdiff = max(float(np.max(np.abs(a - np.asarray(b))))
                    for a, b in zip(jax.tree.leaves(fl.gather(model)), jax.tree.leaves(ref_model)))
        ok &= diff < 1e-5 and logits < 1e-4 and wdiff < 1e-4
        print(f"{name:14s} vs one device: losses differ by {diff:.1e}, test logits by {logits:.1e}, "
              f"weights by at most {wdiff:.1e}")
    print("every layout equals one device up to reduction order:", ok)
    if args.figures:
        plt = pyplot()
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        for (name, (losses, _)), style in zip(results.items(), ("-", "--", ":", "-.")):
            a.plot(np.arange(1, len(losses) + 1) / (len(losses) / epochs), losses, style, lw=1.2, label=name)
        a.set(xlabel="epoch", ylabel="training loss per step", yscale="log",
              title=f"{epochs} epochs: the four curves coincide")
        a.legend()
        names = list(held)
        x = np.arange(len(names))
        b.bar(x - 0.2, [held[k][0] / 1024 for k in names], 0.4, label="model")
        b.bar(x + 0.2, [held[k][1] / 1024 for k in names], 0.4, label="optimiser state")
        b.set(xticks=x, xticklabels=names, ylabel="KiB on each device", title=f"memory per device ({n} devices)")
        b.legend()
        savefig(fig, args.figures, "data_parallel-curves")
    return ok


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
