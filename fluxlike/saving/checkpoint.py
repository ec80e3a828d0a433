"""`savecheckpoint` and `loadcheckpoint_`: everything a training run needs to
go on in a new process as if it had never stopped, in one safetensors file.

A checkpoint holds, as arrays: the model's (`model.layers.0.weight`, ...,
BatchNorm statistics and Dropout keys included), the optimiser state's
(`optimiser.states...`: each Leaf's rule state or the optax state;
`optimiser.hyper`: the hyperparameters as adjusted; `optimiser.counts`: step
counts and frozen flags) and fluxlike's key stream (`fluxlike.keystream`);
and, as metadata, the rule (to refuse a state of another rule), the Leafs'
paths (to refuse another model), the step, the DataLoader's shuffle
generator and the user's metadata.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from .. import _keys
from ..data import DataLoader
from ..optimise import _table
from ..optimise._engine import RuleEngine
from ..optimise.state import arrays, engine, rebind_, spec_of, whole_state
from .._walk import set_leaves_
from . import _safetensors
from ._names import match_named, named_arrays
from .model import FORMAT_KEY, MODEL_PREFIX, not_traced, own_metadata, user_metadata

__all__ = ["savecheckpoint", "loadcheckpoint_"]

RULE_KEY = "fluxlike.rule"
LEAVES_KEY = "fluxlike.leaves"
STEP_KEY = "fluxlike.step"
LOADER_KEY = "fluxlike.loader"
OPT_PREFIX = "optimiser."
KEYSTREAM = "fluxlike.keystream"


def _rule_sig(rule: Any) -> str:
    members = getattr(rule, "opts", None)
    if members is not None:
        return f"{type(rule).__name__}({', '.join(_rule_sig(r) for r in members)})"
    opts = [f"{s}={getattr(rule, s)!r}" for s in rule.static]
    opts += [f"{n}=<schedule>" for n, _ in _table.schedules(rule)]
    return type(rule).__name__ + (f"[{', '.join(opts)}]" if opts else "")


def rule_signature(state: Any) -> str:
    """What a checkpoint's optimiser state must have been built with: the
    rule's types and static options (not its hyperparameter values, which
    the checkpoint holds), or the optax state's structure.

    Examples:
        >>> import fluxlike as fl
        >>> from fluxlike.saving.checkpoint import rule_signature
        >>> rule_signature(fl.setup(fl.OptimiserChain(fl.ClipNorm(1.0), fl.Adam()), fl.Dense(2, 1)))
        'OptimiserChain(ClipNorm[...], Adam)'
    """
    e = engine(state)
    if isinstance(e, RuleEngine):
        return _rule_sig(e.rule)
    return "optax " + str(jax.tree.structure(arrays(state)[0]))


def _opt_tree(state: Any) -> dict[str, Any]:
    states, hyper, counts = arrays(state)
    return {"states": states, "hyper": hyper, "counts": counts}


def _jsonable(x: Any) -> Any:
    """A numpy bit generator's state as JSON (PCG64's is ints; MT19937's holds an array)."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, np.ndarray):
        return {"__ndarray__": x.tolist(), "dtype": str(x.dtype)}
    if isinstance(x, np.generic):
        return x.item()
    return x


def _from_json(x: Any) -> Any:
    if isinstance(x, dict):
        if "__ndarray__" in x:
            return np.asarray(x["__ndarray__"], dtype=x["dtype"])
        return {k: _from_json(v) for k, v in x.items()}
    return x


def _loader_of(loader: Any, fn: str) -> DataLoader | None:
    if loader is None:
        return None
    if not isinstance(loader, DataLoader):
        raise TypeError(f"{fn}: loader must be a fl.DataLoader (its shuffle state is saved), "
                        f"got {type(loader).__name__}")
    return loader


def _check_pair(model: Any, state: Any, fn: str) -> None:
    spec = spec_of(state)
    n = len(jax.tree.leaves(model))
    if n != spec.n:
        raise ValueError(f"{fn}: the optimiser state was set up for a model with {spec.n} arrays, this model "
                         f"has {n}; pass the model the state was built for (fl.setup(rule, model))")


def savecheckpoint(path: str | os.PathLike, model: Any, state: Any, *, loader: DataLoader | None = None,
                   step: int | None = None, metadata: dict[str, str] | None = None) -> None:
    """Save a training run at `path` (one safetensors file, written
    atomically): the model, the whole optimiser state (rule states,
    hyperparameters as adjusted, step counts, frozen flags, optax state),
    fluxlike's key stream, the DataLoader's shuffle generator, `step` and
    `metadata`. `fl.loadcheckpoint_` in a new process then trains
    bit-identically to never having stopped.

    Args:
        path: the file to write (its folder must exist).
        model: the model being trained.
        state: its optimiser state from `fl.setup`.
        loader: the `fl.DataLoader` whose shuffled order must resume.
        step: a step or epoch number to store (returned by `loadcheckpoint_`).
        metadata: strings to store (`{"val_loss": "0.31"}`).

    Examples:
        >>> import os, tempfile, fluxlike as fl
        >>> model = fl.Dense(2, 1)
        >>> state = fl.setup(fl.Adam(), model)
        >>> path = os.path.join(tempfile.mkdtemp(), "run.safetensors")
        >>> fl.savecheckpoint(path, model, state, step=10)
        >>> fl.loadcheckpoint_(path, fl.Dense(2, 1), fl.setup(fl.Adam(), fl.Dense(2, 1)))["step"]
        10
    """
    fn = "savecheckpoint"
    not_traced(fn)
    state = whole_state(state, fn)
    _check_pair(model, state, fn)
    loader = _loader_of(loader, fn)
    if step is not None and (not isinstance(step, (int, np.integer)) or isinstance(step, bool)):
        raise TypeError(f"{fn}: step must be an int or None, got {type(step).__name__} {step!r}")
    named, _ = named_arrays(model, fn)
    opt, _ = named_arrays(_opt_tree(state), fn, "optimiser state")
    tensors = [(MODEL_PREFIX + n, a) for n, a in named] + [(OPT_PREFIX + n, a) for n, a in opt]
    tensors.append((KEYSTREAM, _keys.stream_key()))
    loader_state = ""
    if loader is not None:
        loader_state = json.dumps(None if loader.rng is None else _jsonable(loader.rng.bit_generator.state))
    meta = {**user_metadata(metadata, fn), **own_metadata("checkpoint"),
            RULE_KEY: rule_signature(state), LEAVES_KEY: json.dumps(list(spec_of(state).paths)),
            STEP_KEY: "" if step is None else str(int(step)), LOADER_KEY: loader_state}
    _safetensors.write(path, tensors, meta, fn)


def _refuse(path: str, fn: str, why: str) -> ValueError:
    return ValueError(f"{fn}: {path} {why}")


def loadcheckpoint_(path: str | os.PathLike, model: Any, state: Any, *,
                    loader: DataLoader | None = None) -> dict[str, Any]:
    """Restore a checkpoint from `fl.savecheckpoint` into `model`, `state`
    (and `loader`'s shuffle generator) in place, and fluxlike's key stream;
    returns `{"step", "metadata", "path"}`.

    Build `model` and `state` as the run did (the same layers, `fl.setup` with
    the same rule; their values do not matter). Everything is checked before
    anything changes: a checkpoint of another rule or another model, a model
    file, a damaged file or a mismatched array is refused with an error that
    names the file and the entries, and leaves all the objects as they were.

    Examples:
        >>> import os, tempfile, fluxlike as fl
        >>> path = os.path.join(tempfile.mkdtemp(), "run.safetensors")
        >>> fl.savecheckpoint(path, fl.Dense(2, 1), fl.setup(fl.Adam(), fl.Dense(2, 1)), step=3)
        >>> model = fl.Dense(2, 1)
        >>> info = fl.loadcheckpoint_(path, model, fl.setup(fl.Adam(), model))
        >>> info["step"], info["metadata"]
        (3, {})
        >>> fl.loadcheckpoint_(path, model, fl.setup(fl.Descent(), model))
        Traceback (most recent call last):
        ValueError: loadcheckpoint_: ...run.safetensors is a checkpoint of the rule Adam; this optimiser state was set up with Descent. ...
    """
    fn = "loadcheckpoint_"
    not_traced(fn)
    state = whole_state(state, fn)
    _check_pair(model, state, fn)
    loader = _loader_of(loader, fn)
    path = os.fspath(path)
    tensors, meta = _safetensors.read(path, fn)
    kind = meta.get(FORMAT_KEY)
    if kind == "model":
        raise _refuse(path, fn, "is a model file (from fl.savemodel): it holds no optimiser state; "
                      "load it with fl.loadmodel_(model, path), or save runs with fl.savecheckpoint")
    if kind != "checkpoint":
        raise _refuse(path, fn, "is a safetensors file but not a fluxlike checkpoint (no "
                      f"{FORMAT_KEY!r} metadata); for plain weights use fl.loadmodel_(model, path)")
    saved_rule, rule = meta.get(RULE_KEY, "?"), rule_signature(state)
    if saved_rule != rule:
        raise _refuse(path, fn, f"is a checkpoint of the rule {saved_rule}; this optimiser state was set up "
                      f"with {rule}. Set up the state with the rule the run used")
    model_src = {k[len(MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(MODEL_PREFIX)}
    new_model, _ = match_named(model, model_src, True, fn, f"the checkpoint {path}")
    saved_paths = json.loads(meta.get(LEAVES_KEY, "[]"))
    paths = list(spec_of(state).paths)
    if saved_paths != paths:
        diff = sorted(set(saved_paths) ^ set(paths))[:6]
        raise _refuse(path, fn, f"holds the optimiser state of {len(saved_paths)} trainable arrays, this state "
                      f"has {len(paths)} (differing: {', '.join(diff) or 'their order'}); set up the state "
                      "after freezing or building the model as the run did")
    opt_src = {k[len(OPT_PREFIX):]: v for k, v in tensors.items() if k.startswith(OPT_PREFIX)}
    tree = _opt_tree(state)
    new_opt, _ = match_named(tree, opt_src, True, fn, f"the checkpoint {path}", "this optimiser state")
    key = tensors.get(KEYSTREAM)
    if key is None or key.shape != (2,) or key.dtype != np.uint32:
        raise _refuse(path, fn, f"has no valid {KEYSTREAM} entry (a uint32 array of shape (2,))")
    loader_state = None
    if loader is not None:
        raw = meta.get(LOADER_KEY, "")
        if raw == "":
            raise _refuse(path, fn, "was saved without loader=, so it holds no DataLoader state to restore; "
                          "pass loader= to savecheckpoint, or none here")
        loader_state = _from_json(json.loads(raw))
        if (loader_state is None) != (loader.rng is None):
            raise _refuse(path, fn, "holds the state of a DataLoader with shuffle="
                          f"{loader_state is not None}; the loader given has shuffle={loader.rng is not None}")
        if loader_state is not None:
            want = type(loader.rng.bit_generator).__name__
            if loader_state.get("bit_generator") != want:
                raise _refuse(path, fn, f"holds a {loader_state.get('bit_generator')} shuffle generator; the "
                              f"loader's is {want}")
    # everything checked: now change the objects
    set_leaves_(model, new_model)
    states, hyper, counts = _unflatten_opt(tree, new_opt)
    rebind_(state, states, hyper, counts)
    if loader_state is not None:
        loader.rng.bit_generator.state = loader_state
    _keys.set_stream_key(key)
    step = meta.get(STEP_KEY, "")
    user = {k: v for k, v in meta.items() if not k.startswith("fluxlike.")}
    return {"step": int(step) if step else None, "metadata": user, "path": path}


def _unflatten_opt(tree: dict[str, Any], leaves: list) -> tuple[Any, Any, Any]:
    new = jax.tree.unflatten(jax.tree.structure(tree), leaves)
    return new["states"], new["hyper"], new["counts"]
