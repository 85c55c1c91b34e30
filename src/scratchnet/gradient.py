"""Numerical differentiation and gradient descent (sections 4.3 and 4.4).

The forms the chapter's code uses, and how each is told apart:

``numerical_diff(f, x)``
    A real number ``x``: the derivative of a scalar ``f`` there. An array
    ``x``: the elementwise form of the book's ``gradient_1d.py``, ``f``
    applied to the whole array and returning one value per element.
``numerical_gradient(f, x)``
    The gradient of a scalar function of the whole array ``x`` (any shape).
    For a 2-D ``x`` of N >= 2 rows, an ``f`` that returns one value per row
    (shape (N,)) instead of a scalar selects the batch form of the book's
    ``gradient_2d.py``: each row is a point and gets its own gradient, ``f``
    called on the rows one at a time as the book's loop does.
``gradient_descent(f, init_x, lr, step_num)``
    Steps of ``x -= lr * numerical_gradient(f, x)`` from a copy of ``init_x``.
"""

import math
import numbers

import numpy as np

from ._central_differences import numerical_gradient_python
from ._config import DEFAULT_H, as_written
from ._validation import as_array, as_real, check_step, refuse_complex, short_repr


def numerical_diff(f, x, h=DEFAULT_H):
    """Central difference ``(f(x + h) - f(x - h)) / (2h)``.

    Parameters
    ----------
    f : callable
        For a real number ``x``: ``f(x) -> float``. For an array ``x``: an
        elementwise ``f``, returning an array of ``x``'s shape whose element
        ``i`` depends on ``x[i]`` only (as the chapter's ``function_1`` does).
    x : float or array_like of real numbers
        Where to differentiate; must be finite. An array is converted to
        float64 (a copy: ``f`` never sees the caller's array).
    h : float, optional
        Step, 1e-4 as in the chapter: small enough for a small truncation
        error, large enough that rounding of ``f`` does not swamp it. Must be
        a normal (not subnormal) positive float64.

    Returns
    -------
    float, or ndarray of float64 of ``x``'s shape for an array ``x``.

    Raises
    ------
    TypeError
        ``x`` is not real (str, bool, complex, None...); ``f`` returns
        something else than a real scalar (for a real ``x``) or than an
        array of ``x``'s shape (for an array ``x``).
    ValueError
        ``h`` is not a positive normal finite number; ``x`` (or an element)
        is NaN or infinite; ``x + h == x - h`` in float64 (the step is lost
        in rounding, so the difference would be 0 whatever ``f`` is).

    Non-finite values of ``f`` itself are not errors: they propagate.

    Examples
    --------
    >>> import numpy as np, scratchnet as sn
    >>> f = lambda x: 0.01 * x**2 + 0.1 * x
    >>> sn.numerical_diff(f, 5)
    0.1999999999990898
    >>> sn.numerical_diff(f, np.array([5.0, 10.0])).round(6)
    array([0.2, 0.3])
    """
    h = check_step(h)
    if _is_real_scalar(x):
        x = float(x) if isinstance(x, np.ndarray) else as_real(x)
        if not math.isfinite(x):
            raise ValueError(f"x: {x} is not finite; the derivative there is meaningless, pass a finite x")
        _check_step_survives(x, h, "x")
        f_plus = _scalar_value(f(x + h), x)
        f_minus = _scalar_value(f(x - h), x)
        return (f_plus - f_minus) / (2 * h)

    arr = _real_array(x, "x", "a real number or an array of real numbers")
    if not np.isfinite(arr).all():
        idx = _first(~np.isfinite(arr))
        raise ValueError(f"x: {_name('x', idx)} is {arr[idx]}; the derivative there is meaningless, pass finite values")
    lost = (arr + h) == (arr - h)
    if lost.any():
        idx = _first(lost)
        _check_step_survives(float(arr[idx]), h, _name("x", idx))
    f_plus = _elementwise_value(f(arr + h), arr.shape)
    f_minus = _elementwise_value(f(arr - h), arr.shape)
    return (f_plus - f_minus) / (2 * h)


def numerical_gradient(f, x, h=DEFAULT_H):
    """Central-difference gradient of ``f`` at ``x``, for every element of ``x``.

    For element ``i``: ``(f(x with x[i] + h) - f(x with x[i] - h)) / (2h)``.

    A plain Python ``f`` is called with ``x`` itself, perturbed in place one
    element at a time (so ``f`` may ignore its argument and read the array
    through a closure, as the chapter's ``f = lambda W: net.loss(x, t)``
    does); ``x`` is restored exactly afterwards, also when ``f`` raises.

    A Numba-jitted ``f`` (a dispatcher taking one float64 array, returning
    a float) runs the whole loop in compiled code, in parallel over the
    elements: each thread perturbs a private copy of ``x``, so ``x`` is never
    modified and the result is bitwise identical to the serial loop. An
    exception raised by ``f`` in the compiled loop is raised again, as
    itself, by calling ``f`` from Python at the point where it failed.
    Numba compiles the global and closure arrays a jitted ``f`` reads in as
    constants, so such an ``f`` cannot see the perturbation: when the
    compiled gradient is all zero, ``f`` does not change on a perturbed
    copy of ``x`` but its Python version (``f.py_func``) changes when ``x``
    is perturbed in place, this raises a ValueError instead of returning
    zeros. (Where ``x`` is read-only or ``f.py_func`` fails, the zeros are
    returned.)

    **Batch form** (the textbook's ``gradient_2d.py``): when ``x`` is 2-D
    with N >= 2 rows and ``f(x)`` returns one value per row (shape (N,))
    rather than a scalar, each row ``x[n]`` is a point: row ``n`` of the
    result is the gradient of ``f`` at ``x[n]``, with ``f`` called on the
    1-D row (perturbed in place) exactly as the book's loop does. The first
    call of ``f`` decides; its value is then discarded. (For N = 1 both
    readings give the same numbers, and the scalar one is used.)

    Parameters
    ----------
    f : callable
        ``f(x) -> float``, or for the batch form ``f(row) -> float`` that
        also returns shape (N,) given the whole batch.
    x : ndarray of float64, any shape
        Integer arrays are refused (a step of 1e-4 would be truncated), and
        so is float32 (``x + 1e-4`` keeps only about 3 significant digits
        of the step): convert with ``x.astype(np.float64)``.
    h : float, optional
        A normal positive float64; see :func:`numerical_diff`.

    Returns
    -------
    ndarray of float64, the shape of ``x``.

    Raises
    ------
    TypeError
        ``x`` is not a float64 ndarray; ``f`` does not return a real scalar
        (or, for a 2-D ``x``, one value per row).
    ValueError
        ``h`` is not a positive normal finite number; ``x`` contains NaN or
        inf, or is read-only (Python ``f``); a jitted ``f`` ignores its
        argument (above).
    Exception
        Whatever ``f`` raises, with ``x`` left as it was.
    """
    h = check_step(h)
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x: expected a float64 numpy array (it is perturbed in place), got {type(x).__name__}")
    refuse_complex(x, "x", "pass a real float64 array")
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
        from ._jitted_gradient import numerical_gradient_jitted

        return numerical_gradient_jitted(f, x, h)
    if not x.flags.writeable:
        raise ValueError("x: read-only array; it is perturbed in place while f is evaluated, pass x.copy()")
    return numerical_gradient_python(f, x, h)


def gradient_descent(f, init_x, lr=0.01, step_num=100, *, return_history=False):
    """Minimise ``f`` by ``step_num`` steps of ``x -= lr * grad f(x)``.

    Parameters
    ----------
    f : callable
        ``f(x) -> float``; its gradient is taken with :func:`numerical_gradient`
        (so a 2-D ``init_x`` with an ``f`` returning one value per row
        descends every row independently: the batch form).
    init_x : array_like of real numbers, finite
        Starting point; copied to float64, never modified.
    lr : float, optional
        Learning rate: a positive finite real number (a bool or a string is
        refused). The chapter shows 10 (diverges) and 1e-10 (barely moves).
    step_num : int, optional
        Number of steps, >= 0. An empty ``init_x`` returns at once: no step
        could change it.
    return_history : bool, optional
        Also return the trajectory, as the chapter does to plot it. Without
        it no history is kept: memory does not grow with ``step_num``.

    Returns
    -------
    x : ndarray of float64
        The point after ``step_num`` steps.
    history : ndarray, shape (step_num,) + x.shape
        Only with ``return_history``: ``history[i]`` is ``x`` before step
        ``i`` (the chapter's ``x_history``; the final point is ``x``).

    Raises
    ------
    TypeError
        ``init_x`` is not real; ``return_history`` is not a bool.
    ValueError
        ``init_x`` has NaN or inf; ``lr`` or ``step_num`` is invalid.
    MemoryError
        The history of ``step_num`` steps does not fit in memory (raised
        before the first step).
    FloatingPointError
        ``x`` or its gradient stops being finite (a learning rate far too
        large, or an ``f`` returning NaN or inf).

    Examples
    --------
    >>> import numpy as np, scratchnet as sn
    >>> sn.gradient_descent(lambda x: x[0]**2 + x[1]**2, [-3.0, 4.0], lr=0.1).round(8)
    array([-0.,  0.])
    """
    x = as_float_copy(init_x)
    if not np.isfinite(x).all():
        raise ValueError("init_x: contains NaN or inf; start from a finite point")
    if isinstance(step_num, bool) or not isinstance(step_num, numbers.Integral) or step_num < 0:
        raise ValueError(f"step_num: expected a non-negative integer, got {short_repr(step_num)}")
    step_num = int(step_num)
    lr = _check_lr(lr)
    if not isinstance(return_history, (bool, np.bool_)):
        raise TypeError(f"return_history: expected True or False, got {return_history!r}")
    history = _allocate_history(step_num, x.shape) if return_history else None
    if x.size == 0:
        return (x, history) if return_history else x  # nothing to move: no step calls f
    for i in range(step_num):
        if history is not None:
            history[i] = x
        grad = numerical_gradient(f, x)
        if not np.isfinite(grad).all():
            raise FloatingPointError(f"f: the gradient at step {i} is not finite (f returns NaN or inf near x)")
        with np.errstate(over="ignore", invalid="ignore"):  # reported below, as an error
            x -= lr * grad
        if not np.isfinite(x).all():
            raise FloatingPointError(
                f"lr: gradient descent diverged at step {i} (x is no longer finite); use a learning rate below {lr:g}"
            )
    return (x, history) if return_history else x


def _allocate_history(step_num, shape):
    try:
        return np.empty((step_num,) + shape)
    except (MemoryError, ValueError, OverflowError):  # ValueError: "array is too big"
        nbytes = 8 * step_num * math.prod(shape)
        raise MemoryError(
            f"step_num: a history of {step_num} steps of {math.prod(shape)} elements ({nbytes / 2**30:.4g} GiB) "
            "cannot be allocated; pass return_history=False or fewer steps"
        ) from None


def as_float_copy(a, name="init_x"):
    """A float64 copy of a real numeric array_like (bool, complex, str refused)."""
    arr = refuse_complex(as_array(a, name), name)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64, copy=True)


# -- argument checks -------------------------------------------------------------
def _check_step_survives(x, h, where):
    if x + h == x - h:
        raise ValueError(
            f"h: the step {h} is lost in rounding at {where}={x!r} (x + h == x - h in float64, so the "
            f"difference would be 0 whatever f is); use a step of about {as_written(DEFAULT_H)} * |x| = "
            f"{DEFAULT_H * abs(x):.3g}"
        )


def _check_lr(lr):
    value = as_real(lr)
    if value is None:
        hint = ""
        if isinstance(lr, str):
            try:
                hint = f"; pass lr={float(lr)!r}"
            except ValueError:
                pass
        raise ValueError(
            f"lr: expected a positive finite real number, got {short_repr(lr)} ({type(lr).__name__}){hint}"
        )
    if not math.isfinite(value) or value <= 0:
        hint = " (a negative rate climbs; to maximise f, minimise -f)" if value < 0 else ""
        raise ValueError(f"lr: expected a positive finite real number, got {short_repr(lr)}{hint}")
    return value


def _is_real_scalar(x):
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, numbers.Real):
        return True
    return isinstance(x, np.ndarray) and x.ndim == 0 and x.dtype.kind in "fiu"


def _real_array(x, name, expected):
    refuse_complex(x, name, f"pass {expected}")
    if x is None or isinstance(x, (str, bytes, bool, np.bool_, complex, np.complexfloating)):
        raise TypeError(f"{name}: expected {expected}, got {type(x).__name__}")
    arr = refuse_complex(as_array(x, name), name, f"pass {expected}")
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name}: expected {expected}, got an array of dtype {arr.dtype}")
    return np.array(arr, dtype=np.float64)  # a copy: f never gets the caller's array


def _scalar_value(v, x):
    """f's value at a scalar x: a real number, not an array."""
    if isinstance(v, (bool, np.bool_)) or not (isinstance(v, numbers.Real) or _is_real_scalar(v)):
        shape = np.shape(v) if isinstance(v, np.ndarray) else None
        what = f"an array of shape {shape}" if shape is not None else type(v).__name__
        raise TypeError(
            f"f: returned {what} at the scalar x={x!r}; numerical_diff of a real number needs f(x) -> a real "
            "number (for an elementwise f, pass an array x)"
        )
    return float(v)


def _elementwise_value(v, shape):
    a = np.asarray(v)
    if a.shape != shape or a.dtype.kind not in "fiu":
        got = f"dtype {a.dtype}" if a.shape == shape else f"shape {a.shape}"
        raise TypeError(
            f"f: returned {got} for x of shape {shape}; numerical_diff of an array needs an elementwise f "
            "(real values of x's shape, element i depending on x[i] only); for the gradient of a scalar "
            "function of the whole array use numerical_gradient"
        )
    return a.astype(np.float64)


def _first(mask):
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _name(name, idx):
    return f"{name}[{', '.join(map(str, idx))}]"


def _is_numba_dispatcher(f):
    # Only look if Numba is already loaded: a jitted f implies it is.
    import sys

    if "numba" not in sys.modules:
        return False
    from numba.core.registry import CPUDispatcher

    return isinstance(f, CPUDispatcher)
