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




# affine and affine_weight_grad both compute out[o] = sum of x-entry * row of
# a matrix, over the non-zero x-entries only: a zero would add 0 * row = 0.
# The non-zeros are listed first without a branch (idx, vals; MNIST digits
# are about 81% zeros), then summed four per pass over out[o], each term
# added in turn: the same roundings as one term per pass, with a quarter of
# the loads and stores of out[o]. (Written out in both kernels: as a helper
# function it measured 10-15% slower.)


@jit(parallel=True)
def affine(x, W, b, out):
    """out = x @ W + b, skipping the zeros of x. x (N, D), W (D, M), b (M,), out (N, M)"""
    # One row of out per iteration, summed over i ascending, then + b as in
    # NumPy's x @ W + b: no result depends on the thread count.
    n, d = x.shape
    m = W.shape[1]
    for r in prange(n):
        idx = np.empty(d, np.intp)
        vals = np.empty(d)
        cnt = 0
        for i in range(d):
            idx[cnt] = i
            vals[cnt] = x[r, i]
            cnt += x[r, i] != 0.0
        for j in range(m):
            out[r, j] = 0.0
        k = 0
        while k + 4 <= cnt:
            i0, i1, i2, i3 = idx[k], idx[k + 1], idx[k + 2], idx[k + 3]
            v0, v1, v2, v3 = vals[k], vals[k + 1], vals[k + 2], vals[k + 3]
            for j in range(m):
                out[r, j] = (((out[r, j] + v0 * W[i0, j]) + v1 * W[i1, j]) + v2 * W[i2, j]) + v3 * W[i3, j]
            k += 4
        for k in range(k, cnt):
            i, v = idx[k], vals[k]
            for j in range(m):
                out[r, j] += v * W[i, j]
        for j in range(m):
            out[r, j] += b[j]


@jit(parallel=True)
def affine_weight_grad(x, dout, out):
    """out = x.T @ dout, skipping the zeros of x. x (N, D), dout (N, M), out (D, M)"""
    # One row of out per iteration (input i), summed over the samples r in
    # ascending order: no result depends on the thread count.
    n, d = x.shape
    m = dout.shape[1]
    for i in prange(d):
        idx = np.empty(n, np.intp)
        vals = np.empty(n)
        cnt = 0
        for r in range(n):
            idx[cnt] = r
            vals[cnt] = x[r, i]
            cnt += x[r, i] != 0.0
        for j in range(m):
            out[i, j] = 0.0
        k = 0
        while k + 4 <= cnt:
            r0, r1, r2, r3 = idx[k], idx[k + 1], idx[k + 2], idx[k + 3]
            v0, v1, v2, v3 = vals[k], vals[k + 1], vals[k + 2], vals[k + 3]
            for j in range(m):
                out[i, j] = (((out[i, j] + v0 * dout[r0, j]) + v1 * dout[r1, j]) + v2 * dout[r2, j]) + v3 * dout[r3, j]
            k += 4
        for k in range(k, cnt):
            r, v = idx[k], vals[k]
            for j in range(m):
                out[i, j] += v * dout[r, j]
