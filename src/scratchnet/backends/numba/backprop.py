"""Backpropagation through the chapter's loss: Numba twin of kernels/backprop.c."""

import numpy as np
from numba import prange

from ..._config import DELTA, jit
from .forward import add_scaled_rows


@jit()
def output_deltas(da2, da1, fwd, labels, W2):
    """da2 (N, K) = dL/da2 = (y - onehot) y_t / (y_t + DELTA) / N; da1 (N, H) = dL/da1.

    The factor y_t / (y_t + DELTA) is kept, as TwoLayerNet.gradient explains.
    Serial: a few hundred flops per sample.
    """
    n, k = da2.shape
    h = da1.shape[1]
    for r in range(n):
        t = labels[r]
        y_t = fwd.y[r, t]
        f = y_t / (y_t + DELTA) / n
        for c in range(k):
            da2[r, c] = ((fwd.y[r, c] - 1.0) if c == t else fwd.y[r, c]) * f
        for j in range(h):
            acc = 0.0
            for c in range(k):
                acc += da2[r, c] * W2[j, c]
            da1[r, j] = acc * fwd.z[r, j] * fwd.zq[r, j]


@jit()
def w1_row(grads, batch, da1, i):
    """Row i of dW1 = sum over the samples n with x[n, i] != 0 (ascending) of x[n, i] da1[n, :]."""
    row = grads.W1[i]
    row[:] = 0.0
    add_scaled_rows(row, batch.rows, batch.col_vals, batch.col_ptr[i], batch.col_ptr[i + 1], da1)


@jit()
def w2_row(grads, fwd, da2, j):
    """Row j of dW2 = sum over samples (ascending) of z[n, j] da2[n, :]."""
    for c in range(da2.shape[1]):
        acc = 0.0
        for r in range(da2.shape[0]):
            acc += fwd.z[r, j] * da2[r, c]
        grads.W2[j, c] = acc


@jit()
def column_sums(out, a):
    """out (M,) = sum over rows (ascending) of a (N, M)."""
    for c in range(a.shape[1]):
        acc = 0.0
        for r in range(a.shape[0]):
            acc += a[r, c]
        out[c] = acc


@jit(parallel=True)
def weight_gradients(grads, batch, fwd, da2, da1):
    """Item i < D: row i of dW1 (over x's non-zeros); D + j: row j of dW2; the last: db1, db2."""
    d = batch.d
    h = da1.shape[1]
    for item in prange(d + h + 1):
        if item < d:
            w1_row(grads, batch, da1, item)
        elif item < d + h:
            w2_row(grads, fwd, da2, item - d)
        else:
            column_sums(grads.b1, da1)
            column_sums(grads.b2, da2)


def backprop(grads, batch, labels, params, fwd):
    """grads (Grads) = the exact derivative of the chapter's loss at fwd (Forward)."""
    n, h = fwd.z.shape
    da2 = np.empty((n, fwd.y.shape[1]))
    da1 = np.empty((n, h))
    output_deltas(da2, da1, fwd, labels, params.W2)
    weight_gradients(grads, batch, fwd, da2, da1)
