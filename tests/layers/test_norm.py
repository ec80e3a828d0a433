"""Normalisation layers against torch.nn with the same weights, and the
running statistics carried through fl.gradient and jax.jit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fluxlike as fl

TOL = dict(rtol=1e-5, atol=1e-5)


@jax.jit
def call(m, x):
    """The layer's output and the layer with the state it updated, in one compiled
    call (eager calls compile every operation separately)."""
    return m(x), m


def rand(*shape, seed=0, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).normal(size=shape) * scale + shift).astype(np.float32)


def nchw(x):  # NHWC numpy -> NCHW torch
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def nhwc(t):  # NCHW torch -> NHWC numpy
    return np.moveaxis(t.detach().numpy(), 1, -1)


def set_affine(layer, tlayer, c, seed):
    g, b = rand(c, seed=seed, scale=0.5, shift=1.0), rand(c, seed=seed + 1)
    layer.scale, layer.bias = jnp.asarray(g), jnp.asarray(b)
    with torch.no_grad():
        tlayer.weight.copy_(torch.from_numpy(g))
        tlayer.bias.copy_(torch.from_numpy(b))


# ---------------------------------------------------------------------------
# BatchNorm


def test_batchnorm_train_step_matches_torch_output_grads_and_running_stats():
    x = rand(4, 3, 5, 2, scale=3.0, shift=1.0)  # NHWC
    w = rand(4, 3, 5, 2, seed=7)
    bn, tbn = fl.BatchNorm(2), torch.nn.BatchNorm2d(2)
    set_affine(bn, tbn, 2, seed=1)
    xt = nchw(x).requires_grad_(True)
    yt = tbn(xt)
    (yt * nchw(w)).sum().backward()

    def loss(m):
        y = m(x)
        return jnp.sum(y * w), y

    ((_, y), (g,)), bn = jax.jit(lambda m: (fl.withgradient(loss, m), m))(bn)
    np.testing.assert_allclose(y, nhwc(yt), **TOL)
    np.testing.assert_allclose(g.scale, tbn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(g.bias, tbn.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
    assert g.mean is None and g.var is None  # state is not differentiated
    # the statistics were carried out of gradient; torch also uses the unbiased variance
    np.testing.assert_allclose(bn.mean, tbn.running_mean.numpy(), **TOL)
    np.testing.assert_allclose(bn.var, tbn.running_var.numpy(), **TOL)
    # the gradient with respect to the input flows through the batch statistics
    gx = jax.jit(jax.grad(lambda x: jnp.sum(fl.BatchNorm(2, active=True)(x) * w)))(x)
    tx = nchw(x).requires_grad_(True)
    (torch.nn.BatchNorm2d(2)(tx) * nchw(w)).sum().backward()
    np.testing.assert_allclose(gx, nhwc(tx.grad), rtol=1e-4, atol=1e-4)


def test_batchnorm_statistics_update_is_not_differentiated():
    x = jnp.asarray(rand(6, 3, shift=2.0))

    def new_stats(x):
        m = fl.BatchNorm(3, active=True)
        m(x)
        return m.mean.sum() + m.var.sum()

    val, grad = jax.jit(jax.value_and_grad(new_stats))(x)
    assert float(val) != 3.0  # the statistics did move
    np.testing.assert_array_equal(grad, np.zeros((6, 3)))


def test_batchnorm_features_two_steps_then_test_mode_match_torch():
    bn, tbn = fl.BatchNorm(3, momentum=0.3, eps=1e-3), torch.nn.BatchNorm1d(3, momentum=0.3, eps=1e-3)
    set_affine(bn, tbn, 3, seed=2)
    fl.trainmode_(bn)
    for s in (10, 11):
        xb = rand(5, 3, seed=s, scale=2.0, shift=-1.0)
        y, bn = call(bn, xb)
        np.testing.assert_allclose(y, tbn(torch.from_numpy(xb)).detach().numpy(), **TOL)
    np.testing.assert_allclose(bn.var, tbn.running_var.numpy(), **TOL)
    fl.testmode_(bn, None)  # automatic: test mode outside gradient, running statistics
    tbn.eval()
    xt = rand(2, 3, seed=12)
    y, bn2 = call(bn, xt)
    np.testing.assert_allclose(y, tbn(torch.from_numpy(xt)).detach().numpy(), **TOL)
    np.testing.assert_array_equal(bn2.mean, bn.mean)  # test mode leaves the statistics alone


def test_batchnorm_without_stats_or_affine_uses_batch_statistics_always():
    bn = fl.BatchNorm(2, affine=False, track_stats=False)
    assert bn.scale is None and bn.mean is None and fl.params(bn) == []
    x = rand(4, 3, 3, 2, seed=3)
    t = torch.nn.BatchNorm2d(2, affine=False, track_running_stats=False).eval()
    np.testing.assert_allclose(call(bn, x)[0], nhwc(t(nchw(x))), **TOL)


def test_jitted_step_carries_batchnorm_statistics_and_leaves_the_input_model_alone():
    @jax.jit
    def step(m, x):
        loss, _ = fl.withgradient(lambda m: jnp.sum(m(x) ** 2), m)
        return m, loss

    bn = fl.BatchNorm(3)
    model = bn
    mu, var = np.zeros(3), np.ones(3)
    for s in (20, 21):
        xb = rand(8, 3, seed=s, shift=s - 20.0)
        model, _ = step(model, xb)
        mu = 0.9 * mu + 0.1 * xb.mean(0)
        var = 0.9 * var + 0.1 * xb.var(0, ddof=1)
    np.testing.assert_allclose(model.mean, mu, **TOL)
    np.testing.assert_allclose(model.var, var, **TOL)
    np.testing.assert_array_equal(bn.mean, np.zeros(3))  # the caller's object is untouched


def test_train_carries_batchnorm_statistics_across_batches():
    x = rand(12, 2, seed=30, shift=3.0)
    model = fl.Chain(fl.BatchNorm(2))
    opt = fl.setup(fl.Descent(0.1), model)
    fl.train_(lambda m, xb: jnp.mean(m(xb) ** 2), model, fl.DataLoader(x, batchsize=6), opt)
    mu, var = np.zeros(2), np.ones(2)
    for xb in (x[:6], x[6:]):
        mu, var = 0.9 * mu + 0.1 * xb.mean(0), 0.9 * var + 0.1 * xb.var(0, ddof=1)
    np.testing.assert_allclose(model[0].mean, mu, **TOL)
    np.testing.assert_allclose(model[0].var, var, **TOL)


def test_closing_over_batchnorm_in_jit_in_train_mode_raises():
    bn = fl.BatchNorm(2)
    x = rand(4, 2)
    with pytest.raises(RuntimeError, match="tracer leak"):
        jax.jit(lambda x: fl.gradient(lambda m: m(x).sum(), bn))(x)
    fl.trainmode_(bn)
    with pytest.raises(RuntimeError, match="tracer leak"):
        jax.jit(lambda x: bn(x))(x)
    fl.testmode_(bn)  # test mode writes nothing, so closing over is fine
    jax.jit(lambda x: bn(x))(x)


def test_batchnorm_errors_name_the_layer_and_sizes():
    bn = fl.BatchNorm(3)
    with pytest.raises(ValueError, match=r"BatchNorm\(3\) expects .*3 channels.*\(4, 2\)"):
        bn(jnp.ones((4, 2)))
    with pytest.raises(ValueError, match=r"BatchNorm\(3, active=True\).*one value per channel.*testmode_"):
        fl.trainmode_(bn)(jnp.ones((1, 3)))
    fl.testmode_(bn)(jnp.ones((1, 3)))  # a single sample is fine at inference
    with pytest.raises(ValueError, match="positive int"):
        fl.BatchNorm(0)


# ---------------------------------------------------------------------------
# LayerNorm, GroupNorm, InstanceNorm


def test_layernorm_normalises_each_sample_over_the_last_axes_like_torch():
    x = rand(3, 5, scale=4.0, shift=2.0)
    ln = fl.LayerNorm(5)
    y = np.asarray(call(ln, x)[0])
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(-1), 1, rtol=1e-4)
    x4 = rand(2, 3, 4, 5, seed=4)
    ln, tln = fl.LayerNorm(4, 5), torch.nn.LayerNorm((4, 5))
    g, b = rand(4, 5, seed=5), rand(4, 5, seed=6)
    ln.scale, ln.bias = jnp.asarray(g), jnp.asarray(b)
    with torch.no_grad():
        tln.weight.copy_(torch.from_numpy(g))
        tln.bias.copy_(torch.from_numpy(b))
    np.testing.assert_allclose(call(ln, x4)[0], tln(torch.from_numpy(x4)).detach().numpy(), **TOL)
    assert ln.scale.shape == (4, 5)
    ref = torch.relu(torch.nn.functional.layer_norm(torch.from_numpy(x), (5,)))
    np.testing.assert_allclose(call(fl.LayerNorm(5, fl.relu), x)[0], ref.numpy(), **TOL)
    with pytest.raises(ValueError, match=r"LayerNorm\(4, 5\) normalises the last 2 axes.*\(4, 5\).*\(2, 5, 4\)"):
        ln(jnp.ones((2, 5, 4)))


def test_groupnorm_matches_torch_on_images_and_feature_vectors():
    x = rand(2, 3, 3, 6, seed=8, scale=2.0)
    gn, tgn = fl.GroupNorm(6, 3), torch.nn.GroupNorm(3, 6)
    set_affine(gn, tgn, 6, seed=9)
    np.testing.assert_allclose(call(gn, x)[0], nhwc(tgn(nchw(x))), **TOL)
    x2 = rand(4, 6, seed=10)
    np.testing.assert_allclose(call(gn, x2)[0], tgn(torch.from_numpy(x2)).detach().numpy(), **TOL)
    with pytest.raises(ValueError, match="groups .3. must divide the number of channels .4."):
        fl.GroupNorm(4, 3)
    with pytest.raises(ValueError, match=r"GroupNorm\(6, 3\) expects .*6 channels"):
        gn(jnp.ones((2, 3, 3, 4)))


def test_instancenorm_matches_torch_with_and_without_affine():
    x = rand(2, 4, 3, 3, seed=11, scale=2.0, shift=1.0)
    np.testing.assert_allclose(call(fl.InstanceNorm(3), x)[0], nhwc(torch.nn.InstanceNorm2d(3)(nchw(x))), **TOL)
    inn, tin = fl.InstanceNorm(3, affine=True), torch.nn.InstanceNorm2d(3, affine=True)
    set_affine(inn, tin, 3, seed=12)
    np.testing.assert_allclose(call(inn, x)[0], nhwc(tin(nchw(x))), **TOL)
    with pytest.raises(ValueError, match=r"InstanceNorm\(3, affine=False\) .*spatial axis.*\(4, 3\)"):
        fl.InstanceNorm(3)(jnp.ones((4, 3)))


def test_instancenorm_tracked_statistics_match_torch():
    x = rand(3, 4, 5, 2, seed=13, scale=2.0, shift=-1.0)
    inn = fl.InstanceNorm(2, track_stats=True)
    tin = torch.nn.InstanceNorm2d(2, track_running_stats=True)
    y, inn = call(fl.trainmode_(inn), x)
    np.testing.assert_allclose(y, nhwc(tin(nchw(x))), **TOL)
    np.testing.assert_allclose(inn.mean, tin.running_mean.numpy(), **TOL)
    np.testing.assert_allclose(inn.var, tin.running_var.numpy(), **TOL)
    xt = rand(1, 4, 5, 2, seed=14)
    np.testing.assert_allclose(call(fl.testmode_(inn), xt)[0], nhwc(tin.eval()(nchw(xt))), **TOL)


def test_norm_reprs_follow_flux():
    assert repr(fl.BatchNorm(64, fl.relu)) == "BatchNorm(64, relu)  # 128 parameters, plus 128 non-trainable"
    assert repr(fl.BatchNorm(2, affine=False, active=True)).startswith("BatchNorm(2, affine=False, active=True)")
    assert repr(fl.LayerNorm(5)) == "LayerNorm(5)  # 10 parameters"
    assert repr(fl.LayerNorm(3, 4, fl.relu, affine=False)) == "LayerNorm(3, 4, relu, affine=False)"
    assert repr(fl.GroupNorm(4, 2)) == "GroupNorm(4, 2)  # 8 parameters"
    assert repr(fl.InstanceNorm(3)) == "InstanceNorm(3, affine=False)"
    assert "non-trainable" in str(fl.Chain(fl.Dense(2, 3), fl.BatchNorm(3)))


# ---------------------------------------------------------------------------
# mixed precision under fl.f16 (Flux's `_keep_f32_under_halfprec`)


def _set_bn(bn, c, seed):
    """Non-trivial affine parameters and running statistics, float32."""
    bn.scale, bn.bias = jnp.asarray(rand(c, seed=seed, scale=0.5, shift=1.0)), jnp.asarray(rand(c, seed=seed + 1))
    bn.mean, bn.var = jnp.asarray(rand(c, seed=seed + 2)), jnp.asarray(rand(c, seed=seed + 3, scale=0.2, shift=1.5))


def _f32(a):
    return np.asarray(a).astype(np.float32)


def _half(a):  # what a float16 layer output holds: the float32 value rounded to float16
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def _groupnorm_ref(x, g, scale, bias, eps=1e-5):
    xg = x.reshape(*x.shape[:-1], g, x.shape[-1] // g)
    axes = (*range(1, xg.ndim - 2), xg.ndim - 1)
    mean, var = xg.mean(axes, keepdims=True), xg.var(axes, keepdims=True)
    return ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape) * scale + bias


def test_f16_keeps_norm_statistics_and_affine_in_float32_and_f32_undoes_it():
    m = fl.Chain(
        fl.Conv((3, 3), 2, 4, pad=1),
        fl.BatchNorm(4), fl.GroupNorm(4, 2), fl.InstanceNorm(4, affine=True, track_stats=True), fl.LayerNorm(4),
    )
    h = fl.f16(m)
    assert h[0].weight.dtype == h[0].bias.dtype == jnp.float16
    for layer in (h[1], h[3]):  # Flux keeps β, γ, μ, σ² of BatchNorm and InstanceNorm in Float32
        assert layer.scale.dtype == layer.bias.dtype == layer.mean.dtype == layer.var.dtype == jnp.float32
    assert h[2].scale.dtype == h[2].bias.dtype == jnp.float32  # GroupNorm's β, γ
    assert h[4].scale.dtype == h[4].bias.dtype == jnp.float16  # LayerNorm converts fully, as Flux's
    assert m[0].weight.dtype == jnp.float32  # the original is untouched
    y = h(jnp.asarray(rand(2, 5, 5, 2), jnp.float16))
    assert y.dtype == jnp.float16
    assert {a.dtype for a in jax.tree.leaves(fl.f32(h))} == {jnp.dtype(jnp.float32)}
    with jax.enable_x64(True):  # f64 converts everything, statistics included (Flux's f64)
        assert {a.dtype for a in jax.tree.leaves(fl.f64(h))} == {jnp.dtype(jnp.float64)}
        assert fl.f16(fl.f64(m))[1].mean.dtype == jnp.float32  # f16 of a float64 model: float32, as Flux's f32


def test_f16_batchnorm_groupnorm_forward_matches_float32_formula_in_test_and_train_mode():
    m = fl.Chain(fl.Dense(3, 4, key=5), fl.BatchNorm(4), fl.GroupNorm(4, 2))
    _set_bn(m[1], 4, seed=40)
    m[2].scale, m[2].bias = jnp.asarray(rand(4, seed=44, shift=1.0)), jnp.asarray(rand(4, seed=45))
    h = fl.f16(m)
    x = jnp.asarray(rand(6, 3, seed=46), jnp.float16)
    # the reference: numpy float32 from the float16 weights and input
    W, b = _f32(h[0].weight), _f32(h[0].bias)
    g, beta, mu, var = (_f32(getattr(m[1], k)) for k in ("scale", "bias", "mean", "var"))
    d = _half(_f32(x) @ W.T + b)  # Dense's float16 output

    y, _ = call(fl.testmode_(h), x)  # running statistics
    bn = _half((d - mu) / np.sqrt(var + 1e-5) * g + beta)
    want = _groupnorm_ref(bn, 2, _f32(m[2].scale), _f32(m[2].bias))
    assert y.dtype == jnp.float16
    np.testing.assert_allclose(_f32(y), want, rtol=1e-2, atol=1e-2)

    y, h2 = call(fl.trainmode_(h), x)  # batch statistics, running ones updated in float32
    bn = _half((d - d.mean(0)) / np.sqrt(d.var(0) + 1e-5) * g + beta)
    want = _groupnorm_ref(bn, 2, _f32(m[2].scale), _f32(m[2].bias))
    assert y.dtype == jnp.float16
    np.testing.assert_allclose(_f32(y), want, rtol=1e-2, atol=1e-2)
    assert h2[1].mean.dtype == h2[1].var.dtype == jnp.float32
    np.testing.assert_allclose(h2[1].mean, 0.9 * mu + 0.1 * d.mean(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(h2[1].var, 0.9 * var + 0.1 * d.var(0, ddof=1), rtol=1e-3, atol=1e-3)


def test_f16_training_step_and_epoch_keep_batchnorm_in_float32():
    m = fl.f16(fl.Chain(fl.Dense(3, 4, key=6), fl.BatchNorm(4)))
    x = jnp.asarray(rand(12, 3, seed=50), jnp.float16)
    y = jnp.asarray(rand(12, 4, seed=51), jnp.float16)
    loss = lambda m, xb, yb: jnp.mean((m(xb) - yb) ** 2)
    opt = fl.setup(fl.Adam(), m)
    d = _half(_f32(x[:6]) @ _f32(m[0].weight).T + _f32(m[0].bias))  # before the step
    grads = fl.gradient(loss, m, x[:6], y[:6])[0]  # train mode: the statistics are written into m
    assert grads[0].weight.dtype == jnp.float16 and grads[1].scale.dtype == jnp.float32
    np.testing.assert_allclose(m[1].mean, 0.1 * d.mean(0), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(m[1].var, 0.9 + 0.1 * d.var(0, ddof=1), rtol=1e-3, atol=1e-3)
    opt, m = fl.update(opt, m, grads)
    assert m[0].weight.dtype == jnp.float16
    assert m[1].scale.dtype == m[1].mean.dtype == m[1].var.dtype == jnp.float32
    before = np.asarray(m[1].mean)
    losses = fl.train_(loss, m, fl.DataLoader((x, y), batchsize=6), opt)
    assert np.all(np.isfinite(losses)) and len(losses) == 2
    assert m[0].weight.dtype == jnp.float16
    assert m[1].scale.dtype == m[1].bias.dtype == m[1].mean.dtype == m[1].var.dtype == jnp.float32
    assert not np.array_equal(m[1].mean, before)  # the epoch moved the statistics
