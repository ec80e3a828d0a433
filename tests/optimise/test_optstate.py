"""The state tree: it mirrors the model, skips None gradients, keeps frozen
Leafs bit-identical, ties shared arrays, stays within the leaf budget, and
never recompiles a jitted step when hyperparameters or freeze flags change."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl
from fluxlike import AdamW

def bits(tree) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in jax.tree.leaves(tree)]


def net():
    return fl.Chain(enc=fl.Dense(3, 2), dec=fl.Chain(fl.Dense(2, 3, fl.relu), fl.Dropout(0.5)))


def loss(y_hat, y):
    return jnp.sum((y_hat - y) ** 2)


X, Y = np.random.default_rng(0).normal(size=(4, 3)).astype("float32"), np.zeros((4, 3), "float32")
RULE = fl.OptimiserChain(fl.ClipNorm(1.0), AdamW(0.01, lambd=0.1))


@jax.jit
def step(model, opt_state, x, y):  # WALKTHROUGH 8b
    val, grads = fl.withgradient(lambda m: loss(m(x), y), model)
    opt_state, model = fl.update(opt_state, model, grads[0])
    return model, opt_state, val


def test_state_mirrors_the_model():
    model = net()
    state = fl.setup(fl.Adam(), model)
    assert isinstance(state.layers.enc.weight, fl.Leaf)
    assert state.layers.enc.weight.path == ".layers.enc.weight"
    assert state[0].bias.path == ".layers.enc.bias"  # model[0] indexes the Chain
    assert state["dec"][0].weight.path == ".layers.dec.layers[0].weight"
    assert state.layers.dec[1].key is None  # Dropout's key is state, not trainable
    assert [leaf.path for leaf in state.layers.dec.leaves()] == [".layers.dec.layers[0].weight", ".layers.dec.layers[0].bias"]
    with pytest.raises(AttributeError, match=r"state.layers has no 'mid'; .* entries here are \['enc', 'dec'\]"):
        state.layers.mid


def test_leaf_budget_two_arrays_per_parameter_plus_two():
    model = net()
    assert len(jax.tree.leaves(fl.setup(fl.Adam(), model))) == 2 * 4 + 2
    assert len(jax.tree.leaves(fl.setup(fl.Descent(), model))) == 2


def test_structure_is_unchanged_by_update_adjust_freeze():
    model = net()
    state = fl.setup(RULE, model)
    treedef = jax.tree.structure(state)
    _, state2, _ = step(model, state, X, Y)
    for s in (state2, fl.adjust(state, 0.1), fl.freeze(state.layers.enc), fl.thaw(state)):
        assert jax.tree.structure(s) == treedef


def test_none_gradient_skips_the_leaf():
    model = {"a": jnp.ones(2), "b": jnp.ones(3)}
    state = fl.setup(fl.Adam(0.1), model)
    state, model = fl.update(state, model, {"a": jnp.ones(2), "b": jnp.ones(3)})
    before = bits((state["b"].state, model["b"]))
    state, model = fl.update(state, model, {"a": jnp.ones(2), "b": None})
    assert bits((state["b"].state, model["b"])) == before
    assert (state["a"].count, state["b"].count) == (2, 1)
    assert fl.update(state, model, None)[1] is model


def test_frozen_leaf_keeps_parameter_and_state_bit_identical():
    model = {"a": jnp.ones(2), "b": jnp.ones(3)}
    state = fl.setup(fl.Adam(0.1), model)
    fl.update_(state, model, {"a": jnp.ones(2), "b": jnp.ones(3)})
    fl.freeze_(state["b"])
    before = bits((state["b"].state, model["b"]))
    for g in (jnp.ones(3), jnp.full(3, jnp.nan), -jnp.ones(3)):
        fl.update_(state, model, {"a": jnp.ones(2), "b": g})
    assert bits((state["b"].state, model["b"])) == before
    assert (state["a"].count, state["b"].count, state["b"].frozen) == (4, 1, True)
    fl.thaw_(state)
    fl.update_(state, model, {"a": jnp.ones(2), "b": jnp.ones(3)})
    assert state["b"].count == 2 and bits(model["b"]) != before[-1:]


def test_tied_weights_share_one_leaf_and_sum_their_gradients():
    w = jnp.array([1.0, 2.0])
    model = {"a": w, "b": w, "c": jnp.zeros(1)}
    state = fl.setup(fl.Descent(0.1), model)
    assert len(state.leaves()) == 2 and state["b"].path == "['a']"
    new_state, new = fl.update(state, model, {"a": jnp.array([1.0, 1.0]), "b": jnp.array([2.0, 0.0]), "c": jnp.ones(1)})
    np.testing.assert_allclose(new["a"], [0.7, 1.9], rtol=1e-6)
    assert bits(new["a"]) == bits(new["b"])
    # in place: one new array object at both places
    fl.update_(state, model, {"a": jnp.ones(2), "b": jnp.ones(2), "c": jnp.ones(1)})
    assert model["a"] is model["b"]


def test_tie_survives_jit_and_donation():
    model = fl.Chain(fl.Dense(2, 2, bias=False), fl.Dense(2, 2, bias=False))
    model.layers[1].weight = model.layers[0].weight
    state = fl.setup(fl.Adam(0.01), model)
    assert len(state.leaves()) == 1

    @jax.jit
    def step(model, state, x, y):  # WALKTHROUGH 8b
        val, grads = fl.withgradient(lambda m: loss(m(x), y), model)
        state, model = fl.update(state, model, grads[0])
        return model, state, val

    x, y = X[:, :2], Y[:, :2]
    model, state, _ = step(model, state, x, y)
    assert model.layers[0].weight is not model.layers[1].weight  # jit returns two buffers...
    assert bits(model.layers[0].weight) == bits(model.layers[1].weight)  # ...with one value
    donating = jax.jit(step.__wrapped__, donate_argnums=(0, 1))
    for _ in range(3):
        model, state, _ = donating(model, state, x, y)
    assert bits(model.layers[0].weight) == bits(model.layers[1].weight)
    assert state.leaves()[0].count == 4
    # update_ writes one object to both places; train_ donates it once
    fl.update_(state, model, fl.gradient(lambda m: loss(m(x), y), model)[0])
    assert model.layers[0].weight is model.layers[1].weight
    fl.train_(lambda m, x, y: loss(m(x), y), model, [(x, y)] * 2, state)
    assert bits(model.layers[0].weight) == bits(model.layers[1].weight) and state.leaves()[0].count == 7


def test_jitted_step_compiles_once_across_adjust_freeze_thaw(count_compiles):
    model = net()
    state = fl.setup(RULE, model)

    def changes(i):
        yield lambda: fl.adjust_(state, 0.03 * i)
        yield lambda: fl.adjust_(state.layers.enc, beta=(0.8, 0.9 + 0.01 * i))
        yield lambda: fl.freeze_(state.layers.dec)
        yield lambda: fl.adjust_(state, omega=2.0 + i, couple=bool(i % 2))
        yield lambda: fl.thaw_(state)
        yield lambda: fl.freeze_(state.layers.enc.weight)
        yield lambda: fl.thaw_(state.layers.enc)

    for i in range(2):
        with count_compiles() as compiled:
            for change in changes(i):
                change()
                model, state, _ = step(model, state, X, Y)
        # the first round compiled the step (and adjust's small updates); the second, nothing
        assert (len(compiled) > 0) if i == 0 else (compiled == [])
    assert step._cache_size() == 1
    counts = [leaf.count for leaf in state.leaves()]  # enc.weight frozen 2 steps, dec 4, of 14
    assert counts == [12, 14, 10, 10]
    assert RULE == fl.OptimiserChain(fl.ClipNorm(1.0), AdamW(0.01, lambd=0.1))  # the rule object is untouched


def test_train_compiles_once_across_adjust_freeze_thaw(count_compiles):
    model = net()
    state = fl.setup(fl.Adam(0.01), model)
    data = [(X, Y)] * 3
    f = lambda m, x, y: loss(m(x), y)
    for epoch in range(4):
        with count_compiles() as compiled:
            fl.train_(f, model, data, state)
            fl.adjust_(state, 0.01 / (epoch + 1))
            fl.adjust_(state.layers.dec, beta=(0.8, 0.99))
            (fl.freeze_ if epoch % 2 else fl.thaw_)(state.layers.enc)
        if epoch == 0:
            assert compiled  # the counter sees compilations
        if epoch >= 2:
            assert compiled == [], epoch


def test_update_errors():
    model = {"w": jnp.ones(2)}
    state = fl.setup(fl.Descent(0.1), model)
    with pytest.raises(ValueError, match="shape"):
        fl.update(state, model, {"w": jnp.ones(3)})
    with pytest.raises(ValueError, match="model's structure"):
        fl.update(state, model, {"v": jnp.ones(2)})
    with pytest.raises(ValueError, match="set up for a model with 1"):
        fl.update(state, {"w": jnp.ones(2), "v": jnp.ones(2)}, {"w": jnp.ones(2), "v": jnp.ones(2)})
    with pytest.raises(TypeError, match="not the subtree"):
        fl.update(state["w"], model, model)
    with pytest.raises(RuntimeError, match="pure form"):
        jax.jit(lambda s, m: fl.update_(s, m, m))(state, model)
    with pytest.raises(RuntimeError, match="outside jax.jit"):
        jax.jit(lambda m: fl.setup(fl.Adam(), m))(model)
    with pytest.raises(TypeError, match="fluxlike rule .* or an optax"):
        fl.setup("adam", model)
    with pytest.raises(TypeError, match=r"fl.Adam is a rule class; pass fl.Adam\(\) \(an instance\)"):
        fl.setup(fl.Adam, model)


# --- parts of the state are pytrees of their Leafs (Optimisers.jl's subtrees) ---


def test_a_subtree_flattens_to_its_leafs_rule_states():
    model = fl.Chain(enc=fl.Dense(3, 2), dec=fl.Dense(2, 3))
    state = fl.setup(fl.Adam(0.1, (0.9, 0.99)), model)
    g = fl.gradient(lambda m: loss(m(X), Y), model)[0]
    state, model = fl.update(state, model, g)
    got = jax.tree.leaves(state.layers.enc)
    # Adam's first step from zero moments: m = (1-b1) g, v = (1-b2) g^2 (numpy)
    gw, gb = np.asarray(g.layers.enc.weight), np.asarray(g.layers.enc.bias)
    want = [0.1 * gw, 0.01 * gw**2, 0.1 * gb, 0.01 * gb**2]
    assert len(got) == 4
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-5)
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state.layers.enc)[0]]
    assert paths[0].startswith(".weight.state") and paths[2].startswith(".bias.state")
    assert jax.tree.leaves(state.layers.enc.weight) == got[:2]


def test_a_snapshot_of_a_subtree_maps_with_the_live_subtree_after_adjust_and_freeze():
    model = net()
    state = fl.setup(RULE, model)
    g = fl.gradient(lambda m: loss(m(X), Y), model)[0]
    state, model = fl.update(state, model, g)
    snap = jax.tree.map(np.array, state.layers.enc)  # detached copies
    before = [np.array(a) for a in jax.tree.leaves(state.layers.enc)]
    fl.adjust_(state, 0.5)
    fl.freeze_(state.layers.enc.bias)
    state, model = fl.update(state, model, g)
    diff = jax.tree.map(lambda a, b: np.abs(np.asarray(a) - b).max(), state.layers.enc, snap)
    assert jax.tree.leaves(diff.bias) == [0.0, 0.0]  # frozen: AdamW's moments bit-identical (ClipNorm has no state)
    assert all(d > 0 for d in jax.tree.leaves(diff.weight))
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(snap), before))  # the copy did not move
    with pytest.raises(AttributeError, match=r"\(at \.layers\.enc\.weight\) was built by a pytree function"):
        snap.weight.rule
    with pytest.raises(TypeError, match=r"adjust_: this part of the state \(at \.layers\.enc\) was built by"):
        fl.adjust_(snap, 0.1)


def test_leaf_reads_its_rule_hyperparameters_state_and_flags():
    model = {"w": jnp.ones(2)}
    state = fl.setup(fl.Momentum(0.1, 0.8), model)
    leaf = state["w"]
    assert leaf.hyper == {"eta": 0.1, "rho": 0.8}
    fl.adjust_(leaf, rho=0.5)
    assert state["w"].hyper == {"eta": 0.1, "rho": 0.5} and state["w"].rule == fl.Momentum(0.1, 0.5)
    chain = fl.setup(fl.OptimiserChain(fl.ClipGrad(2.0), fl.Descent(0.3)), model)
    assert chain["w"].hyper == ({"delta": 2.0}, {"eta": 0.3})
    import optax
    ox = fl.setup(optax.inject_hyperparams(optax.adam)(learning_rate=0.02), model)
    assert ox["w"].hyper["learning_rate"] == pytest.approx(0.02)
    leaves = jax.tree.leaves(ox["w"])  # optax's mu and nu for this array
    assert len(leaves) == 2 and all(a.shape == (2,) for a in leaves)


def test_update_in_place_reuses_buffers_only_when_nothing_else_holds_them(monkeypatch):
    from fluxlike.optimise import update as upd

    donating = []
    real = upd._update_jit_donating
    monkeypatch.setattr(upd, "_update_jit_donating", lambda *a: donating.append(1) or real(*a))
    model = net()
    ref_model, ref_state = model, fl.setup(fl.Adam(0.01), model)
    model = jax.tree.map(jnp.copy, model)  # a twin with arrays of its own
    state = fl.setup(fl.Adam(0.01), model)
    grads = fl.gradient(lambda m: loss(m(X), Y), jax.tree.map(jnp.copy, model), compile=False)[0]

    kept = model.layers.enc.weight  # a reference the caller keeps: never donated
    moment = state.layers.dec.layers[0].weight.state[0]
    kept_bits, moment_bits = np.asarray(kept).tobytes(), np.asarray(moment).tobytes()
    fl.update_(state, model, grads)
    assert donating == []
    assert np.asarray(kept).tobytes() == kept_bits and np.asarray(moment).tobytes() == moment_bits
    del kept, moment
    fl.update_(state, model, grads)  # nothing else holds them now: their buffers are reused
    assert donating == [1]

    for _ in range(2):  # the reference: the pure update, which never donates
        ref_state, ref_model = fl.update(ref_state, ref_model, grads)
    for a, b in zip(jax.tree.leaves((model, state)), jax.tree.leaves((ref_model, ref_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    shared = jnp.ones(3)  # tied weights: one array at two places, never donated twice
    tied = {"a": shared, "b": shared}
    del shared
    tstate = fl.setup(fl.Descent(0.5), tied)
    fl.update_(tstate, tied, {"a": jnp.ones(3), "b": jnp.ones(3)})
    assert donating == [1] and tied["a"] is tied["b"] and tied["a"].tolist() == [0.0, 0.0, 0.0]
