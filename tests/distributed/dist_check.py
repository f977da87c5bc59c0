"""dist_check.py — ponte.distributed over a backend, run by
tests/python/test_distributed_backends.py as `tests/distributed/run-mpi.sh 2 python3
tests/distributed/dist_check.py` or through run-ring.sh (PONTE_TEST_DIST_BACKEND=ring): every
rank rebuilds every rank's random data (seeded by rank) and checks the collectives, send/recv,
split groups, errors, gradients, nn.average_gradients and data-parallel training (eager and
compiled) against numpy. Prints "rank R: N checks OK" and exits 0, or raises."""
import os
import sys

import numpy as np

import ponte as mx
import ponte.nn as nn
import ponte.optimizers as optim
from ponte.nn import distributed as dist
from ponte.utils import tree_flatten

D = mx.distributed
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(f"rank {R}: {what}")
    checks += 1


def close(a, ref, what, tol=1e-6):
    a = np.array(a)
    check(a.shape == np.shape(ref), f"{what}: shape {a.shape} vs {np.shape(ref)}")
    check(np.allclose(a.astype(np.complex128), np.asarray(ref).astype(np.complex128), rtol=tol,
                      atol=tol), f"{what}: {a} vs {ref}")


def data(rank, shape, dtype, salt=0):
    """Rank rank's array (numpy, exactly representable in dtype)."""
    rng = np.random.default_rng(1000 * rank + salt)
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype in ("int8", "int32", "int64", "uint8", "uint16"):
        return rng.integers(0 if dtype[0] == "u" else -20, 20, shape).astype(dtype)
    v = rng.integers(-100, 100, shape) / 8.0  # exact in every float dtype (bfloat16 too)
    if dtype == "complex64":
        return (v + 1j * rng.integers(-100, 100, shape) / 8.0).astype(np.complex64)
    return v


g = D.init(strict=True)
R, N = g.rank(), g.size()
BACKEND = os.environ.get("PONTE_TEST_DIST_BACKEND") or "mpi"
OTHER = "ring" if BACKEND == "mpi" else "mpi"  # nccl: the ring's world, NCCL for GPU nodes
check(N >= 2 and D.is_available() and D.is_available(BACKEND), "world")
check(D.init().rank() == R and D.init(backend=BACKEND).size() == N, "init is cached")
try:
    D.init(strict=True, backend=OTHER)
    check(False, f"{OTHER} should fail")
except RuntimeError:
    checks += 1

# all_sum / all_max / all_min for the dtypes
DTYPES = ["float32", "float64", "int32", "int8", "uint16", "bool", "float16", "bfloat16",
          "complex64"]
for dt in DTYPES:
    for shape in [(), (5,), (2, 3)]:
        xs = [data(r, shape, dt) for r in range(N)]
        x = mx.array(xs[R]).astype(getattr(mx, "bool_" if dt == "bool" else dt))
        if dt == "bool":
            refs = [np.logical_or.reduce(xs), np.logical_or.reduce(xs), np.logical_and.reduce(xs)]
        elif dt == "complex64":
            refs = [np.sum(xs, axis=0)]
        else:
            refs = [np.sum(xs, axis=0), np.max(xs, axis=0), np.min(xs, axis=0)]
        for fn, ref in zip([D.all_sum, D.all_max, D.all_min], refs):
            y = fn(x)
            check(y.dtype == x.dtype, f"{fn.__name__} dtype")
            got = np.array(y.astype(mx.float64) if dt == "bfloat16" else y)
            close(got, ref, f"{fn.__name__} {dt} {shape}", 1e-2 if dt in ("float16", "bfloat16") else 1e-6)
        # all_gather: along axis 0 (a scalar becomes shape (N,))
        y = D.all_gather(x, group=g)
        ref = np.stack(xs) if shape == () else np.concatenate(xs)
        got = np.array(y.astype(mx.float64) if dt == "bfloat16" else y)
        close(got, ref, f"all_gather {dt} {shape}")

# sum_scatter: this rank's rows of the sum
xs = [data(r, (2 * N, 3), "float32") for r in range(N)]
close(D.sum_scatter(mx.array(xs[R])), np.sum(xs, axis=0)[2 * R:2 * R + 2], "sum_scatter")
try:
    D.sum_scatter(mx.zeros((2 * N + 1,)))
    check(False, "sum_scatter of a bad shape")
except ValueError:
    checks += 1

# send / recv in a ring (recv, recv_like)
nxt, prv = (R + 1) % N, (R - 1) % N
x = mx.array(data(R, (3, 4), "float32"))
s = D.send(x, nxt)
r1 = D.recv((3, 4), mx.float32, prv)
mx.eval(s, r1)
close(r1, data(prv, (3, 4), "float32"), "recv")
close(s, np.array(x), "send returns x")
s = D.send(x * 2, dst=nxt, group=g)
r2 = D.recv_like(x, src=prv, group=g)
mx.eval(s, r2)
close(r2, 2 * data(prv, (3, 4), "float32"), "recv_like")
for bad in [lambda: D.send(x, N), lambda: D.recv((2,), mx.float32, -1)]:
    try:
        bad()
        check(False, "bad peer")
    except ValueError:
        checks += 1

# split groups: parity classes, reversed by key
sub = g.split(R % 2, key=N - R)
members = [r for r in range(N) if r % 2 == R % 2]
check(sub.size() == len(members), "split size")
check(sub.rank() == sum(m > R for m in members), "split rank by key")
close(D.all_sum(mx.array(data(R, (4,), "float64")), group=sub),
      np.sum([data(m, (4,), "float64") for m in members], axis=0), "split all_sum")
check(g.split(0).rank() == R, "split with the default key")

# a size mismatch is an error on every rank, not a hang
try:
    mx.eval(D.all_sum(mx.zeros((3 + (R == 1),))))
    check(False, "mismatched all_sum")
except ValueError as e:
    check("different sizes" in str(e), f"mismatch message: {e}")

# gradients: all_sum passes the cotangent, all_gather slices this rank's rows
w = mx.array(data(R, (2 * N, 3), "float64", salt=7))
xg = mx.array(data(R, (2, 3), "float64"))
gsum = mx.grad(lambda v: (D.all_sum(v) * w[:2]).sum())(xg)
close(gsum, np.array(w[:2]), "grad all_sum")
ggat = mx.grad(lambda v: (D.all_gather(v) * w).sum())(xg)
close(ggat, np.array(w)[2 * R:2 * R + 2], "grad all_gather")

# nn.average_gradients: every batching gives the mean over the ranks
tree = {"a": mx.array(data(R, (3, 4), "float32"), mx.float32),
        "b": [mx.array(data(R, (5,), "float32", 1), mx.float32),
              mx.array(data(R, (2, 2), "float32", 2), mx.float32)]}
refs = {k: np.mean([data(r, shape, "float32", salt) for r in range(N)], axis=0)
        for k, shape, salt in [("a", (3, 4), 0), ("b.0", (5,), 1), ("b.1", (2, 2), 2)]}
for size in [0, 1, 16, 40, 32 * 1024**2]:
    avg = dict(tree_flatten(nn.average_gradients(tree, all_reduce_size=size)))
    for k, ref in refs.items():
        close(avg[k], ref, f"average_gradients size={size} {k}")
mixed = {"a": tree["a"], "c": mx.array(data(R, (3,), "float64", 3), mx.float64)}
avg = nn.average_gradients(mixed, group=g)
close(avg["c"], np.mean([data(r, (3,), "float64", 3) for r in range(N)], axis=0), "mixed dtypes")

# data-parallel training: each rank trains on its shard of every batch with averaged gradients;
# the parameters must equal one process training on whole batches
rng = np.random.default_rng(0)
X, Y = rng.standard_normal((4 * N, 5)), rng.standard_normal((4 * N, 2))
W0, B0 = rng.standard_normal((5, 2)) * 0.3, np.zeros(2)


def loss_fn(p, x, y):
    return ((mx.tanh(x @ p["w"] + p["b"]) - y) ** 2).mean()


grad_fn = mx.grad(loss_fn)


def averaged_grads(p, x, y):
    return nn.average_gradients(grad_fn(p, x, y))


def train(x, y, distributed, compiled=False):
    p = {"w": mx.array(W0, mx.float64), "b": mx.array(B0, mx.float64)}
    opt = optim.SGD(learning_rate=0.1, momentum=0.9)
    # as mlx-lm's trainer: the gradient average inside the compiled function
    fn = averaged_grads if distributed else grad_fn
    fn = mx.compile(fn) if compiled else fn
    for _ in range(5):
        grads = fn(p, mx.array(x, mx.float64), mx.array(y, mx.float64))
        p = opt.apply_gradients(grads, p)
        mx.eval(p)
    return p


shard = slice(4 * R, 4 * R + 4)
full = train(X, Y, False)
for compiled in (False, True):
    dp = train(X[shard], Y[shard], True, compiled)
    for k in ("w", "b"):
        close(dp[k], np.array(full[k]), f"data-parallel {k} compiled={compiled}", 1e-12)
        check(np.array(dp[k]).dtype == np.float64, "float64 training")

# tensor parallelism: an all-to-sharded then a sharded-to-all layer (nn.shard_linear) equal
# the whole two-layer model, forward and input gradient (every rank builds the same layers)
mx.random.seed(3)
l1, l2 = nn.Linear(8, 6 * N), nn.Linear(6 * N, 4)
xin = mx.array(rng.standard_normal((5, 8)), mx.float32)
s1 = dist.shard_linear(l1, "all-to-sharded")
s2 = dist.shard_linear(l2, "sharded-to-all")
check(s1.weight.shape == (6, 8) and s2.weight.shape == (4, 6), "sharded shapes")
close(s2(mx.maximum(s1(xin), 0)), np.array(l2(mx.maximum(l1(xin), 0))), "tensor parallel", 1e-5)
gfull = mx.grad(lambda v: l2(mx.maximum(l1(v), 0)).sum())(xin)
gshard = mx.grad(lambda v: s2(mx.maximum(s1(v), 0)).sum())(xin)
close(gshard, np.array(gfull), "tensor-parallel input gradient", 1e-5)

print(f"rank {R}: {checks} checks OK", flush=True)
sys.exit(0)
