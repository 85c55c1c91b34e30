"""The readable reference backend: what the book would write, vectorised.

Arrays arrive validated (C-contiguous float64, labels in range); outputs
are preallocated by the caller. This module is the oracle the fast
backends are tested against.
"""

import numpy as np

from .._blas import single_threaded_blas
from .numpy_network import network_numerical_gradient  # noqa: F401  (this backend's network kernel)

DELTA = 1e-7  # the chapter's guard inside the log of cross_entropy_error


def sigmoid(x, out):
    """out = 1 / (1 + exp(-x)), without overflow: exp only sees -|x|. x, out (M,)"""
    e = np.exp(-np.abs(x))
    out[...] = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(x, out):
    """Row-wise softmax with the row max subtracted. x, out (N, K)"""
    # x - max can overflow to -inf (x = -1e308 beside 1e308): exp gives the
    # right 0. A row with +inf (or only -inf) gives inf - inf = NaN, as in
    # the compiled backends: the documented result, not a warning.
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        out[...] = e / e.sum(axis=1, keepdims=True)


def cross_entropy_error(y, t):
    """-mean(log(y[n, t[n]] + 1e-7)). y (N, K), t (N,) labels."""
    n = y.shape[0]
    # y <= -1e-7 gives log(0) or log(<0): the caller sees the non-finite
    # result and says which entry is bad, so no RuntimeWarning here.
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.log(y[np.arange(n), t] + DELTA)) / n


def affine(x, W, b, out):
    """out = x @ W + b. x (N, D), W (D, M), b (M,), out (N, M)"""
    with single_threaded_blas():  # see _blas.py: BLAS's idle threads would spin on the kernels' cores
        np.add(x @ W, b, out=out)


def affine_weight_grad(x, dout, out):
    """out = x.T @ dout. x (N, D), dout (N, M), out (D, M)"""
    with single_threaded_blas():
        np.matmul(x.T, dout, out=out)
