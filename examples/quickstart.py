"""Quickstart: an MLP learns to read handwritten digits (scikit-learn's 8x8
digits, 1797 real images) with fl.train_, printing each epoch's mean loss
and the held-out accuracy, and drawing the loss and accuracy curves.

    python examples/quickstart.py            # 30 epochs; writes docs/gallery/figures/quickstart-*.png
    python examples/quickstart.py --short    # 2 epochs on 320 images, no figures (CI)
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
from _common import loss_figure, options, savefig
from sklearn.datasets import load_digits

import fluxlike as fl


def main(argv: list[str] | None = None) -> dict:
    args = options(__doc__, argv)
    epochs, seed = (2 if args.short else 30), 0
    digits = load_digits()
    X = (digits.data / 16.0).astype("float32")          # (1797, 64), pixels in [0, 1]
    y = digits.target
    perm = np.random.default_rng(seed).permutation(len(X))
    train, test = perm[:1400], perm[1400:]
    if args.short:
        train = train[:320]
    Y = np.asarray(fl.onehotbatch(y, range(10)))         # (1797, 10)

    fl.seed(seed)
    model = fl.Chain(fl.Dense(64, 128, fl.relu), fl.Dense(128, 64, fl.relu), fl.Dense(64, 10))
    print(model)
    opt_state = fl.setup(fl.Adam(1e-3), model)
    loader = fl.DataLoader((X[train], Y[train]), batchsize=32, shuffle=True, rng=seed)

    def loss(m, x, y):
        return fl.losses.logitcrossentropy(m(x), y)

    def accuracy(m, idx):
        return float(jnp.mean(fl.onecold(m(X[idx])) == y[idx]))

    history = {"loss": [], "train": [], "test": []}
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = fl.train_(loss, model, loader, opt_state)
        history["loss"].append(float(losses.mean()))
        history["train"].append(accuracy(model, train))
        history["test"].append(accuracy(model, test))
        if epoch % 5 == 0 or epoch == 1:
            print(f"epoch {epoch:3d}  loss {history['loss'][-1]:.4f}  "
                  f"train acc {history['train'][-1]:.3f}  test acc {history['test'][-1]:.3f}")
        if epoch == 20:
            fl.adjust_(opt_state, 3e-4)  # a step schedule: no recompilation
    acc = history["test"][-1]
    print(f"held-out accuracy {acc:.3f} on {len(test)} digits, {time.perf_counter() - t0:.1f} s of training")

    if args.figures:
        fig, b = loss_figure(history["loss"], "loss (logit cross-entropy)")
        a = fig.axes[0]
        ep = np.arange(1, epochs + 1)
        b.plot(ep, history["train"], label="train", marker="o", ms=3)
        b.plot(ep, history["test"], label=f"held out ({len(test)} digits)", marker="o", ms=3)
        b.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        for ax in (a, b):
            ax.axvline(20.5, color="grey", ls=":", lw=1)
        b.text(20.7, min(history["test"]), "adjust_(3e-4)", color="grey", fontsize=8)
        b.legend()
        savefig(fig, args.figures, "quickstart-curves")
    return {"accuracy": acc, **history}


if __name__ == "__main__":
    main()
