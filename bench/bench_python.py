"""bench_python.py — the Python figures of `make bench`: per-op overhead (Ponte, numpy, MLX) and
one training step of the Fashion-MNIST MLP (784-512-512-10, batch 128), CNN (as
examples/fashion_mnist.c --cnn, batch 64) and character language model (as examples/char_lm.c
at its defaults: 2 pre-norm transformer layers, 64 wide, 4 heads, batch 16 x context 64, AdamW
with warmup + cosine decay and gradient clipping) written once and run through ponte and
through MLX (mlx.core/nn/optimizers, the API ponte copies), on the CPU, in one run:
    bench NAME: VALUE UNIT (ratio R vs BASELINE)
R is Ponte's time over the baseline's (lower is better; 0.5 = Ponte takes half the time).
Each side alternates with its baseline round by round and keeps its best time, so both see the
same share of a busy machine. Before timing, the two sides' losses on the same weights and
data are compared, so a wrong step is reported as an error, never as a speed.
usage: python3 bench/bench_python.py [--quick] [WORD...]   (WORDs pick figures by name)"""
import argparse
import importlib
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
    return out


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
        print(f"bench {name}: {t * 1e3:.4g} ms/step (no baseline: MLX is not importable)")
        return
    for base in baselines:
        base_run, base_model, base_loss = step_runner(fw[base], make, x, y, **opt)
        copy_weights(ponte_model, base_model, fw[base][0])
        mb, mp = fw[base][0], fw["ponte"][0]
        lb = float(base_loss(base_model, mb.array(x), mb.array(y)).item())
        lp = float(ponte_loss(ponte_model, mp.array(x), mp.array(y)).item())
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
    for m in fw.values():
        m[0].set_default_device(m[0].cpu)
    figures = [("py_op_overhead", lambda: bench_overhead(fw, args.quick)),
               ("py_mlp_step", lambda: bench_images(fw, "py_mlp_step", mlp_model, 128, args.quick)),
               ("py_cnn_step", lambda: bench_images(fw, "py_cnn_step", cnn_model, 64, args.quick)),
               ("py_char_lm_step", lambda: bench_char_lm(fw, args.quick))]
    for name, run in figures:
        if not args.words or any(w in name for w in args.words):
            run()


if __name__ == "__main__":
    main()
