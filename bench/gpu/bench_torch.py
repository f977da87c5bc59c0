#!/usr/bin/env python3
"""bench_torch.py — the workloads of bench/gpu/bench_gpu.c in PyTorch (eager) on CUDA, printed as
`torch NAME: VALUE UNIT`; with --ponte LOG (ponte_bench_gpu's output) it also prints, per figure,
Ponte's speed over PyTorch's. Timing: warm-up, then CUDA events around each repetition, median
(op_overhead_gpu uses the host clock, as Ponte's does). Method: docs/benchmarks.md, "GPU".

usage: python3 bench/gpu/bench_torch.py [--quick] [--ponte LOG] [WORD...]
Exits 0 with a message when PyTorch or a CUDA device is missing.
"""
import argparse
import re
import statistics
import sys
import time

# The sizes of bench_gpu.c (FULL and QUICK there): keep the two in step.
FULL = dict(n=1 << 26, sm_rows=4096, sm_cols=4096, sgemm_n=4096, bf16_n=8192, batch=256,
            norm_rows=4096, norm_cols=4096, table_rows=65536, lookups=16384, gather_cols=2048,
            scatter_cols=1024, attn_batch=2, attn_heads=16, attn_len=2048, attn_dim=128,
            chain=1000, warmup=5, reps=50, budget=3.0)
QUICK = dict(n=1 << 16, sm_rows=64, sm_cols=1024, sgemm_n=256, bf16_n=256, batch=16,
             norm_rows=16, norm_cols=4096, table_rows=512, lookups=64, gather_cols=2048,
             scatter_cols=1024, attn_batch=1, attn_heads=2, attn_len=128, attn_dim=64,
             chain=1000, warmup=1, reps=3, budget=2.0)
NORM_EPS = 1e-5
HOT_ROWS = 16  # every 8th index names one of the table's first HOT_ROWS rows (bench_gpu.c's)

# Units where a smaller value is faster (the speed ratio inverts them).
TIME_UNITS = {"ms", "us/op"}


def count_label(n):
    """64M, 64K, or the plain count (as bench_gpu.c names its figures)."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10}K"
    return str(n)


class Bench:
    def __init__(self, torch, S):
        self.torch, self.S = torch, S
        self.results = {}  # name -> (value, unit)

    def median_ms(self, fn, host_clock=False):
        """Median milliseconds of fn over S.reps timed runs (or S.budget seconds, at least 3)
        after S.warmup untimed ones; each run is synchronized before the next starts."""
        torch, S = self.torch, self.S
        for _ in range(S["warmup"]):
            fn()
        torch.cuda.synchronize()
        times, start = [], time.perf_counter()
        for i in range(S["reps"]):
            if host_clock:
                t0 = time.perf_counter()
                fn()
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t0) * 1e3)
            else:
                e0 = torch.cuda.Event(enable_timing=True)
                e1 = torch.cuda.Event(enable_timing=True)
                e0.record()
                fn()
                e1.record()
                e1.synchronize()
                times.append(e0.elapsed_time(e1))
            if i >= 2 and time.perf_counter() - start > S["budget"]:
                break
        return statistics.median(times)

    def report(self, name, value, unit):
        self.results[name] = (value, unit)
        print(f"torch {name}: {value:.3f} {unit}", flush=True)

    @staticmethod
    def note(msg):
        print(f"  note: {msg}", flush=True)

    # ── add, sum, softmax, against torch's own device copy ──
    def bandwidth(self):
        torch, S = self.torch, self.S
        n, lbl = S["n"], count_label(S["n"])
        a = torch.rand(n, device="cuda") * 2 - 1
        b = torch.rand(n, device="cuda") * 2 - 1
        dst = torch.empty_like(a)
        nb = a.numel() * 4
        t_copy = self.median_ms(lambda: dst.copy_(a))
        copy_gbs = 2 * nb / t_copy / 1e6
        self.note(f"torch device copy of {nb / 1e6:.0f} MB: {t_copy:.3f} ms = {copy_gbs:.1f} GB/s "
                  "(read+write)")

        assert torch.equal((a + b)[:1000], a[:1000] + b[:1000])
        t = self.median_ms(lambda: a + b)
        self.report(f"add_f32_{lbl}", 3 * nb / t / 1e6, "GB/s")
        self.note(f"median {t:.3f} ms; ratio {(3 * nb / t) / (2 * nb / t_copy):.3f} vs torch copy")

        ref = a.double().sum().item()
        assert abs(a.sum().item() - ref) <= 1e-6 * a.abs().double().sum().item()
        t = self.median_ms(lambda: a.sum())
        self.report(f"sum_f32_{lbl}", nb / t / 1e6, "GB/s")
        self.note(f"median {t:.3f} ms; ratio {t_copy / t:.3f} vs torch copy's read bandwidth")
        del a, b, dst

        rows, cols = S["sm_rows"], S["sm_cols"]
        x = torch.rand(rows, cols, device="cuda") * 8 - 4
        torch.testing.assert_close(torch.softmax(x, -1)[:3], torch.softmax(x[:3].double(), -1).float())
        t = self.median_ms(lambda: torch.softmax(x, -1))
        sm_bytes = 2 * x.numel() * 4
        self.report(f"softmax_{rows}x{cols}", sm_bytes / t / 1e6, "GB/s")
        self.note(f"median {t:.3f} ms; ratio {(sm_bytes / t) / (2 * nb / t_copy):.3f} vs torch copy")

    # ── GEMMs: full-precision f32, f32 through TF32, and bf16 (Ponte's figures likewise) ──
    def gemms(self):
        torch, S = self.torch, self.S
        for name, n, dt, tf32 in (("sgemm", S["sgemm_n"], torch.float32, False),
                                  ("tf32_gemm", S["sgemm_n"], torch.float32, True),
                                  ("bf16_gemm", S["bf16_n"], torch.bfloat16, False)):
            torch.backends.cuda.matmul.allow_tf32 = tf32
            a = (torch.rand(n, n, device="cuda") * 2 - 1).to(dt)
            b = (torch.rand(n, n, device="cuda") * 2 - 1).to(dt)
            c = a @ b
            ref = a[:4].double() @ b.double()
            err = (c[:4].double() - ref).abs().max().item()
            assert err <= 1e-2 * ref.abs().max().item() + 1e-3, (name, err)
            t = self.median_ms(lambda: a @ b)
            self.report(f"{name}_{n}", 2 * n ** 3 / t / 1e9, "TFLOP/s")
            self.note(f"median {t:.3f} ms")
            del a, b, c
        torch.backends.cuda.matmul.allow_tf32 = False

    # ── training steps of the two Fashion-MNIST models ──
    def train(self, kind):
        torch, S = self.torch, self.S
        nn, F = torch.nn, torch.nn.functional
        B = S["batch"]
        if kind == "mlp":
            def make():
                return nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512),
                                     nn.ReLU(), nn.Linear(512, 10)).cuda()
            x = torch.rand(B, 784, device="cuda")
        else:
            def make():
                return nn.Sequential(
                    nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                    nn.Linear(7 * 7 * 64, 128), nn.ReLU(), nn.Linear(128, 10)).cuda()
            x = torch.rand(B, 1, 28, 28, device="cuda")
        y = torch.randint(0, 10, (B,), device="cuda")
        best = None
        for fused in (False, True):  # the default Adam (foreach on CUDA), then fused=True
            model = make()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                   fused=fused)

            def step():
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                return loss

            first = step().item()
            t = self.median_ms(step)
            last = step().item()
            assert last < first, (kind, first, last)
            if not fused:
                self.report(f"{kind}_step", t, "ms")
                self.note(f"batch {B}: {B / t * 1e3:.0f} images/s (Adam foreach); loss "
                          f"{first:.4f} -> {last:.4f} on the fixed batch")
            else:
                self.note(f"with Adam(fused=True): {t:.3f} ms, {B / t * 1e3:.0f} images/s")

    # ── launch overhead: a chain of tiny adds, host clock ──
    def op_overhead(self):
        torch, S = self.torch, self.S
        x0 = torch.full((1,), 0.5, device="cuda")
        one = torch.ones(1, device="cuda")

        def chain():
            x = x0
            for _ in range(S["chain"]):
                x = x + one
            return x

        assert chain().item() == 0.5 + S["chain"]
        t = self.median_ms(chain, host_clock=True)
        self.report("op_overhead_gpu", t * 1e3 / S["chain"], "us/op")
        self.note(f"chain of {S['chain']} adds on 1 element, eager, host clock with "
                  "synchronize")

    def graph_overhead(self):
        """S["chain"] in-place adds on 1 element captured into one torch.cuda.CUDAGraph and
        replayed (Ponte's graph_overhead_gpu)."""
        torch, S = self.torch, self.S
        x = torch.full((1,), 0.5, device="cuda")
        one = torch.ones(1, device="cuda")
        side = torch.cuda.Stream()  # capture wants a warmed-up side stream
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            x.add_(one)
        torch.cuda.current_stream().wait_stream(side)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            for _ in range(S["chain"]):
                x.add_(one)
        x.fill_(0.5)
        g.replay()
        assert x.item() == 0.5 + S["chain"]
        t = self.median_ms(g.replay, host_clock=True)
        self.report("graph_overhead_gpu", t * 1e3 / S["chain"], "us/op")
        self.note(f"{S['chain']} in-place adds on 1 element replayed from one CUDA graph")

    def bandwidth_figure(self, name, nbytes, fn, src):
        """Reports nbytes moved by fn in GB/s, and notes the ratio against torch's device copy of
        src (counted read+write), timed just before."""
        dst = self.torch.empty_like(src)
        copy_bytes = 2 * src.numel() * src.element_size()
        t_copy = self.median_ms(lambda: dst.copy_(src))
        del dst
        t = self.median_ms(fn)
        self.report(name, nbytes / t / 1e6, "GB/s")
        self.note(f"median {t:.3f} ms; ratio {(nbytes / t) / (copy_bytes / t_copy):.3f} vs torch "
                  f"copy of {copy_bytes / 2e6:.4g} MB ({copy_bytes / t_copy / 1e6:.1f} GB/s)")

    # ── LayerNorm / RMSNorm (bfloat16) and RMSNorm's backward (bytes as bench_gpu.c counts them) ──
    def norms(self):
        torch, S = self.torch, self.S
        F = torch.nn.functional
        if not hasattr(F, "rms_norm"):
            raise RuntimeError("torch.nn.functional.rms_norm needs PyTorch >= 2.4")
        R, N, bf = S["norm_rows"], S["norm_cols"], torch.bfloat16
        x = (torch.rand(R, N, device="cuda") * 3 - 1).to(bf)
        g = (torch.rand(R, N, device="cuda") * 2 - 1).to(bf)
        w = (torch.rand(N, device="cuda") + 0.5).to(bf)
        b = (torch.rand(N, device="cuda") - 0.5).to(bf)
        xb, vb, rows, lbl = R * N * 2, N * 2, [0, R // 2, R - 1], f"{R}x{N}"

        def close(got, ref):  # bfloat16 output rounding, as bench_gpu.c's checks
            torch.testing.assert_close(got.double(), ref, rtol=1 / 128, atol=1e-2)

        def rms_ref(xd, wd):
            return xd * torch.rsqrt(xd.pow(2).mean(-1, keepdim=True) + NORM_EPS) * wd

        close(F.layer_norm(x, (N,), w, b, NORM_EPS)[rows],
              F.layer_norm(x[rows].double(), (N,), w.double(), b.double(), NORM_EPS))
        self.bandwidth_figure(f"layer_norm_bf16_{lbl}", 2 * xb + 3 * vb,
                              lambda: F.layer_norm(x, (N,), w, b, NORM_EPS), x)

        close(F.rms_norm(x, (N,), w, NORM_EPS)[rows], rms_ref(x[rows].double(), w.double()))
        self.bandwidth_figure(f"rms_norm_bf16_{lbl}", 2 * xb + 2 * vb,
                              lambda: F.rms_norm(x, (N,), w, NORM_EPS), x)

        # the backward alone: the graph of one forward, kept, differentiated each repetition
        xr, wr = x.detach().requires_grad_(), w.detach().requires_grad_()
        y = F.rms_norm(xr, (N,), wr, NORM_EPS)
        dx, dw = torch.autograd.grad(y, (xr, wr), g, retain_graph=True)
        xd, wd = x.double().requires_grad_(), w.double().requires_grad_()
        dxd, dwd = torch.autograd.grad(rms_ref(xd, wd), (xd, wd), g.double())
        close(dx[rows], dxd[rows])
        close(dw, dwd)
        del xd, wd, dxd, dwd, dx, dw
        self.bandwidth_figure(f"rms_norm_bwd_bf16_{lbl}", 3 * xb + 2 * vb,
                              lambda: torch.autograd.grad(y, (xr, wr), g, retain_graph=True), x)

    # ── an embedding lookup (index_select) and its backward's shape (index_add, out of place as
    # Ponte's scatter: the table is read and a new one written) ──
    def indexing(self):
        torch, S = self.torch, self.S
        T, K, Cg, Cs = S["table_rows"], S["lookups"], S["gather_cols"], S["scatter_cols"]
        idx = torch.randint(0, T, (K,), device="cuda")
        idx[::8] = torch.randint(0, HOT_ROWS, (len(range(0, K, 8)),), device="cuda")
        idx_b = K * 4  # counted as int32 indices, as Ponte's (torch's are int64)

        table = (torch.rand(T, Cg, device="cuda") * 2 - 1).half()
        out = torch.index_select(table, 0, idx)
        for i in (0, K // 2, K - 1):
            assert torch.equal(out[i], table[int(idx[i])]), ("gather", i)
        self.bandwidth_figure("gather_rows_f16", 2 * K * Cg * 2 + idx_b,
                              lambda: torch.index_select(table, 0, idx), out)
        del table, out

        table = torch.rand(T, Cs, device="cuda") * 2 - 1
        upd = torch.rand(K, Cs, device="cuda") * 2 - 1
        res = table.index_add(0, idx, upd)
        for t in list(range(HOT_ROWS)) + [T - 1]:
            hit = upd[idx == t].double()
            ref = table[t].double() + hit.sum(0)
            mag = table[t].double().abs() + hit.abs().sum(0)
            assert bool(((res[t].double() - ref).abs() <= 4e-5 * mag).all()), ("scatter", t)
        self.bandwidth_figure("scatter_add_rows_f32", 2 * T * Cs * 4 + K * Cs * 4 + idx_b,
                              lambda: table.index_add(0, idx, upd), table)


    # ── fused attention forward, bfloat16, no mask and causal (torch picks its flash kernel) ──
    def sdpa(self):
        torch, S = self.torch, self.S
        F = torch.nn.functional
        B, H, L, D = S["attn_batch"], S["attn_heads"], S["attn_len"], S["attn_dim"]
        q, k, v = ((torch.rand(B, H, L, D, device="cuda") * 2 - 1).bfloat16() for _ in range(3))
        for causal in (False, True):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
            ref = F.scaled_dot_product_attention(q[:1, :1].double(), k[:1, :1].double(),
                                                 v[:1, :1].double(), is_causal=causal)
            err = (o[:1, :1].double() - ref).abs().max().item()
            assert err <= 2e-2 * ref.abs().max().item(), ("sdpa", causal, err)
            t = self.median_ms(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))
            flops = 4 * B * H * L * L * D * (0.5 if causal else 1.0)
            name = f"sdpa_bf16{'_causal' if causal else ''}_{B}x{H}x{L}x{D}"
            self.report(name, flops / t / 1e9, "TFLOP/s")
            self.note(f"median {t:.3f} ms")
            # forward and the gradients of q, k and v (Ponte's sdpa_fwd_bwd figure)
            qg, kg, vg = (x.detach().requires_grad_() for x in (q, k, v))

            def fwd_bwd():
                out = F.scaled_dot_product_attention(qg, kg, vg, is_causal=causal)
                return torch.autograd.grad(out, (qg, kg, vg), q)

            t = self.median_ms(fwd_bwd)
            self.report(name.replace("sdpa_", "sdpa_fwd_bwd_", 1), 3.5 * flops / t / 1e9, "TFLOP/s")
            self.note(f"median {t:.3f} ms")


    # ── one new token's attention over a long cache (bench_gpu.c's sdpa_decode figure) ──
    def sdpa_decode(self):
        torch, S = self.torch, self.S
        F = torch.nn.functional
        B, Hq, Hkv = 4 * S["attn_batch"], 2 * S["attn_heads"], S["attn_heads"] // 2
        L, D = 2 * S["attn_len"], S["attn_dim"]
        q = (torch.rand(B, Hq, 1, D, device="cuda") * 2 - 1).bfloat16()
        k, v = ((torch.rand(B, Hkv, L, D, device="cuda") * 2 - 1).bfloat16() for _ in range(2))
        try:
            F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            run = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        except TypeError:  # an older torch: the kv heads expanded beforehand (not timed)
            ke, ve = (x.repeat_interleave(Hq // Hkv, dim=1) for x in (k, v))
            run = lambda: F.scaled_dot_product_attention(q, ke, ve)
        t = self.median_ms(run)
        self.report(f"sdpa_decode_bf16_{B}x{Hq}x{Hkv}x{L}x{D}", 2 * B * Hkv * L * D * 2 / t / 1e6, "GB/s")
        self.note(f"median {t:.3f} ms")


def compare(results, path):
    """Prints Ponte's speed over PyTorch's for every figure both have."""
    pat = re.compile(r"^bench (\S+): ([0-9.eE+-]+) (\S+) ")
    print(f"PyTorch vs Ponte ({path}): speed ratio = Ponte speed / PyTorch speed, >1: Ponte faster")
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        print(f"  cannot read {path}: {e}")
        return
    seen = set()
    for line in lines:
        m = pat.match(line)
        if not m or m.group(1) not in results:
            continue
        name, pv, unit = m.group(1), float(m.group(2)), m.group(3)
        tv, tunit = results[name]
        if unit != tunit or pv <= 0 or tv <= 0:
            continue
        r = tv / pv if unit in TIME_UNITS else pv / tv
        seen.add(name)
        print(f"compare {name}: ponte {pv:.3f} {unit}, torch {tv:.3f} {unit} "
              f"(ratio {r:.3f} vs torch)")
    for name in results:
        if name not in seen:
            print(f"compare {name}: no Ponte figure in {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="bench_gpu.c's --quick sizes")
    ap.add_argument("--ponte", metavar="LOG", help="ponte_bench_gpu output to compare against")
    ap.add_argument("words", nargs="*", help="run only figures whose names contain a WORD")
    args = ap.parse_args()
    try:
        import torch
    except ImportError as e:
        print(f"bench_torch: PyTorch is not installed ({e}); nothing to compare")
        return 0
    if not torch.cuda.is_available():
        print("bench_torch: PyTorch sees no CUDA device; nothing to compare")
        return 0
    S = QUICK if args.quick else FULL
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    p = torch.cuda.get_device_properties(0)
    print(f"PyTorch {torch.__version__} on {p.name} ({p.multi_processor_count} SMs, "
          f"{p.total_memory / 2**30:.0f} GiB){' (--quick sizes)' if args.quick else ''}",
          flush=True)
    b = Bench(torch, S)
    lbl = count_label(S["n"])
    groups = [
        (f"add_f32_{lbl} sum_f32_{lbl} softmax", b.bandwidth),
        ("sgemm bf16_gemm", b.gemms),
        ("mlp_step", lambda: b.train("mlp")),
        ("cnn_step", lambda: b.train("cnn")),
        ("op_overhead_gpu", b.op_overhead),
        ("graph_overhead_gpu", b.graph_overhead),
        ("layer_norm rms_norm", b.norms),
        ("gather_rows scatter_add_rows", b.indexing),
        ("sdpa_bf16", b.sdpa),
        ("sdpa_decode", b.sdpa_decode),
    ]
    t0 = time.perf_counter()
    for figures, run in groups:
        if args.words and not any(w in figures for w in args.words):
            continue
        try:
            run()
        except Exception as e:  # one failing figure must not hide the others
            print(f"torch {figures.split()[0]}: error: {type(e).__name__}: {e}", flush=True)
        torch.cuda.empty_cache()
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.ponte:
        compare(b.results, args.ponte)
    return 0


if __name__ == "__main__":
    sys.exit(main())
