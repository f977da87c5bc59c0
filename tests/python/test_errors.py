"""Errors: Ponte's error kinds become ValueError / MemoryError / OSError / RuntimeError /
TypeError; wrong argument types are TypeErrors; and no call of any public function with
hostile arguments crashes the interpreter."""
import itertools
import zlib
import math
import os

import numpy as np
import pytest

import ponte as mx
import ponte.nn as nn


def test_error_kinds(tmp_path):
    with pytest.raises(ValueError, match=r"\[matmul\]"):
        mx.matmul(mx.ones((2, 3)), mx.ones((4, 5)))
    with pytest.raises(ValueError):
        mx.reshape(mx.ones((2, 3)), (4,))
    with pytest.raises(ValueError):
        mx.sum(mx.ones((2,)), axis=2)
    with pytest.raises(OSError):
        mx.load(str(tmp_path / "none.safetensors"))
    with pytest.raises(TypeError):
        mx.exp(None)
    with pytest.raises(TypeError):
        mx.sum(mx.ones(2), axis="x")
    with pytest.raises(TypeError):
        mx.zeros((2,), dtype="float32")
    with pytest.raises(TypeError):
        mx.set_default_device("cpu")
    with pytest.raises(TypeError):
        mx.array([1]).astype(int)


def test_memory_error():
    old = mx.set_memory_limit(64 << 20)
    try:
        big = mx.zeros((1 << 16, 1 << 12))  # 1 GiB, lazily: the error comes at evaluation
        with pytest.raises(MemoryError):
            mx.eval(big)
        with pytest.raises(MemoryError):
            np.array(big + 1)
    finally:
        mx.set_memory_limit(old)
    assert mx.get_memory_limit() == old
    assert (mx.ones((3,)) + 1).tolist() == [2, 2, 2]  # fine afterwards


def test_devices_and_streams():
    assert mx.default_device() == mx.cpu or mx.default_device() == mx.gpu
    assert mx.is_available(mx.cpu) and mx.metal.is_available() is False
    assert isinstance(mx.cuda.is_available(), bool)
    d = mx.Device(mx.cpu)
    assert repr(d) == "Device(cpu, 0)" and d.type == mx.cpu and d == mx.cpu
    s = mx.default_stream(mx.cpu)
    assert repr(s) == "Stream(Device(cpu, 0), 0)" and s.device == d
    s2 = mx.new_stream(mx.cpu)
    assert s2 != s and s2.device == d
    with mx.stream(s2):
        a = mx.ones((2,)) + 1
    with mx.stream(mx.cpu):
        b = mx.add(a, 1, stream=s2)
    assert b.tolist() == [3, 3]
    assert mx.exp(mx.zeros((1,)), stream=mx.cpu).item() == 1
    mx.synchronize()
    mx.synchronize(s2)
    mx.set_default_device(mx.cpu)
    assert mx.default_device() == mx.cpu
    if not mx.is_available(mx.gpu):
        with pytest.raises(ValueError):
            mx.set_default_device(mx.gpu)
        with pytest.raises(ValueError):
            mx.ones(2, stream=mx.gpu)
    with pytest.raises(TypeError):
        mx.ones(2, stream="cpu")


def test_memory_functions():
    mx.reset_peak_memory()
    a = mx.zeros((1000,))
    mx.eval(a)
    assert mx.get_active_memory() >= 4000 and mx.get_peak_memory() >= 4000
    assert isinstance(mx.get_cache_memory(), int)
    old = mx.set_cache_limit(0)
    assert mx.set_cache_limit(old) == 0
    mx.clear_cache()
    with pytest.raises(ValueError):
        mx.set_memory_limit(-1)


JUNK = [None, "x", -1, 0, 10**30, 2.5, math.nan, [], {}, (1, -2), [[1], [2, 3]], object(),
        lambda *a: a, mx.array([1.0, 2.0]), mx.array(3), mx.zeros((0, 2)), mx.array([[True]]),
        mx.array([1, 2], mx.uint8), np.ones((2, 2)), mx.float32, mx.cpu, 1 + 2j]

SKIP = {"save", "savez", "savez_compressed", "save_safetensors", "set_memory_limit", "set_cache_limit",
        "set_default_device", "seed", "set_wired_limit", "clear_cache", "eval", "async_eval",
        "stream", "synchronize", "save_gguf", "export_to_dot", "set_printoptions", "set_default_stream"}


def _public_functions():
    mods = [mx.core, mx.random, mx.linalg, mx.core._nn]
    for mod in mods:
        for name in sorted(dir(mod)):
            f = getattr(mod, name)
            if name.startswith("_") or name in SKIP or isinstance(f, type) or not callable(f):
                continue
            yield f"{mod.__name__}.{name}", f


@pytest.mark.parametrize("name,fn", list(_public_functions()), ids=[n for n, _ in _public_functions()])
def test_no_crash_on_hostile_arguments(name, fn, tmp_path):
    """Every function with 0-3 junk arguments raises or returns; results are evaluated."""
    old_limit = mx.set_memory_limit(256 << 20)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    try:
        calls = [()] + [(j,) for j in JUNK]
        for _ in range(150):
            k = int(rng.integers(2, 4))
            calls.append(tuple(JUNK[int(i)] for i in rng.integers(0, len(JUNK), size=k)))
        for args in calls:
            try:
                r = fn(*args)
                leaves = r if isinstance(r, (list, tuple)) else [r]
                for leaf in leaves:
                    if isinstance(leaf, mx.array) and leaf.size < 10**7:
                        mx.eval(leaf)
            except (ValueError, TypeError, MemoryError, OSError, RuntimeError, OverflowError,
                    IndexError, KeyError, NotImplementedError):
                pass
    finally:
        os.chdir(cwd)
        mx.set_memory_limit(old_limit)


def test_no_crash_on_hostile_methods():
    a = mx.array([[1.0, 2.0], [3.0, 4.0]])
    for name in ["sum", "reshape", "transpose", "astype", "split", "flatten", "squeeze", "swapaxes",
                 "moveaxis", "round", "var", "argmax", "cumsum", "diagonal", "item", "tolist"]:
        for args in itertools.product([None, "x", -5, 99, (1, 1), 1.5], repeat=2):
            try:
                getattr(a, name)(*args[: 1 if name in ("item", "tolist") else 2])
            except (ValueError, TypeError, IndexError, OverflowError):
                pass
    for idx in [None, "x", 1.5, (0, 0, 0), [[0, 5]], mx.array([9]), mx.array([0.5]), ..., (..., ...),
                slice(None, None, 0), {}, object(), 2**70, mx.array([[True, False]])]:
        try:
            np.array(a[idx])
        except (ValueError, TypeError, IndexError, OverflowError):
            pass
        try:
            b = mx.array(a)
            b[idx] = 1
            np.array(b)
        except (ValueError, TypeError, IndexError, OverflowError):
            pass


def test_layers_reject_bad_input():
    lin = nn.Linear(3, 2)
    with pytest.raises(ValueError):
        lin(mx.ones((4, 5)))
    with pytest.raises(TypeError):
        lin(None)
    with pytest.raises(ValueError):
        nn.losses.cross_entropy(mx.ones((2, 3)), mx.array([[0, 1, 2]]))
