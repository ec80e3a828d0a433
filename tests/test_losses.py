"""fluxlike.losses against numpy transcriptions of Flux.Losses, Flux's own numbers, and PyTorch.

Layout: Flux is column-major with classes on dim 1 and samples on the last
dim; here samples are rows and classes the last axis, so a Flux column is a
row here (Julia's ``reshape(v, c, n)`` is numpy's ``v.reshape(n, c)``).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fluxlike import losses

EPS32 = float(np.finfo(np.float32).eps)
RTOL, ATOL = 1e-5, 1e-6


# --------------------------------------------------------------------------
# numpy references, transcribed from Flux's src/losses/functions.jl (float64)


def np_xlogy(x, y):
    return np.where(x == 0, 0.0, x * np.log(np.where(x == 0, 1.0, y)))


def np_logsoftmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_mae(yh, y):
    return np.abs(yh - y)


def np_mse(yh, y):
    return (yh - y) ** 2


def np_msle(yh, y, eps=EPS32):
    return np.log((yh + eps) / (y + eps)) ** 2


def np_huber(yh, y, delta=1.0):
    a = np.abs(yh - y)
    return np.where(a < delta, 0.5 * a**2, delta * (a - 0.5 * delta))


def np_crossentropy(yh, y, eps=EPS32):
    return -np.sum(np_xlogy(y, yh + eps), axis=-1)


def np_logitcrossentropy(yh, y):
    return -np.sum(y * np_logsoftmax(yh), axis=-1)


def np_binarycrossentropy(yh, y, eps=EPS32):
    return -np_xlogy(y, yh + eps) - np_xlogy(1 - y, 1 - yh + eps)


def np_logitbinarycrossentropy(yh, y):
    return (1 - y) * yh + np.logaddexp(0.0, -yh)  # -logσ(x) = log(1 + exp(-x))


def np_kldivergence(yh, y, eps=EPS32):
    return np.sum(np_xlogy(y, y), axis=-1) + np_crossentropy(yh, y, eps)


def np_poisson(yh, y):
    return yh - np_xlogy(y, yh)


def np_hinge(yh, y):
    return np.maximum(0.0, 1 - yh * y)


def np_squared_hinge(yh, y):
    return np.maximum(0.0, 1 - yh * y) ** 2


def np_dice(yh, y, smooth=1.0):
    return 1 - (2 * np.sum(y * yh) + smooth) / (np.sum(y**2) + np.sum(yh**2) + smooth)


def np_tversky(yh, y, beta=0.7):
    # Flux.jl's code (src/losses/functions.jl): beta on the false positives.
    num = np.sum(y * yh) + 1
    den = np.sum(y * yh + beta * (1 - y) * yh + (1 - beta) * y * (1 - yh)) + 1
    return 1 - num / den


def np_binary_focal(yh, y, gamma=2, eps=EPS32):
    yhe = yh + eps
    p_t = y * yhe + (1 - y) * (1 - yhe)
    return -((1 - p_t) ** gamma) * np.log(p_t)


def np_focal(yh, y, gamma=2, eps=EPS32):
    yhe = yh + eps
    return np.sum(-y * (1 - yhe) ** gamma * np.log(yhe), axis=-1)


def np_siamese(yh, y, margin=1.0):
    return (1 - y) * yh**2 + y * np.maximum(0.0, margin - yh) ** 2


def np_ctc(logits, labels, blank):
    """NNlib's ctc_alpha, transcribed with 0-based indices and (time, classes) input."""
    logp = np_logsoftmax(logits.astype(np.float64))
    z = [blank]
    for label in labels:
        z += [label, blank]
    n_time, n_states = logp.shape[0], len(z)
    alpha = np.full((n_states, n_time), -np.inf)
    alpha[0, 0] = logp[0, blank]
    if n_states > 1:
        alpha[1, 0] = logp[0, z[1]]
    for t in range(1, n_time):
        for u in range(n_states):
            a = alpha[u, t - 1]
            if u > 0:
                a = np.logaddexp(a, alpha[u - 1, t - 1])
            if u > 1 and z[u] != blank and z[u - 2] != z[u]:
                a = np.logaddexp(a, alpha[u - 2, t - 1])
            alpha[u, t] = a + logp[t, z[u]]
    end = alpha[-1, -1] if n_states == 1 else np.logaddexp(alpha[-1, -1], alpha[-2, -1])
    return -end


# --------------------------------------------------------------------------
# random inputs: (y_hat, y) in float32, batch 4 on axis 0, 5 classes on axis -1


def _probs(rng, shape):
    x = rng.normal(size=shape)
    return np.exp(np_logsoftmax(x)).astype(np.float32)


def _onehot(rng, shape):
    return np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]


SHAPE = (4, 5)
MAKERS = {
    "real": lambda r: (r.normal(size=SHAPE), r.normal(size=SHAPE)),
    "positive": lambda r: (r.uniform(0.1, 3, SHAPE), r.uniform(0.1, 3, SHAPE)),
    "probs": lambda r: (_probs(r, SHAPE), _probs(r, SHAPE)),
    "probs_onehot": lambda r: (_probs(r, SHAPE), _onehot(r, SHAPE)),
    "logits_probs": lambda r: (r.normal(size=SHAPE) * 2, _probs(r, SHAPE)),
    "binary": lambda r: (r.uniform(0.05, 0.95, SHAPE), r.integers(0, 2, SHAPE)),
    "soft_binary": lambda r: (r.uniform(0.05, 0.95, SHAPE), r.uniform(0, 1, SHAPE)),
    "logit_binary": lambda r: (r.normal(size=SHAPE) * 3, r.uniform(0, 1, SHAPE)),
    "counts": lambda r: (r.uniform(0.2, 4, SHAPE), r.integers(0, 5, SHAPE)),
    "signs": lambda r: (r.normal(size=SHAPE), r.choice([-1.0, 1.0], SHAPE)),
    "distances": lambda r: (r.uniform(0, 2, SHAPE), r.integers(0, 2, SHAPE)),
}

# (loss, numpy reference, input maker, keyword arguments)
AGG_CASES = [
    ("mae", np_mae, "real", {}),
    ("mse", np_mse, "real", {}),
    ("msle", np_msle, "positive", {}),
    ("msle", np_msle, "positive", {"eps": 0.1}),
    ("huber_loss", np_huber, "real", {}),
    ("huber_loss", np_huber, "real", {"delta": 0.3}),
    ("crossentropy", np_crossentropy, "probs", {}),
    ("crossentropy", np_crossentropy, "probs_onehot", {}),
    ("crossentropy", np_crossentropy, "probs", {"eps": 0.0}),
    ("logitcrossentropy", np_logitcrossentropy, "logits_probs", {}),
    ("binarycrossentropy", np_binarycrossentropy, "binary", {}),
    ("binarycrossentropy", np_binarycrossentropy, "soft_binary", {"eps": 1e-3}),
    ("logitbinarycrossentropy", np_logitbinarycrossentropy, "logit_binary", {}),
    ("kldivergence", np_kldivergence, "probs", {}),
    ("kldivergence", np_kldivergence, "probs_onehot", {}),
    ("poisson_loss", np_poisson, "counts", {}),
    ("hinge_loss", np_hinge, "signs", {}),
    ("squared_hinge_loss", np_squared_hinge, "signs", {}),
    ("binary_focal_loss", np_binary_focal, "binary", {}),
    ("binary_focal_loss", np_binary_focal, "soft_binary", {"gamma": 1.5}),
    ("focal_loss", np_focal, "probs_onehot", {}),
    ("focal_loss", np_focal, "probs", {"gamma": 0.5}),
    ("siamese_contrastive_loss", np_siamese, "distances", {}),
    ("siamese_contrastive_loss", np_siamese, "distances", {"margin": 0.5}),
]
WHOLE_CASES = [
    ("dice_coeff_loss", np_dice, "probs_onehot", {}),
    ("dice_coeff_loss", np_dice, "positive", {"smooth": 0.5}),
    ("tversky_loss", np_tversky, "probs_onehot", {}),
    ("tversky_loss", np_tversky, "soft_binary", {"beta": 0.2}),
]
AGG_LOSSES = sorted({c[0] for c in AGG_CASES})
ALL_LOSSES = AGG_LOSSES + ["dice_coeff_loss", "tversky_loss"]


def _ids(cases):
    return [f"{name}-{maker}-{kw}" for name, _, maker, kw in cases]


def _inputs(maker, seed=0):
    y_hat, y = MAKERS[maker](np.random.default_rng(seed))
    return np.asarray(y_hat, np.float32), np.asarray(y, np.float32)


def _close(actual, expected, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


def _ref(ref, y_hat, y, kwargs):
    return ref(y_hat.astype(np.float64), y.astype(np.float64), **kwargs)


# --------------------------------------------------------------------------
# numpy oracle and agg


@pytest.mark.parametrize(("name", "ref", "maker", "kwargs"), AGG_CASES, ids=_ids(AGG_CASES))
def test_matches_numpy_reference_with_every_agg(name, ref, maker, kwargs):
    loss = getattr(losses, name)
    y_hat, y = _inputs(maker)
    expected = _ref(ref, y_hat, y, kwargs)  # unaggregated, as Flux computes it
    _close(loss(y_hat, y, **kwargs), expected.mean())
    _close(loss(y_hat, y, agg=jnp.sum, **kwargs), expected.sum())
    unreduced = loss(y_hat, y, agg=None, **kwargs)
    assert unreduced.shape == expected.shape
    _close(unreduced, expected)
    weights = np.arange(expected.size, dtype=np.float32).reshape(expected.shape)
    weighted = loss(y_hat, y, agg=lambda l: jnp.sum(l * weights), **kwargs)
    _close(weighted, (expected * weights).sum(), rtol=2 * RTOL)


@pytest.mark.parametrize(("name", "ref", "maker", "kwargs"), WHOLE_CASES, ids=_ids(WHOLE_CASES))
def test_whole_array_losses_match_numpy_reference(name, ref, maker, kwargs):
    y_hat, y = _inputs(maker)
    _close(getattr(losses, name)(y_hat, y, **kwargs), _ref(ref, y_hat, y, kwargs))


def test_per_sample_losses_sum_over_the_class_axis_and_drop_it():
    y_hat, y = _inputs("probs_onehot")
    assert losses.crossentropy(y_hat, y, agg=None).shape == (4,)
    assert losses.mse(y_hat, y, agg=None).shape == (4, 5)
    # axis=0 puts the classes first (Flux's default layout, transposed here)
    _close(losses.crossentropy(y_hat.T, y.T, axis=0), np_crossentropy(y_hat, y).mean())
    _close(losses.focal_loss(y_hat, y, axis=(0, 1), agg=None), np_focal(y_hat, y).sum())
    images = np.stack([y_hat, y_hat[::-1]])  # (2, 4, 5): per-pixel class scores
    labels = np.stack([y, y])
    _close(
        losses.logitcrossentropy(images, labels, agg=None),
        np_logitcrossentropy(images.astype(np.float64), labels),
    )


def test_kldivergence_aggregates_its_two_terms_separately_like_flux():
    y_hat, y = _inputs("probs")
    entropy = np.sum(np_xlogy(y, y.astype(np.float64)), axis=-1)
    cross = np_crossentropy(y_hat.astype(np.float64), y.astype(np.float64))
    _close(losses.kldivergence(y_hat, y, agg=jnp.max), entropy.max() + cross.max())


def test_jit_matches_eager_and_output_is_float32():
    y_hat, y = _inputs("binary")
    fns = [getattr(losses, name) for name in ALL_LOSSES]
    jitted = jax.jit(lambda a, b: [f(a, b) for f in fns])(y_hat, y)  # one compile for all
    for name, f, out in zip(ALL_LOSSES, fns, jitted, strict=True):
        eager = f(y_hat, y)
        assert eager.dtype == out.dtype == jnp.float32 and eager.shape == (), name
        _close(out, np.asarray(eager))


# --------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_shape_mismatch_raises_value_error_naming_loss_and_shapes(name):
    loss = getattr(losses, name)
    msg = rf"^{name}: y_hat has shape \(3, 2\) but y has shape \(3, 4\); they must match$"
    with pytest.raises(ValueError, match=msg):
        loss(np.full((3, 2), 0.5, np.float32), np.full((3, 4), 0.5, np.float32))


def test_flux_size_rule_leading_ones_and_constant_labels_pass():
    y_hat = np.array([[0.2, 0.4, 0.7]], np.float32)
    for loss in (losses.mse, losses.crossentropy, losses.kldivergence):
        # Flux lets size (3,) meet (3, 1); in row-major order that is (3,) and (1, 3).
        _close(loss(y_hat[0], y_hat), np.asarray(loss(y_hat, y_hat)))
        assert np.isfinite(loss(y_hat, 1.0)), loss.__name__


def test_constant_label_as_in_flux():
    y_hat = np.array([0.1, 0.2, 0.9], np.float32)
    _close(losses.binarycrossentropy(y_hat, 1), -np.mean(np.log(y_hat.astype(np.float64))))


@pytest.mark.parametrize("name", AGG_LOSSES)
def test_non_callable_agg_raises_type_error(name):
    with pytest.raises(TypeError, match=rf"^{name}: agg must be a callable"):
        getattr(losses, name)(np.ones(3), np.ones(3), agg="mean")


def test_label_smoothing_rejects_alpha_outside_open_unit_interval():
    for alpha in (0.0, 1.0, 1.2, -0.1):
        with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
            losses.label_smoothing(np.array([0.0, 0.0, 1.0, 0.0]), alpha)


def test_siamese_rejects_negative_margin():
    for margin in (-0.5, -1):
        with pytest.raises(ValueError, match="margin must be non-negative"):
            losses.siamese_contrastive_loss(np.ones(3), np.ones(3), margin=margin)


# --------------------------------------------------------------------------
# gradients


def test_gradients_are_finite():
    cases = AGG_CASES + WHOLE_CASES
    inputs = [_inputs(maker, seed=1) for _, _, maker, _ in cases]

    @jax.jit  # one compile for every case
    def gradients(inputs):
        return [
            jax.grad(lambda p, y=y, loss=getattr(losses, name), kw=kw: loss(p, y, **kw))(y_hat)
            for (name, _, _, kw), (y_hat, y) in zip(cases, inputs, strict=True)
        ]

    for case_id, grad, (y_hat, _) in zip(_ids(cases), gradients(inputs), inputs, strict=True):
        assert grad.shape == y_hat.shape and bool(jnp.all(jnp.isfinite(grad))), case_id


def test_gradients_finite_at_zero_labels_and_exact_probabilities():
    y = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], np.float32)
    fns = (losses.crossentropy, losses.kldivergence, losses.poisson_loss,
           losses.binarycrossentropy)
    grads = jax.jit(lambda p: [jax.grad(f)(p, y) for f in fns])(jnp.asarray(y))
    for f, grad in zip(fns, grads, strict=True):
        assert bool(jnp.all(jnp.isfinite(grad))), f.__name__


# --------------------------------------------------------------------------
# the numbers printed in Flux's docstrings (src/losses/functions.jl) and
# asserted in its test/losses.jl; each table is evaluated in one compile


def _softmax(x):
    return np.exp(np_logsoftmax(np.asarray(x, np.float64))).astype(np.float32)


def _col(*values):
    """Flux's 1×n matrix: n samples of one class, shape (n, 1) here."""
    return np.float32(values)[:, None]


def _check_table(table):
    values = jax.jit(lambda: [thunk() for _, thunk, *_ in table])()
    for (case, _, expected, *atol), value in zip(table, values, strict=True):
        np.testing.assert_allclose(np.asarray(value, np.float64), expected, rtol=RTOL,
                                   atol=atol[0] if atol else ATOL, err_msg=case)


Y123 = np.arange(1, 4)
SOFTMAX_15 = _softmax(np.arange(-7.0, 8.0).reshape(5, 3))  # Julia's reshape(-7:7, 3, 5)
ONEHOT_01210 = np.eye(3, dtype=np.float32)[[0, 1, 2, 1, 0]]
LOGITS_21 = np.concatenate([np.arange(-9, 1), np.arange(0, 10), [7.5]]).astype(np.float32)
ONEHOT_ABCABAA = np.eye(3, dtype=np.float32)[[0, 1, 2, 0, 1, 0, 0]]
Y_PROB = _softmax([[1, 2], [3, 3], [4, 5]])  # Julia's softmax(reshape(vcat(1:3, 3:5), 2, 3))
Y_BIN = np.float32([1, 0, 1])
Y_MODEL = np.float32([2, -1, np.pi])
P1, P2 = np.eye(2, dtype=np.float32), np.full((2, 2), 0.5, np.float32)
Y_TRUE, Y_PRED = np.float32([1, -1, 1, 1]), np.float32([0.1, 0.3, 1, 1.5])
FOCAL_Y = np.float32([[0, 1], [1, 0], [0, 1]])  # Flux's 2×3 matrices, transposed
FOCAL_Y_HAT = np.float32([[0.268941, 0.731059], [0.5, 0.5], [0.268941, 0.731059]])

FLUX_DOCSTRING_NUMBERS = [
    ("mae", lambda: losses.mae(np.float32([1.1, 1.9, 3.1]), Y123), 0.10000000000000009),
    ("mse", lambda: losses.mse(np.float32([1.1, 1.9, 3.1]), Y123), 0.010000000000000018, 1e-8),
    ("msle over", lambda: losses.msle(np.float32([1.1, 2.2, 3.3]), Y123), 0.009084041, 1e-9),
    ("msle under", lambda: losses.msle(np.float32([0.9, 1.8, 2.7]), Y123), 0.011100831, 1e-9),
    ("huber", lambda: losses.huber_loss(np.float32([1.1, 2.1, 3.1]), Y123),
     0.005000000000000009, 1e-9),
    ("huber delta", lambda: losses.huber_loss(np.float32([1.1, 2.1, 3.1]), Y123, delta=0.05),
     0.003750000000000005, 1e-9),
    ("crossentropy", lambda: losses.crossentropy(SOFTMAX_15, ONEHOT_01210), 1.6076053),
    ("crossentropy sum", lambda: losses.crossentropy(SOFTMAX_15, ONEHOT_01210, agg=jnp.sum),
     5 * 1.6076053),
    ("crossentropy smoothed", lambda: losses.crossentropy(
        SOFTMAX_15, losses.label_smoothing(ONEHOT_01210, 0.15)), 1.5776052),
    ("label_smoothing", lambda: losses.label_smoothing(ONEHOT_01210, 0.15)[0], [0.9, 0.05, 0.05]),
    ("logitcrossentropy", lambda: losses.logitcrossentropy(LOGITS_21.reshape(7, 3),
                                                           ONEHOT_ABCABAA), 1.5791205),
    ("crossentropy of softmax", lambda: losses.crossentropy(
        _softmax(LOGITS_21.reshape(7, 3)), ONEHOT_ABCABAA), 1.5791197),
    ("binarycrossentropy", lambda: losses.binarycrossentropy(Y_PROB[:, 1], Y_BIN), 0.43989),
    ("crossentropy one-hot", lambda: losses.crossentropy(
        Y_PROB, np.eye(2, dtype=np.float32)[[1, 0, 1]]), 0.43989),
    ("logitbinarycrossentropy", lambda: losses.logitbinarycrossentropy(Y_MODEL, Y_BIN), 0.160832),
    ("binarycrossentropy of sigmoid", lambda: losses.binarycrossentropy(
        1 / (1 + np.exp(-Y_MODEL)), Y_BIN), 0.16083185),
    ("kldivergence", lambda: losses.kldivergence(P2, P1), math.log(2)),
    ("kldivergence sum", lambda: losses.kldivergence(P2, P1, agg=jnp.sum), 2 * math.log(2)),
    ("kldivergence same", lambda: losses.kldivergence(P2, P2, eps=0), 0.0, 0.0),
    ("kldivergence infinite", lambda: losses.kldivergence(P1, P2, eps=0), np.inf),
    ("poisson_loss", lambda: losses.poisson_loss(np.float32([1, 3, 3]), Y123), 0.5023128522198171),
    ("hinge_loss", lambda: losses.hinge_loss(Y_PRED, Y_TRUE), 0.55),
    ("hinge same sign |ŷ| < 1", lambda: losses.hinge_loss(Y_PRED[0], Y_TRUE[0]), 0.9),
    ("hinge same sign |ŷ| >= 1", lambda: losses.hinge_loss(Y_PRED[-1], Y_TRUE[-1]), 0.0, 0.0),
    ("hinge opposite signs", lambda: losses.hinge_loss(Y_PRED[1], Y_TRUE[1]), 1.3),
    ("squared_hinge_loss", lambda: losses.squared_hinge_loss(Y_PRED, Y_TRUE), 0.625),
    # float32 cancels digits in 1 - 0.999..., so 1 - loss is compared tightly
    ("1 - dice_coeff_loss", lambda: 1 - losses.dice_coeff_loss(np.float32([1.1, 2.1, 3.1]), Y123),
     0.99900760833609),
    ("dice_coeff_loss", lambda: losses.dice_coeff_loss(np.float32([1.1, 2.1, 3.1]), Y123),
     0.000992391663909964, 2e-7),
    ("binary_focal_loss", lambda: losses.binary_focal_loss(FOCAL_Y_HAT, FOCAL_Y), 0.0728675615927385),
    ("focal_loss", lambda: losses.focal_loss(SOFTMAX_15, ONEHOT_01210), 1.1277571935622628),
    ("siamese", lambda: losses.siamese_contrastive_loss(np.float32([0.5, 1.5, 2.5]), Y123),
     -4.833333333333333),
    ("siamese margin", lambda: losses.siamese_contrastive_loss(
        np.float32([0.5, 1.5, 2.5]), Y123, margin=2), -4.0),
]

V = math.log(0.1 / 0.9)
ONEHOT_1100 = np.eye(2, dtype=np.float32)[[1, 1, 0, 0]]
PROBS_4 = np.float32([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9]])
LOGITS_4 = np.float32([[V, 0], [0, V], [0, V], [V, 0]])
DICE_Y, DICE_Y_HAT = np.float32([1.0, 0.5, 0.3, 2.4]), np.float32([0, 1.4, 0.5, 1.2])
SIAMESE_Y_HAT = np.float32([[0.4, 0.2], [0.5, 0.5], [0.1, 0.3]])
SIAMESE_Y = np.float32([[1, 0], [0, 0], [0, 1]])
Y_HAT5, Y5 = np.float32([0.6, 0.4, 0.1, 0.2, 0.7]), np.float32([1, 0, 0, 1, 1])
sc = losses.siamese_contrastive_loss

FLUX_TESTSUITE_NUMBERS = [
    ("mse", lambda: losses.mse(np.float32([.9, .1, .1, .9]), np.float32([1, 1, 0, 0])),
     (0.1**2 + 0.9**2) / 2),
    ("mae", lambda: losses.mae(np.float32([.9, .1, .1, .9]), np.float32([1, 1, 0, 0])), 0.5),
    ("huber", lambda: losses.huber_loss(np.float32([.9, .1, .1, .9]), np.float32([1, 1, 0, 0])),
     0.20500000000000002),
    ("msle", lambda: losses.msle(np.float32([345, 332, 789]), np.float32([123, 456, 789])),
     0.38813985859136585),
    ("crossentropy", lambda: losses.crossentropy(PROBS_4, ONEHOT_1100), 1.203972804325936),
    ("crossentropy smoothed", lambda: losses.crossentropy(
        PROBS_4, losses.label_smoothing(ONEHOT_1100, 0.1)), 1.2039728043259348),
    ("logitcrossentropy", lambda: losses.logitcrossentropy(LOGITS_4, ONEHOT_1100),
     1.203972804325936),
    ("crossentropy exact", lambda: losses.crossentropy(ONEHOT_1100, ONEHOT_1100, eps=0), 0.0, 0.0),
    ("crossentropy zero class", lambda: losses.crossentropy(
        np.float32([0.1, 0.0, 0.9]), np.float32([0.1, 0.0, 0.9])), -(0.1 * math.log(0.1) + 0.9 * math.log(0.9))),
    ("label_smoothing", lambda: losses.label_smoothing(np.float32([[0, 1]]), 0.2), [[0.1, 0.9]]),
    ("kldivergence", lambda: losses.kldivergence(_col(4, 5, 6), _col(1, 2, 3)), -1.7661057888493457),
    ("kldivergence same", lambda: losses.kldivergence(_col(1, 2, 3), _col(1, 2, 3)), 0.0),
    ("hinge zero", lambda: losses.hinge_loss(_col(5, 6, 7, 8), _col(1, 2, 3, 4)), 0.0),
    ("hinge", lambda: losses.hinge_loss(_col(1, 2, 3, 4), _col(0.5, 1, 1.5, 2)), 0.125),
    ("squared_hinge", lambda: losses.squared_hinge_loss(_col(1, 2, 3, 4), _col(0.5, 1, 1.5, 2)),
     0.0625),
    ("poisson", lambda: losses.poisson_loss(_col(0.4, 0.5, 0.6), _col(0.1, 0.2, 0.3)),
     0.6278353988097339),
    ("poisson same", lambda: losses.poisson_loss(_col(0.1, 0.2, 0.3), _col(0.1, 0.2, 0.3)),
     0.5044459776946685),
    ("dice", lambda: losses.dice_coeff_loss(DICE_Y_HAT, DICE_Y), 0.2799999999999999),
    ("dice same", lambda: losses.dice_coeff_loss(DICE_Y, DICE_Y), 0.0, 1e-7),
    # Flux's test/losses.jl: tversky_loss(ŷ, y) with its default beta = 0.7
    ("tversky", lambda: losses.tversky_loss(DICE_Y_HAT, DICE_Y), -0.06772009029345383),
    ("tversky beta", lambda: losses.tversky_loss(DICE_Y_HAT, DICE_Y, beta=0.8),
     -0.09490740740740744),
    ("tversky same", lambda: losses.tversky_loss(DICE_Y, DICE_Y), -0.5576923076923075),
    ("binary_focal", lambda: losses.binary_focal_loss(
        np.float32([[0.6, 0.3], [0.4, 0.7]]), np.float32([[1, 0], [0, 1]])), 0.05691642237852222),
    ("binary_focal gamma 0 - bce", lambda: losses.binary_focal_loss(FOCAL_Y_HAT, FOCAL_Y, gamma=0.0)
     - losses.binarycrossentropy(FOCAL_Y_HAT, FOCAL_Y), 0.0),
    ("focal", lambda: losses.focal_loss(np.float32([[0.4, 0.5, 0.1], [0.2, 0.5, 0.3]]),
                                        np.float32([[1, 0, 0], [0, 0, 1]])), 0.45990566879720157),
    ("focal gamma 0 - crossentropy", lambda: losses.focal_loss(SOFTMAX_15, ONEHOT_01210, gamma=0)
     - losses.crossentropy(SOFTMAX_15, ONEHOT_01210), 0.0),
    ("siamese", lambda: sc(SIAMESE_Y_HAT, SIAMESE_Y), 0.2333333333333333),
    ("siamese 0.5", lambda: sc(SIAMESE_Y_HAT, SIAMESE_Y, margin=0.5), 0.10000000000000002),
    ("siamese 1.5", lambda: sc(SIAMESE_Y_HAT, SIAMESE_Y, margin=1.5), 0.5333333333333333),
    ("siamese 0", lambda: sc(SIAMESE_Y_HAT, SIAMESE_Y, margin=0), 0.09166666666666667),
    ("siamese softmax", lambda: sc(SOFTMAX_15, ONEHOT_01210), 0.32554644),
    ("siamese softmax 0.5", lambda: sc(SOFTMAX_15, ONEHOT_01210, margin=0.5), 0.16271012),
    ("siamese softmax 1.5", lambda: sc(SOFTMAX_15, ONEHOT_01210, margin=1.5), 0.6532292),
    ("siamese softmax 0", lambda: sc(SOFTMAX_15, ONEHOT_01210, margin=0), 0.13161165),
    ("siamese same", lambda: sc(SIAMESE_Y, SIAMESE_Y), 0.0),
    ("siamese vector", lambda: sc(Y_HAT5, Y5), 0.21200000000000005),
    ("siamese vector same", lambda: sc(Y_HAT5, Y_HAT5), 0.18800000000000003),
]


def test_flux_docstring_numbers():
    _check_table(FLUX_DOCSTRING_NUMBERS)


def test_flux_testsuite_numbers():
    _check_table(FLUX_TESTSUITE_NUMBERS)


def test_flux_docstring_label_smoothing_example():
    y = np.eye(2, dtype=np.float32)[[1, 1, 1, 0, 1, 0]]
    y_sim = _softmax(y * np.log(2.0))
    y_dis = y_sim[:, ::-1]

    @jax.jit
    def example(y):
        smoothed = losses.label_smoothing(y, 0.2)
        ce = [losses.crossentropy(p, t) for p in (y_sim, y_dis) for t in (y, smoothed)]
        return smoothed, ce

    smoothed, (sim, sim_smoothed, dis, dis_smoothed) = example(y)
    _close(smoothed[:, 1], [0.9, 0.9, 0.9, 0.1, 0.9, 0.1])
    assert sim < sim_smoothed and dis > dis_smoothed


# --------------------------------------------------------------------------
# PyTorch oracles


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def test_regression_losses_match_torch(torch):
    F = torch.nn.functional
    y_hat, y = _inputs("real", seed=3)
    t_hat, t = torch.from_numpy(y_hat), torch.from_numpy(y)
    _close(losses.mse(y_hat, y), F.mse_loss(t_hat, t).item())
    _close(losses.mae(y_hat, y), F.l1_loss(t_hat, t).item())
    for delta in (1.0, 0.4):
        _close(losses.huber_loss(y_hat, y, delta=delta), F.huber_loss(t_hat, t, delta=delta).item())
    _close(losses.mse(y_hat, y, agg=jnp.sum), F.mse_loss(t_hat, t, reduction="sum").item())


def test_probability_losses_match_torch(torch):
    F = torch.nn.functional
    logits, target = _inputs("logits_probs", seed=4)
    t_logits, t_target = torch.from_numpy(logits), torch.from_numpy(target)
    expected = F.cross_entropy(t_logits, t_target).item()  # probabilities as targets
    _close(losses.logitcrossentropy(logits, target), expected)
    probs = np.asarray(jax.nn.softmax(logits))
    _close(losses.crossentropy(probs, target, eps=0), expected)
    kl = F.kl_div(torch.from_numpy(np.log(probs)), t_target, reduction="batchmean").item()
    _close(losses.kldivergence(probs, target, eps=0), kl)

    p, y = _inputs("soft_binary", seed=5)
    _close(losses.binarycrossentropy(p, y, eps=0),
           F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(y)).item())
    z, y = _inputs("logit_binary", seed=6)
    _close(losses.logitbinarycrossentropy(z, y),
           F.binary_cross_entropy_with_logits(torch.from_numpy(z), torch.from_numpy(y)).item())

    rate, counts = _inputs("counts", seed=7)
    expected = F.poisson_nll_loss(torch.from_numpy(np.log(rate)), torch.from_numpy(counts),
                                  log_input=True).item()
    _close(losses.poisson_loss(rate, counts), expected)


# --------------------------------------------------------------------------
# ctc_loss

CTC_LABELS = [[0, 1, 2], [1, 1, 2], [3, 3, 3], [2], [], [0, 3, 0, 3]]


def _ctc_logits(seed, shape):
    return (np.random.default_rng(seed).normal(size=shape) * 2).astype(np.float32)


def _torch_ctc(torch, logits, labels, blank):
    """Per-sequence torch CTC losses for (batch, time, classes) logits."""
    logp = torch.from_numpy(logits).log_softmax(-1).transpose(0, 1)  # (time, batch, classes)
    flat = torch.tensor([label for seq in labels for label in seq], dtype=torch.long)
    return torch.nn.functional.ctc_loss(
        logp, flat, torch.full((len(labels),), logits.shape[1], dtype=torch.long),
        torch.tensor([len(s) for s in labels], dtype=torch.long), blank=blank, reduction="none",
    ).numpy()


def test_ctc_matches_nnlib_hand_calculated_values_and_gradients():
    # NNlib's test/ctc.jl: classes × time there, time × classes here
    x1 = np.float32([[1, 2, 3], [2, 1, 1], [3, 3, 2]]).T
    x2 = np.float32([[-3, 12, 8, 15], [4, 20, -2, 20], [8, -33, 6, 5]]).T
    value_and_grad = jax.value_and_grad(lambda p: losses.ctc_loss(p, [0, 1]))
    (v1, g1), v2 = jax.jit(lambda: (value_and_grad(x1), losses.ctc_loss(x2, [0, 1])))()
    _close(v1, 3.6990738275138035)
    _close(v2, 8.02519869363453)
    g = np.array([[-0.317671, -0.427729, 0.665241], [0.244728, -0.0196172, -0.829811],
                  [0.0729422, 0.447346, 0.16457]])
    _close(g1, g.T, atol=1e-5)


def test_ctc_batch_matches_torch_values_and_gradients(torch):
    logits = _ctc_logits(10, (len(CTC_LABELS), 9, 5))
    expected = _torch_ctc(torch, logits, CTC_LABELS, blank=4)
    _close(expected, [np_ctc(x, s, blank=4) for x, s in zip(logits, CTC_LABELS)])

    t_logits = torch.from_numpy(logits).requires_grad_()
    logp = t_logits.log_softmax(-1).transpose(0, 1)
    flat = torch.tensor([label for seq in CTC_LABELS for label in seq], dtype=torch.long)
    lengths = torch.tensor([len(s) for s in CTC_LABELS], dtype=torch.long)
    torch.nn.functional.ctc_loss(logp, flat, torch.full((6,), 9, dtype=torch.long),
                                 lengths, blank=4, reduction="sum").backward()

    @jax.jit
    def run(x):
        aggs = [None, jnp.mean, jnp.sum, lambda l: l[1]]
        grad = jax.grad(lambda p: losses.ctc_loss(p, CTC_LABELS, agg=jnp.sum))(x)
        return [losses.ctc_loss(x, CTC_LABELS, agg=agg) for agg in aggs], grad

    (unreduced, mean, total, second), grad = run(logits)
    _close(unreduced, expected)
    _close(mean, expected.mean())
    _close(total, expected.sum())
    _close(second, expected[1])
    assert bool(jnp.all(jnp.isfinite(grad)))
    _close(grad, t_logits.grad.numpy(), atol=1e-5)


def test_ctc_single_sequence_matches_numpy():
    x = _ctc_logits(10, (2, 9, 5))  # repeated labels need a blank between them

    @jax.jit
    def run(x):
        return (losses.ctc_loss(x[0], [1, 1, 2]), losses.ctc_loss(x[1], []),
                losses.ctc_loss(x[0], np.array([1, 1, 2], np.int32), blank=4, agg=jnp.sum))

    repeated, empty, repeated_array = run(x)
    _close(repeated, np_ctc(x[0], [1, 1, 2], blank=4))
    _close(repeated_array, np_ctc(x[0], [1, 1, 2], blank=4))
    _close(empty, np_ctc(x[1], [], blank=4))


def test_ctc_blank_first_and_equal_length_label_array(torch):
    logits = _ctc_logits(11, (3, 7, 4))
    labels = np.array([[1, 2], [2, 2], [3, 1]])
    expected = _torch_ctc(torch, logits, labels.tolist(), blank=0)
    _close(losses.ctc_loss(logits, labels, blank=0, agg=None), expected)
    _close(losses.ctc_loss(logits, jnp.asarray(labels), blank=0, agg=None), expected)
    _close(expected, [np_ctc(x, s, 0) for x, s in zip(logits, labels.tolist())])


def test_ctc_under_jit_with_traced_labels():
    logits = _ctc_logits(12, (6, 4))
    batch = np.stack([logits, logits[::-1]])

    @jax.jit
    def run(x, labels, batch):
        return losses.ctc_loss(x, labels), losses.ctc_loss(batch, [[1], [0, 2]], agg=None)

    single, per_sequence = run(logits, jnp.array([0, 0, 2]), batch)
    _close(single, np_ctc(logits, [0, 0, 2], 3))
    _close(per_sequence, [np_ctc(logits, [1], 3), np_ctc(logits[::-1], [0, 2], 3)])


def test_ctc_impossible_alignment_is_inf_with_finite_gradient():
    logits = _ctc_logits(13, (2, 3))  # [0, 0] needs three steps: 0, blank, 0
    value, grad = jax.jit(jax.value_and_grad(lambda p: losses.ctc_loss(p, [0, 0])))(logits)
    assert value == np.inf
    assert bool(jnp.all(jnp.isfinite(grad)))


def test_ctc_errors():
    logits = _ctc_logits(14, (5, 4))
    with pytest.raises(ValueError, match="label 3 is not a class index in \\[0, 4\\) other than the blank 3"):
        losses.ctc_loss(logits, [0, 3])
    with pytest.raises(ValueError, match="label 4 is not a class index"):
        losses.ctc_loss(logits, [4])
    with pytest.raises(ValueError, match="labels must be integers"):
        losses.ctc_loss(logits, [0.5])
    with pytest.raises(ValueError, match="y_hat holds 2 sequences but y has 1 label sequences"):
        losses.ctc_loss(np.stack([logits, logits]), [[0]])
    with pytest.raises(ValueError, match=r"shape \(time, classes\) or \(batch, time, classes\)"):
        losses.ctc_loss(logits[0], [0])
    with pytest.raises(ValueError, match="blank=4 is not a class index for 4 classes"):
        losses.ctc_loss(logits, [0], blank=4)
    with pytest.raises(ValueError, match="1-D label sequence"):
        losses.ctc_loss(logits, [[0]])
