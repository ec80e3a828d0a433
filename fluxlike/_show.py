"""Flux-style printing of models: one line for small models, and Flux's
multi-line form (one layer a line, parameter counts, a total) for larger ones."""

from __future__ import annotations

from typing import Any

from ._tree import format_bytes, underscorise
from .module import Module, count_params, nbytes

_ONE_LINE = 80


def _counts_comment(layer: Any, top: bool) -> str:
    _, npar, _, nother = count_params(layer)
    if npar == 0:  # as Flux: layers without parameters get no comment
        return ""
    s = f"# {underscorise(npar)} parameters"
    if nother:
        s += f", plus {underscorise(nother)}" + (" non-trainable" if top else "")
    return s


def one_line(layer: Any) -> str:
    """`Chain(Dense(2 => 3, relu), Dense(3 => 1))` with no counts."""
    if isinstance(layer, Module):
        kids = layer._children()
        if kids is None:
            return layer._repr_head()
        head = layer._repr_head()
        inner = ", ".join(
            (f"{k}={one_line(v)}" if isinstance(k, str) else one_line(v)) for k, v in kids
        )
        return head.replace("(…)", f"({inner})", 1)
    if hasattr(layer, "shape") and hasattr(layer, "dtype"):
        return f"{'×'.join(map(str, layer.shape)) or 'scalar'} {layer.dtype}"
    return repr(layer)


def _nested(layer: Module) -> bool:
    kids = layer._children()
    return kids is not None and any(
        isinstance(v, Module) and v._children() is not None for _, v in kids
    )


def show(layer: Module) -> str:
    """The repr of a Module: one line when short and flat, else `big_show`."""
    line = one_line(layer)
    comment = _counts_comment(layer, True)
    if layer._children() is None or (len(line) + 2 + len(comment) <= _ONE_LINE and not _nested(layer)):
        return f"{line}  {comment}" if comment else line
    return big_show(layer)


def big_show(layer: Module) -> str:
    """Flux's REPL display: one layer a line with its parameter count, then a total.

    Example:
        >>> import fluxlike as fl
        >>> print(fl.Chain(fl.Dense(784, 32, fl.relu), fl.Dense(32, 10)))
        Chain(
          Dense(784 => 32, relu),               # 25_120 parameters
          Dense(32 => 10),                      # 330 parameters
        )                   # Total: 4 arrays, 25_450 parameters, 99.414 KiB.
    """
    lines: list[str] = []
    _big(layer, 0, None, lines)
    return "\n".join(lines)


def _big(layer: Any, indent: int, name: str | None, out: list[str]) -> None:
    prefix = "" if name is None else f"{name} = "
    kids = layer._children() if isinstance(layer, Module) else None
    if kids is None:
        s = prefix + one_line(layer)
        line = " " * indent + s + ("" if indent == 0 else ",")
        comment = _counts_comment(layer, indent == 0)
        if comment:
            line += " " * max(2, (20 if indent == 0 else 39) - indent - len(s)) + comment
        out.append(line)
        return
    head = layer._repr_head()
    pre = head.split("(…)", 1)[0] + "("
    out.append(" " * indent + prefix + pre)
    for k, v in kids:
        _big(v, indent + 2, k if isinstance(k, str) else None, out)
    if indent == 0:
        out.append(")" + " " * 1 + _finale(layer))
    else:
        out.append(" " * indent + "),")


def _finale(layer: Module) -> str:
    na, npar, no, nother = count_params(layer)
    size = format_bytes(nbytes(layer))
    if no:
        return (
            f"{' ' * 8}# Total: {na} trainable arrays, {underscorise(npar)} parameters,\n"
            f"{' ' * 10}# plus {no} non-trainable, {underscorise(nother)} parameters, "
            f"summarysize {size}."
        )
    return f"{' ' * 18}# Total: {na} arrays, {underscorise(npar)} parameters, {size}."


__all__ = ["show", "big_show", "one_line"]
