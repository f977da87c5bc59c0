"""GPU values against CPU values in every dtype: each op below runs on the GPU and on the CPU
(`with mx.stream(mx.gpu)` / `with mx.stream(mx.cpu)` in one process) on the same random inputs,
for every dtype it accepts, and the results are compared: exactly for integer and bool results,
within a few ulps of the dtype for floats (looser for transcendental functions and where the
backends legitimately add in another order), NaN equal to NaN, infinities equal by sign; an op
that raises on one device only is a mismatch too. Ops: unary, binary (integer extremes for the
wrapping ones, every shift count, nonzero divisors), reductions (all, one axis, two axes),
scans (forward, reverse, exclusive), sort / argsort / partition / argpartition / topk, gradients
(vjp of sum(f(x))) of the float dtypes, astype between every pair of dtypes, where, clip, take,
take_along_axis, put_along_axis, scatter updates (.at[]), gathers, arange / linspace,
concatenate, pad, matmul, and the random ops' values for one key. Each family also runs on a
non-contiguous (transposed or sliced) input, and the floats once on infinities, NaNs and zeros.
A mismatch is reported with numpy's float64 value where numpy defines the op the same way, to
say which device is wrong.

The sweep runs in a child process (this file run as a script) with PONTE_GPU_STRICT=1, so that
a case the GPU would hand to its CPU fallback is an error instead of a trivially equal value.
Skips without a usable GPU (the simulator build counts)."""
import os
import subprocess
import sys

import numpy as np

import ponte.core as mx
import ponte.nn as nn

DTYPES = ["bool_", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
          "float16", "bfloat16", "float32", "float64", "complex64"]
DT = {n: getattr(mx, n) for n in DTYPES}
INTS = ["uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64"]
FLOATS = ["float16", "bfloat16", "float32", "float64"]
NP = {"bool_": np.bool_, "uint8": np.uint8, "uint16": np.uint16, "uint32": np.uint32,
      "uint64": np.uint64, "int8": np.int8, "int16": np.int16, "int32": np.int32,
      "int64": np.int64, "float16": np.float16, "bfloat16": np.float32, "float32": np.float32,
      "float64": np.float64, "complex64": np.complex64}
# one ulp (at 1.0) of each float dtype; complex64 is float32's
EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23, "float64": 2.0 ** -52,
       "complex64": 2.0 ** -23}
SHAPE = (3, 5, 7)

rng = np.random.default_rng(2021)


def dname(a):
    """The DTYPES name of a ponte array's dtype."""
    for n, d in DT.items():
        if a.dtype == d:
            return n
    raise ValueError(str(a.dtype))


# ───────────────────────────── inputs ─────────────────────────────

def ints(dt, shape, lo=None, hi=None):
    """Random integers of dt in [lo, hi] (the dtype's whole range by default) as numpy."""
    info = np.iinfo(NP[dt])
    lo = info.min if lo is None else max(lo, info.min)
    hi = info.max if hi is None else min(hi, info.max)
    return rng.integers(lo, hi, size=shape, endpoint=True, dtype=NP[dt])


def with_extremes(x, dt):
    """x (numpy ints) with its first entries the dtype's extremes and their neighbours."""
    info = np.iinfo(NP[dt])
    ex = [info.min, info.max, info.min + 1, info.max - 1, 0, 1]
    if info.min < 0:
        ex += [-1]
    f = x.reshape(-1).copy()
    f[:len(ex)] = ex
    return f.reshape(x.shape)


def floats(shape, lo=-3.0, hi=3.0):
    """Random float64 values in [lo, hi) with a few integers and halves among them (rounding
    ties) and a value near 0."""
    x = rng.uniform(lo, hi, size=shape)
    f = x.reshape(-1)
    for i, v in enumerate([0.5, -0.5, 1.5, -2.5, 2.0, -1.0, 1e-3, -2e-4]):
        if i < f.size and lo <= v < hi:
            f[i * 3 % f.size] = v
    return x


SPECIALS = [np.inf, -np.inf, np.nan, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -3.5, 1e-30, 65504.0, 70000.0]


def specials(shape):
    """float64 values: infinities, NaN, signed zeros, overflow of float16, among random ones."""
    x = rng.uniform(-3, 3, size=shape)
    f = x.reshape(-1)
    f[:len(SPECIALS)] = SPECIALS
    rng.shuffle(f)
    return x


def cspecials(shape, pool=SPECIALS + [1e30, -3e38, 3e38]):
    """complex values whose parts are from pool (SPECIALS and huge values by default) or
    random."""
    pool = np.array(pool)
    re, im = rng.uniform(-3, 3, shape), rng.uniform(-3, 3, shape)
    pick = rng.random(shape) < 0.5
    re[pick] = rng.choice(pool, int(pick.sum()))
    pick = rng.random(shape) < 0.5
    im[pick] = rng.choice(pool, int(pick.sum()))
    z = re.astype(np.complex128)
    z.imag = im  # not re + 1j * im: 1j * inf has a NaN real part
    return z


# complex parts for the reductions' special case: infinities, zeros, moderate values (no NaN
# part, no overflow or underflow): a product of them is an infinity, NaN (0 * inf) or finite
# whatever the order; huge or tiny parts would make it depend on the order
CPOOL = [np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -3.5]


def by_class(p):
    """A complex product compared by class: infinite (Annex G: a part infinite), NaN, and the
    finite values. Which infinity an overflowed product ends as ((inf, inf), (-inf, nan), ...)
    depends on the order of the factors, so the backends' orders make it differ."""
    inf, nan = mx.isinf(p), mx.isnan(p) & ~mx.isinf(p)
    return [inf, nan, mx.where(inf | nan, mx.array(0, dtype=p.dtype), p)]


# complex values whose parts are each of these: infinities, NaN, signed zeros, huge, tiny,
# and 1 next to 1e-30 (|z| just above 1: log|z| there is where digits are lost)
CGRID = np.array([complex(r, i) for r in SPECIALS[:9] + [1e-30, 3e38, -1.7] for i in SPECIALS[:9] + [1e-30, 3e38, -1.7]])


def cplx(shape, lo=-2.0, hi=2.0):
    return (rng.uniform(lo, hi, size=shape) + 1j * rng.uniform(lo, hi, size=shape)).astype(np.complex64)


def arr(x, dt):
    """A ponte array of dtype dt holding numpy x (rounded to dt from float64)."""
    with np.errstate(over="ignore"):  # 70000 is float16's infinity, intended
        a = mx.array(np.asarray(x).astype(NP[dt]), dtype=DT[dt])
    mx.eval(a)
    return a


def rand(dt, shape=SHAPE, lo=-3.0, hi=3.0):
    """Random values of dt: ints in [lo*20, hi*20] (from 0 when unsigned), floats in [lo, hi),
    complex parts in [lo, hi), bools half true."""
    if dt == "bool_":
        return arr(rng.random(shape) < 0.5, dt)
    if dt in INTS:
        return arr(ints(dt, shape, int(lo * 20), int(hi * 20)), dt)
    if dt == "complex64":
        return arr(cplx(shape, lo, hi), dt)
    return arr(floats(shape, lo, hi), dt)


def transposed(dt, shape=(7, 5, 3), lo=-3.0, hi=3.0):
    """A non-contiguous input of SHAPE: a random (7, 5, 3) array transposed."""
    return mx.transpose(rand(dt, shape, lo, hi), (2, 1, 0))


# ───────────────────────────── comparison ─────────────────────────────

failures = []
raised = []  # cases both devices refused (an op's dtype error, as MLX raises it)
count = [0]


def leaves(out):
    if isinstance(out, (list, tuple)):
        return [y for x in out for y in leaves(x)]
    if isinstance(out, dict):
        return [y for k in sorted(out) for y in leaves(out[k])]
    return [out]


def on(dev, fn):
    """fn() built and evaluated on device dev: its arrays as (dtype name, numpy) pairs, or the
    exception it raised."""
    try:
        with mx.stream(dev):
            out = leaves(fn())
            mx.eval(out)
        return [(dname(a), np.array(a.astype(mx.float32)) if a.dtype == mx.bfloat16 else np.array(a))
                for a in out]
    except Exception as e:  # noqa: BLE001 - the exception is the result compared
        return e


def float_diff(g, c, rtol, atol):
    """Indices where float or complex arrays g and c differ beyond |g - c| <= atol + rtol * |c|
    (complex: each part against the modulus, as a complex result's error is relative to its
    size, not to each part's: re(z * z) = x * x - y * y cancels; the finite part of a value
    with an infinite one against itself), NaN equal to NaN, infinities equal by sign."""
    g = g.reshape(-1)
    c = c.reshape(-1).astype(g.dtype)
    if np.iscomplexobj(g):
        mod = np.abs(c.astype(np.complex128))
        return np.union1d(part_diff(g.real, c.real, rtol, atol, mod), part_diff(g.imag, c.imag, rtol, atol, mod))
    return part_diff(g, c, rtol, atol, None)


def part_diff(g, c, rtol, atol, mod):
    """float_diff of real arrays, relative to mod where it is finite (else to |c|)."""
    g, c = g.astype(np.float64), c.astype(np.float64)
    gn, cn = np.isnan(g), np.isnan(c)
    nan = gn | cn
    bad = nan & (gn != cn)
    inf = ~nan & (np.isinf(g) | np.isinf(c))
    bad |= inf & (g != c)
    fin = ~nan & ~inf
    ref = np.abs(c) if mod is None else np.where(np.isfinite(mod), mod, np.abs(c))
    with np.errstate(invalid="ignore", over="ignore"):
        bad |= fin & (np.abs(g - c) > atol + rtol * ref)
    return np.flatnonzero(bad)


def check(name, fn, ulps=2.0, scale=None, ref=None):
    """Runs fn on the GPU and on the CPU and records a failure where they differ: integer and
    bool results exactly, float results within ulps ulps of the result's dtype (a number, or a
    dict by dtype name with a "default"), relative to each value, and with scale="max" also
    absolutely, relative to the largest finite |value| of the CPU's result (for sums whose order
    of additions differs); ulps=0: equal bits but for NaN's payload. ref: a function of nothing
    giving numpy's float64 result, quoted on a mismatch."""
    count[0] += 1
    state = rng.bit_generator.state  # inputs fn draws are the same on both devices
    g = on(mx.gpu, fn)
    rng.bit_generator.state = state
    c = on(mx.cpu, fn)
    if isinstance(g, Exception) or isinstance(c, Exception):
        if isinstance(g, Exception) and isinstance(c, Exception):
            raised.append(f"{name}: {str(c)[:150]}")
            return
        failures.append(f"{name}: gpu {'raised ' + str(g)[:200] if isinstance(g, Exception) else 'ran'}, "
                        f"cpu {'raised ' + str(c)[:200] if isinstance(c, Exception) else 'ran'}")
        return
    if len(g) != len(c):
        failures.append(f"{name}: {len(g)} outputs on the gpu, {len(c)} on the cpu")
        return
    for k, ((gd, ga), (cd, ca)) in enumerate(zip(g, c)):
        tag = f"{name}" + (f" out{k}" if len(g) > 1 else "")
        if gd != cd or ga.shape != ca.shape:
            failures.append(f"{tag}: gpu {gd}{ga.shape}, cpu {cd}{ca.shape}")
            continue
        if gd in EPS:
            # complex products and quotients are not correctly rounded: 2 ulps of the modulus
            u = ulps.get(gd, ulps["default"]) if isinstance(ulps, dict) else ulps
            rtol = (max(u, 2.0) if gd == "complex64" else u) * EPS[gd]
            atol = u * EPS[gd]
            if scale == "max":
                fin = np.abs(ca[np.isfinite(ca)]) if ca.size else np.zeros(0)
                atol *= max(1.0, float(fin.max()) if fin.size else 1.0)
            else:
                atol *= 1e-3  # values near 0: a relative bound alone is too strict there
            bad = float_diff(ga, ca, rtol, atol)
            if u == 0 and gd != "complex64":  # exact results: the zeros' signs too
                bad = np.union1d(bad, np.flatnonzero((ga.reshape(-1) == 0) & (np.signbit(ga) != np.signbit(ca)).reshape(-1)))
        else:
            bad = np.flatnonzero(ga.reshape(-1) != ca.reshape(-1))
        if bad.size:
            i = bad[0]
            msg = (f"{tag} [{gd}{ga.shape}]: {bad.size} of {ga.size} differ, first at {i}: "
                   f"gpu {ga.reshape(-1)[i]!r} cpu {ca.reshape(-1)[i]!r}")
            if ref is not None:
                try:
                    r = np.asarray(leaves(ref())[k]).reshape(-1)[i]
                    msg += f" numpy {r!r}"
                except Exception as e:  # noqa: BLE001
                    msg += f" (numpy: {e})"
            failures.append(msg)


# ───────────────────────────── the ops ─────────────────────────────

# unary ops: name -> (ulps for float results, numpy function or None)
TRANSC = 8.0
UNARY = {
    "abs": (0, np.abs), "negative": (0, np.negative), "sign": (0, np.sign), "square": (1, np.square),
    "reciprocal": (1, np.reciprocal), "sqrt": (1, np.sqrt), "rsqrt": (2, lambda x: 1 / np.sqrt(x)),
    "exp": (TRANSC, np.exp), "expm1": (TRANSC, np.expm1), "log": (TRANSC, np.log),
    "log1p": (TRANSC, np.log1p), "log2": (TRANSC, np.log2), "log10": (TRANSC, np.log10),
    "sin": (TRANSC, np.sin), "cos": (TRANSC, np.cos), "tan": (TRANSC, np.tan),
    "arcsin": (TRANSC, np.arcsin), "arccos": (TRANSC, np.arccos), "arctan": (TRANSC, np.arctan),
    "sinh": (TRANSC, np.sinh), "cosh": (TRANSC, np.cosh), "tanh": (TRANSC, np.tanh),
    "arcsinh": (TRANSC, np.arcsinh), "arccosh": (TRANSC, np.arccosh), "arctanh": (TRANSC, np.arctanh),
    "sigmoid": (TRANSC, lambda x: 1 / (1 + np.exp(-x))), "erf": (TRANSC, None), "erfinv": (TRANSC, None),
    "floor": (0, np.floor), "ceil": (0, np.ceil), "round": (0, np.round), "degrees": (1, np.degrees),
    "radians": (1, np.radians), "logical_not": (0, np.logical_not), "isnan": (0, np.isnan),
    "isinf": (0, np.isinf), "isfinite": (0, np.isfinite), "isposinf": (0, np.isposinf),
    "isneginf": (0, np.isneginf), "conj": (0, np.conj), "real": (0, np.real), "imag": (0, np.imag),
    "bitwise_invert": (0, np.invert), "stop_gradient": (0, None),
}
# differentiable unary ops (the float dtypes' gradients)
UNARY_GRAD = ["abs", "negative", "sign", "square", "reciprocal", "sqrt", "rsqrt", "exp", "expm1", "log",
              "log1p", "log2", "log10", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "sinh", "cosh",
              "tanh", "arcsinh", "arccosh", "arctanh", "sigmoid", "erf", "erfinv", "degrees", "radians"]
# inputs in each op's domain for the gradient (and a second forward case)
DOMAIN = {"sqrt": (0.05, 3), "rsqrt": (0.05, 3), "log": (0.05, 3), "log2": (0.05, 3), "log10": (0.05, 3),
          "log1p": (-0.9, 3), "reciprocal": (0.2, 3), "arcsin": (-0.9, 0.9), "arccos": (-0.9, 0.9),
          "arctanh": (-0.9, 0.9), "erfinv": (-0.9, 0.9), "arccosh": (1.1, 3), "tan": (-1.2, 1.2)}


def np_of(x):
    """numpy float64 (or complex128) copy of ponte array x for the references."""
    v = np.array(x.astype(mx.float32)) if x.dtype == mx.bfloat16 else np.array(x)
    return v.astype(np.complex128 if np.iscomplexobj(v) else np.float64) if v.dtype.kind in "fc" else v


def sweep_unary():
    for n, (ulps, npf) in UNARY.items():
        if not hasattr(mx, n):
            failures.append(f"unary {n}: not in ponte")
            continue
        f = getattr(mx, n)
        for dt in DTYPES:
            lo, hi = DOMAIN.get(n, (-3.0, 3.0))
            ins = [("rand", rand(dt)), ("domain", rand(dt, lo=lo, hi=hi)) if n in DOMAIN else None,
                   ("transposed", transposed(dt))]
            if dt in INTS:
                ins.append(("extremes", arr(with_extremes(ints(dt, SHAPE), dt), dt)))
            if dt == "complex64":
                ins.append(("special grid", arr(CGRID, dt)))
            if dt in FLOATS:
                ins.append(("specials", arr(specials(SHAPE), dt)))
                if lo >= 0:  # the domain's edge: 0, tiny and small values (subnormal in float16)
                    near0 = rng.uniform(0, 1e-2, SHAPE)
                    near0.reshape(-1)[:4] = [0.0, 1e-7, 1e-5, 1e-3]
                    ins.append(("near 0", arr(near0, dt)))
            for tag, x in [i for i in ins if i]:
                ref = (lambda x=x, npf=npf: npf(np_of(x))) if npf else None
                check(f"{n}[{dt}] {tag}", lambda x=x, f=f: f(x), ulps=ulps, ref=ref)
        for dt in FLOATS:
            if n in UNARY_GRAD:
                lo, hi = DOMAIN.get(n, (-3.0, 3.0))
                x = rand(dt, lo=lo, hi=hi)
                check(f"grad {n}[{dt}]", lambda x=x, f=f: mx.grad(lambda y: mx.sum(f(y)))(x),
                      ulps=max(ulps, 2) * 2)


BINARY = {
    "add": (0, np.add), "subtract": (0, np.subtract), "multiply": (0, np.multiply),
    "divide": (1, np.divide), "maximum": (0, np.maximum), "minimum": (0, np.minimum),
    "power": (TRANSC, np.power), "floor_divide": (0, np.floor_divide), "remainder": (1, np.remainder),
    "equal": (0, np.equal), "not_equal": (0, np.not_equal), "less": (0, np.less),
    "less_equal": (0, np.less_equal), "greater": (0, np.greater), "greater_equal": (0, np.greater_equal),
    "logical_and": (0, np.logical_and), "logical_or": (0, np.logical_or),
    "bitwise_and": (0, np.bitwise_and), "bitwise_or": (0, np.bitwise_or), "bitwise_xor": (0, np.bitwise_xor),
    "left_shift": (0, np.left_shift), "right_shift": (0, np.right_shift),
    "arctan2": (TRANSC, np.arctan2), "logaddexp": (TRANSC, np.logaddexp), "divmod": (1, np.divmod),
}
BINARY_GRAD = ["add", "subtract", "multiply", "divide", "maximum", "minimum", "power", "arctan2", "logaddexp",
               "remainder"]
WRAPPING = ("add", "subtract", "multiply", "bitwise_and", "bitwise_or", "bitwise_xor", "maximum", "minimum",
            "equal", "not_equal", "less", "less_equal", "greater", "greater_equal")


def binary_inputs(n, dt):
    """(tag, a, b) input pairs of binary op n in dtype dt."""
    out = [("rand", rand(dt), rand(dt)), ("transposed/broadcast", transposed(dt), rand(dt, (5, 1)))]
    if dt in INTS:
        bits = np.iinfo(NP[dt]).bits
        if n in WRAPPING:
            out.append(("extremes", arr(with_extremes(ints(dt, SHAPE), dt), dt),
                        arr(np.roll(with_extremes(ints(dt, SHAPE), dt), 3), dt)))
        elif n in ("left_shift", "right_shift"):
            a = with_extremes(ints(dt, (bits, 4)), dt)
            out = [("shifts", arr(a, dt), arr(np.repeat(np.arange(bits), 4).reshape(bits, 4), dt))]
            # counts of bits..70 (and negative ones): 0, or -1 for a negative signed right shift
            far = np.array([bits, bits + 1, 63, 64, 65, 70] + ([-1, -5] if info_min(dt) < 0 else []))
            a = with_extremes(ints(dt, (far.size, 6)), dt)
            out.append(("far shifts", arr(a, dt), arr(np.repeat(far, 6).reshape(far.size, 6).astype(NP[dt]), dt)))
        elif n in ("floor_divide", "remainder", "divmod", "divide"):
            a = with_extremes(ints(dt, SHAPE), dt)
            b = ints(dt, SHAPE, -9, 9)
            b[b == 0] = 3
            if np.iinfo(NP[dt]).min < 0:  # no INT_MIN / -1 (undefined)
                b[(a == np.iinfo(NP[dt]).min) & (b == -1)] = -2
            out.append(("extremes", arr(a, dt), arr(b, dt)))
            big = ints(dt, SHAPE)
            bigb = ints(dt, SHAPE)
            bigb[bigb == 0] = 1
            if np.iinfo(NP[dt]).min < 0:
                bigb[(big == np.iinfo(NP[dt]).min) & (bigb == -1)] = 1
            out.append(("full range", arr(big, dt), arr(bigb, dt)))
            for i, (tag, a, b) in enumerate(out[:2]):  # no zero divisors in the random cases
                out[i] = (tag, a, mx.where(b == 0, mx.array(1).astype(b.dtype), b))
            # x // 0 and x % 0: 0 on both backends (Ponte's definition; C leaves it undefined)
            out.append(("zero divisor", arr(with_extremes(ints(dt, (2, 10)), dt), dt), arr(np.zeros((2, 10)), dt)))
        elif n == "power":
            lo = 0 if np.iinfo(NP[dt]).min == 0 else -3
            out = [("small", arr(ints(dt, SHAPE, lo, 3), dt), arr(ints(dt, SHAPE, 0, 5), dt)),
                   ("wrap", arr(ints(dt, SHAPE, lo, 40), dt), arr(ints(dt, SHAPE, 0, 40), dt))]
    if dt in FLOATS:
        out.append(("specials", arr(specials(SHAPE), dt), arr(np.roll(specials(SHAPE), 5), dt)))
    if dt == "complex64":  # every pair of values of the special grid (Annex G's cases)
        ga, gb = np.meshgrid(CGRID, CGRID)
        out.append(("special grid", arr(ga, dt), arr(gb, dt)))
    if dt in FLOATS and n in ("floor_divide", "remainder", "divmod"):
        out.append(("integral", arr(np.round(floats(SHAPE, -9, 9)), dt), arr(np.round(floats(SHAPE, -4, 4)), dt)))
    return out


def sweep_binary():
    for n, (ulps, npf) in BINARY.items():
        if not hasattr(mx, n):
            failures.append(f"binary {n}: not in ponte")
            continue
        f = getattr(mx, n)
        for dt in DTYPES:
            for tag, a, b in binary_inputs(n, dt):
                ref = (lambda a=a, b=b, npf=npf: npf(np_of(a), np_of(b))) if npf else None
                fn = lambda a=a, b=b, f=f: f(a, b)  # noqa: E731
                if n == "power" and tag == "special grid":
                    # exp(b log a) with |Im(b log a)| ~ 1e38: the angle is rounding noise in
                    # double, so which infinity (or which finite value) comes out is too
                    fn = lambda a=a, b=b, f=f: by_class(f(a, b))  # noqa: E731
                    ref = None
                check(f"{n}[{dt}] {tag}", fn, ulps=ulps, ref=ref)
        if n in BINARY_GRAD:
            for dt in FLOATS:
                a, b = rand(dt, lo=0.2, hi=3) if n in ("power",) else rand(dt), rand(dt)
                check(f"grad {n}[{dt}]", lambda a=a, b=b, f=f: mx.grad(lambda x, y: mx.sum(f(x, y)), argnums=(0, 1))(a, b),
                      ulps=max(ulps, 2) * 2)


REDUCE = ["sum", "prod", "max", "min", "mean", "var", "std", "all", "any", "argmax", "argmin", "logsumexp"]
EXACT_REDUCE = ("max", "min", "all", "any", "argmax", "argmin")


def info_min(dt):
    return np.iinfo(NP[dt]).min


def sweep_reduce():
    for n in REDUCE:
        f = getattr(mx, n)
        for dt in DTYPES:
            lo, hi = (0.5, 1.5) if n == "prod" else (-3.0, 3.0)
            x, xt = rand(dt, lo=lo, hi=hi), transposed(dt, lo=lo, hi=hi)
            # long products near 1 (complex: modulus near 1), so that they do not overflow
            big = rand(dt, (4, 300), lo=lo, hi=hi) if n != "prod" else \
                rand(dt, (4, 300), *((0.6, 0.8) if dt == "complex64" else (0.9, 1.1)))
            cases = [("all", lambda x=x: f(x)), ("axis1", lambda x=x: f(x, axis=1)),
                     ("transposed axis-1", lambda xt=xt: f(xt, axis=-1)),
                     ("long rows", lambda big=big: f(big, axis=1)), ("long all", lambda big=big: f(big))]
            if not n.startswith("arg"):
                cases.append(("axis(0,2) keepdims", lambda x=x: f(x, axis=(0, 2), keepdims=True)))
            if n in ("var", "std"):
                cases.append(("ddof 1", lambda x=x: f(x, axis=2, ddof=1)))
            if (dt in FLOATS or dt == "complex64") and n not in ("var", "std"):
                sp = arr(specials((4, 13)) if dt != "complex64" else cspecials((4, 13), CPOOL), dt)
                cases.append(("specials", lambda sp=sp: f(sp, axis=1)))
            if dt in INTS:  # wrap-around of sums and products, extremes of max / min
                ex = arr(with_extremes(ints(dt, (4, 40)), dt), dt)
                cases.append(("extremes", lambda ex=ex: f(ex, axis=1)))
            if n == "prod" and dt == "complex64":
                cases = [(tag, lambda fn=fn: by_class(fn())) for tag, fn in cases]
            for tag, fn in cases:
                # float sums: another order of additions on each device (the reduction's tree
                # differs by backend, as in MLX): bounded relative to the largest |result|;
                # max / min / arg* pick an element: exact
                if n in EXACT_REDUCE:
                    check(f"{n}[{dt}] {tag}", fn, ulps=0)
                else:
                    check(f"{n}[{dt}] {tag}", fn, ulps=16, scale="max")
            if dt in FLOATS and n not in ("all", "any", "argmax", "argmin"):
                check(f"grad {n}[{dt}] axis1", lambda x=x: mx.grad(lambda y: mx.sum(f(y, axis=1)))(x),
                      ulps=16, scale="max")


SCANS = ["cumsum", "cumprod", "cummax", "cummin", "logcumsumexp"]


def sweep_scans():
    for n in SCANS:
        f = getattr(mx, n)
        for dt in DTYPES:
            lo, hi = (0.7, 1.4) if n == "cumprod" else (-3.0, 3.0)
            x, xt = rand(dt, lo=lo, hi=hi), transposed(dt, lo=lo, hi=hi)
            long = rand(dt, (3, 100), lo=0.95 if n == "cumprod" else lo, hi=1.05 if n == "cumprod" else hi)
            cases = [("axis1", lambda x=x: f(x, axis=1)), ("axis2 reverse", lambda x=x: f(x, axis=2, reverse=True)),
                     ("axis0 exclusive", lambda x=x: f(x, axis=0, inclusive=False)),
                     ("axis1 reverse exclusive", lambda x=x: f(x, axis=1, reverse=True, inclusive=False)),
                     ("transposed axis2", lambda xt=xt: f(xt, axis=2)),
                     ("long", lambda long=long: f(long, axis=1)),
                     ("long reverse", lambda long=long: f(long, axis=1, reverse=True))]
            if dt in FLOATS or dt == "complex64":
                sp = arr(specials((2, 13)) if dt != "complex64" else cspecials((2, 13), CPOOL), dt)
                cases.append(("specials", lambda sp=sp: f(sp, axis=1)))
            if dt in INTS:  # wrap-around of sums and products, extremes of max / min
                ex = arr(with_extremes(ints(dt, (3, 40)), dt), dt)
                cases.append(("extremes", lambda ex=ex: f(ex, axis=1)))
            if n == "cumprod" and dt == "complex64":
                cases = [(tag, lambda fn=fn: by_class(fn())) for tag, fn in cases]
            if n == "logcumsumexp" and dt == "complex64":
                # the imaginary part is an angle accumulated unwrapped (as MLX), so it depends on
                # the order the scan combines in (sequential on the CPU, a tree on the GPU)
                # up to multiples of 2 pi: compared as the real part and the angle's cos / sin
                # (the angle grows to tens of radians over a long line: its float32 rounding, and so
                # its cos / sin, is that many ulps of 1)
                cases = [(tag, lambda fn=fn: [mx.real(fn()), mx.cos(mx.imag(fn())), mx.sin(mx.imag(fn()))])
                         for tag, fn in cases]
            for tag, fn in cases:
                exact = n in ("cummax", "cummin")
                u = 0 if exact else 256 if n == "logcumsumexp" and dt == "complex64" else 16
                check(f"{n}[{dt}] {tag}", fn, ulps=u, scale=None if exact else "max")
            if dt in FLOATS:
                check(f"grad {n}[{dt}] axis1", lambda x=x: mx.grad(lambda y: mx.sum(f(y, axis=1)))(x), ulps=16, scale="max")
                check(f"grad {n}[{dt}] reverse", lambda x=x: mx.grad(lambda y: mx.sum(f(y, axis=2, reverse=True)))(x),
                      ulps=16, scale="max")


def distinct(dt, shape):
    """Values of dt with few ties (ties make argsort / argpartition's order a choice)."""
    if dt == "bool_":
        return rand(dt, shape)
    if dt in INTS:
        info = np.iinfo(NP[dt])
        return arr(ints(dt, shape, max(info.min, -10 ** 6), min(info.max, 10 ** 6)), dt)
    if dt == "complex64":
        return arr(cplx(shape), dt)
    return arr(rng.permutation(int(np.prod(shape))).reshape(shape) * 0.25 - 10, dt)


def sweep_sort():
    for dt in DTYPES:
        x = distinct(dt, SHAPE)
        long = distinct(dt, (3, 200))
        xt = mx.transpose(distinct(dt, (7, 5, 3)), (2, 1, 0))
        for tag, fn in [("sort axis1", lambda: mx.sort(x, axis=1)), ("sort all", lambda: mx.sort(x, axis=None)),
                        ("sort long", lambda: mx.sort(long, axis=-1)), ("sort transposed", lambda: mx.sort(xt, axis=-1)),
                        ("argsort", lambda: mx.argsort(x, axis=-1)), ("argsort axis0", lambda: mx.argsort(x, axis=0)),
                        ("argsort long", lambda: mx.argsort(long, axis=-1)),
                        ("argsort transposed", lambda: mx.argsort(xt, axis=1)),
                        # topk's k values come in no set order: compared sorted
                        ("topk", lambda: mx.sort(mx.topk(x, 2, axis=-1), axis=-1)),
                        ("topk long", lambda: mx.sort(mx.topk(long, 5, axis=-1), axis=-1))]:
            check(f"{tag}[{dt}]", fn, ulps=0)
        if dt in FLOATS or dt in INTS:
            # NaN (last), infinities, signed zeros / the integer extremes; argsort through its values
            sp = arr(specials((4, 40)), dt) if dt in FLOATS else arr(with_extremes(ints(dt, (4, 40)), dt), dt)
            check(f"sort specials[{dt}]", lambda: mx.sort(sp, axis=-1), ulps=0)
            check(f"argsort specials[{dt}]", lambda: mx.take_along_axis(sp, mx.argsort(sp, axis=-1), axis=-1), ulps=0)
            check(f"partition specials[{dt}]", lambda: mx.partition(sp, 20, axis=-1)[:, 20], ulps=0)
        # partition: only the kth entry is fixed; the rest compared as sorted sides
        for tag, fn in [("partition", lambda: mx.partition(x, 2, axis=1)),
                        ("partition long", lambda: mx.partition(long, 70, axis=-1)),
                        ("argpartition", lambda: mx.take_along_axis(x, mx.argpartition(x, 3, axis=-1), axis=-1)),
                        ("argpartition transposed",
                         lambda: mx.take_along_axis(xt, mx.argpartition(xt, 1, axis=0), axis=0))]:
            k, ax = {"partition": (2, 1), "partition long": (70, -1), "argpartition": (3, -1),
                     "argpartition transposed": (1, 0)}[tag]

            def sides(fn=fn, k=k, ax=ax):
                p = fn()
                n = p.shape[ax]
                lo = mx.sort(mx.take(p, mx.arange(0, k), axis=ax), axis=ax)
                hi = mx.sort(mx.take(p, mx.arange(k + 1, n), axis=ax), axis=ax)
                return lo, mx.take(p, mx.array([k]), axis=ax), hi
            check(f"{tag}[{dt}]", sides, ulps=0)
        if dt in FLOATS:
            check(f"grad sort[{dt}]", lambda: mx.grad(lambda y: mx.sum(mx.sort(y, axis=1) * mx.arange(5).reshape(5, 1)))(x),
                  ulps=2)


def sweep_astype():
    for src in DTYPES:
        if src in INTS:
            # every target: wrap-around of ints, rounding to floats
            base = arr(with_extremes(ints(src, (4, 25)), src), src)
        elif src in FLOATS:
            base = None
        else:
            base = rand(src, (4, 25))
        for dst in DTYPES:
            x = base
            if src in FLOATS:
                # in the target's range (rounding toward 0 of halves and near-integers)
                if dst in INTS:
                    info = np.iinfo(NP[dst])
                    lo, hi = max(float(info.min), -60000.0), min(float(info.max), 60000.0)
                    v = rng.uniform(lo, hi, (4, 25))
                    v.reshape(-1)[:6] = [0.5, -0.5 if lo < 0 else 1.5, 2.5, 0.99, lo + 1, hi - 1]
                    x = arr(v, src)
                else:
                    x = arr(specials((4, 25)) * rng.choice([1.0, 1e3, 1e-3], (4, 25)), src)
            elif src == "complex64" and dst in INTS:
                x = arr(cplx((4, 25), 0, 100) if np.iinfo(NP[dst]).min == 0 else cplx((4, 25), -100, 100), src)
            check(f"astype {src}->{dst}", lambda x=x, dst=dst: x.astype(DT[dst]), ulps=0)
            check(f"astype {src}->{dst} transposed", lambda x=x, dst=dst: mx.transpose(x).astype(DT[dst]), ulps=0)
            if src in FLOATS + ["complex64"] and dst in INTS:
                # out of range, infinite and NaN: Ponte saturates (NaN gives 0; C leaves it
                # undefined), the same on both backends
                sat = arr(specials((4, 25)) * rng.choice([1.0, 1e5, 1e10, 1e20], (4, 25)), src)
                check(f"astype {src}->{dst} saturating", lambda sat=sat, dst=dst: sat.astype(DT[dst]), ulps=0)


def sweep_indexing():
    for dt in DTYPES:
        a, b = rand(dt), rand(dt)
        c = rand("bool_")
        at, idx = transposed(dt), mx.array([0, 2, 1, 2])
        for tag, fn in [
            ("where", lambda: mx.where(c, a, b)), ("where transposed", lambda: mx.where(c, at, b[:, :1])),
            ("where scalar", lambda: mx.where(c, a, mx.array(1).astype(a.dtype))),
            ("clip", lambda: mx.clip(a, -1 if dt[0] != "u" else 10, 2 if dt[0] != "u" else 30) if dt != "complex64" else a),
            ("clip arrays", lambda: mx.clip(at, b[:, :1], None) if dt != "complex64" else a),
            ("take", lambda: mx.take(a, idx, axis=1)), ("take flat", lambda: mx.take(at, mx.array([[3, 50], [104, 0]]))),
            ("take negative", lambda: mx.take(a, mx.array([-1, 0]), axis=2)),
            ("take_along_axis", lambda: mx.take_along_axis(a, mx.array(rng.integers(0, 5, (3, 4, 7))), axis=1)),
            ("take_along_axis transposed", lambda: mx.take_along_axis(at, mx.array(rng.integers(0, 7, (3, 5, 2))), axis=2)),
            ("put_along_axis", lambda: mx.put_along_axis(a, mx.array(rng.permutation(5)[:3].reshape(1, 3, 1) * np.ones((3, 1, 7), int)),
                                                         b[:, :3], axis=1)),
            ("gather", lambda: a[mx.array([0, 2]), :, mx.array([1, 3])]), ("gather transposed", lambda: at[:, mx.array([4, 0, 4])]),
            ("slice", lambda: a[1:, ::2, ::-3]),
            ("concatenate", lambda: mx.concatenate([a, at, b[:, :2]], axis=1)),
            ("concatenate axis0", lambda: mx.concatenate([a, b], axis=0)), ("stack", lambda: mx.stack([a, at], axis=1)),
            ("pad", lambda: mx.pad(at, [(1, 0), (0, 2), (1, 1)])), ("pad value", lambda: mx.pad(a, 1, constant_values=1)),
            ("tril", lambda: mx.tril(a)), ("triu transposed", lambda: mx.triu(at, 1)),
            ("diagonal", lambda: mx.diagonal(a, axis1=1, axis2=2)), ("flip/roll", lambda: mx.roll(at, 2, axis=1)),
            ("repeat", lambda: mx.repeat(at, 2, axis=0)), ("tile", lambda: mx.tile(a[0], (2, 1))),
            ("broadcast_to", lambda: mx.broadcast_to(a[:, :1], (3, 5, 7)) + mx.zeros((3, 5, 7), dtype=a.dtype)),
        ]:
            check(f"{tag}[{dt}]", fn, ulps=0.5)
        # scatter updates: duplicate indices accumulate, so floats in another order: scaled tolerance
        upd = rand(dt, (4, 5, 7))
        ii = mx.array([2, 0, 2, 1])
        for mode in ["add", "subtract", "multiply", "divide", "maximum", "minimum"]:
            if dt in INTS and mode == "divide":
                continue

            def upd_fn(mode=mode):
                return getattr(a.at[ii], mode)(upd)
            check(f"at[].{mode}[{dt}]", upd_fn, ulps=8, scale="max")
        check(f"at[] set[{dt}]", lambda: _set(a, mx.array([2, 0]), b[:2]), ulps=0.5)
        check(f"at[] add transposed[{dt}]", lambda: at.at[:, mx.array([1, 1, 3])].add(upd[:3, :3, :3].reshape(3, 3, 3)[:, :, :1]),
              ulps=8, scale="max")
        if dt not in ("bool_", "complex64"):
            check(f"arange[{dt}]", lambda: mx.arange(0, 60 if dt != "int8" else 100, 3, dtype=DT[dt]), ulps=0.5)
            check(f"arange frac[{dt}]", lambda: mx.arange(-2.5 if dt not in INTS or "int" in dt[:3] else 0, 7.3, 0.7, dtype=DT[dt]),
                  ulps=0.5)
            check(f"linspace[{dt}]", lambda: mx.linspace(-3 if dt[0] != "u" else 0, 40, 23, dtype=DT[dt]), ulps=0.5)
        if dt in FLOATS + ["complex64"]:
            check(f"nan_to_num[{dt}]", lambda: mx.nan_to_num(arr(specials(SHAPE), dt) if dt != "complex64" else a), ulps=0.5)
            check(f"isclose[{dt}]", lambda: mx.isclose(a, b * 0 + a + mx.array(1e-3).astype(a.dtype)), ulps=0.5)
        for tag, fn in [("matmul", lambda: mx.matmul(rand(dt, (4, 6)), rand(dt, (6, 5)))),
                        ("matmul batched transposed", lambda: mx.matmul(at[:, :4], rand(dt, (5, 7)).T))]:
            check(f"{tag}[{dt}]", fn, ulps=8, scale="max")


def _set(a, i, v):
    """a with rows i set to v (the .at[] set update, or a[i] = v where .at has no set)."""
    y = mx.array(a)
    y[i] = v
    return y


def sweep_random():
    key = mx.random.key(17)
    for tag, fn in [("key", lambda: mx.random.key(5)), ("split", lambda: mx.random.split(key, 3)),
                    ("bits", lambda: mx.random.bits((5, 9), key=key)), ("bits 1", lambda: mx.random.bits((37,), width=1, key=key)),
                    ("bits 2", lambda: mx.random.bits((37,), width=2, key=key)),
                    ("randint", lambda: mx.random.randint(-5, 100, (6, 7), key=key)),
                    ("randint int64", lambda: mx.random.randint(0, 10, (6, 7), dtype=mx.int64, key=key)),
                    ("bernoulli", lambda: mx.random.bernoulli(0.3, (40,), key=key)),
                    ("categorical", lambda: mx.random.categorical(mx.array(floats((3, 6))), num_samples=4, key=key)),
                    ("permutation", lambda: mx.random.permutation(30, key=key))]:
        check(f"random.{tag}", fn, ulps=0.5)
    for dt in FLOATS:
        for tag, fn in [("uniform", lambda: mx.random.uniform(-2, 3, (5, 9), dtype=DT[dt], key=key)),
                        ("normal", lambda: mx.random.normal((41,), dtype=DT[dt], key=key)),
                        ("truncated_normal", lambda: mx.random.truncated_normal(-1, 1.5, (41,), dtype=DT[dt], key=key)),
                        ("gumbel", lambda: mx.random.gumbel((41,), dtype=DT[dt], key=key)),
                        ("laplace", lambda: mx.random.laplace((41,), dtype=DT[dt], key=key))]:
            check(f"random.{tag}[{dt}]", fn, ulps=TRANSC)


def sweep_large():
    """The GPU's other code paths: sorts of rows longer than its shared-memory tile (4096:
    tiles merged in global memory), block-wide scans with carries across chunks and a column
    scan, reductions split over blocks (few outputs, many elements) and column reductions."""
    for dt in DTYPES:
        x = distinct(dt, (2, 5000))
        check(f"sort 5000[{dt}]", lambda: mx.sort(x, axis=-1), ulps=0)
        check(f"argsort 5000[{dt}]", lambda: mx.argsort(x, axis=-1), ulps=0)
        if dt in FLOATS:
            sp = arr(specials((2, 4500)), dt)
            check(f"argsort 4500 specials[{dt}]", lambda: mx.take_along_axis(sp, mx.argsort(sp, axis=-1), axis=-1), ulps=0)
        y = rand(dt, (2, 3000), -1, 1)
        col = rand(dt, (300, 7), -1, 1)
        for n in ["cumsum", "cummax", "logcumsumexp"]:
            f = getattr(mx, n)
            exact = n == "cummax"
            u, sc = (0, None) if exact else (16, "max")
            if n == "logcumsumexp" and dt == "complex64":
                continue  # its angles depend on the combining order (see sweep_scans)
            check(f"{n} 3000[{dt}]", lambda f=f: f(y, axis=1), ulps=u, scale=sc)
            check(f"{n} 3000 reverse exclusive[{dt}]", lambda f=f: f(y, axis=1, reverse=True, inclusive=False), ulps=u, scale=sc)
            check(f"{n} column[{dt}]", lambda f=f: f(col, axis=0), ulps=u, scale=sc)
        # products near 1 (complex: modulus near 1, small angles), so that none overflows: an
        # overflowing complex product's (inf, inf) or (nan, nan) depends on the combining order
        near1 = (rand(dt, (2, 3000), 0.999, 1.001) if dt in FLOATS else rand(dt, (2, 3000)) if dt != "complex64"
                 else arr(np.exp(1j * rng.uniform(-0.1, 0.1, (2, 3000))) * rng.uniform(0.999, 1.001, (2, 3000)), dt))
        # a running product of 3000 values, in another association on the GPU (a tree per
        # block): its rounding errors grow with the count (about sqrt(n) ulps, n at worst)
        check(f"cumprod 3000[{dt}]", lambda: mx.cumprod(near1, axis=1), ulps={"float16": 4, "bfloat16": 4, "default": 256},
              scale="max")
        z = rand(dt, (60000,), -1, 1)
        for n in REDUCE:
            f = getattr(mx, n)
            # var / std = E[x^2] - E[x]^2 cancel: their rounding is relative to E[x^2] (25 times
            # the variance of values in [0, 60]), and a sequential float32 sum of 60000 squares
            # (the CPU's) drifts by about sqrt(n) ulps of it
            u, sc = (0, None) if n in EXACT_REDUCE else (1024 if n in ("var", "std") else 64, "max")
            zz = z if n != "prod" else near1
            check(f"{n} split[{dt}]", lambda f=f, zz=zz: f(zz), ulps=u, scale=sc)
            check(f"{n} column[{dt}]", lambda f=f: f(col, axis=0), ulps=u, scale=sc)


# linear algebra and the rest of gpu_sweep.py: computed by other algorithms and orders on each
# backend, so compared relative to the result's largest value: a few ulps for the halves (their
# results are rounded from float), more for float32 / float64 (a 4x4 well-conditioned problem's
# error is a small multiple of the unit roundoff)
LIN = {"float16": 4, "bfloat16": 4, "default": 256}


def sweep_rest():
    for dt in DTYPES:
        fl = dt in FLOATS

        def g(f, *xs):
            return mx.grad(lambda *a: mx.sum(f(*a)), argnums=tuple(range(len(xs))))(*xs)
        sq = arr(np_of(rand(dt, (3, 4, 4), -1, 1)) + 4 * np.eye(4), dt)
        sym = (lambda s: arr((np_of(s) + np.swapaxes(np_of(s), -1, -2)) / 2, dt))(sq)
        posdef = (lambda s: arr(np_of(s) @ np.swapaxes(np_of(s), -1, -2) + 4 * np.eye(4), dt))(sq)
        x3, w, bb = rand(dt, (2, 5, 16)), rand(dt, (16,)), rand(dt, (16,))
        cases = [
            ("addmm", lambda: mx.addmm(rand(dt, (5,)), rand(dt, (4, 6)), rand(dt, (6, 5)))),
            ("conv1d", lambda: mx.conv1d(rand(dt, (2, 9, 3)), rand(dt, (4, 3, 3)))),
            ("conv2d", lambda: mx.conv2d(rand(dt, (2, 6, 6, 3)), rand(dt, (4, 3, 3, 3)), stride=2, padding=1)),
            ("conv3d", lambda: mx.conv3d(rand(dt, (1, 4, 4, 4, 2)), rand(dt, (3, 2, 2, 2, 2)))),
            ("conv_transpose2d", lambda: mx.conv_transpose2d(rand(dt, (1, 5, 5, 2)), rand(dt, (3, 3, 3, 2)), stride=2)),
            ("conv1d groups", lambda: mx.conv1d(rand(dt, (2, 9, 4)), rand(dt, (4, 3, 2)), groups=2)),
            ("fft", lambda: mx.fft.fft(sq)), ("rfft", lambda: mx.fft.rfft(sq)), ("irfft", lambda: mx.fft.irfft(sq)),
            ("fftn", lambda: mx.fft.fftn(sq, axes=[0, 2])), ("ifft n=9", lambda: mx.fft.ifft(sq, n=9)),
            ("svd values", lambda: mx.linalg.svd(sq, compute_uv=False)),
            ("svd reconstruction", lambda: (lambda usv: usv[0] * usv[1][..., None, :] @ usv[2])(mx.linalg.svd(sq))),
            ("qr reconstruction", lambda: (lambda qr: qr[0] @ qr[1])(mx.linalg.qr(sq))),
            ("qr |R|", lambda: mx.abs(mx.linalg.qr(sq)[1])),
            ("eigvalsh", lambda: mx.linalg.eigvalsh(sym)), ("eigh values", lambda: mx.linalg.eigh(sym)[0]),
            ("eigh |V|", lambda: mx.abs(mx.linalg.eigh(sym)[1])),
            ("eig values sorted", lambda: mx.sort(mx.real(mx.linalg.eig(sq)[0]), axis=-1)),
            ("lu", lambda: mx.linalg.lu(sq)), ("lu_factor", lambda: mx.linalg.lu_factor(sq)),
            ("inv", lambda: mx.linalg.inv(sq)), ("solve", lambda: mx.linalg.solve(sq, rand(dt, (3, 4, 2)))),
            ("cholesky", lambda: mx.linalg.cholesky(posdef)), ("pinv", lambda: mx.linalg.pinv(sq)),
            ("norm fro", lambda: mx.linalg.norm(sq, axis=(-2, -1))),
            ("norm nuc", lambda: mx.linalg.norm(sq, ord="nuc", axis=(-2, -1))),
            ("tri_inv", lambda: mx.linalg.tri_inv(sq)),
            ("solve_triangular", lambda: mx.linalg.solve_triangular(sq, rand(dt, (3, 4, 2)))),
            ("cross", lambda: mx.linalg.cross(rand(dt, (5, 3)), rand(dt, (5, 3)))), ("det", lambda: mx.linalg.det(sq)),
            ("trace", lambda: mx.trace(sq, axis1=-2, axis2=-1)), ("kron", lambda: mx.kron(rand(dt, (2, 2)), rand(dt, (2, 3)))),
            ("outer", lambda: mx.outer(rand(dt, (3,)), rand(dt, (4,)))),
            ("tensordot", lambda: mx.tensordot(rand(dt, (3, 4)), rand(dt, (4, 2)), axes=1)),
            ("einsum", lambda: mx.einsum("ij,jk->ik", rand(dt, (3, 4)), rand(dt, (4, 2)))),
            ("softmax", lambda: mx.softmax(x3, axis=-1)), ("log_softmax", lambda: nn.log_softmax(x3, axis=-1)),
            ("layer_norm", lambda: mx.fast.layer_norm(x3, w, bb, 1e-5)), ("rms_norm", lambda: mx.fast.rms_norm(x3, w, 1e-5)),
            ("rope", lambda: mx.fast.rope(x3, 16, traditional=False, base=10000.0, scale=1.0, offset=3)),
            ("rope traditional", lambda: mx.fast.rope(x3, 8, traditional=True, base=10000.0, scale=0.5, offset=0)),
            ("quantize", lambda: mx.quantize(rand(dt, (8, 64)), group_size=32, bits=4)),
            ("quantized_matmul", lambda: mx.quantized_matmul(rand(dt, (3, 64)), *mx.quantize(rand(dt, (8, 64)), group_size=32, bits=4),
                                                             group_size=32, bits=4)),
        ]
        if fl:
            cases += [
                ("matmul grad", lambda: g(mx.matmul, rand(dt, (4, 6)), rand(dt, (6, 5)))),
                ("conv2d grad", lambda: g(lambda x, w: mx.conv2d(x, w, stride=2, padding=1), rand(dt, (2, 6, 6, 3)), rand(dt, (4, 3, 3, 3)))),
                ("conv1d groups grad", lambda: g(lambda x, w: mx.conv1d(x, w, groups=2), rand(dt, (2, 9, 4)), rand(dt, (4, 3, 2)))),
                ("rfft grad", lambda: g(lambda x: mx.abs(mx.fft.rfft(x)), sq)),
                ("svd grad", lambda: g(lambda x: mx.linalg.svd(x, compute_uv=False), sq)),
                ("inv grad", lambda: g(mx.linalg.inv, sq)), ("eigh grad", lambda: g(lambda x: mx.linalg.eigh(x)[0], sym)),
                ("softmax grad", lambda: g(lambda x: mx.softmax(x, axis=-1) * mx.arange(16), x3)),
                ("layer_norm grad", lambda: g(lambda x, w, b: mx.fast.layer_norm(x, w, b, 1e-5) * mx.arange(16), x3, w, bb)),
                ("rms_norm grad", lambda: g(lambda x, w: mx.fast.rms_norm(x, w, 1e-5) * mx.arange(16), x3, w)),
            ]
            for D, Dv in [(64, 64), (128, 128), (160, 96)]:
                q, k, v = rand(dt, (1, 4, 7, D), -1, 1), rand(dt, (1, 2, 9, D), -1, 1), rand(dt, (1, 2, 9, Dv), -1, 1)
                msk = rand(dt, (7, 9), -1, 1)
                cases += [(f"sdpa D{D} causal", lambda q=q, k=k, v=v: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.1, mask="causal")),
                          (f"sdpa D{D} add mask grad", lambda q=q, k=k, v=v, msk=msk: g(
                              lambda q, k, v: mx.fast.scaled_dot_product_attention(q, k, v, scale=0.1, mask=msk), q, k, v))]
        for tag, fn in cases:
            check(f"{tag}[{dt}]", fn, ulps=LIN, scale="max")


FAMILIES = {"unary": sweep_unary, "binary": sweep_binary, "reduce": sweep_reduce, "scans": sweep_scans,
            "sort": sweep_sort, "large": sweep_large, "rest": sweep_rest, "astype": sweep_astype, "indexing": sweep_indexing, "random": sweep_random}


def main(names):
    for n in names or FAMILIES:
        FAMILIES[n]()
    for f in raised:
        print("RAISED", f)
    for f in failures:
        print("MISMATCH", f)
    print(f"sweep done: {count[0]} cases, {len(failures)} mismatches")


if __name__ == "__main__":
    main(sys.argv[1:])
else:
    import pytest

    @pytest.mark.skipif(not mx.cuda.is_available(), reason="no usable GPU")
    def test_gpu_values_equal_cpu_values_in_every_dtype():
        env = dict(os.environ, PONTE_GPU_STRICT="1", PONTE_ENABLE_TF32="0")
        r = subprocess.run([sys.executable, os.path.abspath(__file__)], env=env, capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0 and "sweep done" in r.stdout, r.stdout[-4000:] + r.stderr[-4000:]
        bad = [line for line in r.stdout.splitlines() if line.startswith("MISMATCH")]
        assert not bad, f"{len(bad)} mismatches:\n" + "\n".join(bad)
