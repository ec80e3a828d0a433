"""safetensors files: written here, one array at a time, with a CRC-32 of the
data in the metadata; read through the `safetensors` package, which
validates the header, after checks that say in plain words what a file that
is not one is (empty, truncated, a pickle, a zip from `torch.save`, random
bytes).

The format (https://github.com/huggingface/safetensors): 8 bytes, the
little-endian length N of a JSON header; the header, `{name: {"dtype",
"shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}`; then
the arrays' bytes, little-endian, C order, back to back.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any, BinaryIO, Iterable

import jax
import ml_dtypes
import numpy as np

from ._atomic import barrier, primary, write_atomic

__all__ = ["write", "read", "read_metadata", "BadFile", "CRC_KEY"]

CRC_KEY = "fluxlike.crc32"
_PLACEHOLDER = "00000000"
MAX_HEADER = 100_000_000  # the safetensors package refuses larger headers
_CHUNK = 1 << 24

DTYPES = {
    np.dtype(np.float64): "F64", np.dtype(np.float32): "F32", np.dtype(np.float16): "F16",
    np.dtype(ml_dtypes.bfloat16): "BF16", np.dtype(ml_dtypes.float8_e4m3fn): "F8_E4M3",
    np.dtype(ml_dtypes.float8_e5m2): "F8_E5M2",
    np.dtype(np.int64): "I64", np.dtype(np.int32): "I32", np.dtype(np.int16): "I16", np.dtype(np.int8): "I8",
    np.dtype(np.uint64): "U64", np.dtype(np.uint32): "U32", np.dtype(np.uint16): "U16", np.dtype(np.uint8): "U8",
    np.dtype(np.bool_): "BOOL", np.dtype(np.complex64): "C64",
}


def _code(name: str, dtype: Any, fn: str) -> str:
    code = DTYPES.get(np.dtype(dtype))
    if code is None:
        raise TypeError(f"{fn}: {name} has dtype {np.dtype(dtype)}, which safetensors cannot store; "
                        f"convert it first (stored dtypes: {', '.join(sorted(str(d) for d in DTYPES))})")
    return code


def _host(x: Any) -> np.ndarray:
    """`x` as a C-ordered little-endian numpy array (one device transfer)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # spans processes: every one takes part
        from jax.experimental import multihost_utils

        a = np.asarray(multihost_utils.process_allgather(x, tiled=True))
    else:
        a = np.asarray(jax.device_get(x))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray makes 0-d arrays 1-d)


def write(path: str | os.PathLike, tensors: Iterable[tuple[str, Any]], metadata: dict[str, str], fn: str) -> None:
    """Write `tensors` (name, array) and `metadata` as a safetensors file at
    `path`, atomically; the arrays reach the host one at a time, so saving
    needs one array's worth of host memory beyond the model.

    In a `jax.distributed` run every process calls this with the same
    tensors: each takes part in gathering the arrays that span processes,
    process 0 alone writes, and all return once the file is in place.

    Examples:
        >>> import os, tempfile, numpy as np
        >>> from safetensors.numpy import load_file
        >>> from fluxlike.saving import _safetensors
        >>> p = os.path.join(tempfile.mkdtemp(), "t.safetensors")
        >>> _safetensors.write(p, [("a", np.arange(3.0))], {"note": "hi"}, "example")
        >>> load_file(p)["a"]
        array([0., 1., 2.])
    """
    tensors = list(tensors)
    header: dict[str, Any] = {}
    offset = 0
    for name, x in tensors:
        shape = [int(d) for d in np.shape(x)]
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(x.dtype).itemsize
        header[name] = {"dtype": _code(name, x.dtype, fn), "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    for k, v in metadata.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise TypeError(f"{fn}: metadata must map str to str; {k!r}: {type(v).__name__} {v!r:.40} is not "
                            "(write numbers with str(), structures with json.dumps)")
    header["__metadata__"] = {**metadata, CRC_KEY: _PLACEHOLDER}
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True).encode()
    text += b" " * (-len(text) % 8)
    mark = f'"{CRC_KEY}":"'.encode()
    at = 8 + text.index(mark) + len(mark)

    def emit(f: BinaryIO) -> None:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        crc = 0
        for name, x in tensors:
            a = _host(x)
            if a.dtype != np.dtype(x.dtype) or list(a.shape) != header[name]["shape"]:
                raise RuntimeError(f"{fn}: {name} changed while it was being saved")
            buf = a.reshape(-1).view(np.uint8).data if a.size else b""
            crc = zlib.crc32(buf, crc)
            f.write(buf)
        f.seek(at)
        f.write(f"{crc:08x}".encode())

    if primary():
        write_atomic(path, emit)
    else:  # another process of a jax.distributed run: the gathers, in the same order, and no file
        for _, x in tensors:
            _host(x)
    barrier(f"fluxlike: wrote {os.path.abspath(os.fspath(path))}")


class BadFile(ValueError):
    """A file that is not a whole safetensors file: empty, truncated, damaged,
    random bytes, a pickle or a zip."""


def _refuse(path: str, fn: str, why: str) -> BadFile:
    return BadFile(f"{fn}: {path} {why}")


def _check_file(path: str, fn: str) -> int:
    """Plain-words checks before the safetensors parser; the data's offset."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{fn}: no file at {path}")
    if os.path.isdir(path):
        raise IsADirectoryError(f"{fn}: {path} is a folder, not a safetensors file "
                                "(for a folder of checkpoints use fl.CheckpointManager)")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
    if size == 0:
        raise _refuse(path, fn, "is empty (0 bytes): an interrupted copy, or not a safetensors file")
    if head[:4] == b"PK\x03\x04":
        raise _refuse(path, fn, "is a zip archive (what torch.save writes), not a safetensors file; fluxlike "
                      "never unpickles (it would run code from the file). In PyTorch, save the weights with "
                      "safetensors.torch.save_file(module.state_dict(), path), or load the state_dict "
                      "there and pass it to fl.loadtorch_")
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise _refuse(path, fn, "is a Python pickle, not a safetensors file; fluxlike never unpickles "
                      "(it would run code from the file)")
    if size < 8:
        raise _refuse(path, fn, f"has {size} bytes, fewer than a safetensors header's length field: truncated")
    n = struct.unpack("<Q", head)[0]
    if n > MAX_HEADER:
        raise _refuse(path, fn, f"claims a header of {n} bytes (safetensors allows {MAX_HEADER}): "
                      "not a safetensors file, or a damaged one")
    if 8 + n > size:
        raise _refuse(path, fn, f"claims a header of {n} bytes but holds {size - 8} after the length "
                      "field: truncated, or not a safetensors file")
    return 8 + n


def read_metadata(path: str | os.PathLike, fn: str) -> tuple[dict[str, Any], dict[str, str]]:
    """`(entries, metadata)` of a file's header, validated: entries maps each
    name to `{"dtype", "shape"}` (safetensors' dtype codes)."""
    path = os.fspath(path)
    _check_file(path, fn)
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            entries = {}
            for name in f.keys():
                sl = f.get_slice(name)
                entries[name] = {"dtype": sl.get_dtype(), "shape": tuple(sl.get_shape())}
    except Exception as e:  # safetensors' own validation: say which file
        raise _refuse(path, fn, f"is not a valid safetensors file ({type(e).__name__}: {e})") from None
    return entries, dict(meta)


def read(path: str | os.PathLike, fn: str, names: Iterable[str] | None = None) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """`({name: numpy array}, metadata)` of a safetensors file (only `names`,
    if given), after every check: the header's, and the data's CRC-32 when
    fluxlike wrote the file. Raises ValueError naming the file otherwise.

    Examples:
        >>> import os, tempfile, numpy as np
        >>> from fluxlike.saving import _safetensors
        >>> p = os.path.join(tempfile.mkdtemp(), "t.safetensors")
        >>> _safetensors.write(p, [("a", np.ones(2, np.float32))], {}, "example")
        >>> _safetensors.read(p, "example")[0]["a"]
        array([1., 1.], dtype=float32)
    """
    path = os.fspath(path)
    start = _check_file(path, fn)
    entries, meta = read_metadata(path, fn)
    if CRC_KEY in meta:
        crc = 0
        with open(path, "rb") as f:
            f.seek(start)
            while chunk := f.read(_CHUNK):
                crc = zlib.crc32(chunk, crc)
        if f"{crc:08x}" != meta[CRC_KEY]:
            raise _refuse(path, fn, f"is damaged: its data's CRC-32 is {crc:08x}, the header says "
                          f"{meta[CRC_KEY]} (a disk or copy error; fluxlike's own writes are atomic)")
    from safetensors import safe_open

    out = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for name in (entries if names is None else names):
                out[name] = f.get_tensor(name)
    except Exception as e:
        raise _refuse(path, fn, f"could not be read ({type(e).__name__}: {e})") from None
    return out, meta
