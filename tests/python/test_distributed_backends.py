"""ponte.distributed over its backends: launches tests/distributed/dist_check.py under mpirun
(2 and 3 processes, through tests/distributed/run-mpi.sh) and as local processes of the ring
backend (run-ring.sh: torchrun's variables, and MLX's hostfile; on the simulated GPU build also
mlx.launch --backend nccl's variables with backend "nccl", the arrays on the GPU), where every rank checks the
collectives, send/recv, split groups, errors, gradients, nn.average_gradients and data-parallel
training (eager and compiled) against numpy; and, in this process, what a run without a
launcher gives (the singleton group, strict errors) and the ring backend's launch errors.
Skips the mpirun part when mpirun is absent."""
import ctypes
import os
import re
import shutil
import subprocess
import sys

import pytest

import ponte as mx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "tests", "distributed", "run-mpi.sh")
RUN_RING = os.path.join(ROOT, "tests", "distributed", "run-ring.sh")
SCRIPT = os.path.join(ROOT, "tests", "distributed", "dist_check.py")


def libmpi_loads():
    for name in ("libmpi.so.40", "libmpi.so"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            pass
    return False


@pytest.mark.skipif(shutil.which("mpirun") is None or not libmpi_loads(),
                    reason="mpirun / Open MPI not found (apt-get install openmpi-bin libopenmpi-dev)")
@pytest.mark.parametrize("n", [2, 3])
def test_under_mpirun(n):
    launch_and_check(["sh", RUN, str(n)], n)


def simulated():
    """The simulated GPU build (whose NCCL is simulated over the ring)."""
    return mx.is_available(mx.gpu) and "simulated" in mx.device_info(mx.gpu).get("device_name", "")


def launch_and_check(launcher, n, **env_add):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), **env_add)
    for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "MLX_RANK", "MLX_HOSTFILE",
              "MLX_WORLD_SIZE", "NCCL_HOST_IP", "NCCL_PORT"):
        env.pop(k, None)
    r = subprocess.run(launcher + [sys.executable, SCRIPT], capture_output=True,
                       text=True, timeout=150, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    ranks = re.findall(r"rank (\d+): \d+ checks OK", r.stdout)  # lines may interleave
    assert sorted(map(int, ranks)) == list(range(n)), r.stdout


@pytest.mark.parametrize("launch,n", [("torchrun", 2), ("torchrun", 3), ("hostfile", 2)])
def test_ring(launch, n):
    launch_and_check(["sh", RUN_RING] + (["--hostfile"] if launch == "hostfile" else []) + [str(n)], n)


@pytest.mark.skipif(not simulated(), reason="the nccl launch runs on the simulated GPU build only "
                    "(a native build needs one GPU per process and libnccl)")
@pytest.mark.parametrize("n", [2, 3])
def test_nccl(n):
    launch_and_check(["sh", RUN_RING, "--nccl", str(n)], n, PONTE_DEVICE="gpu")


def run_alone(env_add, code):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PONTE_DIST_TIMEOUT="3", **env_add)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=60)


RING_STRICT = ("import ponte as mx\ntry:\n    mx.distributed.init(strict=True, backend='ring')\n"
               "except RuntimeError as e:\n    print('error:', e)\nelse:\n    print('joined')\n")


@pytest.mark.parametrize("env_add,message", [
    ({"RANK": "0", "WORLD_SIZE": "x", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
     "WORLD_SIZE=x is not an integer"),
    ({"RANK": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29999"},
     "RANK=2 is not an integer in [0, 1]"),
    ({"RANK": "1", "WORLD_SIZE": "2", "MASTER_ADDR": "no-such-host.invalid", "MASTER_PORT": "29999"},
     "cannot resolve"),
    ({"RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "0"},
     "MASTER_PORT=0 is not an integer"),
    ({"MLX_RANK": "0", "MLX_HOSTFILE": "/nonexistent/hosts.json"}, "No such file"),
])
def test_ring_launch_errors(env_add, message):
    r = run_alone(env_add, RING_STRICT)
    assert r.returncode == 0 and "error:" in r.stdout and message in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("text,message", [
    ('', "'[' is missing"),
    ('[["127.0.0.1:5000"], ', "a rank's list is missing"),
    ('[["127.0.0.1"]]', "not \"ip:port\""),
    ('[["127.0.0.1:99999"]]', "not \"ip:port\""),
    ('[[127]]', "a string is missing"),
    ('[["127.0.0.1:5000"]] x', "text after the list"),
    ('[]', "no ranks"),
    ('[["127.0.0.1:5000\\n"]]', "unusable address"),
    ('[["127.0.0.1:5000"', "',' or ']' is missing"),
])
def test_ring_hostile_hostfile(tmp_path, text, message):
    f = tmp_path / "hosts.json"
    f.write_text(text)
    r = run_alone({"MLX_RANK": "0", "MLX_HOSTFILE": str(f)}, RING_STRICT)
    assert r.returncode == 0 and "error:" in r.stdout and message in r.stdout, r.stdout + r.stderr


def test_ring_peer_missing_times_out(tmp_path):
    """Rank 0 of 2 alone: the wait for rank 1 ends after PONTE_DIST_TIMEOUT with an error."""
    f = tmp_path / "hosts.json"
    f.write_text('[["127.0.0.1:%d"], ["127.0.0.1:%d"]]' % (free_port(), free_port()))
    r = run_alone({"MLX_RANK": "0", "MLX_HOSTFILE": str(f)}, RING_STRICT)
    assert r.returncode == 0 and "timed out" in r.stdout, r.stdout + r.stderr


def test_ring_world_of_one(tmp_path):
    f = tmp_path / "hosts.json"
    f.write_text('[["127.0.0.1:%d"]]' % free_port())
    code = ("import ponte as mx\ng = mx.distributed.init(strict=True, backend='ring')\n"
            "x = mx.array([1.5, 2.0])\nprint(g.rank(), g.size(), mx.distributed.all_sum(x).tolist())\n")
    r = run_alone({"MLX_RANK": "0", "MLX_HOSTFILE": str(f)}, code)
    assert r.returncode == 0 and r.stdout.split() == ["0", "1", "[1.5,", "2.0]"], r.stdout + r.stderr


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif("OMPI_COMM_WORLD_SIZE" in os.environ, reason="run under mpirun")
def test_without_launcher():
    D = mx.distributed
    assert D.is_available("mpi") == libmpi_loads()
    assert D.is_available() is True and D.is_available("ring") is True  # as MLX: ring is built in
    assert D.is_available("jaccl") is False
    if simulated() or not mx.is_available(mx.gpu):  # a native GPU build may lack libnccl
        assert D.is_available("nccl") is (simulated() and os.environ.get("PONTE_NCCL") != "0")
    g = D.init()
    assert g.rank() == 0 and g.size() == 1
    assert D.init(backend="mpi").size() == 1
    for backend in ("any", "mpi", "ring", "nccl"):
        with pytest.raises(RuntimeError, match="Couldn't initialize"):
            D.init(strict=True, backend=backend)
    with pytest.raises(ValueError):
        D.init(backend="tcp")
    with pytest.raises(RuntimeError):
        g.split(0)
    x = mx.array([[1.0, 2.0], [3.0, 4.0]])
    for fn in (D.all_sum, D.all_max, D.all_min, D.all_gather, D.sum_scatter):
        assert (fn(x, group=g) == x).all().item()
    with pytest.raises(ValueError, match="singleton"):
        D.send(x, 0)
    with pytest.raises(ValueError, match="singleton"):
        D.recv((2,), mx.float32, 0)
    import ponte.nn as nn
    tree = {"w": x}
    assert nn.average_gradients(tree) is tree


def test_not_open_mpi_is_refused():
    """A library that is not Open MPI (here libm standing in for MPICH) is not used."""
    code = ("import ponte as mx; D = mx.distributed; assert not D.is_available('mpi')\n"
            "try:\n    D.init(strict=True, backend='mpi')\nexcept RuntimeError as e:\n"
            "    print(e)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PONTE_MPI_LIBNAME="libm.so.6",
               OMPI_COMM_WORLD_SIZE="2")
    env.pop("LD_PRELOAD", None)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "Couldn't initialize the mpi backend" in r.stdout and "not Open MPI" in r.stdout, r.stdout


def test_nccl_unavailable():
    """NCCL off (PONTE_NCCL=0, or no GPU): is_available is false and a strict init says why."""
    code = ("import ponte as mx; D = mx.distributed; print(D.is_available('nccl'))\n"
            "try:\n    D.init(strict=True, backend='nccl')\nexcept RuntimeError as e:\n"
            "    print(e)\n")
    r = run_alone({"PONTE_NCCL": "0", "MLX_RANK": "0", "MLX_WORLD_SIZE": "1",
                   "NCCL_HOST_IP": "127.0.0.1", "NCCL_PORT": str(free_port())}, code)
    assert r.returncode == 0 and r.stdout.startswith("False"), r.stdout + r.stderr
    assert "Couldn't initialize the nccl backend (NCCL is not available:" in r.stdout, r.stdout


@pytest.mark.skipif(not simulated(), reason="needs the simulated GPU build")
def test_nccl_world_of_one():
    """mlx.launch --backend nccl's variables for one process: the nccl group, NCCL on the GPU."""
    code = ("import ponte as mx\ng = mx.distributed.init(strict=True, backend='nccl')\n"
            "x = mx.array([1.5, 2.0])\nprint(g.rank(), g.size(), mx.distributed.all_sum(x).tolist())\n")
    r = run_alone({"MLX_RANK": "0", "MLX_WORLD_SIZE": "1", "NCCL_HOST_IP": "127.0.0.1",
                   "NCCL_PORT": str(free_port()), "PONTE_DEVICE": "gpu"}, code)
    assert r.returncode == 0 and r.stdout.split() == ["0", "1", "[1.5,", "2.0]"], r.stdout + r.stderr
