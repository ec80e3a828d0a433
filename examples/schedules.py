"""Learning-rate schedules: the same MLP, from the same initial weights and
on the same batches (scikit-learn's 8x8 digits), trained with Adam at a peak
rate high enough (3e-2) that holding it hurts: (a) a constant rate, (b) a
step decay written as `fl.adjust_` between epochs (Flux's way), and (c)
optax's warmup-cosine schedule through an optax rule,
`fl.setup(optax.inject_hyperparams(optax.adam)(learning_rate=schedule), model)`.
(d) gives the same schedule to fluxlike's own rule, `fl.Adam(schedule)`,
where it is evaluated inside the compiled step; it computes what (c) does,
and the script prints how far apart their losses get. `fl.learning_rate(state)`
reads each run's rate after every epoch. It prints each run's final loss and
held-out accuracy and draws the schedules and the loss curves.

    python examples/schedules.py            # 30 epochs a run; writes docs/gallery/figures/schedules-*.png
    python examples/schedules.py --short    # 2 epochs a run on 320 images, no figures (CI)
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
import optax
from _common import options, pyplot, savefig
from sklearn.datasets import load_digits

import fluxlike as fl


def main(argv: list[str] | None = None) -> dict:
    args = options(__doc__, argv)
    epochs, seed, batch = (2 if args.short else 30), 0, 32
    digits = load_digits()
    X = (digits.data / 16.0).astype("float32")          # (1797, 64), pixels in [0, 1]
    y = digits.target
    perm = np.random.default_rng(seed).permutation(len(X))
    n_train = 320 if args.short else 1408               # whole batches of 32
    train, test = perm[:n_train], perm[1408:]
    Y = np.asarray(fl.onehotbatch(y, range(10)))
    steps_per_epoch = n_train // batch
    total = epochs * steps_per_epoch
    peak = 3e-2                                         # high enough that a constant rate hurts
    # (b): after these epochs, the new rate
    decay_at = {epochs // 3: peak / 10, 2 * epochs // 3: peak / 100} if epochs >= 3 else {1: peak / 10}
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=peak, warmup_steps=total // 10, decay_steps=total, end_value=1e-5)

    def loss(m, x, y):
        return fl.losses.logitcrossentropy(m(x), y)

    runs = {
        "constant": lambda: fl.Adam(peak),
        "step decay (adjust_)": lambda: fl.Adam(peak),
        "warmup-cosine (optax rule)": lambda: optax.inject_hyperparams(optax.adam)(learning_rate=schedule),
        "warmup-cosine (fl.Adam)": lambda: fl.Adam(schedule),
    }
    print(f"{len(train)} training images ({steps_per_epoch} steps an epoch), {len(test)} held out; "
          f"{epochs} epochs, peak rate {peak:g}")
    results = {}
    t_all = time.perf_counter()
    for name, rule in runs.items():
        fl.seed(seed)                                   # the same initial weights for every run
        model = fl.Chain(fl.Dense(64, 128, fl.relu), fl.Dense(128, 64, fl.relu), fl.Dense(64, 10))
        state = fl.setup(rule(), model)
        loader = fl.DataLoader((X[train], Y[train]), batchsize=batch, shuffle=True, rng=seed)  # the same batches
        step_losses, epoch_losses, rates = [], [], [fl.learning_rate(state)]
        t0 = time.perf_counter()
        for epoch in range(1, epochs + 1):
            losses = fl.train_(loss, model, loader, state, progress=not args.short)
            step_losses.extend(losses.tolist())
            epoch_losses.append(float(losses.mean()))
            if name.startswith("step") and epoch in decay_at:
                fl.adjust_(state, decay_at[epoch])      # data, not code: nothing recompiles
            rates.append(fl.learning_rate(state))
        test_loss = float(loss(model, X[test], Y[test]))
        acc = float(jnp.mean(fl.onecold(model(X[test])) == y[test]))
        results[name] = {"step_losses": step_losses, "epoch_losses": epoch_losses, "rates": rates,
                         "train_loss": epoch_losses[-1], "test_loss": test_loss, "accuracy": acc,
                         "seconds": time.perf_counter() - t0}
        print(f"{name:27s} last epoch's loss {epoch_losses[-1]:.4f}  held-out loss {test_loss:.4f}  "
              f"held-out acc {acc:.3f}  ({results[name]['seconds']:.1f} s)")

    opt, own = results["warmup-cosine (optax rule)"], results["warmup-cosine (fl.Adam)"]
    diff = np.abs(np.subtract(opt["step_losses"], own["step_losses"]))
    gap = float(diff[:steps_per_epoch].max())
    apart = int(np.argmax(diff > 1e-5)) if (diff > 1e-5).any() else len(diff)
    print(f"warmup-cosine, optax rule vs fl.Adam: largest difference of a step's loss {gap:.2g} in epoch 1, "
          f"{float(diff.max()):.2g} in all; first step more than 1e-5 apart: {apart} of {len(diff)}")
    k = steps_per_epoch
    print(f"fl.learning_rate after epoch 1 ({k} steps): optax rule {opt['rates'][1]:.6g}, "
          f"fl.Adam {own['rates'][1]:.6g}; schedule({k - 1}) = {float(schedule(k - 1)):.6g}, "
          f"schedule({k}) = {float(schedule(k)):.6g}")
    every = max(1, epochs // 6)
    rates = results["step decay (adjust_)"]["rates"]
    print("step decay, fl.learning_rate after epoch "
          + ", ".join(f"{e}: {rates[e]:g}" for e in range(0, epochs + 1, every)))
    print(f"{time.perf_counter() - t_all:.1f} s for the {len(runs)} runs")

    if args.figures:
        plt = pyplot()
        colors = dict(zip(runs, ["C0", "C1", "C2", "C3"]))
        step = np.arange(total)
        fig, ax = plt.subplots(figsize=(6.4, 3.6))
        for name in ["constant", "step decay (adjust_)"]:
            r = np.repeat(results[name]["rates"][:-1], steps_per_epoch)   # one rate an epoch
            ax.plot(step, r, color=colors[name], label=name)
        ax.plot(step, [float(schedule(s)) for s in step], color=colors["warmup-cosine (optax rule)"],
                label="optax.warmup_cosine_decay_schedule")
        ends = np.arange(0, epochs + 1) * steps_per_epoch
        for name, marker in [("warmup-cosine (optax rule)", "o"), ("warmup-cosine (fl.Adam)", "x")]:
            ax.plot(ends, results[name]["rates"], ls="", marker=marker, ms=4, color=colors[name],
                    label=f"fl.learning_rate after each epoch, {name.split('(')[1][:-1]}")
        ax.set(xlabel="step", ylabel="learning rate", yscale="log", ylim=(1e-5, 1e-1),
               title="the schedules")
        ax.legend(fontsize=7, loc="lower left")
        savefig(fig, args.figures, "schedules-rates")

        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
        k = steps_per_epoch
        for name in ["constant", "step decay (adjust_)", "warmup-cosine (optax rule)"]:
            s = np.asarray(results[name]["step_losses"])
            smooth = np.convolve(s, np.ones(k) / k, mode="valid")          # the mean of the last epoch's steps
            a.plot(np.arange(k - 1, total), smooth, color=colors[name], lw=1.2, label=name)
            b.plot(np.arange(1, epochs + 1), results[name]["epoch_losses"], marker="o", ms=2.5,
                   color=colors[name], label=name)
        b.plot(np.arange(1, epochs + 1), results["warmup-cosine (fl.Adam)"]["epoch_losses"], ls="",
               marker="x", ms=4, color=colors["warmup-cosine (fl.Adam)"], label="warmup-cosine (fl.Adam)")
        a.set(xlabel="step", ylabel=f"training loss (mean of {k} steps)", yscale="log",
              title="loss per step")
        b.set(xlabel="epoch", ylabel="mean training loss", yscale="log", title="loss per epoch")
        for x in decay_at:
            b.axvline(x + 0.5, color=colors["step decay (adjust_)"], ls=":", lw=1)
        a.legend(fontsize=8)
        b.legend(fontsize=8)
        savefig(fig, args.figures, "schedules-loss")
    out = {name: {key: v for key, v in r.items() if key != "seconds"} for name, r in results.items()}
    return out | {"gap_epoch1": gap, "steps_together": apart}


if __name__ == "__main__":
    main()
