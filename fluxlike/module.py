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

from ._show import big_show, show
from ._tree import _EVAL_TRACE, _TRACE_CTX, Tracer, is_array, keystr, tracing

__all__ = ["Module", "field", "is_training"]


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

    Examples:
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

    Examples:
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

    Examples:
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

    **Field kinds** (`fl.field`), declared in the class body:

    - `w: jax.Array`: trainable data, an array, a sublayer, or a tuple, list
      or dict of them. `fl.gradient` differentiates its floating arrays and
      optimisers update them.
    - `n: jax.Array = fl.field(trainable=False)`: state, arrays that are
      not parameters (running statistics, a PRNG key). Gradients hold None
      there, optimisers skip them, `fl.state` and `fl.loadmodel_` include them.
    - `k: int = fl.field(static=True)`: configuration (sizes, functions,
      flags), kept in the pytree's static part; it must be hashable, and a
      jitted function retraces when it changes.

    Every field must be set by `__init__` (or have a `default=`); setting an
    undeclared attribute raises. The class keeps its field tables in
    `_fields` (data fields, in flatten order), `_static` and `_state_fields`;
    walkers and the printer read them, do not assign them.

    **Train/test mode.** A layer whose behaviour differs in training
    declares a static field `active: bool | None = fl.field(static=True)`
    and sets it from an `active=None` argument. `None` means automatic
    mode: train inside `fl.gradient`, test outside; True or False force a
    mode, and `fl.trainmode_`/`fl.testmode_` set it on every layer that has
    the field. In `__call__`, ask `fl.is_training(self)`.

    **Updating state in train mode.** `__call__` assigns the new value to a
    state field (`self.n = self.n + 1`, `self.key = new_key`). Inside
    `fl.gradient` the layer is a copy being traced; the new state is
    carried out of the differentiated call and written into the model that
    was passed in. Outside it (test mode) a layer should leave its state alone.

    **Precision hook.** `_keep_float32: ClassVar[tuple[str, ...]]` names
    data fields whose floating arrays `fl.f16` converts to float32 instead
    of float16 (Flux's mixed precision, `_keep_f32_under_halfprec`): the
    normalisation layers BatchNorm, InstanceNorm and GroupNorm keep their
    statistics and affine parameters there. `fl.f32` and `fl.f64` convert
    these fields like every other. The default is `()`; the names must be
    data fields of the class (checked when the class is created).

    **Printing hooks**, for `repr` and `print` (Flux's display):

    - `_repr_head() -> str`: the layer alone on one line, e.g.
      `Dense(2 => 3, relu)`. The default shows the static fields (without
      `active`, shown only when forced). A container returns a head with the
      placeholder `(…)`, which the printer replaces by its children.
    - `_children() -> list[tuple[key, layer]] | None`: None for a leaf layer;
      a container returns its sublayers as `(key, layer)` pairs, printed one
      a line, `key = ` shown when it is a str. By default a class that keeps
      the default `_repr_head` and holds layers in its fields is a
      container of those fields, followed by its static fields
      (`Name(…)`, as Flux's `@layer` shows a struct of layers); a class
      with its own `_repr_head` is a leaf unless it defines `_children` too.

    Example (a layer with state, a mode and its own head):
        >>> class Counter(fl.Module):
        ...     w: jax.Array
        ...     n: jax.Array = fl.field(trainable=False)
        ...     active: bool | None = fl.field(static=True)
        ...     def __init__(self, active=None):
        ...         self.w = jnp.ones(2)
        ...         self.n = jnp.zeros((), jnp.int32)
        ...         self.active = active
        ...     def __call__(self, x):
        ...         if fl.is_training(self):
        ...             self.n = self.n + 1  # state updated in train mode
        ...         return self.w * x
        ...     def _repr_head(self):
        ...         return "Counter()"
        >>> c = Counter()
        >>> _ = fl.gradient(lambda c: c(jnp.ones(2)).sum(), c)
        >>> int(c.n), int(fl.testmode_(c)(jnp.ones(2)).sum()), int(c.n)
        (1, 2, 1)
        >>> c
        Counter()  # 2 parameters, plus 1 non-trainable
    """

    # filled in per subclass by __init_subclass__
    _fields: ClassVar[tuple[str, ...]] = ()  # data fields, in flatten order
    _static: ClassVar[tuple[str, ...]] = ()  # static fields
    _state_fields: ClassVar[frozenset[str]] = frozenset()  # data fields that are not trainable
    _defaults: ClassVar[dict[str, Any]] = {}
    # data fields kept in float32 when `fl.f16` converts the model (see the docstring)
    _keep_float32: ClassVar[tuple[str, ...]] = ()

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
        unknown = [n for n in cls._keep_float32 if n not in cls._fields]
        if unknown:
            raise TypeError(f"{cls.__name__}._keep_float32 names {unknown}, which are not data fields")
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
        """The one-line description of this layer alone, e.g. `Dense(2 => 3)`;
        `Name(…)` for a container, its children printed in place of `…`."""
        cls = type(self)
        if self._children() is not None:
            return f"{cls.__name__}(…)"
        parts = [f"{k}={self.__dict__[k]!r}" for k in cls._static if k != "active"]
        return f"{cls.__name__}({', '.join(parts)}{_mode_str(self, bool(parts))})"

    def _children(self) -> list[tuple[Any, Module]] | None:
        """Sublayers as `(key, layer)` pairs to print one a line in the
        multi-line form, or None for a leaf layer.

        The default: a class that keeps the default `_repr_head` is a
        container when some of its data fields hold layers, and those fields
        are its children, by name. A class with its own `_repr_head` is a
        leaf unless it defines `_children` too."""
        cls = type(self)
        if cls._repr_head is not Module._repr_head:
            return None
        kids = [(n, self.__dict__[n]) for n in cls._fields if isinstance(self.__dict__.get(n), Module)]
        if not kids:
            return None
        return kids + [(n, _Config(self.__dict__[n])) for n in cls._static if n != "active" and n in self.__dict__]

    def __repr__(self) -> str:
        """One line for a small model, else Flux's multi-line display.

        The printer lives in `_show.py`, below this file: it reads only the
        hooks `_repr_head`, `_children` and the field tables, so it needs no
        import of `Module` and there is no import cycle.
        """
        return show(self)

    def __str__(self) -> str:
        """`print(model)`: Flux's REPL display, multi-line for containers."""
        return big_show(self) if self._children() is not None else repr(self)


class _Config:
    """A static field's value among a container's printed children: shown
    by its repr, with no parameter count."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


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
