"""Every rule, like Optimisers.jl's test/rules.jl: one list of all rules through
shared contracts, then each rule for 24 steps against an independent numpy
transcription of Optimisers.jl (reference.py), and against optax and
torch.optim where the formulas coincide (RULES_NOTES.md says where they do).

All rule tests share one model layout, so each rule compiles its update once.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import fluxlike as fl
import reference as R
import fluxlike as F
from optimise_cases import B, CONTRACT, ORACLE, PROBLEM, grad_dict, gradients, model

GW = gradients(24, seed=1)
W0 = np.random.default_rng(3).normal(size=(5, 3))


def run(rule, gws=GW, w0=W0):
    """`fl.update` for each gradient; returns (state, model)."""
    m = model(w0)
    st = fl.setup(rule, m)
    for gw in gws:
        st, m = fl.update(st, m, grad_dict(gw, m))
    return st, m


def bits(tree) -> list[bytes]:
    """Every array of `tree`, as bytes (NaN == NaN, so bit-identical means equal)."""
    return [np.asarray(a).tobytes() for a in jax.tree.leaves(tree)]


def close(got, want, tol=2e-5):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


# ---------------------------------------------------------------------------
# shared contracts


@jax.jit
def grad(m: dict) -> dict:
    """The gradient of PROBLEM's loss (by hand), and `x - 0.25` for the small arrays."""
    x, y = jnp.asarray(PROBLEM.x, jnp.float32), jnp.asarray(PROBLEM.y, jnp.float32)
    r = x @ m["w"].T - y
    return {"w": 2 / r.size * r.T @ x, "h": m["h"] - 0.25, "q": m["q"] - 0.25}


def _eager(rule, params: dict, grads: dict) -> dict:
    """One step through the optax interface, op by op (no jit): the same
    engine as `fl.update`, run eagerly."""
    with jax.disable_jit():
        u, s = rule.update(grads, rule.init(params), params)
    sign = 1 if rule.descent else -1  # optax's sign: an optimiser's updates are -dx
    return {k: params[k] + sign * u[k] for k in u}


@pytest.mark.parametrize("name,rule", CONTRACT, ids=[c[0] for c in CONTRACT])
def test_contracts(name, rule):
    """Reduces the loss, keeps every dtype, leaves its inputs untouched, and
    gives the same result compiled as eagerly."""
    P = PROBLEM
    m = model(P.w0)
    st = fl.setup(rule, m)

    # pure: the inputs are untouched, bit for bit
    before = bits((st, m))
    g = grad(m)
    st1, m1 = fl.update(st, m, g)
    assert bits((st, m)) == before
    assert st1 is not st and m1 is not m

    # compiled == eager (all four arrays for the global rule, else the float32 one)
    keys = ("w", "h", "q") if "Global" in name else ("w",)
    eager = _eager(rule, {k: m[k] for k in keys}, {k: g[k] for k in keys})
    for k in keys:
        close(m1[k], eager[k], 1e-6 if m[k].dtype == jnp.float32 else 1e-2)

    # dtypes kept, of parameters and of the rule's state
    st2, m2 = fl.update(st1, m1, grad(m1))
    for k, v in m.items():
        assert m2[k].dtype == v.dtype
    for leaf in st2.leaves():
        want = m[leaf.path[2:-2]].dtype
        assert all(a.dtype == want for a in jax.tree.leaves(leaf.state))

    # reduces the loss of a small regression problem
    l0 = P.loss(m["w"])
    for _ in range(300):
        st2, m2 = fl.update(st2, m2, grad(m2))
    assert P.loss(m2["w"]) < 0.1 * l0, name


# ---------------------------------------------------------------------------
# each rule against its numpy transcription


@pytest.mark.parametrize("name,rule,ref", ORACLE, ids=[c[0] for c in ORACLE])
def test_oracle_float32(name, rule, ref):
    st, m = run(rule)
    close(m["w"], R.run(ref, W0, GW)[-1])
    assert st["w"].count == 24


_ORACLE64 = textwrap.dedent("""
    import json, sys
    import numpy as np, jax, jax.numpy as jnp
    sys.path.insert(0, sys.argv[1])
    import reference as R
    from fluxlike.optimise import _table
    from optimise_cases import ORACLE, gradients
    assert jnp.zeros(1).dtype == jnp.float64
    gws, w0 = gradients(24, seed=1), np.random.default_rng(3).normal(size=(5, 3))
    out = {}
    for name, rule, ref in ORACLE:
        x, s, h = jnp.asarray(w0), rule.state(jnp.asarray(w0)), _table.read(rule, jnp.asarray(_table.row(rule)))[0]
        for t, g in enumerate(gws, 1):
            s, dx = rule.apply(h, s, x, jnp.asarray(g), jnp.asarray(t, jnp.int32))
            x = x - dx
        out[name] = float(np.max(np.abs(np.asarray(x) - R.run(ref, w0, gws)[-1])))
    print(json.dumps(out))
""")


def test_oracle_float64():
    """Each rule's formula (`apply`, op by op) in float64, x64 enabled in a
    subprocess only: agreement to 1e-12."""
    env = dict(os.environ, JAX_ENABLE_X64="1", JAX_PLATFORMS="cpu")
    here = os.path.dirname(__file__)
    res = subprocess.run([sys.executable, "-c", _ORACLE64, here], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    errors = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(errors) == {c[0] for c in ORACLE}
    bad = {k: v for k, v in errors.items() if not v < 1e-12}
    assert not bad, bad


def test_chains_compose_in_order():
    # (WeightDecay, OAdam, ClipGrad): the tiny clip last bounds every step
    rule = F.OptimiserChain(F.WeightDecay(0.1), F.OAdam(0.01, (0.6, 0.95)), F.ClipGrad(0.005))
    w = np.asarray(run(rule, GW[:1])[1]["w"])
    assert np.abs(w - W0).max() <= 0.005 + 1e-6
    reversed_ = R.make("OptimiserChain", R.make("ClipGrad", 0.005), R.make("OAdam", 0.01, (0.6, 0.95)),
                       R.make("WeightDecay", 0.1))
    assert np.abs(R.run(reversed_, W0, GW[:1])[-1] - W0).max() > 0.1
    # the empty chain subtracts the gradient itself (Descent(1))
    close(_eager(F.OptimiserChain(), {"w": jnp.asarray(W0, jnp.float32)}, {"w": jnp.asarray(GW[0], jnp.float32)})["w"],
          W0 - GW[0], 1e-6)


def test_accumgrad_emits_the_mean_every_n_steps():
    # Optimisers.jl's docstring example, exactly
    m = {"x": jnp.array([1.0]), "y": jnp.array([2.0])}
    st = fl.setup(F.OptimiserChain(F.AccumGrad(2), F.WeightDecay(0.01), F.Descent(0.1)), m)
    st, m1 = fl.update(st, m, {"x": jnp.array([33.0]), "y": jnp.array([0.0])})
    assert float(m1["x"][0]) == 1.0 and float(m1["y"][0]) == 2.0
    st, m2 = fl.update(st, m1, {"x": jnp.array([0.0]), "y": jnp.array([444.0])})
    close(m2["x"], [-0.651], 1e-6)
    close(m2["y"], [-20.202], 1e-6)
    # the rules after it advance once per n gradients: Adam's bias correction as optax.MultiSteps
    st, m = run(F.OptimiserChain(F.AccumGrad(3), F.Adam(0.01)))
    close(m["w"], optax_run(optax.MultiSteps(optax.adam(0.01), 3), jit=True))
    assert st["w"].count == 24


def test_lion_is_the_papers_not_optimisers_jl_code():
    ours = run(F.Lion(0.01))[1]["w"]
    close(ours, R.run(R.make("Lion_paper", 0.01, (0.9, 0.999)), W0, GW)[-1])
    assert np.abs(np.asarray(ours) - R.run(R.make("Lion", 0.01), W0, GW)[-1]).max() > 1e-2
    # the two coincide only when b2 = 0.5
    close(run(F.Lion(0.01, (0.9, 0.5)))[1]["w"], R.run(R.make("Lion", 0.01, (0.9, 0.5)), W0, GW)[-1])


@pytest.mark.parametrize("p", [2, 1, math.inf, -math.inf, 0, 3])
def test_clipnorm_norms(p):
    rule, ref = F.ClipNorm(2.5, p), R.make("ClipNorm", 2.5, p)
    for g in GW[:4] + [np.zeros((5, 3))]:
        _, dx = rule.apply({"omega": jnp.float32(2.5)}, (), None, jnp.asarray(g, jnp.float32), 1)
        close(dx, ref.apply(None, g, g)[1], 1e-6)


# ---------------------------------------------------------------------------
# against optax and torch.optim, where the formulas coincide


def optax_run(tx, gws=GW, w0=W0, jit=False):
    """optax's own loop (eager: cheaper than compiling each, except for MultiSteps's lax.cond)."""
    p = {"w": jnp.asarray(w0, jnp.float32)}
    s = tx.init(p)
    update = jax.jit(tx.update) if jit else tx.update
    for g in gws:
        u, s = update({"w": jnp.asarray(g, jnp.float32)}, s, p)
        p = optax.apply_updates(p, u)
    return p["w"]


def torch_run(make, gws=GW, w0=W0, clip=None):
    w = torch.tensor(w0, dtype=torch.float32, requires_grad=True)
    opt = make([w])
    for g in gws:
        w.grad = torch.tensor(g, dtype=torch.float32)
        if clip:
            clip([w])
        opt.step()
    return w.detach().numpy()


T = torch.optim
COINCIDE = [
    ("Descent", F.Descent(0.05), optax.sgd(0.05), lambda p: T.SGD(p, lr=0.05)),
    ("Momentum", F.Momentum(0.05, 0.8), optax.sgd(0.05, momentum=0.8), lambda p: T.SGD(p, lr=0.05, momentum=0.8)),
    ("Nesterov", F.Nesterov(0.05, 0.8), optax.sgd(0.05, momentum=0.8, nesterov=True),
     lambda p: T.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    ("RMSProp", F.RMSProp(0.01, 0.8, 1e-3), optax.rmsprop(0.01, 0.8, 1e-3, eps_in_sqrt=False),
     lambda p: T.RMSprop(p, lr=0.01, alpha=0.8, eps=1e-3)),
    ("RMSProp-centred", F.RMSProp(0.01, 0.8, 1e-3, centred=True),
     optax.rmsprop(0.01, 0.8, 1e-3, eps_in_sqrt=False, centered=True),
     lambda p: T.RMSprop(p, lr=0.01, alpha=0.8, eps=1e-3, centered=True)),
    ("Rprop", F.Rprop(0.01, (0.4, 1.3), (1e-4, 0.05)), None,
     lambda p: T.Rprop(p, lr=0.01, etas=(0.4, 1.3), step_sizes=(1e-4, 0.05))),
    ("Adam", F.Adam(0.01, (0.8, 0.99), 1e-3), optax.adam(0.01, 0.8, 0.99, 1e-3),
     lambda p: T.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-3)),
    ("RAdam", F.RAdam(0.01, (0.8, 0.999), 1e-3), optax.radam(0.01, 0.8, 0.999, 1e-3, threshold=4.0), None),
    ("AdaMax", F.AdaMax(0.01, (0.8, 0.99), 0.0), optax.adamax(0.01, 0.8, 0.99, 0.0),
     lambda p: T.Adamax(p, lr=0.01, betas=(0.8, 0.99), eps=0.0)),
    ("AdaGrad", F.AdaGrad(0.1, 1e-3), None, lambda p: T.Adagrad(p, lr=0.1, initial_accumulator_value=1e-3, eps=1e-3)),
    ("AdaDelta", F.AdaDelta(0.8, 1e-3), optax.adadelta(1.0, 0.8, 1e-3), lambda p: T.Adadelta(p, lr=1.0, rho=0.8, eps=1e-3)),
    ("AMSGrad", F.AMSGrad(0.01, (0.8, 0.99), 0.0),
     optax.amsgrad(0.01, 0.8, 0.99, 0.0, bias_correction_mu=False, bias_correction_nu=False), None),
    ("NAdam", F.NAdam(0.01, (0.8, 0.99), 1e-3), optax.nadam(0.01 / math.sqrt(0.99), 0.8, 0.99, 1e-3 / math.sqrt(0.99)), None),
    ("AdamW", F.AdamW(0.01, (0.8, 0.99), 0.1, 1e-3), optax.adamw(0.01, 0.8, 0.99, 1e-3, weight_decay=0.1),
     lambda p: T.AdamW(p, lr=0.01, betas=(0.8, 0.99), eps=1e-3, weight_decay=0.1)),
    ("AdamW-decoupled", F.AdamW(0.01, (0.8, 0.99), 0.1, 1e-3, couple=False),
     optax.adamw(0.01, 0.8, 0.99, 1e-3, weight_decay=10.0),
     lambda p: T.AdamW(p, lr=0.01, betas=(0.8, 0.99), eps=1e-3, weight_decay=10.0)),
    ("AdaBelief", F.AdaBelief(0.01, (0.8, 0.99), 1e-6), optax.adabelief(0.01, 0.8, 0.99, 1e-6, 1e-6), None),
    ("Lion", F.Lion(0.01, (0.8, 0.95)), optax.lion(0.01, 0.8, 0.95, weight_decay=0.0), None),
    ("ClipGrad+Momentum", F.OptimiserChain(F.ClipGrad(1.5), F.Momentum(0.05, 0.8)),
     optax.chain(optax.clip(1.5), optax.sgd(0.05, momentum=0.8)), None),
    ("ClipNorm+Adam", F.OptimiserChain(F.ClipNorm(4.0), F.Adam(0.01, (0.8, 0.99), 1e-3)),
     optax.chain(optax.clip_by_global_norm(4.0), optax.adam(0.01, 0.8, 0.99, 1e-3)), None),
    ("WeightDecay+Momentum", F.OptimiserChain(F.WeightDecay(0.1), F.Momentum(0.05, 0.8)),
     optax.chain(optax.add_decayed_weights(0.1), optax.sgd(0.05, momentum=0.8)),
     lambda p: T.SGD(p, lr=0.05, momentum=0.8, weight_decay=0.1)),
]


@pytest.mark.parametrize("name,rule,tx,make_torch", COINCIDE, ids=[c[0] for c in COINCIDE])
def test_matches_torch_or_optax(name, rule, tx, make_torch):
    """torch where it has the rule (it runs without compiling), else optax.
    test_optax.py and RULES_NOTES.md cover the optax equivalents too."""
    ours = run(rule)[1]["w"]
    if make_torch is not None:
        close(ours, torch_run(make_torch))
    else:
        close(ours, optax_run(tx))


def test_clip_grad_value_matches_torch():
    ours = run(F.OptimiserChain(F.ClipGrad(1.5), F.Momentum(0.05, 0.8)))[1]["w"]
    clip = lambda ps: torch.nn.utils.clip_grad_value_(ps, 1.5)
    close(ours, torch_run(lambda p: T.SGD(p, lr=0.05, momentum=0.8), clip=clip))


def test_clip_global_norm_matches_optax_and_torch():
    """One norm over all three arrays, as optax.clip_by_global_norm and torch's
    clip_grad_norm_ (which divides by norm + 1e-6, hence the tolerance)."""
    keys = ("w", "h", "q")
    m = model(W0)
    st = fl.setup(F.OptimiserChain(F.ClipGlobalNorm(3.0), F.Descent(0.05)), m)
    p = {k: m[k].astype(jnp.float32) for k in keys}
    tx = optax.chain(optax.clip_by_global_norm(3.0), optax.sgd(0.05))
    s = tx.init(p)
    ws = {k: torch.tensor(np.asarray(p[k]), requires_grad=True) for k in keys}
    opt = T.SGD(list(ws.values()), lr=0.05)
    for gw in GW[:8]:
        g = grad_dict(gw, m)  # the same gradients for all three, in float32 for optax and torch
        g32 = {k: v.astype(jnp.float32) for k, v in g.items()}
        st, m = fl.update(st, m, g)
        u, s = tx.update(g32, s, p)
        p = optax.apply_updates(p, u)
        for k, v in g32.items():
            ws[k].grad = torch.tensor(np.asarray(v))
        torch.nn.utils.clip_grad_norm_(list(ws.values()), 3.0)
        opt.step()
    close(m["w"], p["w"], 1e-5)
    close(m["w"], ws["w"].detach().numpy(), 1e-4)


# ---------------------------------------------------------------------------
# construction, defaults, printing


def _ours(name):
    return getattr(F, name)


@pytest.mark.parametrize("name", [n for n in R.POSITIONAL if n != "Lion_paper"])
def test_constructor_arguments_and_defaults_are_optimisers_jl(name):
    params = inspect.signature(_ours(name)).parameters
    want = [f.replace("lambda", "lambd") for f in R.POSITIONAL[name]]
    got = [(";" if p.kind == p.KEYWORD_ONLY else "") + n for n, p in params.items()]
    assert got == want
    for field, default in R.DEFAULTS[name].items():
        ours = params[field.replace("lambda", "lambd")].default
        if name == "Descent":  # Optimisers.jl's 0.1f0: the same in float32
            assert np.float32(ours) == np.float32(default)
        else:
            assert ours == default, (name, field)


REPRS = [
    (F.Descent(), "Descent(eta=0.1)"),
    (F.Momentum(), "Momentum(eta=0.01, rho=0.9)"),
    (F.Nesterov(), "Nesterov(eta=0.001, rho=0.9)"),
    (F.Rprop(), "Rprop(eta=0.001, ell=(0.5, 1.2), gamma=(1e-06, 50.0))"),
    (F.RMSProp(), "RMSProp(eta=0.001, rho=0.9, epsilon=1e-08, centred=False)"),
    (F.Adam(), "Adam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)"),
    (F.RAdam(), "RAdam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)"),
    (F.AdaMax(), "AdaMax(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)"),
    (F.OAdam(), "OAdam(eta=0.001, beta=(0.5, 0.9), epsilon=1e-08)"),
    (F.AdaGrad(), "AdaGrad(eta=0.1, epsilon=1e-08)"),
    (F.AdaDelta(), "AdaDelta(rho=0.9, epsilon=1e-08)"),
    (F.AMSGrad(), "AMSGrad(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)"),
    (F.NAdam(), "NAdam(eta=0.001, beta=(0.9, 0.999), epsilon=1e-08)"),
    (F.AdamW(), "AdamW(eta=0.001, beta=(0.9, 0.999), lambd=0.0, epsilon=1e-08, couple=True)"),
    (F.AdaBelief(), "AdaBelief(eta=0.001, beta=(0.9, 0.999), epsilon=1e-16)"),
    (F.Lion(), "Lion(eta=0.001, beta=(0.9, 0.999))"),
    (F.WeightDecay(), "WeightDecay(lambd=0.0005)"),
    (F.SignDecay(), "SignDecay(lambd=0.001)"),
    (F.ClipGrad(), "ClipGrad(delta=10.0)"),
    (F.ClipNorm(), "ClipNorm(omega=10.0, p=2.0, throw=True)"),
    (F.ClipGlobalNorm(1, throw=False), "ClipGlobalNorm(omega=1.0, p=2.0, throw=False)"),
    (F.AccumGrad(4), "AccumGrad(n=4)"),
    (F.OptimiserChain(F.ClipGrad(1), F.Descent(0.1)), "OptimiserChain(ClipGrad(delta=1.0), Descent(eta=0.1))"),
    (F.Momentum(1), "Momentum(eta=1.0, rho=0.9)"),
]


@pytest.mark.parametrize("rule,text", REPRS, ids=[t for _, t in REPRS])
def test_rules_print_like_optimisers_jl(rule, text):
    assert repr(rule) == text
    assert rule == eval(text, vars(F))  # the printed form rebuilds an equal rule


def test_leaf_prints_its_rule_and_frozen():
    st = fl.setup(F.OptimiserChain(F.ClipGrad(1.0), F.Adam(0.1)), {"w": jnp.zeros((2, 3))})
    leaf = st["w"]
    assert repr(leaf) == ("Leaf(OptimiserChain(ClipGrad(delta=1.0), Adam(eta=0.1, beta=(0.9, 0.999), epsilon=1e-08)), "
                          "state=(2×3 float32, 2×3 float32))")
    fl.freeze_(leaf)
    assert repr(leaf).endswith("frozen=True)")


BAD = [
    (lambda: F.Descent(-0.1), ValueError, "Descent: eta=-0.1 must be a finite number >= 0"),
    (lambda: F.Adam(-1e-3), ValueError, "Adam: eta=-0.001"),
    (lambda: F.Adam(float("nan")), ValueError, "eta=nan"),
    (lambda: F.Adam(beta=(0.9, 1.0)), ValueError, "beta=(0.9, 1.0) must be in [0, 1)"),
    (lambda: F.Adam(beta=0.9), ValueError, "beta must be a pair"),
    (lambda: F.Adam(epsilon=-1), ValueError, "epsilon=-1"),
    (lambda: F.Momentum(rho=1.5), ValueError, "rho=1.5 must be in [0, 1]"),
    (lambda: F.AccumGrad(0), ValueError, "AccumGrad: n=0 must be between 1"),
    (lambda: F.AccumGrad(-2), ValueError, "n=-2"),
    (lambda: F.AccumGrad(2.0), TypeError, "AccumGrad: n=2.0 must be an int"),
    (lambda: F.Rprop(ell=(1.5, 1.2)), ValueError, "Rprop: ell"),
    (lambda: F.Rprop(gamma=(1.0, 0.1)), ValueError, "min <= max"),
    (lambda: F.Rprop(optax.constant_schedule(0.1)), ValueError, "Rprop: eta="),
    (lambda: F.ClipNorm(-1.0), ValueError, "ClipNorm: omega=-1.0"),
    (lambda: F.ClipNorm(1.0, float("nan")), ValueError, "ClipNorm: p=nan"),
    (lambda: F.AdamW(couple=1), ValueError, "couple=1 must be True or False"),
    (lambda: F.WeightDecay("0.1"), ValueError, "WeightDecay: lambd='0.1'"),
    (lambda: F.OptimiserChain(F.Adam(), optax.adam(0.1)), TypeError, "argument 1"),
]


@pytest.mark.parametrize("make,err,msg", BAD, ids=[m for _, _, m in BAD])
def test_construction_rejects_bad_values(make, err, msg):
    with pytest.raises(err, match=None) as info:
        make()
    assert msg in str(info.value)


# ---------------------------------------------------------------------------
# ClipNorm's throw


def test_clipnorm_throws_on_a_non_finite_norm_and_changes_nothing():
    m = model(W0)
    st = fl.setup(F.OptimiserChain(F.ClipNorm(4.0), F.Adam(0.01, B, 1e-3)), m)
    fl.update_(st, m, grad_dict(GW[0], m))
    before = bits((st, m))
    bad = GW[1].copy()
    bad[1, 2] = np.inf
    with pytest.raises(FloatingPointError, match=r"ClipNorm: the gradient at model\['w'\] has 2.0-norm inf"):
        fl.update_(st, m, grad_dict(bad, m))
    assert bits((st, m)) == before
    with pytest.raises(FloatingPointError, match="nan"):
        fl.update(st, m, grad_dict(GW[1] * np.nan, m))
    # a frozen Leaf's gradient is not looked at; the others are updated
    fl.freeze_(st["w"])
    before_w, before_h = m["w"], m["h"]
    fl.update_(st, m, grad_dict(bad, m))
    assert bits(m["w"]) == bits(before_w) and bits(m["h"]) != bits(before_h)


@pytest.mark.parametrize("p", [2, 1])
def test_clipnorm_without_throw_follows_optimisers_jl(p):
    g = np.array([1.0, 10.0, np.inf])
    _, new = F.ClipNorm(5.0, p, throw=False).apply({"omega": jnp.float32(5.0)}, (), None, jnp.asarray(g), 1)
    _, want = R.make("ClipNorm", 5.0, p, throw=False).apply(None, np.zeros(3), g)
    np.testing.assert_array_equal(np.isnan(np.asarray(new)), np.isnan(want))
    np.testing.assert_array_equal(np.nan_to_num(np.asarray(new)), np.nan_to_num(want))


def test_clipnorm_under_jit_makes_the_update_nan_and_train_stops():
    model_ = {"w": jnp.zeros(2)}
    state = fl.setup(F.OptimiserChain(F.ClipNorm(1.0), F.Descent(0.1)), model_)
    _, new = jax.jit(fl.update)(state, model_, {"w": jnp.array([jnp.inf, 1.0])})
    assert np.isnan(np.asarray(new["w"])).all()
    # a finite loss with an infinite gradient: the update is NaN, train_ stops at the next item
    data = [(jnp.ones(2),)] * 3
    with pytest.raises(FloatingPointError, match="item 1"):
        fl.train_(lambda m, x: jnp.sum(jnp.sqrt(jnp.abs(m["w"])) * x), model_, data, state)


def test_clip_global_norm_leaves_out_frozen_leafs():
    m = model(np.zeros((5, 3)))
    st = fl.setup(F.OptimiserChain(F.ClipGlobalNorm(1.0), F.Descent(1.0)), m)
    fl.freeze_(st["q"])
    gw = np.zeros((5, 3))
    gw[0, 0], gw[0, 1] = 3.0, 4.0
    g = grad_dict(gw, m)
    g["h"], g["q"] = jnp.zeros(2, jnp.bfloat16), jnp.full(2, 1000.0, jnp.float16)
    _, new = fl.update(st, m, g)
    close([new["w"][0, 0], new["w"][0, 1]], [-0.6, -0.8], 1e-6)
    assert bits(new["q"]) == bits(m["q"])
