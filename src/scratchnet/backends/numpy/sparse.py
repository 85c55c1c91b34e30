"""Sparse rows and batches (see ..structs): the non-zero inputs, listed once.

MNIST digits are about 81% zeros, and a zero input adds nothing to any sum
the network forms, so every kernel of the network reads x through these
lists instead of scanning the dense array.
"""

import numpy as np

from ..structs import Batch, SparseRows


def sparse_rows(x):
    """SparseRows of a dense x (N, D), float32 or float64 (promoted exactly)."""
    n, d = x.shape
    rows, cols = np.nonzero(x)  # row-major: rows ascending, cols ascending within a row
    row_ptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=row_ptr[1:])
    vals = x[rows, cols].astype(np.float64)
    return SparseRows(n, d, row_ptr, cols.astype(np.int32), vals)


def batch_take(data, rows):
    """The Batch of rows ``rows`` (B,) of ``data`` (SparseRows), in that order."""
    starts, ends = data.row_ptr[rows], data.row_ptr[rows + 1]
    lengths = ends - starts
    row_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=row_ptr[1:])
    take = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if len(rows) else np.zeros(0, np.int64)
    cols = data.cols[take.astype(np.int64)]
    vals = data.vals[take.astype(np.int64)].astype(np.float64)
    return _with_columns(len(rows), data.d, row_ptr, cols, vals)


def batch_from_dense(x):
    """The Batch of a dense x (N, D)."""
    rows = sparse_rows(x)
    return _with_columns(rows.n, rows.d, rows.row_ptr, rows.cols, rows.vals)


def _with_columns(n, d, row_ptr, cols, vals):
    """Add the column lists (CSC, samples ascending within a column) to CSR rows."""
    sample = np.repeat(np.arange(n, dtype=np.int32), np.diff(row_ptr))
    order = np.lexsort((sample, cols))  # by column, then sample
    col_ptr = np.zeros(d + 1, dtype=np.int64)
    np.cumsum(np.bincount(cols, minlength=d), out=col_ptr[1:])
    xmax = float(np.abs(vals).max()) if len(vals) else 0.0
    return Batch(n, d, xmax, row_ptr, cols, vals, col_ptr, sample[order], vals[order])


def dense(batch):
    """The dense x (N, D) float64 of a Batch (for the reference's BLAS products)."""
    x = np.zeros((batch.n, batch.d))
    sample = np.repeat(np.arange(batch.n), np.diff(batch.row_ptr))
    x[sample, batch.cols] = batch.vals
    return x
