"""A small CNN with BatchNorm and Dropout reads handwritten digits
(scikit-learn's 8x8 digits: 1797 real images) with fl.train_, printing each
epoch's loss and the held-out accuracy; it draws the curves, the confusion
matrix and the held-out digits it gets wrong.

    python examples/cnn.py            # 15 epochs; writes docs/gallery/figures/cnn-*.png
    python examples/cnn.py --short    # 1 epoch on 320 images, no figures (CI)
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
from _common import loss_figure, options, pyplot, savefig
from sklearn.datasets import load_digits

import fluxlike as fl


def main(argv: list[str] | None = None) -> dict:
    args = options(__doc__, argv)
    epochs, seed = (1 if args.short else 15), 0
    digits = load_digits()
    X = (digits.images / 16.0).astype("float32")[..., None]   # (1797, 8, 8, 1): NHWC
    y = digits.target
    perm = np.random.default_rng(seed).permutation(len(X))
    train, test = perm[:1400], perm[1400:]
    if args.short:
        train = train[:320]
    Y = np.asarray(fl.onehotbatch(y, range(10)))

    fl.seed(seed)
    model = fl.Chain(
        fl.Conv((3, 3), 1, 16, pad=1),      # 8x8x16
        fl.BatchNorm(16, fl.relu),
        fl.MaxPool((2, 2)),                 # 4x4x16
        fl.Conv((3, 3), 16, 32, pad=1),     # 4x4x32
        fl.BatchNorm(32, fl.relu),
        fl.MaxPool((2, 2)),                 # 2x2x32
        fl.flatten,                         # 128
        fl.Dropout(0.3),
        fl.Dense(128, 10),
    )
    print(model)
    opt_state = fl.setup(fl.Adam(3e-3), model)
    loader = fl.DataLoader((X[train], Y[train]), batchsize=64, shuffle=True, rng=seed)

    def loss(m, x, y):
        return fl.losses.logitcrossentropy(m(x), y)

    def predict(idx):  # outside gradient: test mode (running statistics, no dropout)
        return np.asarray(fl.onecold(model(X[idx])))

    history = {"loss": [], "test": []}
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = fl.train_(loss, model, loader, opt_state)
        history["loss"].append(float(losses.mean()))
        history["test"].append(float(np.mean(predict(test) == y[test])))
        if epoch % 3 == 0 or epoch == 1:
            print(f"epoch {epoch:3d}  loss {history['loss'][-1]:.4f}  test acc {history['test'][-1]:.3f}")
    pred = predict(test)
    acc = float(np.mean(pred == y[test]))
    confusion = np.zeros((10, 10), int)
    np.add.at(confusion, (y[test], pred), 1)
    wrong = np.flatnonzero(pred != y[test])
    print(f"held-out accuracy {acc:.3f} on {len(test)} digits ({len(wrong)} wrong), "
          f"{time.perf_counter() - t0:.1f} s of training")

    if args.figures:
        plt = pyplot()
        fig, b = loss_figure(history["loss"])
        b.plot(np.arange(1, epochs + 1), history["test"], marker="o", ms=3, color="C1")
        b.set(xlabel="epoch", ylabel="held-out accuracy", title=f"accuracy on {len(test)} held-out digits")
        savefig(fig, args.figures, "cnn-curves")

        fig, ax = plt.subplots(figsize=(4.6, 4))
        ax.imshow(confusion, cmap="Blues")
        for i in range(10):
            for j in range(10):
                if confusion[i, j]:
                    ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7,
                            color="white" if confusion[i, j] > confusion.max() / 2 else "black")
        ax.set(xticks=range(10), yticks=range(10), xlabel="predicted", ylabel="true",
               title="confusion matrix (held out)")
        savefig(fig, args.figures, "cnn-confusion")

        shown = wrong[:12]
        fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(1.1 * max(len(shown), 1), 1.6), squeeze=False)
        for ax, k in zip(axes[0], shown):
            ax.imshow(X[test][k, :, :, 0], cmap="gray_r")
            ax.set_title(f"{y[test][k]} → {pred[k]}", fontsize=9)
        for ax in axes[0]:
            ax.axis("off")
        fig.suptitle("held-out digits it gets wrong (true → predicted)", fontsize=9)
        savefig(fig, args.figures, "cnn-misclassified")
    return {"accuracy": acc, "wrong": int(len(wrong)), **history}


if __name__ == "__main__":
    main()
