"""The public API is declared once: `fluxlike/__init__.py` imports names
explicitly from the modules that define them, and `fl.__all__` is exactly the
union of those public modules' `__all__` (a private module, `_keys` or
`_walk`, also lists names for the package's own use, so from those only the
imported names count)."""

from __future__ import annotations

import ast
import importlib
import pathlib

import fluxlike as fl

INIT = pathlib.Path(fl.__file__)


def _imports() -> dict[str, list[str]]:
    """{module: names} for each `from .x import ...` of the package's __init__."""
    out: dict[str, list[str]] = {}
    for node in ast.parse(INIT.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names = [a.name for a in node.names]
            assert "*" not in names, f"__init__.py: `from .{node.module} import *`; list the names"
            out.setdefault(node.module or "", []).extend(names)
    return out


def test_all_is_the_union_of_the_modules_all():
    declared: set[str] = set()
    for mod, names in _imports().items():
        if not mod:  # `from . import losses`: a public submodule
            declared.update(names)
            continue
        m = importlib.import_module(f"fluxlike.{mod}")
        assert hasattr(m, "__all__"), f"fluxlike.{mod} has no __all__"
        extra, missing = set(names) - set(m.__all__), set(m.__all__) - set(names)
        assert not extra, f"fluxlike.{mod}: __init__ imports {sorted(extra)}, which its __all__ does not list"
        private = any(part.startswith("_") for part in mod.split("."))
        assert private or not missing, f"fluxlike.{mod}: __init__ does not export {sorted(missing)}"
        declared.update(names)
    assert sorted(fl.__all__) == sorted(declared)
    assert len(fl.__all__) == len(set(fl.__all__)), "a name is listed twice in fl.__all__"
    for name in fl.__all__:
        assert hasattr(fl, name), name


def test_what_is_raised_or_documented_is_exported():
    assert issubclass(fl.NonFiniteLoss, FloatingPointError)
    for name in ("Leaf", "OptState", "Rule", "onehot", "onehotbatch", "onecold", "losses"):
        assert name in fl.__all__, name
