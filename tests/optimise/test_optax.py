"""optax both ways: fluxlike rules as optax transformations, and optax
transformations given to `fl.setup` (global rules stay global; frozen
Leafs, None gradients, ties and inject_hyperparams all work)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fluxlike as fl
from fluxlike.optimise.adjust import learning_rate
from fluxlike import AccumGrad, ClipGlobalNorm

RNG = np.random.default_rng(0)
P0 = {"a": RNG.normal(size=(5, 3)).astype("float32"), "b": RNG.normal(size=(5, 3)).astype("float32")}
GS = [{k: (RNG.normal(size=v.shape) * 3).astype("float32") for k, v in P0.items()} for _ in range(6)]


def bits(tree) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in jax.tree.leaves(tree)]


def optax_loop(tx, grads=GS, params=P0):
    """A plain optax loop over a dict of arrays."""
    p = jax.tree.map(jnp.asarray, params)
    s = tx.init(p)
    for g in grads:
        u, s = tx.update(g, s, p)
        p = optax.apply_updates(p, u)
    return p, s


def fl_loop(rule, grads=GS, params=P0):
    m = jax.tree.map(jnp.asarray, params)
    st = fl.setup(rule, m)
    for g in grads:
        st, m = fl.update(st, m, g)
    return m, st


def close(a, b, tol=1e-5):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=tol, atol=tol)


# ---------------------------------------------------------------------------
# fluxlike rules inside optax


@pytest.mark.parametrize("rule", [
    fl.Adam(0.05),
    fl.OptimiserChain(AccumGrad(2), fl.Momentum(0.05)),
    fl.OptimiserChain(ClipGlobalNorm(2.0), fl.Descent(0.1)),
], ids=repr)
def test_rule_in_a_plain_optax_loop_matches_fl_update(rule):
    close(optax_loop(rule)[0], fl_loop(rule)[0])


def test_rule_composes_with_optax_chain():
    ours = fl_loop(fl.OptimiserChain(fl.ClipGrad(1.0), fl.Adam(0.05)))[0]
    close(optax_loop(optax.chain(optax.clip(1.0), fl.Adam(0.05)))[0], ours)
    close(optax_loop(optax.chain(fl.ClipGrad(1.0), optax.adam(0.05)))[0], ours)
    # a fluxlike global rule is global in optax too
    close(optax_loop(optax.chain(ClipGlobalNorm(2.0), optax.sgd(0.1)))[0],
          optax_loop(optax.chain(optax.clip_by_global_norm(2.0), optax.sgd(0.1)))[0])


def test_rule_reading_the_parameters_needs_them():
    tx = fl.OptimiserChain(fl.WeightDecay(0.1), fl.Descent(0.1))
    s = tx.init(P0)
    with pytest.raises(ValueError, match=r"WeightDecay reads the parameters: call update\(grads, state, params\)"):
        tx.update(GS[0], s)
    u, _ = fl.Descent(0.1).update(GS[0], fl.Descent(0.1).init(P0))  # no params needed
    close(u["a"], -0.1 * GS[0]["a"])


# ---------------------------------------------------------------------------
# optax transformations given to fl.setup


def test_setup_accepts_optax_with_global_rules_kept_global():
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(0.05))
    want, _ = optax_loop(tx)
    got, st = fl_loop(tx)
    close(got, want)
    assert st["a"].count == 6
    assert repr(st["a"]).startswith("Leaf(optax.GradientTransformation(...), state=(5×3 float32, 5×3 float32)")
    # per-array clipping would have given something else
    other, _ = fl_loop(fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam(0.05)))
    assert np.abs(np.asarray(other["a"]) - np.asarray(got["a"])).max() > 1e-3


def test_optax_state_frozen_leaf_and_none_gradient():
    tx = optax.adam(0.05)
    m = jax.tree.map(jnp.asarray, P0)
    st = fl.setup(tx, m)
    st, m = fl.update(st, m, GS[0])
    fl.freeze_(st["b"])
    before = bits((m["b"], st["b"].state))
    st, m = fl.update(st, m, GS[1])
    st, m = fl.update(st, m, {"a": GS[2]["a"], "b": None})
    assert bits((m["b"], st["b"].state)) == before
    assert (st["a"].count, st["b"].count) == (3, 1)
    # "a" moved as in a plain optax loop over "a" alone
    want, _ = optax_loop(tx, [{"a": g["a"]} for g in GS[:3]], {"a": P0["a"]})
    close(m["a"], want["a"])


def test_optax_state_ties_share_one_entry():
    w = jnp.ones(3)
    m = {"x": w, "y": w}
    st = fl.setup(optax.sgd(0.1), m)
    assert len(st.leaves()) == 1
    fl.update_(st, m, {"x": jnp.ones(3), "y": 2 * jnp.ones(3)})
    assert m["x"] is m["y"]
    np.testing.assert_allclose(m["x"], 0.7)


def test_adjust_reaches_inject_hyperparams():
    tx = optax.inject_hyperparams(optax.adam)(learning_rate=0.05)
    m = jax.tree.map(jnp.asarray, P0)
    st = fl.setup(tx, m)

    @jax.jit
    def step(st, m, g):
        return fl.update(st, m, g)

    p, s = jax.tree.map(jnp.asarray, P0), tx.init(jax.tree.map(jnp.asarray, P0))
    for i, g in enumerate(GS):
        if i == 3:
            fl.adjust_(st, 0.01)
            fl.adjust_(st, b1=0.5)
            s.hyperparams["learning_rate"] = jnp.asarray(0.01)
            s.hyperparams["b1"] = jnp.asarray(0.5)
        st, m = step(st, m, g)
        u, s = tx.update(g, s, p)
        p = optax.apply_updates(p, u)
    close(m, p)
    assert step._cache_size() == 1
    assert learning_rate(st) == 0.01
    assert "b1=0.5" in repr(st["a"].rule) and "learning_rate=0.01" in repr(st["a"].rule)


@pytest.mark.parametrize("tx,call,err,msg", [
    (optax.adam(0.1), lambda s: fl.adjust_(s, 0.01), TypeError, "constants inside its functions"),
    (optax.inject_hyperparams(optax.adam)(learning_rate=0.1), lambda s: fl.adjust_(s["a"], 0.01), ValueError,
     "shared by the whole model"),
    (optax.inject_hyperparams(optax.adam)(learning_rate=0.1), lambda s: fl.adjust_(s, rho=0.1), ValueError,
     "no injected hyperparameter 'rho'"),
    (optax.inject_hyperparams(optax.sgd)(learning_rate=optax.linear_schedule(0.1, 0.0, 10)),
     lambda s: fl.adjust_(s, 0.01), ValueError, "learning_rate is scheduled inside optax.inject_hyperparams"),
    (optax.adam(0.1), lambda s: learning_rate(s), TypeError, "no injected learning_rate"),
])
def test_adjust_says_why_it_cannot(tx, call, err, msg):
    st = fl.setup(tx, jax.tree.map(jnp.asarray, P0))
    before = bits(st)
    with pytest.raises(err) as info:
        call(st)
    assert msg in str(info.value)
    assert bits(st) == before
