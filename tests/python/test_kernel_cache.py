"""The disk cache of generated kernels (mx.compile's fused groups): a later process loads the
kernel a first one compiled, a damaged cache file is compiled again and replaced, and
PONTE_KERNEL_CACHE=0 writes nothing. On the CPU the kernels are C built by the system compiler
into shared objects; on the simulated GPU, shared objects the host C++ compiler builds
(PONTE_SIM_JIT=1); on a GPU, cubins from NVRTC. Without a working C compiler the CPU runs the
same programs through its interpreter."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import ponte as mx


def gpu_kind():
    if not (mx.cuda.is_available() and mx.default_device() == mx.gpu):
        return None
    return "sim" if "simulated" in mx.device_info(mx.gpu).get("device_name", "") else "gpu"


KIND = gpu_kind()  # at import: a test before may change the default device
KINDS = ["cpu"] + ([KIND] if KIND else [])
SUFFIX = {"cpu": ".c.so", "sim": ".cu.so", "gpu": ".cubin"}

# One compiled chain, evaluated on the GPU; prints its result's bytes in hex and whether it
# matches the same function uncompiled.
SCRIPT = r"""
import numpy as np, ponte as mx
rng = np.random.default_rng(7)
x = mx.array(rng.standard_normal((3, 257)).astype(np.float32))
b = mx.array(rng.standard_normal(257).astype(np.float32))
def f(x, b):
    y = x * 0.5 + b
    return mx.where(y > 0, mx.exp(-y) * y, mx.sigmoid(y) - 1)
r = mx.compile(f)(x, b)
print(np.array(r).tobytes().hex(), np.array_equal(np.array(r), np.array(f(x, b))))
"""


def run(cache_dir, kind, **env):
    # the CPU builds kernels for outputs of any size here (by default from 16384 elements)
    device = dict(PONTE_DEVICE="cpu", PONTE_FUSED_JIT_MIN_SIZE="0") if kind == "cpu" else dict(PONTE_DEVICE="gpu")
    e = dict(os.environ, PONTE_SIM_JIT="1", PONTE_CACHE_DIR=str(cache_dir), **device)
    e.update(env)
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=e, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    bits, same = out.stdout.split()
    assert same == "True"
    return bits


def cached_files(cache_dir):
    d = cache_dir / "kernels"
    return sorted(p for p in d.iterdir() if not p.name.endswith(".tmp")) if d.exists() else []


@pytest.mark.parametrize("kind", KINDS)
def test_a_later_process_loads_the_cached_kernel(tmp_path, kind):
    first = run(tmp_path, kind)
    files = cached_files(tmp_path)
    assert len(files) == 1, files
    assert files[0].name.endswith(SUFFIX[kind])
    stamp = files[0].stat().st_mtime_ns
    assert run(tmp_path, kind) == first
    assert cached_files(tmp_path) == files and files[0].stat().st_mtime_ns == stamp


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_cache_file_is_compiled_again(tmp_path, kind):
    first = run(tmp_path, kind)
    (path,) = cached_files(tmp_path)
    good = path.read_bytes()
    for damage in (b"", good[: len(good) // 3], b"\x7fELF" + os.urandom(200)):
        path.write_bytes(damage)
        assert run(tmp_path, kind) == first
        assert path.read_bytes() == good or len(path.read_bytes()) > len(damage)


@pytest.mark.parametrize("kind", KINDS)
def test_the_cache_can_be_turned_off(tmp_path, kind):
    run(tmp_path, kind, PONTE_KERNEL_CACHE="0")
    assert cached_files(tmp_path) == []


@pytest.mark.parametrize("cc", ["/nonexistent/cc", "false"])
def test_without_a_compiler_the_cpu_interprets(tmp_path, cc):
    # a compiler that is missing, or one that fails: the same bits, nothing cached, no error
    assert run(tmp_path, "cpu", PONTE_CC=cc) == run(tmp_path / "with", "cpu")
    assert cached_files(tmp_path) == []


def test_a_compiler_that_hangs_is_stopped(tmp_path):
    hang = tmp_path / "hang-cc"
    hang.write_text("#!/bin/sh\nexec sleep 60\n")
    hang.chmod(0o755)
    start = time.monotonic()
    got = run(tmp_path / "a", "cpu", PONTE_CC=str(hang), PONTE_JIT_TIMEOUT="0.5")
    assert time.monotonic() - start < 30  # killed, not waited for
    assert got == run(tmp_path / "b", "cpu")
    assert cached_files(tmp_path / "a") == []


def test_generated_kernels_can_be_turned_off(tmp_path):
    assert run(tmp_path, "cpu", PONTE_FUSED_JIT="0") == run(tmp_path / "with", "cpu")
    assert cached_files(tmp_path) == []
