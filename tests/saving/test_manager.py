"""CheckpointManager: steps, keep-last-N plus the best, and a damaged newest
file skipped with a warning."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

import fluxlike as fl


def build(seed=0):
    fl.seed(seed)
    model = fl.Chain(fl.Dense(2, 3), fl.Dense(3, 1))
    return model, fl.setup(fl.Adam(), model)


def weights(model):
    return [np.array(a) for a in jax.tree.leaves(model)]


def test_keeps_the_last_n_and_restores_the_newest(tmp_path):
    model, state = build()
    ckpt = fl.CheckpointManager(tmp_path / "run", keep=2)
    assert ckpt.steps() == [] and ckpt.latest() is None and ckpt.restore_(model, state) is None
    saved = {}
    for step in (10, 20, 30):
        model.layers[0].weight = model.layers[0].weight + 1
        saved[step] = weights(model)
        assert ckpt.save(step, model, state) == ckpt.path(step)
    assert ckpt.steps() == [20, 30] and ckpt.latest() == 30
    assert sorted(os.listdir(tmp_path / "run")) == ["step-000000020.safetensors", "step-000000030.safetensors"]
    m2, s2 = build(seed=1)
    assert ckpt.restore_(m2, s2)["step"] == 30
    assert all(np.array_equal(a, b) for a, b in zip(weights(m2), saved[30]))
    assert ckpt.restore_(m2, s2, step=20)["step"] == 20
    assert all(np.array_equal(a, b) for a, b in zip(weights(m2), saved[20]))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint of step 10 in .*run; there are \[20, 30\]"):
        ckpt.restore_(m2, s2, step=10)


def test_a_damaged_newest_file_is_skipped_with_a_warning(tmp_path):
    model, state = build()
    ckpt = fl.CheckpointManager(tmp_path, keep=3)
    ckpt.save(1, model, state)
    good = weights(model)
    model.layers[1].bias = model.layers[1].bias + 5
    ckpt.save(2, model, state)
    with open(ckpt.path(2), "r+b") as f:  # a disk error in the newest file's data
        f.seek(-2, os.SEEK_END)
        f.write(b"\xff\xff")
    m2, s2 = build(seed=1)
    with pytest.warns(UserWarning, match=r"skipping the damaged checkpoint of step 2: .*is damaged: its data's CRC-32"):
        info = fl.CheckpointManager(tmp_path).restore_(m2, s2)
    assert info["step"] == 1 and all(np.array_equal(a, b) for a, b in zip(weights(m2), good))
    open(ckpt.path(1), "wb").close()  # now the older one is empty too
    with pytest.warns(UserWarning), pytest.raises(ValueError, match=r"every checkpoint in .* is damaged \(steps \[1, 2\]\)"):
        ckpt.restore_(m2, s2)


def test_another_models_checkpoint_is_an_error_not_a_skip(tmp_path):
    model, state = build()
    ckpt = fl.CheckpointManager(tmp_path)
    ckpt.save(1, model, state)
    other = fl.Chain(fl.Dense(2, 4), fl.Dense(4, 1))
    with pytest.raises(ValueError, match=r"layers\.0\.weight: shape \(4, 2\) in the model, \(3, 2\)"):
        ckpt.restore_(other, fl.setup(fl.Adam(), other))


def test_keeps_the_best_by_a_metric_besides_the_last(tmp_path):
    model, state = build()
    ckpt = fl.CheckpointManager(tmp_path, keep=1, best="val_loss", mode="min")
    for step, val in ((1, 0.9), (2, 0.3), (3, 0.5), (4, 0.7)):
        ckpt.save(step, model, state, metadata={"val_loss": str(val)})
    assert ckpt.steps() == [2, 4]
    with pytest.raises(ValueError, match=r"metadata must hold 'val_loss' as a number in a str"):
        ckpt.save(5, model, state)
    high = fl.CheckpointManager(tmp_path / "acc", keep=1, best="acc", mode="max")
    for step, val in ((1, 0.5), (2, 0.9), (3, 0.1)):
        high.save(step, model, state, metadata={"acc": str(val)})
    assert high.steps() == [2, 3]


def test_bad_arguments_and_leftover_temporary_files(tmp_path):
    with pytest.raises(ValueError, match=r"keep must be an int >= 1, got 0"):
        fl.CheckpointManager(tmp_path, keep=0)
    with pytest.raises(ValueError, match=r"mode must be 'min' or 'max'"):
        fl.CheckpointManager(tmp_path, best="x", mode="lowest")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"exists and is not a folder"):
        fl.CheckpointManager(tmp_path / "file")
    model, state = build()
    ckpt = fl.CheckpointManager(tmp_path / "run")
    with pytest.raises(ValueError, match=r"step must be an int >= 0, got -1"):
        ckpt.save(-1, model, state)
    stale = tmp_path / "run" / ".step-000000005.safetensors.999999999.0badf00d.tmp"  # a save killed midway
    stale.write_bytes(b"partial")
    assert ckpt.temp_files() == [str(stale)]
    ckpt.save(6, model, state)
    assert ckpt.temp_files() == [] and ckpt.steps() == [6]
