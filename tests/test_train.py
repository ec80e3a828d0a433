"""train_, train, trainstep_: Flux's train! semantics, compiled and cached."""

from __future__ import annotations

import copy
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl
from fluxlike import _step as train_mod

rng = np.random.default_rng(0)
X = rng.normal(size=(40, 3)).astype("float32")
Y = (X @ np.array([[1.0], [-2.0], [0.5]], "float32")).astype("float32")
BATCHES = [(X[i:i + 8], Y[i:i + 8]) for i in range(0, 40, 8)]


def mse(m, x, y):
    return jnp.mean((m(x) - y) ** 2)


def arrays(m):
    return [np.asarray(a) for a in jax.tree.leaves(m)]


def hand_loop(model, rule, batches):
    """The reference: Flux's documented loop, eager gradient + update_."""
    state = fl.setup(rule, model)
    losses = []
    for x, y in batches:
        val, g = fl.withgradient(lambda m: mse(m, x, y), model, compile=False)
        losses.append(float(val))
        fl.update_(state, model, g[0])
    return losses


@pytest.mark.parametrize("fuse", [True, False])
def test_train_equals_the_hand_written_loop(fuse):
    model = fl.Chain(fl.Dense(3, 8, fl.relu, key=0), fl.Dense(8, 1, key=1))
    ref = copy.deepcopy(model)
    state = fl.setup(fl.Adam(0.01), model)
    losses = fl.train_(mse, model, BATCHES, state, fuse=fuse)
    want = hand_loop(ref, fl.Adam(0.01), BATCHES)
    np.testing.assert_allclose(losses, want, rtol=1e-5)
    for a, b in zip(arrays(model), arrays(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert state.layers[0].weight.count == len(BATCHES)


def test_a_list_of_device_arrays_is_stacked_once_and_changes_are_seen():
    data = [(jnp.asarray(x), jnp.asarray(y)) for x, y in BATCHES]
    model, ref = fl.Dense(3, 1), fl.Dense(3, 1)
    ref = copy.deepcopy(model)
    state = fl.setup(fl.Adam(0.05), model)
    ref_state = fl.setup(fl.Adam(0.05), ref)
    for epoch in range(3):
        if epoch == 2:  # the same list object, one item replaced: the epoch must see it
            data[3] = (data[3][0] * 2, data[3][1])
        losses = fl.train_(mse, model, data, state)  # fused: stacked (epoch 0), then reused
        want = fl.train_(mse, ref, data, ref_state, fuse=False)
        np.testing.assert_allclose(losses, want, rtol=1e-5)
        for a, b in zip(arrays(model), arrays(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    data.append(data[0])  # a longer list: stacked again
    np.testing.assert_allclose(fl.train_(mse, model, data, state), fl.train_(mse, ref, data, ref_state, fuse=False),
                               rtol=1e-5)


def test_a_list_and_a_dataloader_of_the_same_batches_share_one_program(count_compiles):
    # jit compiles committed and uncommitted arguments separately: a stacked list must come out
    # as a DataLoader's batches do, or alternating them (and the model they leave) recompiles
    xs, ys = jnp.asarray(X), jnp.asarray(Y)
    loader = fl.DataLoader((xs, ys), batchsize=8)
    items = [(xs[i:i + 8], ys[i:i + 8]) for i in range(0, 40, 8)]
    model = fl.Chain(fl.Dense(3, 4, fl.relu), fl.Dense(4, 1))
    state = fl.setup(fl.Adam(0.01), model)
    fl.train_(mse, model, loader, state)
    with count_compiles() as seen:
        for data in (items, items, loader, items, loader):
            fl.train_(mse, model, data, state)
    assert len(seen) == 0
    assert not any(a.committed for a in jax.tree.leaves((model, state)) if isinstance(a, jax.Array))


def test_items_tuple_splatted_others_passed_whole():
    class Batch(NamedTuple):
        x: np.ndarray
        y: np.ndarray

    seen = []

    def loss_nt(m, b):
        seen.append(type(b).__name__)
        return mse(m, b.x, b.y)

    def loss_dict(m, d):
        return mse(m, d["x"], d["y"])

    for data, loss in [([Batch(*b) for b in BATCHES], loss_nt), ([dict(x=x, y=y) for x, y in BATCHES], loss_dict)]:
        model = fl.Dense(3, 1, key=0)
        ref = copy.deepcopy(model)
        fl.train_(loss, model, data, fl.setup(fl.Descent(0.1), model))
        hand_loop(ref, fl.Descent(0.1), BATCHES)
        for a, b in zip(arrays(model), arrays(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert seen[0] == "Batch"
    # a bare array item is passed whole, too
    model = fl.Dense(3, 1, key=0)
    fl.train_(lambda m, x: jnp.mean(m(x) ** 2), model, [X[:8], X[8:16]], fl.setup(fl.Descent(0.1), model))


SCRIPT = """
import fluxlike as fl
for epoch in range(4):  # a script's loop: `losses` is a global, and an attribute the loss reads
    with count() if epoch > 0 else nothing():
        losses = fl.train_(lambda m, x, y: fl.losses.mse(m(x), y), model, data, state)
"""


def test_rebinding_a_global_named_like_an_attribute_the_loss_reads_does_not_recompile(script_compiles):
    import contextlib

    model = fl.Dense(3, 1)
    seen = script_compiles(SCRIPT, model=model, data=fl.DataLoader((X, Y), batchsize=8),
                           state=fl.setup(fl.Adam(0.01), model), nothing=contextlib.nullcontext)
    assert seen == []


def test_fresh_lambda_each_epoch_compiles_once():
    model = fl.Dense(3, 1, key=0)
    state = fl.setup(fl.Adam(), model)
    fresh = []
    for epoch in range(4):
        fresh.append(lambda m, x, y: mse(m, x, y))
        fl.train_(fresh[-1], model, BATCHES, state)
        fl.adjust_(state, 0.001 * (epoch + 1))
        if epoch == 2:
            fl.freeze_(state)
    assert fresh[0] is not fresh[1]
    assert train_mod.steps_for(fresh[0], "train_") is train_mod.steps_for(fresh[-1], "train_")
    steps = train_mod.steps_for(fresh[-1], "train_")
    assert steps.cache_size("loop") == 1 and steps.cache_size("epoch") == 0
    for epoch in range(3):  # the per-step path, too
        fresh.append(lambda m, x, y: mse(m, x, y))
        fl.train_(fresh[-1], model, iter(BATCHES), state)
    assert train_mod.steps_for(fresh[-1], "train_").cache_size("epoch") == 1


def test_different_closures_do_not_share_a_step():
    model = fl.Dense(3, 1, key=0)
    state = fl.setup(fl.Descent(0.0), model)
    outs = []
    for scale in (1.0, 3.0):
        outs.append(fl.train_(lambda m, x, y: scale * mse(m, x, y), model, BATCHES[:1], state)[0])
    assert outs[1] == pytest.approx(3 * outs[0], rel=1e-6)


@pytest.mark.parametrize("fuse", [True, False])
def test_non_finite_loss_stops_with_the_item_and_keeps_the_model_before_it(fuse):
    model = fl.Dense(3, 1, key=0)
    ref = copy.deepcopy(model)
    data = list(BATCHES)
    data[3] = (np.full_like(data[3][0], np.nan), data[3][1])
    state = fl.setup(fl.Adam(0.01), model)
    with pytest.raises(FloatingPointError, match=r"data item 3 \(0-based\)") as info:
        fl.train_(mse, model, data, state, fuse=fuse)
    hand_loop(ref, fl.Adam(0.01), BATCHES[:3])
    for a, b in zip(arrays(model), arrays(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert state.weight.count == 3
    assert len(info.value.losses) == 4 and np.isnan(info.value.losses[3])


def test_train_is_pure():
    model = fl.Dense(3, 1, key=0)
    before = arrays(model)
    state = fl.setup(fl.Adam(0.01), model)
    new, new_state, losses = fl.train(mse, model, BATCHES, state)
    for a, b in zip(arrays(model), before):
        np.testing.assert_array_equal(a, b)
    assert state.weight.count == 0 and new_state.weight.count == len(BATCHES)
    assert not np.array_equal(arrays(new)[0], before[0])


def test_arrays_held_by_the_caller_survive_donation():
    model = fl.Dense(3, 1, key=0)
    w = model.weight
    fl.train_(mse, model, BATCHES, fl.setup(fl.Adam(0.01), model))
    assert np.isfinite(np.asarray(w)).all()  # still readable
    assert not np.array_equal(np.asarray(w), np.asarray(model.weight))


def test_tied_weights_train_without_double_donation():
    shared = fl.Dense(3, 3, key=0)
    model = fl.Chain(shared, fl.Dense(3, 3, key=1), shared)
    assert model[0] is model[2]
    state = fl.setup(fl.Descent(0.1), model)
    ys = np.zeros((8, 3), "float32")
    fl.train_(mse, model, [(x, ys) for x, _ in BATCHES], state)
    np.testing.assert_array_equal(model[0].weight, model[2].weight)
    assert len(state.leaves()) == 4


def test_trainstep_matches_one_hand_step_and_skips_non_finite():
    model = fl.Dense(3, 1, key=0)
    ref = copy.deepcopy(model)
    state = fl.setup(fl.Adam(0.01), model)
    loss = fl.trainstep_(mse, model, BATCHES[0], state)
    want = hand_loop(ref, fl.Adam(0.01), BATCHES[:1])
    assert float(loss) == pytest.approx(want[0], rel=1e-6)
    for a, b in zip(arrays(model), arrays(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    before = arrays(model)
    bad = fl.trainstep_(mse, model, (np.full((2, 3), np.inf, "float32"), np.zeros((2, 1), "float32")), state)
    assert not np.isfinite(float(bad))
    for a, b in zip(arrays(model), before):
        np.testing.assert_array_equal(a, b)


def test_train_state_flows_from_layers():
    net = fl.Chain(fl.Dense(3, 4, key=0), fl.Dropout(0.5, key=1), fl.Dense(4, 1, key=2))
    k0 = np.asarray(net[1].key)
    fl.train_(mse, net, BATCHES, fl.setup(fl.Descent(0.01), net))
    k = jnp.asarray(k0)
    for _ in BATCHES:
        k = jax.random.split(k)[0]
    np.testing.assert_array_equal(net[1].key, k)


def test_errors():
    model = fl.Dense(3, 1)
    state = fl.setup(fl.Descent(), model)
    with pytest.raises(TypeError, match="whole state tree"):
        fl.train_(mse, model, BATCHES, state.weight)
    with pytest.raises(RuntimeError, match="inside jax.jit"):
        jax.jit(lambda m: fl.train_(mse, m, BATCHES, state))(model)
    assert fl.train_(mse, model, [], state).shape == (0,)


@pytest.mark.parametrize("fuse", [True, False])
def test_bad_data_and_wrong_arity_name_the_argument_and_the_item(fuse):
    model = fl.Dense(3, 1, key=0)
    state = fl.setup(fl.Descent(0.1), model)
    before = arrays(model)
    with pytest.raises(TypeError, match=r"train_: data must be an iterable of items.*got int 5"):
        fl.train_(mse, model, 5, state)
    # (x, y) tuples splatted into a loss that takes one batch argument
    with pytest.raises(TypeError, match=r"data item 0 is a tuple of 2, splatted as loss\(model, d\[0\], d\[1\]\)"):
        fl.train_(lambda m, batch: mse(m, *batch), model, BATCHES, state, fuse=fuse)
    # a dict passed whole to a loss that wants (x, y)
    with pytest.raises(TypeError, match=r"data item 0 is a dict, passed whole as loss\(model, d\)"):
        fl.train_(mse, model, [dict(x=x, y=y) for x, y in BATCHES], state, fuse=fuse)
    # only the last item is malformed: the error names it, and nothing was trained
    ragged = BATCHES[:2] + [(BATCHES[2][0],)]
    with pytest.raises(TypeError, match=r"data item 2 is a tuple of 1"):
        fl.train_(mse, model, iter(ragged), state)
    with pytest.raises(TypeError, match=r"trainstep_: data item 0 is a tuple of 3"):
        fl.trainstep_(mse, model, (*BATCHES[0], 1.0), state)
    for a, b in zip(arrays(model)[:1], before[:1]):
        np.testing.assert_array_equal(a, b)


def test_loss_returning_a_tuple_or_dict_trains_on_its_loss_entry():
    """Flux's rule: the first element of a tuple, the "loss" entry of a dict."""
    ref = fl.Dense(3, 1, key=0)
    hand_loop(ref, fl.Descent(0.1), BATCHES)
    for wrap in (lambda l: (l, {"aux": 1.0}), lambda l: {"acc": 0.0, "loss": l}):
        model = fl.Dense(3, 1, key=0)
        losses = fl.train_(lambda m, x, y: wrap(mse(m, x, y)), model, BATCHES, fl.setup(fl.Descent(0.1), model))
        assert losses.shape == (len(BATCHES),)
        for a, b in zip(arrays(model), arrays(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dataloader_epochs_fused_with_a_remainder_and_progress_bar(capsys):
    model = fl.Dense(3, 1, key=0)
    ref = copy.deepcopy(model)
    loader = fl.DataLoader((X[:37], Y[:37]), batchsize=8)  # 4 full batches and one of 5
    state = fl.setup(fl.Descent(0.05), model)
    losses = fl.train_(mse, model, loader, state, progress=True)
    want = hand_loop(ref, fl.Descent(0.05), [(X[:37][i:i + 8], Y[:37][i:i + 8]) for i in range(0, 37, 8)])
    np.testing.assert_allclose(losses, want, rtol=1e-5)
    for a, b in zip(arrays(model), arrays(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert "train_" in capsys.readouterr().err  # tqdm writes to stderr


class _RecordingBar:
    """Stands in for tqdm's bar: records each update with how many steps had
    really run on the device when it was shown."""

    made: list = []

    def __init__(self, total=None, **kw):
        self.total, self.shown = total, []
        _RecordingBar.made.append(self)

    def update(self, n):
        self.shown.append((n, _RecordingBar.ran[0]))

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass


def test_the_progress_bar_shows_steps_once_they_have_run_in_chunks_of_about_a_quarter_second(monkeypatch):
    # each step sleeps 2 ms on the device (a host callback), so an epoch of 400 steps
    # takes at least 0.8 s on any machine: several chunks, in every epoch
    import tqdm.auto as tqdm_auto

    monkeypatch.setattr(tqdm_auto, "tqdm", _RecordingBar)
    _RecordingBar.made, _RecordingBar.ran = [], [0]

    def ran():
        time.sleep(0.002)
        _RecordingBar.ran[0] += 1

    def slow_mse(m, x, y):
        jax.debug.callback(ran)
        return mse(m, x, y)

    model = fl.Dense(3, 1, key=0)
    loader = fl.DataLoader((np.tile(X, (10, 1)), np.tile(Y, (10, 1))), batchsize=1)  # 400 batches
    state = fl.setup(fl.Descent(0.01), model)
    for epoch in range(2):
        before = _RecordingBar.ran[0]
        fl.train_(slow_mse, model, loader, state, progress=True)
        bar = _RecordingBar.made[-1]
        assert bar.total == 400 and sum(n for n, _ in bar.shown) == 400
        shown = 0
        for n, done in bar.shown:  # a bar never runs ahead of the device
            shown += n
            assert shown <= done - before, (epoch, bar.shown)
        assert len(bar.shown) >= 4, (epoch, bar.shown)  # not one chunk for the whole epoch


def test_the_progress_bar_waits_for_each_chunk_before_showing_it(monkeypatch):
    # dispatch returns before the device is done: a bar fed the loss arrays as
    # they are dispatched shows the whole epoch at once, then waits
    shown = []
    monkeypatch.setattr(fl._epoch._Bar, "update", lambda self, n, loss=None: shown.append(
        (n, loss.is_ready() if isinstance(loss, jax.Array) else loss)))
    model = fl.Chain(fl.Dense(256, 256, fl.relu), fl.Dense(256, 256, fl.relu), fl.Dense(256, 1))
    x = np.random.default_rng(0).normal(size=(200 * 32, 256)).astype("float32")
    loader = fl.DataLoader((x, x[:, :1]), batchsize=32)
    state = fl.setup(fl.Adam(1e-3), model)
    for epoch in range(2):
        shown.clear()
        losses = fl.train_(lambda m, x, y: fl.losses.mse(m(x), y), model, loader, state, progress=True)
        assert sum(n for n, _ in shown) == 200
        assert all(isinstance(v, float) for _, v in shown), shown  # read from the device: the chunk had run
        ends = np.cumsum([n for n, _ in shown])
        for (n, v), end in zip(shown, ends):  # each shows its own chunk's mean loss
            np.testing.assert_allclose(v, np.mean(losses[end - n:end]), rtol=1e-5)


def test_generator_data_runs_per_step():
    model = fl.Dense(3, 1, key=0)
    ref = copy.deepcopy(model)
    losses = fl.train_(mse, model, (b for b in BATCHES), fl.setup(fl.Descent(0.05), model))
    want = hand_loop(ref, fl.Descent(0.05), BATCHES)
    np.testing.assert_allclose(losses, want, rtol=1e-5)


def test_long_generator_spans_loss_buffers_and_reports_the_right_item():
    """Data without a length fills loss buffers of 1024 items one after another."""
    xs = np.ones((1, 3), "float32")
    items = [(xs * (k % 7), np.zeros((1, 1), "float32")) for k in range(1100)]
    items[1050] = (np.full((1, 3), np.nan, "float32"), np.zeros((1, 1), "float32"))
    model = fl.Dense(3, 1, key=0)
    with pytest.raises(FloatingPointError, match=r"data item 1050 \(0-based\)") as info:
        fl.train_(mse, model, (d for d in items), fl.setup(fl.Descent(0.0), model))
    losses = info.value.losses
    assert len(losses) == 1051 and np.isnan(losses[-1])
    w, b = np.asarray(model.weight), np.asarray(model.bias)
    want = [float(np.mean((x @ w.T + b - y) ** 2)) for x, y in items[:1050]]
    np.testing.assert_allclose(losses[:-1], want, rtol=1e-5)
