"""fashion_mnist.py — the job of examples/fashion_mnist.c written with ponte.nn and
ponte.optimizers: trains an MLP (784-H-H-10, ReLU) on Fashion-MNIST with Adam, shows a progress
bar with the loss and images per second, prints the test accuracy after each epoch, writes a
checkpoint (same parameter names as the C example's) and a loss-curve SVG, and resumes from the
checkpoint with --resume. The last line is "test accuracy: X".

usage: python3 examples/fashion_mnist.py [--data DIR] [--epochs N] [--batch B] [--lr LR]
           [--hidden H] [--out DIR] [--resume] [--seed S] [--limit N]
DIR holds the four idx files (raw, or gzipped as Debian's dataset-fashion-mnist ships them).
It runs unchanged on MLX: python3 -c "import mlx" or swap the imports below."""
import argparse
import gzip
import os
import sys
import time

import numpy as np

import ponte as mx
import ponte.nn as nn
import ponte.optimizers as optim
from ponte.utils import tree_flatten

DEBIAN_DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(directory, name, dims):
    """An idx file (raw or .gz, in directory or Debian's dataset folder) as a numpy array."""
    for d in (directory, DEBIAN_DATA):
        for path in (os.path.join(d, name), os.path.join(d, name + ".gz")):
            if os.path.exists(path):
                opener = gzip.open if path.endswith(".gz") else open
                with opener(path, "rb") as f:
                    data = f.read()
                magic = int.from_bytes(data[:4], "big")
                if magic != 0x0800 + dims:
                    sys.exit(f"error: {path} is not an idx file with {dims} dimensions")
                shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
                return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    sys.exit(f"error: cannot find {name} in {directory} (run `make train`, which prepares the data)")


def load_split(directory, images, labels, limit=0):
    x = read_idx(directory, images, 3).reshape(-1, 784).astype(np.float32) / 255.0
    y = read_idx(directory, labels, 1).astype(np.int32)
    if limit and limit < len(x):
        x, y = x[:limit], y[:limit]
    return x, y


class MLP(nn.Module):
    """784 -> hidden -> hidden -> 10 with ReLU (parameters layers.{0,1,2}.{weight,bias})."""

    def __init__(self, hidden):
        super().__init__()
        self.layers = [nn.Linear(784, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 10)]

    def __call__(self, x):
        for layer in self.layers[:-1]:
            x = nn.relu(layer(x))
        return self.layers[-1](x)


def accuracy(model, x, y):
    correct = 0
    for s in range(0, len(x), 1000):
        pred = mx.argmax(model(mx.array(x[s:s + 1000])), axis=-1)
        correct += mx.sum(pred == mx.array(y[s:s + 1000])).item()
    return correct / len(x)


def progress(epoch, epochs, done, total, loss, ips):
    width = 30
    filled = width * done // total if total else width
    bar = "#" * filled + "." * (width - filled)
    sys.stderr.write(f"\repoch {epoch}/{epochs} [{bar}] {100 * done // max(total, 1):3d}% "
                     f"loss {loss:.4f} {ips:.0f} img/s ")
    sys.stderr.flush()


def write_svg(path, losses):
    if not losses:
        return
    lo, hi = min(losses), max(losses)
    hi = hi if hi - lo > 1e-9 else lo + 1
    W, H, m = 640, 360, 40
    n = len(losses)
    pts = " ".join(f"{m + (W - 2 * m) * i / max(n - 1, 1):.1f},{H - m - (H - 2 * m) * (v - lo) / (hi - lo):.1f}"
                   for i, v in enumerate(losses))
    with open(path, "w") as f:
        f.write(f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}">\n'
                '<rect width="100%" height="100%" fill="white"/>\n'
                f'<text x="{m}" y="20" font-family="sans-serif" font-size="14">training loss '
                f'({lo:.3f} to {hi:.3f}) over {n} steps</text>\n'
                f'<polyline fill="none" stroke="steelblue" stroke-width="1.5" points="{pts}"/>\n'
                f'<line x1="{m}" y1="{H - m}" x2="{W - m}" y2="{H - m}" stroke="black"/>\n'
                f'<line x1="{m}" y1="{m}" x2="{m}" y2="{H - m}" stroke="black"/>\n</svg>\n')


def main(argv=None):
    p = argparse.ArgumentParser(description="Train an MLP on Fashion-MNIST with ponte.nn.")
    p.add_argument("--data", default="build/data/fashion-mnist")
    p.add_argument("--out", default="build/fashion_mnist_py")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="use only the first N training images")
    p.add_argument("--resume", action="store_true")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.batch < 1 or args.hidden < 1:
        p.error("epochs, batch and hidden must be positive")

    train_x, train_y = load_split(args.data, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", args.limit)
    test_x, test_y = load_split(args.data, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    os.makedirs(args.out, exist_ok=True)
    ckpt = os.path.join(args.out, "model.safetensors")
    state_path = os.path.join(args.out, "optimizer.safetensors")
    svg = os.path.join(args.out, "loss.svg")
    where = "gpu" if mx.default_device() == mx.gpu else "cpu"
    print(f"fashion-mnist MLP 784-{args.hidden}-{args.hidden}-10 on {where}, {len(train_x)} training "
          f"images, batch {args.batch}, Adam lr {args.lr:g}", flush=True)

    mx.random.seed(args.seed)
    model = MLP(args.hidden)
    optimizer = optim.Adam(learning_rate=args.lr)
    start_epoch = 0
    if args.resume and os.path.exists(ckpt):
        model.load_weights(ckpt)
        if os.path.exists(state_path):
            state = mx.load(state_path)
            start_epoch = int(state.pop("epoch").item()) if "epoch" in state else 0
            optimizer.state = state
        print(f"resumed from {ckpt} at epoch {start_epoch}", flush=True)
    mx.eval(model.parameters())

    def loss_fn(x, y):
        return nn.losses.cross_entropy(model(x), y, reduction="mean")

    loss_and_grad = nn.value_and_grad(model, loss_fn)
    rng = np.random.default_rng(args.seed)
    losses, acc = [], 0.0
    n = len(train_x)
    for epoch in range(start_epoch, args.epochs):
        perm = rng.permutation(n)
        t0, done, last = time.perf_counter(), 0, 0.0
        for s in range(0, n, args.batch):
            idx = perm[s:s + args.batch]
            x, y = mx.array(train_x[idx]), mx.array(train_y[idx])
            loss, grads = loss_and_grad(x, y)
            optimizer.update(model, grads)
            mx.eval(loss, model.parameters(), optimizer.state)
            last = loss.item()
            losses.append(last)
            done += len(idx)
            if (s // args.batch) % 20 == 0 or done == n:
                progress(epoch + 1, args.epochs, done, n, last, done / (time.perf_counter() - t0))
        acc = accuracy(model, test_x, test_y)
        sys.stderr.write("\n")
        print(f"epoch {epoch + 1}: loss {last:.4f}, test accuracy {acc:.4f}, "
              f"{n / (time.perf_counter() - t0):.0f} img/s", flush=True)
        model.save_weights(ckpt)
        state = {k: v for k, v in tree_flatten(optimizer.state) if k != "learning_rate"}
        state["epoch"] = mx.array(epoch + 1, mx.int64)
        mx.save_safetensors(state_path, state)
    if start_epoch >= args.epochs:
        acc = accuracy(model, test_x, test_y)
    write_svg(svg, losses)
    print(f"checkpoint: {ckpt}, loss curve: {svg}")
    print(f"test accuracy: {acc:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
