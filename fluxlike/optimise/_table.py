"""The hyperparameter table: how a rule's hyperparameters become one row of
floats per Leaf (`OptState`'s `hyper` table), and back.

A rule's row is its `hyper` names in order, a pair taking two columns and a
schedule one column holding NaN while it is in force. A chain's row is its
members' rows one after the other. These are functions of the rule, not
methods, so a rule's author never meets them.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

__all__ = ["flat", "schedules", "slots", "width", "row", "read", "with_row", "key", "checks", "pyfloat"]


def _members(rule: Any) -> tuple | None:
    """A chain's rules (None for a rule that is not a chain)."""
    return getattr(rule, "opts", None)


def flat(rule: Any) -> tuple:
    """The simple rules inside `rule`, in order (itself, or a chain's members, flattened)."""
    ms = _members(rule)
    return (rule,) if ms is None else tuple(s for r in ms for s in flat(r))


def schedules(rule: Any) -> tuple[tuple[str, Callable], ...]:
    """(name, schedule) of each hyperparameter of a simple rule given as a function of the step."""
    if _members(rule) is not None:
        return ()
    return tuple((n, getattr(rule, n)) for n in rule.hyper if callable(getattr(rule, n)))


def slots(rule: Any) -> tuple[tuple[str, int], ...]:
    """(name, width) of each hyperparameter, in table order."""
    return tuple(
        (n, len(v) if isinstance(v, tuple) else 1)
        for r in flat(rule) for n in r.hyper for v in (getattr(r, n),)
    )


def width(rule: Any) -> int:
    """The number of table columns `rule` uses."""
    return sum(w for _, w in slots(rule))


def row(rule: Any) -> list[float]:
    """The hyperparameter values, flattened into one table row (NaN for a schedule)."""
    out: list[float] = []
    for r in flat(rule):
        for n in r.hyper:
            v = getattr(r, n)
            if callable(v):
                out.append(math.nan)
            else:
                out.extend(float(e) for e in (v if isinstance(v, tuple) else (v,)))
    return out


def read(rule: Any, row: Any, offset: int = 0) -> tuple[Any, int]:
    """The `h` a rule's `apply` takes, from a table row (or, given the table
    transposed, the columns: then each entry is a vector over Leafs), and the
    next offset. A chain's `h` is a list, one `h` per member."""
    ms = _members(rule)
    if ms is not None:
        hs = []
        for r in ms:
            h, offset = read(r, row, offset)
            hs.append(h)
        return hs, offset
    h: dict[str, Any] = {}
    for n, w in slots(rule):
        h[n] = row[offset] if w == 1 else tuple(row[offset + i] for i in range(w))
        offset += w
    return h, offset


def with_row(rule: Any, row: Any, offset: int = 0) -> Any:
    """A copy of `rule` holding the values of a table row (for printing)."""
    ms = _members(rule)
    if ms is not None:
        out = []
        for r in ms:
            out.append(with_row(r, row, offset))
            offset += width(r)
        return type(rule)(*out)
    new = object.__new__(type(rule))
    new.__dict__.update(rule.__dict__)
    for n, w in slots(rule):
        vals = tuple(pyfloat(row[offset + i]) for i in range(w))
        if w == 1 and math.isnan(vals[0]) and callable(getattr(rule, n)):
            pass  # the schedule is in force
        else:
            conv = rule.types.get(n, float)
            vals = tuple(conv(v) for v in vals)
            new.__dict__[n] = vals[0] if w == 1 else vals
        offset += w
    return new


def key(rule: Any) -> tuple:
    """What the compiled program depends on: the types, static options,
    slot widths and schedules, never the hyperparameter values."""
    ms = _members(rule)
    if ms is not None:
        return (type(rule), tuple(key(r) for r in ms))
    return (type(rule), tuple(getattr(rule, s) for s in rule.static), slots(rule), schedules(rule))


def checks(rule: Any) -> bool:
    """Whether some rule inside raises on a non-finite norm (so `update` must look)."""
    return any(getattr(r, "throw", False) for r in flat(rule))


def pyfloat(v: Any) -> float:
    """The shortest Python float that round-trips at the table's precision
    (0.01 stored in float32 reads back as 0.01)."""
    a = np.asarray(v)
    return float(np.format_float_scientific(a[()], unique=True)) if a.dtype.kind == "f" else float(a)
