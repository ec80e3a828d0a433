"""Sequence: an LSTM solves the adding problem (Hochreiter & Schmidhuber 1997).

Each sequence has T steps of two features: a value drawn uniformly from
[0, 1], and a marker that is 1 at exactly two steps (one in each half) and 0
elsewhere. The target is the sum of the two marked values, so the network
must find the markers and remember the values across the sequence. Always
predicting the mean scores an MSE of 1/6 = 0.167; the target here is a
held-out MSE below 0.01. It draws the loss curves and the predictions
against the targets.

    python examples/sequence.py            # 12 epochs; writes docs/gallery/figures/sequence-*.png
    python examples/sequence.py --short    # 1 epoch on 256 sequences, no figures (CI)
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from _common import options, pyplot, savefig

import fluxlike as fl


def adding_problem(n: int, T: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`n` sequences (n, T, 2) of (value, marker) and their targets (n, 1)."""
    values = rng.uniform(0, 1, size=(n, T)).astype("float32")
    markers = np.zeros((n, T), "float32")
    rows = np.arange(n)
    markers[rows, rng.integers(0, T // 2, n)] = 1
    markers[rows, rng.integers(T // 2, T, n)] = 1
    x = np.stack([values, markers], axis=-1)
    y = (values * markers).sum(axis=1, keepdims=True)
    return x, y


def last_step(h: jax.Array) -> jax.Array:
    """The LSTM's output at the last time step: (batch, time, out) -> (batch, out)."""
    return h[:, -1]


def main(argv: list[str] | None = None) -> dict:
    args = options(__doc__, argv)
    epochs, T, seed = (1 if args.short else 12), 20, 0
    n_train, n_test = (256, 128) if args.short else (4000, 1000)
    rng = np.random.default_rng(seed)
    x_train, y_train = adding_problem(n_train, T, rng)
    x_test, y_test = adding_problem(n_test, T, rng)

    fl.seed(seed)
    model = fl.Chain(fl.LSTM(2, 32), last_step, fl.Dense(32, 1))
    print(model)
    opt_state = fl.setup(fl.Adam(3e-3), model)
    loader = fl.DataLoader((x_train, y_train), batchsize=32, shuffle=True, rng=seed)

    def loss(m, x, y):
        return fl.losses.mse(m(x), y)

    test_mse = jax.jit(lambda m: fl.losses.mse(m(x_test), y_test))
    print(f"predicting the mean: test MSE {float(np.var(y_test)):.4f}")
    history = {"train": [], "test": []}
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = fl.train_(loss, model, loader, opt_state, progress=not args.short)
        history["train"].append(float(losses.mean()))
        history["test"].append(float(test_mse(model)))
        print(f"epoch {epoch:2d}  train loss {history['train'][-1]:.4f}  test MSE {history['test'][-1]:.4f}")
    mse = history["test"][-1]
    verdict = "reached" if mse < 0.01 else "MISSED"
    print(f"held-out MSE {mse:.4f} on {len(x_test)} sequences of length {T} "
          f"(target < 0.01: {verdict}), {time.perf_counter() - t0:.1f} s of training")

    if args.figures:
        plt = pyplot()
        pred = np.asarray(model(x_test))[:, 0]
        fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
        ep = np.arange(1, epochs + 1)
        a.plot(ep, history["train"], marker="o", ms=3, label="train (mean over the epoch)")
        a.plot(ep, history["test"], marker="o", ms=3, label="held out")
        a.axhline(float(np.var(y_test)), color="grey", ls=":", lw=1, label="predicting the mean")
        a.axhline(0.01, color="C3", ls="--", lw=1, label="target 0.01")
        a.set(xlabel="epoch", ylabel="MSE", yscale="log", title="loss")
        a.legend(fontsize=8)
        b.scatter(y_test[:, 0], pred, s=4, alpha=0.5)
        b.plot([0, 2], [0, 2], color="grey", lw=1)
        b.set(xlabel="target (sum of the two marked values)", ylabel="prediction",
              title=f"{len(x_test)} held-out sequences", aspect="equal")
        savefig(fig, args.figures, "sequence-predictions")
    return {"mse": mse, **history}


if __name__ == "__main__":
    main()
