"""A cache keyed by what a function *is*, not by the function object.

`fl.train_(lambda m, x, y: ..., ...)` builds a fresh lambda every epoch, so a
cache keyed on the object would compile every epoch. `fn_key` instead
describes a function by its code, the values in its closure, the globals it
reads and its defaults (numbers and strings by value, other objects by
identity, nested plain functions recursively), and `FnCache` keeps one entry
per such key, least recently used first out.

Objects whose identity a key uses are kept alive by the entry (`referents`),
so an id cannot be reused by another object while the key is cached.
"""

from __future__ import annotations

import collections
import dis
import functools
import types
from typing import Any, Callable, Generic, TypeVar

__all__ = ["fn_key", "referents", "global_names", "FnCache"]

T = TypeVar("T")

_MAX_DEPTH = 3  # how deep nested plain functions are described by value


_GLOBAL_OPS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})


@functools.lru_cache(maxsize=4096)
def global_names(code: types.CodeType) -> tuple[str, ...]:
    """The names `code` reads as globals, its nested code objects (lambdas,
    comprehensions, generators) included. Attribute names are not globals:
    `fl.losses.mse` reads the global `fl` only, so a global `losses` that a
    script rebinds every epoch does not change the function's key.

    Examples:
        >>> from fluxlike._fncache import global_names
        >>> global_names((lambda m: fl.losses.mse(m, [y for y in ys])).__code__)
        ('fl', 'ys')
    """
    names = dict.fromkeys(i.argval for i in dis.get_instructions(code) if i.opname in _GLOBAL_OPS)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names.update(dict.fromkeys(global_names(c)))
    return tuple(names)


def _ident(v: Any, depth: int) -> Any:
    if v is None or isinstance(v, (bool, int, float, complex, str, bytes)):
        return (type(v), v)
    if isinstance(v, types.FunctionType) and depth < _MAX_DEPTH:
        return fn_key(v, depth + 1)
    return ("id", id(v))


def fn_key(f: Callable, depth: int = 0) -> Any:
    """A hashable key, equal for two functions that compute the same thing:
    same code, same closure values, same globals read, same defaults.

    Examples:
        >>> from fluxlike._fncache import fn_key
        >>> make = lambda k: (lambda x: x * k)
        >>> fn_key(make(2)) == fn_key(make(2)), fn_key(make(2)) == fn_key(make(3))
        (True, False)
    """
    if isinstance(f, functools.partial):
        return ("partial", _ident(f.func, depth), tuple(_ident(a, depth) for a in f.args),
                tuple(sorted((k, _ident(v, depth)) for k, v in f.keywords.items())))
    if not isinstance(f, types.FunctionType):
        return ("id", id(f))
    code = f.__code__
    cells = tuple(_ident(c.cell_contents, depth) for c in f.__closure__ or ())
    g = f.__globals__
    globs = tuple((n, _ident(g[n], depth)) for n in global_names(code) if n in g)
    defaults = tuple(_ident(d, depth) for d in f.__defaults__ or ())
    kwdefaults = tuple(sorted((k, _ident(v, depth)) for k, v in (f.__kwdefaults__ or {}).items()))
    return (code, cells, globs, defaults, kwdefaults)


def referents(f: Callable) -> tuple:
    """The objects whose ids `fn_key(f)` may use, to keep alive with the key."""
    out: list[Any] = [f]
    if isinstance(f, types.FunctionType):
        out += [f.__globals__.get(n) for n in global_names(f.__code__)]
        out += [c.cell_contents for c in f.__closure__ or ()]
    return tuple(out)


class FnCache(Generic[T]):
    """At most `size` entries, one per `fn_key`, built by `make(f)` on a miss.

    A function whose key cannot be hashed (an unhashable default, say) gets a
    fresh, uncached entry each time.

    Examples:
        >>> from fluxlike._fncache import FnCache
        >>> cache = FnCache(lambda f: [f], size=4)
        >>> fresh = [lambda x: x + 1 for _ in range(3)]  # one code, three objects
        >>> cache.get(fresh[0]) is cache.get(fresh[2]), len(cache)
        (True, 1)
    """

    def __init__(self, make: Callable[[Callable], T], size: int = 64) -> None:
        self.make, self.size = make, size
        self.entries: collections.OrderedDict[Any, tuple[tuple, T]] = collections.OrderedDict()

    def get(self, f: Callable) -> T:
        """The entry for `f`, made on a miss."""
        key = fn_key(f)
        try:
            hit = self.entries[key]
        except TypeError:  # unhashable key
            return self.make(f)
        except KeyError:
            pass
        else:
            self.entries.move_to_end(key)
            return hit[1]
        value = self.make(f)
        self.entries[key] = (referents(f), value)
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self.entries)
