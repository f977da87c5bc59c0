"""ponte.distributed over MPI: launches tests/mpi/dist_check.py under mpirun (2 and 3 processes,
through tests/mpi/run-mpi.sh) where every rank checks the collectives, send/recv, split groups,
errors, gradients, nn.average_gradients and data-parallel training against numpy; and, in this
process, what a run without a launcher gives (the singleton group, strict errors). Skips the
mpirun part when mpirun is absent."""
import ctypes
import os
import re
import shutil
import subprocess
import sys

import pytest

import ponte as mx

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "tests", "mpi", "run-mpi.sh")
SCRIPT = os.path.join(ROOT, "tests", "mpi", "dist_check.py")


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
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    r = subprocess.run(["sh", RUN, str(n), sys.executable, SCRIPT], capture_output=True,
                       text=True, timeout=150, env=env)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    ranks = re.findall(r"rank (\d+): \d+ checks OK", r.stdout)  # lines may interleave
    assert sorted(map(int, ranks)) == list(range(n)), r.stdout


@pytest.mark.skipif("OMPI_COMM_WORLD_SIZE" in os.environ, reason="run under mpirun")
def test_without_launcher():
    D = mx.distributed
    assert D.is_available() == D.is_available("mpi") == libmpi_loads()
    assert D.is_available("ring") is False and D.is_available("nccl") is False
    g = D.init()
    assert g.rank() == 0 and g.size() == 1
    assert D.init(backend="mpi").size() == 1
    for backend in ("any", "mpi", "ring"):
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
