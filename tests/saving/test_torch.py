"""torchstate / loadtorch_ against real torch modules: weights in, outputs equal
(1e-5); weights out, `load_state_dict(strict=True)` takes them and the torch
module computes what the fluxlike model does."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import fluxlike as fl

TOL = dict(rtol=1e-5, atol=1e-5)
rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def randomise(tm):
    """Random weights and statistics everywhere (torch starts biases and BatchNorm at 0/1)."""
    with torch.no_grad():
        for name, t in tm.state_dict().items():
            if t.dtype.is_floating_point:
                t.copy_(torch.from_numpy(randn(*t.shape)))
                if "running_var" in name:
                    t.abs_().add_(0.5)
    return tm.eval()


def tensors(sd):
    return {k: torch.from_numpy(np.asarray(v)) for k, v in sd.items()}


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def nhwc(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def both_ways(model, tm, fresh_tm, x, run_model, run_torch, like=False):
    """loadtorch_ then compare; torchstate into a fresh torch module then compare."""
    fl.loadtorch_(model, tm.state_dict())
    want = run_torch(tm, x)
    np.testing.assert_allclose(run_model(model, x), want, **TOL)
    sd = fl.torchstate(model, like=fresh_tm if like else None)
    fresh_tm.load_state_dict(tensors(sd), strict=True)
    np.testing.assert_allclose(run_torch(fresh_tm.eval(), x), want, **TOL)


def plain_torch(tm, x):
    with torch.no_grad():
        return tm(torch.from_numpy(x)).numpy()


def test_sequential_with_relu_into_a_chain_and_back_by_name():
    def make():
        return torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    model = fl.Chain(fl.Dense(3, 8, fl.relu), fl.Dense(8, 2))
    both_ways(model, randomise(make()), make(), randn(5, 3), lambda m, x: m(x), plain_torch, like=True)
    assert sorted(fl.torchstate(model)) == ["0.bias", "0.weight", "1.bias", "1.weight"]  # names from the model


def test_conv_batchnorm_layernorm_embedding():
    def make():
        return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4),
                                   torch.nn.ConvTranspose2d(4, 3, 3, stride=2))
    model = fl.testmode_(fl.Chain(fl.Conv((3, 3), 2, 4, pad=1), fl.BatchNorm(4), fl.ConvTranspose((3, 3), 4, 3, stride=2)))
    both_ways(model, randomise(make()), make(), randn(2, 6, 6, 2), lambda m, x: m(x),
              lambda tm, x: nhwc(tm(nchw(x)).detach()))
    conv1 = fl.Conv((3,), 2, 4)
    t1 = randomise(torch.nn.Conv1d(2, 4, 3))
    both_ways(conv1, t1, torch.nn.Conv1d(2, 4, 3), randn(2, 7, 2), lambda m, x: m(x),
              lambda tm, x: nhwc(tm(nchw(x)).detach()))
    ln = fl.LayerNorm(5)
    both_ways(ln, randomise(torch.nn.LayerNorm(5)), torch.nn.LayerNorm(5), randn(3, 5), lambda m, x: m(x), plain_torch)
    emb = fl.Embedding(10, 4)
    ids = np.array([[0, 3, 9], [2, 2, 1]])
    both_ways(emb, randomise(torch.nn.Embedding(10, 4)), torch.nn.Embedding(10, 4), ids, lambda m, x: m(x),
              plain_torch)


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
def test_recurrent_layers(kind):
    tm = getattr(torch.nn, kind)(3, 5, batch_first=True)
    randomise(tm)
    if kind == "GRU":
        with torch.no_grad():
            tm.bias_hh_l0[10:] = 0  # b_hn: fluxlike's GRU has no place for it
    layer = getattr(fl, kind)(3, 5)
    x = randn(2, 4, 3)

    def run_torch(tm, x):
        with torch.no_grad():
            return tm(torch.from_numpy(x))[0].numpy()

    both_ways(layer, tm, getattr(torch.nn, kind)(3, 5, batch_first=True), x, lambda m, x: m(x), run_torch)
    cell = getattr(fl, kind + "Cell")(3, 5)
    tcell = randomise(getattr(torch.nn, kind + "Cell")(3, 5))
    if kind == "GRU":
        with torch.no_grad():
            tcell.bias_hh[10:] = 0
    fl.loadtorch_(cell, tcell.state_dict())
    h = randn(2, 5)
    out = cell(x[:, 0], (h, h) if kind == "LSTM" else h)[0]
    with torch.no_grad():
        th = tcell(torch.from_numpy(x[:, 0]), (torch.from_numpy(h),) * 2 if kind == "LSTM" else torch.from_numpy(h))
    np.testing.assert_allclose(out, (th[0] if kind == "LSTM" else th).numpy(), **TOL)


@pytest.mark.parametrize("bias", [False, True])
def test_multihead_attention_packed_and_separate(bias):
    def make(kdim=None):
        return torch.nn.MultiheadAttention(8, 2, bias=bias, kdim=kdim, vdim=kdim, batch_first=True)
    q, kv = randn(2, 4, 8), randn(2, 5, 8)

    def run_torch(tm, x):
        with torch.no_grad():
            return tm(*(torch.from_numpy(a) for a in x), need_weights=False)[0].numpy()

    both_ways(fl.MultiHeadAttention(8, nheads=2, bias=bias), randomise(make()), make(), (q, kv, kv),
              lambda m, x: m(*x)[0], run_torch)
    kv6 = randn(2, 5, 6)
    both_ways(fl.MultiHeadAttention(((8, 6, 6), 8, 8), nheads=2, bias=bias), randomise(make(6)), make(6),
              (q, kv6, kv6), lambda m, x: m(*x)[0], run_torch)


def test_mismatches_name_the_torch_key_and_both_shapes_and_change_nothing():
    model = fl.Chain(fl.Dense(3, 8, fl.relu), fl.Dense(8, 2))
    before = [np.array(model.layers[i].weight) for i in range(2)]
    tm = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match=r"loadtorch_: 2\.weight has shape \(4, 8\); the Dense at layers\.1 needs \(2, 8\)"):
        fl.loadtorch_(model, tm.state_dict())
    with pytest.raises(ValueError, match=r"the model has 2 parameterised layers, the state_dict 1 modules.*\n"
                                         r"  model: layers\.0 Dense, layers\.1 Dense\n  torch: 0 Linear/Embedding"):
        fl.loadtorch_(model, torch.nn.Sequential(torch.nn.Linear(3, 8)).state_dict())
    with pytest.raises(ValueError, match=r"torch module 0 does not fit the Dense at layers\.0: the layer has no twin of 0\.bias"):
        fl.loadtorch_(fl.Chain(fl.Dense(3, 8, bias=False), fl.Dense(8, 2)),
                      torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Linear(8, 2)).state_dict())
    with pytest.raises(TypeError, match=r"0\.weight has dtype float64; the Dense at layers\.0 holds float32"):
        fl.loadtorch_(model, torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Linear(8, 2)).double().state_dict())
    gru = torch.nn.GRU(3, 5)
    with torch.no_grad():
        gru.bias_hh_l0.fill_(0.5)
    with pytest.raises(ValueError, match=r"bias_hh_l0 has a non-zero last third \(b_hn"):
        fl.loadtorch_(fl.GRU(3, 5), gru.state_dict())
    with pytest.raises(ValueError, match=r"has 2 layers \(num_layers > 1"):
        fl.loadtorch_(fl.LSTM(3, 5), torch.nn.LSTM(3, 5, num_layers=2).state_dict())
    with pytest.raises(TypeError, match=r"GRUv3, which PyTorch has no twin of"):
        fl.torchstate(fl.GRUv3(3, 5))
    assert all(np.array_equal(a, np.asarray(model.layers[i].weight)) for i, a in enumerate(before))


def test_strict_false_loads_a_backbone_into_the_first_layers():
    model = fl.Chain(fl.Dense(3, 8, fl.relu), fl.Dense(8, 2))
    head = np.array(model.layers[1].weight)
    backbone = randomise(torch.nn.Sequential(torch.nn.Linear(3, 8)))
    fl.loadtorch_(model, backbone.state_dict(), strict=False)
    np.testing.assert_array_equal(model.layers[0].weight, backbone[0].weight.detach().numpy())
    np.testing.assert_array_equal(model.layers[1].weight, head)


def test_a_model_saved_by_torch_as_safetensors_loads(tmp_path):
    from safetensors.torch import save_file
    tm = randomise(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)))
    path = str(tmp_path / "torch.safetensors")
    save_file(tm.state_dict(), path)
    from safetensors.numpy import load_file
    model = fl.Chain(fl.Dense(3, 4, fl.tanh), fl.Dense(4, 1))
    fl.loadtorch_(model, load_file(path))
    x = randn(2, 3)
    np.testing.assert_allclose(model(x), plain_torch(tm, x), **TOL)
    assert isinstance(model.layers[0].weight, jnp.ndarray)
