"""Eager `fl.gradient` calls, compiled (DESIGN.md, "Eager code runs compiled").

`CompiledCalls(core)` runs `core(f, args)` (differentiate `f` at `args`,
writing the layer state it changes into the Modules in `args`) as one
compiled program per *kind* of call: the same code, closure and globals
(`_capture.py`: their arrays become arguments) and the same argument
structure. Array shapes and dtypes are the compiled program's own cache.

When to compile: at the first call of a kind. Measured on this project's
2-core CPU in a fresh process, the first eager call of the seed's loop
costs 1.5 s (JAX compiles every primitive it meets, one by one) and the
whole compiled program 0.35 s, on both the tiny and the mlp model, so
waiting for a second call would make every script pay both. Eager is
cheaper only when all its op-by-op kernels are already cached.

What cannot be compiled runs eagerly, after one warning that says why:
tracing fails (Python control flow on array values, host I/O such as
`float(loss)`), the function changes a list, dict, set or plain object it
reaches (the trace's change is undone, so no tracer is left there), it
reads an array fluxlike cannot pass in (an attribute of a plain object), or
one code object met more than 8 values of a number it reads by value. An
array read as a module global of a function it calls is compiled in and
guarded: if the global is rebound, the call compiles again. `print` inside
the function runs once, while tracing (use `jax.debug.print`).
"""

from __future__ import annotations

import collections
import os
import sys
import types
import warnings
from typing import Any, Callable

import jax

from ._capture import capture, rebuild
from ._fncache import global_names
from ._tree import Tracer
from ._walk import set_leaves_

__all__ = ["CompiledCalls"]

_STATIC = (type(None), bool, int, str, bytes)  # argument leaves that are configuration, not data
_DYN = object()  # marks a dynamic leaf in a static pattern
_HERE = os.path.dirname(os.path.abspath(__file__))
_RECOMPILE_WARN = 4  # guard failures before the "recompiles every call" warning
_KINDS_PER_CODE = 8  # kinds compiled for one code and argument structure before new ones run eagerly


class _Kind:
    """The cache entry of one kind of call."""

    __slots__ = ("program", "eager", "keep", "guards", "recompiles", "layout", "f")

    def __init__(self, keep: list) -> None:
        self.program: Any = None
        self.eager = False
        self.keep = keep  # objects whose ids the key uses
        self.guards: list[tuple[dict, str, Any]] = []  # (globals, name, array) baked in
        self.recompiles = 0
        self.layout: dict = {}  # filled while tracing: the output's static parts
        self.f: Callable | None = None  # the function being called, while a call runs


class CompiledCalls:
    """`core(f, args)` compiled once per kind of call, at most `size` kinds.

    Examples:
        >>> import jax.numpy as jnp
        >>> from fluxlike._gradjit import CompiledCalls
        >>> calls = CompiledCalls(lambda f, args: (f(*args), None), "demo")
        >>> outs = [calls(lambda a: a * k, (jnp.ones(2),))[0] for k in range(3)]
        >>> len(calls)  # one kind per value of k, a number read by value
        3
    """

    def __init__(self, core: Callable[[Callable, tuple], tuple], name: str, size: int = 64) -> None:
        self.core, self.name, self.size = core, name, size
        self.kinds: collections.OrderedDict[Any, _Kind] = collections.OrderedDict()
        self.per_code: dict[Any, int] = {}  # kinds made per (code, argument structure)
        self.eager_sites: set = set()  # (code, argument structure) that could not be compiled

    def __len__(self) -> int:
        return len(self.kinds)

    def __call__(self, f: Callable, args: tuple) -> tuple:
        cap = capture(f)
        leaves, treedef = jax.tree.flatten(args)
        pattern = tuple(l if type(l) in _STATIC else _DYN for l in leaves)
        key = (cap.key, treedef, pattern)
        try:
            kind = self.kinds.get(key)
        except TypeError:  # an unhashable value in the key: nothing to reuse
            return self.core(f, args)
        if kind is None:
            kind = self._new_kind(key, cap.keep, f, _site(f, treedef, pattern))
        else:
            self.kinds.move_to_end(key)
        if kind.eager:
            return self.core(f, args)
        if kind.guards and not all(g.get(n) is v for g, n, v in kind.guards):
            kind.program, kind.guards = None, []
            kind.recompiles += 1
            if kind.recompiles == _RECOMPILE_WARN:
                _warn(f"{self.name}: {_where(f)} compiles again at every call because a global array "
                      "it reads through another function is rebound each time; pass that array in "
                      "the lambda's closure or as an argument instead")
        dyn = [l for l, p in zip(leaves, pattern) if p is _DYN]
        kind.f = f
        try:
            if kind.program is None:
                reason = self._compile(kind, treedef, pattern, dyn, cap)
                if reason is not None:
                    result = self.core(f, args)  # an error of f's own is raised here, as it is
                    self._give_up(kind, f, _site(f, treedef, pattern), f"cannot be compiled ({reason})")
                    return result
            out, grads, changed, held = kind.program(dyn, cap.arrays)
        finally:
            kind.f = None
        if changed:
            new = list(leaves)
            for p, v in changed.items():
                new[p] = v
            set_leaves_(list(args), new)
        if held:
            _write_held(f, cap.arrays, held)
        return _output(kind.layout, out), grads

    def _new_kind(self, key: Any, keep: list, f: Callable, site: tuple) -> _Kind:
        kind = self.kinds[key] = _Kind(keep)
        if len(self.kinds) > self.size:
            self.kinds.popitem(last=False)
        if site in self.eager_sites:  # this code failed to compile on these arguments before
            kind.eager = True
        elif site[0] is not None:  # kinds of one code on one argument structure differ in values read
            n = self.per_code[site] = self.per_code.get(site, 0) + 1
            if n > _KINDS_PER_CODE:  # a value read by value changes at every call: stop compiling it
                kind.eager = True
                if n == _KINDS_PER_CODE + 1:
                    _warn(f"{self.name}: {_where(f)} was compiled {_KINDS_PER_CODE} times, once for each "
                          "value of a Python number (or other setting) it reads; from now on its new "
                          "values run eagerly, op by op. Pass a number that changes at every step as an "
                          "array, e.g. jnp.asarray(value), so that one program serves all its values.")
        return kind

    def _give_up(self, kind: _Kind, f: Callable, site: tuple, why: str) -> None:
        """Run this kind, and every later kind of the same code and argument
        structure (a list it appends to changes the key), eagerly."""
        kind.eager, kind.program = True, None
        if site[0] is not None:
            self.eager_sites.add(site)
        _warn(f"{self.name}: {_where(f)} {why}; it runs eagerly, op by op, which is slower. Pass "
              f"compile=False to {self.name} to run it eagerly without this warning.")

    def _compile(self, kind: _Kind, treedef: Any, pattern: tuple, dyn: list, cap: Any) -> str | None:
        """Build and trace the program of a kind; a reason if it cannot be compiled.

        The objects the function can reach by identity are copied (shallowly)
        before tracing; one that the trace changed is restored, so no traced
        value is left in it, and the function runs eagerly instead."""
        program = jax.jit(_program(self.core, kind, treedef, pattern))
        saved = [_shallow_copy(m) for m in cap.mutables]
        try:
            traced = program.trace(dyn, cap.arrays)
        except Exception as e:  # noqa: BLE001 - any failure to trace means: run eagerly
            changed = _restore_changed(cap.mutables, saved)
            if changed is None:
                return _reason(e)
        else:
            changed = _restore_changed(cap.mutables, saved)
        if changed is not None:
            return (f"it changes {_what(changed)} outside itself, a side effect a compiled program "
                    "would not repeat")
        guards = []
        for c in _captured_arrays(traced.jaxpr):
            found = _find_global(kind.f, c)
            if found is None:
                return (f"it reads an array of shape {tuple(c.shape)} and dtype {c.dtype} that is neither "
                        "an argument nor in its closure or globals (an attribute of an object, say); "
                        "pass it in the lambda's closure or as an argument")
            guards.append(found)
        kind.program, kind.guards = program, guards
        return None


def _site(f: Callable, treedef: Any, pattern: tuple) -> tuple:
    """A call site: the code called and the arguments' structure."""
    return (getattr(f, "__code__", None), treedef, pattern)


def _program(core: Callable, kind: _Kind, treedef: Any, pattern: tuple) -> Callable:
    """The function a kind compiles: `(dynamic argument leaves, holes) ->
    (output's arrays, gradients, changed argument leaves, changed holes)`."""

    def run(dyn: list, holes: list) -> tuple:
        it = iter(dyn)
        leaves = [next(it) if p is _DYN else p for p in pattern]
        args = jax.tree.unflatten(treedef, leaves)
        g, copies = rebuild(kind.f, holes)
        index = {id(h): i for i, h in enumerate(holes)}
        built = [(copy, [index.get(id(l)) for l in jax.tree.leaves(copy)]) for _, copy in copies]
        out, grads = core(g, tuple(args))
        after = jax.tree.leaves(args)
        changed = {p: a for p, (a, b) in enumerate(zip(after, leaves)) if a is not b}
        held = {}  # the state a closure Module changed, by hole
        for copy, idx in built:
            for new, i in zip(jax.tree.leaves(copy), idx):
                if i is not None and new is not holes[i]:
                    held[i] = new
        out_leaves, out_def = jax.tree.flatten(out)
        kind.layout["out"] = (out_def, [_DYN if isinstance(l, Tracer) else l for l in out_leaves])
        return [l for l in out_leaves if isinstance(l, Tracer)], grads, changed, held

    return run


def _write_held(f: Callable, holes: list, held: dict) -> None:
    """Write the state a closure Module changed into the Module itself."""
    _, copies = rebuild(f, holes)  # the originals of this call, paired with their holes
    pos = {id(h): i for i, h in enumerate(holes)}
    for orig, _ in copies:
        leaves = jax.tree.leaves(orig)
        new = [held.get(pos.get(id(l)), l) for l in leaves]
        if any(a is not b for a, b in zip(new, leaves)):
            set_leaves_(orig, new)


def _output(layout: dict, arrays: list) -> Any:
    out_def, pattern = layout["out"]
    it = iter(arrays)
    return jax.tree.unflatten(out_def, [next(it) if p is _DYN else p for p in pattern])


def _what(m: Any) -> str:
    return f"a {type(m).__name__}" if isinstance(m, (list, dict, set)) else f"the attributes of a {type(m).__name__}"


def _shallow_copy(m: Any) -> Any:
    """A shallow copy of a container's contents (or an object's attributes)."""
    if isinstance(m, (list, set)):
        return type(m)(m)
    return dict(m if isinstance(m, dict) else vars(m))


def _restore_changed(mutables: list, saved: list) -> Any:
    """Put back the contents of each container a trace changed; the first one changed, or None."""
    first = None
    for m, old in zip(mutables, saved):
        now = m if isinstance(m, (list, set, dict)) else vars(m)
        if len(now) == len(old) and all(a is b for a, b in zip(_items(now), _items(old))):
            continue
        first = m if first is None else first
        if isinstance(now, list):
            now[:] = old
        else:
            now.clear()
            now.update(old)
    return first


def _items(m: Any) -> Any:
    return (v for kv in m.items() for v in kv) if isinstance(m, dict) else iter(m)


def _captured_arrays(jaxpr: Any) -> list:
    """The jax.Arrays a traced program holds as constants, at any depth: arrays
    it read from somewhere other than its arguments (numpy constants made
    while tracing are not jax.Arrays)."""
    out, seen = [], set()

    def walk(closed: Any) -> None:
        for c in getattr(closed, "consts", ()):
            if isinstance(c, jax.Array) and id(c) not in seen:
                seen.add(id(c))
                out.append(c)
        inner = getattr(closed, "jaxpr", closed)
        for eqn in getattr(inner, "eqns", ()):
            for p in eqn.params.values():
                for sub in (p if isinstance(p, (tuple, list)) else (p,)):
                    if hasattr(sub, "eqns") or hasattr(sub, "consts"):
                        walk(sub)

    walk(jaxpr)
    return out


def _find_global(f: Callable | None, array: Any, depth: int = 0, seen: set | None = None) -> tuple | None:
    """`(globals, name, array)` where a function reachable from `f` reads `array` as a global."""
    seen = set() if seen is None else seen
    fn = getattr(f, "__func__", getattr(f, "func", f))
    if not isinstance(fn, types.FunctionType) or id(fn) in seen or depth > 3:
        return None
    seen.add(id(fn))
    g = fn.__globals__
    names = [n for n in global_names(fn.__code__) if n in g]
    for n in names:
        if g[n] is array:
            return (g, n, array)
    nested = [g[n] for n in names] + [c.cell_contents for c in fn.__closure__ or () if _full(c)]
    for v in nested:
        if callable(v):
            found = _find_global(v, array, depth + 1, seen)
            if found is not None:
                return found
    return None


def _full(cell: types.CellType) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


def _reason(e: Exception) -> str:
    """The first line of why tracing failed, named by its exception type."""
    first = str(e).strip().split("\n")[0]
    if len(first) > 240:
        first = first[:237] + "..."
    return f"tracing it raised {type(e).__name__}: {first}"


def _where(f: Callable) -> str:
    code = getattr(getattr(f, "__func__", f), "__code__", None)
    name = getattr(f, "__qualname__", type(f).__name__)
    return f"{name} ({code.co_filename}:{code.co_firstlineno})" if code else name


def _warn(msg: str) -> None:
    """Warn at the first frame outside fluxlike (the user's call)."""
    level, frame = 2, sys._getframe(1)
    while frame is not None and os.path.dirname(os.path.abspath(frame.f_code.co_filename)).startswith(_HERE):
        frame, level = frame.f_back, level + 1
    warnings.warn(msg, UserWarning, stacklevel=level)
