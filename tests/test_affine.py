"""The affine kernels of every backend (x @ W + b and x.T @ dout, skipping
x's zeros) against the term-by-term loops of tests/naive.py, and
TwoLayerNet.gradient with each backend.

eps is the float64 machine epsilon, 2**-52 (unit roundoff u = eps / 2).
"""

import naive
import numpy as np
import pytest

import scratchnet as sn
from scratchnet.backends import load

EPS = np.finfo(np.float64).eps
COMPILED = [b for b in sn.available_backends() if b != "numpy"]


def _sparse(rng, shape, zeros=0.8):
    """MNIST-like: about `zeros` of the entries 0, the rest in (0, 1]."""
    return np.where(rng.random(shape) < zeros, 0.0, rng.random(shape) + 1e-3)


def _inputs(rng, kind, n, d, m):
    """x (n, d) sparse or dense, W (d, m), b (m,), dout (n, m)."""
    x = _sparse(rng, (n, d)) if kind == "sparse" else rng.standard_normal((n, d))
    if kind == "sparse" and n > 2 and d > 2:
        x[1] = 0.0  # a row with no non-zero (output: b)
        x[:, 2] = 0.0  # an input no sample has (weight gradient: 0)
    return x, rng.standard_normal((d, m)), rng.standard_normal(m), rng.standard_normal((n, m))


def _affine(backend, x, W, b):
    out = np.full((x.shape[0], W.shape[1]), np.nan)
    load(backend).affine(x, W, b, out)
    return out


def _weight_grad(backend, x, dout):
    out = np.full((x.shape[1], dout.shape[1]), np.nan)
    load(backend).affine_weight_grad(x, dout, out)
    return out


# Shapes: one sample; fewer non-zeros than the kernels' 4 terms per pass;
# M = 1, 3 and 50 (not a multiple of a vector width); MNIST's 784-50.
SHAPES = [(1, 5, 3), (3, 2, 1), (9, 61, 13), (7, 784, 50)]
KINDS = ["sparse", "dense"]


# -- the compiled kernels are the naive loop, bit for bit ------------------------
# Same products, the same sums in the same order (ascending i, resp. samples),
# then + b: the same roundings. A skipped zero would have added
# 0 * W[i, j] = +-0, which leaves a sum unchanged (the sum starts at +0, and
# x + (-0) = x for every x, +0 + -0 = +0): so skipping is exact, on sparse
# and on dense data alike.
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n, d, m", SHAPES)
@pytest.mark.parametrize("backend", COMPILED)
def test_compiled_kernels_are_the_naive_loop_bitwise(backend, rng, kind, n, d, m):
    x, W, b, dout = _inputs(rng, kind, n, d, m)
    np.testing.assert_array_equal(_affine(backend, x, W, b), naive.affine(x, W, b))
    np.testing.assert_array_equal(_weight_grad(backend, x, dout), naive.affine_weight_grad(x, dout))


# -- every backend is within rounding of the naive loop -------------------------
# A sum of D products computed in any order differs from the exact value by
# at most gamma_{D+1} * (sum_i |x_i W_ij| + |b_j|), gamma_k = k u / (1 - k u)
# (Higham, Accuracy and Stability, 3.1; the + 1 for b). The naive loop and
# BLAS (the numpy backend) each carry that error, so they differ by at most
# twice it: (D + 1) eps (|x| @ |W| + |b|) to first order.
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n, d, m", SHAPES)
def test_every_backend_within_rounding_of_naive(backend, rng, kind, n, d, m):
    x, W, b, dout = _inputs(rng, kind, n, d, m)
    bound = (d + 1) * EPS * (np.abs(x) @ np.abs(W) + np.abs(b))
    assert np.all(np.abs(_affine(backend, x, W, b) - naive.affine(x, W, b)) <= bound)
    bound = (n + 1) * EPS * (np.abs(x).T @ np.abs(dout))
    assert np.all(np.abs(_weight_grad(backend, x, dout) - naive.affine_weight_grad(x, dout)) <= bound)


def test_no_nonzero_gives_b_and_zero_gradient(backend):
    x = np.zeros((4, 6))
    b = np.array([1.5, -2.0, 0.25])
    W = np.arange(18.0).reshape(6, 3)
    assert np.array_equal(_affine(backend, x, W, b), np.tile(b, (4, 1)))
    assert np.array_equal(_weight_grad(backend, x, np.ones((4, 3))), np.zeros((6, 3)))


# -- threads do not change a bit ---------------------------------------------------
@pytest.mark.parametrize("backend", COMPILED)
def test_one_and_two_threads_are_bitwise_identical(backend, rng, threads):
    x, W, b, dout = _inputs(rng, "sparse", 300, 784, 50)  # 300 rows, 784 inputs: both threads get work
    runs = []
    for n in (1, 2):
        threads(n)
        runs.append((_affine(backend, x, W, b), _weight_grad(backend, x, dout)))
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1])


# -- the C wrapper's checks --------------------------------------------------------
@pytest.mark.skipif("c" not in sn.available_backends(), reason="C extension not built")
def test_c_wrapper_names_the_bad_argument():
    c = load("c")
    x, W, b = np.zeros((4, 6)), np.zeros((6, 3)), np.zeros(3)
    with pytest.raises(ValueError, match="W"):
        c.affine(x, np.zeros((5, 3)), b, np.empty((4, 3)))
    with pytest.raises(ValueError, match="b"):
        c.affine(x, W, np.zeros(4), np.empty((4, 3)))
    with pytest.raises(ValueError, match="out"):
        c.affine(x, W, b, np.empty((3, 3)))
    with pytest.raises(ValueError, match="C-contiguous"):
        c.affine(np.zeros((6, 4)).T, W, b, np.empty((4, 3)))
    with pytest.raises(TypeError, match="x"):
        c.affine(x.astype(np.int64), W, b, np.empty((4, 3)))
    with pytest.raises(ValueError, match="dout"):
        c.affine_weight_grad(x, np.zeros((3, 3)), np.empty((6, 3)))
    with pytest.raises(ValueError, match="out"):
        c.affine_weight_grad(x, np.zeros((4, 3)), np.empty((6, 2)))


# -- TwoLayerNet.gradient with each backend -----------------------------------------
def test_gradient_backends_agree(rng):
    # Only x @ W1, z1 @ W2 and x.T @ da1 differ between backends (sum order):
    # by at most (D + 1) eps ~ 1.7e-13 of the sums of |terms| (the bound
    # above), which rounding then carries through backprop with factors <= 1
    # (sigmoid' <= 1/4, softmax). For this net those sums are within a few
    # times the largest gradient entry, so 1e-12 of it is ~5x the bound
    # (measured: ~4e-16). numba and c sum in the same order: bitwise equal.
    from scratchnet.datasets import load_mnist

    (x, t), _ = load_mnist()
    idx = rng.choice(len(t), 100)
    net = sn.TwoLayerNet(784, 50, 10, seed=3)
    ref = net.gradient(x[idx], t[idx], backend="numpy")
    got = {b: net.gradient(x[idx], t[idx], backend=b) for b in COMPILED}
    for b, g in got.items():
        for name in ref:
            scale = np.abs(ref[name]).max()
            np.testing.assert_allclose(g[name], ref[name], rtol=0, atol=1e-12 * scale, err_msg=f"{b} {name}")
    for name in ref:
        if len(got) == 2:
            assert np.array_equal(got["numba"][name], got["c"][name]), name


def test_gradient_rejects_unknown_backend(rng):
    net = sn.TwoLayerNet(4, 3, 2, seed=0)
    with pytest.raises(ValueError, match="backend"):
        net.gradient(rng.random((2, 4)), [0, 1], backend="cuda")


def test_float32_input_equals_its_float64_promotion(backend, rng):
    # MNIST pixels arrive as float32; every backend promotes them exactly.
    x = (rng.random((30, 40)) * (rng.random((30, 40)) < 0.2)).astype(np.float32)
    W, b, dout = rng.standard_normal((40, 7)), rng.standard_normal(7), rng.standard_normal((30, 7))
    kernels = load(backend)
    got, want = np.empty((30, 7)), np.empty((30, 7))
    kernels.affine(x, W, b, got)
    kernels.affine(x.astype(np.float64), W, b, want)
    assert np.array_equal(got, want)
    got, want = np.empty((40, 7)), np.empty((40, 7))
    kernels.affine_weight_grad(x, dout, got)
    kernels.affine_weight_grad(x.astype(np.float64), dout, want)
    assert np.array_equal(got, want)
