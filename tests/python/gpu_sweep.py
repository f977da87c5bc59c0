"""The GPU coverage sweep (run by test_gpu_coverage.py in a process with PONTE_DEVICE=gpu and
PONTE_GPU_STRICT=1): the ops below, forward and gradient, over every dtype each accepts; prints
"FALLBACK <primitive>: <cases>" for each primitive that had no GPU kernel for a case (dtype
errors of the ops themselves, as MLX raises them, are not counted), then "sweep done"."""
import re
import numpy as np
import ponte.core as mx

DT = {n: getattr(mx, n) for n in ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16",
                                  "int32", "int64", "float16", "bfloat16", "float32", "float64", "complex64"]}
FLOATS = ["float16", "bfloat16", "float32", "float64"]
rng = np.random.default_rng(0)

def arr(shape, dt):
    x = rng.uniform(0.5, 2.0, size=shape)
    if dt == "bool_": return mx.array(x > 1.2)
    if dt == "complex64": return mx.array((x + 1j * x[::-1]).astype(np.complex64))
    return mx.array(x.astype(np.float64)).astype(DT[dt])

found = {}
def run(name, dt, fn):
    try:
        mx.eval(fn())
    except Exception as e:
        msg = str(e)
        m = re.search(r"Primitive (\w+) has no GPU kernel", msg)
        if m: found.setdefault(m.group(1), set()).add(f"{name}[{dt}]")
        elif "GPU" in msg: found.setdefault("?", set()).add(f"{name}[{dt}]: {msg[:120]}")

def g(f, *xs):
    return mx.grad(lambda *a: mx.sum(f(*a)).astype(mx.float32) if a[0].dtype != mx.float64 else mx.sum(f(*a)), argnums=tuple(range(len(xs))))(*xs)

un = ["abs", "negative", "sign", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "erf", "erfinv",
      "floor", "ceil", "round", "square", "reciprocal", "logical_not", "isnan", "isinf", "expm1", "log1p",
      "arcsin", "arctan", "sinh", "degrees", "conj", "real", "imag", "bitwise_invert", "stop_gradient"]
bi = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power", "floor_divide", "remainder",
      "equal", "less", "greater_equal", "logical_and", "logical_or", "bitwise_and", "bitwise_or", "bitwise_xor",
      "left_shift", "right_shift", "arctan2", "logaddexp", "divmod"]
red = ["sum", "prod", "max", "min", "mean", "var", "std", "all", "any", "argmax", "argmin", "logsumexp"]
scans = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]
for dt in DT:
    a, b = arr((3, 5, 7), dt), arr((3, 5, 7), dt)
    for n in un:
        if hasattr(mx, n): run(n, dt, lambda: getattr(mx, n)(a))
        if dt in FLOATS and hasattr(mx, n): run(n + " grad", dt, lambda: g(getattr(mx, n), a))
    for n in bi:
        if hasattr(mx, n): run(n, dt, lambda: getattr(mx, n)(a, b))
        if dt in FLOATS and hasattr(mx, n) and n != "divmod": run(n + " grad", dt, lambda: g(getattr(mx, n), a, b))
    for n in red:
        run(n, dt, lambda: getattr(mx, n)(a, axis=1))
        run(n + " all", dt, lambda: getattr(mx, n)(a))
        if dt in FLOATS and n not in ("all", "any", "argmax", "argmin"): run(n + " grad", dt, lambda: g(lambda x: getattr(mx, n)(x, axis=1), a))
    for n in scans:
        run(n, dt, lambda: getattr(mx, n)(a, axis=1))
        run(n + " rev", dt, lambda: getattr(mx, n)(a, axis=2, reverse=True))
        if dt in FLOATS: run(n + " grad", dt, lambda: g(lambda x: getattr(mx, n)(x, axis=1), a))
    run("sort", dt, lambda: mx.sort(a, axis=1))
    run("argsort", dt, lambda: mx.argsort(a, axis=-1))
    run("partition", dt, lambda: mx.partition(a, 2, axis=1))
    run("argpartition", dt, lambda: mx.argpartition(a, 2))
    run("topk", dt, lambda: mx.topk(a, 2, axis=-1))
    if dt in FLOATS: run("sort grad", dt, lambda: g(lambda x: mx.sort(x, axis=1), a))
    run("matmul", dt, lambda: mx.matmul(arr((4, 6), dt), arr((6, 5), dt)))
    run("matmul batched", dt, lambda: mx.matmul(arr((2, 4, 6), dt), arr((6, 5), dt)))
    run("addmm", dt, lambda: mx.addmm(arr((5,), dt), arr((4, 6), dt), arr((6, 5), dt)))
    if dt in FLOATS: run("matmul grad", dt, lambda: g(mx.matmul, arr((4, 6), dt), arr((6, 5), dt)))
    run("conv1d", dt, lambda: mx.conv1d(arr((2, 9, 3), dt), arr((4, 3, 3), dt)))
    run("conv2d", dt, lambda: mx.conv2d(arr((2, 6, 6, 3), dt), arr((4, 3, 3, 3), dt), stride=2, padding=1))
    run("conv3d", dt, lambda: mx.conv3d(arr((1, 4, 4, 4, 2), dt), arr((3, 2, 2, 2, 2), dt)))
    run("conv_transpose2d", dt, lambda: mx.conv_transpose2d(arr((1, 5, 5, 2), dt), arr((3, 3, 3, 2), dt), stride=2))
    if dt in FLOATS:
        run("conv2d grad", dt, lambda: g(lambda x, w: mx.conv2d(x, w, stride=2, padding=1, groups=1), arr((2, 6, 6, 3), dt), arr((4, 3, 3, 3), dt)))
        run("conv1d groups grad", dt, lambda: g(lambda x, w: mx.conv1d(x, w, groups=2), arr((2, 9, 4), dt), arr((4, 3, 2), dt)))
    run("fft", dt, lambda: mx.fft.fft(a))
    run("rfft", dt, lambda: mx.fft.rfft(a))
    run("irfft", dt, lambda: mx.fft.irfft(a))
    run("fft2", dt, lambda: mx.fft.fftn(a, axes=[0, 2]))
    run("ifft", dt, lambda: mx.fft.ifft(a, n=9))
    if dt in FLOATS: run("rfft grad", dt, lambda: g(lambda x: mx.abs(mx.fft.rfft(x)), a))
    sq = arr((3, 4, 4), dt)
    for n, f in [("svd", lambda: mx.linalg.svd(sq)), ("svd values", lambda: mx.linalg.svd(sq, compute_uv=False)),
                 ("qr", lambda: mx.linalg.qr(sq)), ("eigh", lambda: mx.linalg.eigh(sq)), ("eigvalsh", lambda: mx.linalg.eigvalsh(sq)),
                 ("eig", lambda: mx.linalg.eig(sq)), ("lu", lambda: mx.linalg.lu(sq)), ("lu_factor", lambda: mx.linalg.lu_factor(sq)),
                 ("inv", lambda: mx.linalg.inv(sq)), ("solve", lambda: mx.linalg.solve(sq, arr((3, 4), dt))),
                 ("cholesky", lambda: mx.linalg.cholesky(mx.matmul(sq, mx.swapaxes(sq, -1, -2)) + 4 * mx.eye(4, dtype=sq.dtype))),
                 ("pinv", lambda: mx.linalg.pinv(sq)), ("norm", lambda: mx.linalg.norm(sq, axis=(-2, -1))),
                 ("norm nuc", lambda: mx.linalg.norm(sq, ord="nuc", axis=(-2, -1))), ("tri_inv", lambda: mx.linalg.tri_inv(sq)),
                 ("solve_triangular", lambda: mx.linalg.solve_triangular(sq, arr((3, 4, 2), dt))),
                 ("cross", lambda: mx.linalg.cross(arr((3,), dt), arr((3,), dt))), ("det", lambda: mx.linalg.det(sq))]:
        run(n, dt, f)
    if dt in FLOATS:
        run("svd grad", dt, lambda: g(lambda x: mx.linalg.svd(x)[1], sq))
        run("inv grad", dt, lambda: g(mx.linalg.inv, sq))
        run("eigh grad", dt, lambda: g(lambda x: mx.linalg.eigh(x)[0], sq))
        run("qr grad", dt, lambda: g(lambda x: mx.linalg.qr(x)[1], sq))
        x3 = arr((2, 5, 16), dt); w = arr((16,), dt); bb = arr((16,), dt)
        run("layer_norm", dt, lambda: mx.fast.layer_norm(x3, w, bb, 1e-5))
        run("rms_norm", dt, lambda: mx.fast.rms_norm(x3, w, 1e-5))
        run("layer_norm grad", dt, lambda: g(lambda x, w, b: mx.fast.layer_norm(x, w, b, 1e-5), x3, w, bb))
        run("rms_norm grad", dt, lambda: g(lambda x, w: mx.fast.rms_norm(x, w, 1e-5), x3, w))
        run("rope", dt, lambda: mx.fast.rope(x3, 16, traditional=False, base=10000.0, scale=1.0, offset=0))
        for D, Dv in [(64, 64), (128, 128), (256, 256), (160, 96)]:
            q = arr((1, 4, 7, D), dt); k = arr((1, 2, 9, D), dt); v = arr((1, 2, 9, Dv), dt)
            msk = mx.array(rng.uniform(-1, 1, (7, 9))).astype(DT[dt])
            run(f"sdpa D{D} Dv{Dv}", dt, lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.1, mask="causal"))
            run(f"sdpa D{D} add mask grad", dt, lambda: g(lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.1, mask=msk), q, k, v))
        run("softmax", dt, lambda: mx.softmax(a, axis=-1))
        run("softmax grad", dt, lambda: g(lambda x: mx.softmax(x, axis=-1), a))
        run("log_softmax", dt, lambda: mx.log_softmax(a, axis=-1))
    run("take", dt, lambda: mx.take(a, mx.array([0, 2, 1]), axis=1))
    run("take_along_axis", dt, lambda: mx.take_along_axis(a, mx.zeros((3, 1, 7), dtype=mx.int32), axis=1))
    run("put_along_axis", dt, lambda: mx.put_along_axis(a, mx.zeros((3, 1, 7), dtype=mx.int32), arr((3, 1, 7), dt), axis=1))
    run("scatter_add", dt, lambda: a.at[mx.array([0, 0, 2])].add(arr((3, 5, 7), dt)))
    run("scatter_max", dt, lambda: a.at[mx.array([0, 0, 2])].maximum(arr((3, 5, 7), dt)))
    run("gather idx", dt, lambda: a[mx.array([0, 2]), :, mx.array([1, 3])])
    run("where", dt, lambda: mx.where(a == b, a, b))
    run("clip", dt, lambda: mx.clip(a, 0.7, 1.5))
    run("pad", dt, lambda: mx.pad(a, 1))
    run("concatenate", dt, lambda: mx.concatenate([a, b], axis=1))
    run("astype f32", dt, lambda: a.astype(mx.float32))
    run("astype i8", dt, lambda: a.astype(mx.int8))
    run("astype c64", dt, lambda: a.astype(mx.complex64))
    run("astype bool", dt, lambda: a.astype(mx.bool_))
    run("arange", dt, lambda: mx.arange(0, 10, dtype=DT[dt]) if dt not in ("bool_", "complex64") else a)
    run("tril", dt, lambda: mx.tril(sq))
    run("diagonal", dt, lambda: mx.diagonal(sq, axis1=-2, axis2=-1))
    run("trace", dt, lambda: mx.trace(sq, axis1=-2, axis2=-1))
    run("kron", dt, lambda: mx.kron(arr((2, 2), dt), arr((2, 3), dt)))
    run("outer", dt, lambda: mx.outer(arr((3,), dt), arr((4,), dt)))
    run("tensordot", dt, lambda: mx.tensordot(arr((3, 4), dt), arr((4, 2), dt), axes=1))
    run("einsum", dt, lambda: mx.einsum("ij,jk->ik", arr((3, 4), dt), arr((4, 2), dt)))
    run("nan_to_num", dt, lambda: mx.nan_to_num(a))
    run("isclose", dt, lambda: mx.isclose(a, b))
    run("quantize", dt, lambda: mx.quantize(arr((8, 64), dt), group_size=32, bits=4))
    run("quantized_matmul", dt, lambda: mx.quantized_matmul(arr((3, 64), dt), *mx.quantize(arr((8, 64), dt), group_size=32, bits=4), group_size=32, bits=4))
for dt in ["float16", "bfloat16", "float32", "float64"]:
    run("random.normal", dt, lambda: mx.random.normal((4, 5), dtype=DT[dt]))
    run("random.uniform", dt, lambda: mx.random.uniform(shape=(4, 5), dtype=DT[dt]))
    run("random.truncated_normal", dt, lambda: mx.random.truncated_normal(-1, 1, (4, 5), dtype=DT[dt]))
    run("random.gumbel", dt, lambda: mx.random.gumbel((4,), dtype=DT[dt]))
    run("random.laplace", dt, lambda: mx.random.laplace((4,), dtype=DT[dt]))
    run("random.multivariate_normal", dt, lambda: mx.random.multivariate_normal(mx.zeros((2,), dtype=DT[dt]), mx.eye(2, dtype=DT[dt]), (3,)))
for dt in ["int32", "uint32", "int64"]:
    run("random.randint", dt, lambda: mx.random.randint(0, 10, (4, 5), dtype=DT[dt]))
run("random.bernoulli", "float32", lambda: mx.random.bernoulli(0.3, (4, 5)))
run("random.categorical", "float32", lambda: mx.random.categorical(mx.zeros((3, 5)), num_samples=4))
run("random.permutation", "int32", lambda: mx.random.permutation(10))
run("random.split", "uint32", lambda: mx.random.split(mx.random.key(0)))
for k in sorted(found):
    print("FALLBACK", k + ":", ", ".join(sorted(found[k])))
print("sweep done")
