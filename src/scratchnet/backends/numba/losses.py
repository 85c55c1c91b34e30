"""cross_entropy_error: Numba twin of kernels/losses.c."""

import numpy as np
from numba import prange

from ..._config import DELTA, SUM_BLOCK, jit


@jit(parallel=True)
def cross_entropy_error(y, t):
    """-mean(log(y[n, t[n]] + DELTA)), summed in fixed blocks of SUM_BLOCK samples. y (N, K), t (N,)"""
    n = y.shape[0]
    nblocks = (n + SUM_BLOCK - 1) // SUM_BLOCK
    partial = np.empty(nblocks)
    for b in prange(nblocks):
        s = 0.0
        for i in range(b * SUM_BLOCK, min(n, (b + 1) * SUM_BLOCK)):
            s += np.log(y[i, t[i]] + DELTA)
        partial[b] = s
    total = 0.0
    for b in range(nblocks):  # the blocks in order: the sum never depends on the threads
        total += partial[b]
    return -total / n
