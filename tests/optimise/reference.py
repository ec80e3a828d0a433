"""Independent float64 NumPy oracle for Optimisers.jl's optimisation rules.

Transcribed by hand from FluxML/Optimisers.jl v0.4.8 (``src/rules.jl`` and
``src/interface.jl`` at commit b3595f5c9639d8e014929dcd2af5effb3966d6c0).
It depends on nothing except NumPy, so tests can compare fluxlike against it
without reusing fluxlike (or optax) code.

Conventions mirror Optimisers.jl exactly:

* ``ref = make("Adam", eta=0.01)`` builds a rule. You can also pass arguments
  positionally, in the order of Optimisers.jl's positional constructor, for
  example ``make("AdamW", 0.01, (0.9, 0.999), 0.1)`` (there, lambda comes
  before epsilon).
* ``state = ref.init(x)`` returns the same state layout as ``Optimisers.init``.
  For example, Adam's state is ``(mt, vt, (beta1^t, beta2^t))``.
* ``state, dx_out = ref.apply(state, x, dx)`` mirrors ``Optimisers.apply!``.
  The parameter update is ``x_new = x - dx_out``. When ``dx_out`` is ``None``
  (this is Julia's ``nothing``, which AccumGrad returns between its emitting
  steps), x stays unchanged. Inputs are never mutated.
* Hyperparameter keywords use Optimisers.jl's field names: ``eta``, ``beta``
  (a 2-tuple), ``epsilon``, ``rho``, ``ell``, ``gamma``, ``delta``, ``omega``,
  ``p``, ``throw``, ``n``, ``couple``, ``centred`` (``centered`` is also
  accepted). The one exception is ``lambda``: spell it ``lambd`` (or use
  ``**{"lambda": v}``).
* The defaults are exactly those of the Optimisers.jl constructors. The one
  quirk: ``Descent()`` defaults to the Float32 value ``0.1f0``, so in Float64
  arithmetic its step size is ``float(np.float32(0.1)) = 0.10000000149011612``.
  ``make("Descent")`` reproduces this.

``Lion`` transcribes Optimisers.jl's code. Note that this code swaps the
momentum EMA weights: it computes ``m = b2*g + (1-b2)*m``. ``Lion_paper`` is
the algorithm from Chen et al. (2023), the same as ``optax.lion``.

>>> import numpy as np
>>> ref = make("Descent", 0.5)
>>> xs = run(ref, np.array([1.0, 2.0]), [np.array([1.0, 1.0])] * 2)
>>> xs[-1].tolist()
[0.0, 1.0]
>>> show(make("Adam"))
'Adam(eta=0.001, beta=(0.9, 0.999), epsilon=1.0e-8)'

Test vectors taken from Optimisers.jl's own test/runtests.jl and docstrings:

>>> x, dx = np.array([1, 10, 100.0]), np.array([1, 2, 3.0])
>>> np.allclose(step(make("WeightDecay", 0.1), None, x, dx)[1], [1-0.1-1, 10-1-2, 100-10-3])
True
>>> chain = make("OptimiserChain", make("ClipGrad", 2), make("WeightDecay", 0.1))
>>> np.allclose(step(chain, chain.init(x), x, dx)[1], [1-0.1-1, 10-1-2, 100-10-2])
True
>>> np.allclose(step(make("OptimiserChain"), (), x, dx)[1], [1-1, 10-2, 100-3])
True
>>> xm, dxm = np.array([1, -10, 100.0]), np.array([3, 2, -1.0])
>>> np.allclose(step(make("SignDecay", 0.1), None, xm, dxm)[1], [1-0.1-3, -10+0.1-2, 100-0.1+1])
True
>>> g = np.array([1, 10, 100.0])
>>> float(np.linalg.norm(make("ClipNorm", 10).apply(None, g, g)[1]))
10.0
>>> try:
...     make("ClipNorm", 10).apply(None, g, np.array([1, 10, np.nan]))
... except DomainError as e:
...     print(type(e).__name__, e)
DomainError gradient has 2.0-norm nan, for array of shape (3,)
>>> float(np.sum(np.abs(make("ClipNorm", 5, 1, throw=False).apply(None, g, g)[1])))
5.0
>>> bool(np.isnan(make("ClipNorm", 5, 1, throw=False).apply(None, g, np.array([1, 10, np.inf]))[1][2]))
True
>>> acc = make("OptimiserChain", make("AccumGrad", 2), make("WeightDecay", 0.01), make("Descent", 0.1))
>>> [xs[-1].tolist() for xs in (run(acc, [1.0], [[33.0], [0.0]]), run(acc, [2.0], [[0.0], [444.0]]))]
[[-0.651], [-20.202]]
>>> run(acc, [1.0], [[33.0], [0.0]])[0].tolist()   # nothing happens on the first call
[1.0]
>>> run(make("AdamW", 0.1), [1.0, 2.0], [[2.0, 4.0]])[0].tolist()
[0.9, 1.9]
"""

from __future__ import annotations

import decimal
import math
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "make",
    "run",
    "step",
    "show",
    "julia_float",
    "RULES",
    "DEFAULTS",
    "POSITIONAL",
    "DomainError",
    "ArgumentError",
]

OPTIMISERS_JL_VERSION = "0.4.8"
OPTIMISERS_JL_COMMIT = "b3595f5c9639d8e014929dcd2af5effb3966d6c0"


class DomainError(ValueError):
    """Stands in for Julia's ``DomainError``."""


class ArgumentError(ValueError):
    """Stands in for Julia's ``ArgumentError``."""


def _arr(a) -> np.ndarray:
    return np.array(a, dtype=np.float64)  # always a fresh copy


# --------------------------------------------------------------------------
# Julia-style printing helpers
# --------------------------------------------------------------------------


class _F32(float):
    """A float that was a Float32 literal in Julia (only ``Descent``'s default ``1f-1``)."""

    def __new__(cls, v):
        return float.__new__(cls, float(np.float32(v)))


def julia_float(v: float, *, f32: bool = False, compact: bool = False) -> str:
    """Format a number the way Julia's ``print``/``show`` formats a Float64.

    The digits are the shortest round-trip digits (Ryu). Plain notation is
    used when ``-4 < pt <= 6`` (``pt`` = decimal-point position), otherwise
    the form is ``1.0e-8``. With ``f32=True`` this returns ``show`` of a
    Float32 value (``0.1f0``, ``1.0f-8``). With ``compact=True`` (IOContext
    ``:compact``) it rounds to 6 significant digits and drops the ``f0``.
    """
    v = float(v)
    if math.isnan(v):
        return "NaN32" if (f32 and not compact) else "NaN"
    if math.isinf(v):
        s = "Inf32" if (f32 and not compact) else "Inf"
        return ("-" + s) if v < 0 else s
    if f32:
        # shortest round-trip digits of the Float32 value
        digits_src = np.format_float_scientific(np.float32(v), unique=True, trim="-")
    else:
        digits_src = repr(v)
    if compact:
        digits_src = "%.6g" % float(digits_src)
    d = decimal.Decimal(digits_src)
    sign, dig, exp = d.as_tuple()
    digits = "".join(map(str, dig)).lstrip("0")
    if digits == "":
        body = "0.0"
        return ("-" if sign else "") + body + ("f0" if (f32 and not compact) else "")
    # strip trailing zeros into the exponent
    stripped = digits.rstrip("0")
    nexp = exp + (len(digits) - len(stripped))
    digits = stripped
    olength = len(digits)
    pt = nexp + olength
    expchar = "f" if (f32 and not compact) else "e"
    if -4 < pt <= 6:
        if pt <= 0:
            body = "0." + "0" * (-pt) + digits
        elif pt >= olength:
            body = digits + "0" * nexp + ".0"
        else:
            body = digits[:pt] + "." + digits[pt:]
        if f32 and not compact:
            body += "f0"
    else:
        body = digits[0] + "." + (digits[1:] or "0") + expchar + str(pt - 1)
    return ("-" if sign else "") + body


def _jshow(v, compact: bool = False) -> str:
    """Julia ``show``/``print`` of one hyperparameter value (Float64 unless _F32)."""
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return "true" if v else "false"
    if isinstance(v, _F32):
        return julia_float(v, f32=True, compact=compact)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return julia_float(v, compact=compact)
    if isinstance(v, tuple):
        inner = ", ".join(_jshow(e, compact) for e in v)
        return "(" + inner + ("," if len(v) == 1 else "") + ")"
    return str(v)


def show(rule: "Rule", *, compact: bool = False) -> str:
    """Return Julia's ``show(io, rule)`` output for Optimisers.jl v0.4.8.

    ``compact=True`` gives the form printed inside ``Leaf(...)``, which uses
    an ``IOContext(io, :compact => true)``. For the @def rules the output does
    not change, because their ``show`` interpolates the values into a string.
    Type names are printed unqualified, which assumes ``using Optimisers``.
    """
    return rule.julia_show(compact=compact)


# --------------------------------------------------------------------------
# Rule base class
# --------------------------------------------------------------------------


def _float(v, name):
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
        raise ArgumentError(f"{v} is not a number")
    return v if isinstance(v, _F32) else float(v)


def _float_tuple(v, name):
    if not isinstance(v, (tuple, list)):
        raise ArgumentError(f"{v} is not a tuple")
    return tuple(_float(e, name) for e in v)


class Rule:
    """Base class. Subclasses define FIELDS = ((name, default, kind), ...) in positional order."""

    name: str = "Rule"
    FIELDS: tuple = ()
    KWONLY: tuple = ()  # keyword-only fields: (name, default, kind)
    DEF_SHOW = True  # the @def macro's show: Name(f1=v1, f2=v2)
    CHECK_ETA = True

    def __init__(self, *args, **kw):
        kw = dict(kw)
        if "lambd" in kw:
            kw["lambda"] = kw.pop("lambd")
        if "centered" in kw:  # RMSProp accepts both spellings, ORed
            c = kw.pop("centered")
            kw["centred"] = bool(kw.get("centred", False)) | bool(c)
        fields = list(self.FIELDS)
        if len(args) > len(fields):
            raise TypeError(f"{self.name} takes at most {len(fields)} positional arguments")
        vals = {}
        for (fname, default, kind), a in zip(fields, args):
            vals[fname] = a
        for fname, default, kind in fields + list(self.KWONLY):
            if fname in kw:
                if fname in vals:
                    raise TypeError(f"{self.name}: {fname} given twice")
                vals[fname] = kw.pop(fname)
            elif fname not in vals:
                if default is _REQUIRED:
                    raise TypeError(f"{self.name}: missing argument {fname}")
                vals[fname] = default
        if kw:
            raise TypeError(f"{self.name}: unknown keyword(s) {sorted(kw)}")
        self.hyper = {}
        for fname, default, kind in fields + list(self.KWONLY):
            v = vals[fname]
            if kind == "float":
                v = _float(v, fname)
            elif kind == "tuple":
                v = _float_tuple(v, fname)
            elif kind == "bool":
                v = bool(v)
            self.hyper[fname] = v
        if self.CHECK_ETA and "eta" in self.hyper and self.hyper["eta"] < 0:
            raise DomainError("the learning rate cannot be negative")
        self._post_init()

    def _post_init(self):
        pass

    def __getattr__(self, item):
        hyper = self.__dict__.get("hyper", {})
        if item in hyper:
            return hyper[item]
        if item == "lambd" and "lambda" in hyper:
            return hyper["lambda"]
        raise AttributeError(item)

    # -- printing --
    def julia_show(self, compact: bool = False) -> str:
        parts = [f"{n}={_jshow(v)}" for n, v in self.hyper.items()]
        return f"{self.name}(" + ", ".join(parts) + ")"

    def __repr__(self):
        return f"<reference {self.julia_show()}>"

    # -- rule interface --
    def init(self, x):
        raise NotImplementedError

    def apply(self, state, x, dx):
        raise NotImplementedError


_REQUIRED = object()

# Optimisers.jl's common defaults
_B = (0.9, 0.999)


class Descent(Rule):
    """Descent(η = 1f-1): dx' = dx * η. There is no check for negative η."""

    name = "Descent"
    FIELDS = (("eta", _F32(0.1), "raw"),)
    CHECK_ETA = False

    def init(self, x):
        return None

    def apply(self, state, x, dx):
        return state, _arr(dx) * float(self.eta)

    def julia_show(self, compact=False):
        return "Descent(" + _jshow(self.eta, compact) + ")"


class Momentum(Rule):
    name = "Momentum"
    FIELDS = (("eta", 0.01, "float"), ("rho", 0.9, "float"))

    def init(self, x):
        return np.zeros_like(_arr(x))

    def apply(self, mvel, x, dx):
        eta, rho = self.eta, self.rho
        mvel = rho * mvel + eta * _arr(dx)
        return mvel, mvel.copy()


class Nesterov(Rule):
    name = "Nesterov"
    FIELDS = (("eta", 0.001, "float"), ("rho", 0.9, "float"))

    def init(self, x):
        return np.zeros_like(_arr(x))

    def apply(self, vel, x, dx):
        eta, rho = self.eta, self.rho
        dx = _arr(dx)
        newdx = (-(rho * rho)) * vel + ((1 + rho) * eta) * dx  # uses the OLD velocity
        vel = rho * vel - eta * dx
        return vel, newdx


class RMSProp(Rule):
    """RMSProp(η, ρ = 0.9, ϵ = 1e-8; centred = false); keyword default η = 0.001."""

    name = "RMSProp"
    FIELDS = (("eta", 0.001, "float"), ("rho", 0.9, "float"), ("epsilon", 1e-8, "float"))
    KWONLY = (("centred", False, "bool"),)

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x) if self.centred else False)

    def apply(self, state, x, dx):
        eta, rho, eps = self.eta, self.rho, self.epsilon
        dx = _arr(dx)
        quad, lin = state
        quad = rho * quad + (1 - rho) * (dx * dx)
        if self.centred:
            lin = rho * lin + (1 - rho) * dx
        dxp = dx * eta / (np.sqrt(quad - lin * lin) + eps)
        return (quad, lin), dxp

    def julia_show(self, compact=False):
        # Upstream bug, reproduced: the closing parenthesis is missing.
        h = self.hyper
        return (
            f"RMSProp(eta={_jshow(h['eta'])}, rho={_jshow(h['rho'])}, "
            f"epsilon={_jshow(h['epsilon'])}, centred={_jshow(h['centred'])}"
        )


class Rprop(Rule):
    name = "Rprop"
    FIELDS = (("eta", 1e-3, "float"), ("ell", (0.5, 1.2), "tuple"), ("gamma", (1e-6, 50.0), "tuple"))

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.full_like(x, self.eta))

    def apply(self, state, x, dx):
        ell, gam = self.ell, self.gamma
        dx = _arr(dx)
        g, eta = state
        prod = g * dx
        eta = np.where(
            prod > 0,
            np.minimum(eta * ell[1], gam[1]),
            np.where(prod < 0, np.maximum(eta * ell[0], gam[0]), eta),
        )
        g = np.where(prod < 0, 0.0, dx)
        dxp = eta * np.sign(g)
        return (g, eta), dxp


class Adam(Rule):
    name = "Adam"
    FIELDS = (("eta", 0.001, "float"), ("beta", _B, "tuple"), ("epsilon", 1e-8, "float"))

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x), tuple(self.beta))

    def apply(self, state, x, dx):
        eta, b, eps = self.eta, self.beta, self.epsilon
        dx = _arr(dx)
        mt, vt, bt = state
        mt = b[0] * mt + (1 - b[0]) * dx
        vt = b[1] * vt + (1 - b[1]) * (dx * dx)
        dxp = mt / (1 - bt[0]) / (np.sqrt(vt / (1 - bt[1])) + eps) * eta
        return (mt, vt, (bt[0] * b[0], bt[1] * b[1])), dxp


class Lion(Rule):
    """Optimisers.jl's Lion, as its code is written (the EMA weights are swapped compared with the paper)."""

    name = "Lion"
    FIELDS = (("eta", 0.001, "float"), ("beta", _B, "tuple"))

    def init(self, x):
        return np.zeros_like(_arr(x))

    def apply(self, state, x, dx):
        eta, b = self.eta, self.beta
        dx = _arr(dx)
        state = b[1] * dx + (1 - b[1]) * state
        dxp = eta * np.sign((b[1] - b[0]) * dx + b[0] * state)
        return state, dxp


class Lion_paper(Rule):
    """Lion as in Chen et al. 2023 (Alg. 2) and optax.lion.

    c = b1*m + (1-b1)*g ; dx' = eta*(sign(c) + lambda*x) ; m = b2*m + (1-b2)*g.
    The defaults follow the paper and optax: beta = (0.9, 0.99). lambda
    defaults to 0 here (optax's default is 1e-3).
    """

    name = "Lion_paper"
    FIELDS = (("eta", 0.001, "float"), ("beta", (0.9, 0.99), "tuple"), ("lambda", 0.0, "float"))

    def init(self, x):
        return np.zeros_like(_arr(x))

    def apply(self, m, x, dx):
        eta, b, lam = self.eta, self.beta, self.hyper["lambda"]
        dx, x = _arr(dx), _arr(x)
        c = (1.0 - b[0]) * dx + b[0] * m
        dxp = eta * (np.sign(c) + lam * x)
        m = (1 - b[1]) * dx + b[1] * m
        return m, dxp


class RAdam(Rule):
    name = "RAdam"
    FIELDS = (("eta", 0.001, "float"), ("beta", _B, "tuple"), ("epsilon", 1e-8, "float"))

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x), tuple(self.beta), 1)

    def apply(self, state, x, dx):
        eta, b, eps = self.eta, self.beta, self.epsilon
        dx = _arr(dx)
        rho_inf = 2 / (1 - b[1]) - 1
        mt, vt, bt, t = state
        mt = b[0] * mt + (1 - b[0]) * dx
        vt = b[1] * vt + (1 - b[1]) * (dx * dx)
        rho = rho_inf - 2 * t * bt[1] / (1 - bt[1])
        if rho > 4:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            dxp = mt / (1 - bt[0]) / (np.sqrt(vt / (1 - bt[1])) + eps) * eta * r
        else:
            dxp = mt / (1 - bt[0]) * eta
        return (mt, vt, (bt[0] * b[0], bt[1] * b[1]), t + 1), dxp


class AdaMax(Rule):
    name = "AdaMax"
    FIELDS = (("eta", 0.001, "float"), ("beta", _B, "tuple"), ("epsilon", 1e-8, "float"))

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x), tuple(self.beta))

    def apply(self, state, x, dx):
        eta, b, eps = self.eta, self.beta, self.epsilon
        dx = _arr(dx)
        mt, ut, bt = state
        mt = b[0] * mt + (1 - b[0]) * dx
        ut = np.maximum(b[1] * ut, np.abs(dx))
        dxp = (eta / (1 - bt[0])) * mt / (ut + eps)
        return (mt, ut, (bt[0] * b[0], bt[1] * b[1])), dxp


class OAdam(Rule):
    name = "OAdam"
    FIELDS = (("eta", 0.001, "float"), ("beta", (0.5, 0.9), "tuple"), ("epsilon", 1e-8, "float"))

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x), tuple(self.beta), np.zeros_like(x))

    def apply(self, state, x, dx):
        eta, b, eps = self.eta, self.beta, self.epsilon
        dx = _arr(dx)
        mt, vt, bt, term = state
        mt = b[0] * mt + (1 - b[0]) * dx
        vt = b[1] * vt + (1 - b[1]) * (dx * dx)
        prev = term.copy()
        term = eta * mt / (1 - bt[0]) / (np.sqrt(vt / (1 - bt[1])) + eps)
        dxp = 2 * term - prev
        return (mt, vt, (bt[0] * b[0], bt[1] * b[1]), term), dxp


class AdaGrad(Rule):
    name = "AdaGrad"
    FIELDS = (("eta", 0.1, "float"), ("epsilon", 1e-8, "float"))

    def init(self, x):
        return np.full_like(_arr(x), self.epsilon)  # accumulator starts at epsilon, not 0

    def apply(self, acc, x, dx):
        eta, eps = self.eta, self.epsilon
        dx = _arr(dx)
        acc = acc + dx * dx
        dxp = dx * eta / (np.sqrt(acc) + eps)
        return acc, dxp


class AdaDelta(Rule):
    name = "AdaDelta"
    FIELDS = (("rho", 0.9, "float"), ("epsilon", 1e-8, "float"))

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x))

    def apply(self, state, x, dx):
        rho, eps = self.rho, self.epsilon
        dx = _arr(dx)
        acc, dacc = state
        acc = rho * acc + (1 - rho) * (dx * dx)
        dxp = dx * np.sqrt(dacc + eps) / np.sqrt(acc + eps)  # uses the OLD Δacc
        dacc = rho * dacc + (1 - rho) * (dxp * dxp)
        return (acc, dacc), dxp


class AMSGrad(Rule):
    name = "AMSGrad"
    FIELDS = (("eta", 0.001, "float"), ("beta", _B, "tuple"), ("epsilon", 1e-8, "float"))

    def init(self, x):
        x = _arr(x)
        e = self.epsilon
        return (np.full_like(x, e), np.full_like(x, e), np.full_like(x, e))  # all three start at epsilon

    def apply(self, state, x, dx):
        eta, b, eps = self.eta, self.beta, self.epsilon
        dx = _arr(dx)
        mt, vt, vhat = state
        mt = b[0] * mt + (1 - b[0]) * dx
        vt = b[1] * vt + (1 - b[1]) * (dx * dx)
        vhat = np.maximum(vhat, vt)
        dxp = eta * mt / (np.sqrt(vhat) + eps)  # no bias correction
        return (mt, vt, vhat), dxp


class NAdam(Rule):
    name = "NAdam"
    FIELDS = (("eta", 0.001, "float"), ("beta", _B, "tuple"), ("epsilon", 1e-8, "float"))

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x), tuple(self.beta))

    def apply(self, state, x, dx):
        eta, b, eps = self.eta, self.beta, self.epsilon
        dx = _arr(dx)
        mt, vt, bt = state
        mt = b[0] * mt + (1 - b[0]) * dx
        vt = b[1] * vt + (1 - b[1]) * (dx * dx)
        dxp = (
            (b[0] * mt / (1 - b[0] * bt[0]) + (1 - b[0]) * dx / (1 - bt[0]))
            / (np.sqrt(vt * b[1] / (1 - bt[1])) + eps)
            * eta
        )
        return (mt, vt, (bt[0] * b[0], bt[1] * b[1])), dxp


class AdamW(Rule):
    """AdamW(η, β = (0.9, 0.999), λ = 0.0, ϵ = 1e-8; couple = true); keyword default η = 0.001."""

    name = "AdamW"
    FIELDS = (
        ("eta", 0.001, "float"),
        ("beta", _B, "raw"),  # Julia keeps beta as given, and does not call float()
        ("lambda", 0.0, "float"),
        ("epsilon", 1e-8, "float"),
    )
    KWONLY = (("couple", True, "bool"),)

    def _post_init(self):
        self.hyper["beta"] = tuple(self.hyper["beta"])

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x), tuple(float(v) for v in self.beta))

    def apply(self, state, x, dx):
        eta, eps, lam = self.eta, self.epsilon, self.hyper["lambda"]
        b = tuple(float(v) for v in self.beta)
        dx, x = _arr(dx), _arr(x)
        mt, vt, bt = state
        mt = b[0] * mt + (1 - b[0]) * dx
        vt = b[1] * vt + (1 - b[1]) * (dx * dx)
        dxp = mt / (1 - bt[0]) / (np.sqrt(vt / (1 - bt[1])) + eps)
        if self.couple:
            dxpp = eta * (dxp + lam * x)
        else:
            dxpp = eta * dxp + lam * x
        return (mt, vt, (bt[0] * b[0], bt[1] * b[1])), dxpp

    def julia_show(self, compact=False):
        h = self.hyper
        return (
            f"AdamW(eta={_jshow(h['eta'])}, beta={_jshow(h['beta'])}, lambda={_jshow(h['lambda'])}, "
            f"epsilon={_jshow(h['epsilon'])}, couple={_jshow(h['couple'])})"
        )


class AdaBelief(Rule):
    name = "AdaBelief"
    FIELDS = (("eta", 0.001, "float"), ("beta", _B, "tuple"), ("epsilon", 1e-16, "float"))

    def init(self, x):
        x = _arr(x)
        return (np.zeros_like(x), np.zeros_like(x), tuple(self.beta))

    def apply(self, state, x, dx):
        eta, b, eps = self.eta, self.beta, self.epsilon
        dx = _arr(dx)
        mt, st, bt = state
        mt = b[0] * mt + (1 - b[0]) * dx
        d = dx - mt  # uses the NEW mt
        st = b[1] * st + (1 - b[1]) * (d * d) + eps
        dxp = eta * mt / (1 - bt[0]) / (np.sqrt(st / (1 - bt[1])) + eps)
        return (mt, st, (bt[0] * b[0], bt[1] * b[1])), dxp


class WeightDecay(Rule):
    """WeightDecay(λ = 5e-4): dx' = dx + λ*x. The field is called ``lambda``."""

    name = "WeightDecay"
    FIELDS = (("lambda", 5e-4, "float"),)

    def init(self, x):
        return None

    def apply(self, state, x, dx):
        return state, _arr(dx) + self.hyper["lambda"] * _arr(x)


class SignDecay(Rule):
    name = "SignDecay"
    FIELDS = (("lambda", 1e-3, "float"),)

    def init(self, x):
        return None

    def apply(self, state, x, dx):
        return state, _arr(dx) + self.hyper["lambda"] * np.sign(_arr(x))


class ClipGrad(Rule):
    name = "ClipGrad"
    FIELDS = (("delta", 10.0, "float"),)

    def init(self, x):
        return None

    def apply(self, state, x, dx):
        d = self.delta
        return state, np.clip(_arr(dx), -d, d)


def julia_norm(a: np.ndarray, p: float) -> float:
    """LinearAlgebra.norm(a, p) over ALL entries, treating the array as one vector."""
    a = np.abs(np.asarray(a, dtype=np.float64)).ravel()
    if a.size == 0:
        return 0.0
    if p == 2:
        return float(np.sqrt(np.sum(a * a)))
    if p == 1:
        return float(np.sum(a))
    if p == math.inf:
        return float(np.max(a))
    if p == -math.inf:
        return float(np.min(a))
    if p == 0:
        return float(np.count_nonzero(a))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        return float(np.sum(a**p) ** (1.0 / p))


class ClipNorm(Rule):
    """ClipNorm(ω = 10, p = 2; throw = true). Julia has only this positional form, with no omega=/p= keywords."""

    name = "ClipNorm"
    FIELDS = (("omega", 10.0, "float"), ("p", 2.0, "float"))
    KWONLY = (("throw", True, "bool"),)
    CHECK_ETA = False

    def init(self, x):
        return None

    def apply(self, state, x, dx):
        dx = _arr(dx)
        nrm = julia_norm(dx, self.p)
        if self.throw and not math.isfinite(nrm):
            raise DomainError(f"gradient has {self.p}-norm {nrm}, for array of shape {np.shape(x)}")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.float64(self.omega) / np.float64(nrm)  # omega/0 -> Inf -> lambda = 1
        lam = float(np.minimum(ratio, 1.0))  # NaN propagates, like Julia's min
        with np.errstate(invalid="ignore"):
            return state, dx * lam

    def julia_show(self, compact=False):
        # There is no custom show, so the AbstractRule fallback prints the default struct form with :compact
        h = self.hyper
        return (
            f"ClipNorm{{Float64, Float64}}({_jshow(h['omega'], True)}, {_jshow(h['p'], True)}, "
            f"{_jshow(h['throw'])})"
        )


class AccumGrad(Rule):
    """AccumGrad(n): averages n gradients, emits their mean on every n-th call, and emits ``None`` (nothing) otherwise."""

    name = "AccumGrad"
    FIELDS = (("n", _REQUIRED, "raw"),)
    CHECK_ETA = False

    def _post_init(self):
        n = self.hyper["n"]
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
            raise TypeError("AccumGrad(n) needs an Integer")
        if n <= 0:
            raise ArgumentError("AccumGrad must accumulate at least one gradient")
        self.hyper["n"] = int(n)

    def init(self, x):
        return (np.zeros_like(_arr(x)), 1)

    def apply(self, state, x, dx):
        acc, counter = state
        n = self.n
        dx = _arr(dx)
        if counter == 1:
            acc = dx / n
        else:
            acc = acc + dx / n
        if counter == n:
            return (acc, 1), acc.copy()
        return (acc, counter + 1), None

    def julia_show(self, compact=False):
        return f"AccumGrad{{Int64}}({self.n})"


class OptimiserChain(Rule):
    """OptimiserChain(opts...): each rule sees the original x; a ``None`` dx skips the rest, leaving their states unchanged."""

    name = "OptimiserChain"
    CHECK_ETA = False

    def __init__(self, *opts):
        for o in opts:
            if not isinstance(o, Rule):
                raise TypeError(f"OptimiserChain takes rules, got {o!r}")
        self.opts = tuple(opts)
        self.hyper = {}

    def init(self, x):
        return tuple(o.init(x) for o in self.opts)

    def apply(self, states, x, dx):
        new_states = []
        cur = dx
        for o, s in zip(self.opts, states):
            if cur is None:
                new_states.append(s)
            else:
                s2, cur = o.apply(s, x, cur)
                new_states.append(s2)
        if cur is not None:
            cur = _arr(cur)
        return tuple(new_states), cur

    def julia_show(self, compact=False):
        return "OptimiserChain(" + ", ".join(o.julia_show(compact) for o in self.opts) + ")"


RULES = {
    c.name: c
    for c in (
        Descent, Momentum, Nesterov, RMSProp, Rprop, Adam, Lion, Lion_paper, RAdam, AdaMax,
        OAdam, AdaGrad, AdaDelta, AMSGrad, NAdam, AdamW, AdaBelief, WeightDecay, SignDecay,
        ClipGrad, ClipNorm, AccumGrad, OptimiserChain,
    )
}

#: Positional order of each Optimisers.jl constructor (keyword-only ones are marked with ';').
POSITIONAL = {
    name: tuple(f for f, _, _ in cls.FIELDS) + tuple(";" + f for f, _, _ in cls.KWONLY)
    for name, cls in RULES.items()
    if name != "OptimiserChain"
}

#: Exact Optimisers.jl defaults (Julia field names). Descent's eta is the Float32 value 0.1f0.
DEFAULTS = {
    name: {f: d for f, d, _ in cls.FIELDS + cls.KWONLY if d is not _REQUIRED}
    for name, cls in RULES.items()
    if name != "OptimiserChain"
}


def make(name: str, *args, **hyper) -> Rule:
    """Build a reference rule, e.g. ``make("Adam", eta=1e-2, beta=(0.8, 0.99))``.

    Use ``make("OptimiserChain", make("ClipGrad", 1.0), make("Descent", 0.1))``
    for chains.
    """
    try:
        cls = RULES[name]
    except KeyError:
        raise KeyError(f"unknown rule {name!r}; known: {sorted(RULES)}") from None
    return cls(*args, **hyper)


def step(ref: Rule, state, x, dx):
    """Take one ``Optimisers.update`` step on one array: returns ``(state, x_new)``.

    If ``dx`` is None (a Zero/nothing gradient), Optimisers.jl skips the leaf
    entirely: apply! is not called and the state does not change.
    """
    x = _arr(x)
    if dx is None:
        return state, x
    state, dxp = ref.apply(state, x, dx)
    if dxp is None:
        return state, x
    return state, x - dxp


def run(
    ref: Rule,
    x0,
    grads_seq: Sequence[Any] | Callable[[np.ndarray, int], Any],
    *,
    steps: int | None = None,
    return_states: bool = False,
):
    """Apply ``ref`` starting from ``x0`` and return the list of x after each step.

    ``grads_seq`` is either a sequence of gradients (``None`` entries mean "no
    gradient, skip") or a callable ``g(x, t)`` with t = 0, 1, ..., steps-1,
    which returns the gradient at the current x. With ``return_states=True``
    the function returns ``(xs, states)``.
    """
    x = _arr(x0)
    state = ref.init(x)
    xs, states = [], []
    if callable(grads_seq):
        if steps is None:
            raise ValueError("steps= is required when grads_seq is a callable")
        for t in range(steps):
            g = grads_seq(x.copy(), t)
            state, x = step(ref, state, x, g)
            xs.append(x.copy())
            states.append(state)
    else:
        for g in grads_seq:
            state, x = step(ref, state, x, g)
            xs.append(x.copy())
            states.append(state)
    return (xs, states) if return_states else xs
