"""mlx-lm's model zoo (PyPI mlx-lm, mlx_lm/models/<arch>.py, unchanged) on Ponte against MLX
itself: per architecture a tiny config (2 layers, hidden 64, vocab 128) is built in MLX with a
fixed seed and noised weights, and the same model in Ponte (`python -m ponte.run`, mlx aliased
to ponte) loads those weights. Then these must agree: the forward logits; a prompt and three
decoding steps through mlx_lm's make_prompt_cache (KVCache, RotatingKVCache, ArraysCache,
...); batched steps over merged caches (batch_generate's path); the forward with float16 and
with bfloat16 parameters, and its result dtype (where MLX's CPU runs it: not its GatherMM);
one cross-entropy training step (loss and every gradient); the forward after
nn.quantize(group_size=32, bits=4) (quantized_matmul, gather_qmm); and for a few archs the
mxfp4 / nvfp4 / mxfp8 modes, decoding over a 4-bit QuantizedKVCache and three AdamW steps
compiled as mlx_lm's trainer compiles them.

MLX and Ponte cannot both be `mlx` in one process: tests/python/mlx_lm_driver.py runs each
side in a subprocess, once for all archs, exchanging .npz files in a temporary directory.
Skips when mlx or mlx_lm is not importable (scripts/python-run installs both into
$BUILD/pydeps)."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import mlx_lm_driver as driver  # noqa: E402

for _mod in ("mlx", "mlx_lm"):
    if importlib.util.find_spec(_mod) is None:
        pytest.skip("%s is not installed (scripts/python-run installs it)" % _mod,
                    allow_module_level=True)

# arch -> why it is expected to fail on Ponte (a gap not closed yet)
XFAIL = {}

ARCHS = list(driver.CONFIGS)
# relative tolerances (of each array's scale) beyond 1e-4: 4-bit weights and KV caches
# (a rounding flip moves a value by a quantization step)
RTOL = {"qlogits": 1e-3, "qkv_step1": 1e-3, "qkv_step2": 1e-3, "qkv_step3": 1e-3,
        **{"q_" + mode: 1e-3 for mode, _, _ in driver.FP_QUANT}}
# float16 / bfloat16 parameters: Ponte within twice MLX's own distance from its float32 logits
HALF = ("half", "bf16")


def _run(side, spec, outdir):
    args = [sys.executable]
    if side == "ponte":
        args += ["-m", "ponte.run"]
    res = subprocess.run(args + [os.path.join(HERE, "mlx_lm_driver.py"), side, spec, outdir],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, "%s side failed:\n%s%s" % (side, res.stdout, res.stderr[-4000:])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Runs both sides once for every arch; returns the directory of their .npz files."""
    outdir = str(tmp_path_factory.mktemp("mlx_lm"))
    spec = os.path.join(outdir, "spec.json")
    with open(spec, "w") as f:
        json.dump([dict(arch=a, config=c, train=t, quant=q)
                   for a, (c, t, q) in driver.CONFIGS.items()], f)
    _run("mlx", spec, outdir)
    _run("ponte", spec, outdir)
    return outdir


def _outputs(outdir, arch, side):
    err = os.path.join(outdir, "%s.%s.err" % (arch, side))
    if os.path.exists(err):
        with open(err) as f:
            pytest.fail("%s on %s raised:\n%s" % (arch, side, f.read()))
    with np.load(os.path.join(outdir, "%s.%s.npz" % (arch, side))) as f:
        return {k: f[k] for k in f.files}


def test_every_architecture_is_listed():
    """Each file of the pinned mlx_lm/models is compared, or excluded with its reason."""
    models = os.path.join(importlib.util.find_spec("mlx_lm").submodule_search_locations[0],
                          "models")  # found, not imported: mlx_lm/__init__ needs transformers
    archs = {f[:-3] for f in os.listdir(models) if f.endswith(".py")} - driver.HELPERS
    assert sorted(archs - set(driver.CONFIGS) - set(driver.EXCLUDED)) == []
    assert sorted(set(driver.CONFIGS) & set(driver.EXCLUDED)) == []


@pytest.mark.parametrize("arch", sorted(driver.EXCLUDED))
def test_excluded_architecture(arch):
    pytest.skip(driver.EXCLUDED[arch])


@pytest.mark.parametrize("arch", [
    pytest.param(a, marks=pytest.mark.xfail(reason=XFAIL[a], strict=True)) if a in XFAIL else a
    for a in ARCHS])
def test_model_matches_mlx(results, arch):
    ref = _outputs(results, arch, "mlx")
    got = _outputs(results, arch, "ponte")
    _, train, quant = driver.CONFIGS[arch]
    expected = {"logits", "step0", "step1", "step2", "step3"}
    expected |= {"loss"} if train else set()
    expected |= {"qlogits"} if quant else set()
    expected |= {"qkv_step3"} if arch in driver.KV_QUANT else set()
    expected |= {"ctrain_loss2"} if arch in driver.COMPILED_TRAIN else set()
    if arch in driver.FP_QUANT_ARCHS:
        expected |= {"q_" + mode for mode, _, _ in driver.FP_QUANT}
    assert expected <= set(ref), sorted(set(ref))
    assert sorted(got) == sorted(ref)
    for k, r in ref.items():
        g = got[k]
        assert g.shape == r.shape, (k, g.shape, r.shape)
        if r.dtype.kind == "U":  # the result dtype of the half-precision forwards
            assert str(g) == str(r), (k, str(g), str(r))
            continue
        r64, g64 = r.astype(np.float64), g.astype(np.float64)
        # relative to the array's scale; gradients that are zero up to rounding (a router
        # whose normalized scores do not depend on it) compare absolutely
        scale = float(np.abs(r64).max()) if r.size else 0.0
        rtol = RTOL.get(k, 1e-4)
        if k in HALF:
            rtol = max(1e-2, 2 * float(np.abs(r64 - ref["logits"]).max()) / scale)
        tol = rtol * scale + 1e-6
        err = float(np.abs(g64 - r64).max()) if r.size else 0.0
        assert np.isfinite(g64).all() == np.isfinite(r64).all(), k
        assert err <= tol, "%s: %s max |ponte - mlx| = %.3g > %.3g (scale %.3g)" % (
            arch, k, err, tol, scale)
