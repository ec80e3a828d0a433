"""Sequence: an LSTM solves the adding problem (Hochreiter & Schmidhuber 1997).

Each sequence has T steps of two features: a value drawn uniformly from
[0, 1], and a marker that is 1 at exactly two steps (one in each half) and 0
elsewhere. The target is the sum of the two marked values, so the network
must find the markers and remember the values across the sequence. Always
predicting the mean scores an MSE of 1/6 = 0.167; the target here is a
held-out MSE below 0.01.

    python examples/sequence.py
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

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


def main(epochs: int = 12, T: int = 20, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    x_train, y_train = adding_problem(4000, T, rng)
    x_test, y_test = adding_problem(1000, T, rng)

    fl.seed(seed)
    model = fl.Chain(fl.LSTM(2, 32), last_step, fl.Dense(32, 1))
    print(model)
    opt_state = fl.setup(fl.Adam(3e-3), model)
    loader = fl.DataLoader((x_train, y_train), batchsize=32, shuffle=True, rng=seed)

    def loss(m, x, y):
        return fl.losses.mse(m(x), y)

    test_mse = jax.jit(lambda m: fl.losses.mse(m(x_test), y_test))
    print(f"predicting the mean: test MSE {float(np.var(y_test)):.4f}")
    t0 = time.perf_counter()
    for epoch in range(1, epochs + 1):
        losses = fl.train_(loss, model, loader, opt_state)
        print(f"epoch {epoch:2d}  train loss {losses.mean():.4f}  test MSE {float(test_mse(model)):.4f}")
    mse = float(test_mse(model))
    verdict = "reached" if mse < 0.01 else "MISSED"
    print(f"held-out MSE {mse:.4f} on {len(x_test)} sequences of length {T} "
          f"(target < 0.01: {verdict}), {time.perf_counter() - t0:.1f} s of training")
    return mse


if __name__ == "__main__":
    main()
