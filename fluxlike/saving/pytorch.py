"""PyTorch weights in and out: `torchstate` (a model's arrays under PyTorch's
names and layouts) and `loadtorch_` (a torch `state_dict` into a model).

A model is read as a sequence of parameterised layers, in order; a torch
`state_dict` as a sequence of modules (its keys grouped by module prefix).
The two are matched in order, so `nn.Sequential(Linear, ReLU, Linear)`
fits `fl.Chain(fl.Dense(.., relu), fl.Dense(..))`: ReLU has no weights.
Each pair is checked (kind, shapes, dtypes) and converted:

| fluxlike | torch | conversion |
|---|---|---|
| Dense | Linear | none: both (out, in) |
| Conv (N-d) | ConvNd | kernel (k..., in/g, out) <-> (out, in/g, k...); both cross-correlate, no flip |
| ConvTranspose | ConvTransposeNd | kernel (k..., out/g, in) <-> (in, out/g, k...) |
| BatchNorm | BatchNormNd | scale, bias, mean, var <-> weight, bias, running_mean, running_var (`num_batches_tracked` has no twin: written as 0, ignored on load) |
| LayerNorm | LayerNorm | scale <-> weight |
| Embedding | Embedding | none |
| RNN/LSTM/GRU (and cells) | RNN/LSTM/GRU (one layer) | Wi, Wh <-> weight_ih, weight_hh; bias = bias_ih + bias_hh (GRU: only when the last third of bias_hh is zero) |
| MultiHeadAttention | MultiheadAttention | q, k, v projections <-> in_proj_weight (packed) or q/k/v_proj_weight |

torch is never imported: tensors are read through `.detach().cpu().numpy()`.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from ..layers import (
    GRU, LSTM, RNN, AlphaDropout, BatchNorm, Chain, Conv, ConvTranspose, Dense, Dropout, Embedding, GRUCell,
    GRUv3, GRUv3Cell, LayerNorm, LSTMCell, MultiHeadAttention, RNNCell,
)
from .._tree import is_array
from ._names import dotted, load_named_
from .model import not_traced

__all__ = ["torchstate", "loadtorch_"]

_RECURRENT = (RNN, LSTM, GRU, RNNCell, LSTMCell, GRUCell)
_KNOWN = (Dense, Conv, ConvTranspose, BatchNorm, LayerNorm, Embedding, MultiHeadAttention, *_RECURRENT,
          GRUv3, GRUv3Cell, Dropout, AlphaDropout)
_NO_PARAMS_IN_TORCH = (Dropout, AlphaDropout)


def _np(x: Any) -> np.ndarray:
    """A torch tensor (without importing torch), a jax or numpy array, as numpy."""
    if hasattr(x, "detach") and hasattr(x, "numpy"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


# ---------------------------------------------------------------------------
# the model side: parameterised layers in order


class _Layer:
    """One parameterised fluxlike layer: where it is (fluxlike's dotted path,
    and the torch-style prefix: a Chain's `layers` level dropped) and the layer."""

    def __init__(self, layer: Any, path: str, tname: str) -> None:
        self.layer, self.path, self.tname = layer, path, tname

    def kind(self) -> str:
        return type(self.layer).__name__


def _layers(model: Any, fn: str) -> list[_Layer]:
    pairs, _ = jax.tree_util.tree_flatten_with_path(model, is_leaf=lambda x: isinstance(x, _KNOWN))
    out = []
    for path, node in pairs:
        tparts, at = [], model
        for k in path:
            if not (isinstance(at, Chain) and isinstance(k, jax.tree_util.GetAttrKey) and k.name == "layers"):
                tparts.append(dotted((k,)))
            at = _down(at, k)
        where = dotted(path)
        if isinstance(node, _NO_PARAMS_IN_TORCH):
            continue
        if isinstance(node, (GRUv3, GRUv3Cell)):
            raise TypeError(f"{fn}: {where} is a {type(node).__name__}, which PyTorch has no twin of "
                            "(torch's GRU is v1 of the paper: fl.GRU)")
        if not isinstance(node, _KNOWN):
            if is_array(node):
                raise TypeError(f"{fn}: the array at {where} is not in a layer PyTorch has a twin of "
                                "(Dense, Conv, ConvTranspose, BatchNorm, LayerNorm, Embedding, RNN/LSTM/GRU, "
                                "MultiHeadAttention); save such models with fl.savemodel")
            continue
        out.append(_Layer(node, where, ".".join(tparts)))
    return out


def _down(node: Any, k: Any) -> Any:
    if isinstance(k, jax.tree_util.GetAttrKey):
        return getattr(node, k.name)
    if isinstance(k, jax.tree_util.SequenceKey):
        return node[k.idx]
    if isinstance(k, jax.tree_util.DictKey):
        return node[k.key]
    return None


# ---------------------------------------------------------------------------
# each kind: (suffix -> array) for torch, and back


def _conv_to_torch(w: np.ndarray) -> np.ndarray:
    n = w.ndim
    return np.ascontiguousarray(np.transpose(w, (n - 1, n - 2, *range(n - 2))))


def _conv_from_torch(w: np.ndarray) -> np.ndarray:
    n = w.ndim
    return np.ascontiguousarray(np.transpose(w, (*range(2, n), 1, 0)))


def _cell(layer: Any) -> tuple[Any, str]:
    """The cell of a recurrent layer and torch's suffix for its weights."""
    return (layer.cell, "_l0") if isinstance(layer, (RNN, LSTM, GRU)) else (layer, "")


def _to_torch(layer: Any) -> dict[str, np.ndarray]:
    """torch suffix -> array for one layer."""
    a = lambda x: np.array(x)  # noqa: E731  (a writable copy: torch.from_numpy warns on read-only arrays)
    out: dict[str, np.ndarray] = {}
    if isinstance(layer, (Dense, Embedding)):
        out["weight"] = a(layer.weight)
        if getattr(layer, "bias", None) is not None:
            out["bias"] = a(layer.bias)
    elif isinstance(layer, (Conv, ConvTranspose)):
        out["weight"] = _conv_to_torch(a(layer.weight))
        if layer.bias is not None:
            out["bias"] = a(layer.bias)
    elif isinstance(layer, BatchNorm):
        for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var")):
            if getattr(layer, ours) is not None:
                out[theirs] = a(getattr(layer, ours))
        if layer.mean is not None:
            out["num_batches_tracked"] = np.asarray(0, np.int64)
    elif isinstance(layer, LayerNorm):
        if layer.scale is not None:
            out["weight"] = a(layer.scale)
        if layer.bias is not None:
            out["bias"] = a(layer.bias)
    elif isinstance(layer, _RECURRENT):
        cell, sfx = _cell(layer)
        out["weight_ih" + sfx], out["weight_hh" + sfx] = a(cell.Wi), a(cell.Wh)
        if cell.bias is not None:
            out["bias_ih" + sfx] = a(cell.bias)
            out["bias_hh" + sfx] = np.zeros_like(a(cell.bias))
    elif isinstance(layer, MultiHeadAttention):
        q, k, v, o = (layer.q_proj, layer.k_proj, layer.v_proj, layer.out_proj)
        if q.weight.shape == k.weight.shape == v.weight.shape:
            out["in_proj_weight"] = np.concatenate([a(q.weight), a(k.weight), a(v.weight)])
        else:
            out["q_proj_weight"], out["k_proj_weight"], out["v_proj_weight"] = a(q.weight), a(k.weight), a(v.weight)
        if q.bias is not None:
            out["in_proj_bias"] = np.concatenate([a(q.bias), a(k.bias), a(v.bias)])
        out["out_proj.weight"] = a(o.weight)
        if o.bias is not None:
            out["out_proj.bias"] = a(o.bias)
    return out


def _from_torch(layer: _Layer, prefix: str, t: dict[str, np.ndarray], fn: str, strict: bool = True) -> dict[str, np.ndarray]:
    """fluxlike dotted name -> array for one layer, from torch suffix -> array,
    with names (unless not `strict`), shapes and dtypes checked against the
    layer's and errors naming the torch key."""
    want = _to_torch(layer.layer)  # torch's names and shapes for this layer
    got = {k: v for k, v in t.items() if k != "num_batches_tracked"}
    need = {k for k in want if k != "num_batches_tracked"}
    node = layer.layer
    missing, extra = sorted(need - set(got)), sorted(set(got) - need)
    if not strict:
        got = {k: v for k, v in got.items() if k in need}
        need = set(got)
    elif missing or extra:
        what = []
        if missing:
            what.append("torch has no " + ", ".join(f"{prefix}.{k}" for k in missing))
        if extra:
            what.append("the layer has no twin of " + ", ".join(f"{prefix}.{k}" for k in extra))
        raise ValueError(f"{fn}: the torch module {prefix} does not fit the {layer.kind()} at {layer.path}: "
                         + "; ".join(what) + " (a bias, affine or kdim/vdim setting that differs?)")
    for k in (k for k in want if k in need):  # torch's order: the weight before the bias
        if tuple(got[k].shape) != tuple(want[k].shape):
            raise ValueError(f"{fn}: {prefix}.{k} has shape {tuple(got[k].shape)}; the {layer.kind()} at "
                             f"{layer.path} needs {tuple(want[k].shape)} (in torch's layout)")
        if got[k].dtype != want[k].dtype:
            raise TypeError(f"{fn}: {prefix}.{k} has dtype {got[k].dtype}; the {layer.kind()} at {layer.path} holds "
                            f"{want[k].dtype} (dtypes are never converted: .float() the torch module or fl.f64 the model)")
    p = layer.path + "." if layer.path else ""
    out: dict[str, np.ndarray] = {}
    if isinstance(node, (Dense, Embedding)):
        out[p + "weight"] = got["weight"]
        if "bias" in got:
            out[p + "bias"] = got["bias"]
    elif isinstance(node, (Conv, ConvTranspose)):
        out[p + "weight"] = _conv_from_torch(got["weight"])
        if "bias" in got:
            out[p + "bias"] = got["bias"]
    elif isinstance(node, BatchNorm):
        for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"), ("var", "running_var")):
            if theirs in got:
                out[p + ours] = got[theirs]
    elif isinstance(node, LayerNorm):
        if "weight" in got:
            out[p + "scale"] = got["weight"]
        if "bias" in got:
            out[p + "bias"] = got["bias"]
    elif isinstance(node, _RECURRENT):
        cell, sfx = _cell(node)
        c = p + ("cell." if sfx else "")
        out[c + "Wi"], out[c + "Wh"] = got["weight_ih" + sfx], got["weight_hh" + sfx]
        if "bias_ih" + sfx in got:
            b_ih, b_hh = got["bias_ih" + sfx], got["bias_hh" + sfx]
            if isinstance(node, (GRU, GRUCell)):
                h = b_hh.shape[0] // 3
                if np.any(b_hh[2 * h:] != 0):
                    raise ValueError(
                        f"{fn}: {prefix}.bias_hh{sfx} has a non-zero last third (b_hn, inside r * (W_hn h + b_hn) "
                        f"in torch's GRU), which the GRU at {layer.path} has no place for: fluxlike's GRU, as "
                        "Flux's, has one bias outside the reset gate. Train the torch GRU with b_hn fixed at zero")
            out[c + "bias"] = b_ih + b_hh
    elif isinstance(node, MultiHeadAttention):
        names = ("q_proj", "k_proj", "v_proj")
        if "in_proj_weight" in got:
            ws = np.split(got["in_proj_weight"], 3)
        else:
            ws = [got[f"{n}_weight"] for n in names]
        for n, w in zip(names, ws):
            out[f"{p}{n}.weight"] = w
        if "in_proj_bias" in got:
            for n, b in zip(names, np.split(got["in_proj_bias"], 3)):
                out[f"{p}{n}.bias"] = b
        out[p + "out_proj.weight"] = got["out_proj.weight"]
        if "out_proj.bias" in got:
            out[p + "out_proj.bias"] = got["out_proj.bias"]
    return out


# ---------------------------------------------------------------------------
# the torch side: a state_dict's keys grouped by module


def _torch_modules(state_dict: Any, fn: str) -> list[tuple[str, dict[str, np.ndarray]]]:
    """`[(module prefix, {suffix: array})]` in the state_dict's order; a
    MultiheadAttention's `out_proj` joins its module."""
    if hasattr(state_dict, "state_dict") and callable(state_dict.state_dict):
        state_dict = state_dict.state_dict()
    if not hasattr(state_dict, "items"):
        raise TypeError(f"{fn}: expected a torch state_dict (module.state_dict()) or a dict of arrays, "
                        f"got {type(state_dict).__name__}")
    groups: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise TypeError(f"{fn}: state_dict keys must be str, got {key!r}")
        prefix, _, suffix = key.rpartition(".")
        owner = prefix[:-len(".out_proj")] if prefix.endswith(".out_proj") else ("" if prefix == "out_proj" else None)
        if owner is not None and owner in groups and any(s.endswith("proj_weight") for s in groups[owner]):
            prefix, suffix = owner, "out_proj." + suffix  # a MultiheadAttention's output projection
        groups.setdefault(prefix, {})[suffix] = _np(value)
    return [(p, g) for p, g in groups.items() if set(g) != {"num_batches_tracked"}]


def _kinds(mods: list, key: Callable) -> str:
    return ", ".join(key(m) for m in mods) or "none"


def _torch_kind(suffixes: dict) -> str:
    s = set(suffixes)
    if "in_proj_weight" in s or "q_proj_weight" in s:
        return "MultiheadAttention"
    if any(k.startswith("weight_ih") for k in s):
        return "RNN/LSTM/GRU"
    if "running_mean" in s:
        return "BatchNorm"
    w = suffixes.get("weight")
    if w is None:
        return "?"
    return {1: "LayerNorm", 2: "Linear/Embedding"}.get(w.ndim, f"Conv{w.ndim - 2}d")


def _pairs(model: Any, state_dict: Any, fn: str, strict: bool = True) -> list[tuple[_Layer, str, dict]]:
    ours = _layers(model, fn)
    theirs = _torch_modules(state_dict, fn)
    if len(ours) != len(theirs) and strict:
        raise ValueError(
            f"{fn}: the model has {len(ours)} parameterised layers, the state_dict {len(theirs)} modules with "
            f"weights, so they cannot be matched in order.\n  model: {_kinds(ours, lambda l: f'{l.path} {l.kind()}')}"
            f"\n  torch: {_kinds(theirs, lambda m: f'{m[0]} {_torch_kind(m[1])}')}")
    for layer, (prefix, t) in zip(ours, theirs):
        deep = [k for k in t if k[-3:-1] == "_l" and k[-1].isdigit() and not k.endswith("_l0")]
        if deep:
            raise ValueError(f"{fn}: the torch module {prefix} has {len({k[-1] for k in deep}) + 1} layers "
                             f"(num_layers > 1: {', '.join(deep[:2])}...); build one fluxlike "
                             f"{layer.kind()} per layer in a Chain")
        if any(k.endswith("_reverse") for k in t):
            raise ValueError(f"{fn}: the torch module {prefix} is bidirectional, which {layer.kind()} is not")
    return [(layer, prefix, t) for layer, (prefix, t) in zip(ours, theirs)]


def torchstate(model: Any, like: Any = None) -> dict[str, np.ndarray]:
    """The model's weights as a PyTorch `state_dict` of numpy arrays, in
    PyTorch's names and layouts.

    Names follow the model (a Chain's layers are `0`, `1`, ... as in
    `nn.Sequential`; named ones by name), so a torch module of the same
    layers loads it with `load_state_dict(..., strict=True)`. When the torch
    module interleaves weightless modules (`nn.ReLU` in a Sequential), pass
    it (or its `state_dict()`) as `like`: its modules are matched to the
    model's layers in order and their names used.

    Args:
        model: the fluxlike model (see the module docstring for the layers).
        like: a torch module or state_dict whose names to use (optional).

    Examples:
        >>> import fluxlike as fl
        >>> sd = fl.torchstate(fl.Chain(fl.Conv((3, 3), 1, 4), fl.BatchNorm(4), fl.Dense(4, 2)))
        >>> {k: v.shape for k, v in sd.items()}  # doctest: +NORMALIZE_WHITESPACE
        {'0.weight': (4, 1, 3, 3), '0.bias': (4,), '1.weight': (4,), '1.bias': (4,), '1.running_mean': (4,),
         '1.running_var': (4,), '1.num_batches_tracked': (), '2.weight': (2, 4), '2.bias': (2,)}

        In PyTorch: `module.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})`.
    """
    fn = "torchstate"
    not_traced(fn)
    out: dict[str, np.ndarray] = {}
    if like is None:
        for layer in _layers(model, fn):
            p = layer.tname + "." if layer.tname else ""
            out.update({p + k: v for k, v in _to_torch(layer.layer).items()})
        return out
    for layer, prefix, t in _pairs(model, like, fn):
        _from_torch(layer, prefix, t, fn)  # the torch module's entries fit this layer: names, shapes, dtypes
        p = prefix + "." if prefix else ""
        out.update({p + k: v for k, v in _to_torch(layer.layer).items()})
    return out


def loadtorch_(model: Any, state_dict: Any, *, strict: bool = True) -> Any:
    """Load a PyTorch `state_dict` (tensors or arrays; or a torch module) into
    `model` in place; returns `model`.

    The model's parameterised layers and the state_dict's modules are matched
    in order (weightless modules such as `nn.ReLU` have no entries), each
    pair checked for kind, shapes and dtypes (errors name the torch key and
    both shapes) and converted to fluxlike's layout. Nothing changes unless
    everything fits. `strict=False` forgives names, as PyTorch's does: when
    one side has more layers the first ones are matched, and an entry one
    side lacks (a bias) is skipped; shapes and dtypes must still agree.

    Examples:
        >>> import numpy as np, fluxlike as fl
        >>> model = fl.Chain(fl.Dense(3, 4, fl.relu), fl.Dense(4, 1))
        >>> sd = {"0.weight": np.ones((4, 3), np.float32), "0.bias": np.zeros(4, np.float32),
        ...       "2.weight": np.ones((1, 4), np.float32), "2.bias": np.zeros(1, np.float32)}
        >>> float(fl.loadtorch_(model, sd)(np.ones((1, 3), np.float32))[0, 0])
        12.0
    """
    fn = "loadtorch_"
    not_traced(fn)
    src: dict[str, np.ndarray] = {}
    for layer, prefix, t in _pairs(model, state_dict, fn, strict):
        src.update(_from_torch(layer, prefix, t, fn, strict))
    load_named_(model, src, False, fn, "the state_dict")
    return model
