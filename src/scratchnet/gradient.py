"""Numerical differentiation and gradient descent (sections 4.3 and 4.4)."""

import numbers

import numpy as np


def numerical_diff(f, x, h=1e-4):
    """Central difference ``(f(x + h) - f(x - h)) / (2h)`` of a scalar function.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    x : float
    h : float, optional
        Step, 1e-4 as in the chapter: small enough for a small truncation
        error, large enough that rounding of ``f`` does not swamp it.

    Returns
    -------
    float
    """
    h = _check_step(h)
    x = float(x)
    return (f(x + h) - f(x - h)) / (2 * h)


def numerical_gradient(f, x, h=1e-4):
    """Central-difference gradient of ``f`` at ``x``, for every element of ``x``.

    For element ``i``: ``(f(x with x[i] + h) - f(x with x[i] - h)) / (2h)``.

    A plain Python ``f`` is called with ``x`` itself, perturbed in place one
    element at a time (so ``f`` may ignore its argument and read the array
    through a closure, as the chapter's ``f = lambda W: net.loss(x, t)``
    does); ``x`` is restored exactly afterwards, also when ``f`` raises.

    A Numba-jitted ``f`` (a dispatcher taking one float64 array, returning
    a float) runs the whole loop in compiled code, in parallel over the
    elements: each thread perturbs a private copy of ``x``, so ``x`` is never
    modified and the result is bitwise identical to the serial loop.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``.
    x : ndarray of float64, any shape
        Integer arrays are refused (a step of 1e-4 would be truncated), and
        so is float32 (``x + 1e-4`` keeps only about 3 significant digits
        of the step): convert with ``x.astype(np.float64)``.
    h : float, optional

    Returns
    -------
    ndarray of float64, the shape of ``x``.
    """
    h = _check_step(h)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a float64 numpy array (it is perturbed in place), got {type(x).__name__}")
    if x.dtype != np.float64:
        if x.dtype.kind == "f":
            raise TypeError(
                f"x: dtype {x.dtype} is too coarse for a step h={h} (the perturbation would lose most "
                "of its digits); pass x.astype(np.float64)"
            )
        raise TypeError(f"x: expected a float64 array, got dtype {x.dtype} (a step h={h} would be truncated)")
    if not np.isfinite(x).all():
        raise ValueError("x: contains NaN or inf; the gradient there is meaningless")
    if _is_numba_dispatcher(f):
        from .backends.numba_gradient import numerical_gradient_jitted

        return numerical_gradient_jitted(f, x, h)
    if not x.flags.writeable:
        raise ValueError("x: read-only array; it is perturbed in place while f is evaluated, pass x.copy()")
    return _numerical_gradient_python(f, x, h)


def _numerical_gradient_python(f, x, h):
    grad = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        tmp = x[idx]
        try:
            x[idx] = tmp + h
            fxh1 = _as_scalar(f(x))
            x[idx] = tmp - h
            fxh2 = _as_scalar(f(x))
        finally:
            x[idx] = tmp
        grad[idx] = (fxh1 - fxh2) / (2 * h)
    return grad


def gradient_descent(f, init_x, lr=0.01, step_num=100, *, return_history=False):
    """Minimise ``f`` by ``step_num`` steps of ``x -= lr * grad f(x)``.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``; its gradient is taken with :func:`numerical_gradient`.
    init_x : array_like
        Starting point; copied, never modified.
    lr : float, optional
        Learning rate.
    step_num : int, optional
    return_history : bool, optional
        Also return the trajectory, as the chapter does to plot it.

    Returns
    -------
    x : ndarray of float64
        The point after ``step_num`` steps.
    history : ndarray, shape (step_num, *x.shape)
        Only with ``return_history``: ``history[i]`` is ``x`` before step
        ``i`` (the chapter's ``x_history``; the final point is ``x``).
    """
    x = as_float_copy(init_x)
    if isinstance(step_num, bool) or not isinstance(step_num, numbers.Integral) or step_num < 0:
        raise ValueError(f"step_num: expected a non-negative integer, got {step_num!r}")
    lr = float(lr)
    if not np.isfinite(lr):
        raise ValueError(f"lr: expected a finite learning rate, got {lr}")
    history = np.empty((int(step_num),) + x.shape)
    for i in range(step_num):
        history[i] = x
        x -= lr * numerical_gradient(f, x)
    return (x, history) if return_history else x


def as_float_copy(a):
    arr = np.asarray(a)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"init_x: expected a real numeric array, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64, copy=True)


def _check_step(h):
    if isinstance(h, bool) or not isinstance(h, numbers.Real) or not np.isfinite(h) or h <= 0:
        raise ValueError(f"h: expected a positive finite step, got {h!r}")
    return float(h)


def _as_scalar(v):
    a = np.asarray(v)
    if a.size != 1 or a.dtype.kind not in "fiub":
        raise TypeError(f"f: must return a real scalar, got {type(v).__name__} of shape {a.shape}")
    return float(a.reshape(()))


def _is_numba_dispatcher(f):
    # Only look if Numba is already loaded: a jitted f implies it is.
    import sys

    if "numba" not in sys.modules:
        return False
    from numba.core.registry import CPUDispatcher

    return isinstance(f, CPUDispatcher)
