"""Module: pytree registration, field kinds, Chain, printing, modes, tracer leaks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluxlike as fl


class Affine(fl.Module):
    scale: jax.Array
    shift: jax.Array | None
    calls: jax.Array = fl.field(trainable=False)
    act: object = fl.field(static=True)
    active: bool | None = fl.field(static=True, default=None)

    def __init__(self, n, act=fl.identity):
        self.scale = jnp.ones(n)
        self.shift = jnp.zeros(n)
        self.calls = jnp.zeros((), jnp.int32)
        self.act = act

    def __call__(self, x):
        if fl.is_training(self):
            self.calls = self.calls + 1
        return self.act(self.scale * x + self.shift)


def test_leaves_are_arrays_and_config_is_static():
    m = Affine(3, fl.relu)
    leaves, treedef = jax.tree.flatten(m)
    assert len(leaves) == 3 and all(isinstance(l, jax.Array) for l in leaves)
    m2 = jax.tree.unflatten(treedef, leaves)
    assert type(m2) is Affine and m2.act is fl.relu and m2.scale is leaves[0]
    assert jax.tree.unflatten(treedef, leaves) is not m


def test_plain_jit_vmap_tree_map_work_without_filters():
    m = Affine(3)
    out = jax.jit(lambda m, x: m(x))(m, jnp.arange(3.0))
    np.testing.assert_allclose(out, np.arange(3.0))
    doubled = jax.tree.map(lambda a: a * 2, m)
    np.testing.assert_allclose(doubled.scale, 2 * np.ones(3))
    batched = jax.vmap(lambda x: m(x))(jnp.ones((4, 3)))
    assert batched.shape == (4, 3)


def test_key_paths_name_fields():
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(fl.Chain(fl.Dense(2, 3)))[0]]
    assert paths == [".layers[0].weight", ".layers[0].bias"]


def test_undeclared_attribute_is_an_error():
    m = Affine(2)
    with pytest.raises(AttributeError, match="not a declared field"):
        m.other = jnp.ones(2)


def test_non_array_data_field_is_an_error_naming_it():
    class Bad(fl.Module):
        w: jax.Array

        def __init__(self):
            self.w = 0.5

    with pytest.raises(TypeError, match=r"Bad\.w holds a float.*static=True"):
        Bad()


def test_unhashable_static_field_is_an_error():
    class Bad(fl.Module):
        sizes: list = fl.field(static=True)

        def __init__(self):
            self.sizes = [1, 2]

    with pytest.raises(TypeError, match="hashable"):
        Bad()


def test_unset_field_is_an_error():
    class Half(fl.Module):
        a: jax.Array
        b: jax.Array

        def __init__(self):
            self.a = jnp.ones(1)

    with pytest.raises(TypeError, match="did not set the field `b`"):
        Half()


def test_dense_matches_numpy_formula():
    d = fl.Dense(4, 3, fl.relu, key=1)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype("float32")
    W, b = np.asarray(d.weight), np.asarray(d.bias)
    np.testing.assert_allclose(d(x), np.maximum(x @ W.T + b, 0), rtol=1e-6)
    np.testing.assert_allclose(d(x[0]), np.maximum(W @ x[0] + b, 0), rtol=1e-6)
    assert d.weight.shape == (3, 4)


def test_dense_glorot_uniform_bounds_and_zero_bias():
    d = fl.Dense(300, 200, key=0)
    limit = np.sqrt(6 / 500)
    w = np.asarray(d.weight)
    assert np.abs(w).max() <= limit and np.abs(w).max() > 0.95 * limit
    assert np.std(w) == pytest.approx(limit / np.sqrt(3), rel=0.02)
    assert not np.asarray(d.bias).any()


def test_dense_size_error_names_layer_and_sizes():
    with pytest.raises(ValueError, match=r"Dense\(784 => 32\) expects .* 784 features, got shape \(5, 10\)"):
        fl.Dense(784, 32)(jnp.ones((5, 10)))


def test_dense_from_weight_and_no_bias():
    w = jnp.arange(6.0).reshape(2, 3)
    d = fl.Dense(w, bias=False)
    np.testing.assert_allclose(d(jnp.ones(3)), [3.0, 12.0])
    assert repr(d) == "Dense(3 => 2, bias=False)  # 6 parameters"


def test_seed_reproduces_and_key_overrides():
    fl.seed(7)
    a = fl.Dense(3, 3).weight
    fl.seed(7)
    b = fl.Dense(3, 3).weight
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(fl.Dense(3, 3, key=5).weight, fl.Dense(3, 3, key=5).weight)
    assert not np.array_equal(fl.Dense(3, 3).weight, fl.Dense(3, 3).weight)


def test_chain_access_forms():
    a, b = fl.Dense(2, 3), fl.Dense(3, 1)
    m = fl.Chain(a, b)
    assert m.layers[0] is a and m[1] is b and len(m) == 2
    assert m[0:1].layers == (a,)
    n = fl.Chain(enc=a, dec=b)
    assert n.layers.enc is a and n["dec"] is b and n[0] is a
    x = jnp.ones((4, 2))
    np.testing.assert_allclose(n(x), b(a(x)))
    with pytest.raises(TypeError, match="positionally or by name"):
        fl.Chain(a, dec=b)
    with pytest.raises(KeyError, match="no layer named 'mid'"):
        n["mid"]


def test_chain_wraps_functions_and_equal_chains_share_a_treedef():
    m = fl.Chain(fl.Dense(2, 2), jnp.tanh)
    np.testing.assert_allclose(m(jnp.ones(2)), np.tanh(np.asarray(m[0](jnp.ones(2)))), rtol=1e-6)
    t1 = jax.tree.structure(fl.Chain(enc=fl.Dense(2, 2)))
    t2 = jax.tree.structure(fl.Chain(enc=fl.Dense(2, 2)))
    assert t1 == t2


def test_repr_one_line_like_flux():
    m = fl.Chain(fl.Dense(784, 32, fl.relu), fl.Dense(32, 10))
    assert repr(m) == "Chain(Dense(784 => 32, relu), Dense(32 => 10))  # 25_450 parameters"


def test_print_is_flux_big_show():
    m = fl.Chain(fl.Dense(784, 32, fl.relu), fl.Dense(32, 10))
    # Flux 0.16 prints exactly this (bytes: 25_450 float32 = 101_800 B)
    assert str(m) == (
        "Chain(\n"
        "  Dense(784 => 32, relu),               # 25_120 parameters\n"
        "  Dense(32 => 10),                      # 330 parameters\n"
        ")                   # Total: 4 arrays, 25_450 parameters, 99.414 KiB."
    )


def test_long_models_print_multi_line_with_names():
    m = fl.Chain(enc=fl.Chain(fl.Dense(784, 32, fl.relu)), dec=fl.Chain(fl.Dense(32, 10)))
    text = repr(m)
    assert text.splitlines()[0] == "Chain("
    assert "  enc = Chain(" in text and "    Dense(784 => 32, relu)," in text
    assert text.endswith("# Total: 4 arrays, 25_450 parameters, 99.414 KiB.")


class _Pair(fl.Module):
    """A user's container: no printing hooks of its own."""

    enc: fl.Dense
    dec: fl.Chain
    scale: float = fl.field(static=True)

    def __init__(self):
        self.enc = fl.Dense(2, 3, fl.relu)
        self.dec = fl.Chain(fl.Dense(3, 4), fl.Dense(4, 1))
        self.scale = 2.0

    def __call__(self, x):
        return self.dec(self.enc(x))


def test_a_users_module_of_layers_prints_its_fields_as_children_like_flux_layer():
    # Flux's `@layer` struct of layers prints each sublayer on its own line with its
    # count; here each field by name. Counts by hand: 2*3+3, 3*4+4, 4*1+1.
    m = _Pair()
    assert repr(m).startswith("_Pair(\n")  # nested (dec is a Chain): the multi-line form
    lines = str(m).splitlines()
    assert lines[0] == "_Pair("
    assert lines[1].startswith("  enc = Dense(2 => 3, relu),") and lines[1].endswith("# 9 parameters")
    assert lines[2] == "  dec = Chain("
    assert lines[3].startswith("    Dense(3 => 4),") and lines[3].endswith("# 16 parameters")
    assert lines[4].startswith("    Dense(4 => 1),") and lines[4].endswith("# 5 parameters")
    assert lines[5] == "  ),"
    assert lines[6] == "  scale = 2.0,"  # static fields after the layers, with no count
    assert lines[7].startswith(")") and "# Total: 6 arrays, 30 parameters" in lines[7]
    one = _Pair()  # a flat container stays on one line, its fields named
    one.dec = fl.Dense(3, 1)
    assert repr(one) == "_Pair(enc=Dense(2 => 3, relu), dec=Dense(3 => 1), scale=2.0)  # 13 parameters"
    # a layer with its own one-line head stays a leaf, whatever it holds
    assert "\n" not in repr(fl.MultiHeadAttention(8, nheads=2))


def test_state_arrays_are_counted_as_non_trainable():
    m = fl.Chain(Affine(3), fl.Dense(3, 3), fl.Dense(3, 3))
    text = str(m)
    assert "# Total: 6 trainable arrays, 30 parameters," in text
    assert "# plus 1 non-trainable, 1 parameters" in text


def test_modes_on_subtrees_and_repr():
    net = fl.Chain(fl.Dense(2, 2), fl.Chain(fl.Dropout(0.5)), fl.Dropout(0.1))
    fl.trainmode_(net.layers[1])
    assert net[1][0].active is True and net[2].active is None
    assert "Dropout(0.5, active=True)" in repr(net)
    fl.testmode_(net)
    assert net[1][0].active is False and net[2].active is False
    fl.testmode_(net, False)  # Flux: testmode!(m, false) is trainmode
    assert net[2].active is True
    fl.trainmode_(net, None)
    assert net[2].active is None
    with pytest.raises(TypeError, match="True, False or None"):
        fl.trainmode_(net, "auto")


def test_automatic_mode_is_train_inside_gradient_only():
    seen = []

    def f(x):
        seen.append(fl.is_training())
        return x.sum()

    f(jnp.ones(2))
    fl.gradient(f, jnp.ones(2), compile=False)
    assert seen == [False, True]
    with pytest.warns(UserWarning, match="changes a list"):  # compiled, the side effect runs eagerly
        fl.gradient(f, jnp.ones(2))
    assert seen == [False, True, True]
    assert fl.gradient(lambda x: fl.is_training() * x.sum(), jnp.ones(2))[0].tolist() == [1.0, 1.0]


def test_closing_over_a_model_in_jit_in_train_mode_raises_instead_of_leaking():
    m = Affine(2)
    fl.trainmode_(m)
    with pytest.raises(RuntimeError, match="tracer leak"):
        jax.jit(lambda x: m(x))(jnp.ones(2))
    assert isinstance(m.calls, jax.Array) and not isinstance(m.calls, jax.core.Tracer)


def test_state_updated_inside_jit_flows_out_when_returned():
    m = Affine(2)
    fl.trainmode_(m)

    @jax.jit
    def step(m, x):
        return m(x), m

    _, m2 = step(m, jnp.ones(2))
    _, m3 = step(m2, jnp.ones(2))
    assert int(m3.calls) == 2 and int(m.calls) == 0


def test_modules_walks_parents_first():
    net = fl.Chain(fl.Dense(1, 1), fl.Chain(fl.Dense(1, 1)))
    assert [type(x).__name__ for x in fl.modules(net)] == ["Chain", "Dense", "Chain", "Dense"]


def test_subclasses_inherit_field_kinds_and_are_checked():
    class Base(fl.Module):
        w: jax.Array
        n: int = fl.field(static=True)
        count: jax.Array = fl.field(trainable=False)

        def __init__(self, n):
            self.w, self.n, self.count = jnp.ones(n), n, jnp.zeros(())

    class Child(Base):
        extra: str = fl.field(static=True, default="x")

    class Grand(Child):
        v: jax.Array

        def __init__(self, n):
            super().__init__(n)
            self.v = jnp.zeros(n)

    c = Child(2)
    assert Child._fields == ("w", "count") and Child._static == ("n", "extra")
    assert len(jax.tree.leaves(c)) == 2 and c.extra == "x"
    assert fl.params(Grand(3))[1].shape == (3,) and len(fl.params(Grand(3))) == 2

    class Broken(Base):
        def __init__(self, n):
            super().__init__(n)
            self.w = 1.0

    with pytest.raises(TypeError, match="Broken.w holds a float"):
        Broken(2)


@pytest.mark.parametrize("make", [
    lambda: fl.Chain(fl.Conv((3, 3), 1, 4), fl.BatchNorm(4), fl.Dropout(0.5)),
    lambda: fl.Chain(fl.Embedding(10, 4), fl.LSTM(4, 3), fl.LayerNorm(3)),
    lambda: fl.MultiHeadAttention(8, nheads=2),
    lambda: {"w": jnp.ones((2, 3)), "ids": jnp.arange(3), "bn": fl.BatchNorm(2), "t": (jnp.zeros(2), jnp.float32(1.5))},
])
def test_printed_counts_and_the_trainable_mask_agree(make):
    """What the REPL prints as parameters is what the optimiser gets Leafs for
    (`_show.count_params` and `_walk.trainable_mask`, two walkers of one rule)."""
    from fluxlike._show import count_params
    from fluxlike._walk import trainable_mask
    model = make()
    leaves = jax.tree.leaves(model)
    mask = trainable_mask(model)
    counts = count_params(model)
    assert counts.arrays == sum(mask) == len(fl.setup(fl.Descent(), model).leaves())
    assert counts.params == sum(int(np.size(l)) for l, m in zip(leaves, mask) if m)
    assert counts.arrays + counts.other_arrays == sum(1 for l in leaves if hasattr(l, "shape"))
