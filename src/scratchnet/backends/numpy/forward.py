"""The network's forward pass and accuracy count, vectorised NumPy."""

import numpy as np

from ..._blas import single_threaded_blas
from ..._config import ACCURACY_CHUNK
from .activations import softmax
from .sparse import batch_take, dense


def sigmoid_pair(a):
    """(sigmoid(a), sigmoid(-a)), each from exp(-|a|): both to full relative precision."""
    e = np.exp(-np.abs(a))
    big, small = 1.0 / (1.0 + e), e / (1.0 + e)
    return np.where(a >= 0, big, small), np.where(a >= 0, small, big)


def forward(out, batch, params):
    """out (Forward) = the forward pass of ``batch`` (Batch) through ``params`` (Params)."""
    x = dense(batch)
    # Overflow (inputs or weights of 1e300) gives inf or NaN, as in the
    # compiled kernels: silently; the caller checks and says why.
    with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):  # BLAS: see _blas.py
        out.a1[...] = x @ params.W1 + params.b1
        out.z[...], out.zq[...] = sigmoid_pair(out.a1)
        out.a2[...] = out.z @ params.W2 + params.b2
    with np.errstate(over="ignore", invalid="ignore"):
        out.e[...] = np.exp(out.a2 - out.a2.max(axis=1, keepdims=True))
        out.s[...] = out.e.sum(axis=1)
    softmax(out.y, out.a2)


def count_correct(data, labels, params):
    """How many rows of ``data`` (SparseRows) have their largest logit at ``labels`` (N,)."""
    correct = 0
    for start in range(0, data.n, ACCURACY_CHUNK):
        rows = np.arange(start, min(start + ACCURACY_CHUNK, data.n))
        x = dense(batch_take(data, rows))
        with single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
            z, _ = sigmoid_pair(x @ params.W1 + params.b1)
            a2 = z @ params.W2 + params.b2
        correct += int(np.count_nonzero(np.argmax(a2, axis=1) == labels[rows]))
    return correct
