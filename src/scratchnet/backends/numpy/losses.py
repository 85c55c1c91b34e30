"""cross_entropy_error, vectorised NumPy."""

import numpy as np

from ..._config import DELTA


def cross_entropy_error(y, t):
    """-mean(log(y[n, t[n]] + DELTA)). y (N, K), t (N,) labels in range."""
    n = y.shape[0]
    # y <= -DELTA gives log(0) or log(<0): the caller sees the non-finite
    # result and says which entry is bad, so no RuntimeWarning here.
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.log(y[np.arange(n), t] + DELTA)) / n
