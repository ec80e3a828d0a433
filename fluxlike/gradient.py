"""`gradient` and `withgradient`: `jax.value_and_grad` over models.

Only trainable floating arrays are differentiated. Layers that update their
own state in train mode (BatchNorm statistics, Dropout keys) do so on a copy
inside the differentiated call; the new state is carried out and written into
the objects passed in. This is the one place where that happens.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp

from ._gradjit import CompiledCalls
from ._tree import explicit_spec, reshard_like, tracing
from ._walk import set_leaves_, trainable_mask
from .module import Module, _train_context

__all__ = ["gradient", "withgradient"]


def _implicit_error(f: Callable) -> TypeError:
    return TypeError(
        "fl.gradient(f, args...) differentiates f with respect to its arguments, the "
        "explicit style of Flux >= 0.14. The implicit style `gradient(() -> loss(...), "
        "params)` is not offered. Write\n"
        "    grads = fl.gradient(lambda m: loss(m(x), y), model)\n"
        "    fl.update_(opt_state, model, grads[0])\n"
        "instead of\n"
        "    grads = gradient(lambda: loss(model(x), y), fl.params(model))"
    )


def _check_call(f: Callable, args: tuple) -> None:
    if not callable(f):
        raise TypeError(f"gradient: the first argument must be the function to differentiate, got {f!r}")
    if not args or not _takes_arguments(getattr(f, "__code__", None) or f):
        raise _implicit_error(f)


@functools.lru_cache(maxsize=1024)
def _takes_arguments_code(code: Any) -> bool:
    return bool(code.co_argcount or code.co_posonlyargcount or code.co_flags & inspect.CO_VARARGS)


def _takes_arguments(f: Any) -> bool:
    """Whether `f` can take a positional argument (False for `lambda: loss(...)`)."""
    if inspect.iscode(f):
        return _takes_arguments_code(f)
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
               for p in sig.parameters.values())


def _pick_loss(out: Any) -> Any:
    """Flux's rule: a tuple's or NamedTuple's first element, a dict's "loss"."""
    if isinstance(out, tuple):
        if not out:
            raise ValueError("withgradient: f returned an empty tuple; its first element should be the loss")
        return out[0]
    if isinstance(out, Mapping):
        if "loss" not in out:
            raise KeyError(f"withgradient: f returned a dict without a 'loss' key (keys: {list(out)})")
        return out["loss"]
    return out


def _scalar(loss: Any) -> jax.Array:
    shape = getattr(loss, "shape", ())
    if shape != ():
        raise ValueError(
            f"gradient: f must return a scalar loss, got an array of shape {tuple(shape)}; "
            "reduce it, e.g. with jnp.mean or jnp.sum"
        )
    if not jnp.issubdtype(jnp.result_type(loss), jnp.inexact):
        raise TypeError(f"gradient: the loss must be a float, got dtype {jnp.result_type(loss)}")
    return loss


def withgradient(f: Callable, *args: Any, compile: bool = True) -> tuple[Any, tuple]:
    """`(f(*args), gradients)`: the value and one gradient per argument.

    Each gradient has its argument's structure: a model-shaped tree whose
    trainable arrays hold gradients and whose other positions hold None, or
    None for an argument with nothing to differentiate. If `f` returns a
    tuple or NamedTuple its first element is differentiated, if a dict its
    "loss" entry; the value returned is then the whole of `f`'s output.
    Layers run in train mode inside `f`, and the state they update
    (BatchNorm statistics, Dropout keys) is written back into the arguments.
    Works eagerly and inside `jax.jit`.

    Called outside a trace, the call compiles itself (DESIGN.md, "Eager
    code runs compiled"): the first call of a function code, closure and
    argument structure compiles one program, which later calls of the same
    kind reuse, with the arrays of the closure and globals passed in as
    arguments, so the loop `for x, y in data: fl.gradient(lambda m:
    loss(m(x), y), model)` runs at compiled speed. A function that
    cannot be traced (Python control flow on array values, `float(loss)`,
    changing a list outside itself) runs eagerly after one warning saying
    why; `compile=False` runs eagerly without compiling or warning.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> val, grads = fl.withgradient(lambda x, y: (x * y).sum(), jnp.array([1.0, 2.0]), 3.0)
        >>> val, grads
        (Array(9., dtype=float32), (Array([3., 3.], dtype=float32), Array(3., dtype=float32, weak_type=True)))
        >>> out, _ = fl.withgradient(lambda x: ((x ** 2).sum(), "aux"), jnp.ones(2))
        >>> out
        (Array(2., dtype=float32), 'aux')
    """
    _check_call(f, args)
    if compile and not tracing():
        return _COMPILED(f, args)
    return _withgradient(f, args)


def _withgradient(f: Callable, args: tuple) -> tuple[Any, tuple]:
    """withgradient's work, eagerly or under a trace."""
    flats = []
    diff = []
    for a in args:
        leaves, treedef = jax.tree.flatten(a)
        mask = trainable_mask(a)
        flats.append((leaves, treedef, mask))
        diff.append([l for l, m in zip(leaves, mask) if m])

    def inner(diff: list) -> tuple:
        copies = []
        for (leaves, treedef, mask), d in zip(flats, diff):
            it = iter(d)
            copies.append(jax.tree.unflatten(treedef, [_whole(next(it) if m else l) for l, m in zip(leaves, mask)]))
        with _train_context(True):
            out = f(*copies)
        loss = _scalar(_pick_loss(out))
        state = [
            [_like(new, old) for new, old, m in zip(jax.tree.leaves(c), leaves, mask) if not m]
            if isinstance(c, Module) else None
            for c, (leaves, _, mask) in zip(copies, flats)
        ]
        return loss, (out, state)

    eager = not tracing()
    try:
        (_, (out, state)), grads = jax.value_and_grad(inner, has_aux=True)(diff)
    except jax.errors.ConcretizationTypeError as e:
        if not eager:  # under a trace (the compiled path, a jit of the user's): JAX's own error says it
            raise
        raise TypeError(
            f"{e}\n\nfluxlike: the function given to fl.gradient or fl.withgradient needed a plain "
            "number from an array it is differentiating (float(), int(), .item() or np.asarray() on "
            "the loss or on something computed from the model). Under jax.grad that array carries its "
            "derivative, so it has no plain value, even outside jax.jit. To log the loss, return it "
            "and read it outside: `loss, grads = fl.withgradient(f, model)` (or return "
            "`(loss, aux)` and read aux). Inside f, `float(jax.lax.stop_gradient(x))` gives x's "
            "value (f then runs eagerly, op by op), and `jax.debug.print` prints it without leaving "
            "the compiled program.") from e
    result = []
    for a, (leaves, treedef, mask), g, s in zip(args, flats, grads, state):
        if s is not None:
            _write_state(a, leaves, mask, s)
        if not g:
            result.append(None)
            continue
        it = iter(g)
        result.append(jax.tree.unflatten(treedef, [next(it) if m else None for m in mask]))
    return out, tuple(result)


def _whole(x: Any) -> Any:
    """FSDP on an Explicit mesh: the array gathered whole on every device for
    the forward pass (its gradient is split back by the transpose), so the
    layer code never sees a split weight. Arrays on Auto meshes, or whole,
    are returned as they are: there the compiler places the gathers."""
    if explicit_spec(x) is None:
        return x
    return jax.sharding.reshard(x, jax.typeof(x).sharding.update(spec=jax.sharding.PartitionSpec()))


def _like(new: Any, old: Any) -> Any:
    """Updated layer state (BatchNorm statistics) split again as its input was."""
    return new if new is old or explicit_spec(old) is None else reshard_like(new, old)


def _write_state(model: Module, leaves: list, mask: list[bool], state: list) -> None:
    """Write the state arrays a layer updated during the call back into `model`."""
    it = iter(state)
    new = [l if m else next(it) for l, m in zip(leaves, mask)]
    if any(a is not b for a, b in zip(new, leaves)):
        set_leaves_(model, new)


def gradient(f: Callable, *args: Any, compile: bool = True) -> tuple:
    """One gradient per argument of `f(*args)`, Flux's `gradient`.

    Each has its argument's structure, with None where nothing is
    differentiable (integer arrays, state such as BatchNorm statistics); an
    argument with nothing to differentiate gives None. See `withgradient`
    for the return-value rule, the state carried out of train mode, and
    how eager calls compile themselves (`compile=False` opts out).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> model = fl.Dense(2, 1, bias=False, init=lambda k, s, d: jnp.ones(s, d))
        >>> grads = fl.gradient(lambda m: m(jnp.array([1.0, 2.0])).sum(), model)
        >>> grads[0].weight
        Array([[1., 2.]], dtype=float32)
    """
    return withgradient(f, *args, compile=compile)[1]


_COMPILED = CompiledCalls(_withgradient, "fl.gradient")
