"""cross_entropy_error: Numba twin of kernels/losses.c."""

import numpy as np
from numba import prange

from ..._config import DELTA, SUM_BLOCK, jit


@jit()
def block_log_sum(y, t, b):
    """sum of log(y[i, t[i]] + DELTA) over the samples of block b (SUM_BLOCK of them)."""
    s = 0.0
    for i in range(b * SUM_BLOCK, min(y.shape[0], (b + 1) * SUM_BLOCK)):
        s += np.log(y[i, t[i]] + DELTA)
    return s


@jit(parallel=True)
def _block_sums(partial, y, t):
    for b in prange(partial.shape[0]):
        partial[b] = block_log_sum(y, t, b)


def cross_entropy_error(y, t):
    """-mean(log(y[n, t[n]] + DELTA)), summed in fixed blocks of SUM_BLOCK samples. y (N, K), t (N,)

    One block (a mini-batch) is summed on the calling thread: nothing to share.
    """
    n = y.shape[0]
    nblocks = (n + SUM_BLOCK - 1) // SUM_BLOCK
    if nblocks == 1:
        return serial_cross_entropy_error(y, t)
    partial = np.empty(nblocks)
    _block_sums(partial, y, t)
    return -_ordered_sum(partial) / n


@jit()
def serial_cross_entropy_error(y, t):
    """cross_entropy_error on the calling thread, the same blocks summed in the same order (a mini-batch
    is one block; the training engine calls this inside its compiled stretch)."""
    n = y.shape[0]
    nblocks = (n + SUM_BLOCK - 1) // SUM_BLOCK
    if nblocks == 1:
        return -block_log_sum(y, t, 0) / n
    partial = np.empty(nblocks)
    for b in range(nblocks):
        partial[b] = block_log_sum(y, t, b)
    return -_ordered_sum(partial) / n


@jit()
def _ordered_sum(a):
    """The blocks in order: the sum never depends on the threads."""
    total = 0.0
    for v in a:
        total += v
    return total
