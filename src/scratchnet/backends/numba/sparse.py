"""Sparse rows and batches (see ..structs): Numba twins of kernels/sparse.c.

Building a batch is a few microseconds of serial work (about 15,000
non-zeros for 100 MNIST digits); the data set's rows are listed once, in
parallel over rows.
"""

import numpy as np
from numba import prange

from ..._config import jit
from ..structs import Batch, SparseRows


@jit(parallel=True)
def _row_counts(x, counts):
    """counts[n] = non-zeros of row n. x (N, D)"""
    for r in prange(x.shape[0]):
        c = 0
        for i in range(x.shape[1]):
            c += x[r, i] != 0.0
        counts[r] = c


@jit(parallel=True)
def _fill_rows(x, row_ptr, cols, vals):
    """The non-zeros of each row of x, columns ascending, at row_ptr[n]."""
    for r in prange(x.shape[0]):
        p = row_ptr[r]
        for i in range(x.shape[1]):
            v = x[r, i]
            if v != 0.0:
                cols[p] = i
                vals[p] = v
                p += 1


@jit()
def _prefix(counts, row_ptr):
    row_ptr[0] = 0
    for r in range(counts.shape[0]):
        row_ptr[r + 1] = row_ptr[r] + counts[r]


def sparse_rows(x):
    """SparseRows of a dense x (N, D), float32 or float64 (promoted exactly)."""
    n, d = x.shape
    counts = np.empty(n, dtype=np.int64)
    _row_counts(x, counts)
    row_ptr = np.empty(n + 1, dtype=np.int64)
    _prefix(counts, row_ptr)
    cols = np.empty(row_ptr[n], dtype=np.int32)
    vals = np.empty(row_ptr[n])
    _fill_rows(x, row_ptr, cols, vals)
    return SparseRows(n, d, row_ptr, cols, vals)


@jit()
def _columns(n, d, row_ptr, cols, vals, col_ptr, rows, col_vals):
    """CSC of CSR rows by a counting sort: samples ascending within each column."""
    col_ptr[:] = 0
    for p in range(row_ptr[n]):
        col_ptr[cols[p] + 1] += 1
    for i in range(d):
        col_ptr[i + 1] += col_ptr[i]
    fill = col_ptr[:d].copy()
    xmax = 0.0
    for r in range(n):
        for p in range(row_ptr[r], row_ptr[r + 1]):
            i = cols[p]
            rows[fill[i]] = r
            col_vals[fill[i]] = vals[p]
            fill[i] += 1
            xmax = max(xmax, abs(vals[p]))
    return xmax


@jit()
def _take_rows(data, take, row_ptr, cols, vals):
    """Rows ``take`` of data (SparseRows), in that order, as CSR."""
    row_ptr[0] = 0
    for b in range(take.shape[0]):
        r = take[b]
        start, end = data.row_ptr[r], data.row_ptr[r + 1]
        p = row_ptr[b]
        for q in range(start, end):
            cols[p] = data.cols[q]
            vals[p] = data.vals[q]
            p += 1
        row_ptr[b + 1] = p


@jit()
def _batch(n, d, row_ptr, cols, vals):
    """The Batch of CSR rows: their columns and largest |x| added."""
    nnz = row_ptr[n]
    col_ptr = np.empty(d + 1, dtype=np.int64)
    rows = np.empty(nnz, dtype=np.int32)
    col_vals = np.empty(nnz)
    xmax = _columns(n, d, row_ptr, cols, vals, col_ptr, rows, col_vals)
    return Batch(n, d, xmax, row_ptr, cols, vals, col_ptr, rows, col_vals)


@jit()
def batch_take(data, rows):
    """The Batch of rows ``rows`` (B,) intp of ``data`` (SparseRows), in that order (also the training
    engine's, inside its compiled stretch)."""
    n = rows.shape[0]
    nnz = 0
    for b in range(n):
        nnz += data.row_ptr[rows[b] + 1] - data.row_ptr[rows[b]]
    row_ptr = np.empty(n + 1, dtype=np.int64)
    cols = np.empty(nnz, dtype=np.int32)
    vals = np.empty(nnz)
    _take_rows(data, rows, row_ptr, cols, vals)
    return _batch(n, data.d, row_ptr, cols, vals)


def batch_from_dense(x):
    """The Batch of a dense x (N, D)."""
    s = sparse_rows(x)
    return _batch(s.n, s.d, s.row_ptr, s.cols, s.vals)
