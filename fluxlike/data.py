"""Data handling: MLUtils.jl's `DataLoader` and OneHotArrays.jl's one-hot
encoding, 0-based, with the batch on axis 0 and classes on the last axis.

`DataLoader` batches an array, or a tuple / NamedTuple / dict of arrays that
share axis 0, with one fancy index per array per batch; it also batches a
list of samples (`list(zip(X, Y))`) with MLUtils' `collate` rules.
`stacked()` hands a compiled training loop a whole epoch at once.
`onehotbatch` / `onehot` / `onecold` encode and decode labels.
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Callable, Hashable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["DataLoader", "onehotbatch", "onehot", "onecold"]

_DEFAULT_SEED = 0  # the seed of the generator used when `rng=None`


# ---------------------------------------------------------------------------
# Containers of arrays: flatten to (path, array) pairs and rebuild.


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _is_container(x: Any) -> bool:
    return isinstance(x, (tuple, dict))


def _flatten(data: Any, path: str = "data") -> list[tuple[str, Any]]:
    """`(path, leaf)` pairs of a nest of tuples / NamedTuples / dicts, in order."""
    if _is_namedtuple(data):
        return [p for f, v in zip(data._fields, data) for p in _flatten(v, f"{path}.{f}")]
    if isinstance(data, tuple):
        return [p for i, v in enumerate(data) for p in _flatten(v, f"{path}[{i}]")]
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in _flatten(v, f"{path}[{k!r}]")]
    return [(path, data)]


def _unflatten(like: Any, leaves: Iterator[Any]) -> Any:
    """Rebuild `like`'s container structure around the next items of `leaves`."""
    if _is_namedtuple(like):
        return type(like)(*(_unflatten(v, leaves) for v in like))
    if isinstance(like, tuple):
        return tuple(_unflatten(v, leaves) for v in like)
    if isinstance(like, dict):
        return {k: _unflatten(v, leaves) for k, v in like.items()}
    return next(leaves)


@jax.jit
def _take_rows(leaves: tuple[jax.Array, ...], idx: jax.Array) -> tuple[jax.Array, ...]:
    # One dispatch gathers a batch from every jax array (eager indexing costs
    # about ten times as much per array).
    return tuple(jnp.take(x, idx, axis=0, mode="clip") for x in leaves)


def _batch(items: list[Any], where: str = "collate=True") -> Any:
    """MLUtils' `batch`: stack samples on a new axis 0, through tuples and dicts."""
    first = items[0]
    if _is_container(first):
        keys = first._fields if _is_namedtuple(first) else (
            list(first) if isinstance(first, dict) else range(len(first)))
        for item in items:
            same = (type(item) is type(first) and len(item) == len(first)
                    and (not isinstance(first, dict) or item.keys() == first.keys()))
            if not same:
                raise ValueError(
                    f"{where}: cannot batch samples of different structure: {_describe(first)} "
                    f"and {_describe(item)}. Give every sample the same tuple/dict layout.")
        if isinstance(first, dict):
            return {k: _batch([item[k] for item in items], where) for k in keys}
        parts = (_batch([item[i] for item in items], where) for i in range(len(first)))
        return type(first)(*parts) if _is_namedtuple(first) else tuple(parts)
    try:
        if all(isinstance(x, jax.Array) for x in items):
            return jnp.stack(items)
        return np.stack([np.asarray(x) for x in items])
    except ValueError as e:
        shapes = sorted({np.shape(x) for x in items})
        raise ValueError(f"{where}: cannot stack samples of shapes {shapes}: {e}") from None


def _describe(data: Any) -> str:
    """Shapes of a container of arrays, for reprs and errors: `((60000, 28, 28), (60000, 10))`."""
    if _is_namedtuple(data):
        inner = ", ".join(f"{f}={_describe(v)}" for f, v in zip(data._fields, data))
        return f"{type(data).__name__}({inner})"
    if isinstance(data, tuple):
        inner = ", ".join(_describe(v) for v in data)
        return f"({inner}{',' if len(data) == 1 else ''})"
    if isinstance(data, dict):
        return "{" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in data.items()) + "}"
    if isinstance(data, (np.ndarray, jax.Array)):
        return str(tuple(data.shape))
    if isinstance(data, Sequence) or hasattr(data, "__getitem__"):
        try:
            return f"<{type(data).__name__} of {len(data)} samples>"
        except TypeError:
            pass
    return f"<{type(data).__name__}>"


def _check_arrays(data: Any) -> tuple[list[Any], int]:
    """The leaves of a container of arrays and their shared length along axis 0."""
    pairs = _flatten(data)
    if not pairs:
        raise ValueError(f"DataLoader: data {_describe(data)} holds no arrays; pass at least one.")
    for path, x in pairs:
        if not isinstance(x, (np.ndarray, jax.Array)):
            raise TypeError(
                f"DataLoader: {path} is a {type(x).__name__}, not an array. Every entry must be "
                f"a numpy or jax array with one observation per row of axis 0; convert it with "
                f"np.asarray({path}), or pass a list of samples (list(zip(X, Y))) instead.")
        if x.ndim == 0:
            raise ValueError(
                f"DataLoader: {path} is a 0-d array and has no axis 0 to batch; give it "
                f"one row per observation, e.g. np.full(n, value).")
    lengths = {path: x.shape[0] for path, x in pairs}
    if len(set(lengths.values())) > 1:
        listing = ", ".join(f"{p} has {k}" for p, k in lengths.items())
        raise ValueError(
            f"DataLoader: the arrays in data must share axis 0 (one observation per row), "
            f"but {listing} observations. Slice them to a common length.")
    return [x for _, x in pairs], next(iter(lengths.values()))


def _observations(data: Any) -> tuple[list[Any] | None, int]:
    """The arrays of `data` (None for a sequence of samples) and the number of observations."""
    if hasattr(data, "__array__") and not isinstance(data, (np.ndarray, jax.Array)):
        raise TypeError(f"DataLoader: data is a {type(data).__name__}; convert it with "
                        f"np.asarray(data) (or jnp.asarray) first.")
    if isinstance(data, (np.ndarray, jax.Array, tuple, dict)):
        leaves, n = _check_arrays(data)
    elif (isinstance(data, (str, bytes)) or not hasattr(data, "__len__")
          or not hasattr(data, "__getitem__")):
        raise TypeError(
            f"DataLoader: data must be an array, a tuple / NamedTuple / dict of arrays, or a "
            f"list of samples; got a {type(data).__name__}. Materialise iterators with "
            f"list(...), or stack samples with np.stack.")
    else:
        leaves, n = None, len(data)
    if n == 0:
        raise ValueError(f"DataLoader: data {_describe(data)} has no observations.")
    return leaves, n


def _check_options(batchsize: Any, shuffle: Any, partial: Any, collate: Any, rng: Any) -> None:
    """Reject option values MLUtils would not accept, or would silently ignore."""
    if (isinstance(batchsize, bool) or not isinstance(batchsize, (int, np.integer))
            or batchsize == 0):
        raise ValueError(
            f"DataLoader: batchsize must be a positive int, or -1 for single observations "
            f"(MLUtils' eachobs); got {batchsize!r}.")
    for name, flag in (("shuffle", shuffle), ("partial", partial)):
        if not isinstance(flag, (bool, np.bool_)):
            raise TypeError(f"DataLoader: {name} must be True or False, not {flag!r}.")
    if not (collate is None or isinstance(collate, bool) or callable(collate)):
        raise TypeError(
            f"DataLoader: collate must be None, True, False or a function of a list of "
            f"observations; got {collate!r}.")
    if batchsize < 0 and (collate is not None or not partial):
        raise ValueError(
            "DataLoader: collate and partial only apply to batches; with batchsize=-1 "
            "(single observations) leave them at their defaults.")
    if rng is not None and not shuffle:
        raise ValueError("DataLoader: rng is only used with shuffle=True; set shuffle=True "
                         "or drop rng.")


def _check_mesh(mesh: Any, batchsize: int, n: int, partial: bool, collate: Any, leaves: Any) -> Any:
    """`mesh`, checked: a jax Mesh whose device count divides every batch."""
    if mesh is None:
        return None
    from jax.sharding import Mesh

    if not isinstance(mesh, Mesh):
        raise TypeError(f"DataLoader: mesh must be a jax.sharding.Mesh (jax.make_mesh((8,), ('data',))), "
                        f"got {type(mesh).__name__}")
    if leaves is None or collate not in (None, True):
        raise TypeError("DataLoader: mesh= needs array data (a tuple/dict of arrays sharing axis 0), "
                        "whose batches are arrays to shard")
    size = mesh.size
    if batchsize < 0 or batchsize % size:
        raise ValueError(f"DataLoader: batchsize={batchsize} is the global batch, split over the mesh's {size} "
                         f"devices, which do not divide it; use a multiple of {size}")
    rest = n % batchsize
    if partial and rest and rest % size:
        raise ValueError(f"DataLoader: the last batch would hold {rest} of the {n} observations, which the "
                         f"mesh's {size} devices do not divide; pass partial=False to drop it, or a batchsize "
                         f"that leaves a multiple of {size}")
    return mesh


def _same_on_every_process(n: int, rng: Any) -> None:
    """Several processes: the data's length and the shuffle generator's state
    must agree everywhere (each process draws the order itself and reads its
    rows of it); otherwise an error on every process, not a hang later."""
    from jax.experimental import multihost_utils

    # A digest that is the same in every process (str hash() is salted per process).
    state = 0 if rng is None else zlib.crc32(repr(rng.bit_generator.state).encode())
    mine = np.asarray([n, state], np.int64)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, 2)
    if len(set(every[:, 0].tolist())) > 1:
        raise ValueError(f"DataLoader: the processes hold data of different lengths {every[:, 0].tolist()} "
                         f"(process {jax.process_index()}: {n}); with mesh=, every process passes the same "
                         "global data, and each reads only its own rows")
    if len(set(every[:, 1].tolist())) > 1:
        raise ValueError("DataLoader: the processes' shuffle generators differ, so they would draw different "
                         "orders; pass the same rng seed on every process")


def _check_rng(rng: Any) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(_DEFAULT_SEED)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)) and not isinstance(rng, bool):
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"DataLoader: rng must be a numpy Generator, an int seed or None, not "
        f"{type(rng).__name__}; e.g. rng=np.random.default_rng(1) or rng=1.")


# ---------------------------------------------------------------------------
# DataLoader


class DataLoader:
    """Iterate over `data` in mini-batches of `batchsize` observations, as MLUtils' `DataLoader`.

    Args:
      data: an array (numpy or jax), or a tuple / NamedTuple / dict (nesting
        allowed) of arrays sharing axis 0, the observation axis; or a
        sequence of samples (a list such as `list(zip(X, Y))`, or any object
        with `__len__` and `__getitem__`).
      batchsize: observations per batch. Negative (e.g. `-1`, MLUtils'
        `eachobs` default) yields single observations without a batch axis.
        Larger than the dataset: warns and uses the dataset size (MLUtils).
      shuffle: draw a new order of the observations at the start of every
        iteration (epoch) and of every `stacked()` call.
      partial: keep the last, smaller batch (`False` drops it), so
        `len(loader)` is `ceil(n / batchsize)`, or `n // batchsize`.
      collate: how a batch is built (MLUtils' rules). `None`: slice the data
        (arrays in, same container of arrays out; a list of samples gives a
        list of samples). `False`: a list of single observations.
        `True`: stack observations into arrays on a new axis 0, through
        tuples / NamedTuples / dicts (`[(x, y), ...] -> (X, Y)`). A callable:
        applied to the list of observations.
      rng: used only with `shuffle=True`: a numpy `Generator` (shared, it
        advances), an int seed, or `None` for a generator of this loader's own
        seeded with 0, so that runs are reproducible (`fl.seed` does not
        affect it).
      mesh: a `jax.sharding.Mesh`: `batchsize` is then the global batch, and
        every batch (and `stacked()`'s epoch, on its batch axis) comes out as
        a global array split over all the mesh's devices on the batch axis,
        for data-parallel or FSDP training (`fl.shard`). A batch size (or a
        partial last batch) the device count does not divide is an error.
        With several processes (`jax.distributed`), every process passes the
        same global data and `rng`; each reads only its own devices' rows.

    Batches keep the container type (a tuple comes out as a plain tuple, so
    `loss(m, *batch)` works). Numpy data gives numpy batches (host memory;
    JAX copies them to the device on use), jax data gives jax batches;
    either way a batch is a new array, never a view of `data`. Options that
    would have no effect (`rng` without `shuffle`; `collate` or `partial`
    with `batchsize=-1`) are errors, where MLUtils ignores them. `stacked()`
    hands a compiled loop a whole epoch at once.

    Examples:
      >>> import numpy as np
      >>> X = np.arange(10.0).reshape(5, 2); Y = np.arange(5)
      >>> loader = DataLoader((X, Y), batchsize=2)
      >>> loader
      DataLoader(((5, 2), (5,)), batchsize=2, shuffle=False)
      >>> len(loader), loader.nobs
      (3, 5)
      >>> [(x.shape, y.tolist()) for x, y in loader]
      [((2, 2), [0, 1]), ((2, 2), [2, 3]), ((1, 2), [4])]
      >>> [len(b) for b in DataLoader(list(zip(X, Y)), batchsize=2, partial=False)]
      [2, 2]
    """

    def __init__(self, data: Any, batchsize: int = 1, shuffle: bool = False,
                 partial: bool = True, collate: bool | Callable[[list], Any] | None = None,
                 rng: np.random.Generator | int | None = None, mesh: Any = None) -> None:
        _check_options(batchsize, shuffle, partial, collate, rng)
        self._leaves, n = _observations(data)
        if batchsize > n:
            warnings.warn(f"DataLoader: batchsize={batchsize} exceeds the {n} observations; "
                          f"using batchsize={n} (as MLUtils does).", stacklevel=2)
            batchsize = n
        self._mesh = _check_mesh(mesh, batchsize, n, partial, collate, self._leaves)
        self._data = data
        self._n = n
        self._batchsize = int(batchsize)
        self._shuffle = bool(shuffle)
        self._partial = bool(partial)
        self._collate = collate
        self._rng = _check_rng(rng) if shuffle else None
        self._samples = self._leaves is None
        self._jax = not self._samples and any(isinstance(x, jax.Array) for x in self._leaves)
        if self._mesh is not None and jax.process_count() > 1:
            _same_on_every_process(n, self._rng)

    data = property(lambda self: self._data, doc="The data given, unchanged.")
    batchsize = property(lambda self: self._batchsize, doc="Observations per batch (-1: single).")
    shuffle = property(lambda self: self._shuffle, doc="Whether each epoch reshuffles.")
    partial = property(lambda self: self._partial, doc="Whether the last, smaller batch is kept.")
    collate = property(lambda self: self._collate, doc="The collate option given.")
    rng = property(lambda self: self._rng, doc="The Generator that shuffles (None: no shuffle).")
    nobs = property(lambda self: self._n, doc="Number of observations in the dataset.")
    mesh = property(lambda self: self._mesh, doc="The mesh batches are sharded over (None: not sharded).")

    def __len__(self) -> int:
        if self._batchsize < 0:
            return self._n
        full, rest = divmod(self._n, self._batchsize)
        return full + (self._partial and rest > 0)

    def __repr__(self) -> str:
        extra = "" if self._partial else ", partial=False"
        if self._collate is not None:
            extra += f", collate={getattr(self._collate, '__name__', self._collate)}"
        return (f"DataLoader({_describe(self._data)}, batchsize={self._batchsize}, "
                f"shuffle={self._shuffle}{extra})")

    def __iter__(self) -> Iterator[Any]:
        # Draw the epoch's order now, not at the first next(), so that
        # `iter(loader)` and `stacked()` consume the generator identically.
        return self._batches(self._order())

    # -- internals ------------------------------------------------------------

    def _order(self) -> np.ndarray:
        """This epoch's order of the observations (advances the shuffle generator)."""
        if self._shuffle:
            return self._rng.permutation(self._n)
        return np.arange(self._n)

    def _index_batches(self, order: np.ndarray) -> Iterator[np.ndarray | int]:
        if self._batchsize < 0:
            yield from (int(i) for i in order)
            return
        bs, n = self._batchsize, len(order)
        stop = n if self._partial else (n // bs) * bs
        for start in range(0, stop, bs):
            yield order[start:start + bs]

    def _batches(self, order: np.ndarray) -> Iterator[Any]:
        for idx in self._index_batches(order):
            yield self._getbatch(idx) if self._mesh is None else self._global(idx)

    def _global(self, idx: np.ndarray) -> Any:
        """With a mesh: the rows `idx` (a batch, or batches stacked as (steps,
        batch)) as global arrays split over all the mesh's devices on the
        batch axis. Each process reads only the rows of its own devices."""
        from jax.sharding import NamedSharding, PartitionSpec

        lead = idx.ndim
        spec = PartitionSpec(*([None] * (lead - 1)), tuple(self._mesh.axis_names))
        sharding = NamedSharding(self._mesh, spec)

        def one(x: Any) -> jax.Array:
            def rows(index: tuple) -> np.ndarray:  # this device's part: its rows, then its slice of the rest
                take = idx[index[:lead]]
                got = np.asarray(x[take.reshape(-1)]).reshape(take.shape + tuple(x.shape[1:]))
                return got[(slice(None),) * lead + tuple(index[lead:])]
            return jax.make_array_from_callback(idx.shape + tuple(x.shape[1:]), sharding, rows)

        return _unflatten(self._data, (one(x) for x in self._leaves))

    def _rows(self, idx: np.ndarray | int) -> Any:
        """The data at `idx` (one fancy index per array), in data's container type."""
        # An int index gives numpy a view of one row: copy it, as fancy indexing does.
        on_host = (lambda x: x[idx].copy()) if isinstance(idx, int) else (lambda x: x[idx])
        if not self._jax:
            return _unflatten(self._data, map(on_host, self._leaves))
        on_device = tuple(x for x in self._leaves if isinstance(x, jax.Array))
        taken = iter(_take_rows(on_device, np.asarray(idx, np.int32)))
        return _unflatten(self._data, (next(taken) if isinstance(x, jax.Array) else on_host(x)
                                       for x in self._leaves))

    def _getobs(self, i: int) -> Any:
        return self._data[i] if self._samples else self._rows(i)

    def _getbatch(self, idx: np.ndarray | int) -> Any:
        if isinstance(idx, int):  # batchsize < 0: one observation
            return self._getobs(idx)
        if not self._samples and self._collate in (None, True):
            return self._rows(idx)  # what batch() of the observations would give, fast
        obs = [self._getobs(int(i)) for i in idx]
        if self._collate is None or self._collate is False:
            return obs
        return _batch(obs) if self._collate is True else self._collate(obs)

    # -- whole epochs -----------------------------------------------------------

    def stacked(self) -> tuple[Any, Any]:
        """One epoch as `(batches, remainder)`: every full batch stacked on a new axis 0.

        `batches` has data's container type with each array of shape
        `(nobs // batchsize, batchsize, ...)` (for `batchsize=-1`, `(nobs, ...)`), in
        this epoch's order, so `lax.scan` over it sees what iterating yields;
        `remainder` is the last, smaller batch, or None. Like starting an
        iteration, each call draws a new order when `shuffle=True`. With
        `shuffle=False` the arrays may be views of `data`: do not write into them.

        Examples:
          >>> import numpy as np
          >>> loader = DataLoader({"x": np.arange(7.0)}, batchsize=3)
          >>> batches, rest = loader.stacked()
          >>> batches["x"].shape, rest
          ((2, 3), {'x': array([6.])})
        """
        if self._batchsize > 0 and (self._collate is False
                                    or (self._samples and self._collate is None)):
            raise TypeError(
                f"DataLoader.stacked: this loader yields lists of observations ({self!r}); "
                f"stacking needs arrays. Use collate=True, or pass a tuple of arrays as data.")
        order = self._order()
        bs, n = self._batchsize, self._n
        full = n if bs < 0 else (n // bs) * bs
        if self._mesh is not None:
            rest = self._global(order[full:]) if self._partial and full < n else None
            return self._global(order[:full].reshape(full // bs, bs)), rest
        rest = self._getbatch(order[full:]) if self._partial and full < n else None
        if self._samples or self._collate not in (None, True):
            items = [self._getbatch(idx) for idx in self._index_batches(order[:full])]
            return _batch(items, "DataLoader.stacked"), rest
        if self._shuffle:
            batches = self._rows(order[:full])
        else:
            batches = _unflatten(self._data, (x[:full] for x in self._leaves))
        if bs > 0:
            batches = _unflatten(batches, (x.reshape(full // bs, bs, *x.shape[1:])
                                           for _, x in _flatten(batches)))
        return batches, rest


# ---------------------------------------------------------------------------
# One-hot encoding

_NO_DEFAULT: Any = object()  # no `default=`: unknown labels are an error


def _class_index(classes: Sequence[Hashable]) -> tuple[list, dict]:
    """The classes as a list and a dict from class to its 0-based position."""
    if isinstance(classes, (np.ndarray, jax.Array)):
        classes = np.asarray(classes).tolist()
    classes = list(classes)
    if not classes:
        raise ValueError("onehotbatch: classes is empty; pass the list of possible labels.")
    index: dict = {}
    for i, c in enumerate(classes):
        if index.setdefault(c, i) != i:
            raise ValueError(f"onehotbatch: class {c!r} appears twice in classes {classes}; "
                             f"each class must be listed once.")
    return classes, index


def _label_indices(labels: Any, classes: list, index: dict, default: Any) -> np.ndarray:
    """The 0-based class of every label (shape of labels), or a clear error."""
    if default is not _NO_DEFAULT and default not in index:
        raise ValueError(f"onehotbatch: default {default!r} is not in classes {classes}.")
    fallback = None if default is _NO_DEFAULT else index[default]

    def lookup(label: Any) -> int:
        i = index.get(label, fallback)
        if i is None:
            raise ValueError(
                f"onehotbatch: label {label!r} is not in classes {classes}; add it to classes, "
                f"or pass default=<a class> to map unknown labels to that class.")
        return i

    if isinstance(labels, (np.ndarray, jax.Array)):
        arr = np.asarray(labels)
        uniq, inverse = np.unique(arr.reshape(-1), return_inverse=True)
        found = np.array([lookup(u.item()) for u in uniq], dtype=np.int32)
        return found[inverse.reshape(-1)].reshape(arr.shape)
    return np.array([lookup(label) for label in labels], dtype=np.int32)


def _onehot_traced(labels: jax.Array, classes: list, index: dict, default: Any) -> jax.Array:
    try:
        values = jnp.asarray(classes)
    except TypeError:
        raise TypeError(f"onehotbatch: under jax.jit labels are traced numbers, so classes must "
                        f"be numbers too; got {classes}. Encode outside jit.") from None
    hot = labels[..., None] == values
    known = jnp.any(hot, axis=-1, keepdims=True)
    if default is _NO_DEFAULT:
        fill = jnp.full(len(classes), jnp.nan, jnp.float32)
    else:
        if default not in index:
            raise ValueError(f"onehotbatch: default {default!r} is not in classes {classes}.")
        fill = jax.nn.one_hot(index[default], len(classes), dtype=jnp.float32)
    return jnp.where(known, hot.astype(jnp.float32), fill)


def onehotbatch(labels: Any, classes: Sequence[Hashable],
                default: Hashable = _NO_DEFAULT) -> jax.Array:
    """Encode labels as one-hot rows, as Flux's `onehotbatch`, with the class axis last.

    Args:
      labels: a sequence or array of labels, of any hashable kind (ints,
        strings, ...); an array of shape `s` gives a result of shape
        `s + (len(classes),)`. A string is a sequence of characters, as in Flux.
      classes: the possible labels, in column order, each listed once.
      default: the class that labels not in `classes` are mapped to; without
        it an unknown label is an error naming it.

    Returns a float32 jax array (Flux returns a Bool `OneHotMatrix`; float32 is
    what losses want; `.astype(bool)` if needed). Under `jax.jit`, with traced
    numeric labels and numeric classes, an unknown label cannot raise: its row
    is NaN (or `default`'s class), so the loss turns non-finite.

    Examples:
      >>> onehotbatch(["b", "a", "b"], ["a", "b", "c"])
      Array([[0., 1., 0.],
             [1., 0., 0.],
             [0., 1., 0.]], dtype=float32)
      >>> onehotbatch([0, 7], range(3), default=2)
      Array([[1., 0., 0.],
             [0., 0., 1.]], dtype=float32)
    """
    classes, index = _class_index(classes)
    if isinstance(labels, jax.core.Tracer):
        return _onehot_traced(labels, classes, index, default)
    indices = _label_indices(labels, classes, index, default)
    return jax.nn.one_hot(indices, len(classes), dtype=jnp.float32)


def onehot(label: Hashable, classes: Sequence[Hashable],
           default: Hashable = _NO_DEFAULT) -> jax.Array:
    """Encode one label as a one-hot vector of shape `(len(classes),)`, as Flux's `onehot`.

    Args:
      label: one label (any hashable value, or a 0-d array).
      classes: the possible labels, each listed once.
      default: the class an unknown label maps to; without it, an error.

    Examples:
      >>> onehot("c", "abc")
      Array([0., 0., 1.], dtype=float32)
    """
    if isinstance(label, (np.ndarray, jax.Array)):
        return onehotbatch(label, classes, default)
    return onehotbatch([label], classes, default)[0]


def onecold(y: Any, labels: Sequence[Hashable] | None = None) -> Any:
    """Decode one-hot rows or scores by argmax over the last axis, as Flux's `onecold`.

    Args:
      y: scores or one-hot rows, classes on the last axis (numpy or jax).
      labels: the class names, one per entry of the last axis. Without them
        the result is 0-based indices: a jax array for jax `y` (also inside
        `jax.jit`), numpy for numpy `y`. With them: the label itself for a
        1-d `y`, else a numpy array of labels (computed on the host).

    Ties go to the first maximum; NaN scores are not checked.

    Examples:
      >>> import numpy as np
      >>> y = np.array([[0.1, 0.7, 0.2], [0.8, 0.1, 0.1]])
      >>> onecold(y)
      array([1, 0])
      >>> onecold(y, ["cat", "dog", "fish"])
      array(['dog', 'cat'], dtype='<U4')
      >>> onecold(onehot("b", "abc"), "abc")
      'b'
    """
    if not isinstance(y, jax.Array):
        y = np.asarray(y)
    if y.ndim == 0:
        raise ValueError("onecold: y is a scalar; it needs a class axis (the last axis).")
    if labels is None:
        return jnp.argmax(y, axis=-1) if isinstance(y, jax.Array) else np.argmax(y, axis=-1)
    labels = np.asarray(labels).tolist() if isinstance(labels, np.ndarray) else list(labels)
    if len(labels) != y.shape[-1]:
        raise ValueError(f"onecold: got {len(labels)} labels for y of shape {tuple(y.shape)}; "
                         f"they must match its last axis ({y.shape[-1]}).")
    try:
        indices = np.argmax(np.asarray(y), axis=-1)
    except jax.errors.TracerArrayConversionError:
        raise TypeError("onecold: labels are looked up on the host, which jax.jit cannot do; "
                        "under jit take indices, onecold(y), and map them after.") from None
    if y.ndim == 1:
        return labels[int(indices)]
    table = np.asarray(labels)
    if table.shape != (len(labels),):  # labels such as tuples: keep them whole
        table = np.empty(len(labels), dtype=object)
        table[:] = labels
    return table[indices]
