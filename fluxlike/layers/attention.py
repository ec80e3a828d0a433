"""Multi-head dot-product attention (Flux's `MultiHeadAttention`), batch first:
inputs (batch..., len, features), attention scores (batch..., heads, q_len, kv_len)."""

from __future__ import annotations

import math
from typing import Any, Callable

import jax
import jax.numpy as jnp

from .._keys import as_key
from .._tree import Tracer, is_array
from ..init import glorot_uniform
from ..module import Module, field
from .dense import Dense
from .dropout import Dropout

__all__ = ["MultiHeadAttention", "make_causal_mask"]

_DIMS_HELP = (
    "Give `dims` as an int, or as (in, hidden, out) for Flux's `in => hidden => out`, where "
    "`in` is an int or (q_in, k_in, v_in) and `hidden` an int or (qk, v): e.g. "
    "`MultiHeadAttention(64)`, `MultiHeadAttention((64, 1024, 1024))`, "
    "`MultiHeadAttention(((3, 4, 5), (6, 8), 8))`."
)


def _normalise_dims(dims: Any) -> tuple[int, int, int, int, int, int]:
    """(q_in, k_in, v_in, qk, v, out) from the `dims` forms of Flux's constructor."""
    if isinstance(dims, int) and not isinstance(dims, bool):
        sizes = (dims,) * 6
    elif isinstance(dims, tuple) and len(dims) == 3:
        in_, hidden, out = dims
        ins = (in_,) * 3 if isinstance(in_, int) else in_
        hid = (hidden,) * 2 if isinstance(hidden, int) else hidden
        if not (isinstance(ins, tuple) and len(ins) == 3 and isinstance(hid, tuple) and len(hid) == 2):
            raise ValueError(f"MultiHeadAttention: cannot read dims={dims!r}. {_DIMS_HELP}")
        sizes = (*ins, *hid, out)
    else:
        raise ValueError(f"MultiHeadAttention: cannot read dims={dims!r}. {_DIMS_HELP}")
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"MultiHeadAttention: sizes must be positive ints, got dims={dims!r}")
    return sizes  # type: ignore[return-value]


def make_causal_mask(x: Any, dims: int = -2) -> jax.Array:
    """A boolean (len, len) mask letting each query see only keys at or before it.

    Args:
        x: an array whose axis `dims` is the sequence (e.g. queries of shape
            (batch, len, features)).
        dims: the sequence axis (default -2, the second-to-last axis, which is
            Flux's `dims=2` in row-major order).

    `mask[i, j]` is `j <= i` for query `i` and key `j` (a lower-triangular
    matrix: Flux's `m[i, j] == i ≤ j` with the axes reversed); it broadcasts
    against the attention scores (batch..., heads, q_len, kv_len).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.make_causal_mask(jnp.ones((2, 3, 8)))
        Array([[ True, False, False],
               [ True,  True, False],
               [ True,  True,  True]], dtype=bool)
    """
    n = jnp.shape(x)[dims]
    return jnp.tril(jnp.ones((n, n), bool))


def _split_heads(x: jax.Array, nheads: int) -> jax.Array:
    """(..., len, h*d) -> (..., h, len, d): head `i` takes features `i*d .. i*d+d-1`."""
    return jnp.swapaxes(x.reshape(*x.shape[:-1], nheads, x.shape[-1] // nheads), -2, -3)


class MultiHeadAttention(Module):
    """Multi-head dot-product attention: returns `(output, attention_scores)`.

    Args:
        dims: the feature sizes: an int for all of them, or (in, hidden, out)
            for Flux's `in => hidden => out`, where `in` is an int or
            (q_in, k_in, v_in) and `hidden` an int or (qk, v).
        nheads: the number of heads; it must divide `qk` and `v`.
        bias: whether the four projections (Dense layers) have biases.
        init: the projections' weight initialiser.
        dropout_prob: dropout on the attention scores after the softmax, in
            train mode (see `fl.Dropout`; its PRNG key is state).
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    Calls, as Flux's: `mha(q)` is self-attention `mha(q, q, q)`; `mha(q, kv)`
    is `mha(q, kv, kv)`; `mha(q, k, v, bias, mask=mask)` in general. Inputs
    are q (batch..., q_len, q_in), k (batch..., kv_len, k_in), v (batch...,
    kv_len, v_in). `bias` (added to the scores before the softmax) and `mask`
    (boolean, False entries are excluded: their logits become -inf) must
    broadcast to the scores' shape (batch..., nheads, q_len, kv_len): e.g.
    `fl.make_causal_mask(q)` (q_len, kv_len), or a key padding mask
    `keep[:, None, None, :]`. A query whose keys are all masked gets NaN
    scores, as in Flux and PyTorch.

    Returns the output (batch..., q_len, out) and the scores (batch...,
    nheads, q_len, kv_len), after dropout as in Flux: Flux's (kv_len, q_len,
    nheads, batch) with the axes reversed, PyTorch's per-head
    `average_attn_weights=False` layout. Head `i` uses the features
    `i*d .. i*d+d-1` of the projected q, k, v (`d = qk // nheads`), and the
    logits are scaled by `1/sqrt(d)`, as in Flux and PyTorch. The attention
    dropout layer is `mha.attn_drop`, None when `dropout_prob` is 0.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> mha = fl.MultiHeadAttention(64, nheads=8)
        >>> mha
        MultiHeadAttention(64, nheads=8)  # 16_384 parameters
        >>> q, kv = jnp.ones((4, 10, 64)), jnp.ones((4, 20, 64))
        >>> y, a = mha(q, kv)
        >>> y.shape, a.shape
        ((4, 10, 64), (4, 8, 10, 20))
        >>> y, a = mha(q, mask=fl.make_causal_mask(q))  # causal self-attention
        >>> float(a[0, 0, 0, 1])
        0.0
        >>> fl.MultiHeadAttention((64, 128, 128), nheads=8, bias=True, dropout_prob=0.1)
        MultiHeadAttention(64 => 128 => 128, nheads=8, bias=True, dropout_prob=0.1)  # 41_472 parameters, plus 2 non-trainable
    """

    q_proj: Dense
    k_proj: Dense
    v_proj: Dense
    attn_drop: Dropout | None
    out_proj: Dense
    nheads: int = field(static=True)

    def __init__(
        self,
        dims: int | tuple,
        *,
        nheads: int = 8,
        bias: bool = False,
        init: Callable = glorot_uniform,
        dropout_prob: float = 0.0,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        q_in, k_in, v_in, qk, v, out = _normalise_dims(dims)
        if not isinstance(nheads, int) or nheads < 1:
            raise ValueError(f"MultiHeadAttention: nheads must be a positive int, got {nheads!r}")
        for name, size in (("qk", qk), ("v", v)):
            if size % nheads:
                raise ValueError(
                    f"MultiHeadAttention: the {name} size {size} must be divisible by nheads={nheads}"
                )
        if not isinstance(bias, bool):
            raise TypeError(f"MultiHeadAttention: bias must be True or False, got {bias!r}")
        keys = jax.random.split(as_key(key), 5)
        kw = dict(bias=bias, init=init, dtype=dtype)
        self.q_proj = Dense(q_in, qk, key=keys[0], **kw)
        self.k_proj = Dense(k_in, qk, key=keys[1], **kw)
        self.v_proj = Dense(v_in, v, key=keys[2], **kw)
        self.attn_drop = Dropout(dropout_prob, key=keys[4]) if dropout_prob else None
        self.out_proj = Dense(v, out, key=keys[3], **kw)
        self.nheads = nheads

    def __call__(
        self, q: Any, k: Any = None, v: Any = None, bias: Any = None, *, mask: Any = None
    ) -> tuple[jax.Array, jax.Array]:
        k = q if k is None else k
        v = k if v is None else v
        q, k, v = (x if is_array(x) or isinstance(x, Tracer) else jnp.asarray(x) for x in (q, k, v))
        self._check_inputs(q, k, v)
        h = self.nheads
        qh = _split_heads(self.q_proj(q), h)  # (..., h, q_len, d)
        kh = _split_heads(self.k_proj(k), h)  # (..., h, kv_len, d)
        vh = _split_heads(self.v_proj(v), h)  # (..., h, kv_len, dv)
        logits = jnp.einsum("...qd,...kd->...qk", qh / math.sqrt(qh.shape[-1]), kh)
        if bias is not None:
            logits = logits + self._fit("bias", bias, logits.shape)
        if mask is not None:
            mask = self._fit("mask", mask, logits.shape)
            if mask.dtype != jnp.bool_:
                raise TypeError(
                    f"{self._repr_head()}: mask must be boolean (True = attend), got {mask.dtype}; "
                    "use `mask.astype(bool)`, or pass additive values as `bias`."
                )
            logits = jnp.where(mask, logits, jnp.array(-jnp.inf, logits.dtype))
        scores = jax.nn.softmax(logits, axis=-1)
        if self.attn_drop is not None:
            scores = self.attn_drop(scores)
        o = jnp.swapaxes(jnp.einsum("...qk,...kd->...qd", scores, vh), -2, -3)  # (..., q_len, h, dv)
        return self.out_proj(o.reshape(*o.shape[:-2], -1)), scores

    def _check_inputs(self, q: jax.Array, k: jax.Array, v: jax.Array) -> None:
        sizes = [p.weight.shape[1] for p in (self.q_proj, self.k_proj, self.v_proj)]
        ok = all(x.ndim >= 2 and x.shape[-1] == n for x, n in zip((q, k, v), sizes))
        ok = ok and q.shape[:-2] == k.shape[:-2] == v.shape[:-2] and k.shape[-2] == v.shape[-2]
        if not ok:
            raise ValueError(
                f"{self._repr_head()} expects q (batch..., q_len, {sizes[0]}), k (batch..., kv_len, "
                f"{sizes[1]}) and v (batch..., kv_len, {sizes[2]}) with the same batch axes and kv_len; "
                f"got q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}."
            )

    def _fit(self, name: str, a: Any, shape: tuple[int, ...]) -> jax.Array:
        a = a if is_array(a) or isinstance(a, Tracer) else jnp.asarray(a)
        try:
            fits = jnp.broadcast_shapes(a.shape, shape) == tuple(shape)
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{self._repr_head()}: {name} of shape {tuple(a.shape)} does not broadcast to the "
                f"attention scores' shape {tuple(shape)} (batch..., nheads, q_len, kv_len)."
            )
        return a

    def _repr_head(self) -> str:
        (qk, q_in), (_, k_in), (v, v_in) = (p.weight.shape for p in (self.q_proj, self.k_proj, self.v_proj))
        out = self.out_proj.weight.shape[0]
        if q_in == k_in == v_in == qk == v == out:
            s = f"{q_in}"
        elif q_in == k_in == v_in:
            s = f"{q_in} => {qk if qk == v else (qk, v)} => {out}"
        else:
            s = f"{(q_in, k_in, v_in)} => {(qk, v)} => {out}"
        s += f", nheads={self.nheads}"
        if self.q_proj.bias is not None:
            s += ", bias=True"
        if self.attn_drop is not None:
            s += f", dropout_prob={self.attn_drop.p:g}"
        return f"MultiHeadAttention({s})"
