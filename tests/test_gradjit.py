"""Eager `fl.gradient` compiles itself (DESIGN.md, "Eager code runs compiled").

The reference is always the same call with `compile=False` (op by op, the
way the seed's loop ran before), on a twin of the model: gradients, the
returned value and the layer state written back (BatchNorm statistics,
Dropout keys) must agree, for every layer family, and the compiled path
must compile once per kind of call and never leak a tracer.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl
from fluxlike._tree import Tracer

RNG = np.random.default_rng(0)


def randn(*shape) -> jax.Array:
    return jnp.asarray(RNG.normal(size=shape).astype("float32"))


def twin(model):
    """A second model object holding the same arrays."""
    return jax.tree.map(lambda a: a, model)


def assert_same(a, b, what: str) -> None:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b), what
    for x, y in zip(la, lb):
        assert not isinstance(x, Tracer), what
        if jnp.issubdtype(x.dtype, jnp.inexact):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=2e-5, atol=2e-6, err_msg=what)
        else:  # PRNG keys, counters: exactly
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=what)


def seq(n: int, batch: int, d: int) -> jax.Array:
    return randn(batch, n, d)


# one model per layer family, with an input and a loss of the output
FAMILIES = {
    "dense": (lambda: fl.Chain(fl.Dense(3, 4, fl.relu), fl.Dense(4, 2), fl.Scale(2)), lambda: randn(5, 3)),
    "bilinear_maxout": (lambda: fl.Chain(fl.Maxout(fl.Dense(3, 4), fl.Dense(3, 4)), fl.Bilinear((4, 4), 2)),
                        lambda: randn(5, 3)),
    "conv_pool": (lambda: fl.Chain(fl.Conv((3, 3), 2, 3, fl.relu, pad=1), fl.MaxPool((2, 2)),
                                   fl.ConvTranspose((2, 2), 3, 2, stride=2), fl.GlobalMeanPool(), fl.flatten),
                  lambda: randn(2, 6, 6, 2)),
    "norm": (lambda: fl.Chain(fl.Dense(3, 4), fl.BatchNorm(4, fl.relu), fl.LayerNorm(4)), lambda: randn(6, 3)),
    "groupnorm_conv": (lambda: fl.Chain(fl.Conv((1, 1), 2, 4), fl.GroupNorm(4, 2), fl.InstanceNorm(4, affine=True,
                                                                                                   track_stats=True)),
                       lambda: randn(2, 4, 4, 2)),
    "dropout": (lambda: fl.Chain(fl.Dense(3, 8), fl.Dropout(0.5), fl.AlphaDropout(0.2), fl.Dense(8, 1)),
                lambda: randn(5, 3)),
    "embedding": (lambda: fl.Chain(fl.Embedding(7, 3), fl.flatten, fl.Dense(6, 1)),
                  lambda: jnp.asarray(RNG.integers(0, 7, size=(4, 2)))),
    "recurrent": (lambda: fl.Chain(fl.LSTM(3, 4), fl.GRU(4, 3), fl.RNN(3, 2)), lambda: seq(4, 2, 3)),
    "attention": (lambda: fl.Chain(fl.MultiHeadAttention(4, nheads=2, dropout_prob=0.1)), lambda: seq(3, 2, 4)),
    "upsample": (lambda: fl.Chain(fl.Conv((1, 1), 2, 4), fl.PixelShuffle(2), fl.Upsample(2)),
                 lambda: randn(1, 2, 2, 2)),
    "combinators": (lambda: fl.Chain(fl.SkipConnection(fl.Dense(3, 3), jnp.add),
                                     fl.Parallel(jnp.add, fl.Dense(3, 2), fl.Dense(3, 2))), lambda: randn(5, 3)),
}


def out_loss(y) -> jax.Array:
    y = y[0] if isinstance(y, tuple) else y
    return jnp.mean(y ** 2)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_compiled_equals_eager_for_every_layer_family(family, count_compiles):
    make, data = FAMILIES[family]
    a = make()
    b = twin(a)
    for step in range(3):  # the first call compiles, the rest reuse its program
        x = data()
        with count_compiles() as seen, warnings.catch_warnings():
            warnings.simplefilter("error")  # no eager fallback
            va, ga = fl.withgradient(lambda m: out_loss(m(x)), a)
        vb, gb = fl.withgradient(lambda m: out_loss(m(x)), b, compile=False)
        assert_same(va, vb, f"{family} value, step {step}")
        assert_same(ga, gb, f"{family} gradient, step {step}")
        assert_same(a, b, f"{family} model state after step {step}")  # BatchNorm stats, Dropout keys
        if step == 0:
            assert len(seen) == 1, f"{family} compiled {len(seen)} programs at its first call"
        else:
            assert seen == [], f"{family} compiled again at step {step}"


def test_seed_loop_compiles_once_in_100_steps_with_fresh_lambdas_and_batches(count_compiles):
    model = fl.Chain(fl.Dense(2, 8, fl.relu), fl.Dense(8, 1))
    ref = twin(model)
    state, ref_state = fl.setup(fl.Adam(0.01), model), fl.setup(fl.Adam(0.01), ref)
    data = [(randn(16, 2), randn(16, 1)) for _ in range(100)]
    loss = fl.losses.mse
    grad_compiles = 0
    for x, y in data:  # the seed page's loop, as written
        with count_compiles() as seen:
            grads = fl.gradient(lambda m: loss(m(x), y), model)
        grad_compiles += len(seen)
        fl.update_(state, model, grads[0])
        ref_grads = fl.gradient(lambda m: loss(m(x), y), ref, compile=False)
        fl.update_(ref_state, ref, ref_grads[0])
    assert grad_compiles == 1
    assert_same(model, ref, "model after 100 steps")


SCRIPT = """
import fluxlike as fl
for x, y in data:  # a script's top level: x and y are globals of the lambda
    with count():
        out.append(fl.gradient(lambda m: fl.losses.mse(m(x), y), model)[0].weight)
"""


def test_a_scripts_top_level_loop_reads_each_batch_from_its_globals(script_compiles):
    data = [(randn(4, 2), randn(4, 1)) for _ in range(5)]
    model = fl.Dense(2, 1)
    out: list = []
    seen = script_compiles(SCRIPT, data=data, model=model, out=out)
    want = [fl.gradient(lambda m: fl.losses.mse(m(x), y), model, compile=False)[0].weight for x, y in data]
    for got, ref in zip(out, want):
        np.testing.assert_allclose(got, ref, rtol=1e-6)
    assert len(seen) == 1  # the five calls share one program


def test_python_if_on_an_array_falls_back_with_one_warning():
    model = fl.Dense(2, 1)
    x, y = randn(4, 2), randn(4, 1)

    def loss(m):
        l = fl.losses.mse(m(x), y)
        if l > 0:  # Python control flow on an array value cannot be traced
            return 2 * l
        return l

    with pytest.warns(UserWarning, match=r"cannot be compiled \(tracing it raised TracerBoolConversionError"):
        first = fl.gradient(loss, model)
    second = fl.gradient(loss, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning, not one per call
        third = fl.gradient(loss, model)
    want = fl.gradient(loss, model, compile=False)
    for g in (first, second, third):
        assert_same(g, want, "fallback gradient")


def test_float_of_the_loss_says_what_to_do_and_stop_gradient_reads_it():
    # as under jax.grad, even eagerly: the value being differentiated has no plain number
    model = fl.Dense(2, 1)
    x, y = randn(4, 2), randn(4, 1)
    for compile in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the compiled path warns first, then runs eagerly
            with pytest.raises(TypeError, match=r"(?s)float\(\).*fl.withgradient.*stop_gradient"):
                fl.gradient(lambda m: float(fl.losses.mse(m(x), y)) * fl.losses.mse(m(x), y), model,
                            compile=compile)
    seen = []

    def logged(m):
        l = fl.losses.mse(m(x), y)
        seen.append(float(jax.lax.stop_gradient(l)))
        return l

    with pytest.warns(UserWarning, match="runs eagerly"):
        g = fl.gradient(logged, model)[0]
    want = jax.grad(lambda w, b: jnp.mean(jnp.sum((x @ w.T + b - y) ** 2, axis=1)), argnums=(0, 1))(
        model.weight, model.bias)
    np.testing.assert_allclose(g.weight, want[0], rtol=1e-5)
    np.testing.assert_allclose(g.bias, want[1], rtol=1e-5)
    np.testing.assert_allclose(seen[-1], np.mean(np.sum((np.asarray(model(x)) - np.asarray(y)) ** 2, axis=1)),
                               rtol=1e-5)


def test_side_effects_run_eagerly_and_no_tracer_leaks():
    model = fl.Dense(2, 1)
    x = randn(3, 2)
    seen: list = []

    class Box:
        calls = 0

    box = Box()

    def records(m):
        seen.append(m.weight.shape)  # a side effect on a list: once per call, eagerly
        return jnp.sum(m(x))

    def counts(m):
        box.calls += 1  # a side effect on an object's attributes
        box.last = jnp.sum(m(x))
        return box.last

    for f, where in ((records, "a list"), (counts, "the attributes of a Box")):
        with pytest.warns(UserWarning, match=f"changes {where} outside itself"):
            fl.gradient(f, model)
        fl.gradient(f, model)
        fl.gradient(f, model)
    assert seen == [(1, 2)] * 3  # the trace's append was undone
    assert box.calls == 3
    with jax.checking_leaks():  # nothing fluxlike keeps holds a tracer
        for _ in range(2):
            fl.gradient(lambda m: jnp.sum(m(x)), model)
    assert not any(isinstance(l, Tracer) for l in jax.tree.leaves(model))


def test_compile_false_compiles_nothing(count_compiles):
    model = fl.Dense(2, 1)
    x = randn(3, 2)
    fl.gradient(lambda m: jnp.sum(m(x)), model, compile=False)  # warm the op-by-op kernels
    with count_compiles() as seen:
        for _ in range(3):
            fl.gradient(lambda m: jnp.sum(m(x)), model, compile=False)
    assert seen == []


def test_closure_arrays_are_arguments_and_values_are_part_of_the_key(count_compiles):
    model = fl.Dense(2, 1)
    x = randn(3, 2)
    for k in (1.0, 1.0, 2.0, 2.0):  # a Python number in the closure is read by value
        g = fl.gradient(lambda m: k * jnp.sum(m(x)), model)[0].bias
        np.testing.assert_allclose(g, [3.0 * k])
    compiles = 0
    for scale in [randn(3, 1) for _ in range(3)]:  # an array: an argument, so no new compile
        with count_compiles() as seen:
            g = fl.gradient(lambda m: jnp.sum(m(x) * scale), model)[0].bias
        compiles += len(seen)
        np.testing.assert_allclose(g, [float(scale.sum())], rtol=1e-5)
    assert compiles == 1


def test_closure_module_state_lands_in_the_closure_module():
    feats, ref_feats = fl.BatchNorm(2), fl.BatchNorm(2)
    model, ref = fl.Dense(2, 1), fl.Dense(2, 1)
    ref = twin(model)
    for _ in range(3):
        x = randn(6, 2) + 3.0
        g = fl.gradient(lambda m: jnp.sum(m(feats(x))), model)
        r = fl.gradient(lambda m: jnp.sum(m(ref_feats(x))), ref, compile=False)
        assert_same(g, r, "gradient through a closure BatchNorm")
        assert_same(feats, ref_feats, "the closure BatchNorm's statistics")
    assert float(feats.mean.mean()) > 0.5  # the statistics moved towards the data's mean of 3


W = jnp.ones(2)


def helper(m, x):
    return jnp.sum(m(x) * W)  # reads W, a module global, through another function


def test_a_global_array_read_through_another_function_is_guarded():
    global W
    model = fl.Dense(2, 1)
    x = randn(3, 2)
    for value in (1.0, 1.0, 3.0, 3.0):
        W = jnp.full(2, value)
        g = fl.gradient(lambda m: helper(m, x), model)[0].bias
        np.testing.assert_allclose(g, [3.0 * 2 * value], rtol=1e-6)


def test_an_array_attribute_of_a_plain_object_falls_back_with_the_reason():
    class Holder:
        def __init__(self):
            self.w = jnp.ones(2)

    h = Holder()
    model = fl.Dense(2, 1)
    x = randn(3, 2)
    with pytest.warns(UserWarning, match=r"reads an array of shape \(2,\)"):
        fl.gradient(lambda m: jnp.sum(m(x) * h.w), model)
    h.w = jnp.full(2, 5.0)  # eager, so the new value is seen
    with pytest.warns(UserWarning, match="reads an array"):
        g = fl.gradient(lambda m: jnp.sum(m(x) * h.w), model)[0].bias
    np.testing.assert_allclose(g, [3.0 * 2 * 5.0])


def test_arguments_outputs_and_nested_gradients():
    x = jnp.array([1.0, 2.0])
    for _ in range(3):
        # a Python float argument is differentiated, an int is configuration
        val, (gx, gk, gn) = fl.withgradient(lambda x, k, n: (jnp.sum(x * k) * n, "aux"), x, 3.0, 2)
        assert val[1] == "aux" and gn is None
        np.testing.assert_allclose(gx, [6.0, 6.0])
        np.testing.assert_allclose(gk, 6.0)
        # a gradient penalty: fl.gradient inside the function, traced with it
        gp = fl.gradient(lambda x: jnp.sum(fl.gradient(lambda z: jnp.sum(z ** 3), x)[0]), x)[0]
        np.testing.assert_allclose(gp, 6 * x)


def test_errors_of_the_function_itself_are_raised_as_they_are():
    model = fl.Dense(2, 1)
    x = randn(3, 2)
    for _ in range(3):
        with pytest.raises(ValueError, match="must return a scalar loss"):
            fl.gradient(lambda m: m(x), model)
