"""Several GPUs in one process from Python, as torch's cuda:1: mx.Device(mx.gpu, 1) in
mx.stream, mx.set_default_device, mx.new_stream / default_stream, mx.device_count; a model's
forward and backward on gpu:1 against the CPU, arrays used on one GPU after the other, and
unavailable indices refused with ValueError.

The checks run in a child process (this file run as a script) with PONTE_SIM_DEVICES=2, so
that the simulator build shows two GPUs (CUDA reads the count once, when it starts); on
hardware the variable is ignored and the test skips with fewer than two GPUs."""
import os
import subprocess
import sys

import numpy as np

import ponte.core as mx
import ponte.nn as nn
from ponte.utils import tree_flatten

rng = np.random.default_rng(3)


def close(a, b, tol):
    a, b = np.array(a, dtype=np.float64), np.array(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    err = np.max(np.abs(a - b) / (1 + np.abs(b))) if a.size else 0.0
    assert err < tol, err


def check_devices():
    gpu0, gpu1 = mx.Device(mx.gpu, 0), mx.Device(mx.gpu, 1)
    n = mx.device_count(mx.gpu)
    assert n >= 2 and mx.is_available(gpu1)
    assert not mx.is_available(mx.Device(mx.gpu, n))
    for make in (mx.new_stream, mx.default_stream):
        try:
            make(mx.Device(mx.gpu, n))
        except ValueError as e:
            assert "Device(gpu, %d)" % n in str(e), str(e)
        else:
            raise AssertionError("a stream on a GPU past the count was made")
    s1 = mx.default_stream(gpu1)
    assert s1.device == gpu1 and s1 != mx.default_stream(gpu0)
    assert mx.new_stream(gpu1).device == gpu1

    # a model's loss and gradients on gpu:1 against the CPU
    x = mx.array(rng.standard_normal((32, 20)).astype(np.float32))
    y = mx.array(rng.integers(0, 5, 32).astype(np.int32))
    model = nn.Sequential(nn.Linear(20, 48), nn.ReLU(), nn.Linear(48, 5))
    mx.eval(model.parameters())

    def loss_fn(m, xb, yb):
        return nn.losses.cross_entropy(m(xb), yb, reduction="mean")

    step = nn.value_and_grad(model, loss_fn)
    results = {}
    for dev in (mx.cpu, gpu1):
        with mx.stream(dev):
            loss, grads = step(model, x, y)
            mx.eval(loss, grads)
        results[str(dev)] = (loss.item(), [np.array(g) for _, g in tree_flatten(grads)])
    (lc, gc), (lg, gg) = results[str(mx.cpu)], results[str(gpu1)]
    assert abs(lc - lg) < 1e-5 * (1 + abs(lc)), (lc, lg)
    assert len(gg) == len(gc) == 4
    for a, b in zip(gg, gc):
        close(a, b, 1e-4)

    # an array made on gpu:0, used on gpu:1, then on gpu:0 again
    a_np = rng.standard_normal((300, 17)).astype(np.float32)
    with mx.stream(gpu0):
        a = mx.exp(mx.array(a_np))
        mx.eval(a)
    with mx.stream(gpu1):
        b = a @ a.T
    with mx.stream(gpu0):
        c = b.sum(axis=1) + a.sum()
    e = np.exp(a_np.astype(np.float64))
    close(c, (e @ e.T).sum(axis=1) + e.sum(), 1e-5)

    # the default device
    before = mx.default_device()
    mx.set_default_device(gpu1)
    assert mx.default_device() == gpu1
    z = (mx.array(a_np) * 2).sum()
    close(z, 2 * a_np.astype(np.float64).sum(), 1e-5)
    mx.synchronize()
    mx.set_default_device(before)
    try:
        mx.set_default_device(mx.Device(mx.gpu, n))
    except ValueError:
        pass
    else:
        raise AssertionError("set_default_device took a GPU past the count")
    assert mx.default_device() == before
    print("devices done")


if __name__ == "__main__":
    if mx.device_count(mx.gpu) < 2:
        print("fewer than two GPUs")
        sys.exit(0)
    check_devices()
else:
    import pytest

    @pytest.mark.skipif(not mx.cuda.is_available(), reason="no usable GPU")
    def test_two_gpus_in_one_process():
        env = dict(os.environ, PONTE_SIM_DEVICES="2", PONTE_ENABLE_TF32="0")
        r = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True,
                           text=True, timeout=600)
        if "fewer than two GPUs" in r.stdout:
            pytest.skip("fewer than two GPUs")
        assert r.returncode == 0 and "devices done" in r.stdout, r.stdout[-4000:] + r.stderr[-4000:]
