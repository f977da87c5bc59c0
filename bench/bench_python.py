"""bench_python.py — the Python figures of `make bench`: per-op overhead (Ponte, numpy, MLX), the
tanh GELU over 4M floats through mx.compile (Ponte's generated C against MLX's compiled CPU
kernel, numpy and PyTorch eager) and one training step of the Fashion-MNIST MLP (784-512-512-10, batch 128), CNN (as
examples/fashion_mnist.c --cnn, batch 64) and character language model (as examples/char_lm.c
at its defaults: 2 pre-norm transformer layers, 64 wide, 4 heads, batch 16 x context 64, AdamW
with warmup + cosine decay and gradient clipping) written once and run through ponte and
through MLX (mlx.core/nn/optimizers, the API ponte copies), and the same models written in
PyTorch (torch.nn, NCHW, ponte's weights copied in; threads = the machine's cores), on the
CPU, in one run:
    bench NAME: VALUE UNIT (ratio R vs BASELINE)
R is Ponte's time over the baseline's (lower is better; 0.5 = Ponte takes half the time).
Each side alternates with its baseline round by round and keeps its best time, so both see the
same share of a busy machine. Before timing, the two sides' losses on the same weights and
data are compared, so a wrong step is reported as an error, never as a speed.
PONTE_BENCH_TORCH=0 leaves PyTorch out.
usage: python3 bench/bench_python.py [--quick] [WORD...]   (WORDs pick figures by name)"""
import argparse
import importlib
import math
import os
import sys
import time

import numpy as np


def frameworks():
    """{name: (core, nn, optimizers)} for ponte and every baseline that imports."""
    out = {}
    for name, mods in (("ponte", ("ponte", "ponte.nn", "ponte.optimizers")),
                       ("mlx", ("mlx.core", "mlx.nn", "mlx.optimizers"))):
        try:
            out[name] = tuple(importlib.import_module(m) for m in mods)
        except ImportError:
            pass
    if os.environ.get("PONTE_BENCH_TORCH") == "0":
        print("bench_python: PyTorch skipped (PONTE_BENCH_TORCH=0)")
        return out
    try:
        import torch
        out["torch"] = (torch, torch.nn, torch.optim)
    except ImportError:
        print("bench_python: PyTorch is not importable: no torch figures (`make bench` installs "
              "it into $(BUILD)/torchdeps when PyPI is reachable)")
    return out


def cores():
    """The CPUs this process may run on (ponte's default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def best_alternating(fns, rounds, budget):
    """Best wall time of each callable in fns, called in alternating order (the order swaps
    every round) for up to rounds rounds or budget seconds, after one warm-up call each."""
    for f in fns:
        f()
    best = [float("inf")] * len(fns)
    start = time.perf_counter()
    for r in range(rounds):
        order = list(range(len(fns)))
        if r % 2:
            order.reverse()
        for i in order:
            t0 = time.perf_counter()
            fns[i]()
            best[i] = min(best[i], time.perf_counter() - t0)
        if time.perf_counter() - start > budget:
            break
    return best


def report(name, value, unit, ratio, baseline):
    print(f"bench {name}: {value:.4g} {unit} (ratio {ratio:.3g} vs {baseline})", flush=True)


# ───────────────────────────── per-op overhead ─────────────────────────────

CHAIN = 10000


def chain_runner(mx):
    """A chain of CHAIN additions on a 1-element float32 array, built and evaluated."""
    one = mx.array([1.0], dtype=mx.float32)

    def run():
        x = mx.array([0.0], dtype=mx.float32)
        for _ in range(CHAIN):
            x = x + one
        mx.eval(x)
        return x
    return run


def torch_chain_runner(torch):
    """The chain in eager PyTorch (each addition runs when it is called)."""
    one = torch.ones(1, dtype=torch.float32)

    def run():
        x = torch.zeros(1, dtype=torch.float32)
        with torch.no_grad():
            for _ in range(CHAIN):
                x = x + one
        return x
    return run


def numpy_chain():
    one = np.ones(1, np.float32)
    x = np.zeros(1, np.float32)
    for _ in range(CHAIN):
        x = x + one
    return x


def bench_overhead(fw, quick):
    pn = fw["ponte"][0]
    runners = {"numpy": numpy_chain}
    if "mlx" in fw:
        runners["mlx"] = chain_runner(fw["mlx"][0])
    if "torch" in fw:
        runners["torch"] = torch_chain_runner(fw["torch"][0])
    ponte_run = chain_runner(pn)
    got = float(np.array(ponte_run())[0])
    if got != float(CHAIN):
        print(f"bench py_op_overhead: error: the chain gave {got}, not {CHAIN}")
        return
    names = list(runners)
    times = best_alternating([ponte_run] + [runners[n] for n in names], 3 if quick else 7,
                             5 if quick else 20)
    us = times[0] / CHAIN * 1e6
    for n, t in zip(names, times[1:]):
        report(f"py_op_overhead_vs_{n}", us, "us/op", times[0] / t, f"{n} {t / CHAIN * 1e6:.3g} us/op")


# ───────────────────────────── compiled elementwise chain ─────────────────────────────

def gelu(mx):
    """The tanh GELU (as nn.gelu_approx), nine elementwise ops."""
    c = math.sqrt(2 / math.pi)
    return lambda x: 0.5 * x * (1 + mx.tanh(c * (x + 0.044715 * x * x * x)))


def bench_compile(fw, quick):
    """py_compile_gelu: mx.compile of the tanh GELU over 4M float32 (one fused kernel: on the
    CPU, C generated and built by the system compiler), against MLX's mx.compile, numpy and
    PyTorch eager; each side's result checked against numpy's float64 first."""
    x_np = np.random.default_rng(0).standard_normal(1 << 22).astype(np.float32)
    ref = gelu(np)(x_np.astype(np.float64))
    runners = {"numpy": lambda: gelu(np)(x_np)}
    def compiled(mx):
        f, x = mx.compile(gelu(mx)), mx.array(x_np)

        def run():
            y = f(x)
            mx.eval(y)
            return y
        return run
    for n in ("ponte", "mlx"):
        if n in fw:
            runners[n] = compiled(fw[n][0])
    if "torch" in fw:
        torch = fw["torch"][0]
        xt = torch.from_numpy(x_np)
        runners["torch"] = lambda: gelu(torch)(xt)
    for n, run in runners.items():
        got = np.array(run(), dtype=np.float64)
        err = np.max(np.abs(got - ref)) / np.max(np.abs(ref))  # float32 rounding: ~1e-7
        if not err < 1e-5:
            print(f"bench py_compile_gelu: error: {n}'s GELU is {err:.3g} off float64")
            return
    names = [n for n in runners if n != "ponte"]
    times = best_alternating([runners["ponte"]] + [runners[n] for n in names], 3 if quick else 10,
                             5 if quick else 20)
    for n, t in zip(names, times[1:]):
        report(f"py_compile_gelu_vs_{n}", times[0] * 1e3, "ms", times[0] / t, f"{n} {t * 1e3:.3g} ms")


# ───────────────────────────── training steps ─────────────────────────────

def mlp_model(mx, nn, hidden=512):
    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = [nn.Linear(784, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 10)]

        def __call__(self, x):
            for layer in self.layers[:-1]:
                x = nn.relu(layer(x))
            return self.layers[-1](x)
    return MLP()


def cnn_model(mx, nn):
    """conv 3x3 32 → relu → maxpool 2 → conv 3x3 64 → relu → maxpool 2 → linear 128 → 10."""
    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(7 * 7 * 64, 128)
            self.fc2 = nn.Linear(128, 10)

        def __call__(self, x):
            x = x.reshape(-1, 28, 28, 1)
            x = self.pool(nn.relu(self.conv1(x)))
            x = self.pool(nn.relu(self.conv2(x)))
            x = x.reshape(x.shape[0], -1)
            return self.fc2(nn.relu(self.fc1(x)))
    return CNN()


def char_lm_model(vocab, layers=2, dims=64, heads=4):
    """examples/char_lm.c's model: token embedding + sinusoidal positions, a pre-norm
    nn.TransformerEncoder under an additive causal mask, a linear head (MLX's transformer_lm
    example has the same modules and names)."""
    def make(mx, nn):
        class CharLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = nn.Embedding(vocab, dims)
                self.pe = nn.SinusoidalPositionalEncoding(dims)
                self.transformer = nn.TransformerEncoder(layers, dims, heads, norm_first=True)
                self.out_proj = nn.Linear(dims, vocab)

            def __call__(self, x):
                T = x.shape[1]
                mask = nn.MultiHeadAttention.create_additive_causal_mask(T)
                h = self.embedding(x) + self.pe(mx.arange(T))
                return self.out_proj(self.transformer(h, mask))
        return CharLM()
    make.torch = lambda torch, P: torch_char_lm(torch, P, heads)
    return make


def char_lm_data(rng, batch, context, path="/usr/share/games/fortunes"):
    """(x, y, vocab): batch random windows of context + 1 byte tokens of the example's default
    text (the directory's regular files but fortune's .dat indexes, in name order, as the
    example reads it; its distinct bytes in byte order as the vocabulary), or of random tokens
    over 96 symbols when the text is missing."""
    import os
    chunks = []
    try:
        for name in sorted(os.listdir(path)):
            full = os.path.join(path, name)
            if not name.startswith(".") and not name.endswith(".dat") and \
                    os.path.isfile(full) and not os.path.islink(full):
                with open(full, "rb") as f:
                    chunks.append(f.read())
    except OSError:
        pass
    text = np.frombuffer(b"".join(chunks), np.uint8)
    if text.size < context + 2:
        text = rng.integers(0, 96, 1 << 16).astype(np.uint8)
    symbols = np.unique(text)
    ids = np.searchsorted(symbols, text).astype(np.int32)
    starts = rng.integers(0, ids.size - context - 1, batch)
    win = np.stack([ids[s:s + context + 1] for s in starts])
    return win[:, :-1], win[:, 1:], int(symbols.size)


def copy_weights(src, dst, mx_dst):
    """dst's parameters set to src's values (numpy float32 in between)."""
    from ponte.utils import tree_flatten, tree_unflatten
    flat = [(k, mx_dst.array(np.array(v))) for k, v in tree_flatten(src.parameters())]
    dst.update(tree_unflatten(flat))


def adam(optim):
    return optim.Adam(learning_rate=1e-3)


def adamw_warmup_cosine(optim, lr=3e-3, steps=300):
    """examples/char_lm.c's optimizer at its defaults: AdamW (weight decay 0.01) with a linear
    warmup over a tenth of the steps, then cosine decay to lr / 10."""
    warmup = max(steps // 10, 1)
    sched = optim.join_schedules([optim.linear_schedule(0.0, lr, warmup),
                                  optim.cosine_decay(lr, max(steps - warmup, 1), lr * 0.1)], [warmup])
    return optim.AdamW(learning_rate=sched, weight_decay=0.01)


def step_runner(mods, make, x_np, y_np, make_opt=adam, clip=None):
    """A closure doing one optimizer step of make()'s model on (x, y), with the gradients
    clipped to global norm clip when given; returns (run, model, loss_fn)."""
    mx, nn, optim = mods
    model = make(mx, nn)
    opt = make_opt(optim)
    x, y = mx.array(x_np), mx.array(y_np)

    def loss_fn(model, x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")
    loss_and_grad = nn.value_and_grad(model, loss_fn)

    def run():
        loss, grads = loss_and_grad(model, x, y)
        if clip is not None:
            grads = optim.clip_grad_norm(grads, clip)[0]
        opt.update(model, grads)
        mx.eval(loss, model.parameters(), opt.state)
        return loss
    mx.eval(model.parameters())
    return run, model, loss_fn


# ───────────────────────────── the same models in PyTorch ─────────────────────────────
# Each builder takes torch and ponte's parameters ({dotted name: numpy float32}) and returns a
# torch.nn.Module computing the same function (ponte's NHWC convolution weights become NCHW
# ones; the flattening before fc1 follows ponte's (h, w, c) order by permuting fc1's columns).

def torch_params(torch, module, values):
    """Sets module's parameters (torch name -> numpy array) and returns module."""
    with torch.no_grad():
        for k, p in module.named_parameters():
            p.copy_(torch.from_numpy(np.ascontiguousarray(values[k])))
    return module


def torch_mlp(torch, P):
    nn = torch.nn
    n = sum(1 for k in P if k.startswith("layers.") and k.endswith(".weight"))
    layers = []
    for i in range(n):  # Sequential numbers the ReLUs too: Linear i is module 2 i
        w = P[f"layers.{i}.weight"]
        layers += [nn.Linear(w.shape[1], w.shape[0])] + ([nn.ReLU()] if i + 1 < n else [])
    return torch_params(torch, nn.Sequential(*layers),
                        {f"{2 * i}.{t}": P[f"layers.{i}.{t}"] for i in range(n)
                         for t in ("weight", "bias")})


def torch_cnn(torch, P):
    nn = torch.nn

    class CNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.pool = nn.MaxPool2d(2)
            self.fc1 = nn.Linear(7 * 7 * 64, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = x.reshape(-1, 1, 28, 28)
            x = self.pool(torch.relu(self.conv1(x)))
            x = self.pool(torch.relu(self.conv2(x)))
            return self.fc2(torch.relu(self.fc1(x.flatten(1))))
    Q = dict(P)
    for c in ("conv1", "conv2"):  # (out, kh, kw, in) -> (out, in, kh, kw)
        Q[f"{c}.weight"] = P[f"{c}.weight"].transpose(0, 3, 1, 2)
    # fc1's input index h*7*64 + w*64 + c in ponte is c*49 + h*7 + w in torch
    Q["fc1.weight"] = P["fc1.weight"].reshape(128, 7, 7, 64).transpose(0, 3, 1, 2).reshape(128, -1)
    return torch_params(torch, CNN(), Q)


def torch_char_lm(torch, P, heads):
    """char_lm_model in torch: nn.TransformerEncoder of pre-norm nn.TransformerEncoderLayer
    (relu, 4x wide MLP, no dropout) with a final LayerNorm. ponte's (and MLX's) attention
    projections have no bias: torch's are set to zero and frozen."""
    nn = torch.nn
    vocab, dims = P["embedding.weight"].shape
    layers = 1 + max(int(k.split(".")[2]) for k in P if k.startswith("transformer.layers."))

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(vocab, dims)
            layer = nn.TransformerEncoderLayer(dims, heads, 4 * dims, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.transformer = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(dims),
                                                     enable_nested_tensor=False)
            self.out_proj = nn.Linear(dims, vocab)
            half = dims // 2
            one_zero = 1 - torch.arange(half, dtype=torch.float32) / (half - 1)
            lo, hi = math.log(0.0001), math.log(1.0)
            self.register_buffer("sigmas", torch.exp(one_zero * (hi - lo) + lo))

        def forward(self, x):
            T = x.shape[1]
            y = torch.arange(T, dtype=torch.float32)[:, None] * self.sigmas
            pe = torch.cat([torch.sin(y), torch.cos(y)], -1) * math.sqrt(2 / dims)
            mask = nn.Transformer.generate_square_subsequent_mask(T)
            h = self.embedding(x) + pe
            return self.out_proj(self.transformer(h, mask=mask, is_causal=True))
    model = CharLM()
    Q = {"embedding.weight": P["embedding.weight"], "out_proj.weight": P["out_proj.weight"],
         "out_proj.bias": P["out_proj.bias"], "transformer.norm.weight": P["transformer.ln.weight"],
         "transformer.norm.bias": P["transformer.ln.bias"]}
    for i in range(layers):
        src, dst = f"transformer.layers.{i}.", f"transformer.layers.{i}."
        Q[dst + "self_attn.in_proj_weight"] = np.concatenate(
            [P[src + f"attention.{n}_proj.weight"] for n in ("query", "key", "value")])
        Q[dst + "self_attn.in_proj_bias"] = np.zeros(3 * dims, np.float32)
        Q[dst + "self_attn.out_proj.weight"] = P[src + "attention.out_proj.weight"]
        Q[dst + "self_attn.out_proj.bias"] = np.zeros(dims, np.float32)
        for a, b in (("ln1", "norm1"), ("ln2", "norm2"), ("linear1", "linear1"),
                     ("linear2", "linear2")):
            for t in ("weight", "bias"):
                Q[dst + f"{b}.{t}"] = P[src + f"{a}.{t}"]
    torch_params(torch, model, Q)
    for i in range(layers):
        attn = model.transformer.layers[i].self_attn
        attn.in_proj_bias.requires_grad_(False)
        attn.out_proj.bias.requires_grad_(False)
    return model


def torch_optimizer(torch, make_opt, params):
    """(optimizer, before_step) of torch equal in settings to make_opt's (Adam lr 1e-3, or
    AdamW with the warmup + cosine schedule, set before each step). torch's Adam always
    corrects the bias (MLX's default does not): the same work per step. The fused CPU
    implementation when this torch has it, else the default."""
    if make_opt is adamw_warmup_cosine:
        lr, steps = 3e-3, 300
        warmup = max(steps // 10, 1)

        def sched(t):
            if t < warmup:
                return lr * min(t, warmup) / warmup
            t = min(t - warmup, max(steps - warmup, 1))
            return lr * 0.1 + (lr - lr * 0.1) * 0.5 * (1 + math.cos(math.pi * t / max(steps - warmup, 1)))
        cls, kw = torch.optim.AdamW, {"weight_decay": 0.01}
    else:
        sched, cls, kw = (lambda t: 1e-3), torch.optim.Adam, {}
    try:
        opt = cls(params, lr=sched(0), fused=True, **kw)
    except (RuntimeError, TypeError, ValueError):
        opt = cls(params, lr=sched(0), **kw)
    count = [0]

    def before_step():
        for g in opt.param_groups:
            g["lr"] = sched(count[0])
        count[0] += 1
    return opt, before_step


def torch_step_runner(torch, build, ponte_model, x_np, y_np, make_opt=adam, clip=None):
    """step_runner's (run, loss) in torch for build(torch, ponte's weights)."""
    from ponte.utils import tree_flatten
    F = torch.nn.functional
    model = build(torch, {k: np.array(v, np.float32) for k, v in
                          tree_flatten(ponte_model.parameters())})
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt, before_step = torch_optimizer(torch, make_opt, params)
    x = torch.from_numpy(x_np)
    x = x.long() if x_np.dtype.kind in "iu" else x
    y = torch.from_numpy(y_np).long().reshape(-1)

    def loss_of(logits):  # mean over every position, as nn.losses.cross_entropy
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y)

    def run():
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model(x))
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(params, clip)
        before_step()
        opt.step()
        return loss

    def loss():
        with torch.no_grad():
            return float(loss_of(model(x)).item())
    return run, loss


mlp_model.torch = torch_mlp
cnn_model.torch = torch_cnn


def bench_step(fw, name, make, x, y, quick, per_step, per_unit, **opt):
    """The figure name (ms/step, and per_step / time in per_unit) of one training step of
    make()'s model on the batch (x, y), ponte against each baseline; opt goes to step_runner."""
    if make is cnn_model and not hasattr(fw["ponte"][1], "Conv2d"):
        print(f"bench {name}: error: ponte.nn has no Conv2d")
        return
    ponte_run, ponte_model, ponte_loss = step_runner(fw["ponte"], make, x, y, **opt)
    baselines = [n for n in fw if n != "ponte"]
    if not baselines:
        t = best_alternating([ponte_run], 3 if quick else 10, 5 if quick else 20)[0]
        print(f"bench {name}: {t * 1e3:.4g} ms/step (no baseline: neither MLX nor PyTorch "
              "is importable)")
        return
    mp = fw["ponte"][0]
    for base in baselines:  # ponte's weights change with each timing: copied again each time
        lp = float(ponte_loss(ponte_model, mp.array(x), mp.array(y)).item())
        if base == "torch":
            base_run, torch_loss = torch_step_runner(fw[base][0], make.torch, ponte_model, x,
                                                     y, **opt)
            lb = torch_loss()
        else:
            base_run, base_model, base_loss = step_runner(fw[base], make, x, y, **opt)
            copy_weights(ponte_model, base_model, fw[base][0])
            mb = fw[base][0]
            lb = float(base_loss(base_model, mb.array(x), mb.array(y)).item())
        if abs(lb - lp) > 1e-4 * max(1.0, abs(lb)):
            print(f"bench {name}: error: loss {lp} (ponte) vs {lb} ({base}) on the same weights")
            continue
        tp, tb = best_alternating([ponte_run, base_run], 3 if quick else 10, 10 if quick else 30)
        report(f"{name}_vs_{base}", tp * 1e3, "ms/step", tp / tb, f"{base} {tb * 1e3:.3g} ms/step")
        report(f"{name}_{per_unit.split('/')[0]}_vs_{base}", per_step / tp,
               per_unit, tp / tb, base)


def bench_images(fw, name, make, batch, quick):
    rng = np.random.default_rng(0)
    x = rng.random((batch, 784), dtype=np.float32)
    y = rng.integers(0, 10, batch).astype(np.int32)
    bench_step(fw, name, make, x, y, quick, batch, "images/s")


def bench_char_lm(fw, quick, batch=16, context=64):
    x, y, vocab = char_lm_data(np.random.default_rng(0), batch, context)
    bench_step(fw, "py_char_lm_step", char_lm_model(vocab), x, y, quick, batch * context,
               "tokens/s", make_opt=adamw_warmup_cosine, clip=1.0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("words", nargs="*")
    args = p.parse_args(argv)
    fw = frameworks()
    if "ponte" not in fw:
        sys.exit("bench_python: cannot import ponte (run through `make bench`)")
    print("bench_python: frameworks " + ", ".join(
        f"{n} {getattr(m[0], '__version__', '')}".strip() for n, m in fw.items()), flush=True)
    for n, m in fw.items():
        if n == "torch":
            m[0].set_num_threads(cores())
        else:
            m[0].set_default_device(m[0].cpu)
    figures = [("py_op_overhead", lambda: bench_overhead(fw, args.quick)),
               ("py_compile_gelu", lambda: bench_compile(fw, args.quick)),
               ("py_mlp_step", lambda: bench_images(fw, "py_mlp_step", mlp_model, 128, args.quick)),
               ("py_cnn_step", lambda: bench_images(fw, "py_cnn_step", cnn_model, 64, args.quick)),
               ("py_char_lm_step", lambda: bench_char_lm(fw, args.quick))]
    for name, run in figures:
        if not args.words or any(w in name for w in args.words):
            run()


if __name__ == "__main__":
    main()
