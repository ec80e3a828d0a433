"""Initialisers against Flux's documented formulas: bounds and standard
deviations on large draws with fixed keys, orthogonality, sparsity counts,
identity maps, fan rules, shapes and dtypes."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl
from fluxlike.init import (
    glorot_normal, glorot_uniform, identity_init, kaiming_normal, kaiming_uniform, lecun_normal,
    nfan, ones32, orthogonal, rand32, randn32, sparse_init, truncated_normal, zeros32,
)

RANDOM = [glorot_uniform, glorot_normal, kaiming_uniform, kaiming_normal, truncated_normal,
          lecun_normal, orthogonal, rand32, randn32]


def test_nfan_flux_rules():
    assert nfan(()) == (1, 1)
    assert nfan((7,)) == (1, 7)
    assert nfan((20, 10)) == (10, 20)  # Dense(10 => 20).weight is (20, 10): Flux's doctest
    assert nfan((3, 3, 2, 10)) == (18, 90)  # Conv((3, 3), 2 => 10): Flux's doctest
    assert nfan((5, 4, 3)) == (20, 15)


@pytest.mark.parametrize("init", RANDOM)
def test_shape_dtype_and_key(init):
    # (400, 250) everywhere: its draws share one compiled sampler with the tests below
    a = init(jax.random.PRNGKey(3), (400, 250))
    assert a.shape == (400, 250) and a.dtype == jnp.float32
    np.testing.assert_array_equal(a, init(3, (400, 250)))  # an int seeds the same key
    assert not np.array_equal(a, init(4, (400, 250)))
    b = init(3, (400, 250), jnp.float16)
    assert b.dtype == jnp.float16 and b.shape == (400, 250)


def test_glorot_uniform_bound_and_std():
    # large draws share one flat size (100_000), so they share one compiled sampler
    w = np.asarray(glorot_uniform(0, (400, 250)))
    limit = math.sqrt(6 / 650)
    assert w.min() >= -limit and w.max() <= limit
    assert w.max() > 0.99 * limit and w.min() < -0.99 * limit
    assert w.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)
    w = np.asarray(glorot_uniform(1, (5, 5, 40, 100), gain=2))  # fans 1000, 2500
    assert abs(w).max() <= 2 * math.sqrt(6 / 3500) and abs(w).max() > 1.98 * math.sqrt(6 / 3500)


def test_glorot_normal_std():
    assert np.asarray(glorot_normal(0, (400, 250))).std() == pytest.approx(math.sqrt(2 / 650), rel=0.02)
    w = glorot_normal(1, (10, 10_000), gain=100)  # as Flux's doctest Dense(10 => 1000; gain=100)
    assert np.asarray(w).std() == pytest.approx(100 * math.sqrt(2 / 10_010), rel=0.02)


def test_kaiming_uniform_bound():
    w = np.asarray(kaiming_uniform(0, (5, 5, 40, 100)))  # fan_in = 1000
    bound = math.sqrt(2) * math.sqrt(3 / 1000)
    assert abs(w).max() <= bound and abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)


def test_kaiming_normal_std():
    assert np.asarray(kaiming_normal(0, (10_000, 10))).std() == pytest.approx(math.sqrt(2 / 10), rel=0.02)
    assert np.asarray(kaiming_normal(0, (250, 400), gain=1)).std() == pytest.approx(1 / math.sqrt(400), rel=0.02)


def _phi(z):
    return math.exp(-z * z / 2) / math.sqrt(2 * math.pi)


def _Phi(z):
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def _truncated_moments(mean, std, lo, hi):
    a, b = (lo - mean) / std, (hi - mean) / std
    Z = _Phi(b) - _Phi(a)
    m = mean + std * (_phi(a) - _phi(b)) / Z
    v = std**2 * (1 + (a * _phi(a) - b * _phi(b)) / Z - ((_phi(a) - _phi(b)) / Z) ** 2)
    return m, math.sqrt(v)


def test_truncated_normal_moments_and_bounds():
    w = np.asarray(truncated_normal(0, (100_000,)))
    assert w.min() >= -2 and w.max() <= 2 and w.min() < -1.99 and w.max() > 1.99
    assert w.std() == pytest.approx(_truncated_moments(0, 1, -2, 2)[1], rel=0.01)
    w = np.asarray(truncated_normal(1, (100_000,), mean=1.0, std=0.5, lo=0.0, hi=1.5))
    m, s = _truncated_moments(1.0, 0.5, 0.0, 1.5)
    assert w.min() >= 0 and w.max() <= 1.5
    assert w.mean() == pytest.approx(m, abs=0.005) and w.std() == pytest.approx(s, rel=0.01)
    assert np.asarray(truncated_normal(2, (100_000,), lo=-100, hi=100)).std() == pytest.approx(1, rel=0.01)


def test_lecun_normal_uses_absolute_bounds():
    assert np.asarray(lecun_normal(0, (1000, 100))).std() == pytest.approx(0.1, rel=0.02)
    # fan_in 1: std 1 before truncation at the values -2, 2 (Flux), i.e. 2 std
    w = np.asarray(lecun_normal(0, (100_000, 1)))
    assert w.std() == pytest.approx(_truncated_moments(0, 1, -2, 2)[1], rel=0.01)


def test_orthogonal():
    w = np.asarray(orthogonal(0, (250, 400)), np.float64)  # Flux's doctest: (5, 7) and (7, 5)
    np.testing.assert_allclose(w @ w.T, np.eye(250), atol=1e-5)
    w = np.asarray(orthogonal(0, (400, 250)), np.float64)
    np.testing.assert_allclose(w.T @ w, np.eye(250), atol=1e-5)
    assert not np.allclose(w @ w.T, np.eye(400), atol=1e-2)
    w = np.asarray(orthogonal(0, (3, 3, 2, 4), gain=2), np.float64).reshape(-1, 4)  # Flux: reshape(W3, :, 4)
    np.testing.assert_allclose(w.T @ w, 4 * np.eye(4), atol=1e-4)
    with pytest.raises(ValueError, match="at least 2 axes"):
        orthogonal(0, (5,))


def test_sparse_init_counts_and_std():
    w = np.asarray(sparse_init(0, (10, 10), sparsity=1 / 5))
    assert (w == 0).sum() == 20 and (w == 0).sum(axis=0).tolist() == [2] * 10  # Flux's doctest
    w = np.asarray(sparse_init(2, (400, 250), sparsity=0.25, std=0.5))
    assert ((w == 0).sum(axis=0) == 100).all()
    assert w[w != 0].std() == pytest.approx(0.5, rel=0.02)
    d = fl.Dense(10, 10, fl.tanh, init=functools.partial(sparse_init, sparsity=0.5))
    assert (np.asarray(d.weight) == 0).sum(axis=0).tolist() == [5] * 10
    with pytest.raises(ValueError, match="2-d"):
        sparse_init(0, (2, 3, 4), sparsity=0.5)
    with pytest.raises(TypeError):
        sparse_init(0, (3, 3))  # sparsity is required, as in Flux


def test_identity_init():
    np.testing.assert_array_equal(identity_init(None, (3, 5)), np.eye(3, 5))
    np.testing.assert_array_equal(identity_init(None, (4,)), np.zeros(4))
    np.testing.assert_array_equal(identity_init(None, (3, 3), shift=1), np.roll(np.eye(3), 1, axis=0))
    # Flux: identity_init(3, 3, 2; gain=100) has 100 at [2, 1, 1] and [2, 2, 2] (1-based)
    ref = np.zeros((3, 3, 2))
    ref[1, 0, 0] = ref[1, 1, 1] = 100
    np.testing.assert_array_equal(identity_init(None, (3, 3, 2), gain=100), ref)
    # Flux's doctests: Dense(5 => 3, relu, init=identity_init)([1,-2,3,-4,5]) == [1, 0, 3]
    d = fl.Dense(5, 3, fl.relu, init=identity_init)
    np.testing.assert_array_equal(d(jnp.array([1.0, -2, 3, -4, 5])), [1, 0, 3])
    # ... and an even-kernel Conv with SamePad is 10x the identity
    x = jnp.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    conv = fl.Conv((2, 2), 1, 1, init=functools.partial(identity_init, gain=10), pad=fl.SamePad())
    np.testing.assert_array_equal(conv(x), 10 * x)


def test_constant_and_plain_random_inits():
    assert zeros32(None, (2, 3)).tolist() == [[0.0] * 3] * 2
    assert ones32(None, (2,), jnp.float16).dtype == jnp.float16
    u = np.asarray(rand32(0, (100_000,)))
    assert u.min() >= 0 and u.max() < 1 and u.mean() == pytest.approx(0.5, abs=0.01)
    n = np.asarray(randn32(0, (100_000,)))
    assert n.mean() == pytest.approx(0, abs=0.01) and n.std() == pytest.approx(1, rel=0.01)


def test_shape_errors():
    with pytest.raises(TypeError, match="glorot_uniform: shape must be a tuple of ints"):
        glorot_uniform(0, "ab")
    with pytest.raises(ValueError, match="kaiming_normal: shape must hold non-negative ints"):
        kaiming_normal(0, (3, -1))
