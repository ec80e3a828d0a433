"""`savemodel` and `loadmodel_`: a model's arrays in a safetensors file under
PyTorch-style dotted names, and back with every mismatch reported at once."""

from __future__ import annotations

import importlib.metadata
import os
from typing import Any

from .._tree import tracing
from . import _safetensors
from ._names import load_named_, named_arrays

__all__ = ["savemodel", "loadmodel_"]

FORMAT_KEY = "fluxlike.format"
VERSION_KEY = "fluxlike.version"
MODEL_PREFIX = "model."  # a checkpoint's model arrays


def user_metadata(metadata: dict[str, str] | None, fn: str) -> dict[str, str]:
    """The user's metadata, checked: str keys and values, none in fluxlike's namespace."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"{fn}: metadata must be a dict of str to str, got {type(metadata).__name__}")
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"{fn}: metadata must map str to str; {k!r}: {type(v).__name__} {v!r:.40} is not "
                            "(write numbers with str(), structures with json.dumps)")
        if k.startswith("fluxlike."):
            raise ValueError(f"{fn}: metadata key {k!r}: keys starting with 'fluxlike.' are fluxlike's own")
    return dict(metadata)


def own_metadata(kind: str) -> dict[str, str]:
    """fluxlike's own entries: what kind of file, written by which version."""
    try:
        version = importlib.metadata.version("fluxlike")
    except importlib.metadata.PackageNotFoundError:  # a source tree that is not installed
        version = "unknown"
    return {FORMAT_KEY: kind, VERSION_KEY: version}


def not_traced(fn: str) -> None:
    if tracing():
        raise RuntimeError(f"{fn} was called while JAX is tracing (inside jax.jit, grad or vmap): files are "
                           "written and read outside compiled functions; call it after the step returns")


def savemodel(path: str | os.PathLike, model: Any, *, metadata: dict[str, str] | None = None) -> None:
    """Save every array of `model` (parameters and state: BatchNorm statistics,
    Dropout keys) to a safetensors file at `path`, atomically.

    Keys are the model's attribute paths joined by dots, as PyTorch names
    them (`layers.0.weight`); `safetensors.numpy.load_file(path)` reads the
    file. The write goes to a temporary file that is fsynced and renamed over
    `path`, so a crash leaves the previous file whole.

    Args:
        path: the file to write (its folder must exist).
        model: any model or pytree of arrays.
        metadata: strings to store with the arrays (`{"epoch": "3"}`).

    Examples:
        >>> import os, tempfile, fluxlike as fl
        >>> from safetensors.numpy import load_file
        >>> path = os.path.join(tempfile.mkdtemp(), "model.safetensors")
        >>> fl.savemodel(path, fl.Chain(fl.Dense(2, 3), fl.BatchNorm(3)))
        >>> sorted(load_file(path))
        ['layers.0.bias', 'layers.0.weight', 'layers.1.bias', 'layers.1.mean', 'layers.1.scale', 'layers.1.var']
    """
    not_traced("savemodel")
    meta = {**user_metadata(metadata, "savemodel"), **own_metadata("model")}
    named, _ = named_arrays(model, "savemodel")
    _safetensors.write(path, named, meta, "savemodel")


def _from_file(path: str, fn: str) -> dict[str, Any]:
    arrays, meta = _safetensors.read(path, fn)
    if meta.get(FORMAT_KEY) == "checkpoint":  # a checkpoint: its model part
        return {k[len(MODEL_PREFIX):]: v for k, v in arrays.items() if k.startswith(MODEL_PREFIX)}
    return arrays


def loadmodel_(model: Any, src: Any, *, strict: bool = True) -> Any:
    """Copy the arrays of `src` into `model` in place; returns `model`.

    `src` is a path to a safetensors file (from `fl.savemodel`, a checkpoint
    from `fl.savecheckpoint`, or any file whose keys are the model's dotted
    names), `fl.state` of a model, a model, or a dict `{name: array}`.
    Entries are matched by name. Every entry is checked first: missing and
    unexpected names, shapes and dtypes that differ are all reported in one
    error, and then nothing is changed. Dtypes are never converted: convert
    the model (`fl.f16`, `fl.f32`) or the source yourself. `strict=False`
    forgives missing and unexpected names (as PyTorch's `load_state_dict`),
    never a wrong shape or dtype.

    Examples:
        >>> import fluxlike as fl
        >>> a, b = fl.Dense(2, 1), fl.Dense(2, 1)
        >>> _ = fl.loadmodel_(b, fl.state(a))
        >>> bool((a.weight == b.weight).all())
        True
        >>> fl.loadmodel_(b, fl.f16(a))
        Traceback (most recent call last):
        TypeError: loadmodel_: 2 problems, so nothing was loaded:
          weight: dtype float32 in the model, float16 in the source (...)
          bias: dtype float32 in the model, float16 in the source (...)
    """
    not_traced("loadmodel_")
    if isinstance(src, (str, os.PathLike)):
        path = os.fspath(src)
        load_named_(model, _from_file(path, "loadmodel_"), strict, "loadmodel_", f"the file {path}")
        return model
    named, _ = named_arrays(src, "loadmodel_", "source")
    load_named_(model, dict(named), strict, "loadmodel_", "the source")
    return model
