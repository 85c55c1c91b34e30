"""Numba backend: ``@njit(parallel=True)`` kernels, arrays in, preallocated
arrays out, no validation.

Every ``prange`` iteration writes only what it owns (an element, a row, a
block's partial sum), and partial sums are combined serially in a fixed
order, so 1 and N threads give bitwise identical results.
"""

import numpy as np
from numba import prange

from .._config import jit
from .numba_network import network_numerical_gradient  # noqa: F401  (this backend's network kernel)

DELTA = 1e-7  # the chapter's guard inside the log of cross_entropy_error
SUM_BLOCK = 1024  # samples per partial sum; fixed, so sums never depend on threads


@jit(parallel=True)
def sigmoid(x, out):
    """out = 1 / (1 + exp(-x)), exp only of -|x|. x, out (M,)"""
    for i in prange(x.shape[0]):
        v = x[i]
        e = np.exp(-abs(v))
        r = 1.0 / (1.0 + e)
        out[i] = r if v >= 0 else e * r


@jit(parallel=True)
def softmax(x, out):
    """Row-wise stable softmax. x, out (N, K)"""
    n, k = x.shape
    for i in prange(n):
        m = x[i, 0]
        for j in range(1, k):
            m = max(m, x[i, j])
        s = 0.0
        for j in range(k):
            e = np.exp(x[i, j] - m)
            out[i, j] = e
            s += e
        for j in range(k):
            out[i, j] /= s


@jit(parallel=True)
def cross_entropy_error(y, t):
    """-mean(log(y[n, t[n]] + 1e-7)), summed in fixed blocks. y (N, K), t (N,)"""
    n = y.shape[0]
    nblocks = (n + SUM_BLOCK - 1) // SUM_BLOCK
    partial = np.empty(nblocks)
    for b in prange(nblocks):
        s = 0.0
        for i in range(b * SUM_BLOCK, min(n, (b + 1) * SUM_BLOCK)):
            s += np.log(y[i, t[i]] + DELTA)
        partial[b] = s
    total = 0.0
    for b in range(nblocks):
        total += partial[b]
    return -total / n
