"""The benchmark problems: architectures, initial weights and data, as numpy,
shared by every implementation so that all of them start from the same numbers.

Canonical weight layout (fluxlike's): a list of `(weight, bias)` pairs, one per
layer with parameters, in forward order. Dense weights are (out, in); conv
kernels are (kh, kw, cin, cout); the dense layer after a conv stack reads the
features in NHWC order, (h, w, c) flattened. Implementations with another
layout (PyTorch's OIHW kernels and CHW flatten, NNX's (in, out) kernels)
convert these arrays once, when they are built.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# conv stack of the cnn workload: (kernel, cin, cout) per conv, each conv + relu + 2x2 max pool
CNN_CONVS = ((3, 1, 16), (3, 16, 32))
CNN_SIDE = 28
CNN_CLASSES = 10


@dataclass(frozen=True)
class Workload:
    """One benchmark problem and how long to time it.

    Args:
        name: its label in the tables.
        kind: "mlp" (Dense layers, relu between) or "cnn" (`CNN_CONVS`, then Dense).
        sizes: for "mlp", layer widths, input first; unused for "cnn".
        batch: batch size.
        loss: "mse" or "logitcrossentropy" (one-hot targets).
        steps: steps in one timed sample (cycling over this many distinct batches).
        rounds: interleaved rounds of samples.
        epoch: for an epoch workload, the number of samples in the epoch (0: a step workload).

    Example:
        >>> from peers.workloads import Workload
        >>> Workload("t", "mlp", (2, 4, 1), 8, "mse", 10, 3).nlayers
        2
    """

    name: str
    kind: str
    sizes: tuple[int, ...]
    batch: int
    loss: str
    steps: int
    rounds: int
    epoch: int = 0

    @property
    def nlayers(self) -> int:
        """Layers with parameters."""
        return len(self.sizes) - 1 if self.kind == "mlp" else len(CNN_CONVS) + 1

    @property
    def nbatches(self) -> int:
        """Batches in one epoch (epoch workloads) or distinct batches cycled by a sample."""
        return self.epoch // self.batch if self.epoch else self.steps

    @property
    def n_in(self) -> tuple[int, ...]:
        """The shape of one input sample (NHWC without N for images)."""
        return (CNN_SIDE, CNN_SIDE, 1) if self.kind == "cnn" else (self.sizes[0],)

    @property
    def n_out(self) -> int:
        """Outputs per sample."""
        return CNN_CLASSES if self.kind == "cnn" else self.sizes[-1]

    def scaled(self, steps: int, rounds: int, epoch: int | None = None) -> "Workload":
        """The same problem timed with other repetition counts."""
        return replace(self, steps=steps, rounds=rounds, epoch=self.epoch if epoch is None else epoch)


def deep(nlayers: int, steps: int, rounds: int) -> Workload:
    """`nlayers` x Dense(64 => 64), batch 64, mse: the depth-scaling problem.

    Example:
        >>> from peers.workloads import deep
        >>> deep(8, 10, 3).nlayers
        8
    """
    return Workload(f"deep{nlayers}", "mlp", (64,) * (nlayers + 1), 64, "mse", steps, rounds)


def cnn_dense_in() -> int:
    """Features entering the cnn's Dense layer (valid 3x3 convs, 2x2 pools: 28 -> 26 -> 13 -> 11 -> 5).

    Example:
        >>> from peers.workloads import cnn_dense_in
        >>> cnn_dense_in()
        800
    """
    side = CNN_SIDE
    for k, _, _ in CNN_CONVS:
        side = (side - k + 1) // 2
    return side * side * CNN_CONVS[-1][2]


def init_weights(wl: Workload, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Glorot-uniform weights and small random biases (non-zero, so a bias
    mistake shows in the loss check), float32, in the canonical layout.

    Example:
        >>> from peers.workloads import Workload, init_weights
        >>> [w.shape for w, b in init_weights(Workload("t", "mlp", (2, 4, 1), 8, "mse", 1, 1))]
        [(4, 2), (1, 4)]
    """
    rng = np.random.default_rng(seed)

    def glorot(shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        return rng.uniform(-lim, lim, shape).astype(np.float32)

    out = []
    if wl.kind == "mlp":
        for a, b in zip(wl.sizes[:-1], wl.sizes[1:]):
            out.append((glorot((b, a), a, b), rng.uniform(-0.1, 0.1, b).astype(np.float32)))
        return out
    for k, cin, cout in CNN_CONVS:
        out.append((glorot((k, k, cin, cout), k * k * cin, k * k * cout),
                    rng.uniform(-0.1, 0.1, cout).astype(np.float32)))
    n = cnn_dense_in()
    out.append((glorot((CNN_CLASSES, n), n, CNN_CLASSES), rng.uniform(-0.1, 0.1, CNN_CLASSES).astype(np.float32)))
    return out


def make_batches(wl: Workload, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """`wl.nbatches` random batches stacked on axis 0: x (nb, batch, *n_in), y (nb, batch, n_out).

    Targets are one-hot rows for logitcrossentropy, uniform [0, 1) for mse.

    Example:
        >>> from peers.workloads import Workload, make_batches
        >>> x, y = make_batches(Workload("t", "mlp", (2, 4, 3), 8, "logitcrossentropy", 2, 1))
        >>> x.shape, y.shape, float(y.sum())
        ((2, 8, 2), (2, 8, 3), 16.0)
    """
    rng = np.random.default_rng(seed)
    nb = wl.nbatches
    x = rng.standard_normal((nb, wl.batch, *wl.n_in), dtype=np.float32)
    if wl.loss == "logitcrossentropy":
        y = np.eye(wl.n_out, dtype=np.float32)[rng.integers(0, wl.n_out, (nb, wl.batch))]
    else:
        y = rng.random((nb, wl.batch, wl.n_out), dtype=np.float32)
    return x, y


def nchw_dense_weight(w: np.ndarray) -> np.ndarray:
    """The cnn's dense weight (out, h*w*c) reordered for features flattened as (c, h, w).

    Example:
        >>> import numpy as np
        >>> from peers.workloads import nchw_dense_weight, cnn_dense_in
        >>> nchw_dense_weight(np.zeros((10, cnn_dense_in()), np.float32)).shape
        (10, 800)
    """
    c = CNN_CONVS[-1][2]
    side = int(round((w.shape[1] // c) ** 0.5))
    return np.ascontiguousarray(w.reshape(w.shape[0], side, side, c).transpose(0, 3, 1, 2).reshape(w.shape[0], -1))


def nhwc_dense_weight(w: np.ndarray) -> np.ndarray:
    """The inverse of `nchw_dense_weight`: a (c, h, w)-ordered dense weight back to (h, w, c) order.

    Example:
        >>> import numpy as np
        >>> from peers.workloads import nchw_dense_weight, nhwc_dense_weight
        >>> w = np.arange(8000.0).reshape(10, 800)
        >>> bool((nhwc_dense_weight(nchw_dense_weight(w)) == w).all())
        True
    """
    c = CNN_CONVS[-1][2]
    side = int(round((w.shape[1] // c) ** 0.5))
    return np.ascontiguousarray(w.reshape(w.shape[0], c, side, side).transpose(0, 2, 3, 1).reshape(w.shape[0], -1))
