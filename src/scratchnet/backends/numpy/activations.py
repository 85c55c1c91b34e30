"""sigmoid and softmax, vectorised NumPy: the reference the compiled kernels follow."""

import numpy as np


def sigmoid(out, x):
    """out = 1 / (1 + exp(-x)), without overflow: exp only sees -|x|. out, x (M,)"""
    e = np.exp(-np.abs(x))
    out[...] = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def softmax(out, x):
    """Row-wise softmax with the row max subtracted. out, x (N, K)"""
    # x - max can overflow to -inf (x = -1e308 beside 1e308): exp gives the
    # right 0. A row with +inf (or only -inf) gives inf - inf = NaN, as in
    # the compiled backends: the documented result, not a warning.
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        out[...] = e / e.sum(axis=1, keepdims=True)
