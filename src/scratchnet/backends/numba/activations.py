"""sigmoid and softmax: Numba twins of kernels/activations.c."""

import numpy as np
from numba import prange

from ..._config import jit


@jit(parallel=True)
def sigmoid(out, x):
    """out = 1 / (1 + exp(-x)), exp only of -|x|. out, x (M,)"""
    for i in prange(x.shape[0]):
        v = x[i]
        e = np.exp(-abs(v))
        r = 1.0 / (1.0 + e)
        out[i] = r if v >= 0 else e * r


@jit(parallel=True)
def softmax(out, x):
    """Row-wise stable softmax. out, x (N, K)"""
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
