"""The rule protocol: what a person writing a new optimisation rule reads.

A rule is a small value with two methods, `state` (Optimisers.jl's `init`)
and `apply` (its `apply!`). Its hyperparameters (`eta`, `beta`, ...) are
data: `fl.setup` copies them into the state tree, and `apply` receives them
as arrays in `h`, never reading them from the rule object. So changing one
with `fl.adjust_` changes data, not the compiled program. Options that
change the program's shape (`centred`, ClipNorm's `p` and `throw`) are
static, fixed at setup.

`eta` may also be an optax schedule (a function of the step count): it is
evaluated inside the compiled step. Its table entry is NaN while the
schedule is in force; `fl.adjust_(state, 0.01)` writes a number there and
replaces the schedule with a constant, again without recompiling.

Each rule is also an optax `GradientTransformation` (`_as_optax.py`); the
batch engine is `_batch.py`, the hyperparameter table `_table.py`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from . import _as_optax, _batch

__all__ = ["Rule"]

Hyper = dict[str, Any]


class Rule:
    """Base class of the optimisation rules.

    To write a rule, subclass it and give:

    - `hyper`: the hyperparameter names, in order. The constructor takes
      them as keywords of the same names and stores each on `self` (a
      number, a pair as a tuple, or for `eta` an optax schedule), checked
      with `check`/`check_pair`/`check_eta`; `fl.adjust_` rebuilds the rule
      from these keywords to validate a new value, and printing shows them.
    - `static`: options that change the program (fixed at setup), also
      constructor keywords stored on `self`.
    - `state(x) -> state`: the rule's state for one array (default: none).
    - `apply(h, state, x, dx, t) -> (state, dx)`: the step for one array,
      where `h` maps each name in `hyper` to a scalar array (pairs to tuples
      of them) and `t` is the 1-based step count. The parameter becomes
      `x - dx`. Read hyperparameters only from `h`, never from `self`: `h`
      is data, so `fl.adjust_` never recompiles.

    Half-precision arrays reach `apply` in float32 and its results are cast
    back (a state keeps its dtype). Use `cast(h["eta"], dx.dtype)` to compute
    in the gradient's dtype, and `powers`/`corrections` for `beta^t`.

    Optional, for rules whose output depends only on their new state (Adam,
    Momentum, ...): define `advance(h, state, x, dx, t) -> state` and
    `output(h, state, x, dx, t) -> dx` instead of `apply`. Then a frozen
    Leaf's kept state feeds the output, which lets XLA update the state in
    place. Rules that need every array at once (a global norm) override
    `run(batch, ctx)` (see `_batch.Batch`).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> class Sign(fl.Rule):
        ...     hyper = ("eta",)
        ...     def __init__(self, eta=0.1):
        ...         self.eta = self.check_eta(eta)
        ...     def apply(self, h, state, x, dx, t):
        ...         return state, h["eta"] * jnp.sign(dx)
        >>> model = {"w": jnp.array([1.0, -1.0])}
        >>> state = fl.setup(Sign(), model)
        >>> state, model = fl.update(state, model, {"w": jnp.array([3.0, -0.5])})
        >>> model["w"]
        Array([ 0.9, -0.9], dtype=float32)
        >>> Sign(0.5)
        Sign(eta=0.5)
    """

    hyper: ClassVar[tuple[str, ...]] = ()
    static: ClassVar[tuple[str, ...]] = ()
    #: hyperparameters read back from the float table as bool or int
    types: ClassVar[dict[str, type]] = {}
    #: whether `apply` reads the parameter `x` (optax's `params` is then required)
    needs_params: ClassVar[bool] = False
    #: an optimiser (its optax updates are `-dx`), not a gradient transformation
    #: such as clipping or decay (whose optax updates are `dx`, like optax.clip's)
    descent: ClassVar[bool] = True

    def state(self, x: jax.Array) -> Any:
        """The rule's state for one array `x` (default: none)."""
        return ()

    def apply(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> tuple[Any, jax.Array]:
        """The step for one array: `(new_state, dx_out)`; the parameter becomes `x - dx_out`."""
        if self.split:
            state = self.advance(h, state, x, dx, t)
            return state, self.output(h, state, x, dx, t)
        raise NotImplementedError(f"{type(self).__name__} defines no apply(h, state, x, dx, t)")

    def advance(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> Any:
        """The new state (instead of `apply`, with `output`)."""
        raise NotImplementedError

    def output(self, h: Hyper, state: Any, x: jax.Array, dx: jax.Array, t: jax.Array) -> jax.Array:
        """`dx` from the new state (instead of `apply`, with `advance`)."""
        raise NotImplementedError

    @property
    def split(self) -> bool:
        """Whether this rule defines `advance` and `output` instead of `apply`."""
        return type(self).advance is not Rule.advance

    # --- all Leafs at once (override only for global rules) --------------

    def run(self, batch: _batch.Batch, ctx: _batch.Ctx) -> _batch.Batch:
        """The step on every Leaf one update changes: `batch` with new
        `states` and `dxs`. The default applies the per-array step to each."""
        return _batch.each(self, batch, ctx)

    def t_after(self, h: Hyper, t: Any) -> Any:
        """The step count the rules after this one in a chain see (AccumGrad changes it)."""
        return t

    # --- checking constructor arguments ----------------------------------

    def check_eta(self, eta: Any, name: str = "eta", schedule: bool = True) -> Any:
        """A learning rate: a number >= 0, or (if `schedule`) a function of the step count."""
        if schedule and callable(eta) and not isinstance(eta, (jax.Array, np.ndarray)):
            return eta
        return self.check(name, eta, lambda v: v >= 0 and math.isfinite(v), "must be a finite number >= 0"
                          + (" or an optax schedule" if schedule else ""))

    def check(self, name: str, value: Any, ok: Callable[[float], bool], what: str) -> float:
        """`float(value)` if it is a number for which `ok` holds, else a
        ValueError naming the rule, the argument and the requirement."""
        if not _is_number(value) or not ok(float(value)):
            raise ValueError(f"{type(self).__name__}: {name}={value!r} {what}")
        return float(value)

    def check_pair(self, name: str, value: Any, ok: Callable[[float], bool], what: str) -> tuple[float, float]:
        """A pair of numbers for which `ok` holds (like `beta=(0.9, 0.999)`)."""
        if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(_is_number(v) for v in value):
            raise ValueError(f"{type(self).__name__}: {name} must be a pair of numbers, got {value!r}")
        if not all(ok(float(v)) for v in value):
            raise ValueError(f"{type(self).__name__}: {name}={tuple(value)!r} {what}")
        return (float(value[0]), float(value[1]))

    # --- value semantics ---------------------------------------------------

    def __repr__(self) -> str:
        parts = [f"{n}={_fmt(getattr(self, n))}" for n in (*self.hyper, *self.static)]
        return f"{type(self).__name__}({', '.join(parts)})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and all(
            getattr(self, n) == getattr(other, n) for n in (*self.hyper, *self.static)
        )

    def __hash__(self) -> int:
        return hash((type(self), tuple(getattr(self, n) for n in (*self.hyper, *self.static))))

    # --- optax ------------------------------------------------------------

    def init(self, params: Any) -> _as_optax.RuleState:
        """optax: the state for a whole pytree of parameters.

        Examples:
            >>> import jax.numpy as jnp, optax, fluxlike as fl
            >>> params = {"w": jnp.ones(2)}
            >>> opt = optax.chain(optax.clip(1.0), fl.Descent(0.1))
            >>> st = opt.init(params)
            >>> upd, st = opt.update({"w": jnp.array([5.0, -0.5])}, st, params)
            >>> optax.apply_updates(params, upd)["w"]
            Array([0.9 , 1.05], dtype=float32)
        """
        return _as_optax.init(self, params)

    def update(self, updates: Any, state: _as_optax.RuleState, params: Any = None) -> tuple[Any, _as_optax.RuleState]:
        """optax: `(updates, new_state)` for a whole pytree. Global rules
        (ClipGlobalNorm) see every array.

        optax adds updates, so an optimiser's are `-dx`; a gradient
        transformation's (ClipGrad, ClipNorm, WeightDecay, AccumGrad, ...) are
        `dx`, as optax's own `clip` or `add_decayed_weights`, so that
        `optax.chain(fl.ClipGrad(1.0), optax.adam(1e-3))` works as well as
        `optax.chain(optax.clip(1.0), fl.Adam())`. Between emissions, AccumGrad
        passes on zeros (optax.MultiSteps wraps the optimiser instead).

        Examples:
            >>> import jax.numpy as jnp, fluxlike as fl
            >>> opt = fl.Momentum(0.1, 0.9)
            >>> params = {"a": jnp.ones(2), "b": jnp.zeros(())}
            >>> st = opt.init(params)
            >>> upd, st = opt.update({"a": jnp.ones(2), "b": jnp.ones(())}, st, params)
            >>> upd["a"], st.count
            (Array([-0.1, -0.1], dtype=float32), Array(1, dtype=int32))
        """
        return _as_optax.update(self, updates, state, params)


# --- helpers for `apply` -----------------------------------------------------


def cast(h: Any, dtype: Any) -> Any:
    """Hyperparameters in the parameter's dtype (Optimisers.jl's `T(o.eta)`)."""
    if isinstance(h, tuple):
        return tuple(cast(e, dtype) for e in h)
    return jnp.asarray(h, dtype)


def powers(h: Hyper, t: jax.Array, dtype: Any) -> tuple[jax.Array, ...]:
    """`(b1^t, b2^t)` (the running products of `beta` in Optimisers.jl) in
    `dtype`: computed once for all Leafs when the engine prepared `h`, else here
    in at least float32."""
    d = getattr(h, "derived", None)
    if d is not None:
        return tuple(jnp.asarray(b).astype(dtype) for b in d.powers)
    hi = jnp.promote_types(dtype, jnp.float32)
    return tuple((jnp.asarray(b, hi) ** jnp.asarray(t).astype(hi)).astype(dtype) for b in h["beta"])


def corrections(h: Hyper, t: jax.Array, dtype: Any) -> tuple[jax.Array, ...]:
    """Adam's bias corrections `(1/(1-b1^t), 1/(1-b2^t))` in `dtype`."""
    d = getattr(h, "derived", None)
    if d is not None:
        return tuple(jnp.asarray(c).astype(dtype) for c in d.corrections)
    return tuple(1 / (1 - b) for b in powers(h, t, dtype))


def _is_number(v: Any) -> bool:
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return False
    if isinstance(v, (int, float, np.integer, np.floating)):
        return True
    return isinstance(v, (np.ndarray, jax.Array)) and v.shape == () and not isinstance(v, jax.core.Tracer) \
        and (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating))


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "(" + ", ".join(_fmt(e) for e in v) + ")"
    if callable(v):
        name = getattr(v, "__qualname__", type(v).__name__).split(".<locals>")[0]
        return f"<schedule {name}>"
    return repr(v)
