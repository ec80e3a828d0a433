"""adjust / freeze / thaw and schedules: what they change, what they refuse,
and that the pure twins leave their input alone."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import fluxlike as fl
import reference as R
from fluxlike.optimise.adjust import learning_rate
from fluxlike import AccumGrad, AdamW, RMSProp

ONES = {"a": jnp.ones(2), "b": jnp.ones(3)}


def bits(tree) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in jax.tree.leaves(tree)]


def step(state, model, g=ONES):
    return fl.update(state, model, g)


def test_adjust_eta_positionally_on_a_part():
    model = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    state = fl.setup(fl.Descent(0.1), model)
    fl.adjust_(state["a"], 0.5)
    _, new = step(state, model)
    np.testing.assert_allclose(new["a"], -0.5)
    np.testing.assert_allclose(new["b"], -0.1)


def test_adjust_keyword_through_chains_leaves_other_rules_alone():
    model = {"a": jnp.zeros(2), "b": jnp.zeros(3)}
    state = fl.setup(fl.OptimiserChain(fl.ClipGrad(1.0), fl.Descent(0.1)), model)
    fl.adjust_(state, 0.2)  # only Descent has eta
    fl.adjust_(state["b"], delta=0.5)  # only ClipGrad has delta
    assert repr(state["a"].rule) == "OptimiserChain(ClipGrad(delta=1.0), Descent(eta=0.2))"
    assert repr(state["b"].rule) == "OptimiserChain(ClipGrad(delta=0.5), Descent(eta=0.2))"
    _, new = step(state, model, {"a": jnp.full(2, 3.0), "b": jnp.full(3, 3.0)})
    np.testing.assert_allclose(new["a"], -0.2)
    np.testing.assert_allclose(new["b"], -0.1)


def test_a_hyperparameter_no_rule_has_is_an_error():
    state = fl.setup(fl.OptimiserChain(fl.WeightDecay(), fl.Adam()), ONES)
    before = bits(state)
    with pytest.raises(ValueError, match=r"no rule in this part of the state has rho; its rules \(Adam, WeightDecay\) "
                                         r"have beta, epsilon, eta, lambd"):
        fl.adjust_(state, rho=0.9)
    with pytest.raises(ValueError, match="no rule .* has eta"):
        fl.adjust_(fl.setup(fl.ClipGrad(), ONES), 0.1)
    assert bits(state) == before


@pytest.mark.parametrize("call,err,msg", [
    (lambda s: fl.adjust_(s, -0.1), ValueError, "Adam: eta=-0.1 must be a finite number >= 0"),
    (lambda s: fl.adjust_(s, beta=(0.9, 1.5)), ValueError, "beta=(0.9, 1.5) must be in [0, 1)"),
    (lambda s: fl.adjust_(s, beta=0.9), ValueError, "beta must be a pair"),
    (lambda s: fl.adjust_(s), TypeError, "give a learning rate"),
    (lambda s: fl.adjust_(s, optax.constant_schedule(0.1)), ValueError, "is a schedule"),
    (lambda s: fl.adjust_("state", 0.1), TypeError, "expected the state tree"),
    (lambda s: jax.jit(lambda s: fl.adjust_(s, 0.1))(s), RuntimeError, "use `state = fl.adjust(state, ...)`"),
    (lambda s: jax.jit(lambda s, e: fl.adjust(s, e))(s, 0.1), TypeError, "traced value"),
])
def test_adjust_rejects_bad_values_and_changes_nothing(call, err, msg):
    state = fl.setup(fl.Adam(), ONES)
    before = bits(state)
    with pytest.raises(err) as info:
        call(state)
    assert msg in str(info.value)
    assert bits(state) == before


def test_options_fixed_at_setup_cannot_be_adjusted():
    state = fl.setup(RMSProp(centred=True), ONES)
    with pytest.raises(ValueError, match=r"RMSProp's centred is fixed when the state is set up"):
        fl.adjust_(state, centred=False)
    with pytest.raises(ValueError, match=r"ClipNorm's p is fixed"):
        fl.adjust_(fl.setup(fl.ClipNorm(), ONES), p=1.0)


def test_pure_twins_leave_their_input_untouched():
    state = fl.setup(fl.Adam(), ONES)
    before = bits(state)
    a = fl.adjust(state["a"], 0.5, beta=(0.5, 0.6))
    f = fl.freeze(state["b"])
    t = fl.thaw(f)
    assert bits(state) == before
    assert a["a"].rule == fl.Adam(0.5, (0.5, 0.6)) and a["b"].rule == fl.Adam()
    assert (f["a"].frozen, f["b"].frozen, t["b"].frozen, state["b"].frozen) == (False, True, False, False)
    # inside jax.jit with concrete values
    out = jax.jit(lambda s: fl.adjust(s, 0.25))(state)
    assert out["a"].rule.eta == 0.25


def test_adjusted_beta_enters_the_bias_correction_from_the_step_count():
    """Adam's bias correction uses beta^t with the current beta (optax's way;
    Optimisers.jl keeps running products of the old beta)."""
    x0, g = np.array([1.0, -2.0]), np.array([0.5, 0.25])
    model = {"w": jnp.asarray(x0, jnp.float32)}
    state = fl.setup(fl.Adam(0.1, (0.9, 0.999), 1e-3), model)
    state, model = fl.update(state, model, {"w": jnp.asarray(g, jnp.float32)})
    fl.adjust_(state, beta=(0.5, 0.9))
    state, model = fl.update(state, model, {"w": jnp.asarray(g, jnp.float32)})
    m1, v1 = 0.1 * g, 0.001 * g**2
    m2, v2 = 0.5 * m1 + 0.5 * g, 0.9 * v1 + 0.1 * g**2
    x1 = x0 - 0.1 * (m1 / 0.1) / (np.sqrt(v1 / 0.001) + 1e-3)
    x2 = x1 - 0.1 * (m2 / (1 - 0.5**2)) / (np.sqrt(v2 / (1 - 0.9**2)) + 1e-3)
    np.testing.assert_allclose(model["w"], x2, rtol=1e-6)


def test_adamw_couple_and_accumgrad_n_are_data():
    w0, gs = np.array([1.0, -2.0]), [np.array([0.5, 0.25]), np.array([-1.0, 2.0])]
    model = {"w": jnp.asarray(w0, jnp.float32)}
    state = fl.setup(AdamW(0.1, (0.9, 0.999), 0.5, 1e-3), model)
    fl.adjust_(state, couple=False)
    for g in gs:
        state, model = fl.update(state, model, {"w": jnp.asarray(g, jnp.float32)})
    want = R.run(R.make("AdamW", 0.1, (0.9, 0.999), 0.5, 1e-3, couple=False), w0, gs)[-1]
    np.testing.assert_allclose(model["w"], want, rtol=1e-6)
    assert state["w"].rule.couple is False
    # AccumGrad: windows are counted from the first step, so change n at a
    # step count that both the old and the new n divide (here 6)
    m = {"w": jnp.zeros(1)}
    st = fl.setup(AccumGrad(2), m)
    seen = []
    for i, v in enumerate([1.0, 3.0, 1.0, 1.0, 2.0, 2.0, 1.0, 2.0, 3.0]):
        if i == 6:
            fl.adjust_(st, n=3)
        st, m = fl.update(st, m, {"w": jnp.array([v])})
        seen.append(float(m["w"][0]))
    assert seen == [0.0, -2.0, -2.0, -3.0, -3.0, -5.0, -5.0, -5.0, -7.0]
    assert repr(st["w"].rule) == "AccumGrad(n=3)"


def test_freeze_and_thaw_parts_in_place():
    model = fl.Chain(enc=fl.Dense(2, 2), dec=fl.Dense(2, 1))
    state = fl.setup(fl.Descent(0.1), model)
    fl.freeze_(state.layers.enc)
    assert [leaf.frozen for leaf in state.leaves()] == [True, True, False, False]
    fl.thaw_(state.layers.enc.bias)
    assert [leaf.frozen for leaf in state.leaves()] == [True, False, False, False]
    fl.thaw_(state)
    assert not any(leaf.frozen for leaf in state.leaves())
    with pytest.raises(RuntimeError, match="fl.freeze"):
        jax.jit(lambda s: fl.freeze_(s))(state)


# ---------------------------------------------------------------------------
# schedules


def test_schedule_as_eta_runs_on_device_and_adjust_replaces_it():
    sched = optax.linear_schedule(0.5, 0.0, 4)
    model = {"w": jnp.zeros(1)}
    state = fl.setup(fl.Descent(sched), model)
    seen = []

    @jax.jit
    def step(state, model):
        return fl.update(state, model, {"w": jnp.ones(1)})

    for i in range(6):
        if i == 2:
            assert learning_rate(state) == 0.25
            fl.adjust_(state, 0.01)  # a constant from now on
            assert learning_rate(state) == 0.01 and repr(state["w"].rule) == "Descent(eta=0.01)"
        if i == 4:
            fl.adjust_(state, sched)  # the same schedule again, at the current step
            assert learning_rate(state) == 0.0 and "schedule" in repr(state["w"].rule)
        before = float(model["w"][0])
        state, model = step(state, model)
        seen.append(round(before - float(model["w"][0]), 6))
    assert seen == [0.5, 0.375, 0.01, 0.01, 0.0, 0.0]
    assert step._cache_size() == 1
    with pytest.raises(ValueError, match="schedules are part of the compiled step"):
        fl.adjust_(state, optax.linear_schedule(0.5, 0.0, 4))


def test_learning_rate_follows_accumgrad_and_parts():
    sched = lambda t: 0.1 / (1.0 + t)
    model = {"a": jnp.zeros(1), "b": jnp.zeros(1)}
    state = fl.setup(fl.OptimiserChain(AccumGrad(2), fl.Adam(sched)), model)
    for _ in range(4):
        state, model = fl.update(state, model, {"a": jnp.ones(1), "b": jnp.ones(1)})
    assert math.isclose(learning_rate(state), 0.1 / 3, rel_tol=1e-6)  # two emitted steps so far
    fl.adjust_(state["b"], 0.5)
    assert learning_rate(state["b"]) == 0.5
    with pytest.raises(ValueError, match="different learning rates"):
        learning_rate(state)
    with pytest.raises(ValueError, match="no rule with eta"):
        learning_rate(fl.setup(fl.ClipGrad(), model))
