"""Recurrent cells and sequence layers against torch.nn with the same weights
(outputs, final states and gradients), GRUv3 against its formula, LSTMCell
gradients against finite differences."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fluxlike as fl

TOL = dict(rtol=1e-5, atol=1e-5)
_RNG = np.random.default_rng(0)


def np_init(key, shape, dtype):
    """Weights drawn by numpy, so that the tests do not compile JAX's random
    initialiser for every weight shape (the default one runs in the doctests)."""
    return jnp.asarray(_RNG.uniform(-0.6, 0.6, size=shape), dtype)


INIT = dict(init_kernel=np_init, init_recurrent_kernel=np_init)


@jax.jit
def call(m, *args):
    """A layer called in one compiled program (eager calls compile every operation)."""
    return m(*args)


def rand(*shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def torch_twin(cell, torch_module):
    """Give a torch RNN/LSTM/GRU (or its Cell) the weights of a fluxlike cell.

    Flux has one bias; torch has bias_ih + bias_hh. For the GRU the last third
    of bias_hh sits inside r * (...), which Flux does not have: it stays zero."""
    g, out = cell.Wi.shape[0] // cell.Wh.shape[1], cell.Wh.shape[1]
    b_ih, b_hh = rand(g * out, seed=1), rand(g * out, seed=2)
    if isinstance(cell, fl.GRUCell):
        b_hh[2 * out:] = 0
    cell.bias = jnp.asarray(b_ih + b_hh)
    sfx = "_l0" if not isinstance(torch_module, torch.nn.RNNCellBase) else ""
    with torch.no_grad():
        getattr(torch_module, "weight_ih" + sfx).copy_(torch.from_numpy(np.array(cell.Wi)))
        getattr(torch_module, "weight_hh" + sfx).copy_(torch.from_numpy(np.array(cell.Wh)))
        getattr(torch_module, "bias_ih" + sfx).copy_(torch.from_numpy(b_ih))
        getattr(torch_module, "bias_hh" + sfx).copy_(torch.from_numpy(b_hh))
    return torch_module


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_sequence_layer_matches_torch_outputs_and_final_state(kind):
    B, T, I, H = 2, 4, 3, 5
    layer = getattr(fl, kind)(I, H, return_state=True, key=0, **INIT)
    tmod = torch_twin(layer.cell, getattr(torch.nn, kind)(I, H, batch_first=True))
    x = rand(B, T, I, seed=3)
    h0 = rand(B, H, seed=5)
    state = (h0, rand(B, H, seed=6)) if kind == "LSTM" else h0
    tstate = tuple(torch.from_numpy(s)[None] for s in state) if kind == "LSTM" else torch.from_numpy(h0)[None]
    ty, tfinal = tmod(torch.from_numpy(x), tstate)
    y, final = call(layer, x, state)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    if kind == "LSTM":
        np.testing.assert_allclose(final[0], tfinal[0][0].detach().numpy(), **TOL)
        np.testing.assert_allclose(final[1], tfinal[1][0].detach().numpy(), **TOL)
    else:
        np.testing.assert_allclose(final, tfinal[0].detach().numpy(), **TOL)


def test_lstm_gradients_through_the_sequence_match_torch():
    lstm = fl.LSTM(3, 5, key=0, **INIT)
    tl = torch_twin(lstm.cell, torch.nn.LSTM(3, 5, batch_first=True))
    x, w = rand(2, 4, 3, seed=3), rand(2, 4, 5, seed=4)
    (tl(torch.from_numpy(x))[0] * torch.from_numpy(w)).sum().backward()
    (g,) = jax.jit(lambda m, x: fl.gradient(lambda m: jnp.sum(m(x) * w), m))(lstm, x)
    np.testing.assert_allclose(g.cell.Wi, tl.weight_ih_l0.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g.cell.Wh, tl.weight_hh_l0.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g.cell.bias, tl.bias_ih_l0.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g.cell.bias, tl.bias_hh_l0.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_cells_match_torch_cells_on_one_step_batched_and_unbatched(kind):
    cell = getattr(fl, kind + "Cell")(3, 5, key=1, **INIT)
    tcell = torch_twin(cell, getattr(torch.nn, kind + "Cell")(3, 5))
    x = rand(2, 3, seed=7)
    y, state = call(cell, x)  # zero initial state
    ty = tcell(torch.from_numpy(x))
    th = ty[0] if kind == "LSTM" else ty
    np.testing.assert_allclose(y, th.detach().numpy(), **TOL)
    if kind == "LSTM":
        np.testing.assert_allclose(state[1], ty[1].detach().numpy(), **TOL)
        y2, _ = call(cell, x[0], (state[0][0], state[1][0]))
        ty2 = tcell(torch.from_numpy(x[0]), (ty[0][0], ty[1][0]))[0]
    else:
        y2, _ = call(cell, x[0], state[0])
        ty2 = tcell(torch.from_numpy(x[0]), ty[0])
    assert y2.shape == (5,)
    np.testing.assert_allclose(y2, ty2.detach().numpy(), **TOL)


def test_single_sequence_and_shared_initial_state():
    lstm = fl.LSTM(3, 5, key=2, **INIT)
    tl = torch_twin(lstm.cell, torch.nn.LSTM(3, 5, batch_first=True))
    x = rand(4, 3, seed=8)  # (time, in), no batch axis
    np.testing.assert_allclose(call(lstm, x), tl(torch.from_numpy(x))[0].detach().numpy(), **TOL)
    xb = rand(3, 4, 3, seed=9)
    h, c = rand(5, seed=10), rand(5, seed=11)  # one state for the whole batch
    tiled = (np.tile(h, (3, 1)), np.tile(c, (3, 1)))
    np.testing.assert_allclose(call(lstm, xb, (h, c)), call(lstm, xb, tiled), **TOL)


def test_gruv3_follows_its_formula():
    gru = fl.GRUv3(3, 5, return_state=True, key=3, **INIT)
    c = gru.cell
    c.bias = jnp.asarray(rand(15, seed=12))
    x = rand(2, 5, 3, seed=13)
    Wi, Wh, Whh, b = (np.asarray(a, np.float64) for a in (c.Wi, c.Wh, c.Wh_h, c.bias))
    sig = lambda v: 1 / (1 + np.exp(-v))
    h = np.zeros((2, 5))
    outs = []
    for t in range(5):
        gx = x[:, t] @ Wi.T + b
        gh = h @ Wh.T
        r, z = sig(gx[:, :5] + gh[:, :5]), sig(gx[:, 5:10] + gh[:, 5:10])
        h = (1 - z) * np.tanh(gx[:, 10:] + (r * h) @ Whh.T) + z * h
        outs.append(h)
    y, final = call(gru, x)
    np.testing.assert_allclose(y, np.stack(outs, 1), **TOL)
    np.testing.assert_allclose(final, h, **TOL)


def test_lstmcell_gradients_match_finite_differences():
    with jax.enable_x64(True):
        cell = fl.LSTMCell(3, 2, key=4, dtype=jnp.float64, **INIT)
        cell.bias = jnp.asarray(np.random.default_rng(14).normal(size=8))
        rng = np.random.default_rng(15)
        x, h, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 2)), rng.normal(size=(2, 2))
        w1, w2 = rng.normal(size=(2, 2)), rng.normal(size=(2, 2))

        def loss(m, x):
            y, (h2, c2) = m(x, (h, c))
            return jnp.sum(y * w1) + jnp.sum(c2 * w2)

        g, gx = jax.tree.map(np.asarray, jax.jit(lambda m, x: fl.gradient(loss, m, x))(cell, x))
        loss = jax.jit(loss)
        eps = 1e-6
        for name in ("Wi", "Wh", "bias"):
            p = np.asarray(getattr(cell, name))
            for idx in list(np.ndindex(p.shape))[::3]:
                up, down = p.copy(), p.copy()
                up[idx] += eps
                down[idx] -= eps
                fd = []
                for q in (up, down):
                    m = jax.tree.map(lambda a: a, cell)
                    setattr(m, name, jnp.asarray(q))
                    fd.append(float(loss(m, x)))
                np.testing.assert_allclose(getattr(g, name)[idx], (fd[0] - fd[1]) / (2 * eps), rtol=1e-6, atol=1e-8)
        for idx in np.ndindex(x.shape):
            up, down = x.copy(), x.copy()
            up[idx] += eps
            down[idx] -= eps
            fd = (float(loss(cell, up)) - float(loss(cell, down))) / (2 * eps)
            np.testing.assert_allclose(gx[idx], fd, rtol=1e-6, atol=1e-8)


def test_wrapping_cells_and_initialstates():
    cell = fl.GRUCell(3, 5, key=5, **INIT)
    x = rand(2, 4, 3, seed=16)
    ys, h = call(fl.Recurrence(cell, return_state=True), x)
    np.testing.assert_array_equal(call(fl.GRU(cell), x), ys)
    y0, _ = call(cell, x[:, 0])
    np.testing.assert_allclose(ys[:, 0], y0, **TOL)
    np.testing.assert_array_equal(ys[:, -1], h)
    h, c = fl.initialstates(fl.LSTMCell(3, 5, **INIT))
    np.testing.assert_array_equal(c, np.zeros(5))
    np.testing.assert_array_equal(fl.initialstates(fl.RNN(3, 5, **INIT)), np.zeros(5))
    with pytest.raises(TypeError, match="Recurrence"):
        fl.GRU(fl.LSTMCell(3, 5, **INIT))


def test_recurrent_errors_name_the_layer_and_sizes():
    lstm = fl.LSTM(3, 5, **INIT)
    with pytest.raises(ValueError, match=r"LSTM\(3 => 5\) takes a sequence \(batch, time, 3\).*\(2, 4, 2\)"):
        lstm(np.ones((2, 4, 2)))
    with pytest.raises(ValueError, match=r"LSTMCell\(3 => 5\) takes one time step.*\(2, 4, 3\).*use LSTM"):
        lstm.cell(np.ones((2, 4, 3)))
    with pytest.raises(TypeError, match=r"LSTMCell\(3 => 5\): the state is the pair \(h, c\)"):
        lstm.cell(np.ones((2, 3)), np.zeros((2, 5)))
    msg = r"RNNCell\(3 => 5, tanh\): the state must have shape \(5,\) or \(2, 5\).*\(2, 4\)"
    with pytest.raises(ValueError, match=msg):
        fl.RNNCell(3, 5, **INIT)(np.ones((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"hidden state h must have shape"):
        lstm(np.ones((2, 4, 3)), (np.zeros((3, 5)), np.zeros((3, 5))))
    with pytest.raises(ValueError, match=r"single sequence \(4, 3\) takes a state without a batch axis"):
        fl.GRU(3, 5, **INIT)(np.ones((4, 3)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="positive ints"):
        fl.GRU(0, 3)


def test_recurrent_reprs_follow_flux():
    assert repr(fl.RNNCell(3, 5, **INIT)) == "RNNCell(3 => 5, tanh)  # 45 parameters"
    assert repr(fl.RNN(3, 5, fl.relu, **INIT)) == "RNN(3 => 5, relu)  # 45 parameters"
    assert repr(fl.LSTMCell(3, 5, **INIT)) == "LSTMCell(3 => 5)  # 180 parameters"
    assert repr(fl.LSTM(3, 5, **INIT)) == "LSTM(3 => 5)  # 180 parameters"
    assert repr(fl.GRUCell(3, 5, **INIT)) == "GRUCell(3 => 5)  # 135 parameters"
    assert repr(fl.GRU(3, 5, bias=False, **INIT)) == "GRU(3 => 5, bias=False)  # 120 parameters"
