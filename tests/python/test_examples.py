"""The Python example (examples/fashion_mnist.py) on a small synthetic dataset, and
`python -m ponte.run` running a program written for MLX."""
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_idx(path, array):
    dims = array.ndim
    header = (0x0800 + dims).to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    with open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_example(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, size=600)
    # images whose brightness pattern depends on the label: learnable in one epoch
    images = (rng.random((600, 28, 28)) * 60).astype(np.uint8)
    for k in range(10):
        images[labels == k, k * 2:k * 2 + 3, :] = 250
    data = tmp_path / "data"
    data.mkdir()
    for split, n in [("train", 500), ("t10k", 100)]:
        sl = slice(0, 500) if split == "train" else slice(500, 600)
        write_idx(data / f"{split}-images-idx3-ubyte", images[sl])
        write_idx(data / f"{split}-labels-idx1-ubyte", labels[sl])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = [sys.executable, os.path.join(ROOT, "examples", "fashion_mnist.py"), "--data", str(data),
           "--out", str(tmp_path / "out"), "--epochs", "2", "--batch", "50", "--hidden", "32", "--lr", "0.01"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("test accuracy: ") and float(last.split()[-1]) > 0.5, r.stdout
    assert "img/s" in r.stderr and "[" in r.stderr  # progress bar
    assert (tmp_path / "out" / "model.safetensors").exists() and (tmp_path / "out" / "loss.svg").exists()
    r2 = subprocess.run(cmd + ["--resume", "--epochs", "2"], capture_output=True, text=True, env=env, timeout=300)
    assert r2.returncode == 0 and "resumed from" in r2.stdout and r2.stdout.strip().endswith(last.split()[-1])


MLX_PROGRAM = '''
import sys
import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
from mlx.utils import tree_flatten
from mlx import core

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.l1 = nn.Linear(3, 8)
        self.l2 = nn.Linear(8, 1)
    def __call__(self, x):
        return self.l2(nn.relu(self.l1(x)))

mx.random.seed(0)
model = Net()
opt = optim.SGD(learning_rate=0.1)
x = mx.random.normal((32, 3))
y = mx.sum(x, axis=1, keepdims=True)
lg = nn.value_and_grad(model, lambda a, b: nn.losses.mse_loss(model(a), b))
first = None
for _ in range(50):
    loss, grads = lg(x, y)
    opt.update(model, grads)
    mx.eval(model.parameters(), opt.state)
    first = first if first is not None else loss.item()
assert core is mx and len(tree_flatten(model.parameters())) == 4
print("ok", sys.argv[1:], loss.item() < first)
'''


def test_ponte_run_mlx_program(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(MLX_PROGRAM)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run([sys.executable, "-m", "ponte.run", str(script), "a", "b"], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok ['a', 'b'] True"
    r = subprocess.run([sys.executable, "-m", "ponte.run"], capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "usage" in r.stdout


def test_char_lm_example(tmp_path):
    """examples/char_lm.c (the C binary of the build the tests run against) trains a few steps
    on a small generated text: the loss goes down, tokens/s and a sample are printed, and a
    missing data path is a clear error."""
    import ponte
    exe = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(ponte.__file__)))), "char_lm")
    if not os.path.exists(exe):
        import pytest
        pytest.skip(f"{exe} not built (PONTE_BUILD_EXAMPLES=OFF)")
    rng = np.random.default_rng(0)
    words = ["the cat sat on the mat", "a dog ran to the log", "one two three four"]
    (tmp_path / "text.txt").write_text("\n".join(words[i] for i in rng.integers(0, 3, 400)) + "\n")
    cmd = [exe, "--data", str(tmp_path / "text.txt"), "--steps", "60", "--batch", "8", "--context", "24",
           "--dims", "32", "--heads", "2", "--layers", "1", "--lr", "0.01", "--log-every", "10",
           "--sample", "40", "--seed", "3"]
    # libgomp spins between parallel regions unless told otherwise, which starves a shared machine
    env = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in r.stdout.splitlines()
              if line.startswith("step ")]
    assert len(losses) == 6 and all("tokens/s" in line for line in r.stdout.splitlines() if line.startswith("step "))
    assert losses[-1] < 0.6 * losses[0], r.stdout
    final = [line for line in r.stdout.splitlines() if line.startswith("final loss: ")]
    assert final and float(final[0].split()[-1]) == losses[-1]
    assert "sample (temperature" in r.stdout
    r2 = subprocess.run([exe, "--data", str(tmp_path / "missing"), "--steps", "1"], capture_output=True, text=True,
                        timeout=60)
    assert r2.returncode == 1 and "no training text" in r2.stderr and "fortunes-min" in r2.stderr
    # a directory as fortune's: its regular files, without the .dat indexes and symlinks
    d = tmp_path / "fortunes"
    d.mkdir()
    (d / "b").write_text("x" * 50)
    (d / "a").write_text("y" * 30)
    (d / "a.dat").write_bytes(bytes(range(256)))
    (d / "a.u8").symlink_to(d / "a")
    r3 = subprocess.run([exe, "--data", str(d), "--steps", "2", "--context", "8", "--dims", "8", "--heads", "2",
                         "--layers", "1", "--sample", "0"], capture_output=True, text=True, timeout=60, env=env)
    assert r3.returncode == 0 and "80 characters (2 distinct)" in r3.stdout, r3.stdout + r3.stderr
