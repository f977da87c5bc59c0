"""mx.fast.cuda_kernel / precompiled_cuda_kernel / metal_kernel: MLX's call signatures and
errors everywhere, and on a real GPU kernels compiled at run time (NVRTC) against numpy on
random data; on the simulated GPU (no device compiler) the evaluation's clear RuntimeError."""
import numpy as np
import pytest

import ponte as mx


def on_gpu():
    return mx.cuda.is_available() and mx.default_device() == mx.gpu


def simulated():
    return "simulated" in mx.device_info(mx.gpu).get("device_name", "")


def exp_kernel():
    return mx.fast.cuda_kernel(
        name="myexp",
        input_names=["inp"],
        output_names=["out"],
        source="""
            auto elem = cooperative_groups::this_grid().thread_rank();
            if (elem < inp_shape[0]) out[elem] = exp(inp[elem]);
        """,
    )


def test_signatures_and_errors():
    k = exp_kernel()
    assert callable(k)
    with pytest.raises(ValueError):
        mx.fast.cuda_kernel(name="x", input_names=["a"], output_names=[], source="")
    with pytest.raises(TypeError):
        mx.fast.cuda_kernel(name="x", input_names=[1], output_names=["o"], source="")
    with pytest.raises(RuntimeError, match="Metal"):
        mx.fast.metal_kernel(name="x", input_names=["a"], output_names=["o"], source="")
    with pytest.raises(TypeError, match="compiled_source"):
        mx.fast.precompiled_cuda_kernel(name="k", inputs=[], output_shapes=[], output_dtypes=[],
                                        scalars=[], grid=(1, 1, 1), threadgroup=(1, 1, 1))
    x = mx.array(np.random.default_rng(0).standard_normal(8).astype(np.float32))
    # a CPU stream is refused when the kernel is applied, as MLX
    with pytest.raises(ValueError, match="Only supports the GPU"):
        k(inputs=[x], output_shapes=[x.shape], output_dtypes=[x.dtype], grid=(8, 1, 1),
          threadgroup=(8, 1, 1), stream=mx.cpu)
    if mx.cuda.is_available():  # counts that do not match the kernel
        with pytest.raises(ValueError, match="inputs"):
            k(inputs=[x, x], output_shapes=[x.shape], output_dtypes=[x.dtype], grid=(8, 1, 1),
              threadgroup=(8, 1, 1), stream=mx.gpu)
        with pytest.raises(TypeError):
            k(inputs=[x], output_shapes=[x.shape], output_dtypes=[x.dtype], grid=(8, 1, 1),
              threadgroup=(8, 1, 1), template=[("T", "float")], stream=mx.gpu)


@pytest.mark.skipif(not mx.cuda.is_available(), reason="needs the GPU backend")
def test_kernels_on_the_gpu(capfd):
    rng = np.random.default_rng(1)
    a = rng.standard_normal(1000).astype(np.float32)
    k = exp_kernel()
    out = k(inputs=[mx.array(a)], output_shapes=[(1000,)], output_dtypes=[mx.float32],
            grid=(1000, 1, 1), threadgroup=(256, 1, 1), verbose=True, stream=mx.gpu)
    assert isinstance(out, list) and len(out) == 1
    assert "custom_kernel_myexp" in capfd.readouterr().out
    if simulated():
        with pytest.raises(RuntimeError, match="simulated GPU"):
            mx.eval(out[0])
        return
    np.testing.assert_allclose(np.array(out[0]), np.exp(a.astype(np.float64)), rtol=1e-5)
    # templates, a strided input, two outputs and an initial value (MLX's documented patterns)
    m = rng.standard_normal((6, 4)).astype(np.float32)
    strided = mx.fast.cuda_kernel(
        name="strided", input_names=["a"], output_names=["scaled", "total"],
        source="""
            int64_t i = blockIdx.x * blockDim.x + threadIdx.x;
            if (i >= 24) return;
            T v = a[elem_to_loc(i, a_shape, a_strides, a_ndim)];
            scaled[i] = v * (T)S;
            atomicAdd(total, v);
        """, ensure_row_contiguous=False)
    mt = mx.array(m).T
    s, t = strided(inputs=[mt], output_shapes=[(4, 6), (1,)], output_dtypes=[mx.float32, mx.float32],
                   grid=(24, 1, 1), threadgroup=(32, 1, 1), template=[("T", mx.float32), ("S", 3)],
                   init_value=2.0, stream=mx.gpu)
    np.testing.assert_allclose(np.array(s), 3 * m.T.astype(np.float64), rtol=1e-6)
    np.testing.assert_allclose(np.array(t), [2 + m.astype(np.float64).sum()], rtol=1e-5)
    broken = mx.fast.cuda_kernel(name="broken", input_names=["inp"], output_names=["out"],
                                 source="out[0] = no_such_name;")
    with pytest.raises(RuntimeError, match="no_such_name"):
        mx.eval(broken(inputs=[mx.array(a)], output_shapes=[(1,)], output_dtypes=[mx.float32],
                       grid=(1, 1, 1), threadgroup=(1, 1, 1), stream=mx.gpu)[0])
