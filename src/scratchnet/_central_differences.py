"""The chapter's loop of :func:`scratchnet.numerical_gradient`, in plain Python.

Used by ``gradient.numerical_gradient`` for a Python ``f``, and by the
jitted path (``_jitted_gradient``) for the batch form and 0-d arrays: each
element of ``x`` perturbed in place by +-h, ``f`` called, ``x`` restored.
"""

import numpy as np


class OneValuePerRow(Exception):
    """Raised inside the loop when the first call of ``f`` selects the batch form."""


def numerical_gradient_python(f, x, h):
    """The chapter's loop, in place on ``x`` (restored), or the batch form."""
    try:
        return central_differences(f, x, h)
    except OneValuePerRow:
        return row_gradients(f, x, h)


def central_differences(f, x, h, row_of=None):
    grad = np.zeros(x.shape)
    first = row_of is None and is_batch(x)
    for idx in np.ndindex(x.shape):
        tmp = x[idx]
        try:
            x[idx] = tmp + h
            value = f(x)
            if first and np.shape(value) == (x.shape[0],):
                raise OneValuePerRow
            first = False
            fxh1 = as_scalar(value, x.shape, row_of)
            x[idx] = tmp - h
            fxh2 = as_scalar(f(x), x.shape, row_of)
        finally:
            x[idx] = tmp
        grad[idx] = (fxh1 - fxh2) / (2 * h)
    return grad


def is_batch(x):
    """True where the batch form is possible: a 2-D ``x`` with >= 2 rows."""
    return x.ndim == 2 and x.shape[0] >= 2


def row_gradients(f, x, h):
    """Batch form: the gradient of ``f`` at each row, rows perturbed in place."""
    grad = np.empty(x.shape)
    for n in range(x.shape[0]):
        grad[n] = central_differences(f, x[n], h, row_of=x.shape)  # x[n] is a view: perturbed in x itself
    return grad


def as_scalar(v, shape=None, row_of=None):
    a = np.asarray(v)
    if a.size != 1 or a.dtype.kind not in "fiub":
        if row_of is not None:
            expected = (
                f"a real scalar at each row (shape {shape}) of the batch form,"
                f" chosen because f returned one value per row of x {row_of}"
            )
        elif shape is not None and len(shape) == 2 and shape[0] >= 2:
            expected = f"a real scalar, or one value per row (shape ({shape[0]},), the batch form)"
        else:
            expected = "a real scalar"
        raise TypeError(f"f: must return {expected}, got {type(v).__name__} of shape {a.shape}")
    return float(a.reshape(()))
