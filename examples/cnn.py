"""A small CNN with BatchNorm and Dropout reads handwritten digits
(scikit-learn's 8x8 digits: 1797 real images) with fl.train_, printing each
epoch's loss and the held-out accuracy.

    python examples/cnn.py
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

import fluxlike as fl


def main(epochs: int = 15, seed: int = 0) -> float:
    digits = load_digits()
    X = (digits.images / 16.0).astype("float32")[..., None]   # (1797, 8, 8, 1): NHWC
    y = digits.target
    perm = np.random.default_rng(seed).permutation(len(X))
    train, test = perm[:1400], perm[1400:]
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

    def accuracy(idx):  # outside gradient: test mode (running statistics, no dropout)
        return float(jnp.mean(fl.onecold(model(X[idx])) == y[idx]))

    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = fl.train_(loss, model, loader, opt_state)
        if epoch % 3 == 0 or epoch == 1:
            print(f"epoch {epoch:3d}  loss {losses.mean():.4f}  test acc {accuracy(test):.3f}")
    acc = accuracy(test)
    print(f"held-out accuracy {acc:.3f} on {len(test)} digits, {time.perf_counter() - t0:.1f} s of training")
    return acc


if __name__ == "__main__":
    main()
