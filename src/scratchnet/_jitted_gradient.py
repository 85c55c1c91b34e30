"""Compiled central-difference gradient for a Numba-jitted function.

:func:`numerical_gradient_jitted` is the validated entry from
:func:`scratchnet.numerical_gradient`. Around the parallel loop it does what
compiled code cannot do for itself:

* one call of ``f`` from Python first, on a copy of ``x``: an ``f`` that
  always raises raises its own exception there, and the type of its value
  picks the form (a scalar, or one value per row: the batch form);
* exceptions inside the loop: a ``prange`` body cannot propagate them
  (Numba dropped them, or left a ``SystemError``), so each element's pair of
  calls runs under ``try`` in a serial helper that reports failure in a
  per-element flag, and the first failed element is evaluated again from
  Python, which raises ``f``'s own exception;
* an all-zero result from an ``f`` that ignores its argument (it reads
  arrays Numba has frozen as constants): detected and refused.
"""

import numba
import numpy as np
from numba import prange

from ._central_differences import as_scalar, is_batch, numerical_gradient_python, row_gradients
from ._config import jit
from ._threads import forked_after_openmp, sync_numba


@jit(cache=False)
def _pair(f, xc, i, h):
    """(f(x + h e_i) - f(x - h e_i)) / 2h and True, or (NaN, False) if f raised. xc: flat, restored."""
    tmp = xc[i]
    try:
        xc[i] = tmp + h
        fxh1 = f(xc)
        xc[i] = tmp - h
        fxh2 = f(xc)
    except Exception:  # noqa: BLE001 - reported through the flag, raised again from Python
        xc[i] = tmp
        return np.nan, False
    xc[i] = tmp
    return (fxh1 - fxh2) / (2 * h), True


# Not cached: the type of the argument ``f`` is specific to one dispatcher
# object, so a cache entry can never be found again by another process, and
# with cache=True every run would add a new ~65 kB file to __pycache__.
@jit(parallel=True, cache=False)
def _gradient_kernel(f, x, h, grad, ok, nchunks):
    """grad.flat[i] = (f(x + h e_i) - f(x - h e_i)) / 2h; ok.flat[i] = f did not raise.
    x, grad, ok: same shape, C-contiguous.

    Each chunk perturbs its own copy of x, so iterations share nothing and
    the result does not depend on how elements are split among threads. The
    try/except lives in _pair: inside the prange body it would make Numba
    run the loop serially.
    """
    n = x.size
    g = grad.reshape(n)
    good = ok.reshape(n)
    for c in prange(nchunks):
        xc = x.copy()
        flat = xc.reshape(n)
        for i in range(c * n // nchunks, (c + 1) * n // nchunks):
            g[i], good[i] = _pair(f, flat, i, h)


def _gradient_serial(f, x, h, grad, ok):
    """_gradient_kernel's loop on one thread, from Python: the same _pair for each element, the same bits.
    x: perturbed in place and restored."""
    flat, g, good = x.reshape(-1), grad.reshape(-1), ok.reshape(-1)
    for i in range(flat.size):
        g[i], good[i] = _pair(f, flat, i, h)


def numerical_gradient_jitted(f, x, h):
    """Validated entry from :func:`scratchnet.numerical_gradient`. x float64, finite, any shape."""
    xc = np.array(x, order="C")  # a copy: neither the probe nor the loop may touch x
    value = f(xc.copy())  # f's own exception, if it raises at x itself
    if is_batch(x) and np.shape(value) == (x.shape[0],):
        return row_gradients(f, xc, h)
    f_x = as_scalar(value, x.shape)
    if x.ndim == 0:
        # Numba's parallel lowering cannot copy a 0-d array; one element
        # needs no threads: the serial loop on a copy (x stays untouched).
        return numerical_gradient_python(f, xc, h)
    grad = np.empty(xc.shape)
    if not xc.size:
        return grad
    ok = np.empty(xc.shape, dtype=np.bool_)
    try:
        if forked_after_openmp():  # the parallel loop cannot run here (scratchnet._threads)
            _gradient_serial(f, xc, h, grad, ok)
        else:
            sync_numba()  # the process's thread count, in this Python thread
            _gradient_kernel(f, xc, h, grad, ok, min(xc.size, numba.get_num_threads()))
    except numba.core.errors.TypingError as exc:
        raise TypeError(
            f"f: a jitted f must take one float64 array of shape {x.shape} and return a real scalar; "
            f"Numba could not compile the gradient loop around it:\n{exc}"
        ) from exc
    if not ok.all():
        _raise_from_python(f, xc, h, int(np.argmin(ok.reshape(-1))))
    if not grad.any():
        _refuse_frozen_arrays(f, x, h, f_x)
    return grad


def _raise_from_python(f, xc, h, i):
    """f raised in the compiled loop at flat element i: call it from Python
    on the same perturbed points, so that its own exception propagates."""
    idx = np.unravel_index(i, xc.shape)
    for step in (h, -h):
        xp = xc.copy()
        xp[idx] += step
        f(xp)
    raise RuntimeError(
        f"f: raised inside the compiled gradient loop at x[{', '.join(map(str, idx))}] +- h, but not when "
        "called again from Python with the same values; f must be deterministic"
    )


def _refuse_frozen_arrays(f, x, h, f_x):
    """Every central difference was 0. If f is constant in its argument but
    its Python version changes when x is perturbed in place, f reads x
    through a global or closure that Numba froze at compile time: refuse.

    The first test (two compiled calls) settles the usual case of a genuine
    zero gradient, a stationary point of an f that depends on x.
    """
    delta = (h * np.linspace(1.0, 2.0, x.size)).reshape(x.shape)  # uneven: no symmetric cancellation
    if as_scalar(f(np.ascontiguousarray(x + delta)), x.shape) != f_x:
        return
    py_func = getattr(f, "py_func", None)
    if py_func is None or not x.flags.writeable:
        return  # nothing to compare with: the zeros stand (documented)
    saved = x.copy()
    try:
        before = as_scalar(py_func(x), x.shape)
        x += delta
        after = as_scalar(py_func(x), x.shape)
    except Exception:  # noqa: BLE001 - a py_func that cannot run alone tells nothing; the zeros stand
        return
    finally:
        x[...] = saved  # bitwise restore, also of a view's base
    if after != before:
        raise ValueError(
            "f: the jitted f does not depend on its argument, but its Python version (f.py_func) changes "
            "when x is perturbed in place: Numba compiles the global and closure arrays f reads in as "
            "constants, so the perturbation cannot reach them and every difference is 0. Make f read the "
            "array through its argument (e.g. f = njit(lambda W: loss(W, x, t))), or pass f.py_func to "
            "get the textbook's in-place loop."
        )
