"""Backpropagation through the chapter's loss, vectorised NumPy."""

import numpy as np

from ..._blas import single_threaded_blas
from ..._config import DELTA
from .sparse import dense


def backprop(grads, batch, labels, params, fwd):
    """grads (Grads) = the exact derivative of the chapter's loss at ``fwd`` (Forward).

    By the logits, (y - onehot(t)) * y_t / (y_t + DELTA) / N: the factor
    y_t / (y_t + DELTA) is kept, as TwoLayerNet.gradient explains.
    """
    n = batch.n
    rows = np.arange(n)
    y_t = fwd.y[rows, labels]
    da2 = fwd.y.copy()
    da2[rows, labels] -= 1.0
    da2 *= (y_t / (y_t + DELTA) / n)[:, None]  # (N, K)
    with single_threaded_blas():
        grads.W2[...] = fwd.z.T @ da2  # (H, K)
        da1 = (da2 @ params.W2.T) * fwd.z * fwd.zq  # (N, H); z (1 - z) as z * zq
        grads.W1[...] = dense(batch).T @ da1  # (D, H)
    grads.b1[...] = da1.sum(axis=0)
    grads.b2[...] = da2.sum(axis=0)
