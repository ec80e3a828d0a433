"""Quickstart: an MLP learns to read handwritten digits (scikit-learn's 8x8
digits, 1797 real images) with fl.train_, printing each epoch's mean loss
and the held-out accuracy.

    python examples/quickstart.py
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits

import fluxlike as fl


def main(epochs: int = 30, seed: int = 0) -> float:
    digits = load_digits()
    X = (digits.data / 16.0).astype("float32")          # (1797, 64), pixels in [0, 1]
    y = digits.target
    perm = np.random.default_rng(seed).permutation(len(X))
    train, test = perm[:1400], perm[1400:]
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

    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = fl.train_(loss, model, loader, opt_state)
        if epoch % 5 == 0 or epoch == 1:
            print(f"epoch {epoch:3d}  loss {losses.mean():.4f}  "
                  f"train acc {accuracy(model, train):.3f}  test acc {accuracy(model, test):.3f}")
        if epoch == 20:
            fl.adjust_(opt_state, 3e-4)  # a step schedule: no recompilation
    acc = accuracy(model, test)
    print(f"held-out accuracy {acc:.3f} on {len(test)} digits, {time.perf_counter() - t0:.1f} s of training")
    return acc


if __name__ == "__main__":
    main()
