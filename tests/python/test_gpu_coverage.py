"""No op falls back to the CPU on the GPU: gpu_sweep.py (ops x dtypes, forward and gradients)
in a process with PONTE_DEVICE=gpu and PONTE_GPU_STRICT=1 (a fallback is then an error that
names the primitive). Skips without a usable GPU (the simulator build counts)."""
import os
import subprocess
import sys

import pytest

import ponte.core as mx


@pytest.mark.skipif(not mx.cuda.is_available(), reason="no usable GPU")
def test_no_cpu_fallback():
    env = dict(os.environ, PONTE_DEVICE="gpu", PONTE_GPU_STRICT="1")
    sweep = os.path.join(os.path.dirname(__file__), "gpu_sweep.py")
    r = subprocess.run([sys.executable, sweep], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "sweep done" in r.stdout, r.stdout + r.stderr
    fallbacks = [line for line in r.stdout.splitlines() if line.startswith("FALLBACK")]
    assert not fallbacks, "\n".join(fallbacks)
