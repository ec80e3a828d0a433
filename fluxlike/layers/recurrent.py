"""Recurrent layers, with Flux 0.15's interface.

A cell computes one time step, `cell(x, state) -> (output, new_state)`, on
`x` of shape (batch, in) or (in,); its state starts at zeros when omitted.
A sequence layer (`RNN`, `LSTM`, `GRU`, `GRUv3`, or `Recurrence` around any
cell) runs its cell over the time axis of (batch, time, in) with
`jax.lax.scan` and returns every output, (batch, time, out). This is Flux's
(in, time, batch) read in row-major order.

Weights follow Flux: `Wi` (gates·out, in), `Wh` (gates·out, out) and one
`bias` (gates·out,), with the gates stacked in Flux's order, which is also
PyTorch's: LSTM (input, forget, cell, output), GRU (reset, update, new).
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import jax
import jax.numpy as jnp

from .._keys import as_key
from ..activations import sigmoid, tanh
from ..init import glorot_uniform
from ..module import Module, field
from ._common import act_name, make_bias, match_dtype

__all__ = [
    "RNNCell", "LSTMCell", "GRUCell", "GRUv3Cell",
    "RNN", "LSTM", "GRU", "GRUv3", "Recurrence", "initialstates",
]


# ---------------------------------------------------------------------------
# construction and checks shared by the cells


def _sizes(name: str, in_: Any, out: Any) -> None:
    ok = lambda n: isinstance(n, int) and not isinstance(n, bool) and n >= 1
    if not (ok(in_) and ok(out)):
        raise ValueError(f"{name}(in, out): sizes must be positive ints, got in={in_!r}, out={out!r}")


def _weights(
    name: str, in_: int, out: int, gates: int, init_kernel: Callable, init_recurrent_kernel: Callable,
    bias: bool | jax.Array, key: Any, dtype: Any,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Flux's `Wi` (gates*out, in), `Wh` (gates*out, out) and bias (gates*out,) or None."""
    _sizes(name, in_, out)
    k1, k2 = jax.random.split(as_key(key))
    Wi = init_kernel(k1, (gates * out, in_), dtype)
    Wh = init_recurrent_kernel(k2, (gates * out, out), dtype)
    return Wi, Wh, make_bias(name, bias, (gates * out,), dtype)


def _in_out(cell: Module) -> tuple[int, int]:
    return cell.Wi.shape[1], cell.Wh.shape[1]


def _check_input(cell: Module, x: Any) -> jax.Array:
    """`x` as (batch, in) or (in,) in the cell's dtype, or a clear error."""
    in_, _ = _in_out(cell)
    x = match_dtype(type(cell).__name__, x, cell.Wi.dtype)
    if x.ndim not in (1, 2) or x.shape[-1] != in_:
        seq = type(cell).__name__.removesuffix("Cell")
        raise ValueError(
            f"{cell._repr_head()} takes one time step, (batch, {in_}) or ({in_},); got an input of "
            f"shape {tuple(x.shape)}. For a whole sequence (batch, time, {in_}) use {seq}."
        )
    return x


def _check_h(cell: Module, h: Any, x: jax.Array, what: str = "state") -> jax.Array:
    """One state array, (out,) or (batch, out), in the cell's dtype; an unbatched
    one is shared by the batch (broadcasting, as in Flux)."""
    _, out = _in_out(cell)
    h = jnp.asarray(h, cell.Wh.dtype)
    if h.ndim not in (1, 2) or h.shape[-1] != out or (h.ndim == x.ndim == 2 and h.shape[0] != x.shape[0]):
        want = f"({out},)" + ("" if x.ndim == 1 else f" or ({x.shape[0]}, {out})")
        raise ValueError(
            f"{cell._repr_head()}: the {what} must have shape {want} for an input of shape "
            f"{tuple(x.shape)}; got {tuple(h.shape)}."
        )
    return h


def _proj_x(cell: Module, x: jax.Array, n: int) -> list[jax.Array]:
    """`x Wiᵀ + bias`, split into its `n` gates."""
    gx = x @ cell.Wi.T
    if cell.bias is not None:
        gx = gx + cell.bias
    return jnp.split(gx, n, axis=-1)


def _proj_h(cell: Module, h: jax.Array, n: int) -> list[jax.Array]:
    """`h Whᵀ`, split into its `n` gates."""
    return jnp.split(h @ cell.Wh.T, n, axis=-1)


def _head(name: str, cell: Module, extra: str = "") -> str:
    in_, out = _in_out(cell)
    s = f"{name}({in_} => {out}{extra}"
    if cell.bias is None:
        s += ", bias=False"
    return s + ")"


# ---------------------------------------------------------------------------
# cells


class _Cell(Module):
    """The fields shared by the cells: `Wi` (gates·out, in), `Wh` (gates·out, out)
    and `bias` (gates·out,) or None; and the zero state `h` (out,) of the
    cells whose state is one array."""

    Wi: jax.Array
    Wh: jax.Array
    bias: jax.Array | None

    def _initialstates(self) -> Any:
        return jnp.zeros(self.Wh.shape[1], self.Wh.dtype)

    def _repr_head(self) -> str:
        return _head(type(self).__name__, self)


class RNNCell(_Cell):
    """The plain recurrent cell, `h' = activation(x Wiᵀ + h Whᵀ + bias)`.

    Args:
        in_: input features.
        out: hidden (and output) features.
        activation: applied elementwise (default tanh).
        init_kernel: `Wi`'s initialiser, `init(key, (out, in_), dtype)`.
        init_recurrent_kernel: `Wh`'s initialiser, `init(key, (out, out), dtype)`.
        bias: True for a zero-initialised bias, False for none, or an array.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    Call it as `cell(x, h)` with `x` of shape (batch, in_) or (in_,) and `h`
    of shape (batch, out) or (out,), zeros when omitted; it returns `(h', h')`.
    PyTorch's `nn.RNN` has two biases: `bias = bias_ih + bias_hh`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> cell = fl.RNNCell(3, 5)
        >>> cell
        RNNCell(3 => 5, tanh)  # 45 parameters
        >>> y, h = cell(jnp.ones((4, 3)))
        >>> y.shape, bool((y == h).all())
        ((4, 5), True)
    """

    activation: Callable = field(static=True)

    def __init__(
        self,
        in_: int,
        out: int,
        activation: Callable = tanh,
        *,
        init_kernel: Callable = glorot_uniform,
        init_recurrent_kernel: Callable = glorot_uniform,
        bias: bool | jax.Array = True,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        if not callable(activation):
            raise TypeError(f"RNNCell: activation must be a function, got {activation!r}")
        self.Wi, self.Wh, self.bias = _weights(
            "RNNCell", in_, out, 1, init_kernel, init_recurrent_kernel, bias, key, dtype)
        self.activation = activation

    def __call__(self, x: jax.Array, state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        x = _check_input(self, x)
        h = _check_h(self, initialstates(self) if state is None else state, x)
        (gx,), (gh,) = _proj_x(self, x, 1), _proj_h(self, h, 1)
        h = self.activation(gx + gh)
        return h, h

    def _repr_head(self) -> str:
        return _head("RNNCell", self, f", {act_name(self.activation)}")


class LSTMCell(_Cell):
    """The long short-term memory cell; its state is the pair `(h, c)`.

    `i, f, g, o` are the four quarters of `x Wiᵀ + h Whᵀ + bias` (Flux's
    and PyTorch's order: input, forget, cell, output gates), and
    `c' = σ(f) c + σ(i) tanh(g)`, `h' = σ(o) tanh(c')`.

    Args:
        in_: input features.
        out: hidden (and output) features.
        init_kernel: `Wi`'s initialiser, `init(key, (4 * out, in_), dtype)`.
        init_recurrent_kernel: `Wh`'s initialiser, `init(key, (4 * out, out), dtype)`.
        bias: True for a zero-initialised bias, False for none, or an array.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    Call it as `cell(x, (h, c))` with `x` of shape (batch, in_) or (in_,),
    zeros when the state is omitted; it returns `(h', (h', c'))`. From
    PyTorch's `nn.LSTM`: `Wi = weight_ih_l0`, `Wh = weight_hh_l0`,
    `bias = bias_ih_l0 + bias_hh_l0`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> cell = fl.LSTMCell(3, 5)
        >>> cell
        LSTMCell(3 => 5)  # 180 parameters
        >>> y, (h, c) = cell(jnp.ones((4, 3)))
        >>> y.shape, c.shape
        ((4, 5), (4, 5))
    """


    def __init__(
        self,
        in_: int,
        out: int,
        *,
        init_kernel: Callable = glorot_uniform,
        init_recurrent_kernel: Callable = glorot_uniform,
        bias: bool | jax.Array = True,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        self.Wi, self.Wh, self.bias = _weights(
            "LSTMCell", in_, out, 4, init_kernel, init_recurrent_kernel, bias, key, dtype)

    def __call__(
        self, x: jax.Array, state: tuple[jax.Array, jax.Array] | None = None
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        x = _check_input(self, x)
        if state is None:
            state = initialstates(self)
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise TypeError(
                f"{self._repr_head()}: the state is the pair (h, c) of hidden and cell states, "
                f"got {type(state).__name__}"
            )
        h, c = _check_h(self, state[0], x, "hidden state h"), _check_h(self, state[1], x, "cell state c")
        (gi, gf, gg, go), (hi, hf, hg, ho) = _proj_x(self, x, 4), _proj_h(self, h, 4)
        c = sigmoid(gf + hf) * c + sigmoid(gi + hi) * jnp.tanh(gg + hg)
        h = sigmoid(go + ho) * jnp.tanh(c)
        return h, (h, c)

    def _initialstates(self) -> tuple[jax.Array, jax.Array]:
        z = jnp.zeros(self.Wh.shape[1], self.Wh.dtype)
        return z, z


class GRUCell(_Cell):
    """The gated recurrent unit cell (v1 of Cho et al. 2014, as Flux and PyTorch).

    With `r, z, n` the input and recurrent projections split in thirds
    (Flux's and PyTorch's order: reset, update, new):
    `r = σ(xr + hr)`, `z = σ(xz + hz)`, `h̃ = tanh(xn + r ⊙ hn)`,
    `h' = (1 - z) h̃ + z h`; the bias is added to the input projections.

    Args:
        in_: input features.
        out: hidden (and output) features.
        init_kernel: `Wi`'s initialiser, `init(key, (3 * out, in_), dtype)`.
        init_recurrent_kernel: `Wh`'s initialiser, `init(key, (3 * out, out), dtype)`.
        bias: True for a zero-initialised bias, False for none, or an array.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    Call it as `cell(x, h)`, zeros when `h` is omitted; it returns `(h', h')`.
    PyTorch's `nn.GRU` also has `bias_hh`, whose last third sits inside
    `r ⊙ (...)`; it matches this cell when that third is zero, with
    `bias = bias_ih + bias_hh`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> cell = fl.GRUCell(3, 5)
        >>> cell
        GRUCell(3 => 5)  # 135 parameters
        >>> cell(jnp.ones(3))[0].shape
        (5,)
    """


    def __init__(
        self,
        in_: int,
        out: int,
        *,
        init_kernel: Callable = glorot_uniform,
        init_recurrent_kernel: Callable = glorot_uniform,
        bias: bool | jax.Array = True,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        self.Wi, self.Wh, self.bias = _weights(
            "GRUCell", in_, out, 3, init_kernel, init_recurrent_kernel, bias, key, dtype)

    def __call__(self, x: jax.Array, state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        x = _check_input(self, x)
        h = _check_h(self, initialstates(self) if state is None else state, x)
        (xr, xz, xn), (hr, hz, hn) = _proj_x(self, x, 3), _proj_h(self, h, 3)
        r = sigmoid(xr + hr)
        z = sigmoid(xz + hz)
        h = (1 - z) * jnp.tanh(xn + r * hn) + z * h
        return h, h


class GRUv3Cell(_Cell):
    """The gated recurrent unit cell of v3 of Cho et al. (2014): the reset
    gate acts on the state before its projection.

    `r = σ(xr + hr)`, `z = σ(xz + hz)`, `h̃ = tanh(xn + (r ⊙ h) Wh_hᵀ)`,
    `h' = (1 - z) h̃ + z h`, with `xr, xz, xn` the thirds of `x Wiᵀ + bias`
    and `hr, hz` the halves of `h Whᵀ`.

    Args:
        in_: input features.
        out: hidden (and output) features.
        init_kernel: `Wi`'s initialiser, `init(key, (3 * out, in_), dtype)`.
        init_recurrent_kernel: the initialiser of `Wh` (2 * out, out) and `Wh_h` (out, out).
        bias: True for a zero-initialised bias, False for none, or an array.
        key: a PRNG key or int seed; None draws from `fl.seed`'s stream.
        dtype: the parameters' dtype.

    Flux's `Wh` has a third block that its code never reads; here `Wh`
    holds only the reset and update blocks.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> cell = fl.GRUv3Cell(3, 5)
        >>> cell
        GRUv3Cell(3 => 5)  # 135 parameters
        >>> cell(jnp.ones((2, 3)))[0].shape
        (2, 5)
    """

    Wh_h: jax.Array

    def __init__(
        self,
        in_: int,
        out: int,
        *,
        init_kernel: Callable = glorot_uniform,
        init_recurrent_kernel: Callable = glorot_uniform,
        bias: bool | jax.Array = True,
        key: Any = None,
        dtype: Any = jnp.float32,
    ) -> None:
        _sizes("GRUv3Cell", in_, out)
        k1, k2 = jax.random.split(as_key(key))
        self.Wi, _, self.bias = _weights(
            "GRUv3Cell", in_, out, 3, init_kernel, init_recurrent_kernel, bias, k1, dtype)
        k2, k3 = jax.random.split(k2)
        self.Wh = init_recurrent_kernel(k2, (2 * out, out), dtype)
        self.Wh_h = init_recurrent_kernel(k3, (out, out), dtype)

    def __call__(self, x: jax.Array, state: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        x = _check_input(self, x)
        h = _check_h(self, initialstates(self) if state is None else state, x)
        (xr, xz, xn), (hr, hz) = _proj_x(self, x, 3), _proj_h(self, h, 2)
        r = sigmoid(xr + hr)
        z = sigmoid(xz + hz)
        h = (1 - z) * jnp.tanh(xn + (r * h) @ self.Wh_h.T) + z * h
        return h, h


def initialstates(layer: Module) -> Any:
    """The zero state a recurrent cell or sequence layer starts from, as Flux's
    `initialstates`: `h` of shape (out,), or `(h, c)` for an LSTM.

    Args:
        layer: a cell (`RNNCell`, `LSTMCell`, ...) or a sequence layer.

    Examples:
        >>> import fluxlike as fl
        >>> h, c = fl.initialstates(fl.LSTM(3, 5))
        >>> h
        Array([0., 0., 0., 0., 0.], dtype=float32)
    """
    if isinstance(layer, _Scan):
        layer = layer.cell
    init = getattr(layer, "_initialstates", None)
    if init is None:
        raise TypeError(
            f"initialstates: {type(layer).__name__} is not a recurrent cell; a cell used in "
            "Recurrence defines `_initialstates(self)` returning its zero state"
        )
    return init()


# ---------------------------------------------------------------------------
# sequence layers


class _Scan(Module):
    """The fields and sequence forward pass shared by Recurrence, RNN, LSTM,
    GRU, GRUv3; and the constructor and printing of those that wrap one kind
    of cell, `_cell_type`: `Layer(in, out, **cell_kwargs)` or `Layer(cell)`."""

    cell: Module
    return_state: bool = field(static=True)

    _cell_type: ClassVar[type]

    def __init__(self, in_: int | Module, out: int | None = None, *, return_state: bool = False,
                 **cell_kwargs: Any) -> None:
        _seq_init(self, in_, out, return_state, (), cell_kwargs)

    def _repr_head(self) -> str:
        head = self.cell._repr_head()
        s = type(self).__name__ + head[head.index("("):]
        return s[:-1] + ", return_state=True)" if self.return_state else s

    def __call__(self, x: jax.Array, state: Any = None) -> Any:
        cell = self.cell
        in_ = cell.Wi.shape[1] if hasattr(cell, "Wi") else None
        x = match_dtype(type(self).__name__, x, _dtype(cell))
        if x.ndim not in (2, 3) or (in_ is not None and x.shape[-1] != in_):
            n = "in" if in_ is None else in_
            raise ValueError(
                f"{self._repr_head()} takes a sequence (batch, time, {n}) or (time, {n}); got an "
                f"input of shape {tuple(x.shape)}. For one time step (batch, {n}) call its cell, "
                f"`layer.cell(x_t, state)`."
            )
        if state is None:
            if not hasattr(cell, "_initialstates"):
                raise TypeError(
                    f"{self._repr_head()}: {type(cell).__name__} has no zero state to start from; "
                    "pass one, `layer(x, state)`, or give the cell an `_initialstates(self)` method")
            state = initialstates(cell)
        dtype = _dtype(cell)
        batch = (x.shape[0],) if x.ndim == 3 else ()

        def batched(s: Any) -> jax.Array:
            # a (features,) state is shared by the batch: give it the batch axis scan's carry needs
            s = jnp.asarray(s, dtype)
            if not batch and s.ndim != 1:
                raise ValueError(
                    f"{self._repr_head()}: a single sequence {tuple(x.shape)} takes a state without "
                    f"a batch axis, got one of shape {tuple(s.shape)}")
            return jnp.broadcast_to(s, batch + s.shape) if s.ndim == 1 else s

        state = jax.tree.map(batched, state)
        xs = jnp.swapaxes(x, 0, 1) if x.ndim == 3 else x  # time first, for scan

        def step(s: Any, x_t: jax.Array) -> tuple[Any, jax.Array]:
            y_t, s = cell(x_t, s)
            return s, y_t

        final, ys = jax.lax.scan(step, state, xs)
        ys = jnp.swapaxes(ys, 0, 1) if x.ndim == 3 else ys
        return (ys, final) if self.return_state else ys


def _dtype(cell: Module) -> Any:
    """The float dtype of a cell's parameters (float32 when it has none)."""
    for leaf in jax.tree.leaves(cell):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.dtype
    return jnp.float32


def _seq_init(layer: _Scan, in_: Any, out: Any, return_state: bool, args: tuple, kw: dict) -> None:
    """Set `layer.cell` from a cell, or build one from `in_, out, *args, **kw`."""
    name, cell_type = type(layer).__name__, layer._cell_type
    if isinstance(in_, cell_type):
        if out is not None or args or kw:
            raise TypeError(
                f"{name}(cell, return_state=...) takes a built cell; the other arguments belong "
                f"to {cell_type.__name__}(in, out, ...)")
        layer.cell = in_
    elif isinstance(in_, Module):
        raise TypeError(
            f"{name} wraps a {cell_type.__name__}, got {type(in_).__name__}; use Recurrence(cell) for other cells")
    else:
        layer.cell = cell_type(in_, out, *args, **kw)
    layer.return_state = bool(return_state)


class RNN(_Scan):
    """The plain recurrent layer: an `RNNCell` run over a sequence.

    Args:
        in_: input features, or an `RNNCell` to wrap.
        out: hidden (and output) features.
        activation: the cell's activation (default tanh).
        return_state: also return the final state, `(outputs, h)`.
        **cell_kwargs: `init_kernel`, `init_recurrent_kernel`, `bias`, `key`,
            `dtype`, as for `RNNCell`.

    Call it as `rnn(x)` or `rnn(x, h)` with `x` of shape (batch, time, in)
    (Flux's (in, time, batch) in row-major order) or (time, in); it returns
    every step's output, (batch, time, out) or (time, out). The initial
    state is zeros when omitted; one of shape (out,) is shared by the batch.
    The steps run in `jax.lax.scan`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> rnn = fl.RNN(3, 5)
        >>> rnn
        RNN(3 => 5, tanh)  # 45 parameters
        >>> rnn(jnp.ones((4, 7, 3))).shape  # (batch, time, out)
        (4, 7, 5)
    """

    _cell_type = RNNCell

    def __init__(self, in_: int | RNNCell, out: int | None = None, activation: Callable = tanh, *,
                 return_state: bool = False, **cell_kwargs: Any) -> None:
        args = () if isinstance(in_, RNNCell) and activation is tanh else (activation,)
        _seq_init(self, in_, out, return_state, args, cell_kwargs)


class LSTM(_Scan):
    """The long short-term memory layer: an `LSTMCell` run over a sequence.

    Args:
        in_: input features, or an `LSTMCell` to wrap.
        out: hidden (and output) features.
        return_state: also return the final state, `(outputs, (h, c))`.
        **cell_kwargs: `init_kernel`, `init_recurrent_kernel`, `bias`, `key`,
            `dtype`, as for `LSTMCell`.

    Call it as `lstm(x)` or `lstm(x, (h, c))` with `x` of shape
    (batch, time, in) (Flux's (in, time, batch) in row-major order) or
    (time, in); it returns every step's `h`, (batch, time, out) or
    (time, out). The initial state is zeros when omitted; states of shape
    (out,) are shared by the batch. The steps run in `jax.lax.scan`.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> lstm = fl.LSTM(3, 5, return_state=True)
        >>> lstm
        LSTM(3 => 5, return_state=True)  # 180 parameters
        >>> y, (h, c) = lstm(jnp.ones((2, 7, 3)))
        >>> y.shape, h.shape, bool((y[:, -1] == h).all())
        ((2, 7, 5), (2, 5), True)
    """

    _cell_type = LSTMCell


class GRU(_Scan):
    """The gated recurrent unit layer: a `GRUCell` run over a sequence.

    Args:
        in_: input features, or a `GRUCell` to wrap.
        out: hidden (and output) features.
        return_state: also return the final state, `(outputs, h)`.
        **cell_kwargs: `init_kernel`, `init_recurrent_kernel`, `bias`, `key`,
            `dtype`, as for `GRUCell`.

    Call it as `gru(x)` or `gru(x, h)` with `x` of shape (batch, time, in)
    or (time, in); it returns every step's output, (batch, time, out) or
    (time, out), starting from zeros when `h` is omitted.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> gru = fl.GRU(3, 5)
        >>> gru
        GRU(3 => 5)  # 135 parameters
        >>> gru(jnp.ones((7, 3))).shape  # one sequence (time, in)
        (7, 5)
    """

    _cell_type = GRUCell


class GRUv3(_Scan):
    """The v3 gated recurrent unit layer: a `GRUv3Cell` run over a sequence.

    Args:
        in_: input features, or a `GRUv3Cell` to wrap.
        out: hidden (and output) features.
        return_state: also return the final state, `(outputs, h)`.
        **cell_kwargs: `init_kernel`, `init_recurrent_kernel`, `bias`, `key`,
            `dtype`, as for `GRUv3Cell`.

    Call it as `gru(x)` or `gru(x, h)` with `x` of shape (batch, time, in)
    or (time, in); it returns every step's output.

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> fl.GRUv3(3, 5)(jnp.ones((4, 7, 3))).shape
        (4, 7, 5)
    """

    _cell_type = GRUv3Cell


class Recurrence(_Scan):
    """Run any recurrent cell over a sequence, as Flux's `Recurrence`.

    Args:
        cell: a Module called as `cell(x_t, state) -> (y_t, state)`. Without
            an initial state in the call, it must have an `_initialstates()`
            method returning the zero state (every fluxlike cell has one).
        return_state: also return the final state, `(outputs, state)`.

    The input is (batch, time, in) or (time, in); the outputs `y_t` are
    stacked on axis 1 (axis 0 for a single sequence).

    Examples:
        >>> import jax.numpy as jnp, fluxlike as fl
        >>> r = fl.Recurrence(fl.RNNCell(3, 5))
        >>> r
        Recurrence(RNNCell(3 => 5, tanh))  # 45 parameters
        >>> r(jnp.ones((4, 7, 3))).shape
        (4, 7, 5)
    """

    def __init__(self, cell: Module, *, return_state: bool = False) -> None:
        if not isinstance(cell, Module):
            raise TypeError(
                f"Recurrence(cell): cell must be a recurrent cell such as fl.LSTMCell(3, 5), got {cell!r}")
        self.cell = cell
        self.return_state = bool(return_state)

    def _repr_head(self) -> str:
        return "Recurrence(…)"

    def _children(self) -> list[tuple[Any, Module]]:
        return [(0, self.cell)]
