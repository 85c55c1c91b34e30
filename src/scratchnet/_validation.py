"""Argument checks shared by the public functions.

Each helper names the argument in its message and returns a C-contiguous
array of the dtype the kernels expect.
"""

import numbers

import numpy as np


def as_float64(a, name):
    """``a`` as a C-contiguous float64 array of the same shape (0-d stays
    0-d); booleans, complex, strings and objects are refused."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    # not np.ascontiguousarray: it turns a 0-d array into shape (1,)
    return np.asarray(arr, dtype=np.float64, order="C")


def labels_from_targets(t, n, k, name="t"):
    """Integer labels (n,) from one-hot targets (n, k) or labels (n,).

    Returns a C-contiguous ``intp`` array with every label in [0, k).
    """
    t = np.asarray(t)
    if t.shape == (n, k):
        if t.dtype.kind not in "fiub":
            raise TypeError(f"{name}: one-hot targets must be numeric, got dtype {t.dtype}")
        is_binary = (t == 0) | (t == 1)
        if not is_binary.all() or not (np.count_nonzero(t, axis=1) == 1).all():
            raise ValueError(f"{name}: one-hot targets must have exactly one 1 per row and 0 elsewhere")
        return np.ascontiguousarray(np.argmax(t, axis=1), dtype=np.intp)
    if t.shape != (n,):
        raise ValueError(
            f"{name}: expected integer labels of shape ({n},) or one-hot targets of shape "
            f"({n}, {k}), got shape {t.shape}"
        )
    if t.dtype.kind not in "iu":
        raise TypeError(f"{name}: labels must be integers, got dtype {t.dtype}")
    if n:
        lo, hi = t.min(), t.max()
        if lo < 0 or hi >= k:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name}: label {bad} out of range [0, {k})")
    return np.ascontiguousarray(t, dtype=np.intp)


def check_step(h, name="h"):
    """A numerical-differentiation step as a float: positive, finite and normal.

    A subnormal step (below 2.2e-308) has lost most of its digits, and
    ``2 * h`` in the quotient with it.
    """
    if isinstance(h, bool) or not isinstance(h, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(h).__name__}")
    h = float(h)
    if not (np.isfinite(h) and h >= np.finfo(np.float64).tiny):
        raise ValueError(f"{name}: expected a positive finite step (at least 2.2e-308), got {h!r}")
    return h
