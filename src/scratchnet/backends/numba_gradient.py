"""Compiled central-difference gradient for a Numba-jitted function."""

import numba
import numpy as np
from numba import prange

from .._config import jit


# Not cached: the type of the argument ``f`` is specific to one dispatcher
# object, so a cache entry can never be found again by another process, and
# with cache=True every run would add a new ~65 kB file to __pycache__.
@jit(parallel=True, cache=False)
def _gradient_kernel(f, x, h, grad, nchunks):
    """grad.flat[i] = (f(x + h e_i) - f(x - h e_i)) / 2h. x, grad: same shape, C-contiguous.

    Each chunk perturbs its own copy of x, so iterations share nothing and
    the result does not depend on how elements are split among threads.
    """
    n = x.size
    g = grad.reshape(n)
    for c in prange(nchunks):
        xc = x.copy()
        flat = xc.reshape(n)
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            tmp = flat[i]
            flat[i] = tmp + h
            fxh1 = f(xc)
            flat[i] = tmp - h
            fxh2 = f(xc)
            flat[i] = tmp
            g[i] = (fxh1 - fxh2) / (2 * h)


def numerical_gradient_jitted(f, x, h):
    """Validated entry from :func:`scratchnet.numerical_gradient`. x float64, any shape."""
    if x.ndim == 0:
        # Numba's parallel lowering cannot copy a 0-d array; one element
        # needs no threads: the serial loop on a copy (x stays untouched).
        from ..gradient import _numerical_gradient_python

        return _numerical_gradient_python(f, x.copy(), h)
    from .._threads import sync_numba

    sync_numba()  # the process's thread count, in this Python thread
    xc = np.ascontiguousarray(x)
    grad = np.empty(xc.shape)
    if xc.size:
        nchunks = min(xc.size, numba.get_num_threads())
        try:
            _gradient_kernel(f, xc, h, grad, nchunks)
        except numba.core.errors.TypingError as exc:
            raise TypeError(
                f"f: a jitted f must take one float64 array of shape {x.shape} and return a real scalar; "
                f"Numba could not compile the gradient loop around it:\n{exc}"
            ) from exc
    return grad
