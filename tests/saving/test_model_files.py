"""savemodel / loadmodel_: safetensors files under PyTorch-style names, read
by the safetensors package itself, and every bad input refused by name with
the model left as it was."""

from __future__ import annotations

import os
import pickle
import struct

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import fluxlike as fl


def model_with_state():
    return fl.Chain(fl.Dense(3, 4, fl.relu), fl.BatchNorm(4), fl.Dropout(0.5), fl.Dense(4, 2))


def snapshot(m):
    return [np.array(a) for a in jax.tree.leaves(m)]


def same(a, b):
    return all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(snapshot(a), snapshot(b)))


@pytest.fixture
def saved(tmp_path):
    m = model_with_state()
    m.layers[1].mean = jnp.arange(4.0)  # state arrays are saved too
    path = str(tmp_path / "m.safetensors")
    fl.savemodel(path, m, metadata={"epoch": "3"})
    return m, path


def test_keys_are_pytorch_style_and_the_safetensors_package_reads_the_file(saved):
    m, path = saved
    got = load_file(path)
    assert sorted(got) == ["layers.0.bias", "layers.0.weight", "layers.1.bias", "layers.1.mean", "layers.1.scale",
                           "layers.1.var", "layers.2.key", "layers.3.bias", "layers.3.weight"]
    np.testing.assert_array_equal(got["layers.1.mean"], np.arange(4.0, dtype=np.float32))
    np.testing.assert_array_equal(got["layers.0.weight"], np.asarray(m.layers[0].weight))
    assert got["layers.2.key"].dtype == np.uint32  # the Dropout key, as key data
    from safetensors import safe_open
    with safe_open(path, "numpy") as f:
        meta = f.metadata()
    assert meta["epoch"] == "3" and meta["fluxlike.format"] == "model"


def test_round_trip_into_a_fresh_model_and_from_a_file_the_package_wrote(saved, tmp_path):
    m, path = saved
    fresh = model_with_state()
    assert not same(fresh, m)
    assert fl.loadmodel_(fresh, path) is fresh
    assert same(fresh, m)
    other = str(tmp_path / "theirs.safetensors")  # written by safetensors itself, e.g. converted elsewhere
    save_file({k: v * 2 for k, v in load_file(path).items()}, other)
    fl.loadmodel_(fresh, other)
    np.testing.assert_array_equal(fresh.layers[3].weight, 2 * np.asarray(m.layers[3].weight))


def test_bfloat16_and_integer_arrays_round_trip(tmp_path):
    tree = {"w": jnp.arange(6, dtype=jnp.bfloat16).reshape(2, 3), "n": jnp.arange(3, dtype=jnp.int32),
            "s": jnp.float32(2.5)}
    path = str(tmp_path / "t.safetensors")
    fl.savemodel(path, tree)
    assert load_file(path)["w"].dtype == ml_dtypes.bfloat16
    back = {"w": jnp.zeros((2, 3), jnp.bfloat16), "n": jnp.zeros(3, jnp.int32), "s": jnp.float32(0)}
    fl.loadmodel_(back, path)
    assert back["w"].dtype == jnp.bfloat16 and np.array_equal(np.asarray(back["w"], np.float32), np.arange(6.0).reshape(2, 3))
    assert float(back["s"]) == 2.5


def test_tied_weights_stay_tied(tmp_path):
    w = jnp.ones((2, 2))
    m = fl.Chain(fl.Dense(w), fl.Dense(w))
    path = str(tmp_path / "tied.safetensors")
    fl.savemodel(path, m)
    v = jnp.zeros((2, 2))
    n = fl.Chain(fl.Dense(v), fl.Dense(v))
    fl.loadmodel_(n, path)
    assert n.layers[0].weight is n.layers[1].weight
    np.testing.assert_array_equal(n.layers[0].weight, np.ones((2, 2)))


def test_strict_false_forgives_names_not_shapes(saved):
    m, path = saved
    bigger = fl.Chain(*model_with_state().layers, fl.Dense(2, 2))
    with pytest.raises(ValueError, match=r"missing from the file .*m\.safetensors: layers\.4\.weight, layers\.4\.bias"):
        fl.loadmodel_(bigger, path)
    fl.loadmodel_(bigger, path, strict=False)
    np.testing.assert_array_equal(bigger.layers[3].weight, np.asarray(m.layers[3].weight))


def test_a_checkpoint_file_loads_its_model_part(tmp_path):
    m = model_with_state()
    path = str(tmp_path / "ckpt.safetensors")
    fl.savecheckpoint(path, m, fl.setup(fl.Adam(), m))
    fresh = model_with_state()
    fl.loadmodel_(fresh, path)
    assert same(fresh, m)


# ---------------------------------------------------------------------------
# bad input: each refused with the file and the entries named, the model unchanged


def refused(model, src, match, kind=ValueError, **kw):
    before = snapshot(model)
    with pytest.raises(kind, match=match):
        fl.loadmodel_(model, src, **kw)
    after = snapshot(model)
    assert all(np.array_equal(a, b) for a, b in zip(before, after)), "a failed load changed the model"


def test_missing_empty_truncated_and_random_files(saved, tmp_path):
    m, path = saved
    fresh = model_with_state()
    refused(fresh, str(tmp_path / "nope.safetensors"), r"loadmodel_: no file at .*nope\.safetensors", FileNotFoundError)
    refused(fresh, str(tmp_path), r"is a folder", IsADirectoryError)
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    refused(fresh, str(empty), r"empty\.safetensors is empty \(0 bytes\)")
    data = open(path, "rb").read()
    for cut in (3, 40, len(data) // 2, len(data) - 1):
        torn = tmp_path / f"torn{cut}.safetensors"
        torn.write_bytes(data[:cut])
        refused(fresh, str(torn), rf"torn{cut}\.safetensors (has 3 bytes|claims a header|is not a valid|is damaged)")
    noise = tmp_path / "noise.safetensors"
    noise.write_bytes(np.random.default_rng(0).bytes(5000))
    refused(fresh, str(noise), r"noise\.safetensors claims a header of \d+ bytes")
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2 ** 40) + b"{}" + b" " * 6)
    refused(fresh, str(huge), r"huge\.safetensors claims a header of 1099511627776 bytes \(safetensors allows")


def test_a_flipped_data_byte_is_caught_by_the_checksum(saved, tmp_path):
    m, path = saved
    data = bytearray(open(path, "rb").read())
    data[-3] ^= 0xFF
    bad = tmp_path / "flipped.safetensors"
    bad.write_bytes(bytes(data))
    refused(model_with_state(), str(bad), r"flipped\.safetensors is damaged: its data's CRC-32 is [0-9a-f]{8}, the header says")


class RunsCode:
    """Unpickling this writes a marker file: proof that a loader ran code from the file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickles_and_torch_zips_are_never_unpickled(tmp_path):
    marker = tmp_path / "code-ran"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps({"layers.0.weight": RunsCode(str(marker))}))
    with open(evil, "rb") as f:  # the file really would run code when unpickled
        pickle.load(f)["layers.0.weight"].close()
    assert marker.exists()
    marker.unlink()
    fresh = model_with_state()
    refused(fresh, str(evil), r"evil\.safetensors is a Python pickle, not a safetensors file; fluxlike never unpickles")
    assert not marker.exists()
    import torch
    zipped = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(3, 4).state_dict(), zipped)
    refused(fresh, str(zipped), r"model\.pt is a zip archive \(what torch\.save writes\).*fl\.loadtorch_")


def test_wrong_shapes_missing_unexpected_and_dtypes_all_in_one_error(saved, tmp_path):
    m, path = saved
    arrays = load_file(path)
    arrays["layers.0.weight"] = np.zeros((5, 3), np.float32)        # wrong shape
    arrays["layers.3.bias"] = arrays["layers.3.bias"].astype(np.float16)  # wrong dtype
    del arrays["layers.1.var"]                                       # missing
    arrays["layers.9.weight"] = np.zeros(2, np.float32)              # unexpected
    bad = str(tmp_path / "bad.safetensors")
    save_file(arrays, bad)
    refused(model_with_state(), bad,
            r"4 problems, so nothing was loaded:\n"
            r"  missing from the file .*bad\.safetensors: layers\.1\.var\n"
            r"  in the file .*bad\.safetensors but not in the model: layers\.9\.weight\n"
            r"  layers\.0\.weight: shape \(4, 3\) in the model, \(5, 3\) in the file .*\n"
            r"  layers\.3\.bias: dtype float32 in the model, float16 in the file .*never converted")


def test_the_file_of_another_model(saved):
    m, path = saved
    refused(fl.Chain(fl.Dense(3, 8), fl.Dense(8, 2)), path,
            r"in the file .* but not in the model: layers\.1\.mean, .*\n  layers\.0\.weight: shape \(8, 3\) in the model, \(4, 3\)")


def test_in_memory_sources_are_checked_the_same_way():
    a, b = fl.Chain(fl.Dense(2, 2, key=1)), fl.Chain(fl.Dense(2, 2, key=2))
    assert fl.loadmodel_(b, fl.state(a)) is b and same(a, b)
    src = fl.state(a)
    src.layers[0].bias = np.zeros(2, np.float16)
    refused(b, src, r"layers\.0\.bias: dtype float32 in the model, float16 in the source .*; nothing was loaded", TypeError)
    refused(b, {"layers.0.weight": np.zeros((2, 2), np.float32)}, r"missing from the source: layers\.0\.bias")


def test_save_and_load_refuse_a_trace_and_bad_metadata(tmp_path):
    m = fl.Dense(2, 1)
    path = str(tmp_path / "m.safetensors")

    @jax.jit
    def f(m):
        fl.savemodel(path, m)
        return m.weight

    with pytest.raises(RuntimeError, match=r"savemodel was called while JAX is tracing"):
        f(m)
    assert not os.path.exists(path)
    with pytest.raises(TypeError, match=r"metadata must map str to str; 'epoch': int 3 is not"):
        fl.savemodel(path, m, metadata={"epoch": 3})
    with pytest.raises(ValueError, match=r"keys starting with 'fluxlike\.' are fluxlike's own"):
        fl.savemodel(path, m, metadata={"fluxlike.format": "x"})
    with pytest.raises(FileNotFoundError, match=r"the folder .*no-such-dir does not exist"):
        fl.savemodel(str(tmp_path / "no-such-dir" / "m.safetensors"), m)


def test_the_final_file_follows_the_umask_and_no_temporary_file_is_left(tmp_path):
    old = os.umask(0o027)
    try:
        path = str(tmp_path / "m.safetensors")
        fl.savemodel(path, fl.Dense(2, 1))
    finally:
        os.umask(old)
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o640)
    assert os.listdir(tmp_path) == ["m.safetensors"]
