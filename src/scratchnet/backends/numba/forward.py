"""The network's forward pass and accuracy count: Numba twins of kernels/forward.c.

Each sample's row is computed by one iteration, its sums in a fixed order
(the non-zero inputs ascending, then + b1; the hidden units ascending, then
+ b2), so results never depend on the thread count.

Every prange body is one call of a serial helper: Numba (0.68) silently
drops a write through a namedtuple's field made in the body of a prange
loop itself (``out.e[r, c] = v``); made inside a called function it holds.
"""

import math

import numpy as np
from numba import prange

from ..._config import jit
from ..structs import SparseRows


@jit()
def add_scaled_rows(acc, cols, vals, lo, hi, A):
    """acc (M,) += vals[p] * A[cols[p], :] for p = lo .. hi - 1 in turn. A (., M)

    Four terms per pass over acc, each added in turn: the roundings of one
    term per pass, with a quarter of the loads and stores of acc.
    """
    m = acc.shape[0]
    p = lo
    while p + 4 <= hi:
        i0, i1, i2, i3 = cols[p], cols[p + 1], cols[p + 2], cols[p + 3]
        v0, v1, v2, v3 = vals[p], vals[p + 1], vals[p + 2], vals[p + 3]
        for j in range(m):
            acc[j] = (((acc[j] + v0 * A[i0, j]) + v1 * A[i1, j]) + v2 * A[i2, j]) + v3 * A[i3, j]
        p += 4
    for q in range(p, hi):
        i, v = cols[q], vals[q]
        for j in range(m):
            acc[j] += v * A[i, j]


@jit()
def sigmoid_pair(a):
    """(sigmoid(a), sigmoid(-a)), one exp of -|a|: both to full relative precision."""
    e = math.exp(-abs(a))
    big = 1.0 / (1.0 + e)
    small = e * big
    return (big, small) if a >= 0 else (small, big)


@jit()
def hidden_row(a1, z, zq, cols, vals, lo, hi, params):
    """a1 (H,) = x W1 + b1 for one sample's non-zeros cols/vals[lo:hi]; z, zq = sigmoid(+-a1)."""
    a1[:] = 0.0
    add_scaled_rows(a1, cols, vals, lo, hi, params.W1)
    for j in range(a1.shape[0]):
        a1[j] += params.b1[j]
        z[j], zq[j] = sigmoid_pair(a1[j])


@jit()
def logit_row(a2, z, params):
    """a2 (K,) = z W2 + b2, the hidden units ascending, then + b2."""
    a2[:] = 0.0
    for j in range(z.shape[0]):
        zj = z[j]
        for k in range(a2.shape[0]):
            a2[k] += zj * params.W2[j, k]
    for k in range(a2.shape[0]):
        a2[k] += params.b2[k]


@jit()
def forward_row(out, batch, params, r):
    """Row r of every array of out (Forward)."""
    lo, hi = batch.row_ptr[r], batch.row_ptr[r + 1]
    hidden_row(out.a1[r], out.z[r], out.zq[r], batch.cols, batch.vals, lo, hi, params)
    logit_row(out.a2[r], out.z[r], params)
    k = out.a2.shape[1]
    m = out.a2[r, 0]
    for c in range(1, k):
        m = max(m, out.a2[r, c])
    s = 0.0
    for c in range(k):
        out.e[r, c] = math.exp(out.a2[r, c] - m)
        s += out.e[r, c]
    out.s[r] = s
    for c in range(k):
        out.y[r, c] = out.e[r, c] / s


@jit(parallel=True)
def forward(out, batch, params):
    """out (Forward) = the forward pass of batch (Batch) through params (Params)."""
    for r in prange(batch.n):
        forward_row(out, batch, params, r)


@jit()
def count_correct_chunk(data, labels, params, lo, hi):
    """Correct predictions among rows lo .. hi - 1 of data (SparseRows)."""
    a1 = np.empty(params.W1.shape[1])
    z = np.empty_like(a1)
    zq = np.empty_like(a1)
    a2 = np.empty(params.W2.shape[1])
    correct = 0
    for r in range(lo, hi):
        hidden_row(a1, z, zq, data.cols, data.vals, data.row_ptr[r], data.row_ptr[r + 1], params)
        logit_row(a2, z, params)
        correct += np.argmax(a2) == labels[r]
    return correct


ACCURACY_CHUNK = 256  # rows per parallel iteration of count_correct


@jit(parallel=True)
def _count_chunks(counts, train, train_labels, test, test_labels, params, chunk, ntrain):
    """counts[c]: the correct rows of chunk c of train (c < ntrain), else of chunk c - ntrain of test."""
    for c in prange(counts.shape[0]):
        if c < ntrain:
            counts[c] = count_correct_chunk(train, train_labels, params, c * chunk, min(train.n, (c + 1) * chunk))
        else:
            lo = (c - ntrain) * chunk
            counts[c] = count_correct_chunk(test, test_labels, params, lo, min(test.n, lo + chunk))


def count_correct_pair(train, train_labels, test, test_labels, params):
    """(count_correct of train, of test) in one parallel call: the epoch evaluation."""
    ntrain = -(-train.n // ACCURACY_CHUNK)
    counts = np.zeros(ntrain + -(-test.n // ACCURACY_CHUNK), dtype=np.int64)
    _count_chunks(counts, train, train_labels, test, test_labels, params, ACCURACY_CHUNK, ntrain)
    return int(counts[:ntrain].sum()), int(counts[ntrain:].sum())


def count_correct(data, labels, params):
    """How many rows of ``data`` (SparseRows) have their largest logit at ``labels`` (N,).

    count_correct_pair's kernel, with an empty second set: a run compiles one accuracy kernel.
    """
    empty = SparseRows(0, data.d, np.zeros(1, dtype=np.int64), data.cols[:0], data.vals[:0])
    return count_correct_pair(data, labels, empty, labels[:0], params)[0]
