"""Every block of WALKTHROUGH.md runs as written, in order, and means what the
seed page says it means. The blocks are read from ../shared/WALKTHROUGH.md
(the source of truth) or, without it, from docs/WALKTHROUGH.md."""

from __future__ import annotations

import copy
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCES = [ROOT.parent / "shared" / "WALKTHROUGH.md", ROOT / "docs" / "WALKTHROUGH.md"]


def _blocks() -> dict[str, str]:
    src = next(p for p in SOURCES if p.exists()).read_text()
    out = {}
    for code in re.findall(r"```python\n(.*?)```", src, re.S):
        for part in re.split(r"\n(?=# \d+b?\. )", "\n" + code):
            m = re.match(r"\s*# (\d+b?)\. ", part)
            if m:
                out[m.group(1)] = part
    return out


BLOCKS = _blocks()


def test_docs_copy_is_current():
    shared, docs = SOURCES
    if shared.exists():
        assert docs.read_text() == shared.read_text(), "docs/WALKTHROUGH.md is stale: copy ../shared/WALKTHROUGH.md"


@pytest.fixture(scope="module")
def ns():
    fl.seed(0)
    np.random.seed(0)
    env: dict = {}
    exec(BLOCKS["0"], env)
    # smaller data keeps the eager blocks fast; the code is unchanged
    env["X"], env["Y"] = env["X"][:120], env["Y"][:120]
    env["train_set"] = list(zip(env["X"], env["Y"]))
    return env


def run(ns, name):
    exec(BLOCKS[name], ns)
    return ns


def leaves(m):
    return [np.asarray(a) for a in jax.tree.leaves(m)]


def test_block0_setting(ns):
    assert repr(ns["model"]) == "Chain(Dense(784 => 32, relu), Dense(32 => 10))  # 25_450 parameters"
    assert ns["rule"] == fl.Descent(0.01)


def test_blocks_1_2_hand_loop_equals_train_(ns):
    start = copy.deepcopy(leaves(ns["model"]))
    run(ns, "1")
    by_hand = leaves(ns["model"])
    # independent reference: plain SGD on the raw arrays with jax.grad
    W1, b1, W2, b2 = map(jnp.asarray, start)

    def raw_loss(p, x, y):
        W1, b1, W2, b2 = p
        h = jax.nn.relu(W1 @ x + b1)
        return jnp.sum((W2 @ h + b2 - y) ** 2)

    p = (W1, b1, W2, b2)
    for x, y in ns["train_set"]:
        g = jax.grad(raw_loss)(p, x, y)
        p = tuple(a - 0.01 * b for a, b in zip(p, g))
    for got, want in zip(by_hand, p):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)
    # block 2 is the same epoch through train_: continue from by_hand both ways
    fl.loadmodel_(ns["model"], [jnp.asarray(a) for a in by_hand] and ns["model"])
    model2 = copy.deepcopy(ns["model"])
    state2 = fl.setup(ns["rule"], model2)
    for x, y in ns["train_set"]:
        g = fl.gradient(lambda m: ns["loss"](m(x), y), model2)
        fl.update_(state2, model2, g[0])
    run(ns, "2")
    for got, want in zip(leaves(ns["model"]), leaves(model2)):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5)


def test_block3_gradients_mirror_the_model(ns):
    run(ns, "3")
    model, X, Y = ns["model"], ns["X"], ns["Y"]
    W1, b1, W2, b2 = (jnp.asarray(a) for a in leaves(model))
    f = lambda W1: jnp.sum((W2 @ jax.nn.relu(W1 @ X[0] + b1) + b2 - Y[0]) ** 2)
    assert float(ns["theta"]) == float(W1[1, 2])
    np.testing.assert_allclose(ns["d_theta"], jax.grad(f)(W1)[1, 2], rtol=1e-5, atol=1e-6)


def test_block4_losses(ns):
    run(ns, "4")
    model, X, Y = ns["model"], ns["X"], ns["Y"]
    yh = np.asarray(model(X))
    np.testing.assert_allclose(fl.losses.mse(model(X), Y), np.mean((yh - Y) ** 2), rtol=1e-5)
    p = np.exp(yh - yh.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    q = Y / Y.sum(-1, keepdims=True)
    ref = np.mean(-np.sum(q * np.log(p + np.finfo(np.float32).eps), -1))
    got = fl.losses.crossentropy(jax.nn.softmax(model(X)), q)
    np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_block5_fmap_descent(ns):
    before = leaves(ns["model"])
    g = leaves(ns["grads"][0])
    run(ns, "5")
    for got, p, gi in zip(leaves(ns["model"]), before, g):
        np.testing.assert_allclose(got, p - 0.01 * gi, rtol=1e-6)
    assert ns["opt_state"].layers[0].weight.rule == fl.Momentum(0.01, 0.9)


def test_block6_data(ns):
    run(ns, "6")
    assert ns["first"][0].shape == (28, 28) and ns["first"][1].shape == (10,)


def test_block7_adam_epochs_reduce_loss(ns):
    model, loss, X, Y = ns["model"], ns["loss"], ns["X"], ns["Y"]
    before = float(loss(model(X), Y))
    run(ns, "7")
    assert float(loss(model(X), Y)) < before


def test_block8_own_loop(ns):
    run(ns, "8")
    log = ns["my_log"]
    assert 1 <= len(log) <= 2
    assert len(log[0]["losses"]) == len(ns["train_set"])
    assert all(np.isfinite(log[0]["losses"]))
    acc = np.mean(np.argmax(np.asarray(ns["model"](ns["X"])), -1) == np.argmax(ns["Y"], -1))
    assert log[-1]["acc"] == pytest.approx(acc)


def test_block8b_compiled_step_matches_eager_and_compiles_once(ns):
    run(ns, "8b")
    step, loss, model, X, Y = ns["step"], ns["loss"], ns["model"], ns["X"], ns["Y"]
    state = fl.setup(fl.Adam(), model)
    ref_model, ref_state = copy.deepcopy(model), fl.setup(fl.Adam(), copy.deepcopy(model))
    ref_state = fl.setup(fl.Adam(), ref_model)
    for i in range(3):
        x, y = X[i * 8:(i + 1) * 8], Y[i * 8:(i + 1) * 8]
        model, state, val = step(model, state, x, y)
        v2, g = fl.withgradient(lambda m: loss(m(x), y), ref_model)
        fl.update_(ref_state, ref_model, g[0])
        np.testing.assert_allclose(val, v2, rtol=1e-5)
    for got, want in zip(leaves(model), leaves(ref_model)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert step._cache_size() == 1


def test_block9_regularisation(ns):
    run(ns, "9")
    model, loss, X, Y = ns["model"], ns["loss"], ns["X"], ns["Y"]
    plain = fl.gradient(lambda m: loss(m(X[0]), Y[0]), model)[0]
    for g, g0, p in zip(leaves(ns["grads"][0]), leaves(plain), leaves(model)):
        np.testing.assert_allclose(g, g0 + 0.42 * p, rtol=1e-4, atol=1e-5)
    assert ns["decay_opt_state"].layers[0].bias.rule == fl.OptimiserChain(fl.WeightDecay(0.42), fl.Adam(0.1))


def test_block10_dropout_modes(ns):
    run(ns, "10")
    net = ns["net"]
    x = jnp.ones((4, 784))
    np.testing.assert_array_equal(net(x), net(x))  # automatic: test mode outside gradient
    fl.trainmode_(net)
    assert not np.array_equal(net(x), net(x))  # forced train mode: fresh masks each call
    fl.testmode_(net, None)
    assert net.layers[1].active is None


def test_block11_schedule_adjust_freeze(ns):
    run(ns, "11")
    rule = ns["opt_state"].layers.dec.layers[0].weight.rule
    assert rule == fl.Adam(0.02)
    assert ns["opt_state"].layers.enc.layers[0].weight.rule.eta == pytest.approx(0.03)
    assert not ns["opt_state"].layers.enc.layers[0].weight.frozen  # thawed at the end


def test_block11_frozen_part_is_unchanged():
    env: dict = {}
    fl.seed(1)
    exec(BLOCKS["0"], env)
    env["train_set"] = env["train_set"][:20]
    src = BLOCKS["11"].split("\nbimodel")[1]
    before = None
    src = "bimodel" + src
    body, last = src.rsplit("fl.thaw_(opt_state)", 1)
    exec(body.split("fl.train_(")[0], env)
    before = leaves(env["bimodel"])
    exec("fl.train_(" + body.split("fl.train_(")[1], env)
    after = leaves(env["bimodel"])
    for b, a in zip(before[:2], after[:2]):
        np.testing.assert_array_equal(a, b)  # enc frozen: bit-identical
    assert all(not np.array_equal(b, a) for b, a in zip(before[2:], after[2:]))
