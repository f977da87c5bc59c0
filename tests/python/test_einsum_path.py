"""einsum's contraction path: mx.einsum_path reports the order einsum contracts in, MLX's greedy
choice (numpy's einsum_path(optimize="greedy") where the two agree), and einsum's values along
that path match numpy's einsum. Checked against MLX itself where the mlx package is
importable."""
import numpy as np
import pytest

import ponte as mx

try:
    import mlx.core as mlx
except ImportError:
    mlx = None

DIMS = dict(zip("abcdefghijklmopqABC", [2, 3, 4, 5, 4, 3, 2, 6, 5, 4, 3, 2, 5, 7, 4, 3, 2, 3, 4]))

# cases where numpy's greedy path and MLX's agree
NUMPY_CASES = [
    "eb,cb,fb->cef",
    "dd,fb,be,cdb->cef",
    "bca,cdb,dbf,afc->",
    "dcc,fce,ea,dbf->ab",
    "ij,jk,kl->il",
    "ab,bc,cd,de->ae",
    "abc,bcd,cde->ae",
]


def operands(rng, subscripts, dims=DIMS):
    terms = subscripts.split("->")[0].split(",")
    return [rng.standard_normal([dims[c] for c in t]) for t in terms]


@pytest.mark.parametrize("case", NUMPY_CASES)
def test_path_matches_numpy_greedy(rng, case):
    xs = operands(rng, case)
    want = np.einsum_path(case, *xs, optimize="greedy")[0][1:]
    path, text = mx.einsum_path(case, *[mx.array(x) for x in xs])
    assert path == [tuple(p) for p in want]
    assert case in text and "FLOP count" in text
    got = mx.einsum(case, *[mx.array(x.astype(np.float32)) for x in xs])
    np.testing.assert_allclose(np.array(got), np.einsum(case, *xs), rtol=1e-4, atol=1e-4)


def test_simple_paths():
    a, b = mx.ones((5, 8)), mx.ones((8, 10))
    assert mx.einsum_path("ii", mx.ones((4, 4)))[0] == [(0,)]
    assert mx.einsum_path("ij->i", a)[0] == [(0,)]
    assert mx.einsum_path("ij,jk", a, b)[0] == [(0, 1)]
    assert mx.einsum_path("ij,jk -> ijk", a, b)[0] == [(0, 1)]
    # the small middle product first, as MLX (and numpy's greedy path)
    assert mx.einsum_path("ij,jk,kl", a, b, mx.ones((10, 7)))[0] == [(1, 2), (0, 1)]
    assert mx.einsum_path("ij,jk,kl", mx.ones((6, 9)), mx.ones((9, 2)), mx.ones((2, 5)))[0] == [(0, 1), (0, 1)]
    with pytest.raises(ValueError):
        mx.einsum_path("ij,jk->ik", a, a)


def random_case(rng, letters="abcdefg"):
    dims = {c: int(rng.integers(1, 7)) for c in letters}
    terms = ["".join(rng.choice(list(letters), size=rng.integers(1, 4))) for _ in range(rng.integers(3, 7))]
    used = sorted(set("".join(terms)))
    out = "".join(c for c in used if rng.random() < 0.3)
    return ",".join(terms) + "->" + out, dims


@pytest.mark.parametrize("seed", range(6))
def test_einsum_values_along_the_path(seed):
    """Random subscripts (repeats, outer products, size-1 extents, sums): numpy's values."""
    rng = np.random.default_rng(seed)
    for _ in range(20):
        case, dims = random_case(rng)
        xs = operands(rng, case, dims)
        got = mx.einsum(case, *[mx.array(x.astype(np.float32)) for x in xs])
        np.testing.assert_allclose(np.array(got), np.einsum(case, *xs), rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(mlx is None, reason="mlx is not installed")
@pytest.mark.parametrize("seed", range(6))
def test_path_matches_mlx(seed):
    rng = np.random.default_rng(100 + seed)
    for _ in range(40):
        case, dims = random_case(rng)
        xs = operands(rng, case, dims)
        want, wtext = mlx.einsum_path(case, *[mlx.array(x) for x in xs])
        got, text = mx.einsum_path(case, *[mx.array(x) for x in xs])
        assert got == want, case
        # the same scalings and FLOP counts
        assert [ln.split(":")[-1] for ln in text.splitlines()[1:]] == \
               [ln.split(":")[-1] for ln in wtext.splitlines()[1:]], case
