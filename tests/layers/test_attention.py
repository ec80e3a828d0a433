"""MultiHeadAttention against torch.nn.MultiheadAttention (batch_first, same
weights), and its gradient against finite differences."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from jax.flatten_util import ravel_pytree

import fluxlike as fl

RNG = np.random.default_rng(0)


def _randn(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _from_torch(tm, mha, bias):
    """Copy torch's projection weights (and biases) into `mha`."""
    E = tm.embed_dim
    if tm._qkv_same_embed_dim:
        wq, wk, wv = tm.in_proj_weight.detach().numpy().reshape(3, E, E)
    else:
        wq, wk, wv = (w.detach().numpy() for w in (tm.q_proj_weight, tm.k_proj_weight, tm.v_proj_weight))
    for proj, w in zip((mha.q_proj, mha.k_proj, mha.v_proj), (wq, wk, wv)):
        proj.weight = jnp.asarray(w)
    mha.out_proj.weight = jnp.asarray(tm.out_proj.weight.detach().numpy())
    if bias:
        with torch.no_grad():  # torch starts its biases at zero: make them count
            tm.in_proj_bias.copy_(torch.randn(3 * E))
            tm.out_proj.bias.copy_(torch.randn(E))
        bq, bk, bv = tm.in_proj_bias.detach().numpy().reshape(3, E)
        for proj, b in zip((mha.q_proj, mha.k_proj, mha.v_proj), (bq, bk, bv)):
            proj.bias = jnp.asarray(b)
        mha.out_proj.bias = jnp.asarray(tm.out_proj.bias.detach().numpy())


def _torch(tm, q, k, v, **kw):
    t = lambda a: torch.from_numpy(np.asarray(a))
    with torch.no_grad():
        y, w = tm(t(q), t(k), t(v), average_attn_weights=False, **kw)
    return y.numpy(), w.numpy()


def test_cross_attention_with_key_padding_and_bias_matches_torch():
    E, H, kdim = 8, 2, 6
    tm = torch.nn.MultiheadAttention(E, H, bias=True, kdim=kdim, vdim=kdim, batch_first=True)
    mha = fl.MultiHeadAttention(((E, kdim, kdim), E, E), nheads=H, bias=True)
    _from_torch(tm, mha, bias=True)
    q, kv, v = _randn(3, 4, E), _randn(3, 5, kdim), _randn(3, 5, kdim)
    pad = np.zeros((3, 5), bool)
    pad[1, 3:] = True  # sample 1 has 3 real keys
    pad[2, 4] = True
    # key padding mask: torch's True = ignore; ours True = attend
    y, a = mha(q, kv, v, mask=jnp.asarray(~pad)[:, None, None, :])
    ty, ta = _torch(tm, q, kv, v, key_padding_mask=torch.from_numpy(pad))
    assert y.shape == (3, 4, E) and a.shape == (3, H, 4, 5)
    np.testing.assert_allclose(y, ty, atol=1e-5)
    np.testing.assert_allclose(a, ta, atol=1e-5)
    assert np.all(np.asarray(a)[1, :, :, 3:] == 0)
    # mha(q, kv) is mha(q, kv, kv); an additive bias is torch's float attn_mask
    b = _randn(4, 5)
    y, a = mha(q, kv, bias=b)
    ty, ta = _torch(tm, q, kv, kv, attn_mask=torch.from_numpy(b))
    np.testing.assert_allclose(y, ty, atol=1e-5)
    np.testing.assert_allclose(a, ta, atol=1e-5)
    # torch's default weights are the mean over heads
    with torch.no_grad():
        _, tmean = tm(*(torch.from_numpy(z) for z in (q, kv, kv)), attn_mask=torch.from_numpy(b))
    np.testing.assert_allclose(np.asarray(a).mean(1), tmean.numpy(), atol=1e-5)


def test_causal_self_attention_matches_torch():
    E, H, L = 8, 2, 4
    tm = torch.nn.MultiheadAttention(E, H, bias=False, batch_first=True)  # Flux's default: no biases
    mha = fl.MultiHeadAttention(E, nheads=H)
    _from_torch(tm, mha, bias=False)
    x = _randn(3, L, E)
    causal = fl.make_causal_mask(x)
    np.testing.assert_array_equal(causal, np.tril(np.ones((L, L), bool)))
    pad = np.zeros((3, L), bool)
    pad[0, 2:] = True
    y, a = mha(x, mask=causal & jnp.asarray(~pad)[:, None, None, :])  # self-attention: mha(q)
    ty, ta = _torch(tm, x, x, x, attn_mask=torch.from_numpy(~np.asarray(causal)),
                    key_padding_mask=torch.from_numpy(pad))
    np.testing.assert_allclose(y, ty, atol=1e-5)
    np.testing.assert_allclose(a, ta, atol=1e-5)
    # an unbatched sequence (len, features), as torch also accepts
    y1, a1 = mha(x[1], mask=causal)
    ty1, ta1 = _torch(tm, x[1], x[1], x[1], is_causal=True, attn_mask=torch.from_numpy(~np.asarray(causal)))
    np.testing.assert_allclose(y1, ty1, atol=1e-5)
    np.testing.assert_allclose(a1, ta1, atol=1e-5)


def test_gradient_matches_finite_differences():
    with jax.enable_x64(True):
        mha = fl.MultiHeadAttention(((4, 3, 5), (4, 6), 2), nheads=2, bias=True, dtype=jnp.float64, key=1)
        mha.q_proj.bias = jnp.asarray(RNG.standard_normal(4))  # nonzero biases
        q, k, v = (jnp.asarray(RNG.standard_normal(s)) for s in ((2, 3, 4), (2, 3, 3), (2, 3, 5)))
        mask = fl.make_causal_mask(q)

        def loss(m, q):  # Flux's test loss: both outputs count
            y, a = m(q, k, v, mask=mask)
            return jnp.sum(y**2) + jnp.sum(a**2)

        gm, gq = jax.jit(lambda m, q: fl.gradient(loss, m, q))(mha, q)
        flat, unflatten = ravel_pytree((mha, q))
        exact, _ = ravel_pytree((gm, gq))
        assert exact.shape == flat.shape  # a gradient for every parameter and for q

        @jax.jit
        def central_difference(d, eps=1e-6):
            f = lambda s: loss(*unflatten(flat + s * d))
            return (f(eps) - f(-eps)) / (2 * eps)

        for _ in range(3):
            d = jnp.asarray(RNG.standard_normal(flat.shape))
            np.testing.assert_allclose(jnp.vdot(exact, d), central_difference(d), rtol=1e-6)
        d = jnp.zeros_like(flat).at[-q.size:].set(RNG.standard_normal(q.size))  # q alone
        np.testing.assert_allclose(jnp.vdot(exact, d), central_difference(d), rtol=1e-6)


def test_attention_dropout_is_train_mode_only_and_advances_its_key():
    E, H = 8, 2
    tm = torch.nn.MultiheadAttention(E, H, bias=False, batch_first=True)
    mha = fl.MultiHeadAttention(E, nheads=H, dropout_prob=0.5, key=3)
    _from_torch(tm, mha, bias=False)
    tm.eval()
    x = _randn(3, 4, E)
    _, ta = _torch(tm, x, x, x)
    y, a = mha(x)  # test mode outside gradient: no dropout
    np.testing.assert_allclose(a, ta, atol=1e-5)
    fl.trainmode_(mha)
    key0 = mha.attn_drop.key
    _, a1 = mha(x)
    a1 = np.asarray(a1)
    kept = a1 != 0
    assert 0.2 < kept.mean() < 0.8
    np.testing.assert_allclose(a1[kept], 2 * ta[kept], rtol=1e-5)  # kept scores scaled by 1/(1-p)
    assert not np.array_equal(mha.attn_drop.key, key0)
    # inside gradient (automatic mode) the new key is carried out to the model,
    # and a jitted step that returns the model returns the new key
    fl.trainmode_(mha, None)

    @jax.jit
    def step(m):
        g = fl.gradient(lambda m: m(x)[0].sum(), m)[0]
        return m, g

    new, g = step(mha)
    assert not np.array_equal(new.attn_drop.key, mha.attn_drop.key)
    assert g.attn_drop is None or g.attn_drop.key is None  # state gets no gradient


def test_repr_follows_flux():
    # Flux's own printing test cases, with Python's keyword syntax
    assert repr(fl.MultiHeadAttention(((3, 4, 5), (6, 7), 8), nheads=1)) == (
        "MultiHeadAttention((3, 4, 5) => (6, 7) => 8, nheads=1)  # 133 parameters")
    assert repr(fl.MultiHeadAttention((3, (6, 7), 8), nheads=1)).startswith(
        "MultiHeadAttention(3 => (6, 7) => 8, nheads=1)  # ")
    assert repr(fl.MultiHeadAttention((3, 6, 8), nheads=1)).startswith("MultiHeadAttention(3 => 6 => 8, nheads=1)  #")
    assert repr(fl.MultiHeadAttention(8, bias=True)) == (
        "MultiHeadAttention(8, nheads=8, bias=True)  # 288 parameters")


def test_errors_name_the_layer_and_sizes():
    mha = fl.MultiHeadAttention(8, nheads=2)
    with pytest.raises(ValueError, match=r"MultiHeadAttention\(8, nheads=2\) expects q .* got q \(2, 3, 7\)"):
        mha(jnp.ones((2, 3, 7)))
    with pytest.raises(ValueError, match=r"same batch axes and kv_len"):
        mha(jnp.ones((2, 3, 8)), jnp.ones((2, 4, 8)), jnp.ones((2, 5, 8)))
    q = jnp.ones((2, 3, 8))
    with pytest.raises(ValueError, match=r"mask of shape \(4, 4\) does not broadcast .* \(2, 2, 3, 3\)"):
        mha(q, mask=jnp.ones((4, 4), bool))
    with pytest.raises(TypeError, match="mask must be boolean"):
        mha(q, mask=jnp.ones((3, 3)))
    with pytest.raises(ValueError, match="bias of shape"):
        mha(q, q, q, jnp.ones((2, 3, 5, 3)))
    with pytest.raises(ValueError, match="qk size 6 must be divisible by nheads=4"):
        fl.MultiHeadAttention(6, nheads=4)
    with pytest.raises(ValueError, match="cannot read dims"):
        fl.MultiHeadAttention((3, 4))
