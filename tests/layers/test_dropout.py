"""Dropout and AlphaDropout: masks, Flux's `dims`, the key as state carried
through fl.gradient and jax.jit, reproducibility, AlphaDropout's formula."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl


@jax.jit
def call(m, x):
    """The layer's output and the layer with its advanced key, in one compiled
    call (eager calls compile every operation separately)."""
    return m(x), m


def test_dropout_is_the_identity_in_test_mode_and_drops_in_train_mode():
    x = jnp.ones((200, 50))
    d = fl.Dropout(0.3, key=0)
    assert d(x) is x  # automatic mode outside gradient: test mode
    y = np.asarray(call(fl.trainmode_(d), x)[0])
    vals = np.unique(y)
    assert len(vals) == 2 and vals[0] == 0 and np.isclose(vals[1], 1 / 0.7)
    assert abs((y == 0).mean() - 0.3) < 0.02  # 10_000 draws: the std of the fraction is 0.005
    fl.testmode_(d)
    np.testing.assert_array_equal(call(d, x)[0], x)
    assert fl.Dropout(0.0, active=True)(x) is x
    np.testing.assert_array_equal(call(fl.Dropout(1.0, active=True), x)[0], np.zeros((200, 50)))


def test_dropout_is_active_inside_gradient_and_its_gradient_is_the_mask():
    d = fl.Dropout(0.5, key=1)
    x = jnp.full((4, 6), 2.0)
    (_, y), (_, gx) = jax.jit(lambda d, x: fl.withgradient(lambda d, x: ((y := d(x)).sum(), y), d, x))(d, x)
    y = np.asarray(y)
    assert 0 < (y == 0).sum() < y.size and set(np.unique(y)) == {0.0, 4.0}
    np.testing.assert_array_equal(gx, (y != 0) * 2.0)  # d(x / (1-p)) / dx on kept entries


def test_dropout_dims_are_the_axes_where_the_mask_varies():
    x = jnp.ones((8, 4, 4, 16))  # NHWC
    # Flux's dims=3 on WHCN: one mask over channels, shared by every sample and pixel
    y = np.asarray(call(fl.Dropout(0.5, dims=-1, active=True, key=2), x)[0])
    assert (y == y[:1, :1, :1, :]).all() and 0 < (y[0, 0, 0] == 0).sum() < 16
    # Flux's dims=(3, 4): 2-d dropout, whole channels of each sample
    y = np.asarray(call(fl.Dropout(0.5, dims=(0, 3), active=True, key=3), x)[0])
    assert (y == y[:, :1, :1, :]).all()
    assert not (y == y[:1]).all()  # samples differ
    with pytest.raises(ValueError, match=r"Dropout\(0.5, dims=\(0, 4\).*axes \[4\].*\(8, 4, 4, 16\)"):
        fl.Dropout(0.5, dims=(0, 4), active=True)(x)
    with pytest.raises(TypeError, match="dims must be"):
        fl.Dropout(0.5, dims="channels")
    with pytest.raises(ValueError, match=r"p=1.5 must be a number in \[0, 1\]"):
        fl.Dropout(1.5)


def test_dropout_key_advances_each_call_and_the_seed_reproduces_a_run():
    def run():
        d = fl.Dropout(0.5, active=True)  # key from fl.seed's stream
        return [np.asarray(d(jnp.ones(64))) for _ in range(2)]

    fl.seed(7)
    a1, a2 = run()
    fl.seed(7)
    b1, b2 = run()
    assert not (a1 == a2).all()  # successive calls draw different masks
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)


def test_jitted_step_returning_the_model_carries_the_key_forward():
    @jax.jit
    def step(m, x):
        (_, y), _ = fl.withgradient(lambda m: ((y := m(x)).sum(), y), m)
        return m, y

    x = jnp.ones((4, 32))
    net = fl.Chain(fl.Dense(32, 32, init=lambda k, s, d: jnp.eye(*s, dtype=d)), fl.Dropout(0.5, key=4))
    key0 = np.asarray(net[1].key)
    m1, y1 = step(net, x)
    m2, y2 = step(m1, x)
    assert not (np.asarray(y1) == np.asarray(y2)).all()
    assert not (np.asarray(m1[1].key) == key0).all()
    np.testing.assert_array_equal(net[1].key, key0)  # the input model is untouched
    _, y1_again = step(net, x)  # same model, same key: same mask
    np.testing.assert_array_equal(y1, y1_again)


def test_closing_over_dropout_in_jit_in_train_mode_raises():
    d = fl.Dropout(0.5, active=True)
    with pytest.raises(RuntimeError, match="tracer leak"):
        jax.jit(lambda x: d(x))(jnp.ones(3))


def test_alphadropout_follows_the_selu_formula_and_keeps_mean_and_variance():
    p, alpha = 0.2, -1.0507009873554805 * 1.6732632423543772  # SELU's -λα
    A = ((1 - p) * (1 + p * alpha**2)) ** -0.5
    B = -A * alpha * p
    x = jax.random.normal(jax.random.PRNGKey(5), (20_000,))
    d = fl.AlphaDropout(p, key=6)
    assert d(x) is x  # test mode
    y, d = call(fl.trainmode_(d), x)
    y = np.asarray(y)
    kept = np.isclose(y, A * np.asarray(x) + B, atol=1e-5)
    dropped = np.isclose(y, A * alpha + B, atol=1e-5)
    assert (kept | dropped).all()
    assert abs(dropped.mean() - p) < 0.01
    assert abs(y.mean()) < 0.03 and abs(y.std() - 1) < 0.03
    y2 = np.asarray(call(d, x)[0])
    assert not (y == y2).all()  # the key advanced
    np.testing.assert_array_equal(call(fl.AlphaDropout(1.0, active=True), x)[0], np.zeros(20_000))
    with pytest.raises(ValueError, match="AlphaDropout: p=-0.1"):
        fl.AlphaDropout(-0.1)


def test_dropout_reprs_follow_flux():
    assert repr(fl.Dropout(0.5)) == "Dropout(0.5)"
    assert repr(fl.Dropout(0.5, dims=(0, -1))) == "Dropout(0.5, dims=(0, -1))"
    assert repr(fl.AlphaDropout(0.2)) == "AlphaDropout(0.2)"
    assert repr(fl.trainmode_(fl.AlphaDropout(0.2))) == "AlphaDropout(0.2, active=True)"
    assert "non-trainable" in str(fl.Chain(fl.Dense(2, 3), fl.Dropout(0.1)))
