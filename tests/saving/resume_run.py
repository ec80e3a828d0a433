"""A training run for the exact-resume test, run as its own process.

    python resume_run.py straight OUT CKPT_DIR   # 4 epochs, saving a checkpoint after epoch 2
    python resume_run.py resume OUT CKPT_DIR     # fresh objects (other seeds), load, epochs 3 and 4

Both write OUT (.npz): the losses of epochs 3 and 4 and every array of the
model and optimiser state at the end, for each rule. In play: Dropout and
BatchNorm (key and statistics in the model), a shuffled DataLoader (its
generator), fluxlike's key stream (a layer built after the restore draws
from it), an OptimiserChain, `adjust_` before the save and `freeze_` after,
and an optax rule with a schedule (its position is the optax state's count).
"""

from __future__ import annotations

import os
import sys

import jax
import numpy as np
import optax

import fluxlike as fl

RULES = {
    "chain": lambda: fl.OptimiserChain(fl.ClipNorm(1.0), fl.WeightDecay(1e-3), fl.Adam(3e-3)),
    "optax": lambda: optax.chain(optax.clip_by_global_norm(1.0),
                                 optax.adamw(optax.exponential_decay(3e-3, 10, 0.8))),
}


def build(seed: int, rule_name: str):
    fl.seed(seed)
    model = fl.Chain(fl.Dense(3, 16, fl.relu), fl.BatchNorm(16), fl.Dropout(0.2), fl.Dense(16, 1))
    state = fl.setup(RULES[rule_name](), model)
    rng = np.random.default_rng(seed)
    x = np.random.default_rng(7).normal(size=(96, 3)).astype("float32")  # the data is the data
    y = (x @ np.array([[1.0], [-2.0], [0.5]], "float32") + 0.1).astype("float32")
    loader = fl.DataLoader((x, y), batchsize=16, shuffle=True, rng=rng)
    return model, state, loader


def loss(m, x, y):
    return fl.losses.mse(m(x), y)


def epoch(model, state, loader, e: int, rule_name: str) -> np.ndarray:
    if e == 1 and rule_name == "chain":
        fl.adjust_(state, 1e-3)          # before the save: the checkpoint holds it
    if e == 2:
        fl.freeze_(state.layers[0])      # after the save: both runs do it
    losses = np.asarray(fl.train_(loss, model, loader, state))
    if e == 3:  # a layer built from the key stream: the stream must be where the straight run left it
        extra = fl.Dense(1, 1)
        losses = np.concatenate([losses, np.asarray(extra.weight).ravel()])
    return losses


def arrays(model, state) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree.leaves((model, state))]


def main(mode: str, out: str, folder: str) -> None:
    result = {}
    for rule_name in RULES:
        path = os.path.join(folder, f"{rule_name}.safetensors")
        if mode == "straight":
            model, state, loader = build(0, rule_name)
            for e in range(2):
                epoch(model, state, loader, e, rule_name)
            fl.savecheckpoint(path, model, state, loader=loader, step=2, metadata={"rule": rule_name})
        else:
            model, state, loader = build(12345, rule_name)  # other weights, other shuffle seed, other key stream
            info = fl.loadcheckpoint_(path, model, state, loader=loader)
            assert info["step"] == 2 and info["metadata"] == {"rule": rule_name}, info
        later = [epoch(model, state, loader, e, rule_name) for e in (2, 3)]
        result[f"{rule_name}/losses"] = np.concatenate(later)
        for i, a in enumerate(arrays(model, state)):
            result[f"{rule_name}/array{i}"] = a
    np.savez(out, **result)


if __name__ == "__main__":
    main(*sys.argv[1:4])
