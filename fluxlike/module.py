"""`Module`: the base class of every layer.

A Module subclass declares its fields with annotations in the class body.
Plain annotated fields are trainable data (arrays, sublayers, or tuples and
dicts of them); `field(trainable=False)` marks state (running statistics, a
PRNG key); `field(static=True)` marks configuration (sizes, functions,
flags), which lives in the pytree's static part. Every subclass is registered
as a JAX pytree, so plain `jax.jit`, `jax.tree.map` and shardings work on
models with no filtering.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from typing import Any, ClassVar, Iterator

import jax
import numpy as np

from ._tree import _EVAL_TRACE, _TRACE_CTX, Tracer, is_array, is_float, keystr, tracing

__all__ = ["Module", "field", "trainmode_", "testmode_", "modules", "is_training"]


class _Field:
    __slots__ = ("static", "trainable", "default")

    def __init__(self, static: bool, trainable: bool, default: Any) -> None:
        self.static, self.trainable, self.default = static, trainable, default


_MISSING = object()


def field(*, static: bool = False, trainable: bool = True, default: Any = _MISSING) -> Any:
    """Declare a Module field's kind in a class body.

    Args:
        static: configuration (sizes, functions, flags) kept in the pytree's
            static part; it must be hashable. Changing it recompiles.
        trainable: False for arrays that are state, not parameters (running
            statistics, PRNG keys): gradients and optimisers skip them.
        default: value used when `__init__` does not set the field.

    Example:
        >>> import jax, jax.numpy as jnp, fluxlike as fl
        >>> class Affine(fl.Module):
        ...     scale: jax.Array
        ...     count: jax.Array = fl.field(trainable=False)
        ...     name: str = fl.field(static=True, default="affine")
        ...     def __init__(self, n):
        ...         self.scale = jnp.ones(n)
        ...         self.count = jnp.zeros((), jnp.int32)
        ...     def __call__(self, x):
        ...         return self.scale * x
        >>> Affine(3)
        Affine(...)  # 3 parameters, plus 1 non-trainable
    """
    if static and not trainable:
        raise ValueError("field: a static field is configuration; `trainable=False` is for state arrays")
    return _Field(static, trainable, default)


# ---------------------------------------------------------------------------
# train / test mode

_TRAINING: contextvars.ContextVar[bool] = contextvars.ContextVar("fluxlike_training", default=False)


def is_training(layer: Module | None = None) -> bool:
    """Whether `layer` (or, with no argument, the current context) is in train mode.

    Automatic mode is active inside `fl.gradient` and inactive outside; a
    layer's `active` field, set by `trainmode_`/`testmode_`, overrides it.

    Example:
        >>> import fluxlike as fl
        >>> fl.is_training()
        False
        >>> _ = fl.gradient(lambda x: (print(fl.is_training()), x.sum())[1], jnp.ones(2))
        True
    """
    forced = getattr(layer, "active", None)
    return _TRAINING.get() if forced is None else bool(forced)


@contextlib.contextmanager
def _train_context(on: bool = True) -> Iterator[None]:
    token = _TRAINING.set(on)
    try:
        yield
    finally:
        _TRAINING.reset(token)


# ---------------------------------------------------------------------------
# Module


class Module:
    """Base class of every layer: a JAX pytree whose leaves are all arrays.

    Subclasses declare fields with annotations (see `fl.field`), set them in
    `__init__`, and compute on a batch in `__call__`.

    Example:
        >>> import jax, jax.numpy as jnp, fluxlike as fl
        >>> class Scale2(fl.Module):
        ...     w: jax.Array
        ...     def __init__(self, n):
        ...         self.w = 2 * jnp.ones(n)
        ...     def __call__(self, x):
        ...         return self.w * x
        >>> m = Scale2(2)
        >>> jax.tree.leaves(m)
        [Array([2., 2.], dtype=float32)]
        >>> fl.gradient(lambda m: m(jnp.array([1.0, 3.0])).sum(), m)[0].w
        Array([1., 3.], dtype=float32)
    """

    # filled in per subclass by __init_subclass__
    _fields: ClassVar[tuple[str, ...]] = ()  # data fields, in flatten order
    _static: ClassVar[tuple[str, ...]] = ()  # static fields
    _state_fields: ClassVar[frozenset[str]] = frozenset()  # data fields that are not trainable
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        data: list[str] = []
        static: list[str] = []
        state: set[str] = set()
        defaults: dict[str, Any] = {}
        for klass in reversed(cls.__mro__[1:]):
            if issubclass(klass, Module):  # already processed: its markers are gone
                for name in klass._fields:
                    if name not in data:
                        data.append(name)
                for name in klass._static:
                    if name not in static:
                        static.append(name)
                state |= klass._state_fields
                defaults.update(klass._defaults)
            else:
                cls._collect(klass, data, static, state, defaults)
        cls._collect(cls, data, static, state, defaults)
        for name in (*data, *static):  # markers and defaults must not shadow instance attributes
            if name in cls.__dict__:
                delattr(cls, name)
        cls._fields, cls._static = tuple(data), tuple(static)
        cls._state_fields, cls._defaults = frozenset(state), defaults
        _register(cls)
        init = cls.__dict__.get("__init__")
        if init is not None:
            @functools.wraps(init)
            def checked_init(self: Module, *args: Any, **kw: Any) -> None:
                init(self, *args, **kw)
                if type(self).__init__ is checked_init:  # the outermost __init__ checks
                    self._check()

            cls.__init__ = checked_init  # type: ignore[method-assign]

    @staticmethod
    def _collect(klass: type, data: list, static: list, state: set, defaults: dict) -> None:
        """Add the fields that `klass` itself annotates."""
        for name in klass.__dict__.get("__annotations__", {}):
            if name.startswith("_") or name in data or name in static:
                continue
            marker = klass.__dict__.get(name, _MISSING)
            if isinstance(marker, _Field):
                if marker.default is not _MISSING:
                    defaults[name] = marker.default
                (static if marker.static else data).append(name)
                if not marker.trainable:
                    state.add(name)
            else:
                if marker is not _MISSING:
                    defaults[name] = marker
                data.append(name)

    def __new__(cls, *args: Any, **kwargs: Any) -> Module:
        self = object.__new__(cls)
        d = self.__dict__
        d["_traced"] = tracing()
        d.update(cls._defaults)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        cls = type(self)
        if name not in cls._fields and name not in cls._static:
            raise AttributeError(
                f"{cls.__name__}.{name} is not a declared field. Declare it in the class "
                f"body: `{name}: jax.Array` for an array or sublayer, `{name}: jax.Array = "
                f"fl.field(trainable=False)` for state, or `{name}: int = "
                f"fl.field(static=True)` for configuration."
            )
        if isinstance(value, Tracer) and not self.__dict__.get("_traced", False):
            raise _leak_error(self, name)
        self.__dict__[name] = value

    def _check(self) -> None:
        """Validate the fields after `__init__`: all set, data are arrays,
        configuration is hashable."""
        cls = type(self)
        d = self.__dict__
        for name in (*cls._fields, *cls._static):
            if name not in d:
                raise TypeError(f"{cls.__name__}.__init__ did not set the field `{name}`")
        for name in cls._fields:
            for path, leaf in jax.tree_util.tree_flatten_with_path(d[name])[0]:
                if not is_array(leaf):
                    raise TypeError(
                        f"{cls.__name__}.{name}{keystr(path)} holds a {type(leaf).__name__} "
                        f"({leaf!r}); data fields hold arrays and sublayers only. If it is "
                        f"configuration, declare `{name}: ... = fl.field(static=True)`."
                    )
        for name in cls._static:
            try:
                hash(d[name])
            except TypeError:
                raise TypeError(
                    f"{cls.__name__}.{name} is static configuration and must be hashable, "
                    f"got {type(d[name]).__name__}; use a tuple instead of a list"
                ) from None

    # --- printing ---------------------------------------------------------

    def _repr_head(self) -> str:
        """The one-line description of this layer alone, e.g. `Dense(2 => 3)`."""
        cls = type(self)
        parts = [f"{k}={self.__dict__[k]!r}" for k in cls._static if k != "active"]
        return f"{cls.__name__}({', '.join(parts)}{_mode_str(self, bool(parts))})"

    def _children(self) -> list[Module] | None:
        """Sublayers to print one per line in the multi-line form, or None for a leaf layer."""
        return None

    def __repr__(self) -> str:
        from ._show import show

        return show(self)

    def __str__(self) -> str:
        """`print(model)`: Flux's REPL display, multi-line for containers."""
        from ._show import big_show

        return big_show(self) if self._children() is not None else repr(self)


def _mode_str(layer: Module, comma: bool) -> str:
    active = layer.__dict__.get("active")
    if active is None:
        return ""
    return f"{', ' if comma else ''}active={active}"


def _leak_error(obj: Module, name: str) -> RuntimeError:
    return RuntimeError(
        f"A traced value was about to be stored in {type(obj).__name__}.{name} of a model "
        "that lives outside the traced function (a tracer leak). This happens when a "
        "jitted function closes over a model and runs it in train mode, e.g. BatchNorm "
        "statistics or a Dropout key being updated. Pass the model as an argument and "
        "return it:\n"
        "    @jax.jit\n"
        "    def step(model, x): ...; return model, ...\n"
        "instead of\n"
        "    @jax.jit\n"
        "    def step(x): model(x) ..."
    )


# ---------------------------------------------------------------------------
# pytree registration


def _register(cls: type[Module]) -> None:
    """Register `cls` as a pytree. Flattening runs on every jitted call, so the
    callbacks are generated per class as straight-line code (dict lookups and
    a dict display, no loops): about twice as fast as generic ones."""
    data, static = cls._fields, cls._static
    keys = tuple(jax.tree_util.GetAttrKey(n) for n in data)

    def tup(items: list[str]) -> str:
        return "(" + "".join(f"{i}, " for i in items) + ")"

    traced = "tracing()" if _TRACE_CTX is None else "ctx.trace is not top"
    src = (
        "def flatten(x):\n"
        "    d = x.__dict__\n"
        f"    return {tup([f'd[{n!r}]' for n in data])}, {tup([f'd[{n!r}]' for n in static])}\n"
        "def unflatten(aux, children):\n"
        "    self = new(cls)\n"
        f"    self.__dict__.update({{'_traced': {traced}, "
        + "".join(f"{n!r}: children[{i}], " for i, n in enumerate(data))
        + "".join(f"{n!r}: aux[{i}], " for i, n in enumerate(static))
        + "})\n"
        "    return self\n"
    )
    env = {"new": object.__new__, "cls": cls, "ctx": _TRACE_CTX, "top": _EVAL_TRACE, "tracing": tracing}
    exec(compile(src, f"<fluxlike pytree callbacks of {cls.__name__}>", "exec"), env)
    flatten = env["flatten"]

    def flatten_with_keys(x: Module) -> tuple[tuple, tuple]:
        children, aux = flatten(x)
        return tuple(zip(keys, children)), aux

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, env["unflatten"], flatten)


# ---------------------------------------------------------------------------
# walking a model


def _is_module(x: Any) -> bool:
    return isinstance(x, Module)


def modules(tree: Any) -> Iterator[Module]:
    """Every Module in `tree`, parents before children.

    Example:
        >>> import fluxlike as fl
        >>> [type(m).__name__ for m in fl.modules(fl.Chain(fl.Dense(1, 2), fl.Dense(2, 1)))]
        ['Chain', 'Dense', 'Dense']
    """
    if isinstance(tree, Module):
        yield tree
        for name in type(tree)._fields:
            yield from modules(tree.__dict__[name])
    else:
        for node in jax.tree.leaves(tree, is_leaf=_is_module):
            if isinstance(node, Module):
                yield from modules(node)


def trainable_mask(tree: Any) -> list[bool]:
    """One flag per leaf of `tree` (in `jax.tree.leaves` order): True where the
    leaf is a trainable floating array (inside a Module: a field not marked
    `trainable=False`)."""
    out: list[bool] = []
    _mask_into(tree, True, out)
    return out


def _mask_into(tree: Any, flag: bool, out: list[bool]) -> None:
    if isinstance(tree, Module):
        d, state = tree.__dict__, type(tree)._state_fields
        for name in type(tree)._fields:
            _mask_into(d[name], flag and name not in state, out)
    elif is_array(tree) or isinstance(tree, Tracer):
        out.append(flag and is_float(tree))
    else:
        keys, children, _ = level(tree)
        if keys is None:  # a leaf that is not an array: a Python number, ...
            out.append(flag and isinstance(tree, (float, complex)))
        for child in children:
            _mask_into(child, flag, out)


def level(tree: Any) -> tuple[list | None, list, Any]:
    """One level of a container that is not a Module: (keys, children,
    treedef); keys is None when `tree` is itself a leaf."""
    pairs, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is not tree)
    if len(pairs) == 1 and pairs[0][0] == ():
        return None, [], treedef
    return [p[0] for p, _ in pairs], [c for _, c in pairs], treedef


def set_leaves_(tree: Any, leaves: list[Any]) -> Any:
    """Rebind, in place, the arrays of `tree` to `leaves` (in `jax.tree.leaves`
    order): Module fields, dict and list entries change in place; tuples are
    rebuilt. Returns the tree (the same object unless it is a tuple or an array)."""
    it = iter(leaves)
    out = _set_into(tree, it)
    if next(it, _MISSING) is not _MISSING:
        raise ValueError("set_leaves_: more leaves than the tree has")
    return out


def _set_into(tree: Any, it: Iterator[Any]) -> Any:
    if isinstance(tree, Module):
        d = tree.__dict__
        for name in type(tree)._fields:
            old = d[name]
            new = _set_into(old, it)
            if new is not old:
                tree.__setattr__(name, new)
        return tree
    if is_array(tree) or isinstance(tree, Tracer):
        return next(it)
    if type(tree) is dict:  # mutable containers change in place
        for k in sorted(tree):
            tree[k] = _set_into(tree[k], it)
        return tree
    if type(tree) is list:
        for i, v in enumerate(tree):
            tree[i] = _set_into(v, it)
        return tree
    keys, children, treedef = level(tree)
    if keys is None:
        return next(it)
    if not children:
        return tree
    new = [_set_into(c, it) for c in children]
    if all(a is b for a, b in zip(new, children)):
        return tree
    return jax.tree.unflatten(treedef, new)


def _set_mode(tree: Any, value: bool | None, fn: str) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"{fn}: mode must be True, False or None (automatic), got {value!r}")
    for m in modules(tree):
        if "active" in type(m)._static:
            m.__setattr__("active", value)


def trainmode_(model: Any, mode: bool | None = True) -> Any:
    """Force train mode on every layer of `model` that has one (Dropout,
    BatchNorm, ...); `mode=None` restores automatic mode, `False` forces test mode.

    Returns `model`, changed in place. The mode is static configuration:
    a jitted function retraces once for each mode it sees.

    Example:
        >>> import fluxlike as fl
        >>> net = fl.Chain(fl.Dense(2, 2), fl.Dropout(0.5))
        >>> fl.trainmode_(net)[1]
        Dropout(0.5, active=True)
        >>> fl.trainmode_(net, None)[1]
        Dropout(0.5)
    """
    _set_mode(model, mode, "trainmode_")
    return model


def testmode_(model: Any, mode: bool | None = True) -> Any:
    """Force test mode on every layer of `model` that has one; `mode=None`
    restores automatic mode (train inside `fl.gradient`, test outside),
    `False` forces train mode. Returns `model`, changed in place.

    Example:
        >>> import fluxlike as fl
        >>> net = fl.Chain(fl.Dense(2, 2), fl.Dropout(0.5))
        >>> fl.testmode_(net)[1]
        Dropout(0.5, active=False)
        >>> fl.testmode_(net, None)[1]
        Dropout(0.5)
    """
    _set_mode(model, None if mode is None else not mode, "testmode_")
    return model


def count_params(tree: Any) -> tuple[int, int, int, int]:
    """(trainable arrays, trainable parameters, other arrays, other elements)."""
    leaves = jax.tree.leaves(tree)
    mask = trainable_mask(tree)
    na = sum(mask)
    npar = sum(int(np.prod(l.shape)) for l, m in zip(leaves, mask) if m)
    no = len(leaves) - na
    nother = sum(int(np.prod(l.shape)) for l, m in zip(leaves, mask) if not m)
    return na, npar, no, nother


def nbytes(tree: Any) -> int:
    """Bytes held by the arrays of `tree`."""
    return sum(int(np.prod(l.shape)) * l.dtype.itemsize for l in jax.tree.leaves(tree))

