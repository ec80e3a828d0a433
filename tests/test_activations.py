"""Activations against numpy transcriptions of NNlib's documented formulas
(float64) and NNlib's own documented values."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl
from fluxlike import activations as A

X = np.array([-20.0, -6.0, -3.5, -3.0, -1.3, -0.5, -0.1, 0.0, 0.2, 0.5, 1.0, 2.7, 3.0, 6.5, 20.0])
ERF = np.vectorize(math.erf)
SELU_L, SELU_A = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


def np_softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


# name -> numpy formula, from NNlib's docstrings
FORMULAS = {
    "identity": lambda x: x,
    "relu": lambda x: np.maximum(0, x),
    "sigmoid": np_sigmoid,
    "tanh": np.tanh,
    "leakyrelu": lambda x: np.where(x > 0, x, 0.01 * x),
    "elu": lambda x: np.where(x > 0, x, np.exp(x) - 1),
    "gelu": lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
    "gelu_erf": lambda x: 0.5 * x * (1 + ERF(x / np.sqrt(2))),
    "swish": lambda x: x * np_sigmoid(x),
    "hardswish": lambda x: x * np.clip((x + 3) / 6, 0, 1),
    "softplus": np_softplus,
    "selu": lambda x: SELU_L * np.where(x > 0, x, SELU_A * (np.exp(x) - 1)),
    "celu": lambda x: np.where(x >= 0, x, np.exp(x) - 1),
    "relu6": lambda x: np.minimum(np.maximum(0, x), 6),
    "hardtanh": lambda x: np.maximum(-1, np.minimum(1, x)),
    "hardsigmoid": lambda x: np.maximum(0, np.minimum(1, (x + 3) / 6)),
    "logsigmoid": lambda x: -np_softplus(-x),
    "logcosh": lambda x: np.log(np.cosh(x)),
    "mish": lambda x: x * np.tanh(np_softplus(x)),
    "softsign": lambda x: x / (1 + np.abs(x)),
    "lisht": lambda x: x * np.tanh(x),
    "tanhshrink": lambda x: x - np.tanh(x),
    "softshrink": lambda x: np.where(x >= 0.5, x - 0.5, np.where(x <= -0.5, x + 0.5, 0)),
    "trelu": lambda x: np.where(x > 1, x, 0),
}


def test_every_elementwise_activation_is_covered():
    elementwise = set(A.__all__) - {"softmax", "logsoftmax", "logsumexp", "rrelu"}
    assert elementwise == set(FORMULAS)


@functools.cache
def outputs():
    """Every activation on X, in one compiled call (compiling each op eagerly is slow)."""
    return jax.jit(lambda x: {name: getattr(A, name)(x) for name in FORMULAS})(jnp.asarray(X, jnp.float32))


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_matches_nnlib_formula(name):
    y = outputs()[name]
    assert y.dtype == jnp.float32 and y.shape == X.shape
    np.testing.assert_allclose(y, FORMULAS[name](X), rtol=2e-6, atol=2e-6)


def test_nnlib_documented_values():
    got = jax.jit(lambda: {  # Float32 values from NNlib's docstrings
        "leakyrelu(-10, 0.2)": (A.leakyrelu(-10.0, 0.2), -2.0),
        "elu(-10)": (A.elu(-10.0), -0.9999546),
        "elu(-10, 2)": (A.elu(-10.0, 2), -1.9999092),
        "selu(-10)": (A.selu(-10.0), -1.7580194),
        "celu(-10)": (A.celu(-10.0), -0.9999546),
        "softsign(1)": (A.softsign(1.0), 0.5),
        "softsign(100)": (A.softsign(100.0), 0.990099),
        "softplus(16)": (A.softplus(16.0), 16.0),
        "tanhshrink(-10)": (A.tanhshrink(-10.0), -9.0),
        "softshrink(10)": (A.softshrink(10.0), 9.5),
        "hardswish.(-5:5)": (
            A.hardswish(jnp.arange(-5.0, 6.0)),
            [-0.0, -0.0, -0.0, -0.333333, -0.333333, 0.0, 0.666667, 1.66667, 3.0, 4.0, 5.0],
        ),
    })()
    for name, (value, documented) in got.items():
        np.testing.assert_allclose(value, documented, rtol=1e-5, err_msg=name)


def test_extra_arguments():
    x = jnp.asarray(X, jnp.float32)
    np.testing.assert_allclose(A.elu(x, 2.0), np.where(X > 0, X, 2 * (np.exp(X) - 1)), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(A.celu(x, 2.0), np.where(X >= 0, X, 2 * (np.exp(X / 2) - 1)), rtol=2e-6, atol=2e-6)
    np.testing.assert_allclose(A.trelu(x, 2.0), np.where(X > 2, X, 0))
    ref = np.where(X >= 2, X - 2, np.where(X <= -2, X + 2, 0))
    np.testing.assert_allclose(A.softshrink(x, 2.0), ref, atol=1e-6)
    # as a layer's activation, extra arguments are bound with functools.partial
    d = fl.Dense(jnp.eye(2), functools.partial(A.leakyrelu, a=0.5))
    np.testing.assert_allclose(d(jnp.array([-2.0, 3.0])), [-1.0, 3.0])


def test_softmax_logsoftmax_logsumexp():
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32) * 5
    x[0, 0] = 1000.0  # stability
    sm, lsm, sm0, lse, lse1, lse1k = jax.jit(lambda x: (
        A.softmax(x), A.logsoftmax(x), A.softmax(x, axis=0),
        A.logsumexp(x), A.logsumexp(x, axis=-1), A.logsumexp(x, axis=-1, keepdims=True),
    ))(x)
    x64 = x.astype(np.float64)
    e = np.exp(x64 - x64.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(sm, e / e.sum(-1, keepdims=True), rtol=1e-5, atol=1e-7)
    ref = x64 - x64.max(-1, keepdims=True) - np.log(e.sum(-1, keepdims=True))
    np.testing.assert_allclose(lsm, ref, rtol=1e-5, atol=1e-5)
    e0 = np.exp(x64 - x64.max(axis=0, keepdims=True))
    np.testing.assert_allclose(sm0, e0 / e0.sum(0, keepdims=True), rtol=1e-5, atol=1e-7)
    ref = x64.max(-1) + np.log(e.sum(-1))
    assert float(lse) == pytest.approx(1000.0, rel=1e-6)  # NNlib's default dims=: reduces everything
    np.testing.assert_allclose(lse1, ref, rtol=1e-6)
    assert lse1k.shape == (3, 1)


def test_rrelu_slopes_are_uniform_in_range():
    x = jnp.full(20_000, -10.0)
    y = np.asarray(A.rrelu(x, key=0))
    slopes = y / -10
    assert slopes.min() >= 1 / 8 and slopes.max() <= 1 / 3
    assert slopes.mean() == pytest.approx((1 / 8 + 1 / 3) / 2, rel=0.01)
    assert slopes.std() == pytest.approx((1 / 3 - 1 / 8) / math.sqrt(12), rel=0.02)
    np.testing.assert_array_equal(A.rrelu(x, key=0), y)
    assert not np.array_equal(A.rrelu(x, key=1), y)
    np.testing.assert_array_equal(A.rrelu(jnp.array([0.5, 2.0]), 0.0, 1.0, key=3), [0.5, 2.0])


def test_nnlib_derivative_rules():
    # relu'(0) = 0 and leakyrelu'(0) = a, as NNlib's rules (Ω > 0)
    relu0, leaky0, ht = jax.jit(lambda: (
        jax.grad(A.relu)(0.0), jax.grad(A.leakyrelu)(0.0), jax.vmap(jax.grad(A.hardtanh))(jnp.array([0.5, 2.0])),
    ))()
    assert float(relu0) == 0.0 and float(leaky0) == pytest.approx(0.01)
    assert ht.tolist() == [1.0, 0.0]
    names = ("softplus", "logsigmoid", "logcosh", "mish", "gelu", "selu")
    grads = jax.jit(lambda x: [jax.vmap(jax.grad(getattr(A, n)))(x) for n in names])(jnp.asarray(X, jnp.float32))
    for name, g in zip(names, grads):
        assert np.isfinite(g).all(), name
